#include "server/metrics/model_metrics.h"

#include <utility>

#include "server/common/queue_full.h"

namespace rectifier::metrics {
namespace {

const char* const kStageNames[kNumStages] = {"decode", "preprocess", "postprocess"};

}  // namespace

FailureReason ReasonFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
      return FailureReason::kInvalidInput;
    case absl::StatusCode::kNotFound:
      return FailureReason::kNotFound;
    case absl::StatusCode::kDeadlineExceeded:
      return FailureReason::kDeadline;
    case absl::StatusCode::kResourceExhausted:
      return FailureReason::kQueueFull;
    case absl::StatusCode::kCancelled:
      return FailureReason::kCancelled;
    case absl::StatusCode::kUnavailable:
      return common::IsQueueFull(status) ? FailureReason::kQueueFull : FailureReason::kUnavailable;
    default:
      return FailureReason::kInternal;
  }
}

const char* ReasonName(FailureReason reason) {
  static const char* const kNames[kNumFailureReasons] = {
      "invalid_input", "not_found",   "deadline", "queue_full",
      "cancelled",     "unavailable", "internal"};
  return kNames[static_cast<int>(reason)];
}

const char* ApiName(Api api) {
  switch (api) {
    case Api::kKServe:
      return "kserve";
    case Api::kVision:
      return "vision";
    case Api::kKServeHttp:
      return "kserve_http";
    case Api::kVisionHttp:
      return "vision_http";
  }
  return "unknown";
}

const char* ModelStateName(ModelState state) {
  static const char* const kNames[kNumModelStates] = {"loading", "ready", "unloading",
                                                      "unavailable"};
  return kNames[static_cast<int>(state)];
}

std::vector<prometheus::MetricFamily> ScrapeTimeGauges::Collect() const {
  prometheus::MetricFamily family;
  family.name = name_;
  family.help = help_;
  family.type = counter_ ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge;
  std::map<prometheus::Labels, double> values;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : sources_) values[entry.first] += entry.second();
  }
  for (const auto& [labels, value] : values) {
    prometheus::ClientMetric metric;
    for (const auto& [name, label_value] : labels) metric.label.push_back({name, label_value});
    if (counter_) {
      metric.counter.value = value;
    } else {
      metric.gauge.value = value;
    }
    family.metric.push_back(std::move(metric));
  }
  return {family};
}

ScrapeTimeGauges::Handle ScrapeTimeGauges::Add(const std::shared_ptr<ScrapeTimeGauges>& gauges,
                                               const prometheus::Labels& labels, Source source) {
  absl::MutexLock lock(&gauges->mu_);
  const int64_t id = gauges->next_id_++;
  gauges->sources_.emplace(id, std::make_pair(labels, std::move(source)));
  return Handle([gauges, id] { gauges->Remove(id); });
}

void ScrapeTimeGauges::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  sources_.erase(id);
}

ScrapeSourceHandle& ScrapeSourceHandle::operator=(ScrapeSourceHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    remove_ = std::exchange(other.remove_, nullptr);
  }
  return *this;
}

void ScrapeSourceHandle::Reset() {
  if (remove_) std::exchange(remove_, nullptr)();
}

std::vector<prometheus::MetricFamily> ActivationStatsCollector::Collect() const {
  const auto family = [](const char* name, const char* help) {
    prometheus::MetricFamily f;
    f.name = name;
    f.help = help;
    f.type = prometheus::MetricType::Gauge;
    return f;
  };
  std::vector<prometheus::MetricFamily> families = {
      family("rectifier_activation_zero_fraction",
             "Mean fraction of exact zeros in an activation layer's output over the sampled "
             "executions."),
      family("rectifier_activation_dead_channels",
             "Channels of an activation layer that were zero in every sampled output."),
      family("rectifier_activation_channels", "Channels of an activation layer's output."),
  };
  absl::MutexLock lock(&mu_);
  // Newest source per label set: ids grow, so later entries replace earlier.
  std::map<prometheus::Labels, const Source*> newest;
  for (const auto& [id, entry] : sources_) newest[entry.first] = &entry.second;
  for (const auto& [labels, source] : newest) {
    for (const ActivationLayerValues& layer : (*source)()) {
      const double values[3] = {layer.zero_fraction, static_cast<double>(layer.dead_channels),
                                static_cast<double>(layer.channels)};
      for (int i = 0; i < 3; ++i) {
        prometheus::Labels with_layer = labels;  // sorted by name, like the registry's
        with_layer["layer"] = layer.layer;
        prometheus::ClientMetric metric;
        for (const auto& [name, value] : with_layer) metric.label.push_back({name, value});
        metric.gauge.value = values[i];
        families[i].metric.push_back(std::move(metric));
      }
    }
  }
  return families;
}

