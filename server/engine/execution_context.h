// ExecutionContext: per-worker mutable state for running a CompiledModel
// (oneDNN stream, activation arena, scratchpad). Not thread-safe: one thread
// at a time; create one per worker.
#ifndef RECTIFIER_SERVER_ENGINE_EXECUTION_CONTEXT_H_
#define RECTIFIER_SERVER_ENGINE_EXECUTION_CONTEXT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/compiled_model.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

struct ContextOptions {
  // OpenMP threads used by this context's primitives; 0 = all available CPUs.
  int threads = 0;
};

// Wall time of each step of one plan, summed over the profiled executions.
struct StepProfile {
  int batch = 0;
  std::string shapes;  // the input shapes, for a model with dynamic dims besides the batch
  int runs = 0;
  std::vector<std::string> steps;  // the plan's steps, as DescribePlan prints them
  std::vector<double> ms;          // per step, summed over `runs`
};

class ExecutionContext {
 public:
  static absl::StatusOr<std::unique_ptr<ExecutionContext>> Create(
      const std::shared_ptr<const CompiledModel>& model, const ContextOptions& options = {});
  virtual ~ExecutionContext() = default;

  // Runs the model. `inputs` in the order of model->inputs(), each dense
  // row-major in the model's own layout (NCHW for images); for a batchable
  // model dim 0 is the batch and must be equal across inputs and
  // <= max_batch_size(). Other dynamic dimensions take any size >= 1 within
  // max_input_dims; a new input-shape signature compiles its plan first.
  // Returns outputs in the order of model->outputs(). Errors:
  // INVALID_ARGUMENT for a wrong count, type or shape (message names the
  // input and both shapes).
  virtual absl::StatusOr<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) = 0;
  // Same, reading inputs that belong to someone else (a request message):
  // no copy of them is made. They must stay valid until it returns.
  virtual absl::StatusOr<std::vector<Tensor>> RunViews(const std::vector<TensorView>& inputs) = 0;

  // Same, writing into caller-owned output buffers (no allocation on the hot
  // path). `outputs[i]` must already have the right type and shape for these
  // inputs (CompiledModel::OutputShapes).
  virtual absl::Status RunInto(const std::vector<const Tensor*>& inputs,
                               const std::vector<Tensor*>& outputs) = 0;

  // While paused, no execution of this context is sampled for activation
  // statistics: warmup feeds synthetic inputs (zeros by default) that would
  // report every channel dead. Not paused by default.
  virtual void PauseActivationStatistics(bool paused) = 0;

  // While on, every step of every execution is timed (the stream is waited
  // on after each step). For tools such as `rectifier-engine --profile`;
  // off by default.
  virtual void EnableStepProfile(bool on) = 0;
  // One profile per plan executed while profiling was on, in batch order
  // (then by input shapes). A split batch (CompileOptions::batch_split)
  // shows as its part plan, with the parts' runs and times summed.
  virtual std::vector<StepProfile> StepProfiles() const = 0;

  // How many parts the last Run or RunInto ran its batch as, each on one
  // thread (CompileOptions::batch_split); 1 when it was not split.
  virtual int last_batch_parts() const = 0;
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_EXECUTION_CONTEXT_H_
