// RequestObserver: the one place a served version's requests and batches are
// accounted, feeding both its ModelStatistics counters (ModelStats) and its
// Prometheus series (ModelMetrics), as Triton's statistics feed its metric
// reporter. Front ends report each request once, when it finishes.
#ifndef RECTIFIER_SERVER_REPOSITORY_REQUEST_OBSERVER_H_
#define RECTIFIER_SERVER_REPOSITORY_REQUEST_OBSERVER_H_

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_stats.h"

namespace rectifier::repository {

// Imaging stages of one image request (the vision API's
// rectifier_stage_duration_seconds).
struct ImageStages {
  absl::Duration decode;
  absl::Duration preprocess;
  absl::Duration postprocess;
};

// Where one request's time went. Only `total` is read for a failed request.
struct RequestPhases {
  absl::Duration total;               // from the call arriving to the answer
  absl::Duration input;               // request decoding; images: decode + preprocess
  absl::Duration queue;               // waiting for its batch
  absl::Duration infer;               // its batch's compute
  absl::Duration output;              // response encoding; images: postprocess
  std::optional<ImageStages> stages;  // set by the vision API only
};

// Thread-safe (every call is a lock-free update).
class RequestObserver {
 public:
  // Either may be null (no metrics registry; tests). REQUIRES: both outlive
  // the observer.
  RequestObserver(ModelStats* stats, metrics::ModelMetrics* metrics)
      : stats_(stats), metrics_(metrics) {}

  // One request of `api` finished with `status`: success or failure (by
  // reason) and its duration; for a success also its phases and stages.
  void Finished(metrics::Api api, const absl::Status& status, const RequestPhases& phases) const;
  // One batch of `batch_size` executed in `compute`.
  void Executed(int batch_size, absl::Duration compute) const;

 private:
  ModelStats* const stats_;
  metrics::ModelMetrics* const metrics_;
};

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_REQUEST_OBSERVER_H_
