#include "server/repository/model_repository.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/common/clock.h"
#include "server/common/cpu_info.h"
#include "server/common/status_macros.h"
#include "server/imaging/preprocess.h"
#include "server/repository/engine_executor.h"
#include "server/repository/model_config.h"
#include "server/repository/warmup.h"
#include "server/scheduling/dynamic_batch_scheduler.h"
#include "server/scheduling/thread_budget.h"
#include "spdlog/spdlog.h"

namespace rectifier::repository {
namespace {

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

namespace fs = std::filesystem;

constexpr char kConfigFile[] = "config.pbtxt";
constexpr char kDefaultModelFile[] = "model.onnx";
constexpr char kDefaultLabelsFile[] = "labels.txt";

// The ways a path under the repository root can be spelt in a message: the
// root as configured, absolute and canonical, each with its trailing
// separator (paths are built as root / model / ...). Longest first.
std::vector<std::string> RootPrefixes(const std::string& root) {
  std::vector<std::string> prefixes;
  std::error_code ec;
  const fs::path given(root);
  prefixes.push_back((given / "").string());
  const fs::path absolute = fs::absolute(given, ec);
  if (!ec) prefixes.push_back((absolute / "").string());
  const fs::path canonical = fs::weakly_canonical(given, ec);
  if (!ec) prefixes.push_back((canonical / "").string());
  std::sort(prefixes.begin(), prefixes.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  });
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  return prefixes;
}

bool IsPathChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
         c == '/';
}

// Load errors go to clients (RepositoryModelLoad, RepositoryIndex reasons,
// ModelReady / metadata / inference on a model that is not ready), which must
// not learn the server's file system layout: every path under the repository
// root is cut to its repository-relative form (`<model>/config.pbtxt`,
// `<model>/<version>/model.onnx`). A prefix counts only where a path starts
// (not inside a longer path, e.g. "./" in "../").
std::string RelativeToRoot(const std::string& message, const std::vector<std::string>& prefixes) {
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    size_t cut = 0;
    if (i == 0 || !IsPathChar(message[i - 1])) {
      for (const std::string& prefix : prefixes) {
        if (message.compare(i, prefix.size(), prefix) == 0) {
          cut = prefix.size();
          break;
        }
      }
    }
    if (cut > 0) {
      i += cut;
    } else {
      out.push_back(message[i++]);
    }
  }
  return out;
}

absl::StatusOr<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One label per line (a trailing '\r' dropped). NOT_FOUND naming `path`
// when it cannot be read.
absl::StatusOr<std::vector<std::string>> ReadLabels(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read labels file ", path.string()));
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  return labels;
}

std::string ModelFileName(const inference::ModelConfig& config) {
  return config.default_model_filename().empty() ? kDefaultModelFile
                                                 : config.default_model_filename();
}

// Numeric subdirectories of `dir` that contain `file`, newest first.
std::vector<int64_t> AvailableVersions(const fs::path& dir, const std::string& file) {
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t version = 0;
    if (entry.is_directory(ec) && absl::SimpleAtoi(entry.path().filename().string(), &version) &&
        version > 0 && fs::is_regular_file(entry.path() / file, ec)) {
      versions.push_back(version);
    }
  }
  std::sort(versions.rbegin(), versions.rend());
  return versions;
}

absl::StatusOr<std::vector<int64_t>> SelectVersions(const inference::ModelVersionPolicy& policy,
                                                    const std::vector<int64_t>& available) {
  if (policy.has_all()) return available;
  if (policy.has_specific()) {
    std::vector<int64_t> selected;
    for (const int64_t v : policy.specific().versions()) {
      if (std::find(available.begin(), available.end(), v) == available.end()) {
        return absl::NotFoundError(
            absl::StrCat("version_policy.specific names version ", v, ", which has no model file"));
      }
      selected.push_back(v);
    }
    std::sort(selected.rbegin(), selected.rend());
    return selected;
  }
  const size_t n = policy.has_latest() ? policy.latest().num_versions() : 1;
  return std::vector<int64_t>(available.begin(), available.begin() + std::min(n, available.size()));
}

}  // namespace

