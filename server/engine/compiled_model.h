// CompiledModel: an ONNX model imported, optimized and lowered to oneDNN
// primitives. Immutable after Create and shared by every worker.
#ifndef RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_
#define RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

// Which kernel computes tanh and GELU-tanh.
enum class ActivationKernel {
  kOneDnn,     // oneDNN's eltwise kernel, fused as a post-op where possible
  kRectifier,  // our AVX2 kernel (fast_activations.h); after a Conv/Gemm it
               // runs as a separate in-place pass instead of a post-op
};

struct CompileOptions {
  // Fuse activations / residual adds into producing primitives. Off keeps each
  // op a separate primitive (debugging, measuring).
  bool fuse = true;
  // Largest batch an execution may use; plans are built lazily per batch size
  // up to this bound and cached.
  int max_batch_size = 64;
  // Graph inputs bound to fixed values at compile time: they become
  // initializers (weights) and disappear from inputs(). Used by the
  // conformance tests (ONNX node tests pass weights as graph inputs) and for
  // models whose shape inputs are fixed by configuration.
  std::map<std::string, Tensor> constant_inputs;
  // Upper bound on the bytes of any single tensor (weights or activations);
  // larger ones fail compilation with RESOURCE_EXHAUSTED instead of crashing.
  int64_t max_tensor_bytes = int64_t{4} << 30;
  // Kernel for tanh and GELU-tanh (config.pbtxt: activation { kernel }).
  ActivationKernel tanh_kernel = ActivationKernel::kOneDnn;
};

struct CompiledPlan;  // per batch size; defined in the engine internals

class CompiledModel {
 public:
  // Parses, validates and compiles. Errors: INVALID_ARGUMENT for a malformed
  // or inconsistent model (message names the node/tensor), UNIMPLEMENTED for
  // an unsupported op ("op 'Foo' (node 'n3', opset 13) is not supported"),
  // RESOURCE_EXHAUSTED for tensors over max_tensor_bytes.
  static absl::StatusOr<std::shared_ptr<const CompiledModel>> FromFile(
      const std::string& path, const CompileOptions& options = {});
  static absl::StatusOr<std::shared_ptr<const CompiledModel>> FromBytes(
      std::string_view onnx_bytes, const CompileOptions& options = {});

  virtual ~CompiledModel() = default;

  // Graph inputs/outputs in model order; the batch dimension (if dynamic) is -1.
  virtual const std::vector<TensorInfo>& inputs() const = 0;
  virtual const std::vector<TensorInfo>& outputs() const = 0;
  // True when dim 0 of every input is dynamic, so requests can be batched.
  virtual bool batchable() const = 0;
  virtual int max_batch_size() const = 0;

  // Human-readable plan for `batch`: nodes after fusion, layouts, and the
  // oneDNN implementation of each primitive. Compiles the plan if needed.
  virtual absl::StatusOr<std::string> DescribePlan(int batch) const = 0;
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_
