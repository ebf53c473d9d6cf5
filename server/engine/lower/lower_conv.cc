// oneDNN lowering of Conv (with fused post-ops), ConvTranspose and pooling.
// Convolutions pick their own layouts (format_tag::any); weights are
// reordered once here.
#include <omp.h>

#include <cstring>
#include <numeric>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/conv_setup.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/conv_pool.h"
#include "server/engine/ops/nn_ops.h"
#include "server/engine/runtime/omp_threads.h"

namespace rectifier::engine {

std::string PostOpName(const PostOp& op) {
  if (op.kind == PostOp::Kind::kSum) return "sum";
  if (op.kind == PostOp::Kind::kPrelu) return "prelu";
  switch (op.fn) {
    case EltwiseFn::kRelu:
      return op.alpha == 0 ? "relu" : "leaky_relu";
    case EltwiseFn::kLogistic:
      return "sigmoid";
    case EltwiseFn::kSwish:
      return "swish";
    case EltwiseFn::kHardSwish:
      return "hardswish";
    case EltwiseFn::kClip:
      return "clip";
    case EltwiseFn::kLinear:
      return "linear";
    case EltwiseFn::kTanh:
      return "tanh";
    case EltwiseFn::kElu:
      return "elu";
    default:
      return op.activation.empty() ? "eltwise" : op.activation;
  }
}

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using DT = memory::data_type;

// Weights as stored by ONNX, described with oneDNN dims (grouped if needed).
memory::desc OnnxWeightsMd(bool transpose, int64_t groups, const std::vector<int64_t>& w) {
  const size_t spatial = w.size() - 2;
  int64_t k = 1;
  for (size_t i = 2; i < w.size(); ++i) k *= w[i];
  memory::dims kdims(w.begin() + 2, w.end());
  memory::dims kstrides(spatial, 1);
  for (int i = static_cast<int>(spatial) - 2; i >= 0; --i)
    kstrides[i] = kstrides[i + 1] * kdims[i + 1];
  memory::dims dims, strides;
  if (!transpose) {
    // Conv: [M, C/g, k...] -> {g, M/g, C/g, k...}
    const int64_t ocg = w[0] / groups, icg = w[1];
    if (groups > 1) {
      dims = {groups, ocg, icg};
      strides = {ocg * icg * k, icg * k, k};
    } else {
      dims = {w[0], icg};
      strides = {icg * k, k};
    }
  } else {
    // ConvTranspose: [C, M/g, k...] -> {g, M/g, C/g, k...}
    const int64_t icg = w[0] / groups, ocg = w[1];
    if (groups > 1) {
      dims = {groups, ocg, icg};
      strides = {icg * ocg * k, k, ocg * k};
    } else {
      dims = {ocg, icg};
      strides = {k, ocg * k};
    }
  }
  dims.insert(dims.end(), kdims.begin(), kdims.end());
  strides.insert(strides.end(), kstrides.begin(), kstrides.end());
  return memory::desc(dims, DT::f32, strides);
}

memory::desc AnyWithDims(const memory::desc& md) {
  return memory::desc(md.dims(), DT::f32, Tag::any);
}

}  // namespace

absl::StatusOr<ConvSetup> ResolveConvSetup(const Graph& g, const Node& node,
                                           const std::vector<int64_t>& xs) {
  ConvSetup c;
  c.transpose = node.op_type == "ConvTranspose";
  // Weights and bias from initializers are reordered once at compile time;
  // given at run time, they are reordered on every execution.
  auto wc = g.constants.find(node.Input(1));
  if (wc != g.constants.end()) {
    c.weights = &wc->second;
    c.weights_shape = c.weights->shape;
  } else {
    const TensorInfo& info = g.value_info.at(node.Input(1));
    if (info.type != DataType::kFloat32) {
      return absl::UnimplementedError(absl::StrCat(node.Describe(), ": weights must be FP32"));
    }
    c.weights_shape = info.shape;
  }
  ASSIGN_OR_RETURN(c.geo, c.transpose ? ResolveConvTranspose(node, xs, c.weights_shape)
                                      : ResolveConv(node, xs, c.weights_shape));
  c.w_src = OnnxWeightsMd(c.transpose, c.geo.groups, c.weights_shape);
  if (!node.Input(2).empty()) {
    auto bc = g.constants.find(node.Input(2));
    if (bc != g.constants.end()) {
      c.bias = &bc->second;
    } else if (g.value_info.at(node.Input(2)).type != DataType::kFloat32) {
      return absl::UnimplementedError(absl::StrCat(node.Describe(), ": bias must be FP32"));
    } else {
      c.runtime_bias = true;
    }
  }
  c.strides.assign(c.geo.strides.begin(), c.geo.strides.end());
  for (int64_t d : c.geo.dilations) c.dil.push_back(d - 1);  // oneDNN counts skipped elements
  c.pl.assign(c.geo.pad_begin.begin(), c.geo.pad_begin.end());
  c.pr.assign(c.geo.pad_end.begin(), c.geo.pad_end.end());
  c.any_src = memory::desc(PlanBuilder::Dims(xs), DT::f32, Tag::any);
  c.dst_any = memory::desc(PlanBuilder::Dims(c.geo.out_shape), DT::f32, Tag::any);
  c.w_any = AnyWithDims(c.w_src);
  c.b_md = memory::desc({c.geo.out_shape[1]}, DT::f32, Tag::x);
  return c;
}