absl::StatusOr<ControlMode> ParseControlMode(const std::string& text) {
  if (text == "none") return ControlMode::kNone;
  if (text == "poll") return ControlMode::kPoll;
  if (text == "explicit") return ControlMode::kExplicit;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model control mode '", text, "' (expected none, poll or explicit)"));
}

absl::Status ValidateModelName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("model name is empty");
  if (name.size() > 128) return absl::InvalidArgumentError("model name is over 128 characters");
  if (name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("model name '", name, "' starts with '.'"));
  }
  for (const char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return absl::InvalidArgumentError(
          absl::StrCat("model name '", name, "' may only hold letters, digits, '_', '-', '.'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Create(
    const RepositoryOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(options.root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository '", options.root, "' is not a directory"));
  }
  std::unique_ptr<ModelRepository> repository(new ModelRepository(options));
  const std::vector<std::string> names = options.mode == ControlMode::kExplicit
                                             ? options.startup_models
                                             : repository->ScanModelNames();
  for (const std::string& name : names) {
    // A broken model is recorded and logged by Load; the others go on.
    repository->Load(name, /*record_new_failure=*/true).IgnoreError();
  }
  if (options.mode == ControlMode::kPoll) {
    repository->poll_thread_ = std::thread([r = repository.get()] { r->PollLoop(); });
  }
  return repository;
}

ModelRepository::~ModelRepository() {
  {
    absl::MutexLock lock(&poll_mu_);
    stop_polling_ = true;
    poll_cv_.SignalAll();
  }
  if (poll_thread_.joinable()) poll_thread_.join();
  Shutdown(options_.clock->Now() + options_.drain_timeout);
}

namespace {

// A model folder holds a config.pbtxt or at least one numeric version
// folder; anything else (e.g. models/tools/ with export scripts) is not a model.
bool LooksLikeModel(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / kConfigFile, ec)) return true;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t version = 0;
    if (entry.is_directory(ec) && absl::SimpleAtoi(entry.path().filename().string(), &version)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::string> ModelRepository::ScanModelNames() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.root, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory(ec) && ValidateModelName(name).ok() && LooksLikeModel(entry.path())) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ModelRepository::Fingerprint(const std::string& name) const {
  // Sizes and modification times of every file under the model's folder:
  // any edit, new version or removed version changes it.
  std::ostringstream out;
  std::error_code ec;
  std::vector<std::string> rows;
  for (auto it = fs::recursive_directory_iterator(fs::path(options_.root) / name, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto mtime = fs::last_write_time(it->path(), ec).time_since_epoch().count();
    rows.push_back(absl::StrCat(it->path().string(), ":", it->file_size(ec), ":", mtime));
  }
  std::sort(rows.begin(), rows.end());
  for (const std::string& row : rows) out << row << '\n';
  return out.str();
}

namespace {

// Compile options from the config's activation block and max_batch_size.
engine::CompileOptions CompileOptionsFromConfig(const inference::ModelConfig& config,
                                                int default_max_batch_size) {
  engine::CompileOptions compile;
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
  compile.max_batch_size =
      config.max_batch_size() > 0 ? config.max_batch_size() : default_max_batch_size;
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
  engine::CompileOptions compile =
      CompileOptionsFromConfig(config, options_.default_max_batch_size);
  compile.conv_layout = options_.conv_layout;
  compile.tuning_cache_dir = options_.tuning_cache_dir;
  if (const auto it = config.parameters().find("conv_layout"); it != config.parameters().end()) {
    if (!engine::ParseConvLayout(it->second.string_value(), &compile.conv_layout)) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameters.conv_layout '", it->second.string_value(),
                       "' is not one of tuned, any, blocked8, blocked16, nhwc"));
    }
  }
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

absl::StatusOr<std::vector<std::shared_ptr<ServedModel>>> ModelRepository::LoadVersions(
    const std::string& name) const {
  RETURN_IF_ERROR(ValidateModelName(name));
  const fs::path dir = fs::path(options_.root) / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("no model '", name, "' in the model repository"));
  }
  inference::ModelConfig config;
  const fs::path config_path = dir / kConfigFile;
  if (fs::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(config_path));
    ASSIGN_OR_RETURN(config, ParseModelConfig(text, config_path.string()));
    if (!config.name().empty() && config.name() != name) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path.string(), ": name '", config.name(),
                       "' differs from the folder name '", name, "'"));
    }
    if (absl::Status s = ValidateModelConfig(config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": ", s.message()));
    }
  }
  config.set_name(name);
  const std::vector<int64_t> available = AvailableVersions(dir, ModelFileName(config));
  if (available.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "' has no version folder with ", ModelFileName(config)));
  }
  ASSIGN_OR_RETURN(const std::vector<int64_t> selected,
                   SelectVersions(config.version_policy(), available));
  std::vector<std::shared_ptr<ServedModel>> versions;
  for (const int64_t version : selected) {
    auto served = LoadVersion(name, config, version);
    if (!served.ok()) {
      return absl::Status(served.status().code(),
                          absl::StrCat("version ", version, ": ", served.status().message()));
    }
    versions.push_back(std::move(served).value());
  }
  return versions;
}

