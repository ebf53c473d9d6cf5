// BatchExecutor backed by one engine::ExecutionContext: one model instance.
#ifndef RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_
#define RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_

#include <memory>
#include <vector>

#include "server/engine/execution_context.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_stats.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::repository {

class EngineExecutor final : public scheduling::BatchExecutor {
 public:
  static absl::StatusOr<std::unique_ptr<EngineExecutor>> Create(
      const std::shared_ptr<const engine::CompiledModel>& model, int threads);

  absl::StatusOr<std::vector<engine::Tensor>> Execute(
      const std::vector<engine::Tensor>& inputs) override;

  // Observes every execution (compute time, batch size) into `metrics` and
  // `stats` (either may be null). REQUIRES: set before the executor runs on a
  // worker; both outlive the executor's use.
  void set_observers(metrics::ModelMetrics* metrics, ModelStats* stats) {
    metrics_ = metrics;
    stats_ = stats;
  }

 private:
  explicit EngineExecutor(std::unique_ptr<engine::ExecutionContext> context)
      : context_(std::move(context)) {}

  std::unique_ptr<engine::ExecutionContext> context_;
  metrics::ModelMetrics* metrics_ = nullptr;
  ModelStats* stats_ = nullptr;
};

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_