ScrapeSourceHandle ActivationStatsCollector::Add(
    const std::shared_ptr<ActivationStatsCollector>& collector, const prometheus::Labels& labels,
    Source source) {
  absl::MutexLock lock(&collector->mu_);
  const int64_t id = collector->next_id_++;
  collector->sources_.emplace(id, std::make_pair(labels, std::move(source)));
  return ScrapeSourceHandle([collector, id] { collector->Remove(id); });
}

void ActivationStatsCollector::Remove(int64_t id) {
  absl::MutexLock lock(&mu_);
  sources_.erase(id);
}

std::vector<prometheus::MetricFamily> ScrapeTimeFamilies::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  for (const auto& part : parts_) {
    for (auto& family : part->Collect()) families.push_back(std::move(family));
  }
  return families;
}

ServerMetrics::ServerMetrics(prometheus::Registry& registry, const MetricsOptions& options)
    : options_(options),
      requests_(prometheus::BuildCounter()
                    .Name("rectifier_requests_total")
                    .Help("Finished inference requests by API and outcome (success|failure).")
                    .Register(registry)),
      failures_(prometheus::BuildCounter()
                    .Name("rectifier_request_failures_total")
                    .Help("Failed inference requests by API and reason.")
                    .Register(registry)),
      request_duration_(prometheus::BuildHistogram()
                            .Name("rectifier_request_duration_seconds")
                            .Help("End-to-end request latency inside the server.")
                            .Register(registry)),
      queue_duration_(prometheus::BuildHistogram()
                          .Name("rectifier_queue_duration_seconds")
                          .Help("Time a request waited in the model's queue.")
                          .Register(registry)),
      compute_duration_(prometheus::BuildHistogram()
                            .Name("rectifier_compute_duration_seconds")
                            .Help("Model execution time per batch.")
                            .Register(registry)),
      stage_duration_(prometheus::BuildHistogram()
                          .Name("rectifier_stage_duration_seconds")
                          .Help("Imaging stage time per request (decode, preprocess, postprocess).")
                          .Register(registry)),
      batch_size_(prometheus::BuildHistogram()
                      .Name("rectifier_batch_size")
                      .Help("Requests per executed batch.")
                      .Register(registry)),
      inferences_(prometheus::BuildCounter()
                      .Name("rectifier_inferences_total")
                      .Help("Inferences performed (a batch of n counts n).")
                      .Register(registry)),
      executions_(prometheus::BuildCounter()
                      .Name("rectifier_executions_total")
                      .Help("Model executions (batches); inferences/executions = mean batch size.")
                      .Register(registry)),
      instances_(prometheus::BuildGauge()
                     .Name("rectifier_model_instances")
                     .Help("Execution instances of a loaded model version.")
                     .Register(registry)),
      inflight_(prometheus::BuildGauge()
                    .Name("rectifier_inflight_requests")
                    .Help("Requests accepted by a model version and not answered yet "
                          "(queued or executing).")
                    .Register(registry)),
      state_(prometheus::BuildGauge()
                 .Name("rectifier_model_state")
                 .Help("1 for the model (version)'s current state (loading, ready, unloading, "
                       "unavailable), 0 for the others; no version label = no version loaded.")
                 .Register(registry)),
      queue_depth_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_queue_depth",
          "Requests waiting in a model version's queue (read at scrape time).")),
      plan_compiles_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_plan_compiles_total",
          "Execution plans a model version has compiled (one per input-shape signature: each "
          "batch size, each height/width of a dynamic model; failed compiles included), read at "
          "scrape time.",
          /*counter=*/true)),
      plan_evictions_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_plan_evictions_total",
          "Plans dropped from a model version's cache by its max_cached_plans bound, read at "
          "scrape time.",
          /*counter=*/true)),
      cached_plans_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_cached_plans",
          "Execution plans a model version holds now, read at scrape time.")),
      plan_cache_hits_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_plan_cache_hits_total",
          "Executions whose input shapes found their plan compiled, read at scrape time.",
          /*counter=*/true)),
      plan_cache_misses_(std::make_shared<ScrapeTimeGauges>(
          "rectifier_plan_cache_misses_total",
          "Executions that compiled their plan or waited for its compile (a shape not seen "
          "before, or dropped by max_cached_plans), read at scrape time.",
          /*counter=*/true)),
      activation_stats_(std::make_shared<ActivationStatsCollector>()),
      scrape_time_(std::make_shared<ScrapeTimeFamilies>(
          std::vector<std::shared_ptr<prometheus::Collectable>>{
              queue_depth_, plan_compiles_, plan_evictions_, cached_plans_, plan_cache_hits_,
              plan_cache_misses_, activation_stats_})) {}

