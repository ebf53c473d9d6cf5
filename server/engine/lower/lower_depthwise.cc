// Depthwise convolutions on Rectifier's kernel (ops/depthwise.h) instead of
// oneDNN's jit_dw, per CompileOptions::depthwise_kernel. The step keeps the
// layout oneDNN chose for the convolution (nChw8c, nChw16c or NHWC), so
// nothing around it changes; only the kernel does.
//
// kAuto takes the shapes where Rectifier's kernel measured faster than
// jit_dw on AVX2 (bench/engine/depthwise_kernel; docs/PERFORMANCE.md,
// "Rectifier's depthwise kernel"): stride 1 and an output at least 56
// pixels wide, with at most 64 channels over the whole batch (jit_dw
// splits so few channel blocks poorly over threads), or with SiLU when
// SiLU would otherwise be oneDNN's swish post-op (silu_kernel kOneDnn:
// that post-op costs about as much as the convolution). Elsewhere jit_dw
// is as fast or faster: stride 2 on large images, narrow outputs, and
// jit_dw followed by Rectifier's separate SiLU pass (the default).
#include <limits>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/conv_setup.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/depthwise.h"

namespace rectifier::engine {

const char* DepthwiseKernelName(DepthwiseKernel kernel) {
  switch (kernel) {
    case DepthwiseKernel::kOneDnn:
      return "onednn";
    case DepthwiseKernel::kAuto:
      return "auto";
    case DepthwiseKernel::kRectifier:
      return "rectifier";
  }
  return "auto";
}

bool ParseDepthwiseKernel(std::string_view name, DepthwiseKernel* kernel) {
  for (DepthwiseKernel k :
       {DepthwiseKernel::kOneDnn, DepthwiseKernel::kAuto, DepthwiseKernel::kRectifier}) {
    if (name == DepthwiseKernelName(k)) {
      *kernel = k;
      return true;
    }
  }
  return false;
}

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

constexpr int64_t kAutoMinWidth = 56;
constexpr int64_t kAutoFewChannels = 64;  // over the whole batch

// Attribute names of the step's node.
constexpr char kDims[] = "dims";      // batch, channels, block, in_h, in_w, out_h, out_w
constexpr char kWindow[] = "window";  // kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left
constexpr char kActs[] = "acts";      // input_act, output_act
constexpr char kClip[] = "clip";      // clip_lo, clip_hi

DepthwiseParams ParamsOf(const Node& node) {
  const std::vector<int64_t> d = node.GetInts(kDims, {});
  const std::vector<int64_t> w = node.GetInts(kWindow, {});
  const std::vector<int64_t> a = node.GetInts(kActs, {});
  const std::vector<float> c = node.GetFloats(kClip, {});
  DepthwiseParams p;
  if (d.size() != 7 || w.size() != 6 || a.size() != 2 || c.size() != 2) return p;
  p.batch = d[0];
  p.channels = d[1];
  p.block = d[2];
  p.in_h = d[3];
  p.in_w = d[4];
  p.out_h = d[5];
  p.out_w = d[6];
  p.kernel_h = static_cast<int>(w[0]);
  p.kernel_w = static_cast<int>(w[1]);
  p.stride_h = static_cast<int>(w[2]);
  p.stride_w = static_cast<int>(w[3]);
  p.pad_top = static_cast<int>(w[4]);
  p.pad_left = static_cast<int>(w[5]);
  p.input_act = static_cast<DepthwiseAct>(a[0]);
  p.output_act = static_cast<DepthwiseAct>(a[1]);
  p.clip_lo = c[0];
  p.clip_hi = c[1];
  return p;
}

absl::Status ComputeDepthwise(const Node& node, const std::vector<View>& in,
                              const std::vector<View>& out) {
  const DepthwiseParams p = ParamsOf(node);
  if (!DepthwiseSupported(p)) {
    return absl::InternalError(absl::StrCat(node.Describe(), ": depthwise parameters are invalid"));
  }
  const float* bias = in.size() > 2 && in[2].data != nullptr ? in[2].as<float>() : nullptr;
  DepthwiseConv2d(p, in[0].as<float>(), in[1].as<float>(), bias, out[0].as<float>());
  return absl::OkStatus();
}

// The channel block of layout `md` of a [N, C, H, W] value: 8 or 16 for
// nChw8c / nChw16c, C for NHWC; 0 for any other layout.
int64_t BlockOf(const memory::desc& md) {
  const memory::dims dims = md.dims();
  if (dims.size() != 4) return 0;
  for (const auto& [tag, block] :
       {std::pair<Tag, int64_t>{Tag::nChw8c, 8}, std::pair<Tag, int64_t>{Tag::nChw16c, 16},
        std::pair<Tag, int64_t>{Tag::nhwc, dims[1]}}) {
    if (md == memory::desc(dims, memory::data_type::f32, tag)) return block;
  }
  return 0;
}

// The node's post-ops as the kernel's output activation; false when it
// has none for them (more than one, a sum, PReLU, another function).
bool OutputActivation(const std::vector<PostOp>& ops, DepthwiseParams& p) {
  if (ops.empty()) return true;
  return ops.size() == 1 && KernelActivation(ops, &p.output_act, &p.clip_lo, &p.clip_hi);
}

}  // namespace

std::string WithWeightLayout(std::string label, const dnnl::primitive_desc& pd,
                             const std::string& layout) {
  const std::string onednn_wei = absl::StrCat(" wei:", LayoutName(pd.weights_desc()));
  if (const size_t at = label.find(onednn_wei); at != std::string::npos)
    label.replace(at, onednn_wei.size(), absl::StrCat(" wei:", layout));
  return label;
}

