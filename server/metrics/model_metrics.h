// Per-model Prometheus metrics: families registered once at start
// (ServerMetrics), labelled children created when a model version starts
// loading and removed when its last holder is gone (ModelMetrics). The
// request path only observes.
#ifndef RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_
#define RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace rectifier::metrics {

// Which API and transport a request came through (label `api`): kserve,
// vision (gRPC), kserve_http, vision_http.
enum class Api { kKServe = 0, kVision = 1, kKServeHttp = 2, kVisionHttp = 3 };
inline constexpr int kNumApis = 4;

// Failure reasons (label `reason`): a fixed set keeps cardinality bounded.
enum class FailureReason {
  kInvalidInput = 0,
  kNotFound,
  kDeadline,
  kQueueFull,
  kCancelled,
  kUnavailable,
  kInternal,
};
inline constexpr int kNumFailureReasons = 7;

// The reason label for a non-OK status. A full queue is UNAVAILABLE on the
// wire (Triton's code) and is told apart by its payload (common::IsQueueFull):
// the scheduler's queue and the image worker pool both set it.
FailureReason ReasonFor(const absl::Status& status);
const char* ReasonName(FailureReason reason);
const char* ApiName(Api api);

// Lifecycle state of a model (label `state` of rectifier_model_state). Every
// state has a series; the current one is 1, the others 0 (the
// kube-state-metrics convention for enumerations).
enum class ModelState { kLoading = 0, kReady, kUnloading, kUnavailable };
inline constexpr int kNumModelStates = 4;
const char* ModelStateName(ModelState state);

struct MetricsOptions {
  // Latency histogram buckets in seconds (0.5 ms .. 10 s by default).
  std::vector<double> latency_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  std::vector<double> batch_buckets = {1, 2, 4, 8, 16, 32, 64, 128};
};

class ModelMetrics;

// Keeps a scrape-time source registered; removes it when destroyed or reset.
// Move-only.
class ScrapeSourceHandle {
 public:
  ScrapeSourceHandle() = default;
  explicit ScrapeSourceHandle(std::function<void()> remove) : remove_(std::move(remove)) {}
  ScrapeSourceHandle(ScrapeSourceHandle&& other) noexcept { *this = std::move(other); }
  ScrapeSourceHandle& operator=(ScrapeSourceHandle&& other) noexcept;
  ScrapeSourceHandle(const ScrapeSourceHandle&) = delete;
  ScrapeSourceHandle& operator=(const ScrapeSourceHandle&) = delete;
  ~ScrapeSourceHandle() { Reset(); }
  // After this returns, the source is never called again.
  void Reset();

 private:
  std::function<void()> remove_;
};

// One gauge family whose values are read at scrape time from callbacks
// (queue depth), so the request path pays nothing for them. Several sources
// may share a label set (a version reloaded while its predecessor drains);
// their values are summed. Thread-safe.
class ScrapeTimeGauges : public prometheus::Collectable {
 public:
  using Source = std::function<double()>;
  using Handle = ScrapeSourceHandle;

  // `counter`: the sources return cumulative counts, exported as a counter.
  ScrapeTimeGauges(std::string name, std::string help, bool counter = false)
      : name_(std::move(name)), help_(std::move(help)), counter_(counter) {}

  std::vector<prometheus::MetricFamily> Collect() const override;
  // Registers `source` for the series with `labels` until the handle goes.
  static Handle Add(const std::shared_ptr<ScrapeTimeGauges>& gauges,
                    const prometheus::Labels& labels, Source source);

 private:
  void Remove(int64_t id);

  const std::string name_;
  const std::string help_;
  const bool counter_;
  mutable absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, std::pair<prometheus::Labels, Source>> sources_ ABSL_GUARDED_BY(mu_);
};

// Statistics of one activation layer as exported (filled from the engine's
// ActivationLayerStats; this module does not depend on the engine).
struct ActivationLayerValues {
  std::string layer;  // the activation's output tensor name in the model graph
  double zero_fraction = 0.0;
  int64_t dead_channels = 0;
  int64_t channels = 0;
};

// rectifier_activation_zero_fraction, _dead_channels and _channels
// {model, version, layer}, read at scrape time from each model version's
// snapshot source. When two copies of a version are registered (reload in
// place), the newest one is exported (statistics are not additive).
// Thread-safe.
class ActivationStatsCollector : public prometheus::Collectable {
 public:
  using Source = std::function<std::vector<ActivationLayerValues>()>;

  std::vector<prometheus::MetricFamily> Collect() const override;
  static ScrapeSourceHandle Add(const std::shared_ptr<ActivationStatsCollector>& collector,
                                const prometheus::Labels& labels, Source source);

 private:
  void Remove(int64_t id);

  mutable absl::Mutex mu_;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<int64_t, std::pair<prometheus::Labels, Source>> sources_ ABSL_GUARDED_BY(mu_);
};

// Every scrape-time family of the server, served as one collectable.
class ScrapeTimeFamilies : public prometheus::Collectable {
 public:
  explicit ScrapeTimeFamilies(std::vector<std::shared_ptr<prometheus::Collectable>> parts)
      : parts_(std::move(parts)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::vector<std::shared_ptr<prometheus::Collectable>> parts_;
};

// Owns the metric families. Thread-safe. Must outlive every ModelMetrics.
class ServerMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  ServerMetrics(prometheus::Registry& registry, const MetricsOptions& options = {});

