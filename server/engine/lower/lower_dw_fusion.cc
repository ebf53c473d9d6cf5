// Depthwise fusion: a 1x1 convolution and the depthwise convolution that
// alone reads its output, lowered as one oneDNN step (docs/ENGINE.md).
//
// MobileNet-style blocks expand channels with a 1x1 convolution and filter
// them with a depthwise one. Where the expanded tensor is large (early,
// high-resolution blocks) writing it out and reading it back is much of
// the two steps' time; oneDNN's depthwise post-op computes the depthwise
// convolution on rows of the 1x1's output while they are still in cache
// (jit_1x1 kernels, channel-blocked layouts). Measured per pair
// (docs/PERFORMANCE.md, "Depthwise fusion"), it pays only with cheap
// activations (ReLU, clip) and an expanded tensor that leaves the L2
// cache, and only where oneDNN picks its JIT fused kernel rather than its
// generic "ref_fused" sequence: those are the conditions below.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/conv_setup.h"
#include "server/engine/lower/plan_builder.h"

namespace rectifier::engine {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;

// Bytes per image of the 1x1 output from which fusion is tried.
constexpr int64_t kDepthwiseFusionMinBytes = int64_t{1} << 20;

bool CheapActivations(const PlanBuilder& b, const std::vector<PostOp>& ops) {
  for (const PostOp& op : ops) {
    if (op.kind != PostOp::Kind::kEltwise || UsesRectifierKernel(b, op)) return false;
    if (op.fn != EltwiseFn::kRelu && op.fn != EltwiseFn::kClip && op.fn != EltwiseFn::kLinear) {
      return false;
    }
  }
  return true;
}

// The depthwise convolution a 1x1 convolution's output feeds alone.
struct DepthwiseTail {
  size_t index = 0;  // in graph().nodes
  const Node* node = nullptr;
  ConvSetup setup;
  int64_t kernel = 0, stride = 0;
};

// The node reading `node`'s output when it fuses as a depthwise post-op of
// `node` (a 1x1 convolution, setup `c`), else nullopt.
absl::StatusOr<std::optional<DepthwiseTail>> FindDepthwiseTail(PlanBuilder& b, const Node& node,
                                                               const ConvSetup& c,
                                                               const std::vector<int64_t>& xs) {
  const Graph& g = b.graph();
  const std::vector<int64_t>& w = c.weights_shape;
  const std::vector<int64_t>& mid = c.geo.out_shape;
  auto all = [](const std::vector<int64_t>& v, int64_t x) {
    return std::all_of(v.begin(), v.end(), [x](int64_t e) { return e == x; });
  };
  if (!b.fuse_depthwise() || c.transpose || xs.size() != 4 || c.geo.groups != 1 ||
      c.weights == nullptr || c.runtime_bias || node.sum_input >= 0 || w.size() != 4 || w[2] != 1 ||
      w[3] != 1 || !all(c.geo.strides, 1) || !all(c.geo.dilations, 1) || !all(c.geo.pad_begin, 0) ||
      !all(c.geo.pad_end, 0) || !CheapActivations(b, node.post_ops) ||
      mid[1] * mid[2] * mid[3] * 4 < kDepthwiseFusionMinBytes || g.IsGraphOutput(node.outputs[0])) {
    return std::nullopt;
  }
  std::optional<DepthwiseTail> tail;
  for (size_t i = b.current_node() + 1; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k] != node.outputs[0]) continue;
      if (tail.has_value() || k != 0) return std::nullopt;  // a second reader
      tail = DepthwiseTail{i, &n, {}, 0, 0};
    }
  }
  if (!tail.has_value()) return std::nullopt;
  const Node& dw = *tail->node;
  if (dw.op_type != "Conv" || dw.sum_input >= 0 || !CheapActivations(b, dw.post_ops) ||
      dw.outputs.size() != 1) {
    return std::nullopt;
  }
  // A node that does not resolve fails in its own lowering, not here.
  absl::StatusOr<ConvSetup> setup = ResolveConvSetup(g, dw, mid);
  if (!setup.ok()) return std::nullopt;
  tail->setup = *std::move(setup);
  const ConvSetup& d = tail->setup;
  const std::vector<int64_t>& dw_shape = d.weights_shape;
  const int64_t k = dw_shape.size() == 4 ? dw_shape[2] : 0;
  const int64_t s = d.geo.strides.empty() ? 0 : d.geo.strides[0];
  // oneDNN derives the depthwise output size as ceil(in / stride) from a
  // symmetric (k - 1) / 2 padding: the node must agree.
  if (d.transpose || d.weights == nullptr || d.runtime_bias || d.geo.groups != mid[1] ||
      dw_shape.size() != 4 || dw_shape[0] != mid[1] || dw_shape[1] != 1 || dw_shape[3] != k ||
      (k != 3 && k != 5) || (s != 1 && s != 2) || !all(d.geo.strides, s) ||
      !all(d.geo.dilations, 1) || !all(d.geo.pad_begin, (k - 1) / 2) ||
      d.geo.out_shape[2] != (mid[2] + s - 1) / s || d.geo.out_shape[3] != (mid[3] + s - 1) / s) {
    return std::nullopt;
  }
  tail->kernel = k;
  tail->stride = s;
  return tail;
}