bool KernelActivation(const std::vector<PostOp>& ops, DepthwiseAct* act, float* lo, float* hi) {
  if (ops.empty() || ops[0].kind != PostOp::Kind::kEltwise) return false;
  const PostOp& op = ops[0];
  if (op.fn == EltwiseFn::kRelu && op.alpha == 0.0f) {
    *act = DepthwiseAct::kClip;
    *lo = 0.0f;
    *hi = std::numeric_limits<float>::infinity();
    return true;
  }
  if (op.fn == EltwiseFn::kClip) {
    *act = DepthwiseAct::kClip;
    *lo = op.alpha;
    *hi = op.beta;
    return true;
  }
  if (op.fn == EltwiseFn::kSwish && op.alpha == 1.0f) {
    *act = DepthwiseAct::kSilu;
    return true;
  }
  return false;
}

absl::StatusOr<bool> TryLowerDepthwiseRectifier(PlanBuilder& b, const Node& node,
                                                const ConvSetup& c, int x,
                                                const dnnl::primitive_desc& pd,
                                                const std::string& label) {
  if (b.depthwise_kernel() == DepthwiseKernel::kOneDnn || c.transpose || c.weights == nullptr ||
      c.runtime_bias) {
    return false;
  }
  const std::vector<int64_t>& xs = b.values()[x].shape;
  const std::vector<int64_t>& ws = c.weights_shape;
  const std::vector<int64_t>& ys = c.geo.out_shape;
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4 || ws[1] != 1 || c.geo.groups != xs[1] ||
      ws[0] != xs[1] || ys[1] != xs[1]) {
    return false;
  }
  for (int64_t d : c.geo.dilations)
    if (d != 1) return false;
  DepthwiseParams p;
  p.batch = xs[0];
  p.channels = xs[1];
  p.block = BlockOf(pd.src_desc());
  p.in_h = xs[2];
  p.in_w = xs[3];
  p.out_h = ys[2];
  p.out_w = ys[3];
  p.kernel_h = static_cast<int>(ws[2]);
  p.kernel_w = static_cast<int>(ws[3]);
  p.stride_h = static_cast<int>(c.geo.strides[0]);
  p.stride_w = static_cast<int>(c.geo.strides[1]);
  p.pad_top = static_cast<int>(c.geo.pad_begin[0]);
  p.pad_left = static_cast<int>(c.geo.pad_begin[1]);
  if (p.block == 0 || BlockOf(pd.dst_desc()) != p.block || !OutputActivation(node.post_ops, p) ||
      !DepthwiseSupported(p)) {
    return false;
  }
  // SiLU counts only against oneDNN's swish post-op: Rectifier's separate
  // SiLU pass after jit_dw (CompileOptions::silu_kernel) beats the fused one.
  const bool silu_vs_post_op =
      p.output_act == DepthwiseAct::kSilu && b.silu_kernel() == ActivationKernel::kOneDnn;
  if (b.depthwise_kernel() == DepthwiseKernel::kAuto &&
      !(p.stride_h == 1 && p.stride_w == 1 && p.out_w >= kAutoMinWidth &&
        (silu_vs_post_op || p.batch * p.channels <= kAutoFewChannels))) {
    return false;
  }
  ASSIGN_OR_RETURN(int src, b.InLayout(x, pd.src_desc()));
  // Weights as [C / 8][kh][kw][8]: oneDNN's Goihw8g for these dims.
  const memory::desc packed_md(c.w_src.dims(), memory::data_type::f32, Tag::Goihw8g);
  ASSIGN_OR_RETURN(const int wv,
                   b.ConstantInLayout(absl::StrCat(node.Input(1), "@dw8g"), c.weights->bytes.data(),
                                      c.w_src, packed_md, c.weights->shape));
  int bv = -1;
  if (c.bias != nullptr) {
    ASSIGN_OR_RETURN(bv, b.ConstantInLayout(absl::StrCat(node.Input(2), "@bias"),
                                            c.bias->bytes.data(), c.b_md, c.b_md, {ys[1]}));
  }
  const int dst = b.NewValue(node.outputs[0], DataType::kFloat32, ys, pd.dst_desc());
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = "DepthwiseConv";
  step.node.name = node.name;
  step.node.attrs[kDims] =
      Attribute::OfInts({p.batch, p.channels, p.block, p.in_h, p.in_w, p.out_h, p.out_w});
  step.node.attrs[kWindow] =
      Attribute::OfInts({p.kernel_h, p.kernel_w, p.stride_h, p.stride_w, p.pad_top, p.pad_left});
  step.node.attrs[kActs] =
      Attribute::OfInts({static_cast<int64_t>(p.input_act), static_cast<int64_t>(p.output_act)});
  step.node.attrs[kClip] = Attribute::OfFloats({p.clip_lo, p.clip_hi});
  step.compute = ComputeDepthwise;
  step.inputs = {src, wv, bv};
  step.outputs = {dst};
  step.reads = {src, wv};
  if (bv >= 0) step.reads.push_back(bv);
  step.writes = {dst};
  step.label = absl::StrCat(WithWeightLayout(label, pd, LayoutName(packed_md)),
                            "  [rectifier_dw:", DepthwiseVectorized() ? "avx2" : "scalar", "]");
  b.plan().steps.push_back(std::move(step));
  b.Define(node.outputs[0], dst);
  return true;
}

}  // namespace rectifier::engine
