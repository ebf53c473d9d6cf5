// ModelRepository's load of one version (LoadVersion): its config turned
// into compile options, the compile on a thread of its own, instances and
// their threads, labels, imaging, warm-up, the scheduler and its metrics.
#include <omp.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/common/cpu_info.h"
#include "server/common/status_macros.h"
#include "server/imaging/preprocess.h"
#include "server/repository/engine_executor.h"
#include "server/repository/model_config.h"
#include "server/repository/model_files.h"
#include "server/repository/model_repository.h"
#include "server/repository/warmup.h"
#include "server/scheduling/dynamic_batch_scheduler.h"
#include "server/scheduling/thread_budget.h"
#include "spdlog/spdlog.h"

namespace rectifier::repository {
namespace {

namespace fs = std::filesystem;

// RECTIFIER_TEST_EXECUTE_DELAY_MS (integration tests only): see
// SchedulerOptions::execute_delay. Read once.
absl::Duration TestExecuteDelay() {
  static const absl::Duration delay = [] {
    const char* text = std::getenv("RECTIFIER_TEST_EXECUTE_DELAY_MS");
    int64_t ms = 0;
    if (text == nullptr || !absl::SimpleAtoi(text, &ms) || ms <= 0) return absl::ZeroDuration();
    spdlog::warn("RECTIFIER_TEST_EXECUTE_DELAY_MS: every batch waits {} ms before computing", ms);
    return absl::Milliseconds(ms);
  }();
  return delay;
}

// Instances of the config's instance groups (KIND_GPU is refused); a config
// without any gets one CPU instance, recorded in it.
absl::StatusOr<int> CountInstances(inference::ModelConfig& config) {
  int instances = 0;
  for (const auto& group : config.instance_group()) {
    if (group.kind() == inference::ModelInstanceGroup::KIND_GPU) {
      return absl::UnimplementedError(
          "instance_group kind KIND_GPU: this build has no GPU backend (use KIND_CPU)");
    }
    instances += group.count() > 0 ? group.count() : 1;
  }
  if (instances == 0) {
    instances = 1;
    auto* group = config.add_instance_group();
    group->set_count(1);
    group->set_kind(inference::ModelInstanceGroup::KIND_CPU);
  }
  return instances;
}

// Compiled on a short-lived thread: the OpenMP team that oneDNN's weight
// reorders create belongs to it and is released when it exits. A team left
// on a long-lived loading thread pushes libgomp's managed threads over the
// CPU count, after which it throttles every team's spinning to ~100
// iterations (MobileNetV2 served at 7.3 ms instead of 3.1 ms per request).
absl::StatusOr<std::shared_ptr<const engine::CompiledModel>> CompileOnItsOwnThread(
    const fs::path& file, const engine::CompileOptions& compile, int threads) {
  absl::StatusOr<std::shared_ptr<const engine::CompiledModel>> compiled =
      absl::InternalError("compile did not run");
  // The plan compiled at load takes its OpenMP thread count from the thread
  // that compiles it (oneDNN fixes it per primitive), so give that thread the
  // instances' count.
  std::thread([&] {
    omp_set_num_threads(threads);
    compiled = engine::CompiledModel::FromFile(file.string(), compile);
  }).join();
  return compiled;
}

// The labels of the first output that names a label_filename (it must be
// readable), else `labels.txt` in the model folder when there is one.
absl::StatusOr<std::vector<std::string>> LoadLabels(const fs::path& dir,
                                                    const inference::ModelConfig& config) {
  for (const auto& output : config.output()) {
    if (output.label_filename().empty()) continue;
    const fs::path path = dir / output.label_filename();
    auto labels = ReadLabels(path);
    if (!labels.ok()) {
      return absl::NotFoundError(
          absl::StrCat("output '", output.name(), "' label_filename: ", labels.status().message()));
    }
    if (!labels->empty()) return labels;
    break;
  }
  std::error_code ec;
  if (!fs::exists(dir / kDefaultLabelsFile, ec)) return std::vector<std::string>();
  return ReadLabels(dir / kDefaultLabelsFile);
}

// One executor per instance, each with the warmup samples.
absl::StatusOr<std::vector<std::unique_ptr<EngineExecutor>>> CreateExecutors(
    const std::shared_ptr<const engine::CompiledModel>& model, int instances, int threads,
    const std::vector<WarmupSample>& warmup, const common::Clock* clock) {
  std::vector<std::unique_ptr<EngineExecutor>> executors;
  for (int i = 0; i < instances; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<EngineExecutor> executor,
                     EngineExecutor::Create(model, threads, clock));
    executor->set_warmup(warmup);
    executors.push_back(std::move(executor));
  }
  return executors;
}

// Queue depth, the plan cache and (when the config samples them) activation
// statistics, read at scrape time. REQUIRES: served.metrics and served.scheduler set.
void AddScrapeSources(ServedModel& served, bool activation_statistics) {
  served.queue_depth_source =
      served.metrics->AddQueueDepthSource([scheduler = served.scheduler.get()] {
        return static_cast<double>(scheduler->queue_depth());
      });
  served.plan_cache_source = served.metrics->AddPlanCacheSource([model = served.model] {
    const engine::CompiledModel::PlanCacheStats stats = model->plan_cache_stats();
    return metrics::ModelMetrics::PlanCacheValues{
        static_cast<double>(stats.compiles), static_cast<double>(stats.evictions),
        static_cast<double>(stats.cached), static_cast<double>(stats.hits),
        static_cast<double>(stats.misses)};
  });
  if (!activation_statistics) return;
  served.activation_source = served.metrics->AddActivationSource([model = served.model] {
    const std::vector<engine::ActivationLayerStats> layers = model->activation_statistics();
    std::vector<metrics::ActivationLayerValues> values;
    values.reserve(layers.size());
    for (const engine::ActivationLayerStats& layer : layers) {
      values.push_back({layer.name, layer.zero_fraction,
                        static_cast<int64_t>(layer.dead_channels.size()), layer.channels});
    }
    return values;
  });
}

}  // namespace

