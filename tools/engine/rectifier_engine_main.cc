// rectifier-engine: loads an ONNX model with the engine, prints the compiled
// plan, runs N iterations at batch B with T threads and reports latency
// percentiles and throughput; reads/writes TensorProto .pb files.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/process_env.h"
#include "server/common/thread_name.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "server/engine/ir/onnx_tensor.h"

namespace {

using rectifier::engine::CompiledModel;
using rectifier::engine::DataType;
using rectifier::engine::ExecutionContext;
using rectifier::engine::Tensor;

// `shape` (from --shape) when given, else the model's with the batch and 1
// for every other dynamic dimension.
Tensor RandomInput(const rectifier::engine::TensorInfo& info, int batch,
                   const std::vector<int64_t>& given, std::mt19937& rng) {
  std::vector<int64_t> shape = info.shape;
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] < 0) shape[d] = d == 0 ? batch : 1;
  if (!given.empty()) shape = given;
  Tensor t = Tensor::Zeros(info.type, shape);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  if (info.type == DataType::kFloat32) {
    for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = dist(rng);
  }
  return t;
}

// "Conv '/b0/conv/Conv' [...] ...  [jit:avx2]" -> {"/b0/conv/Conv", "jit:avx2"}.
std::pair<std::string, std::string> NodeAndImpl(const std::string& label) {
  std::string node, impl;
  const size_t q = label.find('\'');
  if (q != std::string::npos) {
    const size_t e = label.find('\'', q + 1);
    if (e != std::string::npos) node = label.substr(q + 1, e - q - 1);
  } else if (const size_t f = label.find("from "); f != std::string::npos) {
    node = label.substr(f + 5, label.find_first_of(" )", f + 5) - f - 5);
  }
  const size_t b = label.rfind('[');
  if (b != std::string::npos && label.back() == ']')
    impl = label.substr(b + 1, label.size() - b - 2);
  return {node, impl};
}

