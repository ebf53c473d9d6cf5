// 3x3 convolutions on Rectifier's Winograd kernels, F(4x4, 3x3) and
// F(2x2, 3x3) (ops/winograd.h), instead of oneDNN's direct kernel, per
// CompileOptions::conv3x3_kernel. Only where oneDNN chose nChw8c (its
// AVX2 layout: the AVX2 kernel) or nChw16c (its AVX-512 layout: the
// AVX-512 kernel, where oneDNN may use AVX-512) for the source and the
// destination, so the steps around the convolution do not change; only
// the kernel does.
//
// kAuto takes F(4x4, 3x3) for a supported convolution with at least
// kAutoMinTiles4 4x4 output tiles over the batch, or kAutoMinTiles4Alone
// where F(2x2, 3x3) would not run: on AVX2 it measured 1.2-2.6x faster
// than jit:avx2 there, 7x7 outputs from batch 2 included (8 tiles of 16
// pixels for 49 outputs each), and faster than F(2x2, 3x3) but on small
// channel counts with few tiles (64 channels at 14x14, batch 1: 1.25
// against 1.39). In ResNet-50 at batch 1 the 14x14 x 256-channel layers
// (16 4x4 tiles, 49 2x2 ones) ran as fast on either: there the 9 MiB
// F(4x4, 3x3) filter comes from memory, the 4 MiB F(2x2, 3x3) one reads
// faster. Else F(2x2, 3x3) with at least kAutoMinTiles2 2x2 tiles
// covering at most kAutoMaxCover times the output pixels: 1.2-1.6x from
// 14x14 at batch 1 (49 tiles) up, 0.3-0.8x with fewer tiles (a thread left
// idle) or on 7x7 outputs (16 tiles of 4 pixels for 49 outputs)
// (docs/PERFORMANCE.md, "Winograd F(4x4, 3x3)" and "Winograd
// F(2x2, 3x3)"; bench/engine/winograd_kernel).
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/conv_setup.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/winograd.h"

