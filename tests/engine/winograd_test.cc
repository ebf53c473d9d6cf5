// Rectifier's Winograd kernels F(2x2, 3x3) and F(4x4, 3x3)
// (server/engine/ops/winograd.h): against a plain double-precision
// convolution over odd and even sizes, tiles cut by the border, channel
// counts around the 16-channel register block, batches, bias or none,
// every activation they fuse and every way F(4x4, 3x3) shares the work
// between threads; and the plans that use them
// (CompileOptions::conv3x3_kernel) against oneDNN's direct convolution:
// the activation in the kernel, and post-ops it leaves to separate steps
// (a residual sum, LeakyReLU, SiLU when oneDNN runs it), and which kernel
// `auto` picks.
#include "server/engine/ops/winograd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;

std::vector<float> Random(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = dist(rng);
  return v;
}

// Index of (n, c, y, x) in nChw8c (lanes 8) or nChw16c (16).
int64_t At(int lanes, int64_t channels, int64_t h, int64_t w, int64_t n, int64_t c, int64_t y,
           int64_t x) {
  return ((n * (channels / lanes) + c / lanes) * h * w + y * w + x) * lanes + c % lanes;
}

// The layouts the kernel runs in here: nChw8c (AVX2), and nChw16c where
// AVX-512 may run (not under ONEDNN_MAX_CPU_ISA=AVX2).
std::vector<int> LanesHere() {
  std::vector<int> lanes = {8};
  if (WinogradVectorized(16)) lanes.push_back(16);
  return lanes;
}

double Act(const WinogradParams& p, double v) {
  switch (p.act) {
    case DepthwiseAct::kNone:
      return v;
    case DepthwiseAct::kClip:
      return std::min<double>(std::max<double>(v, p.clip_lo), p.clip_hi);
    case DepthwiseAct::kSilu:
      return v / (1.0 + std::exp(-v));
  }
  return v;
}

// The kernel against the direct convolution in double precision; returns
// the largest error relative to the largest convolution output (before the
// activation, which may clip it).
double WorstError(const WinogradParams& p, bool with_bias, uint32_t seed) {
  const int64_t ic = p.in_channels, oc = p.out_channels, h = p.height, w = p.width;
  const std::vector<float> x = Random(p.batch * ic * h * w, seed);
  const std::vector<float> g = Random(oc * ic * 9, seed + 1, -0.5f, 0.5f);
  const std::vector<float> bias = Random(oc, seed + 2);
  std::vector<float> u(WinogradFilterSize(p));
  WinogradTransformFilter(p, g.data(), u.data());
  std::vector<float> y(p.batch * oc * h * w, std::nanf(""));
  WinogradConv3x3(p, x.data(), u.data(), with_bias ? bias.data() : nullptr, y.data());
  double worst = 0, largest = 0;
  std::vector<double> want(y.size());
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t oy = 0; oy < h; ++oy)
        for (int64_t ox = 0; ox < w; ++ox) {
          double acc = with_bias ? bias[o] : 0.0;
          for (int64_t c = 0; c < ic; ++c)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const int64_t iy = oy + ky - 1, ix = ox + kx - 1;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                acc += static_cast<double>(x[At(p.lanes, ic, h, w, n, c, iy, ix)]) *
                       g[((o * ic + c) * 3 + ky) * 3 + kx];
              }
          const int64_t at = At(p.lanes, oc, h, w, n, o, oy, ox);
          want[at] = Act(p, acc);
          largest = std::max(largest, std::abs(acc));
        }
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isnan(y[i])) return std::numeric_limits<double>::infinity();  // not written
    worst = std::max(worst, std::abs(y[i] - want[i]));
  }
  return worst / std::max(largest, 1e-30);
}

WinogradParams Params(int64_t batch, int64_t ic, int64_t oc, int64_t h, int64_t w,
                      DepthwiseAct act = DepthwiseAct::kNone, int tile = 2, int lanes = 8) {
  WinogradParams p;
  p.tile = tile;
  p.lanes = lanes;
  p.batch = batch;
  p.in_channels = ic;
  p.out_channels = oc;
  p.height = h;
  p.width = w;
  p.act = act;
  return p;
}