absl::StatusOr<int> EmitEltwiseChain(PlanBuilder& b, int v, const std::vector<PostOp>& ops,
                                     const std::string& name, const std::string& label,
                                     bool v_private) {
  for (size_t i = 0; i < ops.size(); ++i) {
    if (ops[i].kind == PostOp::Kind::kPrelu) {
      const std::string out_name = i + 1 == ops.size() ? name : absl::StrCat(name, "#", i);
      ASSIGN_OR_RETURN(int out, EmitPrelu(b, v, ops[i].slope, out_name, label));
      if (out < 0)
        return absl::InternalError(absl::StrCat(label, ": PRelu slope does not broadcast"));
      v = out;
      continue;
    }
    FastActivation fast;
    if (UsesRectifierKernel(b, ops[i], &fast)) {
      // Not in place into a graph output: the output would be an alias,
      // copied out by another step.
      const bool in_place = (i > 0 || v_private) &&
                            b.values()[b.plan().Root(v)].storage == PlanValue::Storage::kArena &&
                            !(i + 1 == ops.size() && b.graph().IsGraphOutput(name));
      ASSIGN_OR_RETURN(v, EmitRectifierActivation(
                              b, v, fast, i + 1 == ops.size() ? name : absl::StrCat(name, "#", i),
                              label, in_place));
      continue;
    }
    const memory::desc md = b.values()[v].md;
    const std::vector<int64_t> shape = b.values()[v].shape;
    dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, DnnlEltwise(ops[i].fn), md,
                                  ops[i].alpha, ops[i].beta);
    dnnl::primitive_attr attr = UserScratchpad();
    dnnl::eltwise_forward::primitive_desc pd(d, attr, b.engine());
    const std::string out_name = i + 1 == ops.size() ? name : absl::StrCat(name, "#", i);
    int out = b.NewValue(out_name, DataType::kFloat32, shape, pd.dst_desc());
    b.AddPrimitive(pd, dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, v}, {DNNL_ARG_DST, out}},
                   absl::StrCat(label, " ", PostOpName(ops[i]), " ", LayoutName(md)));
    v = out;
  }
  return v;
}

void AppendConvPostOps(PlanBuilder& b, const ConvSetup& c, const std::vector<PostOp>& ops,
                       dnnl::post_ops& po) {
  for (const auto& op : ops) {
    if (op.kind == PostOp::Kind::kSum) {
      po.append_sum(1.0f);
    } else if (op.kind == PostOp::Kind::kPrelu) {
      po.append_prelu(PreluMask(PreluSlopeDims(b.graph(), op.slope, c.geo.out_shape)));
    } else {
      po.append_eltwise(1.0f, DnnlEltwise(op.fn), op.alpha, op.beta);
    }
  }
}

dnnl::primitive_desc MakeConvPd(PlanBuilder& b, const ConvSetup& c, const memory::desc& src,
                                const memory::desc& dst, const dnnl::post_ops& po) {
  dnnl::primitive_attr attr = UserScratchpad();
  attr.set_post_ops(po);
  const auto kInference = dnnl::prop_kind::forward_inference;
  if (c.transpose) {
    const auto alg = dnnl::algorithm::deconvolution_direct;
    auto d = c.has_bias() ? dnnl::deconvolution_forward::desc(kInference, alg, src, c.w_any, c.b_md,
                                                              dst, c.strides, c.dil, c.pl, c.pr)
                          : dnnl::deconvolution_forward::desc(kInference, alg, src, c.w_any, dst,
                                                              c.strides, c.dil, c.pl, c.pr);
    return dnnl::deconvolution_forward::primitive_desc(d, attr, b.engine());
  }
  const auto alg = dnnl::algorithm::convolution_direct;
  auto d = c.has_bias() ? dnnl::convolution_forward::desc(kInference, alg, src, c.w_any, c.b_md,
                                                          dst, c.strides, c.dil, c.pl, c.pr)
                        : dnnl::convolution_forward::desc(kInference, alg, src, c.w_any, dst,
                                                          c.strides, c.dil, c.pl, c.pr);
  return dnnl::convolution_forward::primitive_desc(d, attr, b.engine());
}

