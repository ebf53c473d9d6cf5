// oneDNN lowering of element-wise, binary, concat, softmax and matmul/gemm
// nodes. Element-wise and binary ops keep their input's layout, so blocked
// layouts chosen by convolutions flow through them without reorders.
#include <cstring>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/elementwise.h"
#include "server/engine/ops/kernel_util.h"
#include "server/engine/ops/nn_ops.h"

namespace rectifier::engine {
namespace {

using dnnl::memory;
using DT = memory::data_type;

std::vector<ValueInfo> InputInfos(PlanBuilder& b, const Node& node) {
  std::vector<ValueInfo> in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const std::string& name = node.inputs[i];
    if (name.empty()) {
      in[i].present = false;
      continue;
    }
    auto vi = b.graph().value_info.find(name);
    if (vi != b.graph().value_info.end()) {
      in[i].type = vi->second.type;
      in[i].shape = vi->second.shape;
    }
    auto c = b.graph().constants.find(name);
    if (c != b.graph().constants.end()) in[i].value = &c->second;
  }
  return in;
}

// Exact spelling of a float in cache keys (hex of its bits).
std::string FloatBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return absl::StrCat(absl::Hex(bits));
}

// A value viewing the bytes of plain value `v` with another shape.
int Reshaped(PlanBuilder& b, int v, const std::vector<int64_t>& shape) {
  int id = b.NewValue(absl::StrCat(b.values()[v].name, "~"), DataType::kFloat32, shape,
                      PlanBuilder::PlainMd(shape));
  b.values()[id].alias_of = v;
  return id;
}

bool AllFloatNonEmpty(PlanBuilder& b, const Node& node) {
  for (const auto& in : node.inputs) {
    if (in.empty()) continue;
    auto vi = b.graph().value_info.find(in);
    if (vi == b.graph().value_info.end() || vi->second.type != DataType::kFloat32 ||
        NumElements(vi->second.shape) == 0)
      return false;
  }
  return true;
}