absl::StatusOr<engine::CompileOptions> CompileOptionsFromConfig(
    const inference::ModelConfig& config, const RepositoryOptions& options) {
  engine::CompileOptions compile;
  compile.conv_layout = options.conv_layout;
  compile.tuning_cache_dir = options.tuning_cache_dir;
  if (const auto it = config.parameters().find("conv_layout"); it != config.parameters().end()) {
    if (!engine::ParseConvLayout(it->second.string_value(), &compile.conv_layout)) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameters.conv_layout '", it->second.string_value(),
                       "' is not one of tuned, any, blocked8, blocked16, nhwc"));
    }
  }
  if (const auto it = config.parameters().find("conv3x3_kernel"); it != config.parameters().end()) {
    if (!engine::ParseConv3x3Kernel(it->second.string_value(), &compile.conv3x3_kernel)) {
      return absl::InvalidArgumentError(absl::StrCat("parameters.conv3x3_kernel '",
                                                     it->second.string_value(),
                                                     "' is not one of auto, winograd, onednn"));
    }
  }
  if (const auto it = config.parameters().find("batch_split"); it != config.parameters().end()) {
    const std::string& value = it->second.string_value();
    if (value != "true" && value != "false") {
      return absl::InvalidArgumentError(
          absl::StrCat("parameters.batch_split '", value, "' is not true or false"));
    }
    compile.batch_split = value == "true";
  }
  compile.fuse = !config.activation().has_fuse() || config.activation().fuse();
  for (const auto& r : config.activation().replace()) {
    engine::ActivationReplacement rule;
    rule.from = r.from();
    rule.to = r.to();
    if (r.has_alpha()) rule.alpha = r.alpha();
    if (r.has_beta()) rule.beta = r.beta();
    compile.replace.push_back(std::move(rule));
  }
  compile.gelu_approximation = config.activation().gelu_approximation();
  compile.activation_stats_sample_every = config.activation().statistics().sample_every();
  compile.tanh_kernel = config.activation().kernel() == inference::ActivationConfig::RECTIFIER
                            ? engine::ActivationKernel::kRectifier
                            : engine::ActivationKernel::kOneDnn;
  compile.silu_kernel = config.activation().silu_kernel() == inference::ActivationConfig::ONEDNN
                            ? engine::ActivationKernel::kOneDnn
                            : engine::ActivationKernel::kRectifier;
  compile.max_batch_size =
      config.max_batch_size() > 0 ? config.max_batch_size() : options.default_max_batch_size;
  if (config.engine().max_cached_plans() > 0) {
    compile.max_cached_plans = static_cast<int>(config.engine().max_cached_plans());
  }
  // Config dims leave out the batch of a batching model; the engine's bounds
  // and shapes are full shapes.
  const bool batched = config.max_batch_size() > 0;
  for (const auto& bound : config.engine().max_input_dims()) {
    std::vector<int64_t> dims(bound.dims().begin(), bound.dims().end());
    if (batched) dims.insert(dims.begin(), -1);
    compile.max_input_dims[bound.name()] = std::move(dims);
  }
  // The first model_warmup entry with dims for its inputs is the shape the
  // model is checked with at load (a model with dynamic height and width).
  for (const auto& warmup : config.model_warmup()) {
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& [name, input] : warmup.inputs()) {
      if (input.dims().empty()) continue;
      std::vector<int64_t> shape(input.dims().begin(), input.dims().end());
      if (batched) shape.insert(shape.begin(), std::max<int64_t>(1, warmup.batch_size()));
      shapes[name] = std::move(shape);
    }
    if (!shapes.empty()) {
      compile.load_shapes = std::move(shapes);
      break;
    }
  }
  return compile;
}

