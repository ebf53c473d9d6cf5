// ONNX backend conformance: runs the test data of Debian's libonnx-testdata
// through the engine and prints passed/failed/skipped per op.
//
// Policy, per test directory (model.onnx + test_data_set_N/{input,output}_K.pb):
//  * The test inputs are the graph inputs that are not initializers, fed from
//    input_K.pb in graph order (as the ONNX backend runner does).
//  * Test input 0 stays a runtime input when its element type is FLOAT; every
//    other test input (non-float, or after the first) is bound at compile time
//    through CompileOptions::constant_inputs. Node tests pass weights, shapes,
//    axes and scales as graph inputs, and a CNN engine needs those constant.
//    Each data set is compiled separately, since its constants may differ.
//  * Outputs are compared in graph order: float/double within
//    |got - want| <= atol + rtol * |want|, rtol = 1e-4, atol = 1e-5 (tighter
//    than the ONNX runner's rtol 1e-3); NaN must be NaN, infinities equal;
//    integer and bool outputs exactly. Type and shape must match exactly.
//  * Outcomes: UNIMPLEMENTED from compilation (or from Run, where plans are
//    built lazily) = skipped, with the engine's message as the reason. A test
//    the engine API cannot express (sequence/optional values, FLOAT16, STRING,
//    ...) = skipped with a "harness:" reason. Anything else = failed.
//  * Known-bad test data (KnownBadTestData(): expected outputs that are
//    wrong in libonnx-testdata 1.12 itself) still run; a mismatch there is a
//    skip whose reason says why the data is wrong, a pass is a pass.
//  * The assertion: no failures. Every test either passes or is skipped with
//    a reason; nothing is skipped silently.
//
// Environment: RECTIFIER_ONNX_TESTDATA overrides the data root;
// RECTIFIER_CONFORMANCE_FILTER=substr runs only tests whose name contains it;
// RECTIFIER_CONFORMANCE_VERBOSE=1 prints every test's outcome;
// RECTIFIER_CONFORMANCE_RUNTIME_INPUTS=1 keeps every FLOAT input a runtime
// input (RuntimeInputsMode).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine {
namespace {

namespace fs = std::filesystem;
using testing::CompareTensors;
using testing::OnnxTypeName;
using testing::ReadFileBytes;
using testing::ReadTensorProtoFile;
using testing::TensorFromProto;
using testing::Tolerance;

constexpr char kDefaultDataRoot[] = "/usr/share/libonnx-testdata/data";
constexpr Tolerance kTolerance{/*rtol=*/1e-4, /*atol=*/1e-5};

enum class Outcome { kPassed, kFailed, kSkipped };

// Test directories whose expected outputs are wrong in libonnx-testdata 1.12.
// The window functions were generated with pi = 3.1415: output n = 9 of the
// periodic Hann window of size 10 is 0.0955405 (exact: 0.0954915) and the
// windows are not symmetric.
constexpr const char* kWindowPiReason =
    "known-bad test data: ONNX 1.12 computed the window with pi = 3.1415";
const std::map<std::string, std::string>& KnownBadTestData() {
  static const auto* const known = new std::map<std::string, std::string>{
      {"test_blackmanwindow", kWindowPiReason},
      {"test_blackmanwindow_expanded", kWindowPiReason},
      {"test_blackmanwindow_symmetric", kWindowPiReason},
      {"test_blackmanwindow_symmetric_expanded", kWindowPiReason},
      {"test_hammingwindow", kWindowPiReason},
      {"test_hammingwindow_expanded", kWindowPiReason},
      {"test_hammingwindow_symmetric", kWindowPiReason},
      {"test_hammingwindow_symmetric_expanded", kWindowPiReason},
      {"test_hannwindow", kWindowPiReason},
      {"test_hannwindow_expanded", kWindowPiReason},
      {"test_hannwindow_symmetric", kWindowPiReason},
      {"test_hannwindow_symmetric_expanded", kWindowPiReason},
  };
  return *known;
}

struct CaseResult {
  std::string name;   // test directory name, e.g. "test_conv_with_strides_padding"
  std::string label;  // row of the table: op type, or "<suite>:<name>"
  Outcome outcome = Outcome::kFailed;
  std::string reason;  // empty when passed
};

std::string DataRoot() {
  const char* root = std::getenv("RECTIFIER_ONNX_TESTDATA");
  return root != nullptr && *root != '\0' ? root : kDefaultDataRoot;
}

bool Verbose() {
  const char* verbose = std::getenv("RECTIFIER_CONFORMANCE_VERBOSE");
  return verbose != nullptr && std::strcmp(verbose, "0") != 0 && *verbose != '\0';
}

// RECTIFIER_CONFORMANCE_RUNTIME_INPUTS=1: every FLOAT test input stays a
// runtime input (weights, scales, ... as a server's client would send
// them); only the others are bound at compile time.
bool RuntimeInputsMode() {
  const char* on = std::getenv("RECTIFIER_CONFORMANCE_RUNTIME_INPUTS");
  return on != nullptr && std::strcmp(on, "0") != 0 && *on != '\0';
}

// The case being run, printed if the engine crashes the process, so a crash
// names its test instead of losing the whole table.
char g_current_case[512] = "";

void CrashHandler(int signal_number) {
  const char prefix[] = "\n*** engine_conformance_test crashed while running ";
  ssize_t ignored = write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
  ignored = write(STDERR_FILENO, g_current_case, strnlen(g_current_case, sizeof(g_current_case)));
  ignored = write(STDERR_FILENO, "\n", 1);
  (void)ignored;
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

void InstallCrashHandler() {
  static const bool installed = [] {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, CrashHandler);
    return true;
  }();
  (void)installed;
}

// The op type of a single-node graph; "multi-node" otherwise. An expanded
// function test ("test_foo_expanded") borrows the op of its twin "test_foo".
std::string NodeLabel(const fs::path& dir, const onnx::ModelProto& model) {
  const onnx::GraphProto& graph = model.graph();
  if (graph.node_size() == 1) return graph.node(0).op_type();
  const std::string name = dir.filename().string();
  const std::string expanded = "_expanded";
  if (absl::EndsWith(name, expanded)) {
    const fs::path twin = dir.parent_path() / name.substr(0, name.size() - expanded.size());
    onnx::ModelProto twin_model;
    absl::StatusOr<std::string> bytes = ReadFileBytes((twin / "model.onnx").string());
    if (bytes.ok() && twin_model.ParseFromString(*bytes) && twin_model.graph().node_size() == 1) {
      return absl::StrCat(twin_model.graph().node(0).op_type(), " (expanded)");
    }
  }
  return "multi-node";
}

std::string Label(const std::string& suite, const fs::path& dir, const onnx::ModelProto& model) {
  if (suite == "node") return NodeLabel(dir, model);
  std::string name = dir.filename().string();
  if (absl::StartsWith(name, "test_")) name = name.substr(5);
  return absl::StrCat(suite, ":", name);
}

// Reads <set>/<prefix>_K.pb for K = 0, 1, ... until one is missing.
absl::StatusOr<std::vector<onnx::TensorProto>> ReadNumbered(const fs::path& set_dir,
                                                            const std::string& prefix) {
  std::vector<onnx::TensorProto> protos;
  for (int k = 0;; ++k) {
    const fs::path path = set_dir / absl::StrCat(prefix, "_", k, ".pb");
    if (!fs::exists(path)) break;
    absl::StatusOr<onnx::TensorProto> proto = ReadTensorProtoFile(path.string());
    if (!proto.ok()) return proto.status();
    protos.push_back(*std::move(proto));
  }
  return protos;
}

std::string ValueKind(const onnx::TypeProto& type) {
  if (type.has_sequence_type()) return "a sequence";
  if (type.has_map_type()) return "a map";
  if (type.has_optional_type()) return "an optional";
  if (type.has_sparse_tensor_type()) return "a sparse tensor";
  return "not a tensor";
}

CaseResult Skip(CaseResult result, std::string reason) {
  result.outcome = Outcome::kSkipped;
  result.reason = std::move(reason);
  return result;
}

CaseResult Fail(CaseResult result, std::string reason) {
  result.outcome = Outcome::kFailed;
  result.reason = std::move(reason);
  return result;
}

// Compiles and runs one data set; returns the outcome of this set.
CaseResult RunDataSet(CaseResult result, const std::string& model_bytes,
                      const onnx::ModelProto& model,
                      const std::vector<const onnx::ValueInfoProto*>& test_inputs,
                      const fs::path& set_dir) {
  const std::string set_name = set_dir.filename().string();
  absl::StatusOr<std::vector<onnx::TensorProto>> input_protos = ReadNumbered(set_dir, "input");
  absl::StatusOr<std::vector<onnx::TensorProto>> output_protos = ReadNumbered(set_dir, "output");
  if (!input_protos.ok()) return Fail(result, "harness: " + input_protos.status().ToString());
  if (!output_protos.ok()) return Fail(result, "harness: " + output_protos.status().ToString());
  if (input_protos->size() != test_inputs.size()) {
    return Skip(result, absl::StrCat("harness: ", set_name, " has ", input_protos->size(),
                                     " input files for ", test_inputs.size(), " graph inputs"));
  }
  if (output_protos->size() != static_cast<size_t>(model.graph().output_size())) {
    return Skip(result,
                absl::StrCat("harness: ", set_name, " has ", output_protos->size(),
                             " output files for ", model.graph().output_size(), " graph outputs"));
  }

  CompileOptions options;
  std::map<std::string, Tensor> runtime_inputs;
  for (size_t k = 0; k < test_inputs.size(); ++k) {
    const std::string& name = test_inputs[k]->name();
    absl::StatusOr<Tensor> tensor = TensorFromProto((*input_protos)[k]);
    if (!tensor.ok()) {
      if (absl::IsUnimplemented(tensor.status())) {
        return Skip(result,
                    absl::StrCat("harness: input '", name, "': ", tensor.status().message()));
      }
      return Fail(result,
                  absl::StrCat("harness: input '", name, "': ", tensor.status().ToString()));
    }
    if ((k == 0 || RuntimeInputsMode()) && tensor->type == DataType::kFloat32) {
      runtime_inputs.emplace(name, *std::move(tensor));
    } else {
      options.constant_inputs.emplace(name, *std::move(tensor));
    }
  }
  std::vector<Tensor> expected;
  for (size_t k = 0; k < output_protos->size(); ++k) {
    absl::StatusOr<Tensor> tensor = TensorFromProto((*output_protos)[k]);
    if (!tensor.ok()) {
      const std::string& name = model.graph().output(static_cast<int>(k)).name();
      if (absl::IsUnimplemented(tensor.status())) {
        return Skip(result,
                    absl::StrCat("harness: output '", name, "': ", tensor.status().message()));
      }
      return Fail(result,
                  absl::StrCat("harness: output '", name, "': ", tensor.status().ToString()));
    }
    expected.push_back(*std::move(tensor));
  }

  absl::StatusOr<std::shared_ptr<const CompiledModel>> compiled =
      CompiledModel::FromBytes(model_bytes, options);
  if (!compiled.ok()) {
    if (absl::IsUnimplemented(compiled.status())) {
      return Skip(result, std::string(compiled.status().message()));
    }
    return Fail(result, "compile: " + compiled.status().ToString());
  }
  const std::vector<TensorInfo>& input_infos = (*compiled)->inputs();
  const std::vector<TensorInfo>& output_infos = (*compiled)->outputs();
  std::vector<Tensor> inputs;
  for (const TensorInfo& info : input_infos) {
    auto it = runtime_inputs.find(info.name);
    if (it == runtime_inputs.end()) {
      return Fail(result, absl::StrCat("engine lists input '", info.name,
                                       "', which the harness bound as a constant or which is "
                                       "not a graph input"));
    }
    inputs.push_back(it->second);
  }
  if (inputs.size() != runtime_inputs.size()) {
    return Fail(result, absl::StrCat("engine lists ", inputs.size(), " inputs, expected ",
                                     runtime_inputs.size()));
  }
  if (output_infos.size() != expected.size()) {
    return Fail(result, absl::StrCat("engine lists ", output_infos.size(), " outputs, expected ",
                                     expected.size()));
  }
  for (size_t k = 0; k < output_infos.size(); ++k) {
    if (output_infos[k].name != model.graph().output(static_cast<int>(k)).name()) {
      return Fail(result,
                  absl::StrCat("output ", k, " is named '", output_infos[k].name, "', graph says '",
                               model.graph().output(static_cast<int>(k)).name(), "'"));
    }
  }

  ContextOptions context_options;
  context_options.threads = 1;
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create(*compiled, context_options);
  if (!context.ok()) return Fail(result, "context: " + context.status().ToString());
  absl::StatusOr<std::vector<Tensor>> outputs = (*context)->Run(inputs);
  if (!outputs.ok()) {
    if (absl::IsUnimplemented(outputs.status())) {
      return Skip(result, absl::StrCat("run: ", outputs.status().message()));
    }
    return Fail(result, "run: " + outputs.status().ToString());
  }
  if (outputs->size() != expected.size()) {
    return Fail(result, absl::StrCat("run returned ", outputs->size(), " outputs, expected ",
                                     expected.size()));
  }
  for (size_t k = 0; k < expected.size(); ++k) {
    const std::string mismatch = CompareTensors(expected[k], (*outputs)[k], kTolerance);
    if (!mismatch.empty()) {
      return Fail(result,
                  absl::StrCat(set_name, " output '", output_infos[k].name, "': ", mismatch));
    }
  }
  result.outcome = Outcome::kPassed;
  return result;
}

CaseResult RunCase(const std::string& suite, const fs::path& dir) {
  CaseResult result;
  result.name = dir.filename().string();
  result.label = absl::StrCat(suite, ":", result.name);
  absl::StatusOr<std::string> model_bytes = ReadFileBytes((dir / "model.onnx").string());
  if (!model_bytes.ok()) return Fail(result, "harness: " + model_bytes.status().ToString());
  onnx::ModelProto model;
  if (!model.ParseFromString(*model_bytes)) {
    return Fail(result, "harness: model.onnx does not parse as a ModelProto");
  }
  result.label = Label(suite, dir, model);

  std::set<std::string> initializers;
  for (const onnx::TensorProto& init : model.graph().initializer()) {
    initializers.insert(init.name());
  }
  std::vector<const onnx::ValueInfoProto*> test_inputs;
  for (const onnx::ValueInfoProto& input : model.graph().input()) {
    if (initializers.count(input.name()) != 0) continue;
    if (!input.type().has_tensor_type()) {
      return Skip(result,
                  absl::StrCat("harness: input '", input.name(), "' is ", ValueKind(input.type())));
    }
    test_inputs.push_back(&input);
  }
  for (const onnx::ValueInfoProto& output : model.graph().output()) {
    if (!output.type().has_tensor_type()) {
      return Skip(result, absl::StrCat("harness: output '", output.name(), "' is ",
                                       ValueKind(output.type())));
    }
  }

  std::vector<fs::path> sets;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory() &&
        absl::StartsWith(entry.path().filename().string(), "test_data_set_")) {
      sets.push_back(entry.path());
    }
  }
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) return Fail(result, "harness: no test_data_set_N directory");

  for (const fs::path& set_dir : sets) {
    CaseResult set_result = RunDataSet(result, *model_bytes, model, test_inputs, set_dir);
    if (set_result.outcome != Outcome::kPassed) return set_result;
  }
  result.outcome = Outcome::kPassed;
  return result;
}