// oneDNN binary algorithm of Add/Sub/Mul/Div/Max/Min (two inputs).
bool MapToBinary(const Node& node, dnnl::algorithm& alg) {
  if (node.inputs.size() != 2) return false;
  const std::string& op = node.op_type;
  if (op == "Add" || op == "Sum") {
    alg = dnnl::algorithm::binary_add;
  } else if (op == "Sub") {
    alg = dnnl::algorithm::binary_sub;
  } else if (op == "Mul") {
    alg = dnnl::algorithm::binary_mul;
  } else if (op == "Div") {
    alg = dnnl::algorithm::binary_div;
  } else if (op == "Max") {
    alg = dnnl::algorithm::binary_max;
  } else if (op == "Min") {
    alg = dnnl::algorithm::binary_min;
  } else {
    return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<bool> LowerEltwise(PlanBuilder& b, const Node& node) {
  if (!AllFloatNonEmpty(b, node)) return false;
  std::vector<PostOp> ops;
  if (!MapToEltwise(node, InputInfos(b, node), ops)) {
    // Per-channel (or any broadcast) PRelu slope: oneDNN's prelu primitive.
    if (node.op_type != "PRelu" || node.opset < 7 || node.inputs.size() < 2 ||
        !b.graph().IsConstant(node.inputs[1]))
      return false;
    ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
    try {
      ASSIGN_OR_RETURN(int out, EmitPrelu(b, x, node.inputs[1], node.outputs[0],
                                          absl::StrCat("PRelu '", node.name, "'")));
      if (out < 0) return false;
      b.Define(node.outputs[0], out);
    } catch (const dnnl::error& e) {
      return DnnlError(e, node.Describe());
    }
    return true;
  }
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  try {
    // In place when this node is the last reader of a buffer of its own.
    const bool x_private =
        b.values()[x].alias_of < 0 && b.IsLastRead(node.inputs[0]) && !b.StorageReadLater(x);
    ASSIGN_OR_RETURN(int out,
                     EmitEltwiseChain(b, x, ops, node.outputs[0],
                                      absl::StrCat(node.op_type, " '", node.name, "'"), x_private));
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  return true;
}

absl::StatusOr<bool> LowerBinary(PlanBuilder& b, const Node& node) {
  dnnl::algorithm alg;
  if (!MapToBinary(node, alg) || !AllFloatNonEmpty(b, node)) return false;
  const auto& out_shape = b.graph().value_info.at(node.outputs[0]).shape;
  ASSIGN_OR_RETURN(int a, b.Value(node.inputs[0]));
  ASSIGN_OR_RETURN(int c, b.Value(node.inputs[1]));
  // oneDNN broadcasts only its second operand. With the first one
  // broadcast, commutative ops swap them, and Sub computes -(b - a): the
  // swapped subtraction with a linear(-1) post-op (a detector's anchor
  // points minus a batch of distances).
  bool negate = false;
  if (b.values()[a].shape != out_shape) {
    const bool commutative =
        alg == dnnl::algorithm::binary_add || alg == dnnl::algorithm::binary_mul ||
        alg == dnnl::algorithm::binary_max || alg == dnnl::algorithm::binary_min;
    negate = alg == dnnl::algorithm::binary_sub;
    if ((!commutative && !negate) || b.values()[c].shape != out_shape) return false;
    std::swap(a, c);
  }
  if (out_shape.empty()) return false;
  dnnl::primitive_attr attr = UserScratchpad();
  if (negate) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, -1.0f, 0.0f);
    attr.set_post_ops(ops);
  }
  const std::string swapped = negate ? " (operands swapped, negated)" : "";
  try {
    const memory::desc a_md = b.values()[a].md;
    int src1;
    if (b.values()[c].shape == out_shape) {
      ASSIGN_OR_RETURN(src1, b.InLayout(c, a_md));
    } else {
      // Already in src0's layout family (SE scale straight from a conv)?
      if (!b.values()[c].plain && b.values()[c].shape.size() == out_shape.size()) {
        auto same = SameLayout(a_md, PlanBuilder::Dims(b.values()[c].shape));
        if (same.ok() && *same == b.values()[c].md) {
          try {
            dnnl::binary::primitive_desc trial(dnnl::binary::desc(alg, a_md, *same, a_md), attr,
                                               b.engine());
            if (std::string(trial.impl_info_str()).find("ref") == std::string::npos) {
              int out =
                  b.NewValue(node.outputs[0], DataType::kFloat32, out_shape, trial.dst_desc());
              b.AddPrimitive(
                  trial, dnnl::binary(trial),
                  {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, c}, {DNNL_ARG_DST, out}},
                  absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(out_shape, ","),
                               "] ", LayoutName(a_md), " , ", LayoutName(*same), swapped));
              b.Define(node.outputs[0], out);
              return true;
            }
          } catch (const dnnl::error&) {
          }
        }
      }
      ASSIGN_OR_RETURN(int cp, b.Plain(c));
      std::vector<int64_t> padded =
          LegacyBroadcastShape(node, out_shape.size(), b.values()[cp].shape);
      while (padded.size() < out_shape.size()) padded.insert(padded.begin(), 1);
      src1 = padded == b.values()[cp].shape ? cp : Reshaped(b, cp, padded);
      // A broadcast operand in src0's own layout family (e.g. [N,C,1,1] in
      // nChw8c for squeeze-excitation scales) keeps oneDNN on its jit
      // kernel; a plain one can send it to the reference implementation.
      if (!b.values()[a].plain) {
        auto same = SameLayout(a_md, PlanBuilder::Dims(padded));
        if (same.ok()) {
          try {
            dnnl::binary::primitive_desc trial(dnnl::binary::desc(alg, a_md, *same, a_md), attr,
                                               b.engine());
            if (std::string(trial.impl_info_str()).find("ref") == std::string::npos) {
              ASSIGN_OR_RETURN(src1, b.InLayout(src1, *same));
            }
          } catch (const dnnl::error&) {
          }
        }
      }
    }
    dnnl::binary::desc d(alg, a_md, b.values()[src1].md, a_md);
    dnnl::binary::primitive_desc pd(d, attr, b.engine());
    int out = b.NewValue(node.outputs[0], DataType::kFloat32, out_shape, pd.dst_desc());
    b.AddPrimitive(
        pd, dnnl::binary(pd), {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, out}},
        absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(out_shape, ","), "] ",
                     LayoutName(a_md), " , ", LayoutName(b.values()[src1].md), swapped));
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  return true;
}

