// BatchExecutor backed by one engine::ExecutionContext: one model instance.
#ifndef RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_
#define RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_

#include <memory>
#include <vector>

#include "server/common/clock.h"
#include "server/engine/execution_context.h"
#include "server/repository/request_observer.h"
#include "server/repository/warmup.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::repository {

class EngineExecutor final : public scheduling::BatchExecutor {
 public:
  // `clock` times each execution; it must outlive the executor.
  static absl::StatusOr<std::unique_ptr<EngineExecutor>> Create(
      const std::shared_ptr<const engine::CompiledModel>& model, int threads,
      const common::Clock* clock = common::Clock::Real());

  absl::StatusOr<std::vector<engine::Tensor>> Execute(
      const std::vector<engine::TensorView>& inputs) override;

  // Runs the warmup samples on the worker thread that will serve requests:
  // the OpenMP team then lives on that thread only (a second team on the
  // loading thread made libgomp throttle spinning to near-passive and
  // doubled MobileNetV2's time per request). Not observed in metrics/stats.
  absl::Status Prepare() override;
  void set_warmup(std::vector<WarmupSample> samples) { warmup_ = std::move(samples); }

  // Reports every execution (compute time, batch size) to `observer` (may be
  // null). REQUIRES: set before the executor runs on a worker; outlives the
  // executor's use.
  void set_observer(const RequestObserver* observer) { observer_ = observer; }

 private:
  EngineExecutor(std::unique_ptr<engine::ExecutionContext> context, const common::Clock* clock)
      : context_(std::move(context)), clock_(clock) {}

  std::unique_ptr<engine::ExecutionContext> context_;
  const common::Clock* const clock_;
  const RequestObserver* observer_ = nullptr;
  std::vector<WarmupSample> warmup_;
};

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_ENGINE_EXECUTOR_H_