namespace rectifier::engine {

const char* Conv3x3KernelName(Conv3x3Kernel kernel) {
  switch (kernel) {
    case Conv3x3Kernel::kOneDnn:
      return "onednn";
    case Conv3x3Kernel::kAuto:
      return "auto";
    case Conv3x3Kernel::kAutoF2x2:
      return "auto-f2x2";
    case Conv3x3Kernel::kWinograd:
      return "winograd";
    case Conv3x3Kernel::kWinogradF4x4:
      return "winograd-f4x4";
  }
  return "auto";
}

bool ParseConv3x3Kernel(std::string_view name, Conv3x3Kernel* kernel) {
  for (Conv3x3Kernel k : {Conv3x3Kernel::kOneDnn, Conv3x3Kernel::kAuto, Conv3x3Kernel::kAutoF2x2,
                          Conv3x3Kernel::kWinograd, Conv3x3Kernel::kWinogradF4x4}) {
    if (name == Conv3x3KernelName(k)) {
      *kernel = k;
      return true;
    }
  }
  return false;
}

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

constexpr int64_t kAutoMinTiles4 = 24;
constexpr int64_t kAutoMinTiles4Alone = 8;  // 7x7 outputs at batch 2 have 8
constexpr int64_t kAutoMinTiles2 = 48;      // 14x14 outputs at batch 1 have 49
constexpr double kAutoMaxCover = 1.15;      // 15x15 outputs: 1.14; 7x7: 1.31
// At AVX-512, F(4x4, 3x3) filters (36 x IC x OC floats) beyond this size
// need kAutoMinTiles4Far tiles.
constexpr int64_t kAvx512FarFilterBytes = int64_t{16} << 20;
constexpr int64_t kAutoMinTiles4Far = 16;

// Attribute names of the step's node.
constexpr char kDims[] = "dims";  // batch, in_channels, out_channels, height, width, tile, lanes
constexpr char kAct[] = "act";    // DepthwiseAct
constexpr char kClip[] = "clip";  // clip_lo, clip_hi

WinogradParams ParamsOf(const Node& node) {
  const std::vector<int64_t> d = node.GetInts(kDims, {});
  const std::vector<float> c = node.GetFloats(kClip, {});
  WinogradParams p;
  if (d.size() != 7 || c.size() != 2) {
    p.batch = 0;  // unsupported
    return p;
  }
  p.batch = d[0];
  p.in_channels = d[1];
  p.out_channels = d[2];
  p.height = d[3];
  p.width = d[4];
  p.tile = static_cast<int>(d[5]);
  p.lanes = static_cast<int>(d[6]);
  p.act = static_cast<DepthwiseAct>(node.GetInt(kAct, 0));
  p.clip_lo = c[0];
  p.clip_hi = c[1];
  return p;
}

absl::Status ComputeWinograd(const Node& node, const std::vector<View>& in,
                             const std::vector<View>& out) {
  const WinogradParams p = ParamsOf(node);
  if (!WinogradSupported(p) || !WinogradVectorized(p.lanes)) {
    return absl::InternalError(absl::StrCat(node.Describe(), ": Winograd parameters are invalid"));
  }
  const float* bias = in.size() > 2 && in[2].data != nullptr ? in[2].as<float>() : nullptr;
  WinogradConv3x3(p, in[0].as<float>(), in[1].as<float>(), bias, out[0].as<float>());
  return absl::OkStatus();
}

// The output tile `kernel` runs `p` with (2 or 4), or 0 for oneDNN.
int TileFor(Conv3x3Kernel kernel, WinogradParams p) {
  switch (kernel) {
    case Conv3x3Kernel::kOneDnn:
      return 0;
    case Conv3x3Kernel::kWinograd:
      return 2;
    case Conv3x3Kernel::kWinogradF4x4:
      return 4;
    case Conv3x3Kernel::kAuto:
    case Conv3x3Kernel::kAutoF2x2:
      break;
  }
  // At AVX-512 the products outrun memory: where the F(4x4, 3x3) filter
  // exceeds the L3 cache's share (512 x 512 channels: 36 MiB), it takes
  // kAutoMinTiles4Far tiles to pay for streaming it (ResNet-50's 7x7 layers
  // in batch-split parts of 4 images, 16 tiles on one thread: 3.7 ms
  // against oneDNN's 5.5; 8 tiles on two threads: 0.8x), and F(2x2, 3x3)
  // does not pay (0.55-0.66x).
  WinogradParams f4 = p;
  f4.tile = 4;
  const int64_t f4_filter_bytes = WinogradFilterSize(f4) * static_cast<int64_t>(sizeof(float));
  const bool far = p.lanes == 16 && f4_filter_bytes > kAvx512FarFilterBytes;
  WinogradParams f2 = p;
  f2.tile = 2;
  const int64_t covered = 4 * ((p.height + 1) / 2) * ((p.width + 1) / 2);  // whole tiles
  const double cover = static_cast<double>(covered) / static_cast<double>(p.height * p.width);
  const bool f2_wins = WinogradTiles(f2) >= kAutoMinTiles2 && cover <= kAutoMaxCover;
  if (kernel == Conv3x3Kernel::kAuto) {
    const int64_t tiles = WinogradTiles(f4);
    if (tiles >= kAutoMinTiles4) return 4;
    if (far) return tiles >= kAutoMinTiles4Far ? 4 : 0;
    if (tiles >= kAutoMinTiles4Alone && !f2_wins) return 4;
  }
  return f2_wins && !far ? 2 : 0;
}

}  // namespace

int BlockedLanes(const memory::desc& md, const std::vector<int64_t>& shape) {
  for (const auto& [tag, lanes] : {std::pair{Tag::nChw8c, 8}, std::pair{Tag::nChw16c, 16}}) {
    if (md == memory::desc(PlanBuilder::Dims(shape), memory::data_type::f32, tag)) return lanes;
  }
  return 0;
}

size_t WinogradFusedPostOps(const PlanBuilder& b, const Node& node) {
  DepthwiseAct act = DepthwiseAct::kNone;
  float lo = 0, hi = 0;
  if (!KernelActivation(node.post_ops, &act, &lo, &hi)) return 0;
  if (act == DepthwiseAct::kSilu && b.silu_kernel() != ActivationKernel::kRectifier) return 0;
  return 1;
}

