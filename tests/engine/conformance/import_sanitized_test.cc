// Fuzz-style import test built with the engine sources under ASan+UBSan:
// mutated models (truncations, byte flips, corrupted length fields, and
// semantic edits of dims and attributes) must come back as a Status and,
// when they load, run without memory errors or undefined behaviour.
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/hostile_models.h"
#include "tests/engine/conformance/onnx_test_util.h"

// Stack traces for UBSan reports (ASan prints them anyway).
extern "C" const char* __ubsan_default_options() {  // NOLINT(bugprone-reserved-identifier)
  return "print_stacktrace=1";
}

namespace rectifier::engine {
namespace {

// The model being exercised, printed when a sanitizer kills the process.
char g_current_case[256] = "";

void PrintCurrentCase() {
  const char prefix[] = "\n*** sanitizer report while exercising ";
  ssize_t ignored = write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
  ignored = write(STDERR_FILENO, g_current_case, strnlen(g_current_case, sizeof(g_current_case)));
  ignored = write(STDERR_FILENO, "\n", 1);
  (void)ignored;
}

using ::testing::AnyOf;
using testing::AttrFloat;
using testing::AttrInt;
using testing::AttrInts;
using testing::AttrString;
using testing::FloatTensor;
using testing::Int64Tensor;
using testing::ModelBuilder;
using testing::RandomFloatTensor;

constexpr int kMutationsPerSeed = 40;  // RECTIFIER_FUZZ_MUTATIONS overrides
constexpr int64_t kMaxTensorBytes = int64_t{64} << 20;
constexpr int64_t kMaxRunInputBytes = int64_t{16} << 20;

struct SeedModel {
  std::string name;
  std::string bytes;
};

std::vector<SeedModel> BuiltSeeds() {
  std::vector<SeedModel> seeds;
  {  // Conv -> BatchNormalization -> Relu -> MaxPool, dynamic batch
    ModelBuilder b;
    b.Input("x", {-1, 3, 9, 9});
    b.Initializer("w", RandomFloatTensor({4, 3, 3, 3}, 1))
        .Initializer("cb", RandomFloatTensor({4}, 2));
    b.Initializer("s", RandomFloatTensor({4}, 3, 0.5f, 1.5f))
        .Initializer("o", RandomFloatTensor({4}, 4));
    b.Initializer("m", RandomFloatTensor({4}, 5))
        .Initializer("v", RandomFloatTensor({4}, 6, 0.5f, 1.5f));
    onnx::NodeProto* conv = b.Node("Conv", {"x", "w", "cb"}, {"c"});
    AttrInts(conv, "kernel_shape", {3, 3});
    AttrInts(conv, "pads", {1, 1, 1, 1});
    AttrInts(conv, "strides", {1, 1});
    AttrInt(conv, "group", 1);
    b.Node("BatchNormalization", {"c", "s", "o", "m", "v"}, {"n"});
    b.Node("Relu", {"n"}, {"r"});
    onnx::NodeProto* pool = b.Node("MaxPool", {"r"}, {"y"});
    AttrInts(pool, "kernel_shape", {2, 2});
    AttrInts(pool, "strides", {2, 2});
    AttrInt(pool, "ceil_mode", 1);
    b.Output("y", {-1, 4, 5, 5});
    seeds.push_back({"conv_bn_relu_pool", b.Bytes()});
  }
  {  // Resize (scales) + Concat + residual Add
    ModelBuilder b;
    b.Input("x", {1, 2, 5, 5});
    b.Initializer("scales", FloatTensor({4}, {1, 1, 2, 2}));
    onnx::NodeProto* resize = b.Node("Resize", {"x", "", "scales"}, {"up"});
    AttrString(resize, "mode", "linear");
    AttrString(resize, "coordinate_transformation_mode", "half_pixel");
    b.Initializer("w", RandomFloatTensor({2, 2, 2, 2}, 7));
    onnx::NodeProto* deconv = b.Node("ConvTranspose", {"x", "w"}, {"de"});
    AttrInts(deconv, "strides", {2, 2});
    b.Node("Add", {"up", "de"}, {"sum"});
    AttrInt(b.Node("Concat", {"sum", "up"}, {"y"}), "axis", 1);
    b.Output("y", {1, 4, 10, 10});
    seeds.push_back({"resize_deconv_concat", b.Bytes()});
  }
  {  // Classifier head: GlobalAveragePool -> Reshape -> Gemm -> Softmax
    ModelBuilder b;
    b.Input("x", {-1, 6, 7, 7});
    b.Node("GlobalAveragePool", {"x"}, {"g"});
    b.Initializer("shape", Int64Tensor({2}, {-1, 6}));
    b.Node("Reshape", {"g", "shape"}, {"flat"});
    b.Initializer("fc_w", RandomFloatTensor({5, 6}, 8))
        .Initializer("fc_b", RandomFloatTensor({5}, 9));
    onnx::NodeProto* gemm = b.Node("Gemm", {"flat", "fc_w", "fc_b"}, {"logits"});
    AttrInt(gemm, "transB", 1);
    AttrFloat(gemm, "alpha", 1.0f);
    AttrInt(b.Node("Softmax", {"logits"}, {"y"}), "axis", 1);
    b.Output("y", {-1, 5});
    seeds.push_back({"classifier_head", b.Bytes()});
  }
  {  // Detector-head shape ops: Split, Transpose, Reshape, Slice, Pad,
     // Resize (sizes), ReduceMean, Clip, PRelu, MatMul
    ModelBuilder b(13);
    b.Input("x", {1, 4, 6, 6});
    b.Initializer("split", Int64Tensor({2}, {1, 3}));
    AttrInt(b.Node("Split", {"x", "split"}, {"s0", "s1"}), "axis", 1);
    AttrInts(b.Node("Transpose", {"s1"}, {"t"}), "perm", {0, 2, 3, 1});
    b.Initializer("shape", Int64Tensor({3}, {1, 0, -1}));
    b.Node("Reshape", {"t", "shape"}, {"r"});
    b.Initializer("starts", Int64Tensor({1}, {1})).Initializer("ends", Int64Tensor({1}, {5}));
    b.Initializer("axes", Int64Tensor({1}, {1}));
    b.Node("Slice", {"r", "starts", "ends", "axes"}, {"sl"});
    b.Initializer("mm", RandomFloatTensor({18, 5}, 10));
    b.Node("MatMul", {"sl", "mm"}, {"m"});
    b.Initializer("lo", FloatTensor({}, {-0.5f})).Initializer("hi", FloatTensor({}, {0.5f}));
    b.Node("Clip", {"m", "lo", "hi"}, {"out_a"});
    b.Initializer("pads", Int64Tensor({8}, {0, 0, 1, 1, 0, 0, 1, 1}));
    b.Node("Pad", {"s0", "pads"}, {"padded"});
    b.Initializer("sizes", Int64Tensor({4}, {1, 1, 5, 11}));
    AttrString(b.Node("Resize", {"padded", "", "", "sizes"}, {"rs"}), "mode", "nearest");
    b.Initializer("slope", RandomFloatTensor({1, 1, 1}, 11));
    b.Node("PRelu", {"rs", "slope"}, {"pr"});
    AttrInts(b.Node("ReduceMean", {"pr"}, {"out_b"}), "axes", {2, 3});
    b.Output("out_a", {1, 4, 5}).Output("out_b", {1, 1, 1, 1});
    seeds.push_back({"detector_head_shape_ops", b.Bytes()});
  }
  return seeds;
}

// A testdata model with every graph input after the first turned into an
// initializer holding the test's own input values (node tests pass weights
// as inputs), so the seed runs with one runtime input.
absl::StatusOr<std::string> TestDataSeed(const std::filesystem::path& dir) {
  absl::StatusOr<std::string> bytes = testing::ReadFileBytes((dir / "model.onnx").string());
  if (!bytes.ok()) return bytes.status();
  onnx::ModelProto model;
  if (!model.ParseFromString(*bytes)) return absl::InvalidArgumentError("unparsable seed");
  onnx::GraphProto* graph = model.mutable_graph();
  std::set<std::string> initializers;
  for (const onnx::TensorProto& init : graph->initializer()) initializers.insert(init.name());
  // Test inputs are the graph inputs that are not initializers (older IR
  // versions list initializers among the inputs too).
  onnx::GraphProto kept = *graph;
  kept.clear_input();
  int test_input = 0;
  for (const onnx::ValueInfoProto& input : graph->input()) {
    if (initializers.count(input.name()) != 0) {
      *kept.add_input() = input;
      continue;
    }
    if (test_input++ == 0) {
      *kept.add_input() = input;
      continue;
    }
    absl::StatusOr<onnx::TensorProto> value = testing::ReadTensorProtoFile(
        (dir / "test_data_set_0" / absl::StrCat("input_", test_input - 1, ".pb")).string());
    if (!value.ok()) return value.status();
    value->set_name(input.name());
    *kept.add_initializer() = *std::move(value);
  }
  *graph = std::move(kept);
  return model.SerializeAsString();
}

std::vector<SeedModel> TestDataSeeds() {
  std::vector<SeedModel> seeds;
  const std::filesystem::path root = "/usr/share/libonnx-testdata/data";
  std::vector<std::string> paths = {"node/test_conv_with_strides_and_asymmetric_padding",
                                    "pytorch-converted/test_Conv2d_depthwise_padded",
                                    "node/test_averagepool_2d_pads_count_include_pad"};
  // RECTIFIER_FUZZ_EXTRA_SEEDS=node/test_a,node/test_b adds testdata seeds for
  // exploratory runs.
  if (const char* extra = std::getenv("RECTIFIER_FUZZ_EXTRA_SEEDS"); extra != nullptr) {
    for (absl::string_view path : absl::StrSplit(extra, ',', absl::SkipEmpty())) {
      paths.emplace_back(path);
    }
  }
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> bytes = TestDataSeed(root / path);
    // Missing test data (libonnx-testdata not installed) only drops these
    // seeds; anything else is a broken seed.
    if (absl::IsNotFound(bytes.status()) && !std::filesystem::exists(root)) continue;
    EXPECT_TRUE(bytes.ok()) << path << ": " << bytes.status();
    if (bytes.ok()) seeds.push_back({path, *std::move(bytes)});
  }
  return seeds;
}

// Writes a protobuf varint at `pos` (overwriting), as a corrupted length.
void OverwriteVarint(std::string* bytes, size_t pos, uint64_t value) {
  while (pos < bytes->size()) {
    const uint8_t low = value & 0x7f;
    value >>= 7;
    (*bytes)[pos++] = static_cast<char>(value != 0 ? (low | 0x80) : low);
    if (value == 0) break;
  }
}

int64_t InterestingInt(std::mt19937& rng) {
  static const int64_t kValues[] = {0,
                                    -1,
                                    1,
                                    2,
                                    3,
                                    -7,
                                    1000,
                                    int64_t{1} << 31,
                                    int64_t{1} << 40,
                                    -(int64_t{1} << 62),
                                    INT64_MAX,
                                    INT64_MIN};
  return kValues[rng() % std::size(kValues)];
}

// A semantic mutation of a parsed model: dims, attributes, wiring.
std::string MutateStructure(const std::string& seed, std::mt19937& rng) {
  onnx::ModelProto model;
  if (!model.ParseFromString(seed)) return seed;
  onnx::GraphProto* graph = model.mutable_graph();
  switch (rng() % 6) {
    case 0:  // an attribute value
      if (graph->node_size() > 0) {
        onnx::NodeProto* node = graph->mutable_node(rng() % graph->node_size());
        if (node->attribute_size() > 0) {
          onnx::AttributeProto* attr = node->mutable_attribute(rng() % node->attribute_size());
          if (attr->ints_size() > 0) attr->set_ints(rng() % attr->ints_size(), InterestingInt(rng));
          if (attr->has_i()) attr->set_i(InterestingInt(rng));
          if (attr->has_f()) attr->set_f(rng() % 2 ? -1e30f : 0.0f);
          if (attr->has_s()) attr->set_s("bogus_value");
          if (rng() % 4 == 0) attr->clear_ints();
        }
      }
      break;
    case 1:  // an initializer dim
      if (graph->initializer_size() > 0) {
        onnx::TensorProto* init = graph->mutable_initializer(rng() % graph->initializer_size());
        if (init->dims_size() > 0) init->set_dims(rng() % init->dims_size(), InterestingInt(rng));
      }
      break;
    case 2:  // a declared input dim
      if (graph->input_size() > 0) {
        onnx::TensorShapeProto* shape =
            graph->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape();
        if (shape->dim_size() > 0) {
          shape->mutable_dim(rng() % shape->dim_size())->set_dim_value(InterestingInt(rng));
        }
      }
      break;
    case 3:  // drop or rename a node input
      if (graph->node_size() > 0) {
        onnx::NodeProto* node = graph->mutable_node(rng() % graph->node_size());
        if (node->input_size() > 0) {
          if (rng() % 2) {
            node->mutable_input()->RemoveLast();
          } else {
            node->set_input(rng() % node->input_size(), rng() % 2 ? "" : node->output(0));
          }
        }
      }
      break;
    case 4:  // an initializer's data type or data
      if (graph->initializer_size() > 0) {
        onnx::TensorProto* init = graph->mutable_initializer(rng() % graph->initializer_size());
        if (rng() % 2) {
          init->set_data_type(static_cast<int32_t>(rng() % 20));
        } else {
          init->mutable_raw_data()->resize(init->raw_data().size() / 2);
        }
      }
      break;
    default:  // an op type
      if (graph->node_size() > 0) {
        static const char* kOps[] = {"Relu",   "Conv",    "Add",  "Concat",    "Reshape", "Softmax",
                                     "Resize", "MaxPool", "Gemm", "Transpose", "Slice"};
        graph->mutable_node(rng() % graph->node_size())->set_op_type(kOps[rng() % std::size(kOps)]);
      }
      break;
  }
  return model.SerializeAsString();
}

std::string MutateBytes(const std::string& seed, std::mt19937& rng) {
  std::string bytes = seed;
  switch (rng() % 4) {
    case 0:  // truncation
      bytes.resize(rng() % bytes.size());
      break;
    case 1:  // byte flips
      for (int i = 0, n = 1 + rng() % 8; i < n; ++i) {
        bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
      }
      break;
    case 2:  // a corrupted length field (or tag) somewhere
      OverwriteVarint(&bytes, rng() % bytes.size(),
                      rng() % 2 ? (uint64_t{1} << (rng() % 40)) : rng() % 300);
      break;
    default:  // off-by-one bytes: lengths and counts become inconsistent
      for (int i = 0, n = 1 + rng() % 3; i < n; ++i) {
        bytes[rng() % bytes.size()] += static_cast<char>(rng() % 2 ? 1 : -1);
      }
      break;
  }
  return bytes;
}

struct Tally {
  int loaded = 0;
  int ran = 0;
  int rejected = 0;
};

// Compiles and, if that works, runs `bytes` on zero inputs. Every error must
// be one of the documented codes.
void Exercise(const std::string& bytes, Tally* tally) {
  CompileOptions options;
  options.max_tensor_bytes = kMaxTensorBytes;
  options.max_batch_size = 4;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(bytes, options);
  if (!model.ok()) {
    ++tally->rejected;
    EXPECT_THAT(model.status().code(),
                AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnimplemented,
                      absl::StatusCode::kResourceExhausted))
        << model.status();
    EXPECT_FALSE(model.status().message().empty());
    return;
  }
  ++tally->loaded;
  std::vector<Tensor> inputs;
  for (const TensorInfo& info : (*model)->inputs()) {
    std::vector<int64_t> shape = info.shape;
    int64_t bytes_needed = static_cast<int64_t>(DataTypeSize(info.type));
    for (int64_t& dim : shape) {
      if (dim < 0) dim = 1;
      if (dim > 0 && bytes_needed > kMaxRunInputBytes / dim) return;  // too big to run
      bytes_needed *= dim;
    }
    inputs.push_back(Tensor::Zeros(info.type, shape));
  }
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create(*model, ContextOptions{/*threads=*/1});
  ASSERT_TRUE(context.ok()) << context.status();
  absl::StatusOr<std::vector<Tensor>> outputs = (*context)->Run(inputs);
  if (outputs.ok()) {
    ++tally->ran;
    EXPECT_EQ(outputs->size(), (*model)->outputs().size());
  } else {
    EXPECT_THAT(outputs.status().code(),
                AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnimplemented,
                      absl::StatusCode::kResourceExhausted))
        << outputs.status();
  }
}