namespace {

// MakeConvPd with the node's post-ops `ops`.
dnnl::primitive_desc MakeConvPd(PlanBuilder& b, const ConvSetup& c, const memory::desc& src,
                                const memory::desc& dst, const std::vector<PostOp>& ops) {
  dnnl::post_ops po;
  AppendConvPostOps(b, c, ops, po);
  return MakeConvPd(b, c, src, dst, po);
}

// The chosen primitive, and how many of the node's post-ops it fuses.
struct ConvChoice {
  dnnl::primitive_desc pd;
  size_t fused_ops = 0;
  // Post-ops from this index on run on Rectifier's activation kernel.
  size_t rectifier_from = 0;
};

// Chooses how many post-ops (a prefix) go into the primitive, and its source
// layout. oneDNN may reject a chain, or accept it only with its slow
// reference kernel (e.g. eltwise followed by sum on AVX2): then fuse less
// and run the rest as separate primitives. Candidates: everything, the ops
// before the first sum, none. For each, prefer the input's current
// (blocked) layout when an optimized kernel exists for it, saving reorders;
// else format_tag::any. Post-ops from the first one that Rectifier's
// activation kernel runs (tanh_kernel) are never fused: they follow as
// separate in-place steps.
absl::StatusOr<ConvChoice> ChooseConvPrimitive(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                               int x) {
  const std::vector<PostOp>& fused = node.post_ops;
  ConvChoice choice;
  size_t& limit = choice.rectifier_from;
  while (limit < fused.size() && !UsesRectifierKernel(b, fused[limit])) ++limit;
  std::vector<size_t> prefixes = {limit};
  for (size_t i = 0; i < limit; ++i) {
    if (fused[i].kind == PostOp::Kind::kSum) {
      prefixes.push_back(i);
      break;
    }
  }
  if (prefixes.back() != 0) prefixes.push_back(0);
  // 2: a direct JIT kernel; 1: oneDNN's GEMM-based one; 0: its reference.
  auto rank = [](const dnnl::primitive_desc& p) {
    const std::string impl = p.impl_info_str();
    if (impl.find("ref") != std::string::npos) return 0;
    return impl.find("gemm") == std::string::npos ? 2 : 1;
  };
  int have = -1;  // rank of choice.pd, -1 while there is none
  // (source, destination) layouts to try, in order.
  std::vector<std::pair<memory::desc, memory::desc>> layouts;
  const memory::dims src_dims = c.any_src.dims();
  // CompileOptions::conv_layout asks for one activation layout explicitly:
  // channel-blocked nChw8c / nChw16c (oneDNN's direct jit, jit_1x1 and
  // jit_dw kernels) where the channels are a multiple of the block, or
  // NHWC. A source whose channels are not a block multiple (an image's 3)
  // stays plain NCHW, which the direct kernels read for a first layer.
  if (src_dims.size() == 4 && b.conv_layout() != ConvLayout::kAny) {
    const int64_t block = b.conv_layout() == ConvLayout::kBlocked8    ? 8
                          : b.conv_layout() == ConvLayout::kBlocked16 ? 16
                                                                      : 1;
    const Tag tag = block == 8 ? Tag::nChw8c : block == 16 ? Tag::nChw16c : Tag::nhwc;
    const memory::dims dst_dims = c.dst_any.dims();
    const memory::desc s(src_dims, DT::f32, src_dims[1] % block == 0 ? tag : Tag::nchw);
    if (dst_dims[1] % block == 0) {
      const memory::desc d(dst_dims, DT::f32, tag);
      // The asked-for layout first with fewer fused post-ops (a residual
      // sum after an activation, which the direct kernels do not fuse, then
      // runs as a binary add in that layout), before any other layout: two
      // reorders and an addend copy per residual block cost more than the
      // unfused add.
      for (size_t prefix : prefixes) {
        const std::vector<PostOp> ops(fused.begin(), fused.begin() + static_cast<long>(prefix));
        try {
          dnnl::primitive_desc tried = MakeConvPd(b, c, s, d, ops);
          if (rank(tried) == 2) {
            choice.pd = tried;
            choice.fused_ops = prefix;
            return choice;
          }
        } catch (const dnnl::error&) {
        }
      }
      layouts.emplace_back(s, d);
    }
  }
  if (!b.values()[x].plain) layouts.emplace_back(b.values()[x].md, c.dst_any);
  layouts.emplace_back(c.any_src, c.dst_any);
  // Plain channels-last and channels-first last: where no direct kernel
  // takes the shape (a dilated 3x3 whose dilated extent passes its
  // padding, as in FCN's layer4), format_tag::any can fall to the
  // reference kernel while the GEMM one accepts an explicit plain layout.
  if (src_dims.size() == 4) {
    layouts.emplace_back(memory::desc(src_dims, DT::f32, Tag::nhwc), c.dst_any);
    layouts.emplace_back(memory::desc(src_dims, DT::f32, Tag::nchw), c.dst_any);
  }
  for (size_t prefix : prefixes) {
    const std::vector<PostOp> ops(fused.begin(), fused.begin() + static_cast<long>(prefix));
    for (const auto& [s_md, d_md] : layouts) {
      try {
        dnnl::primitive_desc tried = MakeConvPd(b, c, s_md, d_md, ops);
        const int r = rank(tried);
        if (r == 2) {
          choice.pd = tried;
          choice.fused_ops = prefix;
          return choice;
        }
        if (r > have) {
          choice.pd = tried;
          choice.fused_ops = prefix;
          have = r;
        }
      } catch (const dnnl::error&) {
      }
    }
  }
  const bool have_fallback = have >= 0;
  if (!have_fallback) {
    try {
      MakeConvPd(b, c, c.any_src, c.dst_any, dnnl::post_ops());
    } catch (const dnnl::error& e) {
      return DnnlError(e, node.Describe());
    }
  }
  return choice;
}

// The destination of a convolution whose fused post-ops include a sum: the
// sum accumulates into dst, so dst must start as the addend. In place when
// allowed, else a copy of the addend (a reorder step). Notes which in
// `note`, and the value the primitive reads besides its inputs in
// `extra_reads`.
absl::StatusOr<int> BindSumAddend(PlanBuilder& b, const Node& node, const ConvSetup& c, int src,
                                  const memory::desc& dst_md, std::vector<int>& extra_reads,
                                  std::string& note) {
  const std::string& addend_name = node.inputs[node.sum_input];
  ASSIGN_OR_RETURN(int a, b.Value(addend_name));
  ASSIGN_OR_RETURN(int a_in, b.InLayout(a, dst_md));
  // Accumulating in place overwrites the addend: allowed for a layout copy
  // (dropped from the cache so nobody reads it later) or for the value
  // itself when this is its last reader, never when it is also our source
  // or its buffer holds other values read later (views).
  const bool layout_copy = a_in != a;
  const bool last_reader = b.IsLastRead(addend_name);
  // Our source, or any other input of ours (weights or bias computed at
  // run time), in the addend's buffer.
  bool is_src = b.plan().Root(a_in) == b.plan().Root(src);
  for (size_t i = 0; i < node.inputs.size() && !is_src; ++i) {
    if (static_cast<int>(i) == node.sum_input || node.inputs[i].empty() ||
        b.graph().constants.count(node.inputs[i]) > 0) {
      continue;  // constants never share the arena
    }
    auto v = b.Value(node.inputs[i]);
    is_src = v.ok() && b.plan().Root(*v) == b.plan().Root(a_in);
  }
  const bool shared = b.StorageReadLater(a_in, layout_copy ? a_in : -1);
  int dst;
  if (b.values()[b.plan().Root(a_in)].storage == PlanValue::Storage::kArena && !is_src && !shared &&
      (layout_copy || last_reader)) {
    if (layout_copy) b.ForgetLayout(a, a_in);
    dst = b.NewValue(node.outputs[0], DataType::kFloat32, c.geo.out_shape, dst_md);
    b.values()[dst].alias_of = a_in;
    note = " (in place)";
  } else {
    dst = b.NewValue(node.outputs[0], DataType::kFloat32, c.geo.out_shape, dst_md);
    dnnl::reorder::primitive_desc rpd(b.engine(), b.values()[a_in].md, b.engine(), dst_md,
                                      dnnl::primitive_attr());
    b.AddPrimitive(rpd, dnnl::reorder(rpd), {{DNNL_ARG_FROM, a_in}, {DNNL_ARG_TO, dst}},
                   absl::StrCat("Copy addend '", addend_name, "' for ", node.name));
    note = " (copied)";
  }
  extra_reads.push_back(dst);
  return dst;
}

// "Conv 'c1' [1,64,56,56] +relu+sum (in place) {fused: ...} src:... wei:... dst:...".
std::string ConvLabel(const Node& node, const ConvSetup& c, const ConvChoice& choice,
                      const std::string& sum_note) {
  const std::vector<PostOp>& fused = node.post_ops;
  const size_t k = choice.fused_ops;
  std::vector<std::string> ops;
  for (size_t i = 0; i < k; ++i) ops.push_back(PostOpName(fused[i]));
  std::string label =
      absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(c.geo.out_shape, ","), "]");
  if (!ops.empty()) absl::StrAppend(&label, " +", absl::StrJoin(ops, "+"), sum_note);
  if (k < fused.size()) {
    absl::StrAppend(
        &label, " (", fused.size() - k, " post-op(s) run as separate steps: ",
        k == choice.rectifier_from ? "Rectifier activation kernel)" : "no optimized fused kernel)");
  }
  if (!node.fused.empty())
    absl::StrAppend(&label, " {fused: ", absl::StrJoin(node.fused, ", "), "}");
  absl::StrAppend(&label, " src:", LayoutName(choice.pd.src_desc()),
                  " wei:", LayoutName(choice.pd.weights_desc()),
                  " dst:", LayoutName(choice.pd.dst_desc()));
  return label;
}