absl::StatusOr<bool> LowerConcat(PlanBuilder& b, const Node& node) {
  if (!AllFloatNonEmpty(b, node) || node.inputs.size() < 2) return false;
  const auto& out_shape = b.graph().value_info.at(node.outputs[0]).shape;
  if (out_shape.empty()) return false;
  int64_t axis = node.GetInt("axis", 1);
  if (axis < 0) axis += static_cast<int64_t>(out_shape.size());
  std::vector<int> srcs;
  std::vector<memory::desc> mds;
  for (const auto& in : node.inputs) {
    ASSIGN_OR_RETURN(int v, b.Value(in));
    srcs.push_back(v);
  }
  // Inputs in different layouts are brought to the layout of the first
  // non-plain one, so the concat stays in the conv chain's layout (mixed
  // layouts would also send oneDNN to its slow reference concat).
  int ref = -1;
  for (int v : srcs)
    if (!b.values()[v].plain && ref < 0) ref = v;
  for (int& v : srcs) {
    if (ref >= 0 && !(b.values()[v].md == b.values()[ref].md)) {
      auto md = SameLayout(b.values()[ref].md, PlanBuilder::Dims(b.values()[v].shape));
      if (md.ok()) {
        ASSIGN_OR_RETURN(v, b.InLayout(v, *md));
      }
    }
    mds.push_back(b.values()[v].md);
  }
  ASSIGN_OR_RETURN(bool copied, LowerConcatAsCopies(b, node, srcs, static_cast<int>(axis)));
  if (copied) return true;
  try {
    dnnl::concat::primitive_desc pd(static_cast<int>(axis), mds, b.engine(), UserScratchpad());
    int out = b.NewValue(node.outputs[0], DataType::kFloat32, out_shape, pd.dst_desc());
    std::vector<std::pair<int, int>> args;
    std::vector<std::string> layouts;
    for (size_t i = 0; i < srcs.size(); ++i) {
      args.push_back({DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i), srcs[i]});
      layouts.push_back(LayoutName(mds[i]));
    }
    args.push_back({DNNL_ARG_DST, out});
    b.AddPrimitive(pd, dnnl::concat(pd), std::move(args),
                   absl::StrCat("Concat '", node.name, "' [", absl::StrJoin(out_shape, ","), "] ",
                                absl::StrJoin(layouts, ","), " -> ", LayoutName(pd.dst_desc())));
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  return true;
}

absl::StatusOr<bool> LowerSoftmax(PlanBuilder& b, const Node& node) {
  if (!AllFloatNonEmpty(b, node)) return false;
  const auto& shape = b.graph().value_info.at(node.outputs[0]).shape;
  if (shape.empty()) return false;
  SoftmaxGeometry geo = ResolveSoftmax(node, shape);
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  ASSIGN_OR_RETURN(x, b.Plain(x));
  if (geo.inner > 1 && b.rectifier_kernels()) {
    // oneDNN 2.6 runs a softmax whose axis is not innermost with its
    // reference kernel (58 ms of a 640x640 YOLOv8n frame on AVX2).
    ASSIGN_OR_RETURN(
        int out,
        EmitRectifierSoftmax(b, x, geo.outer, geo.axis, geo.inner, node.op_type == "LogSoftmax",
                             node.outputs[0], absl::StrCat(node.op_type, " '", node.name, "'")));
    b.Define(node.outputs[0], out);
    return true;
  }
  const std::vector<int64_t> s3 = {geo.outer, geo.axis, geo.inner};
  int src = Reshaped(b, x, s3);
  int out = b.NewValue(node.outputs[0], DataType::kFloat32, shape, PlanBuilder::PlainMd(shape));
  int dst = Reshaped(b, out, s3);
  const memory::desc md = b.values()[src].md;
  try {
    std::string impl;
    if (node.op_type == "LogSoftmax") {
      dnnl::logsoftmax_forward::desc d(dnnl::prop_kind::forward_inference, md, 1);
      dnnl::logsoftmax_forward::primitive_desc pd(d, UserScratchpad(), b.engine());
      b.AddPrimitive(pd, dnnl::logsoftmax_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}},
                     absl::StrCat("LogSoftmax '", node.name, "' [", absl::StrJoin(s3, ","), "]"),
                     {});
    } else {
      dnnl::softmax_forward::desc d(dnnl::prop_kind::forward_inference, md, 1);
      dnnl::softmax_forward::primitive_desc pd(d, UserScratchpad(), b.engine());
      b.AddPrimitive(pd, dnnl::softmax_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}},
                     absl::StrCat("Softmax '", node.name, "' [", absl::StrJoin(s3, ","), "]"), {});
    }
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  // The step writes through the 3-D view; liveness must see the real value.
  b.plan().steps.back().writes.push_back(out);
  b.Define(node.outputs[0], out);
  return true;
}