absl::StatusOr<int> TryLowerWinograd(PlanBuilder& b, const Node& node, const ConvSetup& c, int x,
                                     const dnnl::primitive_desc& pd,
                                     const std::function<std::string()>& label) {
  if (b.conv3x3_kernel() == Conv3x3Kernel::kOneDnn || c.transpose || c.weights == nullptr ||
      c.runtime_bias || c.geo.groups != 1) {
    return -1;
  }
  const std::vector<int64_t>& xs = b.values()[x].shape;
  const std::vector<int64_t>& ws = c.weights_shape;
  const std::vector<int64_t>& ys = c.geo.out_shape;
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4 || ws[2] != 3 || ws[3] != 3 ||
      ws[1] != xs[1] || ys[1] != ws[0] || ys[0] != xs[0] || ys[2] != xs[2] || ys[3] != xs[3]) {
    return -1;
  }
  for (size_t i = 0; i < 2; ++i) {
    if (c.geo.strides[i] != 1 || c.geo.dilations[i] != 1 || c.geo.pad_begin[i] != 1 ||
        c.geo.pad_end[i] != 1) {
      return -1;
    }
  }
  const int lanes = BlockedLanes(pd.src_desc(), xs);
  if (lanes == 0 || BlockedLanes(pd.dst_desc(), ys) != lanes || !WinogradVectorized(lanes)) {
    return -1;
  }
  WinogradParams p;
  p.batch = xs[0];
  p.in_channels = xs[1];
  p.out_channels = ys[1];
  p.height = xs[2];
  p.width = xs[3];
  p.lanes = lanes;
  const size_t fused = WinogradFusedPostOps(b, node);
  if (fused > 0) KernelActivation(node.post_ops, &p.act, &p.clip_lo, &p.clip_hi);
  p.tile = TileFor(b.conv3x3_kernel(), p);
  if (p.tile == 0 || !WinogradSupported(p)) return -1;

  ASSIGN_OR_RETURN(int src, b.InLayout(x, pd.src_desc()));
  const float* weights = c.weights->data<float>();
  ASSIGN_OR_RETURN(
      const int wv,
      b.ComputedConstant(absl::StrCat(node.Input(1), "@winograd", p.tile == 4 ? "4" : ""),
                         WinogradFilterSize(p),
                         [&](float* u) { WinogradTransformFilter(p, weights, u); }));
  int bv = -1;
  if (c.bias != nullptr) {
    ASSIGN_OR_RETURN(bv, b.ConstantInLayout(absl::StrCat(node.Input(2), "@bias"),
                                            c.bias->bytes.data(), c.b_md, c.b_md, {ys[1]}));
  }
  const bool whole = fused == node.post_ops.size();
  const int dst = b.NewValue(whole ? node.outputs[0] : node.outputs[0] + "#conv",
                             DataType::kFloat32, ys, pd.dst_desc());
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = "WinogradConv";
  step.node.name = node.name;
  step.node.attrs[kDims] = Attribute::OfInts(
      {p.batch, p.in_channels, p.out_channels, p.height, p.width, p.tile, p.lanes});
  step.node.attrs[kAct] = Attribute::OfInt(static_cast<int64_t>(p.act));
  step.node.attrs[kClip] = Attribute::OfFloats({p.clip_lo, p.clip_hi});
  step.compute = ComputeWinograd;
  step.inputs = {src, wv, bv};
  step.outputs = {dst};
  step.reads = {src, wv};
  if (bv >= 0) step.reads.push_back(bv);
  step.writes = {dst};
  step.label = absl::StrCat(
      WithWeightLayout(label(), pd, p.tile == 4 ? "winograd-f4x4-3x3" : "winograd-f2x2-3x3"),
      lanes == 16 ? "  [rectifier_winograd:avx512]" : "  [rectifier_winograd:avx2]");
  b.plan().steps.push_back(std::move(step));
  return dst;
}

}  // namespace rectifier::engine
