// Op registry: for every supported ONNX op, a shape/type inference function
// and (for ops without a oneDNN lowering, and for constant folding) a plain
// row-major reference kernel.
#ifndef RECTIFIER_SERVER_ENGINE_OP_REGISTRY_H_
#define RECTIFIER_SERVER_ENGINE_OP_REGISTRY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "server/engine/ir.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

// What inference knows about one value: type, concrete shape (plans are
// compiled per batch size, so every shape is known), and the contents when
// the value is a compile-time constant.
struct ValueInfo {
  bool present = true;  // false for an absent optional input
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  const Tensor* value = nullptr;
};

// A non-owning dense row-major tensor.
struct View {
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  void* data = nullptr;
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  int64_t size() const { return NumElements(shape); }
};

// Fills `out` (already sized to the node's output count) from `in`.
using InferFn = absl::Status (*)(const Node& node, const std::vector<ValueInfo>& in,
                                 std::vector<ValueInfo>& out);
// Computes outputs (allocated with the inferred shapes) from inputs.
using ComputeFn = absl::Status (*)(const Node& node, const std::vector<View>& in,
                                   const std::vector<View>& out);

struct OpDef {
  InferFn infer = nullptr;
  ComputeFn compute = nullptr;  // nullptr: only a oneDNN lowering exists
};

using OpTable = std::map<std::string, OpDef>;

// INVALID_ARGUMENT when `node` lacks inputs its kernels index
// unconditionally, or has no (first) output.
absl::Status CheckArity(const Node& node);

// nullptr for unsupported ops.
const OpDef* FindOp(const std::string& op_type);

// Registration hooks, one per op-family file.
void RegisterElementwiseOps(OpTable& table);
void RegisterTensorOps(OpTable& table);
void RegisterNnOps(OpTable& table);
void RegisterConvPoolOps(OpTable& table);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OP_REGISTRY_H_