TEST(EngineImportSanitizedTest, SeedModelsLoadAndRun) {
  std::vector<SeedModel> seeds = BuiltSeeds();
  for (SeedModel& seed : TestDataSeeds()) seeds.push_back(std::move(seed));
  for (const SeedModel& seed : seeds) {
    SCOPED_TRACE(seed.name);
    Tally tally;
    Exercise(seed.bytes, &tally);
    EXPECT_EQ(tally.ran, 1);
  }
}

// Every model of the ONNX backend test data (weights bound as initializers,
// zero inputs): the engine's kernels and planner on ~1000 valid models,
// under the sanitizers. Values are checked by engine_conformance_test.
TEST(EngineImportSanitizedTest, TestDataModelsRunClean) {
  const std::filesystem::path root = "/usr/share/libonnx-testdata/data";
  if (!std::filesystem::is_directory(root)) {
    GTEST_SKIP() << root << " missing: run scripts/install-deps.sh";
  }
  __sanitizer_set_death_callback(PrintCurrentCase);
  const bool verbose = std::getenv("RECTIFIER_FUZZ_VERBOSE") != nullptr;
  Tally tally;
  int models = 0;
  int unusable = 0;
  for (const char* suite : {"node", "pytorch-converted", "pytorch-operator", "simple"}) {
    std::vector<std::filesystem::path> dirs;
    for (const auto& entry : std::filesystem::directory_iterator(root / suite)) {
      if (std::filesystem::exists(entry.path() / "model.onnx")) dirs.push_back(entry.path());
    }
    std::sort(dirs.begin(), dirs.end());
    for (const std::filesystem::path& dir : dirs) {
      const std::string name = absl::StrCat(suite, "/", dir.filename().string());
      std::snprintf(g_current_case, sizeof(g_current_case), "%s", name.c_str());
      if (verbose) std::cerr << "exercising " << name << std::endl;
      absl::StatusOr<std::string> bytes = TestDataSeed(dir);
      ++models;
      if (!bytes.ok()) {  // sequence or string inputs and the like
        ++unusable;
        continue;
      }
      SCOPED_TRACE(name);
      Exercise(*bytes, &tally);
    }
  }
  std::cout << models << " models: " << unusable << " not expressible, " << tally.rejected
            << " rejected, " << tally.ran << " ran\n";
  EXPECT_GT(models, 1000);
  EXPECT_GT(tally.ran, 500);
}