// Replays the post-ops from `first` on as standalone steps after value `v`;
// returns the result.
absl::StatusOr<int> EmitUnfusedTail(PlanBuilder& b, const Node& node, const ConvSetup& c, int v,
                                    size_t first) {
  const std::vector<PostOp>& fused = node.post_ops;
  for (size_t i = first; i < fused.size(); ++i) {
    const bool last = i + 1 == fused.size();
    const std::string name = last ? node.outputs[0] : absl::StrCat(node.outputs[0], "#", i);
    if (fused[i].kind == PostOp::Kind::kSum) {
      ASSIGN_OR_RETURN(int a, b.Value(node.inputs[node.sum_input]));
      ASSIGN_OR_RETURN(a, b.InLayout(a, b.values()[v].md));
      dnnl::binary::desc d(dnnl::algorithm::binary_add, b.values()[v].md, b.values()[a].md,
                           b.values()[v].md);
      dnnl::primitive_attr attr = UserScratchpad();
      dnnl::binary::primitive_desc bpd(d, attr, b.engine());
      int out = b.NewValue(name, DataType::kFloat32, c.geo.out_shape, bpd.dst_desc());
      b.AddPrimitive(bpd, dnnl::binary(bpd),
                     {{DNNL_ARG_SRC_0, v}, {DNNL_ARG_SRC_1, a}, {DNNL_ARG_DST, out}},
                     absl::StrCat("Add (unfused from ", node.name, ")"));
      v = out;
    } else {
      ASSIGN_OR_RETURN(v, EmitEltwiseChain(b, v, {fused[i]}, name,
                                           absl::StrCat("Eltwise (unfused from ", node.name, ")"),
                                           /*v_private=*/true));
    }
  }
  return v;
}

}  // namespace