// The fused primitive for `node` (setup `c`) and `tail`, in the plan's
// channel-blocked layout; nullopt where there is none or oneDNN offers only
// its generic fused sequence.
std::optional<dnnl::primitive_desc> MakeDepthwiseFusedPd(PlanBuilder& b, const Node& node,
                                                         const ConvSetup& c,
                                                         const DepthwiseTail& tail, int x) {
  Tag tag = Tag::undef;
  if (b.conv_layout() == ConvLayout::kBlocked8) {
    tag = Tag::nChw8c;
  } else if (b.conv_layout() == ConvLayout::kBlocked16) {
    tag = Tag::nChw16c;
  } else {
    // oneDNN's own choice: fuse where the input already is channel-blocked.
    for (Tag t : {Tag::nChw8c, Tag::nChw16c}) {
      if (b.values()[x].md == memory::desc(c.any_src.dims(), DT::f32, t)) tag = t;
    }
  }
  const int64_t block = tag == Tag::nChw8c ? 8 : 16;
  if (tag == Tag::undef || c.any_src.dims()[1] % block != 0 || c.geo.out_shape[1] % block != 0) {
    return std::nullopt;
  }
  dnnl::post_ops po;
  AppendConvPostOps(b, c, node.post_ops, po);
  po.append_dw(DT::f32, DT::f32, DT::f32, tail.kernel, tail.stride, (tail.kernel - 1) / 2, 0, {});
  AppendConvPostOps(b, c, tail.node->post_ops, po);
  try {
    dnnl::primitive_desc pd = MakeConvPd(b, c, memory::desc(c.any_src.dims(), DT::f32, tag),
                                         memory::desc(c.dst_any.dims(), DT::f32, tag), po);
    if (std::string(pd.impl_info_str()).find("ref") != std::string::npos) return std::nullopt;
    return pd;
  } catch (const dnnl::error&) {
    return std::nullopt;
  }
}

// Lowers `node` and `tail` as one fused step (pd from MakeDepthwiseFusedPd).
absl::Status LowerDepthwiseFused(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                 const DepthwiseTail& tail, const dnnl::primitive_desc& pd, int x) {
  ASSIGN_OR_RETURN(int src, b.InLayout(x, pd.src_desc()));
  ASSIGN_OR_RETURN(const ConvOperands operands, BindConvOperands(b, node, c, pd));
  std::vector<std::pair<int, int>> args = {{DNNL_ARG_SRC, src},
                                           {DNNL_ARG_WEIGHTS, operands.weights}};
  if (operands.bias >= 0) args.push_back({DNNL_ARG_BIAS, operands.bias});
  const ConvSetup& d = tail.setup;
  const int dw_w_arg = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_WEIGHTS;
  const int dw_b_arg = DNNL_ARG_ATTR_POST_OP_DW | DNNL_ARG_BIAS;
  ASSIGN_OR_RETURN(int dwv, b.ConstantInLayout(absl::StrCat(tail.node->Input(1), "@dwpost"),
                                               d.weights->bytes.data(), d.w_src,
                                               pd.query_md(dnnl::query::exec_arg_md, dw_w_arg),
                                               d.weights_shape));
  args.push_back({dw_w_arg, dwv});
  // The post-op always adds a bias: zeros where the node has none.
  const int64_t channels = d.geo.out_shape[1];
  const std::vector<float> zeros(static_cast<size_t>(channels), 0.0f);
  const memory::desc dw_b_md = pd.query_md(dnnl::query::exec_arg_md, dw_b_arg);
  ASSIGN_OR_RETURN(
      int dbv, b.ConstantInLayout(d.bias != nullptr ? absl::StrCat(tail.node->Input(2), "@bias")
                                                    : absl::StrCat(tail.node->name, "@zero_bias"),
                                  d.bias != nullptr ? static_cast<const void*>(d.bias->bytes.data())
                                                    : static_cast<const void*>(zeros.data()),
                                  d.b_md, dw_b_md, {channels}));
  args.push_back({dw_b_arg, dbv});
  const int dst =
      b.NewValue(tail.node->outputs[0], DataType::kFloat32, d.geo.out_shape, pd.dst_desc());
  args.push_back({DNNL_ARG_DST, dst});
  std::vector<std::string> ops;
  for (const PostOp& op : node.post_ops) ops.push_back(PostOpName(op));
  ops.push_back(absl::StrCat("dw", tail.kernel, "x", tail.kernel, "s", tail.stride));
  for (const PostOp& op : tail.node->post_ops) ops.push_back(PostOpName(op));
  std::vector<std::string> fused = node.fused;
  fused.push_back(absl::StrCat("depthwise Conv '", tail.node->name, "'"));
  fused.insert(fused.end(), tail.node->fused.begin(), tail.node->fused.end());
  b.AddPrimitive(
      pd, dnnl::primitive(pd), std::move(args),
      absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(d.geo.out_shape, ","), "] +",
                   absl::StrJoin(ops, "+"), " {fused: ", absl::StrJoin(fused, ", "),
                   "} src:", LayoutName(pd.src_desc()), " wei:", LayoutName(pd.weights_desc()),
                   " dst:", LayoutName(pd.dst_desc())));
  b.Define(tail.node->outputs[0], dst);
  b.Absorb(tail.index);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<bool> TryLowerDepthwiseFused(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                            int x) {
  ASSIGN_OR_RETURN(std::optional<DepthwiseTail> tail,
                   FindDepthwiseTail(b, node, c, b.values()[x].shape));
  if (!tail.has_value()) return false;
  std::optional<dnnl::primitive_desc> pd = MakeDepthwiseFusedPd(b, node, c, *tail, x);
  if (!pd.has_value()) return false;
  RETURN_IF_ERROR(LowerDepthwiseFused(b, node, c, *tail, *pd, x));
  return true;
}

}  // namespace rectifier::engine