absl::StatusOr<int> ModelRepository::ThreadsPerInstance(const std::string& name, int64_t version,
                                                        const inference::ModelConfig& config,
                                                        int instances) const {
  // The model config's intra_op_threads wins over --intra-op-threads; with
  // neither, the CPUs are split between the instances (PlanThreads).
  int requested = options_.intra_op_threads;
  if (const auto it = config.parameters().find("intra_op_threads");
      it != config.parameters().end()) {
    if (!absl::SimpleAtoi(it->second.string_value(), &requested) || requested < 1) {
      return absl::InvalidArgumentError(absl::StrCat("parameters.intra_op_threads '",
                                                     it->second.string_value(),
                                                     "' is not a positive integer"));
    }
  }
  const int cpus = options_.cpus > 0 ? options_.cpus : common::AvailableCpus();
  const scheduling::ThreadBudget budget = scheduling::PlanThreads(cpus, instances, requested);
  if (budget.oversubscribed) {
    spdlog::warn("model={} version={}: {} instance(s) x {} thread(s) exceed the {} CPUs available",
                 name, version, instances, budget.intra_op_threads, cpus);
  }
  return budget.intra_op_threads;
}

absl::StatusOr<std::shared_ptr<ServedModel>> ModelRepository::LoadVersion(
    const std::string& name, const inference::ModelConfig& base_config, int64_t version) const {
  const fs::path dir = fs::path(options_.root) / name;
  const absl::Time load_start = absl::Now();
  inference::ModelConfig config = base_config;
  ASSIGN_OR_RETURN(const engine::CompileOptions compile,
                   CompileOptionsFromConfig(config, options_));
  const fs::path file = dir / std::to_string(version) / ModelFileName(config);
  // Series of a version not served yet start in state loading (compile and
  // warm-up); a version already served keeps its state (and series) until
  // this copy replaces it.
  std::shared_ptr<metrics::ModelMetrics> version_metrics;
  if (options_.metrics != nullptr) {
    version_metrics = options_.metrics->ForModel(name, std::to_string(version));
  }
  ASSIGN_OR_RETURN(const int instances, CountInstances(config));
  ASSIGN_OR_RETURN(const int threads, ThreadsPerInstance(name, version, config, instances));
  ASSIGN_OR_RETURN(std::shared_ptr<const engine::CompiledModel> model,
                   CompileOnItsOwnThread(file, compile, threads));
  const absl::Duration compile_time = absl::Now() - load_start;
  spdlog::info("model={} version={} {}", name, version, model->activation_summary().ToString());
  if (compile.conv_layout == engine::ConvLayout::kTuned && !model->has_value_inputs()) {
    // The load plan's choice and its timings (the first line of its plan).
    if (absl::StatusOr<std::string> plan = model->DescribePlan(1); plan.ok()) {
      const std::string first = plan->substr(0, plan->find('\n'));
      if (first.rfind("conv layout:", 0) == 0) {
        spdlog::info("model={} version={} load plan {}", name, version, first);
      }
    }
  }
  if (!model->activation_summary().warning.empty()) {
    spdlog::warn("model={} version={}: {}", name, version, model->activation_summary().warning);
  }
  RETURN_IF_ERROR(CompleteConfigFromModel(*model, &config));
  ASSIGN_OR_RETURN(std::vector<std::string> labels, LoadLabels(dir, config));
  ASSIGN_OR_RETURN(ImagingView imaging, BuildModelImaging(name, config, *model, labels));
  if (imaging.ok() && !config.has_preprocessing()) {
    // Images (vision API, BYTES inputs) still work, with defaults that may
    // not be the model's: say which, once, where the operator looks.
    spdlog::warn(
        "model={} version={} has no preprocessing block in config.pbtxt: images sent to it are "
        "preprocessed with the defaults ({}); add a preprocessing block if the model expects "
        "other scaling, mean/std or resizing",
        name, version, imaging::DescribePreprocessing((*imaging)->preprocess));
  }
  // Warmup runs when the scheduler starts, on each instance's own thread
  // (EngineExecutor::Prepare), before the version is published.
  ASSIGN_OR_RETURN(const std::vector<WarmupSample> warmup,
                   WarmupSamples(config, *model, dir.string()));
  // The batch sizes warm-up compiles plans for, for the load line.
  std::set<int64_t> warm_batches;
  for (const WarmupSample& sample : warmup) {
    if (!sample.inputs.empty() && !sample.inputs[0].shape.empty()) {
      warm_batches.insert(config.max_batch_size() > 0 ? sample.inputs[0].shape[0] : 1);
    }
  }
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<EngineExecutor>> executors,
                   CreateExecutors(model, instances, threads, warmup, options_.clock));

  auto served = std::make_shared<ServedModel>();
  served->name = name;
  served->version = version;
  served->model = model;
  served->labels = std::move(labels);
  served->imaging = std::move(imaging);
  served->stats = std::make_unique<ModelStats>(config.max_batch_size(), options_.clock);
  served->metrics = std::move(version_metrics);
  served->observer = std::make_unique<RequestObserver>(served->stats.get(), served->metrics.get());
  if (served->metrics != nullptr) served->metrics->SetInstances(instances);
  std::vector<std::unique_ptr<scheduling::BatchExecutor>> instances_executors;
  for (auto& executor : executors) {
    executor->set_observer(served->observer.get());
    instances_executors.push_back(std::move(executor));
  }
  scheduling::SchedulerOptions scheduler_options =
      SchedulerOptionsFromConfig(config, std::to_string(version));
  scheduler_options.execute_delay = TestExecuteDelay();
  ASSIGN_OR_RETURN(served->scheduler,
                   scheduling::CreateDynamicBatchScheduler(
                       scheduler_options, std::move(instances_executors), options_.clock));
  if (served->metrics != nullptr) {
    AddScrapeSources(*served, compile.activation_stats_sample_every > 0);
  }
  served->config = std::move(config);
  const absl::Duration total = absl::Now() - load_start;
  spdlog::info(
      "model={} version={} loaded in {:.2f} s (import {:.2f} s, plans and warm-up {:.2f} s): {} "
      "instance(s) "
      "x {} thread(s), max_batch_size {}, {} plan(s) for batch {}",
      name, version, absl::ToDoubleSeconds(total), absl::ToDoubleSeconds(compile_time),
      absl::ToDoubleSeconds(total - compile_time), instances, threads,
      served->config.max_batch_size(), model->plan_cache_stats().cached,
      warm_batches.empty() ? std::string("(none warmed)") : absl::StrJoin(warm_batches, ","));
  return served;
}

}  // namespace rectifier::repository