  // Series computed at scrape time (queue depth, activation statistics);
  // serve it next to the registry (MetricsServer::AddCollectable).
  std::shared_ptr<prometheus::Collectable> scrape_time_gauges() const { return scrape_time_; }

  // Children for one model version, created in state kLoading. Asking again
  // for a version that has them (a version reloaded while the old copy
  // drains) shares them: Prometheus has one series per label set. They are
  // removed when the last holder drops its pointer.
  std::shared_ptr<ModelMetrics> ForModel(const std::string& model, const std::string& version);

  // State of a model that has no loaded version (first load running, or it
  // failed): series {model, state} without a version label.
  void SetModelState(const std::string& model, ModelState state);
  // Removes those series (a version is loaded now, or the model is unloaded).
  void ClearModelState(const std::string& model);

 private:
  friend class ModelMetrics;
  using Key = std::pair<std::string, std::string>;  // model, version
  struct Entry {
    std::unique_ptr<ModelMetrics> metrics;
    int holders = 0;
  };
  void Release(const Key& key);

  MetricsOptions options_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Histogram>& queue_duration_;
  prometheus::Family<prometheus::Histogram>& compute_duration_;
  prometheus::Family<prometheus::Histogram>& stage_duration_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Counter>& inferences_;
  prometheus::Family<prometheus::Counter>& executions_;
  prometheus::Family<prometheus::Gauge>& instances_;
  prometheus::Family<prometheus::Gauge>& inflight_;
  prometheus::Family<prometheus::Gauge>& state_;
  std::shared_ptr<ScrapeTimeGauges> queue_depth_;
  std::shared_ptr<ScrapeTimeGauges> plan_compiles_, plan_evictions_, cached_plans_;
  std::shared_ptr<ScrapeTimeGauges> plan_cache_hits_, plan_cache_misses_;
  std::shared_ptr<ActivationStatsCollector> activation_stats_;
  std::shared_ptr<ScrapeTimeFamilies> scrape_time_;
  absl::Mutex mu_;
  std::map<Key, Entry> models_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::array<prometheus::Gauge*, kNumModelStates>> model_states_
      ABSL_GUARDED_BY(mu_);
};

// Imaging stages measured by the vision API (label `stage`).
enum class Stage { kDecode = 0, kPreprocess = 1, kPostprocess = 2 };
inline constexpr int kNumStages = 3;

// Thread-safe; every method is a lock-free observe/increment on a child
// created in the constructor. Obtained from ServerMetrics::ForModel.
class ModelMetrics {
 public:
  ~ModelMetrics();
  ModelMetrics(const ModelMetrics&) = delete;
  ModelMetrics& operator=(const ModelMetrics&) = delete;

  // One finished request: its outcome and end-to-end latency.
  void ObserveRequest(Api api, const absl::Status& status, double seconds);
  // Per request: time waiting in the queue.
  void ObserveQueue(double seconds);
  // Per executed batch: compute time and size.
  void ObserveExecution(int batch_size, double seconds);
  void ObserveStage(Stage stage, double seconds);
  void SetInstances(int count);
  // A request was accepted by the model (handed to its scheduler) / its
  // response callback has run: rectifier_inflight_requests.
  void RequestAccepted();
  void RequestAnswered();
  // Sets rectifier_model_state: `state` to 1, the other states to 0.
  void SetState(ModelState state);
  // Queue depth is read from `source` at scrape time until the handle is
  // destroyed or reset; reset it before whatever `source` reads goes.
  [[nodiscard]] ScrapeSourceHandle AddQueueDepthSource(std::function<double()> source);
  // Activation statistics per layer are read from `source` at scrape time
  // (only when the model samples them); same lifetime rule.
  [[nodiscard]] ScrapeSourceHandle AddActivationSource(ActivationStatsCollector::Source source);
  // The engine's plan cache, read from `source` at scrape time:
  // rectifier_plan_compiles_total, rectifier_plan_evictions_total,
  // rectifier_cached_plans, rectifier_plan_cache_hits_total and
  // rectifier_plan_cache_misses_total. Same lifetime rule.
  struct PlanCacheValues {
    double compiles = 0, evictions = 0, cached = 0, hits = 0, misses = 0;
  };
  [[nodiscard]] ScrapeSourceHandle AddPlanCacheSource(std::function<PlanCacheValues()> source);

 private:
  friend class ServerMetrics;
  ModelMetrics(ServerMetrics* server, const std::string& model, const std::string& version);

  ServerMetrics* server_;
  prometheus::Labels labels_;
  std::array<prometheus::Counter*, kNumApis> requests_ok_{};
  std::array<prometheus::Counter*, kNumApis> requests_failed_{};
  std::array<std::array<prometheus::Counter*, kNumFailureReasons>, kNumApis> failures_{};
  std::array<prometheus::Histogram*, kNumApis> request_duration_{};
  prometheus::Histogram* queue_duration_ = nullptr;
  prometheus::Histogram* compute_duration_ = nullptr;
  std::array<prometheus::Histogram*, kNumStages> stage_duration_{};
  prometheus::Histogram* batch_size_ = nullptr;
  prometheus::Counter* inferences_ = nullptr;
  prometheus::Counter* executions_ = nullptr;
  prometheus::Gauge* instances_ = nullptr;
  prometheus::Gauge* inflight_ = nullptr;
  std::array<prometheus::Gauge*, kNumModelStates> state_{};
};

}  // namespace rectifier::metrics

#endif  // RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_