namespace {

// A Gemm/MatMul as [m, k] x [k, n] (+ bias [1, n]) with constant 2-D weights.
struct MatMulSetup {
  bool gemm = false, ta = false, tb = false;
  int64_t m = 1, k = 0, n = 0;
  float alpha = 1.0f, beta = 1.0f;  // Gemm's: alpha scales the weights, beta the bias
  const Tensor* w = nullptr;
  bool has_bias = false;
  Tensor bias;  // [1, n], beta applied
};

// nullopt for the cases the matmul primitive does not cover (runtime or
// non-2-D weights, a bias that is not per column), which run the
// reference kernel.
std::optional<MatMulSetup> ResolveMatMul(const Graph& g, const Node& node,
                                         const std::vector<int64_t>& as) {
  MatMulSetup s;
  s.gemm = node.op_type == "Gemm";
  auto wc = g.constants.find(node.Input(1));
  if (wc == g.constants.end() || wc->second.shape.size() != 2) return std::nullopt;
  s.w = &wc->second;
  if (as.size() < 2 && !s.gemm) return std::nullopt;
  s.ta = s.gemm && node.GetInt("transA", 0) != 0;
  s.tb = s.gemm && node.GetInt("transB", 0) != 0;
  s.k = s.tb ? s.w->shape[1] : s.w->shape[0];
  s.n = s.tb ? s.w->shape[0] : s.w->shape[1];
  for (size_t i = 0; i + 1 < as.size(); ++i) s.m *= as[i];
  if (s.ta) s.m = as[1];
  s.alpha = s.gemm ? node.GetFloat("alpha", 1.0f) : 1.0f;
  s.beta = s.gemm ? node.GetFloat("beta", 1.0f) : 1.0f;
  if (s.gemm && !node.Input(2).empty()) {
    auto bc = g.constants.find(node.Input(2));
    if (bc == g.constants.end()) return std::nullopt;
    const auto& cs = bc->second.shape;
    const int64_t count = bc->second.num_elements();
    if (!(count == s.n && (cs.size() == 1 || (cs.size() == 2 && cs[0] == 1))) && count != 1)
      return std::nullopt;
    s.bias = Tensor::Zeros(DataType::kFloat32, {1, s.n});
    for (int64_t j = 0; j < s.n; ++j)
      s.bias.data<float>()[j] = s.beta * bc->second.data<float>()[count == 1 ? 0 : j];
    s.has_bias = true;
  }
  return s;
}

// The matmul primitive, with the node's fused activations as eltwise
// post-ops when oneDNN has an optimized kernel for them (`fused` true);
// otherwise without, and they run as separate steps.
dnnl::matmul::primitive_desc ChooseMatMulPrimitive(PlanBuilder& b, const Node& node,
                                                   const dnnl::matmul::desc& d,
                                                   const MatMulSetup& s, bool& fused) {
  fused = false;
  bool rectifier_kernel = false;
  for (const auto& op : node.post_ops) rectifier_kernel |= UsesRectifierKernel(b, op);
  if (!node.post_ops.empty() && !rectifier_kernel) {
    dnnl::primitive_attr attr = UserScratchpad();
    dnnl::post_ops po;
    for (const auto& op : node.post_ops) {
      if (op.kind == PostOp::Kind::kPrelu) {
        po.append_prelu(PreluMask(PreluSlopeDims(b.graph(), op.slope, {s.m, s.n})));
      } else {
        po.append_eltwise(1.0f, DnnlEltwise(op.fn), op.alpha, op.beta);
      }
    }
    attr.set_post_ops(po);
    try {
      dnnl::matmul::primitive_desc trial(d, attr, b.engine());
      if (std::string(trial.impl_info_str()).find("ref") == std::string::npos) {
        fused = true;
        return trial;
      }
    } catch (const dnnl::error&) {
    }
  }
  return dnnl::matmul::primitive_desc(d, UserScratchpad(), b.engine());
}

// The source as an [m, k] matrix view of plain value `ap`.
int MatMulSource(PlanBuilder& b, const MatMulSetup& s, int ap) {
  if (!s.ta) return Reshaped(b, ap, {s.m, s.k});
  // A stored [K, M]: a strided view.
  int src = b.NewValue(absl::StrCat(b.values()[ap].name, "^T"), DataType::kFloat32, {s.m, s.k},
                       memory::desc({s.m, s.k}, DT::f32, memory::dims{1, s.m}));
  b.values()[src].alias_of = ap;
  return src;
}

}  // namespace