// Runs one case, never letting an exception escape into gtest (it would
// abort the whole table); the engine must not throw, so one is a failure.
CaseResult RunCaseGuarded(const std::string& suite, const fs::path& dir) {
  InstallCrashHandler();
  std::snprintf(g_current_case, sizeof(g_current_case), "%s/%s", suite.c_str(),
                dir.filename().string().c_str());
  CaseResult result;
  try {
    result = RunCase(suite, dir);
  } catch (const std::exception& e) {
    result.name = dir.filename().string();
    result.label = absl::StrCat(suite, ":", result.name);
    result = Fail(result, absl::StrCat("exception: ", e.what()));
  }
  g_current_case[0] = '\0';
  const auto known_bad = KnownBadTestData().find(result.name);
  if (suite == "node" && result.outcome == Outcome::kFailed &&
      known_bad != KnownBadTestData().end()) {
    result = Skip(result, absl::StrCat(known_bad->second, " (engine: ", result.reason, ")"));
  }
  return result;
}

// The first two lines of a reason, at most 240 characters.
std::string Brief(const std::string& reason) {
  std::vector<std::string> lines = absl::StrSplit(reason, '\n');
  std::string brief = lines[0];
  if (lines.size() > 1) absl::StrAppend(&brief, " | ", lines[1]);
  if (brief.size() > 240) brief = brief.substr(0, 237) + "...";
  return brief;
}