TEST(EngineImportSanitizedTest, HostileModelsGiveAStatusNeverACrash) {
  __sanitizer_set_death_callback(PrintCurrentCase);
  Tally tally;
  std::vector<testing::HostileModel> hostile = testing::HostileModels();
  // RECTIFIER_HOSTILE_ONLY=<name> exercises one model (to triage a report).
  if (const char* only = std::getenv("RECTIFIER_HOSTILE_ONLY"); only != nullptr) {
    hostile.erase(std::remove_if(hostile.begin(), hostile.end(),
                                 [&](const testing::HostileModel& m) { return m.name != only; }),
                  hostile.end());
  }
  for (const testing::HostileModel& model : hostile) {
    SCOPED_TRACE(model.name);
    std::snprintf(g_current_case, sizeof(g_current_case), "hostile model %s", model.name.c_str());
    // UBSan's fatal path skips the death callback: name each model up front.
    std::cerr << "hostile model " << model.name << std::endl;
    Exercise(model.bytes, &tally);
  }
  EXPECT_EQ(tally.rejected + tally.loaded, static_cast<int>(hostile.size()));
}

TEST(EngineImportSanitizedTest, MutatedModelsGiveAStatusNeverACrash) {
  __sanitizer_set_death_callback(PrintCurrentCase);
  // RECTIFIER_FUZZ_VERBOSE=<dir> names each mutation before it runs (UBSan's
  // fatal path may not reach the death callback) and writes it to
  // <dir>/last_mutation.onnx.
  const char* verbose = std::getenv("RECTIFIER_FUZZ_VERBOSE");
  // RECTIFIER_FUZZ_ONLY=<#> or <first>-<last> exercises only those mutations
  // (to triage a report, or to resume after one).
  int first = -1, last = -1;
  if (const char* only_env = std::getenv("RECTIFIER_FUZZ_ONLY"); only_env != nullptr) {
    first = last = std::atoi(only_env);
    if (const char* dash = std::strchr(only_env, '-'); dash != nullptr) last = std::atoi(dash + 1);
  }
  const bool only = first >= 0;
  // RECTIFIER_FUZZ_MUTATIONS=<n> per seed, for longer exploratory runs.
  const char* count_env = std::getenv("RECTIFIER_FUZZ_MUTATIONS");
  const int per_seed = count_env != nullptr ? std::max(1, std::atoi(count_env)) : kMutationsPerSeed;
  std::vector<SeedModel> seeds = BuiltSeeds();
  for (SeedModel& seed : TestDataSeeds()) seeds.push_back(std::move(seed));
  Tally tally;
  int mutations = 0;
  for (size_t s = 0; s < seeds.size(); ++s) {
    std::mt19937 rng(static_cast<uint32_t>(1234 + s));
    for (int i = 0; i < per_seed; ++i) {
      const std::string bytes =
          i % 2 == 0 ? MutateBytes(seeds[s].bytes, rng) : MutateStructure(seeds[s].bytes, rng);
      const int index = mutations++;
      if (only && (index < first || index > last)) continue;
      const std::string label = absl::StrCat(seeds[s].name, " mutation ", i, " (#", index, ")");
      SCOPED_TRACE(label);
      std::snprintf(g_current_case, sizeof(g_current_case), "%s", label.c_str());
      if (verbose) {
        std::cerr << "exercising " << label << std::endl;
        std::ofstream(std::string(verbose) + "/last_mutation.onnx", std::ios::binary) << bytes;
      }
      Exercise(bytes, &tally);
    }
  }
  std::cout << mutations << " mutations: " << tally.rejected << " rejected, " << tally.loaded
            << " loaded, " << tally.ran << " ran\n";
  EXPECT_GE(mutations, std::min(200, per_seed * static_cast<int>(seeds.size())));
  if (only) return;
  EXPECT_EQ(tally.rejected + tally.loaded, mutations);
  // Both paths must be exercised, or the mutations are too gentle or too harsh.
  EXPECT_GT(tally.rejected, 0);
  EXPECT_GT(tally.ran, 0);
}

}  // namespace
}  // namespace rectifier::engine