// Prints each step's mean time in plan order, then the totals by op and
// implementation; writes the same as JSON when `json_path` is set.
bool ReportProfile(const std::vector<rectifier::engine::StepProfile>& profiles,
                   const std::string& json_path) {
  nlohmann::json all = nlohmann::json::array();
  for (const auto& p : profiles) {
    if (p.runs == 0) continue;
    double total = 0;
    for (double v : p.ms) total += v;
    total /= p.runs;
    std::printf("step profile, batch %d, %d runs: %.2f ms per run in steps\n", p.batch, p.runs,
                total);
    std::printf("  %4s %9s %6s  %s\n", "step", "ms", "%", "step");
    std::map<std::string, std::pair<double, int>> groups;
    nlohmann::json steps = nlohmann::json::array();
    for (size_t s = 0; s < p.steps.size(); ++s) {
      const double ms = p.ms[s] / p.runs;
      std::string label = p.steps[s];
      std::printf("  %4zu %9.3f %5.1f%%  %s\n", s, ms, total > 0 ? 100.0 * ms / total : 0.0,
                  label.substr(0, 150).c_str());
      const auto [node, impl] = NodeAndImpl(label);
      const std::string op = label.substr(0, label.find(' '));
      auto& g = groups[absl::StrCat(op, " ", impl)];
      g.first += ms;
      ++g.second;
      steps.push_back(
          {{"step", s}, {"ms", ms}, {"op", op}, {"node", node}, {"impl", impl}, {"label", label}});
    }
    std::vector<std::pair<double, std::string>> order;
    order.reserve(groups.size());
    for (const auto& [k, v] : groups) order.push_back({v.first, k});
    std::sort(order.rbegin(), order.rend());
    std::printf("  by op and implementation:\n");
    for (const auto& [ms, k] : order) {
      std::printf("  %9.3f ms %5.1f%% %4d x %s\n", ms, total > 0 ? 100.0 * ms / total : 0.0,
                  groups[k].second, k.c_str());
    }
    all.push_back({{"batch", p.batch}, {"runs", p.runs}, {"total_ms", total}, {"steps", steps}});
  }
  if (json_path.empty()) return true;
  std::ofstream out(json_path);
  out << all.dump(1) << "\n";
  if (!out) {
    std::cerr << "cannot write " << json_path << "\n";
    return false;
  }
  return true;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(std::lround(p / 100.0 * (v.size() - 1))));
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  // Bounded OpenMP spinning unless the caller chose (see process_env.h).
  rectifier::common::ReexecWithBoundedOpenMpSpinning(argv);
  rectifier::common::NameThreadAfterExecutable();  // not "exe" after the re-exec
  CLI::App app{"rectifier-engine: compile and run an ONNX model with the Rectifier engine"};
  std::string model_path;
  int batch = 1, threads = 0, iterations = 20, warmup = 3, max_batch = 64;
  bool print_plan = false, no_fuse = false;
  std::vector<std::string> input_files;
  std::string output_file;
  app.add_option("model", model_path, "ONNX model file")->required();
  app.add_option("-b,--batch", batch, "batch size (batchable models)");
  app.add_option("-t,--threads", threads, "OpenMP threads (0 = all CPUs)");
  app.add_option("-n,--iterations", iterations, "timed iterations");
  app.add_option("-w,--warmup", warmup, "untimed warm-up iterations");
  app.add_option("--max-batch", max_batch, "CompileOptions::max_batch_size");
  app.add_flag("-p,--plan", print_plan, "print the compiled plan");
  app.add_flag("--no-fuse", no_fuse, "disable activation/residual fusion");
  bool onednn_only = false;
  app.add_flag("--onednn-only", onednn_only,
               "no Rectifier kernels where oneDNN has only generic ones (strided softmax, "
               "blocked concat/slice): to compare");
  bool no_zero_copy = false;
  app.add_flag("--no-zero-copy", no_zero_copy,
               "copy contiguous slices and concats instead of viewing one buffer: to compare");
  bool no_dw_fusion = false;
  app.add_flag("--no-dw-fusion", no_dw_fusion,
               "run a 1x1 convolution and the depthwise one reading its output as two steps "
               "instead of one: to compare");
  bool no_se_fusion = false;
  app.add_flag("--no-se-fusion", no_se_fusion,
               "run squeeze-and-excitation blocks as their five ops instead of one step: to "
               "compare");
  bool no_batch_split = false;
  app.add_flag("--no-batch-split", no_batch_split,
               "run a batch on the whole thread team instead of as one part per thread "
               "(a batch that is a multiple of the threads): to compare");
  bool no_channel_split = false;
  app.add_flag("--no-channel-split", no_channel_split,
               "run 1x1 convolutions with at most 100 output pixels at batch 1 on the whole "
               "thread team instead of as one part per thread over slices of the output "
               "channels: to compare");
  std::string silu_kernel = "rectifier";
  app.add_option("--silu-kernel", silu_kernel,
                 "kernel for SiLU: rectifier (a separate in-place pass after the producer) or "
                 "onednn (oneDNN's swish post-op, fused): to compare")
      ->capture_default_str()
      ->check(CLI::IsMember({"rectifier", "onednn"}));
  std::string depthwise_kernel = "auto";
  app.add_option("--depthwise-kernel", depthwise_kernel,
                 "kernel for depthwise convolutions: auto (Rectifier's where it measured faster "
                 "than oneDNN's), rectifier (Rectifier's wherever it can run) or onednn: to "
                 "compare")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "rectifier", "onednn"}));
  std::string conv3x3_kernel = "auto";
  app.add_option("--conv3x3-kernel", conv3x3_kernel,
                 "kernel for 3x3 stride-1 convolutions: auto (Rectifier's Winograd F(4x4, 3x3) "
                 "or F(2x2, 3x3) where it measured faster than oneDNN's direct kernel), "
                 "auto-f2x2 (the same without F(4x4, 3x3)), winograd (F(2x2, 3x3) wherever it "
                 "can run), winograd-f4x4 (F(4x4, 3x3) wherever it can run) or onednn: to "
                 "compare")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "auto-f2x2", "winograd", "winograd-f4x4", "onednn"}));
  std::string conv_layout = "tuned", tuning_cache;
  app.add_option("--conv-layout", conv_layout,
                 "activation layout convolutions ask for: any (oneDNN's choice), blocked8 "
                 "(nChw8c), blocked16 (nChw16c), nhwc, or tuned (each candidate timed when "
                 "the plan compiles, the fastest kept)")
      ->capture_default_str()
      ->check(CLI::IsMember({"any", "blocked8", "blocked16", "nhwc", "tuned"}));
  app.add_option("--tuning-cache", tuning_cache,
                 "with --conv-layout tuned: directory keeping the choices (a file per model, "
                 "CPU and thread count)");
  app.add_option("-i,--input", input_files, "input TensorProto .pb (one per model input)");
  std::vector<std::string> shape_args;
  app.add_option("--shape", shape_args,
                 "random input shape, e.g. 1x3x320x480 (one per model input, in order; for "
                 "models with dynamic dimensions)");
  app.add_option("-o,--output", output_file, "write output 0 as a TensorProto .pb");
  int stats_every = 0;
  std::vector<std::string> replace;
  std::string gelu;
  app.add_option("--activation-stats", stats_every,
                 "sample every N-th run for activation statistics and print the table (0 = off)");
  app.add_option("--replace", replace,
                 "replace an activation kind: FROM=TO[:ALPHA[:BETA]] (e.g. SiLU=Relu, "
                 "Relu=LeakyRelu:0.01); repeatable");
  app.add_option("--gelu", gelu, "GELU form: erf or tanh");
  bool profile = false;
  std::string profile_json;
  app.add_flag("--profile", profile,
               "time every step of the timed iterations; print them and the totals by op");
  app.add_option("--profile-json", profile_json, "with --profile: also write the steps as JSON");
  CLI11_PARSE(app, argc, argv);
  // oneDNN fixes a primitive's thread decomposition when the plan compiles
  // (omp_get_max_threads of the compiling thread) and runs that many threads
  // whatever ExecutionContext asks later, so compile with the requested count:
  // without this, -t 1 ran two-thread teams on a 2-CPU machine.
  if (threads > 0) omp_set_num_threads(threads);

  rectifier::engine::CompileOptions options;
  options.fuse = !no_fuse;
  options.rectifier_kernels = !onednn_only;
  options.zero_copy = !no_zero_copy;
  options.fuse_depthwise = !no_dw_fusion;
  options.batch_split = !no_batch_split;
  options.channel_split = !no_channel_split;
  options.fuse_squeeze_excite = !no_se_fusion;
  rectifier::engine::ParseDepthwiseKernel(depthwise_kernel, &options.depthwise_kernel);
  rectifier::engine::ParseConv3x3Kernel(conv3x3_kernel, &options.conv3x3_kernel);
  options.silu_kernel = silu_kernel == "onednn" ? rectifier::engine::ActivationKernel::kOneDnn
                                                : rectifier::engine::ActivationKernel::kRectifier;
  rectifier::engine::ParseConvLayout(conv_layout, &options.conv_layout);
  options.tuning_cache_dir = tuning_cache;
  options.max_batch_size = std::max(max_batch, batch);
  options.activation_stats_sample_every = stats_every;
  options.gelu_approximation = gelu;
  for (const std::string& r : replace) {
    const std::vector<std::string> eq = absl::StrSplit(r, '=');
    if (eq.size() != 2) {
      std::cerr << "--replace '" << r << "': expected FROM=TO[:ALPHA[:BETA]]\n";
      return 1;
    }
    const std::vector<std::string> to = absl::StrSplit(eq[1], ':');
    rectifier::engine::ActivationReplacement rule;
    rule.from = eq[0];
    rule.to = to[0];
    float v;
    if (to.size() > 1) {
      if (!absl::SimpleAtof(to[1], &v)) {
        std::cerr << "--replace '" << r << "': bad alpha '" << to[1] << "'\n";
        return 1;
      }
      rule.alpha = v;
    }
    if (to.size() > 2) {
      if (!absl::SimpleAtof(to[2], &v)) {
        std::cerr << "--replace '" << r << "': bad beta '" << to[2] << "'\n";
        return 1;
      }
      rule.beta = v;
    }
    options.replace.push_back(rule);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto model = CompiledModel::FromFile(model_path, options);
  if (!model.ok()) {
    std::cerr << "load failed: " << model.status() << "\n";
    return 1;
  }
  const double load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto env = rectifier::common::EnvOrUnset;
  std::printf("model %s loaded in %.1f ms (batchable: %s, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s)\n",
              model_path.c_str(), load_ms, (*model)->batchable() ? "yes" : "no",
              env("OMP_WAIT_POLICY"), env("GOMP_SPINCOUNT"));
  for (const auto& in : (*model)->inputs())
    std::printf("  input  %s %s [%s]\n", in.name.c_str(), DataTypeName(in.type),
                absl::StrJoin(in.shape, ",").c_str());
  for (const auto& out : (*model)->outputs())
    std::printf("  output %s %s [%s]\n", out.name.c_str(), DataTypeName(out.type),
                absl::StrJoin(out.shape, ",").c_str());
  std::printf("  %s\n", (*model)->activation_summary().ToString().c_str());
  if (!(*model)->activation_summary().warning.empty())
    std::printf("  warning: %s\n", (*model)->activation_summary().warning.c_str());
  if (!(*model)->batchable()) batch = 1;

  std::vector<Tensor> inputs;
  std::mt19937 rng(42);
  for (size_t i = 0; i < (*model)->inputs().size(); ++i) {
    if (i < input_files.size()) {
      auto t = rectifier::engine::ReadTensorFile(input_files[i]);
      if (!t.ok()) {
        std::cerr << "input: " << t.status() << "\n";
        return 1;
      }
      inputs.push_back(*std::move(t));
      if ((*model)->batchable() && !inputs.back().shape.empty())
        batch = static_cast<int>(inputs.back().shape[0]);
    } else {
      std::vector<int64_t> given;
      if (i < shape_args.size()) {
        for (const auto part : absl::StrSplit(shape_args[i], 'x')) {
          int64_t d = 0;
          if (!absl::SimpleAtoi(part, &d) || d < 0) {
            std::cerr << "--shape '" << shape_args[i] << "': expected dims like 1x3x320x480\n";
            return 1;
          }
          given.push_back(d);
        }
      }
      inputs.push_back(RandomInput((*model)->inputs()[i], batch, given, rng));
    }
  }
  rectifier::engine::InputShapes shapes;
  for (const auto& t : inputs) shapes.push_back(t.shape);
  const auto c0 = std::chrono::steady_clock::now();
  auto plan = (*model)->DescribePlanForShapes(shapes);
  if (!plan.ok()) {
    std::cerr << "compile failed: " << plan.status() << "\n";
    return 1;
  }
  const double compile_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c0).count();
  if (print_plan) std::printf("%s", plan->c_str());
  std::vector<std::string> shape_strings;
  for (const auto& shape : shapes) shape_strings.push_back(absl::StrJoin(shape, "x"));
  std::printf("plan for input shapes %s ready in %.1f ms\n",
              absl::StrJoin(shape_strings, " ").c_str(), compile_ms);

  auto ctx = ExecutionContext::Create(*model, {threads});
  if (!ctx.ok()) {
    std::cerr << "context: " << ctx.status() << "\n";
    return 1;
  }
  std::vector<Tensor> outputs;
  for (int i = 0; i < warmup; ++i) {
    auto out = (*ctx)->Run(inputs);
    if (!out.ok()) {
      std::cerr << "run failed: " << out.status() << "\n";
      return 1;
    }
    outputs = *std::move(out);
  }
  std::vector<const Tensor*> in_ptrs;
  in_ptrs.reserve(inputs.size());
  for (const auto& t : inputs) in_ptrs.push_back(&t);
  if (outputs.empty()) {
    auto out = (*ctx)->Run(inputs);
    if (!out.ok()) {
      std::cerr << "run failed: " << out.status() << "\n";
      return 1;
    }
    outputs = *std::move(out);
  }
  std::vector<Tensor*> out_ptrs;
  out_ptrs.reserve(outputs.size());
  for (auto& t : outputs) out_ptrs.push_back(&t);
  std::vector<double> ms;
  (*ctx)->EnableStepProfile(profile);
  for (int i = 0; i < iterations; ++i) {
    const auto s = std::chrono::steady_clock::now();
    auto st = (*ctx)->RunInto(in_ptrs, out_ptrs);
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s).count());
    if (!st.ok()) {
      std::cerr << "run failed: " << st << "\n";
      return 1;
    }
  }
  if (const int parts = (*ctx)->last_batch_parts(); parts > 1) {
    std::printf("batch split: %d parts of %d, one thread each (--no-batch-split: whole team)\n",
                parts, batch / parts);
  }
  if (!ms.empty()) {
    const double p50 = Percentile(ms, 50);
    std::printf(
        "batch %d, threads %d, %d iterations: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, "
        "%.1f images/s (at p50)\n",
        batch, threads, iterations, p50, Percentile(ms, 90), Percentile(ms, 99),
        batch * 1000.0 / p50);
  }
  if (profile && !ReportProfile((*ctx)->StepProfiles(), profile_json)) return 1;
  if (stats_every > 0) {
    const auto stats = (*model)->activation_statistics();
    std::printf("activation statistics (every %d-th run sampled):\n", stats_every);
    std::printf("  %-40s %-12s %8s %8s %10s  %s\n", "layer", "kind", "channels", "samples", "zeros",
                "dead channels");
    for (const auto& l : stats) {
      std::printf("  %-40s %-12s %8lld %8lld %9.2f%%  %zu [%s]\n", l.name.c_str(), l.kind.c_str(),
                  static_cast<long long>(l.channels), static_cast<long long>(l.sampled_count),
                  100.0 * l.zero_fraction, l.dead_channels.size(),
                  absl::StrJoin(l.dead_channels, ",").c_str());
    }
  }
  if (!output_file.empty() && !outputs.empty()) {
    auto st =
        rectifier::engine::WriteTensorFile(outputs[0], (*model)->outputs()[0].name, output_file);
    if (!st.ok()) {
      std::cerr << "output: " << st << "\n";
      return 1;
    }
    std::printf("wrote %s\n", output_file.c_str());
  }
  return 0;
}