absl::Status ModelRepository::Load(const std::string& name, bool record_new_failure) {
  // A bad name or a model that is not in the repository is the caller's
  // mistake: refused without creating an index entry (which would make the
  // server report not ready).
  RETURN_IF_ERROR(ValidateModelName(name));
  std::error_code ec;
  if (!fs::is_directory(fs::path(options_.root) / name, ec)) {
    return absl::NotFoundError(absl::StrCat("no model '", name, "' in the model repository"));
  }
  absl::MutexLock load_lock(&load_mu_);
  const std::string fingerprint = Fingerprint(name);
  bool new_entry = false;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
    new_entry = models_.find(name) == models_.end();
    ModelSlot& slot = models_[name];
    if (slot.versions.empty()) {
      slot.state = "LOADING";
      if (options_.metrics != nullptr) {
        options_.metrics->SetModelState(name, metrics::ModelState::kLoading);
      }
    }
  }
  auto loaded = LoadVersions(name);
  // The log keeps the full paths; the reason and the returned status reach
  // clients, so they name files relative to the repository.
  std::string reason;
  if (!loaded.ok()) {
    spdlog::error("model={} failed to load: {}", name, std::string(loaded.status().message()));
    reason = RelativeToRoot(std::string(loaded.status().message()), RootPrefixes(options_.root));
  }
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    absl::MutexLock lock(&mu_);
    ModelSlot& slot = models_[name];
    if (!loaded.ok() && new_entry && !record_new_failure) {
      models_.erase(name);
      failed_requests_[name] = reason;
      if (options_.metrics != nullptr) options_.metrics->ClearModelState(name);
      return absl::Status(loaded.status().code(), reason);
    }
    slot.fingerprint = fingerprint;
    if (!loaded.ok()) {
      slot.reason = reason;
      if (slot.versions.empty()) {
        slot.state = "UNAVAILABLE";
        if (options_.metrics != nullptr) {
          options_.metrics->SetModelState(name, metrics::ModelState::kUnavailable);
        }
      }
      return absl::Status(loaded.status().code(), reason);
    }
    // The swap: from here new requests reach the new versions; requests
    // already queued on the old ones finish there (Retire drains them).
    failed_requests_.erase(name);
    retired = std::exchange(slot.versions, std::move(loaded).value());
    slot.state = "READY";
    slot.reason.clear();
    PublishStates(name, slot.versions, retired);
  }
  Retire(retired);
  return absl::OkStatus();
}

