#include "server/repository/engine_executor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace rectifier::repository {

absl::StatusOr<std::unique_ptr<EngineExecutor>> EngineExecutor::Create(
    const std::shared_ptr<const engine::CompiledModel>& model, int threads,
    const common::Clock* clock) {
  engine::ContextOptions options;
  options.threads = threads;
  ASSIGN_OR_RETURN(std::unique_ptr<engine::ExecutionContext> context,
                   engine::ExecutionContext::Create(model, options));
  return std::unique_ptr<EngineExecutor>(new EngineExecutor(std::move(context), clock));
}

absl::Status EngineExecutor::Prepare() {
  // Warmup inputs are synthetic: keep them out of the activation statistics.
  context_->PauseActivationStatistics(true);
  for (const WarmupSample& sample : warmup_) {
    for (int i = 0; i < sample.count; ++i) {
      auto outputs = context_->Run(sample.inputs);
      if (!outputs.ok()) {
        context_->PauseActivationStatistics(false);
        return absl::Status(
            outputs.status().code(),
            absl::StrCat("warmup '", sample.name, "': ", outputs.status().message()));
      }
    }
  }
  warmup_.clear();
  context_->PauseActivationStatistics(false);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<engine::Tensor>> EngineExecutor::Execute(
    const std::vector<engine::TensorView>& inputs) {
  const absl::Time start = clock_->Now();
  auto outputs = context_->RunViews(inputs);
  if (outputs.ok() && !inputs.empty() && !inputs[0].shape.empty()) {
    const int batch = static_cast<int>(inputs[0].shape[0]);
    const absl::Duration took = clock_->Now() - start;
    if (observer_ != nullptr) observer_->Executed(batch, took);
  }
  return outputs;
}

}  // namespace rectifier::repository