absl::StatusOr<ConvOperands> BindConvOperands(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                              const dnnl::primitive_desc& pd) {
  // Keyed by what determines the reordered bytes (the weight, how it is
  // read, the layout asked for), not by the node: convolutions sharing an
  // initializer share one reordered copy.
  int wv = -1;
  if (c.weights != nullptr) {
    ASSIGN_OR_RETURN(
        wv, b.ConstantInLayout(
                absl::StrCat(node.Input(1), c.transpose ? "@deconv/g" : "@conv/g", c.geo.groups),
                c.weights->bytes.data(), c.w_src, pd.weights_desc(), c.weights->shape));
  } else {
    // The run-time weights read as oneDNN's dims (a view of their plain
    // buffer), reordered into the primitive's layout by a step of the plan.
    ASSIGN_OR_RETURN(int w, b.Value(node.Input(1)));
    ASSIGN_OR_RETURN(w, b.Plain(w));
    const int view = b.ViewAs(w, absl::StrCat(node.Input(1), "@weights"), c.w_src);
    ASSIGN_OR_RETURN(wv, b.InLayout(view, pd.weights_desc()));
  }
  int bv = -1;
  if (c.bias != nullptr) {
    ASSIGN_OR_RETURN(
        bv, b.ConstantInLayout(absl::StrCat(node.Input(2), "@bias"), c.bias->bytes.data(), c.b_md,
                               c.b_md, {c.geo.out_shape[1]}));
  } else if (c.runtime_bias) {
    ASSIGN_OR_RETURN(int bias, b.Value(node.Input(2)));
    ASSIGN_OR_RETURN(bias, b.Plain(bias));
    bv = b.ViewAs(bias, absl::StrCat(node.Input(2), "@bias"), c.b_md);
  }
  return ConvOperands{wv, bv};
}