absl::Status ModelRepository::Unload(const std::string& name) {
  absl::MutexLock load_lock(&load_mu_);
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || it->second.versions.empty()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
    }
    retired = std::move(it->second.versions);
    models_.erase(it);
    PublishStates(name, {}, retired);
  }
  Retire(retired);
  spdlog::info("model={} unloaded", name);
  return absl::OkStatus();
}

void ModelRepository::PublishStates(
    const std::string& name, const std::vector<std::shared_ptr<ServedModel>>& serving,
    const std::vector<std::shared_ptr<ServedModel>>& retired) const {
  if (options_.metrics == nullptr) return;
  // A retired version that is served again (reloaded in place) shares its
  // series with the new copy: it stays ready.
  for (const auto& old : retired) {
    const bool again = std::any_of(serving.begin(), serving.end(),
                                   [&old](const auto& s) { return s->version == old->version; });
    if (!again && old->metrics != nullptr) old->metrics->SetState(metrics::ModelState::kUnloading);
  }
  for (const auto& served : serving) {
    if (served->metrics != nullptr) served->metrics->SetState(metrics::ModelState::kReady);
  }
  options_.metrics->ClearModelState(name);
}

void ModelRepository::Retire(const std::vector<std::shared_ptr<ServedModel>>& versions) const {
  // No new request can reach these any more (they left models_ under mu_,
  // and Submit holds mu_ while handing a request over).
  const absl::Time deadline = options_.clock->Now() + options_.drain_timeout;
  for (const auto& served : versions) served->scheduler->Shutdown(deadline);
}

absl::Status ModelRepository::Poll() {
  const std::vector<std::string> on_disk = ScanModelNames();
  std::map<std::string, std::string> fingerprints;  // file system reads stay outside mu_
  for (const std::string& name : on_disk) fingerprints[name] = Fingerprint(name);
  std::vector<std::string> to_load;
  std::vector<std::string> to_unload;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const std::string& name : on_disk) {
      auto it = models_.find(name);
      if (it == models_.end() || it->second.fingerprint != fingerprints[name]) {
        to_load.push_back(name);
      }
    }
    for (const auto& [name, slot] : models_) {
      if (!std::binary_search(on_disk.begin(), on_disk.end(), name)) to_unload.push_back(name);
    }
  }
  absl::Status first_error;
  for (const std::string& name : to_load) {
    spdlog::info("model={} changed on disk, loading", name);
    absl::Status s = Load(name, /*record_new_failure=*/true);
    if (first_error.ok()) first_error = s;
  }
  for (const std::string& name : to_unload) {
    absl::Status s = Unload(name);
    if (!s.ok() && !absl::IsNotFound(s) && first_error.ok()) first_error = s;
    absl::MutexLock lock(&mu_);
    models_.erase(name);
    if (options_.metrics != nullptr) options_.metrics->ClearModelState(name);
  }
  return first_error;
}

void ModelRepository::PollLoop() {
  while (true) {
    {
      absl::MutexLock lock(&poll_mu_);
      const absl::Time wake = options_.clock->Now() + options_.poll_interval;
      for (absl::Time now = options_.clock->Now(); !stop_polling_ && now < wake;
           now = options_.clock->Now()) {
        poll_cv_.WaitWithTimeout(&poll_mu_, wake - now);
      }
      if (stop_polling_) return;
    }
    Poll().IgnoreError();  // failures are recorded per model and logged
  }
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::GetLocked(
    const std::string& name, const std::string& version) const {
  if (shutting_down_) return absl::UnavailableError("server is shutting down");
  auto it = models_.find(name);
  if (it == models_.end()) {
    // In explicit mode a model of the repository is served only once
    // loaded: say so, and how (a stat of a validated name, no scan).
    std::error_code ec;
    if (options_.mode == ControlMode::kExplicit && ValidateModelName(name).ok() &&
        fs::is_directory(fs::path(options_.root) / name, ec)) {
      return absl::NotFoundError(
          absl::StrCat("model '", name,
                       "' is in the repository but not loaded (--model-control-mode "
                       "explicit); load it with RepositoryModelLoad, e.g. `rectifier-client load ",
                       name, "`"));
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  const ModelSlot& slot = it->second;
  if (slot.versions.empty()) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' is not ready (", slot.state,
                                               slot.reason.empty() ? "" : ": ", slot.reason, ")"));
  }
  if (version.empty()) return std::shared_ptr<const ServedModel>(slot.versions.front());
  int64_t wanted = 0;
  if (!absl::SimpleAtoi(version, &wanted)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model version '", version, "' is not a number"));
  }
  for (const auto& served : slot.versions) {
    if (served->version == wanted) return std::shared_ptr<const ServedModel>(served);
  }
  return absl::NotFoundError(absl::StrCat("model '", name, "' has no ready version ", version));
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::Get(
    const std::string& name, const std::string& version) const {
  absl::ReaderMutexLock lock(&mu_);
  return GetLocked(name, version);
}

namespace {

bool SameTensors(const std::vector<engine::TensorInfo>& a,
                 const std::vector<engine::TensorInfo>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.type == y.type && x.shape == y.shape;
  });
}

