// Per-model Prometheus metrics: families registered once at start
// (ServerMetrics), labelled children created when a model version loads and
// removed when it unloads (ModelMetrics). The request path only observes.
#ifndef RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_
#define RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
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

// Which API a request came through (label `api`).
enum class Api { kKServe = 0, kVision = 1 };
inline constexpr int kNumApis = 2;

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
// wire (Triton's code) and is told apart by the scheduler's "queue full" message.
FailureReason ReasonFor(const absl::Status& status);
const char* ReasonName(FailureReason reason);
const char* ApiName(Api api);

struct MetricsOptions {
  // Latency histogram buckets in seconds (0.5 ms .. 10 s by default).
  std::vector<double> latency_buckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  std::vector<double> batch_buckets = {1, 2, 4, 8, 16, 32, 64, 128};
};

class ModelMetrics;

// Gauges read at scrape time from callbacks (queue depth), so the request
// path pays nothing for them. Thread-safe.
class ScrapeTimeGauges : public prometheus::Collectable {
 public:
  using Source = std::function<double()>;
  std::vector<prometheus::MetricFamily> Collect() const override;
  // Adds or replaces the source of the series with `labels`.
  void Set(const prometheus::Labels& labels, Source source);
  // After this returns, the source is never called again.
  void Remove(const prometheus::Labels& labels);

 private:
  mutable absl::Mutex mu_;
  std::map<prometheus::Labels, Source> sources_ ABSL_GUARDED_BY(mu_);
};

// Owns the metric families. Thread-safe. Must outlive every ModelMetrics.
class ServerMetrics {
 public:
  // Registers the families in `registry`, which must outlive this object.
  ServerMetrics(prometheus::Registry& registry, const MetricsOptions& options = {});

  // Series computed at scrape time (queue depth); serve it next to the
  // registry (MetricsServer::AddCollectable).
  std::shared_ptr<prometheus::Collectable> scrape_time_gauges() const { return queue_depth_; }

  // Children for one model version; removed again when the result is destroyed.
  std::unique_ptr<ModelMetrics> ForModel(const std::string& model, const std::string& version);

 private:
  friend class ModelMetrics;
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
  std::shared_ptr<ScrapeTimeGauges> queue_depth_;
};

// Imaging stages measured by the vision API (label `stage`).
enum class Stage { kDecode = 0, kPreprocess = 1, kPostprocess = 2 };
inline constexpr int kNumStages = 3;

// Thread-safe; every method is a lock-free observe/increment on a child
// created in the constructor.
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
  // Queue depth is read from `source` at scrape time. Clear it before
  // whatever `source` reads is destroyed.
  void SetQueueDepthSource(std::function<double()> source);
  void ClearQueueDepthSource();

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
};

}  // namespace rectifier::metrics

#endif  // RECTIFIER_SERVER_METRICS_MODEL_METRICS_H_