namespace {

// Channel split (CompileOptions::channel_split): at most this many output
// pixels per image. Measured on 2 AVX2 threads, 1x1 at batch 1: 1.2-1.33x
// at 7x7, 0.99-1.10x at 14x14, level at 28x28, 0.88-0.95x at 56x56.
constexpr int64_t kChannelSplitMaxPixels = 100;

// True when part k's weights, reordered for `part_pd`, are bytes [k S,
// (k + 1) S) of `whole` (the weights reordered for the whole primitive, S a
// part's size): so with whole blocks of output channels outermost, as in
// nChw8c's OIhw8i8o. Compared on the bytes themselves, once, when the plan
// compiles.
absl::StatusOr<bool> PartWeightsAreSlices(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                          const std::byte* whole, size_t whole_bytes,
                                          const ConvSetup& pc, const dnnl::primitive_desc& part_pd,
                                          int parts) {
  const size_t part_bytes = part_pd.weights_desc().get_size();
  if (whole == nullptr || part_bytes * static_cast<size_t>(parts) != whole_bytes) return false;
  AlignedBuffer part(part_bytes);
  if (part.data() == nullptr) return false;
  const int64_t part_floats = NumElements(c.weights_shape) / parts;
  for (int k = 0; k < parts; ++k) {
    RETURN_IF_ERROR(b.ReorderInto(node.Input(1), c.weights->data<float>() + k * part_floats,
                                  pc.w_src, part_pd.weights_desc(), part.data()));
    if (std::memcmp(part.data(), whole + part_bytes * static_cast<size_t>(k), part_bytes) != 0) {
      return false;
    }
  }
  return true;
}

// Adds the convolution `pd` (fusing the node's first `fused_ops` post-ops)
// as one primitive per thread over slices of its output channels, when the
// channel split applies (see CompileOptions::channel_split): true when added.
// The parts read slices of `whole`, the operands bound for `pd`.
absl::StatusOr<bool> TryChannelSplit(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                     const dnnl::primitive_desc& pd, const ConvOperands& whole,
                                     size_t fused_ops, int src, int dst,
                                     const std::vector<int>& extra_reads,
                                     const std::string& label) {
  const int threads = omp_get_max_threads();
  const std::vector<int64_t>& ws = c.weights_shape;
  const std::vector<int64_t>& ys = c.geo.out_shape;
  if (!b.channel_split() || threads < 2 || c.transpose || c.weights == nullptr || c.runtime_bias ||
      c.geo.groups != 1 || ws.size() != 4 || ws[2] != 1 || ws[3] != 1 || ys.size() != 4 ||
      ys[0] != 1 || ys[2] * ys[3] > kChannelSplitMaxPixels ||
      std::string(pd.impl_info_str()).rfind("jit_1x1", 0) != 0) {
    return false;
  }
  // nChw8c only (AVX2's layout): at AVX-512 (nChw16c) the split measured
  // -3% to +4% on whole models.
  const int lanes = BlockedLanes(pd.dst_desc(), ys);
  if (lanes != 8 || ys[1] % (int64_t{threads} * lanes) != 0) return false;
  const std::vector<PostOp> ops(node.post_ops.begin(),
                                node.post_ops.begin() + static_cast<std::ptrdiff_t>(fused_ops));
  for (const PostOp& op : ops) {
    if (op.kind == PostOp::Kind::kPrelu) return false;  // per-channel slopes: not sliced
  }
  const int64_t part_oc = ys[1] / threads;
  ConvSetup pc = c;
  pc.geo.out_shape[1] = part_oc;
  memory::dims w_dims = c.w_src.dims();
  w_dims[0] = part_oc;
  pc.w_src = memory::desc(w_dims, memory::data_type::f32, Tag::oihw);
  pc.w_any = memory::desc(w_dims, memory::data_type::f32, Tag::any);
  pc.b_md = memory::desc({part_oc}, memory::data_type::f32, Tag::x);
  std::vector<int64_t> part_shape = ys;
  part_shape[1] = part_oc;
  const memory::desc part_dst(PlanBuilder::Dims(part_shape), memory::data_type::f32, Tag::nChw8c);
  dnnl::primitive_desc part_pd;
  {
    const ScopedOmpThreads one(1);  // the part runs alone on its thread
    part_pd = MakeConvPd(b, pc, pd.src_desc(), part_dst, ops);
  }
  if (std::string(part_pd.impl_info_str()) != pd.impl_info_str() ||
      part_pd.dst_desc() != part_dst) {
    return false;
  }
  const size_t dst_bytes = static_cast<size_t>(NumElements(part_shape)) * sizeof(float);
  // The parts read slices of the whole convolution's reordered weights and
  // bias, the copy that plans running it whole (other batch sizes) share;
  // where a part's weights are no slice of it, the convolution runs whole.
  ASSIGN_OR_RETURN(const bool sliced,
                   PartWeightsAreSlices(b, node, c, b.values()[whole.weights].constant,
                                        pd.weights_desc().get_size(), pc, part_pd, threads));
  if (!sliced) return false;
  const size_t part_w_bytes = part_pd.weights_desc().get_size();
  std::vector<PlanStep> parts;
  std::vector<int> reads = {src};
  for (int k = 0; k < threads; ++k) {
    const std::string slice = absl::StrCat("#oc", k * part_oc, "-", (k + 1) * part_oc);
    const int wv = b.ViewAt(whole.weights, absl::StrCat(b.values()[whole.weights].name, slice),
                            part_pd.weights_desc(), part_w_bytes * k);
    const int bv = whole.bias < 0
                       ? -1
                       : b.ViewAt(whole.bias, absl::StrCat(b.values()[whole.bias].name, slice),
                                  pc.b_md, sizeof(float) * part_oc * k);
    const int view =
        b.ViewAt(dst, absl::StrCat(b.values()[dst].name, slice), part_dst, dst_bytes * k);
    PlanStep part;
    part.kind = PlanStep::Kind::kPrimitive;
    {
      const ScopedOmpThreads one(1);
      part.primitive = dnnl::primitive(part_pd);
    }
    part.scratchpad_md = part_pd.scratchpad_desc();
    part.args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wv}, {DNNL_ARG_DST, view}};
    if (bv >= 0) part.args.push_back({DNNL_ARG_BIAS, bv});
    part.reads = {src, wv};
    if (bv >= 0) part.reads.push_back(bv);
    part.writes = {view};
    reads.push_back(wv);
    if (bv >= 0) reads.push_back(bv);
    parts.push_back(std::move(part));
  }
  for (int v : extra_reads) reads.push_back(v);
  b.AddPrimitiveParts(
      std::move(parts), std::move(reads), {dst},
      absl::StrCat(label, "  [", pd.impl_info_str(), ", ", threads, " parts by output channels]"));
  return true;
}

}  // namespace