template <typename ConfigTensors>
bool SameConfigTensors(const ConfigTensors& a, const ConfigTensors& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name() == y.name() && x.data_type() == y.data_type() &&
           std::equal(x.dims().begin(), x.dims().end(), y.dims().begin(), y.dims().end());
  });
}

// An answer the scheduler gives inside Enqueue (an immediate refusal), on
// the submitting thread while it holds the repository lock: held, and
// delivered by Release() once the lock is gone. Answers from the
// scheduler's workers go straight through.
class HeldAnswer {
 public:
  using Done = std::function<void(absl::StatusOr<std::vector<engine::Tensor>>,
                                  const scheduling::RequestTimes&)>;
  explicit HeldAnswer(Done done) : done_(std::move(done)) {}

  void Answer(absl::StatusOr<std::vector<engine::Tensor>> result,
              const scheduling::RequestTimes& times) {
    if (holding_.load(std::memory_order_acquire) && std::this_thread::get_id() == submitter_) {
      held_.emplace(std::move(result), times);
      return;
    }
    done_(std::move(result), times);
  }
  // On the submitting thread, without the lock.
  void Release() {
    holding_.store(false, std::memory_order_release);
    if (held_.has_value()) done_(std::move(held_->first), held_->second);
  }

 private:
  const Done done_;
  const std::thread::id submitter_ = std::this_thread::get_id();
  std::atomic<bool> holding_{true};
  // Written and read by the submitting thread only.
  std::optional<std::pair<absl::StatusOr<std::vector<engine::Tensor>>, scheduling::RequestTimes>>
      held_;
};

}  // namespace