// The largest error relative to the largest output each algorithm stays
// under: F(2x2, 3x3) within a few units of float rounding, F(4x4, 3x3)
// (transforms scaling by up to 8) about ten times that (measured up to
// 1.5e-5 at 512 channels in bench/engine/winograd_kernel).
double Bound(int tile) { return tile == 2 ? 2e-6 : 2e-5; }

TEST(WinogradKernelTest, MatchesTheDirectConvolution) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Shape {
    int64_t batch, ic, oc, h, w;
  };
  // Odd and even sizes (tiles cut by the border on every side, for both
  // tile sizes), 1-pixel images, one and several two-vector output blocks
  // plus a one-vector remainder, more tiles than one thread's block,
  // batches; channels in 8-channel units, twice as many in nChw16c.
  for (int lanes : LanesHere()) {
    const int64_t k = lanes / 8;
    for (int tile : {2, 4}) {
      for (const Shape& s :
           {Shape{1, 8, 8, 5, 5}, Shape{1, 8, 16, 1, 1}, Shape{2, 16, 24, 7, 6},
            Shape{1, 24, 8, 2, 9}, Shape{3, 32, 40, 9, 11}, Shape{1, 16, 16, 20, 17},
            Shape{2, 64, 48, 14, 14}, Shape{2, 16, 24, 17, 15}, Shape{1, 16, 8, 6, 7}}) {
        for (bool bias : {false, true}) {
          SCOPED_TRACE(absl::StrCat("nChw", lanes, "c F(", tile, "x", tile, ", 3x3) ", s.batch, "x",
                                    k * s.ic, "->", k * s.oc, " ", s.h, "x", s.w,
                                    bias ? " bias" : ""));
          const WinogradParams p =
              Params(s.batch, k * s.ic, k * s.oc, s.h, s.w, DepthwiseAct::kNone, tile, lanes);
          ASSERT_TRUE(WinogradSupported(p));
          EXPECT_LT(WorstError(p, bias, 11), Bound(tile));
        }
      }
    }
  }
}