std::shared_ptr<ModelMetrics> ServerMetrics::ForModel(const std::string& model,
                                                      const std::string& version) {
  Key key(model, version);
  absl::MutexLock lock(&mu_);
  Entry& entry = models_[key];
  if (entry.metrics == nullptr) entry.metrics.reset(new ModelMetrics(this, model, version));
  ++entry.holders;
  return std::shared_ptr<ModelMetrics>(entry.metrics.get(),
                                       [this, key](ModelMetrics*) { Release(key); });
}

void ServerMetrics::Release(const Key& key) {
  // The children are removed under mu_, so a concurrent ForModel for the same
  // version either shares them before or creates new ones after.
  absl::MutexLock lock(&mu_);
  auto it = models_.find(key);
  if (it != models_.end() && --it->second.holders == 0) models_.erase(it);
}

void ServerMetrics::SetModelState(const std::string& model, ModelState state) {
  absl::MutexLock lock(&mu_);
  auto [it, added] = model_states_.try_emplace(model);
  if (added) {
    for (int s = 0; s < kNumModelStates; ++s) {
      it->second[s] =
          &state_.Add({{"model", model}, {"state", ModelStateName(static_cast<ModelState>(s))}});
    }
  }
  for (int s = 0; s < kNumModelStates; ++s) {
    it->second[s]->Set(s == static_cast<int>(state) ? 1 : 0);
  }
}

void ServerMetrics::ClearModelState(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = model_states_.find(model);
  if (it == model_states_.end()) return;
  for (prometheus::Gauge* gauge : it->second) state_.Remove(gauge);
  model_states_.erase(it);
}

ModelMetrics::ModelMetrics(ServerMetrics* server, const std::string& model,
                           const std::string& version)
    : server_(server), labels_{{"model", model}, {"version", version}} {
  const prometheus::Labels& base = labels_;
  const auto with =
      [&base](std::initializer_list<std::pair<const std::string, std::string>> extra) {
        prometheus::Labels labels = base;
        labels.insert(extra);
        return labels;
      };
  const auto& latency = server->options_.latency_buckets;
  for (int a = 0; a < kNumApis; ++a) {
    const std::string api = ApiName(static_cast<Api>(a));
    requests_ok_[a] = &server->requests_.Add(with({{"api", api}, {"outcome", "success"}}));
    requests_failed_[a] = &server->requests_.Add(with({{"api", api}, {"outcome", "failure"}}));
    for (int r = 0; r < kNumFailureReasons; ++r) {
      failures_[a][r] = &server->failures_.Add(
          with({{"api", api}, {"reason", ReasonName(static_cast<FailureReason>(r))}}));
    }
    request_duration_[a] = &server->request_duration_.Add(with({{"api", api}}), latency);
  }
  queue_duration_ = &server->queue_duration_.Add(base, latency);
  compute_duration_ = &server->compute_duration_.Add(base, latency);
  for (int s = 0; s < kNumStages; ++s) {
    stage_duration_[s] = &server->stage_duration_.Add(with({{"stage", kStageNames[s]}}), latency);
  }
  batch_size_ = &server->batch_size_.Add(base, server->options_.batch_buckets);
  inferences_ = &server->inferences_.Add(base);
  executions_ = &server->executions_.Add(base);
  instances_ = &server->instances_.Add(base);
  inflight_ = &server->inflight_.Add(base);
  for (int s = 0; s < kNumModelStates; ++s) {
    state_[s] = &server->state_.Add(with({{"state", ModelStateName(static_cast<ModelState>(s))}}));
  }
  SetState(ModelState::kLoading);
}

