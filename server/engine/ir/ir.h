// Graph IR: the ONNX graph after import, as mutable nodes over named values,
// plus the fusion annotations (post-ops) that passes attach to nodes.
#ifndef RECTIFIER_SERVER_ENGINE_IR_IR_H_
#define RECTIFIER_SERVER_ENGINE_IR_IR_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

// One ONNX attribute value; `kind` says which member is meaningful.
struct Attribute {
  enum class Kind { kInt, kFloat, kString, kInts, kFloats, kStrings, kTensor };
  Kind kind = Kind::kInt;
  int64_t i = 0;
  float f = 0.0f;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  Tensor t;

  // Attributes a lowering writes into its step's node.
  static Attribute OfInt(int64_t v) {
    Attribute a;
    a.kind = Kind::kInt;
    a.i = v;
    return a;
  }
  static Attribute OfInts(std::vector<int64_t> v) {
    Attribute a;
    a.kind = Kind::kInts;
    a.ints = std::move(v);
    return a;
  }
  static Attribute OfFloats(std::vector<float> v) {
    Attribute a;
    a.kind = Kind::kFloats;
    a.floats = std::move(v);
    return a;
  }
};

// The element-wise functions a post-op computes. The IR names them itself,
// independent of any backend; the oneDNN lowering maps them to its
// algorithms (DnnlEltwise in plan_builder.h).
enum class EltwiseFn {
  kRelu,       // x > 0 ? x : alpha * x (LeakyRelu, scalar PRelu)
  kLogistic,   // 1 / (1 + exp(-x))
  kTanh,       // tanh(x)
  kLinear,     // alpha * x + beta
  kClip,       // min(max(x, alpha), beta)
  kHardSwish,  // x * min(max(x + 3, 0), 6) / 6
  kElu,        // x > 0 ? x : alpha * (exp(x) - 1)
  kSoftplus,   // log(1 + exp(x))
  kMish,       // x * tanh(softplus(x))
  kSwish,      // x * logistic(alpha * x)
  kGeluErf,    // 0.5 x (1 + erf(x / sqrt 2))
  kGeluTanh,   // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  kExp,
  kLog,
  kSqrt,
  kAbs,
};

// An operation fused into the producing node and executed as a oneDNN
// post-op: an element-wise function, or a sum with an extra input that the
// primitive accumulates into its destination.
// kPrelu multiplies negative values by a per-channel slope (graph constant
// `slope`, one value per output channel).
struct PostOp {
  enum class Kind { kEltwise, kSum, kPrelu };
  Kind kind = Kind::kEltwise;
  EltwiseFn fn = EltwiseFn::kRelu;
  float alpha = 0.0f;
  float beta = 0.0f;
  std::string slope;  // kPrelu: constant name
  // Set on the last post-op of an absorbed activation: its catalog label
  // ("Relu", "SiLU", ...), for summaries and activation statistics.
  std::string activation;
};

struct Node {
  std::string op_type;
  std::string name;
  int opset = 0;  // version of the default ONNX domain the model imports
  // Value names; "" marks an absent optional input/output.
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attrs;

  // Fusion results. `post_ops` run in order after the node's own math;
  // a kSum post-op reads input `sum_input` (the residual operand).
  std::vector<PostOp> post_ops;
  int sum_input = -1;
  std::vector<std::string> fused;  // descriptions of absorbed nodes, for plans

  bool HasAttr(const std::string& key) const { return attrs.count(key) != 0; }
  int64_t GetInt(const std::string& key, int64_t fallback) const;
  float GetFloat(const std::string& key, float fallback) const;
  std::string GetString(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> GetInts(const std::string& key,
                               const std::vector<int64_t>& fallback = {}) const;
  std::vector<float> GetFloats(const std::string& key,
                               const std::vector<float>& fallback = {}) const;
  // Input i if present (non-empty name), else "".
  const std::string& Input(size_t i) const;
  // "op 'Conv' (node 'n3', opset 13)": the identification used in errors.
  std::string Describe() const;
};

// A graph in SSA form: every value name is produced by one node, is a graph
// input, or is a constant.
struct Graph {
  std::vector<Node> nodes;
  std::map<std::string, Tensor> constants;
  std::vector<TensorInfo> inputs;   // runtime inputs (constants excluded)
  std::vector<TensorInfo> outputs;  // shapes may be partial/unknown
  int opset = 0;
  // Type and shape of every value, filled by shape inference (per batch).
  std::map<std::string, TensorInfo> value_info;

  bool IsConstant(const std::string& value) const { return constants.count(value) != 0; }
  bool IsGraphOutput(const std::string& value) const;
  bool IsGraphInput(const std::string& value) const;
  // Number of node inputs reading `value` (graph outputs not counted).
  int ConsumerCount(const std::string& value) const;
  // Index of the node producing `value`, or -1.
  int ProducerIndex(const std::string& value) const;
};

// Reorders `graph.nodes` topologically (stable). INVALID_ARGUMENT on a cycle
// or on an input that no node, graph input or constant provides.
absl::Status TopologicalSort(Graph& graph);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_IR_IR_H_