// F(4x4, 3x3) splits the work by tile blocks, and where tiles are few by
// output channels too (each thread transforming the same input tiles);
// a filter beyond the L3 share takes 18-tile blocks. Every split, at 1, 2
// and 3 threads, against the direct convolution.
TEST(WinogradKernelTest, F4x4MatchesTheDirectConvolutionWhateverTheSplit) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Shape {
    int64_t batch, ic, oc, h, w;
  };
  const int saved = omp_get_max_threads();
  for (int lanes : LanesHere()) {
    const int64_t k = lanes / 8;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      // 16 tiles of 32 -> 32 and 40 (an odd vector in the last part)
      // channels: split by channels at 2 and 3 threads; 9 tiles of 48
      // channels; 196 tiles in 6-tile blocks (channels in 8-channel units,
      // twice as many in nChw16c); a 352 x 360 (368) filter, 18 MiB, in
      // 18-tile blocks.
      for (const Shape& s : {Shape{1, k * 32, k * 32, 14, 14}, Shape{1, k * 32, k * 40, 13, 16},
                             Shape{1, k * 48, k * 48, 10, 10}, Shape{1, k * 8, k * 16, 56, 56},
                             Shape{2, 352, lanes == 8 ? 360 : 368, 7, 7}}) {
        SCOPED_TRACE(absl::StrCat("nChw", lanes, "c, ", threads, " threads, ", s.batch, "x", s.ic,
                                  "->", s.oc, " ", s.h, "x", s.w));
        const WinogradParams p =
            Params(s.batch, s.ic, s.oc, s.h, s.w, DepthwiseAct::kNone, 4, lanes);
        EXPECT_LT(WorstError(p, true, 13), Bound(4));
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(WinogradKernelTest, FusesClipReluAndSilu) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  for (int lanes : LanesHere()) {
    const int64_t k = lanes / 8;
    for (int tile : {2, 4}) {
      SCOPED_TRACE(absl::StrCat("nChw", lanes, "c F(", tile, "x", tile, ", 3x3)"));
      WinogradParams relu = Params(2, k * 16, k * 24, 9, 8, DepthwiseAct::kClip, tile, lanes);
      relu.clip_lo = 0.0f;
      WinogradParams relu6 = relu;
      relu6.clip_hi = 0.25f;  // low enough to clip many outputs
      const WinogradParams silu = Params(2, k * 16, k * 24, 9, 8, DepthwiseAct::kSilu, tile, lanes);
      EXPECT_LT(WorstError(relu, true, 21), Bound(tile));
      EXPECT_LT(WorstError(relu6, true, 22), Bound(tile));
      EXPECT_LT(WorstError(silu, true, 23), Bound(tile));
      // Enough tiles for several blocks per thread, SiLU in each.
      EXPECT_LT(WorstError(Params(8, k * 16, k * 24, 17, 15, DepthwiseAct::kSilu, tile, lanes),
                           false, 24),
                Bound(tile));
    }
  }
}

TEST(WinogradKernelTest, RefusesWhatItCannotRun) {
  EXPECT_FALSE(WinogradSupported(Params(1, 12, 8, 8, 8)));
  EXPECT_FALSE(WinogradSupported(Params(1, 8, 20, 8, 8)));
  EXPECT_FALSE(WinogradSupported(Params(0, 8, 8, 8, 8)));
  EXPECT_FALSE(WinogradSupported(Params(1, 8, 8, 0, 8)));
  EXPECT_FALSE(WinogradSupported(Params(1, 8, 8, 8, 8, DepthwiseAct::kNone, 3)));
  EXPECT_FALSE(WinogradSupported(Params(1, 24, 32, 8, 8, DepthwiseAct::kNone, 4, 16)));
  EXPECT_FALSE(WinogradSupported(Params(1, 16, 16, 8, 8, DepthwiseAct::kNone, 4, 4)));
  EXPECT_TRUE(WinogradSupported(Params(1, 16, 32, 8, 8, DepthwiseAct::kNone, 4, 16)));
  EXPECT_EQ(WinogradTiles(Params(2, 8, 8, 5, 6)), 2 * 3 * 3);
  EXPECT_EQ(WinogradTiles(Params(2, 8, 8, 5, 9, DepthwiseAct::kNone, 4)), 2 * 2 * 3);
  EXPECT_EQ(WinogradFilterSize(Params(1, 8, 16, 5, 5)), 16 * 8 * 16);
  EXPECT_EQ(WinogradFilterSize(Params(1, 8, 16, 5, 5, DepthwiseAct::kNone, 4)), 36 * 8 * 16);
}

// ---- in plans ----------------------------------------------------------------

// x -> Conv 3x3 (pad 1, stride, bias) -> activation [-> + x] -> y.
std::string ConvModel(int64_t in_channels, int64_t out_channels, int64_t size, int64_t stride,
                      const std::string& activation, bool residual = false) {
  ModelBuilder b;
  b.Input("x", {-1, in_channels, size, size});
  b.RandomInit("w", {out_channels, in_channels, 3, 3}, -0.3f, 0.3f);
  b.RandomInit("bias", {out_channels}, -0.5f, 0.5f);
  auto& conv = b.Node("Conv", {"x", "w", "bias"}, {"c"}, "conv3x3");
  ModelBuilder::IntsAttr(conv, "pads", {1, 1, 1, 1});
  ModelBuilder::IntsAttr(conv, "strides", {stride, stride});
  const std::string act_out = residual ? "a" : "y";
  if (activation == "Relu") {
    b.Node("Relu", {"c"}, {act_out});
  } else if (activation == "SiLU") {
    b.Node("Sigmoid", {"c"}, {"s"});
    b.Node("Mul", {"c", "s"}, {act_out});
  } else if (activation == "LeakyRelu") {
    b.Node("LeakyRelu", {"c"}, {act_out});
  } else {
    b.Node("Identity", {"c"}, {act_out});
  }
  if (residual) b.Node("Add", {"a", "x"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

testing::PlanRun Compile(const std::string& bytes, const Tensor& x, Conv3x3Kernel kernel,
                         ConvLayout layout = ConvLayout::kBlocked8,
                         ActivationKernel silu_kernel = ActivationKernel::kRectifier) {
  CompileOptions options;
  options.conv_layout = layout;
  options.conv3x3_kernel = kernel;
  options.silu_kernel = silu_kernel;
  return testing::CompileDescribeRun(bytes, x, options, /*runs=*/2);
}

TEST(WinogradPlanTest, AgreesWithOneDnn) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Shape {
    int64_t ic, oc, size;
    std::string act;
    bool residual;
    ActivationKernel silu = ActivationKernel::kRectifier;
  };
  for (const Conv3x3Kernel kernel : {Conv3x3Kernel::kWinograd, Conv3x3Kernel::kWinogradF4x4}) {
    const bool f4 = kernel == Conv3x3Kernel::kWinogradF4x4;
    for (const Shape& s : {Shape{16, 24, 15, "Relu", false}, Shape{32, 32, 12, "SiLU", true},
                           Shape{8, 16, 9, "none", false}, Shape{24, 24, 10, "LeakyRelu", true},
                           Shape{16, 16, 11, "SiLU", false, ActivationKernel::kOneDnn}}) {
      SCOPED_TRACE(absl::StrCat(Conv3x3KernelName(kernel), " ", s.ic, "->", s.oc, " ", s.size, " ",
                                s.act, s.residual ? " + residual" : "",
                                s.silu == ActivationKernel::kOneDnn ? " (oneDNN SiLU)" : ""));
      const std::string bytes = ConvModel(s.ic, s.oc, s.size, 1, s.act, s.residual);
      const Tensor x = RandomTensor({2, s.ic, s.size, s.size}, 5);
      const auto ours = Compile(bytes, x, kernel, ConvLayout::kBlocked8, s.silu);
      const auto theirs = Compile(bytes, x, Conv3x3Kernel::kOneDnn, ConvLayout::kBlocked8, s.silu);
      EXPECT_FALSE(absl::StrContains(theirs.plan, "rectifier_winograd")) << theirs.plan;
      EXPECT_TRUE(
          absl::StrContains(ours.plan, f4 ? "wei:winograd-f4x4-3x3" : "wei:winograd-f2x2-3x3"))
          << ours.plan;
      ASSERT_EQ(ours.outputs.size(), 1u);
      ASSERT_EQ(theirs.outputs.size(), 1u);
      // F(4x4, 3x3) loses about a digit more than F(2x2, 3x3) (Bound above):
      // outputs of a few units agree to 1e-4, the parity bound with ONNX
      // Runtime.
      testing::ExpectNear(ours.outputs[0], theirs.outputs[0], f4 ? 1e-4f : 1e-5f);
    }
  }
}

// The AVX-512 kernel in nChw16c plans against oneDNN's own AVX-512
// convolution; 24 channels (padded to 32 in nChw16c) stay on oneDNN.
TEST(WinogradPlanTest, AgreesWithOneDnnInNchw16c) {
  if (!WinogradVectorized(16)) GTEST_SKIP() << "oneDNN does not run AVX-512 here";
  struct Shape {
    int64_t ic, oc, size;
    std::string act;
    bool residual;
  };
  for (const Conv3x3Kernel kernel : {Conv3x3Kernel::kWinograd, Conv3x3Kernel::kWinogradF4x4}) {
    for (const Shape& s : {Shape{16, 32, 15, "Relu", false}, Shape{32, 32, 12, "SiLU", true},
                           Shape{16, 16, 9, "none", false}, Shape{48, 48, 10, "LeakyRelu", true},
                           Shape{24, 24, 10, "Relu", false}}) {
      SCOPED_TRACE(absl::StrCat(Conv3x3KernelName(kernel), " ", s.ic, "->", s.oc, " ", s.size, " ",
                                s.act, s.residual ? " + residual" : ""));
      const std::string bytes = ConvModel(s.ic, s.oc, s.size, 1, s.act, s.residual);
      const Tensor x = RandomTensor({2, s.ic, s.size, s.size}, 7);
      const auto ours = Compile(bytes, x, kernel, ConvLayout::kBlocked16);
      const auto theirs = Compile(bytes, x, Conv3x3Kernel::kOneDnn, ConvLayout::kBlocked16);
      EXPECT_EQ(absl::StrContains(ours.plan, "rectifier_winograd:avx512"), s.ic % 16 == 0)
          << ours.plan;
      ASSERT_EQ(ours.outputs.size(), 1u);
      ASSERT_EQ(theirs.outputs.size(), 1u);
      testing::ExpectNear(ours.outputs[0], theirs.outputs[0],
                          kernel == Conv3x3Kernel::kWinogradF4x4 ? 1e-4f : 1e-5f);
    }
  }
}

// At AVX-512 `auto` wants 16 tiles for a filter beyond 16 MiB (512 x 512
// channels), and never F(2x2, 3x3) for it; in nChw8c it takes 8.
TEST(WinogradPlanTest, AutoWantsMoreTilesForLargeFiltersAtAvx512) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  auto kernel_of = [&](int64_t size, int64_t batch, ConvLayout layout) -> std::string {
    const Tensor x = RandomTensor({batch, 512, size, size}, 8);
    const std::string plan =
        Compile(ConvModel(512, 512, size, 1, "Relu"), x, Conv3x3Kernel::kAuto, layout).plan;
    if (absl::StrContains(plan, "wei:winograd-f4x4-3x3")) return "f4";
    if (absl::StrContains(plan, "wei:winograd-f2x2-3x3")) return "f2";
    return "onednn";
  };
  EXPECT_EQ(kernel_of(7, 2, ConvLayout::kBlocked8), "f4");   // 8 tiles
  EXPECT_EQ(kernel_of(14, 1, ConvLayout::kBlocked8), "f2");  // 16 4x4 tiles, 49 2x2 ones
  if (!WinogradVectorized(16)) return;
  EXPECT_EQ(kernel_of(7, 2, ConvLayout::kBlocked16), "onednn");
  EXPECT_EQ(kernel_of(7, 4, ConvLayout::kBlocked16), "f4");  // 16 tiles
  EXPECT_EQ(kernel_of(14, 1, ConvLayout::kBlocked16), "f4");
  EXPECT_EQ(kernel_of(10, 1, ConvLayout::kBlocked16), "onednn");  // 9 tiles, 25 2x2 ones
}

TEST(WinogradPlanTest, AutoTakesEnoughTilesAndOnlyStrideOneEightChannelMultiples) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  // Which kernel runs the convolution: "f4", "f2" or "onednn".
  auto kernel_of = [&](int64_t ic, int64_t oc, int64_t size, int64_t stride, int64_t batch,
                       Conv3x3Kernel kernel = Conv3x3Kernel::kAuto) -> std::string {
    const Tensor x = RandomTensor({batch, ic, size, size}, 6);
    const std::string plan = Compile(ConvModel(ic, oc, size, stride, "Relu"), x, kernel).plan;
    if (absl::StrContains(plan, "wei:winograd-f4x4-3x3")) return "f4";
    if (absl::StrContains(plan, "wei:winograd-f2x2-3x3")) return "f2";
    EXPECT_FALSE(absl::StrContains(plan, "rectifier_winograd")) << plan;
    return "onednn";
  };
  // F(4x4, 3x3) from 24 4x4 tiles.
  EXPECT_EQ(kernel_of(16, 16, 56, 1, 1), "f4");  // 196 tiles
  EXPECT_EQ(kernel_of(16, 16, 28, 1, 1), "f4");  // 49
  // 16 4x4 tiles: F(2x2, 3x3) where it takes the shape (49 2x2 tiles)...
  EXPECT_EQ(kernel_of(16, 16, 14, 1, 1), "f2");
  EXPECT_EQ(kernel_of(16, 16, 10, 1, 2), "f2");  // 18 and 50 tiles
  // ... else F(4x4, 3x3) from 8 tiles: 7x7 outputs from batch 2 (4 tiles
  // of 16 pixels per image).
  EXPECT_EQ(kernel_of(16, 16, 7, 1, 8), "f4");
  EXPECT_EQ(kernel_of(16, 16, 7, 1, 2), "f4");
  EXPECT_EQ(kernel_of(16, 16, 7, 1, 1), "onednn");   // 4 tiles
  EXPECT_EQ(kernel_of(16, 16, 12, 1, 1), "f4");      // 9 tiles; 36 2x2 ones
  EXPECT_EQ(kernel_of(16, 16, 13, 1, 1), "f4");      // 16 tiles; 2x2 ones cover 1.16x
  EXPECT_EQ(kernel_of(16, 16, 6, 1, 1), "onednn");   // 4 tiles; 9 2x2 ones
  EXPECT_EQ(kernel_of(16, 16, 56, 2, 1), "onednn");  // stride 2
  // Without F(4x4, 3x3): F(2x2, 3x3) from 48 2x2 tiles, not on 7x7 outputs.
  EXPECT_EQ(kernel_of(16, 16, 28, 1, 1, Conv3x3Kernel::kAutoF2x2), "f2");
  EXPECT_EQ(kernel_of(16, 16, 14, 1, 1, Conv3x3Kernel::kAutoF2x2), "f2");
  EXPECT_EQ(kernel_of(16, 16, 12, 1, 1, Conv3x3Kernel::kAutoF2x2), "onednn");
  EXPECT_EQ(kernel_of(16, 16, 7, 1, 8, Conv3x3Kernel::kAutoF2x2), "onednn");
  // Forced, wherever they run.
  EXPECT_EQ(kernel_of(16, 16, 8, 1, 1, Conv3x3Kernel::kWinograd), "f2");
  EXPECT_EQ(kernel_of(16, 16, 8, 1, 1, Conv3x3Kernel::kWinogradF4x4), "f4");
  EXPECT_EQ(kernel_of(16, 16, 56, 1, 1, Conv3x3Kernel::kWinograd), "f2");
  // 12 input channels (oneDNN also chooses a plain layout for them).
  EXPECT_EQ(kernel_of(12, 16, 56, 1, 1, Conv3x3Kernel::kWinograd), "onednn");
  EXPECT_EQ(kernel_of(12, 16, 56, 1, 1, Conv3x3Kernel::kWinogradF4x4), "onednn");
  EXPECT_EQ(kernel_of(16, 16, 56, 1, 1, Conv3x3Kernel::kOneDnn), "onednn");
  // In nChw16c (where oneDNN runs the convolution in it: AVX-512) the
  // AVX-512 kernel takes it; on AVX2 oneDNN falls back to nChw8c and the
  // AVX2 kernel does.
  const Tensor x = RandomTensor({1, 16, 56, 56}, 6);
  const std::string bytes = ConvModel(16, 16, 56, 1, "Relu");
  const bool blocked16 = absl::StrContains(
      Compile(bytes, x, Conv3x3Kernel::kOneDnn, ConvLayout::kBlocked16).plan, "src:aBcd16b");
  const std::string plan16 =
      Compile(bytes, x, Conv3x3Kernel::kWinograd, ConvLayout::kBlocked16).plan;
  EXPECT_EQ(absl::StrContains(plan16, "rectifier_winograd:avx512"),
            blocked16 && WinogradVectorized(16))
      << plan16;
  EXPECT_EQ(absl::StrContains(plan16, "rectifier_winograd:avx2"), !blocked16) << plan16;
}

}  // namespace
}  // namespace rectifier::engine
