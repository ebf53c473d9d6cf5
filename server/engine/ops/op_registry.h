// Op registry: an op's whole definition in one place. For every supported
// ONNX op: its arity, a shape/type inference function, a plain row-major
// reference kernel (for constant folding and for cases without a oneDNN
// lowering), its oneDNN lowering, and the capability flags that passes and
// the plan builder consult. Adding an op is one registration in its family
// file plus its kernel and its test (docs/ENGINE.md, "Adding an op").
#ifndef RECTIFIER_SERVER_ENGINE_OPS_OP_REGISTRY_H_
#define RECTIFIER_SERVER_ENGINE_OPS_OP_REGISTRY_H_

#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/engine/ir/ir.h"
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

class PlanBuilder;
// Lowers `node` onto oneDNN primitives: true when lowered, false when this
// case is not covered and the node runs as its reference kernel instead.
using LowerFn = absl::StatusOr<bool> (*)(PlanBuilder& b, const Node& node);
// True when the node's output 0 is its input 0 under another shape or name
// (Reshape, Identity, ...): the plan then emits no step for it.
using ViewFn = bool (*)(const Graph& graph, const Node& node);

// How many inputs and outputs a node of an op must have.
struct Arity {
  static constexpr int kAll = 1 << 20;
  int min_inputs = 1;     // inputs the kernels index unconditionally
  int named_inputs = -1;  // leading inputs that must not be "" (omitted);
                          // -1: min_inputs; kAll: every listed input
  int max_outputs = 1;    // outputs past this one must be omitted
};

struct OpDef {
  InferFn infer = nullptr;
  ComputeFn compute = nullptr;  // nullptr: only a oneDNN lowering exists
  LowerFn lower = nullptr;      // nullptr: always the reference kernel
  ViewFn view = nullptr;        // nullptr: never a view
  // Eltwise and prelu post-ops fused into it (FuseActivations).
  bool fuses_activation = false;
  // A sum post-op fused into it (FuseResidualAdd).
  bool fuses_sum = false;
  // Reads only its input's shape (Shape, Size): folded once shapes are
  // known, even when the input is not a constant.
  bool shape_only = false;
  // Inputs whose values shape inference or the lowering needs (scales,
  // sizes, axes, pads, a target shape): they must be compile-time
  // constants. A graph input feeding one selects the plan by its value
  // (FindValueInputs).
  std::vector<int> value_inputs;
  Arity arity;
  // From opset `first` on, `second` replaces `arity` (ascending opsets).
  std::vector<std::pair<int, Arity>> arity_since;

  // The arity that applies to a node of opset `opset`.
  const Arity& ArityAt(int opset) const;

  // Chained setters for the registration functions.
  OpDef& Kernels(InferFn i, ComputeFn c) {
    infer = i;
    compute = c;
    return *this;
  }
  OpDef& Lower(LowerFn l) {
    lower = l;
    return *this;
  }
  OpDef& View(ViewFn v) {
    view = v;
    return *this;
  }
  OpDef& Inputs(int min, int named = -1) {
    arity.min_inputs = min;
    arity.named_inputs = named;
    return *this;
  }
  OpDef& InputsSince(int opset, int min, int named = -1) {
    Arity a = arity;
    a.min_inputs = min;
    a.named_inputs = named;
    arity_since.emplace_back(opset, a);
    return *this;
  }
  OpDef& Outputs(int max) {
    arity.max_outputs = max;
    for (auto& [opset, a] : arity_since) a.max_outputs = max;
    return *this;
  }
  OpDef& FusesActivation() {
    fuses_activation = true;
    return *this;
  }
  OpDef& FusesSum() {
    fuses_sum = true;
    return *this;
  }
  OpDef& ShapeOnly() {
    shape_only = true;
    return *this;
  }
  OpDef& ValueInputs(std::initializer_list<int> indices) {
    value_inputs = indices;
    return *this;
  }
};

using OpTable = std::map<std::string, OpDef>;

// INVALID_ARGUMENT when `node` lacks inputs its kernels index
// unconditionally, omits a required one, has no (first) output or more
// outputs than its op allows.
absl::Status CheckArity(const Node& node);

// nullptr for unsupported ops.
const OpDef* FindOp(const std::string& op_type);

// View functions shared by several ops.
bool AlwaysView(const Graph& graph, const Node& node);

// Registration hooks, one per op-family file.
void RegisterElementwiseOps(OpTable& table);
void RegisterTensorOps(OpTable& table);
void RegisterNnOps(OpTable& table);
void RegisterConvPoolOps(OpTable& table);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_OP_REGISTRY_H_