ModelMetrics::~ModelMetrics() {
  for (int a = 0; a < kNumApis; ++a) {
    server_->requests_.Remove(requests_ok_[a]);
    server_->requests_.Remove(requests_failed_[a]);
    for (prometheus::Counter* c : failures_[a]) server_->failures_.Remove(c);
    server_->request_duration_.Remove(request_duration_[a]);
  }
  server_->queue_duration_.Remove(queue_duration_);
  server_->compute_duration_.Remove(compute_duration_);
  for (prometheus::Histogram* h : stage_duration_) server_->stage_duration_.Remove(h);
  server_->batch_size_.Remove(batch_size_);
  server_->inferences_.Remove(inferences_);
  server_->executions_.Remove(executions_);
  server_->instances_.Remove(instances_);
  server_->inflight_.Remove(inflight_);
  for (prometheus::Gauge* g : state_) server_->state_.Remove(g);
}

void ModelMetrics::ObserveRequest(Api api, const absl::Status& status, double seconds) {
  const int a = static_cast<int>(api);
  if (status.ok()) {
    requests_ok_[a]->Increment();
  } else {
    requests_failed_[a]->Increment();
    failures_[a][static_cast<int>(ReasonFor(status))]->Increment();
  }
  request_duration_[a]->Observe(seconds);
}

void ModelMetrics::ObserveQueue(double seconds) { queue_duration_->Observe(seconds); }

void ModelMetrics::ObserveExecution(int batch_size, double seconds) {
  compute_duration_->Observe(seconds);
  batch_size_->Observe(batch_size);
  inferences_->Increment(batch_size);
  executions_->Increment();
}

void ModelMetrics::ObserveStage(Stage stage, double seconds) {
  stage_duration_[static_cast<int>(stage)]->Observe(seconds);
}

void ModelMetrics::SetInstances(int count) { instances_->Set(count); }

void ModelMetrics::RequestAccepted() { inflight_->Increment(); }

void ModelMetrics::RequestAnswered() { inflight_->Decrement(); }

void ModelMetrics::SetState(ModelState state) {
  for (int s = 0; s < kNumModelStates; ++s) {
    state_[s]->Set(s == static_cast<int>(state) ? 1 : 0);
  }
}

ScrapeSourceHandle ModelMetrics::AddQueueDepthSource(std::function<double()> source) {
  return ScrapeTimeGauges::Add(server_->queue_depth_, labels_, std::move(source));
}

ScrapeSourceHandle ModelMetrics::AddPlanCacheSource(std::function<PlanCacheValues()> source) {
  // Five series, one source and one handle (std::function needs a copyable
  // capture, so both are shared).
  auto read = std::make_shared<std::function<PlanCacheValues()>>(std::move(source));
  auto handles = std::make_shared<std::vector<ScrapeSourceHandle>>();
  handles->push_back(ScrapeTimeGauges::Add(server_->plan_compiles_, labels_,
                                           [read] { return (*read)().compiles; }));
  handles->push_back(ScrapeTimeGauges::Add(server_->plan_evictions_, labels_,
                                           [read] { return (*read)().evictions; }));
  handles->push_back(
      ScrapeTimeGauges::Add(server_->cached_plans_, labels_, [read] { return (*read)().cached; }));
  handles->push_back(
      ScrapeTimeGauges::Add(server_->plan_cache_hits_, labels_, [read] { return (*read)().hits; }));
  handles->push_back(ScrapeTimeGauges::Add(server_->plan_cache_misses_, labels_,
                                           [read] { return (*read)().misses; }));
  return ScrapeSourceHandle([handles] {
    for (ScrapeSourceHandle& h : *handles) h.Reset();
  });
}

ScrapeSourceHandle ModelMetrics::AddActivationSource(ActivationStatsCollector::Source source) {
  return ActivationStatsCollector::Add(server_->activation_stats_, labels_, std::move(source));
}

}  // namespace rectifier::metrics
