// Per-batch shape inference and folding.
#include "server/engine/passes/shape_inference.h"

#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {

namespace {

// Element count, or -1 when it would exceed `limit` (no overflow). The
// product of the non-zero dims is bounded too: a zero-sized tensor such as
// [0, INT64_MAX, 4] holds nothing, but its strides would still overflow.
int64_t CheckedElements(const std::vector<int64_t>& shape, int64_t limit) {
  int64_t nonzero = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return -1;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero > limit / d) return -1;
    nonzero *= d;
  }
  return empty ? 0 : nonzero;
}

// What inference knows about each input of `n`; `all_const` tells whether
// every present input is a constant.
absl::StatusOr<std::vector<ValueInfo>> InputInfos(const Graph& g, const Node& n, bool& all_const) {
  std::vector<ValueInfo> in(n.inputs.size());
  all_const = true;
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const std::string& name = n.inputs[k];
    if (name.empty()) {
      in[k].present = false;
      continue;
    }
    auto it = g.value_info.find(name);
    if (it == g.value_info.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", name, "' of ", n.Describe(), " has no known shape"));
    }
    in[k].type = it->second.type;
    in[k].shape = it->second.shape;
    auto c = g.constants.find(name);
    if (c != g.constants.end()) {
      in[k].value = &c->second;
    } else {
      all_const = false;
    }
  }
  return in;
}

// Runs the op's inference; errors name the input shapes.
absl::StatusOr<std::vector<ValueInfo>> InferNode(const OpDef& op, const Node& n,
                                                 const std::vector<ValueInfo>& in) {
  // Fused nodes carry extra inputs (residual operand); infer on the
  // original signature.
  std::vector<ValueInfo> base_in = in;
  if (n.sum_input >= 0) base_in.resize(static_cast<size_t>(n.sum_input));
  std::vector<ValueInfo> out(n.outputs.size());
  absl::Status st = op.infer(n, base_in, out);
  if (!st.ok()) {
    std::vector<std::string> shapes;
    shapes.reserve(in.size());
    for (const auto& v : in) shapes.push_back(absl::StrCat("[", absl::StrJoin(v.shape, ","), "]"));
    return absl::Status(
        st.code(), absl::StrCat(st.message(), " (input shapes ", absl::StrJoin(shapes, " "), ")"));
  }
  return out;
}

// Every output has non-negative dims and fits in max_tensor_bytes.
absl::Status CheckOutputSizes(const Node& n, const std::vector<ValueInfo>& out,
                              int64_t max_tensor_bytes) {
  for (size_t k = 0; k < out.size(); ++k) {
    for (int64_t d : out[k].shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), " produced a negative dimension"));
      }
    }
    const int64_t elems = CheckedElements(out[k].shape, max_tensor_bytes);
    const int64_t bytes = elems < 0 ? -1 : elems * static_cast<int64_t>(DataTypeSize(out[k].type));
    if (bytes < 0 || bytes > max_tensor_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("output '", n.outputs[k], "' of ", n.Describe(), " needs ", bytes,
                       " bytes, over max_tensor_bytes (", max_tensor_bytes, ")"));
    }
  }
  return absl::OkStatus();
}

// Runs the reference kernel of `n` now; its outputs become constants.
absl::Status FoldNode(Graph& g, const OpDef& op, const Node& n, const std::vector<ValueInfo>& in,
                      const std::vector<ValueInfo>& out) {
  std::vector<View> views(n.inputs.size());
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    if (!in[k].present) continue;
    views[k].type = in[k].type;
    views[k].shape = in[k].shape;
    views[k].data = in[k].value ? const_cast<std::byte*>(in[k].value->bytes.data()) : nullptr;
  }
  std::vector<Tensor> results(out.size());
  std::vector<View> out_views(out.size());
  for (size_t k = 0; k < out.size(); ++k) {
    results[k] = Tensor::Zeros(out[k].type, out[k].shape);
    out_views[k] =
        View{out[k].type, out[k].shape, n.outputs[k].empty() ? nullptr : results[k].bytes.data()};
  }
  RETURN_IF_ERROR(op.compute(n, views, out_views));
  for (size_t k = 0; k < out.size(); ++k) {
    if (n.outputs[k].empty()) continue;
    g.value_info[n.outputs[k]] = TensorInfo{n.outputs[k], out[k].type, out[k].shape};
    g.constants[n.outputs[k]] = std::move(results[k]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status InferShapes(Graph& g, int64_t max_tensor_bytes) {
  g.value_info.clear();
  for (const auto& in : g.inputs) {
    const int64_t elems = CheckedElements(in.shape, max_tensor_bytes);
    if (elems < 0 || elems * static_cast<int64_t>(DataTypeSize(in.type)) > max_tensor_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("input '", in.name, "' [", absl::StrJoin(in.shape, ","),
                       "] is invalid or exceeds max_tensor_bytes (", max_tensor_bytes, ")"));
    }
    g.value_info[in.name] = in;
  }
  for (const auto& [name, t] : g.constants) g.value_info[name] = TensorInfo{name, t.type, t.shape};
  std::vector<Node> kept;
  for (auto& n : g.nodes) {
    const OpDef* op = FindOp(n.op_type);
    if (op == nullptr) {
      return absl::UnimplementedError(absl::StrCat("unsupported op '", n.op_type, "' (node '",
                                                   n.name, "', opset ", n.opset, ")"));
    }
    RETURN_IF_ERROR(CheckArity(n));
    bool all_const = true;
    ASSIGN_OR_RETURN(std::vector<ValueInfo> in, InputInfos(g, n, all_const));
    ASSIGN_OR_RETURN(std::vector<ValueInfo> out, InferNode(*op, n, in));
    RETURN_IF_ERROR(CheckOutputSizes(n, out, max_tensor_bytes));
    if (op->compute != nullptr && (all_const || op->shape_only) && n.post_ops.empty()) {
      RETURN_IF_ERROR(FoldNode(g, *op, n, in, out));
      continue;
    }
    for (size_t k = 0; k < out.size(); ++k) {
      if (n.outputs[k].empty()) continue;
      g.value_info[n.outputs[k]] = TensorInfo{n.outputs[k], out[k].type, out[k].shape};
    }
    kept.push_back(std::move(n));
  }
  g.nodes = std::move(kept);
  return absl::OkStatus();
}

}  // namespace rectifier::engine