struct Counts {
  int passed = 0;
  int failed = 0;
  int skipped = 0;
};

std::string Report(const std::string& suite, const std::vector<CaseResult>& results,
                   double seconds) {
  std::map<std::string, Counts> per_label;
  Counts total;
  for (const CaseResult& r : results) {
    Counts& counts = per_label[r.label];
    switch (r.outcome) {
      case Outcome::kPassed:
        ++counts.passed;
        ++total.passed;
        break;
      case Outcome::kFailed:
        ++counts.failed;
        ++total.failed;
        break;
      case Outcome::kSkipped:
        ++counts.skipped;
        ++total.skipped;
        break;
    }
  }
  std::string out =
      absl::StrFormat("\n=== ONNX conformance: %s (%s/%s) ===\n", suite, DataRoot(), suite);
  absl::StrAppendFormat(&out, "%-56s %7s %7s %7s\n", "op", "passed", "failed", "skipped");
  for (const auto& [label, counts] : per_label) {
    absl::StrAppendFormat(&out, "%-56s %7d %7d %7d\n", label, counts.passed, counts.failed,
                          counts.skipped);
  }
  absl::StrAppendFormat(&out, "%-56s %7d %7d %7d   (%d tests, %.1f s)\n", "TOTAL", total.passed,
                        total.failed, total.skipped, static_cast<int>(results.size()), seconds);

  bool any_failure = false;
  for (const CaseResult& r : results) {
    if (r.outcome != Outcome::kFailed) continue;
    if (!any_failure) absl::StrAppend(&out, "\nFailures:\n");
    any_failure = true;
    absl::StrAppendFormat(&out, "  FAIL %s [%s]: %s\n", r.name, r.label, Brief(r.reason));
  }
  // Skips grouped by reason, so one unsupported attribute is one line.
  std::map<std::string, std::vector<std::string>> skips;
  for (const CaseResult& r : results) {
    if (r.outcome == Outcome::kSkipped) skips[Brief(r.reason)].push_back(r.name);
  }
  if (!skips.empty()) absl::StrAppend(&out, "\nSkips (reason: tests):\n");
  for (const auto& [reason, names] : skips) {
    std::vector<std::string> shown(names.begin(),
                                   names.begin() + std::min<size_t>(names.size(), 4));
    absl::StrAppendFormat(&out, "  SKIP %s: %s%s\n", reason, absl::StrJoin(shown, ", "),
                          names.size() > shown.size()
                              ? absl::StrCat(" and ", names.size() - shown.size(), " more")
                              : "");
  }
  return out;
}