absl::StatusOr<bool> LowerMatMul(PlanBuilder& b, const Node& node) {
  if (!AllFloatNonEmpty(b, node)) return false;
  const auto& out_shape = b.graph().value_info.at(node.outputs[0]).shape;
  ASSIGN_OR_RETURN(int a, b.Value(node.inputs[0]));
  std::optional<MatMulSetup> setup = ResolveMatMul(b.graph(), node, b.values()[a].shape);
  if (!setup) return false;
  const MatMulSetup& s = *setup;
  const int64_t m = s.m, k = s.k, n = s.n;
  // Only a Gemm with alpha != 1 needs its own scaled copy of the weights;
  // every other consumer reads (and shares the reordered form of) the
  // constant itself.
  Tensor scaled;
  const void* w_data = s.w->bytes.data();
  if (s.alpha != 1.0f) {
    scaled = *s.w;
    for (int64_t i = 0; i < scaled.num_elements(); ++i) scaled.data<float>()[i] *= s.alpha;
    w_data = scaled.bytes.data();
  }
  try {
    ASSIGN_OR_RETURN(int ap, b.Plain(a));
    const int src = MatMulSource(b, s, ap);
    const memory::desc w_src = s.tb ? memory::desc({k, n}, DT::f32, memory::dims{1, k})
                                    : memory::desc({k, n}, DT::f32, memory::dims{n, 1});
    const memory::desc w_any({k, n}, DT::f32, memory::format_tag::any);
    const memory::desc dst_md({m, n}, DT::f32, memory::format_tag::ab);
    const memory::desc bias_md({1, n}, DT::f32, memory::format_tag::ab);
    auto d = s.has_bias ? dnnl::matmul::desc(b.values()[src].md, w_any, bias_md, dst_md)
                        : dnnl::matmul::desc(b.values()[src].md, w_any, dst_md);
    bool fused_ops = false;
    dnnl::matmul::primitive_desc pd = ChooseMatMulPrimitive(b, node, d, s, fused_ops);
    ASSIGN_OR_RETURN(int wv,
                     b.ConstantInLayout(
                         absl::StrCat(node.Input(1), s.tb ? "@matmulT" : "@matmul",
                                      s.alpha != 1.0f ? absl::StrCat("*", FloatBits(s.alpha)) : ""),
                         w_data, w_src, pd.weights_desc(), {k, n}));
    const bool separate = !node.post_ops.empty() && !fused_ops;
    int out = b.NewValue(separate ? node.outputs[0] + "#matmul" : node.outputs[0],
                         DataType::kFloat32, out_shape, PlanBuilder::PlainMd(out_shape));
    int dst = Reshaped(b, out, {m, n});
    std::vector<std::pair<int, int>> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wv}, {DNNL_ARG_DST, dst}};
    if (s.has_bias) {
      ASSIGN_OR_RETURN(int bv, b.ConstantInLayout(absl::StrCat(node.Input(2), "@gemm_bias*",
                                                               FloatBits(s.beta), "/", n),
                                                  s.bias.bytes.data(), bias_md, bias_md, {1, n}));
      args.push_back({DNNL_ARG_BIAS, bv});
    }
    for (size_t i = 0; fused_ops && i < node.post_ops.size(); ++i) {
      const PostOp& op = node.post_ops[i];
      if (op.kind != PostOp::Kind::kPrelu) continue;
      ASSIGN_OR_RETURN(int sv,
                       PreluSlopeValue(b, op.slope, PreluSlopeDims(b.graph(), op.slope, {m, n})));
      args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(static_cast<int>(i)) | DNNL_ARG_WEIGHTS, sv});
    }
    b.AddPrimitive(
        pd, dnnl::matmul(pd), std::move(args),
        absl::StrCat(node.op_type, " '", node.name, "' [", m, "x", k, "] x [", k, "x", n,
                     "] wei:", LayoutName(pd.weights_desc()),
                     fused_ops ? absl::StrCat(" +", node.post_ops.size(), " eltwise") : ""),
        {ap});
    b.plan().steps.back().writes.push_back(out);
    if (separate) {
      ASSIGN_OR_RETURN(out, EmitEltwiseChain(b, out, node.post_ops, node.outputs[0],
                                             absl::StrCat("Eltwise (unfused from ", node.name, ")"),
                                             /*v_private=*/true));
    }
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  return true;
}

}  // namespace rectifier::engine