bool SameInterface(const ServedModel& a, const ServedModel& b) {
  return SameTensors(a.model->inputs(), b.model->inputs()) &&
         SameTensors(a.model->outputs(), b.model->outputs()) &&
         SameConfigTensors(a.config.input(), b.config.input()) &&
         SameConfigTensors(a.config.output(), b.config.output()) &&
         a.config.max_batch_size() == b.config.max_batch_size() &&
         a.config.postprocessing().task() == b.config.postprocessing().task();
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::CurrentVersionForLocked(
    const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const {
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> current, GetLocked(resolved->name, version));
  if (current == resolved || SameInterface(*resolved, *current)) return current;
  return absl::UnavailableError(
      absl::StrCat("model '", resolved->name,
                   "' was reloaded with different inputs or outputs while the request was "
                   "being prepared; retry"));
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::CurrentVersionFor(
    const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const {
  absl::ReaderMutexLock lock(&mu_);
  return CurrentVersionForLocked(resolved, version);
}

absl::Status ModelRepository::Submit(const std::shared_ptr<const ServedModel>& resolved,
                                     const std::string& version,
                                     std::unique_ptr<scheduling::InferenceRequest> request,
                                     std::shared_ptr<const ServedModel>* ran) {
  std::shared_ptr<HeldAnswer> held;
  {
    absl::ReaderMutexLock lock(&mu_);
    ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served,
                     CurrentVersionForLocked(resolved, version));
    if (ran != nullptr) *ran = served;
    if (served->metrics != nullptr) {
      // Queue time is known once the batch starts; observed here so every
      // front end (KServe, vision) gets it without doing it itself.
      // Raw pointer: the metrics outlive the scheduler threads that call done.
      // (Capturing `served` would let a worker drop the last reference and
      // join itself.)
      // In flight from here until the front end's callback has answered.
      request->done = [metrics = served->metrics.get(), done = std::move(request->done)](
                          absl::StatusOr<std::vector<engine::Tensor>> result,
                          const scheduling::RequestTimes& times) {
        if (times.batch_start > times.enqueued) {
          metrics->ObserveQueue(absl::ToDoubleSeconds(times.batch_start - times.enqueued));
        }
        done(std::move(result), times);
        metrics->RequestAnswered();
      };
      served->metrics->RequestAccepted();
    }
    held = std::make_shared<HeldAnswer>(std::move(request->done));
    request->done = [held](absl::StatusOr<std::vector<engine::Tensor>> result,
                           const scheduling::RequestTimes& times) {
      held->Answer(std::move(result), times);
    };
    // Handed over under the lock, so a concurrent swap cannot retire this
    // version between the check and the enqueue.
    served->scheduler->Enqueue(std::move(request));
  }
  held->Release();
  return absl::OkStatus();
}

std::vector<int64_t> ModelRepository::ReadyVersions(const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<int64_t> versions;
  auto it = models_.find(name);
  if (it == models_.end()) return versions;
  for (const auto& served : it->second.versions) versions.push_back(served->version);
  return versions;
}

std::vector<std::shared_ptr<const ServedModel>> ModelRepository::Served(
    const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const ServedModel>> served;
  for (const auto& [model, slot] : models_) {
    if (!name.empty() && model != name) continue;
    served.insert(served.end(), slot.versions.begin(), slot.versions.end());
  }
  return served;
}

std::vector<ModelIndexEntry> ModelRepository::Index() const {
  std::vector<ModelIndexEntry> index;
  std::set<std::string> listed;
  std::map<std::string, std::string> failed_requests;
  {
    absl::ReaderMutexLock lock(&mu_);
    failed_requests = failed_requests_;
    for (const auto& [name, slot] : models_) {
      listed.insert(name);
      if (slot.versions.empty()) {
        index.push_back({name, "", slot.state, slot.reason});
        continue;
      }
      for (const auto& served : slot.versions) {
        index.push_back({name, std::to_string(served->version), "READY", slot.reason});
      }
    }
  }
  for (const std::string& name : ScanModelNames()) {
    if (listed.count(name)) continue;
    const auto failed = failed_requests.find(name);
    index.push_back(
        {name, "", "UNAVAILABLE", failed == failed_requests.end() ? "not loaded" : failed->second});
  }
  std::sort(index.begin(), index.end(), [](const ModelIndexEntry& a, const ModelIndexEntry& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
  return index;
}

bool ModelRepository::AllReady() const {
  absl::ReaderMutexLock lock(&mu_);
  if (shutting_down_) return false;
  for (const auto& [name, slot] : models_) {
    if (slot.state != "READY") return false;
  }
  return true;
}

void ModelRepository::Shutdown(absl::Time deadline) {
  std::vector<std::shared_ptr<ServedModel>> all;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [name, slot] : models_) {
      for (auto& served : slot.versions) all.push_back(served);
    }
  }
  if (options_.metrics != nullptr) {
    for (const auto& served : all) {
      if (served->metrics != nullptr) served->metrics->SetState(metrics::ModelState::kUnloading);
    }
  }
  for (const auto& served : all) served->scheduler->Shutdown(deadline);
}

}  // namespace rectifier::repository