std::vector<fs::path> CaseDirs(const fs::path& suite_dir) {
  const char* filter = std::getenv("RECTIFIER_CONFORMANCE_FILTER");
  std::vector<fs::path> dirs;
  for (const fs::directory_entry& entry : fs::directory_iterator(suite_dir)) {
    if (!entry.is_directory() || !fs::exists(entry.path() / "model.onnx")) continue;
    if (filter != nullptr && *filter != '\0' &&
        !absl::StrContains(entry.path().filename().string(), filter)) {
      continue;
    }
    dirs.push_back(entry.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

class EngineConformanceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(EngineConformanceTest, SupportedOpsPass) {
  const std::string& suite = GetParam();
  const fs::path suite_dir = fs::path(DataRoot()) / suite;
  if (!fs::is_directory(suite_dir)) {
    GTEST_SKIP() << suite_dir << " does not exist: install libonnx-testdata "
                 << "(run scripts/install-deps.sh)";
  }
  const std::vector<fs::path> dirs = CaseDirs(suite_dir);
  if (dirs.empty()) {
    GTEST_SKIP() << "no tests in " << suite_dir << " match the filter";
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<CaseResult> results;
  for (const fs::path& dir : dirs) {
    results.push_back(RunCaseGuarded(suite, dir));
    if (Verbose()) {
      const CaseResult& r = results.back();
      std::cout << (r.outcome == Outcome::kPassed   ? "PASS "
                    : r.outcome == Outcome::kFailed ? "FAIL "
                                                    : "SKIP ")
                << r.name << " [" << r.label << "] " << Brief(r.reason) << std::endl;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << Report(suite, results, seconds) << std::flush;

  ASSERT_EQ(results.size(), dirs.size());
  for (const CaseResult& r : results) {
    EXPECT_NE(r.outcome, Outcome::kFailed)
        << suite << "/" << r.name << " [" << r.label << "]: " << r.reason;
    if (r.outcome == Outcome::kSkipped) {
      EXPECT_FALSE(r.reason.empty()) << r.name;
    }
  }
}

std::string SuiteTestName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name;
  bool upper = true;
  for (char c : info.param) {
    if (c == '-' || c == '_') {
      upper = true;
    } else {
      name += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
      upper = false;
    }
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(LibonnxTestdata, EngineConformanceTest,
                         ::testing::Values("node", "pytorch-converted", "pytorch-operator",
                                           "simple"),
                         SuiteTestName);

// One canonical node test per op of the engine's target list, on the plain
// float32 NCHW path. Unlike the suites above these may not be skipped: an
// UNIMPLEMENTED here means a target op is missing.
constexpr const char* kCanonicalNodeTests[] = {
    "test_basic_conv_with_padding",
    "test_conv_with_strides_and_asymmetric_padding",
    "test_convtranspose",
    "test_batchnorm_example",
    "test_relu",
    "test_leakyrelu",
    "test_prelu_broadcast",
    "test_clip",
    "test_sigmoid",
    "test_tanh",
    "test_hardsigmoid",
    "test_hardswish",
    "test_elu",
    "test_selu",
    "test_softplus",
    "test_maxpool_2d_default",
    "test_maxpool_2d_pads",
    "test_averagepool_2d_default",
    "test_averagepool_2d_pads_count_include_pad",
    "test_globalaveragepool",
    "test_globalmaxpool",
    "test_gemm_all_attributes",
    "test_matmul_2d",
    "test_add",
    "test_add_bcast",
    "test_sub_bcast",
    "test_mul_bcast",
    "test_div_bcast",
    "test_concat_3d_axis_1",
    "test_split_equal_parts_2d",
    "test_slice",
    "test_reshape_reordered_all_dims",
    "test_flatten_axis1",
    "test_transpose_default",
    "test_squeeze",
    "test_unsqueeze_axis_0",
    "test_resize_upsample_scales_nearest",
    "test_resize_upsample_scales_linear",
    "test_resize_upsample_scales_linear_align_corners",
    "test_resize_downsample_sizes_linear_pytorch_half_pixel",
    "test_softmax_axis_1",
    "test_constant_pad",
    "test_reduce_mean_keepdims_example",
    "test_exp",
    "test_log",
    "test_sqrt",
    "test_pow",
};

TEST(EngineConformanceCanonicalTest, TargetOpsPassTheirBasicTest) {
  const fs::path node_dir = fs::path(DataRoot()) / "node";
  if (!fs::is_directory(node_dir)) {
    GTEST_SKIP() << node_dir << " does not exist: install libonnx-testdata "
                 << "(run scripts/install-deps.sh)";
  }
  for (const char* name : kCanonicalNodeTests) {
    const fs::path dir = node_dir / name;
    ASSERT_TRUE(fs::is_directory(dir)) << dir;
    const CaseResult r = RunCaseGuarded("node", dir);
    EXPECT_EQ(r.outcome, Outcome::kPassed) << name << " [" << r.label << "]: " << r.reason;
  }
}

// The harness itself: a comparison that could never fail would make every
// test above meaningless.
TEST(ConformanceHarnessTest, CompareTensorsDetectsMismatches) {
  const Tensor want = testing::FloatTensor({2, 2}, {1.0f, -2.0f, 0.0f, NAN});
  EXPECT_EQ(
      CompareTensors(want, testing::FloatTensor({2, 2}, {1.00005f, -2.0f, 5e-6f, NAN}), kTolerance),
      "");
  EXPECT_NE(
      CompareTensors(want, testing::FloatTensor({2, 2}, {1.001f, -2.0f, 0.0f, NAN}), kTolerance),
      "");
  EXPECT_NE(
      CompareTensors(want, testing::FloatTensor({2, 2}, {1.0f, -2.0f, 0.0f, 0.0f}), kTolerance),
      "");
  EXPECT_NE(CompareTensors(want, testing::FloatTensor({4}, {1.0f, -2.0f, 0.0f, NAN}), kTolerance),
            "");
  EXPECT_NE(CompareTensors(testing::Int64Tensor({2}, {1, 2}), testing::Int64Tensor({2}, {1, 3}),
                           kTolerance),
            "");
  EXPECT_NE(
      CompareTensors(testing::Int64Tensor({1}, {1}), testing::FloatTensor({1}, {1.0f}), kTolerance),
      "");
}

TEST(ConformanceHarnessTest, TensorFromProtoReadsTypedAndRawData) {
  onnx::TensorProto typed;
  typed.set_data_type(onnx::TensorProto::INT64);
  typed.add_dims(3);
  for (int64_t v : {4, -5, 6}) typed.add_int64_data(v);
  absl::StatusOr<Tensor> tensor = TensorFromProto(typed);
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(CompareTensors(testing::Int64Tensor({3}, {4, -5, 6}), *tensor, kTolerance), "");

  const onnx::TensorProto raw =
      testing::TensorToProto(testing::FloatTensor({1, 2}, {0.5f, -1.5f}), "x");
  tensor = TensorFromProto(raw);
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(CompareTensors(testing::FloatTensor({1, 2}, {0.5f, -1.5f}), *tensor, kTolerance), "");

  onnx::TensorProto short_raw = raw;
  short_raw.mutable_raw_data()->resize(5);
  EXPECT_EQ(TensorFromProto(short_raw).status().code(), absl::StatusCode::kInvalidArgument);

  onnx::TensorProto half;
  half.set_data_type(onnx::TensorProto::FLOAT16);
  EXPECT_EQ(TensorFromProto(half).status().code(), absl::StatusCode::kUnimplemented);
}

TEST(ConformanceHarnessTest, ReadsAnInputFileOfTheTestData) {
  const fs::path path = fs::path(DataRoot()) / "node/test_relu/test_data_set_0/input_0.pb";
  if (!fs::exists(path)) {
    GTEST_SKIP() << path << " missing (run scripts/install-deps.sh)";
  }
  absl::StatusOr<onnx::TensorProto> proto = ReadTensorProtoFile(path.string());
  ASSERT_TRUE(proto.ok()) << proto.status();
  absl::StatusOr<Tensor> tensor = TensorFromProto(*proto);
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->type, DataType::kFloat32);
  EXPECT_EQ(tensor->shape, (std::vector<int64_t>{3, 4, 5}));
  EXPECT_EQ(OnnxTypeName(proto->data_type()), "FLOAT");
}

}  // namespace
}  // namespace rectifier::engine