absl::StatusOr<bool> LowerConvolution(PlanBuilder& b, const Node& node) {
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  ASSIGN_OR_RETURN(ConvSetup c, ResolveConvSetup(b.graph(), node, b.values()[x].shape));
  ASSIGN_OR_RETURN(const bool fused_with_depthwise, TryLowerDepthwiseFused(b, node, c, x));
  if (fused_with_depthwise) return true;
  ASSIGN_OR_RETURN(ConvChoice choice, ChooseConvPrimitive(b, node, c, x));
  const dnnl::primitive_desc& pd = choice.pd;
  const std::vector<PostOp>& fused = node.post_ops;
  const size_t k = choice.fused_ops;
  if (c.geo.groups == 1) {
    const size_t wino_fused = WinogradFusedPostOps(b, node);
    ASSIGN_OR_RETURN(int wino, TryLowerWinograd(b, node, c, x, pd, [&] {
                       ConvChoice computed = choice;
                       computed.fused_ops = wino_fused;
                       computed.rectifier_from = fused.size();
                       return ConvLabel(node, c, computed, "");
                     }));
    if (wino >= 0) {
      if (wino_fused < fused.size()) {
        ASSIGN_OR_RETURN(wino, EmitUnfusedTail(b, node, c, wino, wino_fused));
      }
      b.Define(node.outputs[0], wino);
      return true;
    }
  }
  if (c.geo.groups > 1) {
    // Rectifier's depthwise kernel computes all of the node's post-ops
    // itself (or declines), however many oneDNN would have fused.
    ConvChoice all = choice;
    all.fused_ops = fused.size();
    all.rectifier_from = fused.size();
    ASSIGN_OR_RETURN(const bool on_rectifier_dw,
                     TryLowerDepthwiseRectifier(b, node, c, x, pd, ConvLabel(node, c, all, "")));
    if (on_rectifier_dw) return true;
  }
  const bool unfused = k < fused.size();
  ASSIGN_OR_RETURN(int src, b.InLayout(x, pd.src_desc()));
  const memory::desc dst_md = pd.dst_desc();
  bool has_sum = false;
  for (size_t i = 0; i < k; ++i) has_sum = has_sum || fused[i].kind == PostOp::Kind::kSum;
  int dst;
  std::vector<int> extra_reads;
  std::string sum_note;
  if (has_sum) {
    ASSIGN_OR_RETURN(dst, BindSumAddend(b, node, c, src, dst_md, extra_reads, sum_note));
  } else {
    dst = b.NewValue(unfused ? node.outputs[0] + "#conv" : node.outputs[0], DataType::kFloat32,
                     c.geo.out_shape, dst_md);
  }
  ASSIGN_OR_RETURN(const ConvOperands operands, BindConvOperands(b, node, c, pd));
  ASSIGN_OR_RETURN(const bool split,
                   TryChannelSplit(b, node, c, pd, operands, k, src, dst, extra_reads,
                                   ConvLabel(node, c, choice, sum_note)));
  if (!split) {
    std::vector<std::pair<int, int>> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, operands.weights}, {DNNL_ARG_DST, dst}};
    if (operands.bias >= 0) args.push_back({DNNL_ARG_BIAS, operands.bias});
    for (size_t i = 0; i < k; ++i) {
      if (fused[i].kind != PostOp::Kind::kPrelu) continue;
      ASSIGN_OR_RETURN(int sv,
                       PreluSlopeValue(b, fused[i].slope,
                                       PreluSlopeDims(b.graph(), fused[i].slope, c.geo.out_shape)));
      args.push_back({DNNL_ARG_ATTR_MULTIPLE_POST_OP(static_cast<int>(i)) | DNNL_ARG_WEIGHTS, sv});
    }
    b.AddPrimitive(pd, dnnl::primitive(pd), std::move(args), ConvLabel(node, c, choice, sum_note),
                   extra_reads);
  }
  if (unfused) {
    ASSIGN_OR_RETURN(dst, EmitUnfusedTail(b, node, c, dst, k));
  }
  b.Define(node.outputs[0], dst);
  return true;
}