namespace rectifier::engine {

absl::StatusOr<bool> LowerBatchNorm(PlanBuilder& b, const Node& node) {
  // BatchNormalization that could not be folded into a conv (e.g. after a
  // Concat): oneDNN's inference batch norm keeps the producer's layout.
  if (!AllFloatNonEmpty(b, node) || node.inputs.size() < 5) return false;
  if (node.outputs.size() > 1) {
    for (size_t i = 1; i < node.outputs.size(); ++i)
      if (!node.outputs[i].empty()) return false;
  }
  const Graph& g = b.graph();
  for (int i = 1; i < 5; ++i)
    if (!g.IsConstant(node.Input(i))) return false;
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  const std::vector<int64_t> xs = b.values()[x].shape;  // copy: values() grows below
  if (xs.size() < 2 || xs.size() > 5) return false;
  const int64_t c = xs[1];
  try {
    const dnnl::memory::desc md = b.values()[x].md;
    dnnl::batch_normalization_forward::desc d(
        dnnl::prop_kind::forward_inference, md, node.GetFloat("epsilon", 1e-5f),
        dnnl::normalization_flags::use_global_stats | dnnl::normalization_flags::use_scale |
            dnnl::normalization_flags::use_shift);
    dnnl::batch_normalization_forward::primitive_desc pd(d, UserScratchpad(), b.engine());
    const dnnl::memory::desc c_md({c}, DT::f32, dnnl::memory::format_tag::x);
    std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, x}};
    const int kArgs[] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
    for (int i = 0; i < 4; ++i) {
      const Tensor& t = g.constants.at(node.Input(1 + i));
      if (t.num_elements() != c) return false;
      ASSIGN_OR_RETURN(int v,
                       b.ConstantInLayout(node.Input(1 + i), t.bytes.data(), c_md, c_md, {c}));
      args.push_back({kArgs[i], v});
    }
    int out = b.NewValue(node.outputs[0], DataType::kFloat32, xs, pd.dst_desc());
    args.push_back({DNNL_ARG_DST, out});
    b.AddPrimitive(pd, dnnl::batch_normalization_forward(pd), std::move(args),
                   absl::StrCat("BatchNormalization '", node.name, "' [", absl::StrJoin(xs, ","),
                                "] ", LayoutName(md)));
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return false;
  }
  return true;
}

}  // namespace rectifier::engine
