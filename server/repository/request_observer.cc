#include "server/repository/request_observer.h"

namespace rectifier::repository {

void RequestObserver::Finished(metrics::Api api, const absl::Status& status,
                               const RequestPhases& phases) const {
  if (stats_ != nullptr) {
    if (status.ok()) stats_->RecordPhases(phases.input, phases.queue, phases.infer, phases.output);
    stats_->RecordRequest(status.ok(), phases.total);
  }
  if (metrics_ == nullptr) return;
  if (status.ok() && phases.stages.has_value()) {
    metrics_->ObserveStage(metrics::Stage::kDecode, absl::ToDoubleSeconds(phases.stages->decode));
    metrics_->ObserveStage(metrics::Stage::kPreprocess,
                           absl::ToDoubleSeconds(phases.stages->preprocess));
    metrics_->ObserveStage(metrics::Stage::kPostprocess,
                           absl::ToDoubleSeconds(phases.stages->postprocess));
  }
  metrics_->ObserveRequest(api, status, absl::ToDoubleSeconds(phases.total));
}

void RequestObserver::Executed(int batch_size, absl::Duration compute) const {
  if (metrics_ != nullptr) metrics_->ObserveExecution(batch_size, absl::ToDoubleSeconds(compute));
  if (stats_ != nullptr) stats_->RecordExecution(batch_size, compute);
}

}  // namespace rectifier::repository