absl::StatusOr<bool> LowerPooling(PlanBuilder& b, const Node& node) {
  ASSIGN_OR_RETURN(const bool squeeze_excite, TryLowerSqueezeExcite(b, node));
  if (squeeze_excite) return true;
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  const std::vector<int64_t> xs = b.values()[x].shape;
  ASSIGN_OR_RETURN(WindowGeometry geo, ResolvePool(node, xs));
  if (NumElements(xs) == 0) return false;
  dnnl::algorithm alg;
  if (node.op_type == "MaxPool" || node.op_type == "GlobalMaxPool") {
    alg = dnnl::algorithm::pooling_max;
  } else if (node.op_type == "AveragePool" && node.GetInt("count_include_pad", 0) != 0) {
    alg = dnnl::algorithm::pooling_avg_include_padding;
  } else {
    alg = dnnl::algorithm::pooling_avg_exclude_padding;
  }
  memory::dims kernel(geo.kernel.begin(), geo.kernel.end());
  memory::dims strides(geo.strides.begin(), geo.strides.end());
  memory::dims dil;
  for (int64_t d : geo.dilations) dil.push_back(d - 1);
  memory::dims pl(geo.pad_begin.begin(), geo.pad_begin.end());
  memory::dims pr(geo.pad_end.begin(), geo.pad_end.end());
  if (alg == dnnl::algorithm::pooling_avg_include_padding) {
    // ONNX counts only the explicit pads, not the ceil_mode extension;
    // oneDNN would count both, so such shapes use the reference kernel.
    std::vector<int64_t> pads = node.GetInts("pads", std::vector<int64_t>(2 * kernel.size(), 0));
    for (size_t i = 0; i < kernel.size(); ++i)
      if (pads.size() == 2 * kernel.size() && geo.pad_end[i] != pads[i + kernel.size()] &&
          node.GetString("auto_pad", "NOTSET") == "NOTSET")
        return false;
  }
  const memory::desc src_md = b.values()[x].md;
  const memory::desc dst_any(PlanBuilder::Dims(geo.out_shape), DT::f32, Tag::any);
  dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, src_md, dst_any,
                                   strides, kernel, dil, pl, pr);
  dnnl::primitive_attr attr = UserScratchpad();
  dnnl::pooling_v2_forward::primitive_desc pd;
  try {
    pd = dnnl::pooling_v2_forward::primitive_desc(d, attr, b.engine());
  } catch (const dnnl::error& e) {
    return DnnlError(e, node.Describe());
  }
  int src;
  ASSIGN_OR_RETURN(src, b.InLayout(x, pd.src_desc()));
  int out = b.NewValue(node.outputs[0], DataType::kFloat32, geo.out_shape, pd.dst_desc());
  b.AddPrimitive(
      pd, dnnl::pooling_v2_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, out}},
      absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(geo.out_shape, ","), "] ",
                   LayoutName(src_md), " -> ", LayoutName(pd.dst_desc())));
  b.Define(node.outputs[0], out);
  return true;
}

absl::StatusOr<bool> LowerSpatialReduce(PlanBuilder& b, const Node& node) {
  auto vi = b.graph().value_info.find(node.inputs[0]);
  if (vi == b.graph().value_info.end() || vi->second.type != DataType::kFloat32) return false;
  const std::vector<int64_t> xs = vi->second.shape;
  if (xs.size() < 3 || xs.size() > 5 || NumElements(xs) == 0) return false;
  std::vector<ValueInfo> in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const std::string& name = node.inputs[i];
    in[i].present = !name.empty();
    if (name.empty() || !b.graph().value_info.count(name)) continue;
    in[i].type = b.graph().value_info.at(name).type;
    in[i].shape = b.graph().value_info.at(name).shape;
    auto c = b.graph().constants.find(name);
    if (c != b.graph().constants.end()) in[i].value = &c->second;
  }
  auto mask = ReduceMask(node, in);
  if (!mask.ok()) return false;
  for (size_t d = 0; d < xs.size(); ++d)
    if ((*mask)[d] != (d >= 2)) return false;
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  const memory::dims kernel(xs.begin() + 2, xs.end());
  const memory::dims zeros(kernel.size(), 0);
  std::vector<int64_t> pooled_shape = {xs[0], xs[1]};
  pooled_shape.resize(xs.size(), 1);
  const auto alg = node.op_type == "ReduceMax" ? dnnl::algorithm::pooling_max
                                               : dnnl::algorithm::pooling_avg_exclude_padding;
  const memory::desc src_md = b.values()[x].md;
  const memory::desc dst_any(PlanBuilder::Dims(pooled_shape), DT::f32, Tag::any);
  dnnl::pooling_v2_forward::primitive_desc pd;
  try {
    dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, src_md, dst_any,
                                     kernel, kernel, zeros, zeros, zeros);
    pd = dnnl::pooling_v2_forward::primitive_desc(d, UserScratchpad(), b.engine());
  } catch (const dnnl::error& e) {
    return false;  // the reference kernel computes it
  }
  ASSIGN_OR_RETURN(int src, b.InLayout(x, pd.src_desc()));
  const bool keep = node.GetInt("keepdims", 1) != 0;
  const std::string label =
      absl::StrCat(node.op_type, " '", node.name, "' [", absl::StrJoin(pooled_shape, ","),
                   "] as global pooling ", LayoutName(src_md), " -> ", LayoutName(pd.dst_desc()));
  const int pooled = b.NewValue(keep ? node.outputs[0] : node.outputs[0] + "~pooled",
                                DataType::kFloat32, pooled_shape, pd.dst_desc());
  b.AddPrimitive(pd, dnnl::pooling_v2_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, pooled}},
                 label);
  if (keep) {
    b.Define(node.outputs[0], pooled);
    return true;
  }
  // keepdims = 0: [N, C] is the plain [N, C, 1, ...] under another shape.
  ASSIGN_OR_RETURN(int plain, b.Plain(pooled));
  const std::vector<int64_t> out_shape = {xs[0], xs[1]};
  const int out =
      b.NewValue(node.outputs[0], DataType::kFloat32, out_shape, PlanBuilder::PlainMd(out_shape));
  b.values()[out].alias_of = plain;
  b.Define(node.outputs[0], out);
  return true;
}

}  // namespace rectifier::engine
