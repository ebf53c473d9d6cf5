// Rectifier's depthwise convolution kernel (server/engine/ops/depthwise.h):
// against a plain double-precision convolution over every layout, window,
// stride, padding and activation it takes, in each of its three ways of
// reading rows (in place, a staged band, a ring of staged rows); its SiLU
// against the exact function; and the plans that use it
// (CompileOptions::depthwise_kernel) against oneDNN's jit_dw.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/ops/depthwise.h"
#include "server/engine/ops/silu_avx2.h"
#include "server/engine/ops/silu_avx512.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;

struct Case {
  int64_t batch = 1, channels = 8, block = 8;  // block 0: NHWC
  int64_t h = 9, w = 9;
  int kh = 3, kw = 3, sh = 1, sw = 1;
  int pt = 1, pl = 1, pb = 1, pr = 1;
  DepthwiseAct in = DepthwiseAct::kNone, out = DepthwiseAct::kNone;
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
};

DepthwiseParams ParamsFor(const Case& c) {
  DepthwiseParams p;
  p.batch = c.batch;
  p.channels = c.channels;
  p.block = c.block == 0 ? c.channels : c.block;
  p.in_h = c.h;
  p.in_w = c.w;
  p.out_h = (c.h + c.pt + c.pb - c.kh) / c.sh + 1;
  p.out_w = (c.w + c.pl + c.pr - c.kw) / c.sw + 1;
  p.kernel_h = c.kh;
  p.kernel_w = c.kw;
  p.stride_h = c.sh;
  p.stride_w = c.sw;
  p.pad_top = c.pt;
  p.pad_left = c.pl;
  p.input_act = c.in;
  p.output_act = c.out;
  p.clip_lo = c.lo;
  p.clip_hi = c.hi;
  return p;
}

// Index of (n, ch, y, x) in the kernel's layout.
int64_t At(const DepthwiseParams& p, int64_t n, int64_t ch, int64_t y, int64_t x, int64_t h,
           int64_t w) {
  return ((n * (p.channels / p.block) + ch / p.block) * h * w + y * w + x) * p.block + ch % p.block;
}

double Act(DepthwiseAct a, double v, const DepthwiseParams& p) {
  switch (a) {
    case DepthwiseAct::kNone:
      return v;
    case DepthwiseAct::kClip:
      return std::min(std::max(v, static_cast<double>(p.clip_lo)), static_cast<double>(p.clip_hi));
    case DepthwiseAct::kSilu:
      return v / (1.0 + std::exp(-v));
  }
  return v;
}

// Runs both versions of the kernel on random data and compares them with
// a double-precision convolution.
void ExpectMatchesReference(const Case& c) {
  const DepthwiseParams p = ParamsFor(c);
  ASSERT_TRUE(DepthwiseSupported(p));
  std::mt19937 rng(static_cast<unsigned>(c.channels * 131 + c.h * 7 + c.kw));
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> src(static_cast<size_t>(p.batch * p.channels * p.in_h * p.in_w));
  for (float& v : src) v = u(rng);
  std::vector<float> w(static_cast<size_t>(p.channels * p.kernel_h * p.kernel_w));
  for (float& v : w) v = u(rng) / 4;
  std::vector<float> bias(static_cast<size_t>(p.channels));
  for (float& v : bias) v = u(rng);
  std::vector<float> packed(w.size());
  PackDepthwiseWeights(w.data(), p.channels, p.kernel_h, p.kernel_w, packed.data());
  const size_t out_size = static_cast<size_t>(p.batch * p.channels * p.out_h * p.out_w);
  std::vector<float> fast(out_size, std::nanf("")), scalar(out_size, std::nanf(""));
  DepthwiseConv2d(p, src.data(), packed.data(), bias.data(), fast.data());
  DepthwiseConv2dScalar(p, src.data(), packed.data(), bias.data(), scalar.data());
  int bad = 0;
  for (int64_t n = 0; n < p.batch; ++n) {
    for (int64_t ch = 0; ch < p.channels; ++ch) {
      for (int64_t oy = 0; oy < p.out_h; ++oy) {
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          double acc = bias[static_cast<size_t>(ch)];
          for (int ky = 0; ky < p.kernel_h; ++ky) {
            for (int kx = 0; kx < p.kernel_w; ++kx) {
              const int64_t iy = oy * p.stride_h - p.pad_top + ky;
              const int64_t ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              const double x =
                  Act(c.in, src[static_cast<size_t>(At(p, n, ch, iy, ix, p.in_h, p.in_w))], p);
              acc += x * w[static_cast<size_t>((ch * p.kernel_h + ky) * p.kernel_w + kx)];
            }
          }
          const double want = Act(c.out, acc, p);
          const size_t i = static_cast<size_t>(At(p, n, ch, oy, ox, p.out_h, p.out_w));
          const double tol = 2e-5 * std::max(1.0, std::abs(want));
          if ((std::abs(fast[i] - want) > tol || std::abs(scalar[i] - want) > tol) && ++bad <= 5) {
            ADD_FAILURE() << "n " << n << " c " << ch << " y " << oy << " x " << ox << ": want "
                          << want << ", kernel " << fast[i] << ", scalar " << scalar[i];
          }
        }
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(DepthwiseKernelTest, ThreeByThreeBlocked8) { ExpectMatchesReference(Case{}); }

TEST(DepthwiseKernelTest, WideRowsReadInPlaceWithEdges) {
  // nChw8c, no input activation, output >= 32 wide: rows read in place,
  // the edge pixels one by one.
  Case c;
  c.channels = 16;
  c.h = 6;
  c.w = 40;
  c.kh = c.kw = 5;
  c.pt = c.pl = c.pb = c.pr = 2;
  c.out = DepthwiseAct::kClip;
  c.lo = 0.0f;
  c.hi = 6.0f;
  ExpectMatchesReference(c);
  c.kh = c.kw = 3;
  c.pt = c.pl = c.pb = c.pr = 1;
  c.w = 80;
  c.sh = c.sw = 2;
  ExpectMatchesReference(c);
}

TEST(DepthwiseKernelTest, Blocked16WithSiluInAndOut) {
  Case c;
  c.block = 16;
  c.channels = 32;
  c.h = c.w = 14;
  c.kh = c.kw = 5;
  c.pt = c.pl = c.pb = c.pr = 2;
  c.in = c.out = DepthwiseAct::kSilu;
  ExpectMatchesReference(c);
}

TEST(DepthwiseKernelTest, ChannelsLastStrideTwoOddSizes) {
  Case c;
  c.block = 0;
  c.channels = 24;
  c.batch = 2;
  c.h = 15;
  c.w = 17;
  c.kh = c.kw = 5;
  c.sh = c.sw = 2;
  c.pt = c.pl = c.pb = c.pr = 2;
  c.out = DepthwiseAct::kSilu;
  ExpectMatchesReference(c);
}

TEST(DepthwiseKernelTest, NonSquareWindowAsymmetricPaddingMixedStrides) {
  Case c;
  c.channels = 16;
  c.h = 11;
  c.w = 13;
  c.kh = 3;
  c.kw = 5;
  c.sh = 2;
  c.sw = 1;
  c.pt = 0;
  c.pb = 2;
  c.pl = 1;
  c.pr = 3;
  c.out = DepthwiseAct::kClip;
  c.lo = 0.0f;  // ReLU
  ExpectMatchesReference(c);
}

TEST(DepthwiseKernelTest, SevenBySevenOnASmallImageAndOneByOne) {
  Case c;
  c.h = c.w = 7;
  c.kh = c.kw = 7;
  c.pt = c.pl = c.pb = c.pr = 3;
  ExpectMatchesReference(c);
  Case one;
  one.kh = one.kw = 1;
  one.sh = one.sw = 2;
  one.pt = one.pl = one.pb = one.pr = 0;
  one.in = DepthwiseAct::kSilu;
  ExpectMatchesReference(one);
}

TEST(DepthwiseKernelTest, RingOfStagedRowsAndBands) {
  // Input SiLU on rows too large for one staged band: a ring of rows (8
  // images give each thread whole planes); one image: bands of rows.
  for (int64_t batch : {8, 1}) {
    Case c;
    c.batch = batch;
    c.h = c.w = 100;
    c.in = DepthwiseAct::kSilu;
    c.out = DepthwiseAct::kSilu;
    ExpectMatchesReference(c);
  }
}

TEST(DepthwiseKernelTest, RefusesWhatItCannotRun) {
  DepthwiseParams p = ParamsFor(Case{});
  EXPECT_TRUE(DepthwiseSupported(p));
  DepthwiseParams q = p;
  q.channels = 12;
  q.block = 12;
  EXPECT_FALSE(DepthwiseSupported(q)) << "channels not a multiple of 8";
  q = p;
  q.kernel_w = 4;
  EXPECT_FALSE(DepthwiseSupported(q)) << "even kernel width";
  q = p;
  q.stride_w = 3;
  EXPECT_FALSE(DepthwiseSupported(q)) << "stride 3";
  q = p;
  q.block = 16;
  EXPECT_FALSE(DepthwiseSupported(q)) << "8 channels in nChw16c";
  q = p;
  q.pad_left = 3;
  EXPECT_FALSE(DepthwiseSupported(q)) << "padding as wide as the window";
  q = p;
  q.out_w = 20;
  EXPECT_FALSE(DepthwiseSupported(q)) << "outputs whose window is all padding";
  q = p;
  q.input_act = DepthwiseAct::kClip;
  EXPECT_FALSE(DepthwiseSupported(q)) << "input activation other than SiLU";
}

// The vector instruction sets SiluFast can run on this CPU.
std::vector<SiluIsa> VectorSiluIsas() {
  std::vector<SiluIsa> isas;
  if (CpuHasAvx2Fma()) isas.push_back(SiluIsa::kAvx2);
  if (UseAvx512Silu()) isas.push_back(SiluIsa::kAvx512);
  return isas;
}

TEST(DepthwiseKernelTest, SiluWithinOneMillionthOfTheExactFunction) {
  std::vector<float> x;
  for (float v = -100.0f; v <= 100.0f; v += 0.00731f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 87.0f, -87.0f}) x.push_back(v);
  for (SiluIsa isa : VectorSiluIsas()) {
    SCOPED_TRACE(isa == SiluIsa::kAvx512 ? "AVX-512" : "AVX2");
    std::vector<float> y(x.size());
    SiluFastOn(isa, x.data(), y.data(), static_cast<int64_t>(x.size()));
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want = v / (1.0 + std::exp(-v));
      if (v < -88) {
        EXPECT_EQ(y[i], 0.0f) << v;  // the limit; the exact value is below 6e-37
        continue;
      }
      if (v < -80) {  // tiny, 0 below -87.34: absolute error
        EXPECT_LE(std::abs(y[i] - want), 1e-6 * std::abs(want) + 2e-36) << v;
        continue;
      }
      if (std::abs(want) < 1e-30) continue;
      worst = std::max(worst, std::abs(y[i] - want) / std::abs(want));
    }
    EXPECT_LT(worst, 1e-6);
    const float special[4] = {std::nanf(""), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), -1000.0f};
    float out[4];
    SiluFastOn(isa, special, out, 4);  // also the tail path (fewer than a vector)
    EXPECT_TRUE(std::isnan(out[0]));
    EXPECT_EQ(out[1], std::numeric_limits<float>::infinity());
    EXPECT_EQ(out[2], 0.0f);
    EXPECT_EQ(out[3], 0.0f);
  }
}

// ONEDNN_MAX_CPU_ISA=AVX2 (as engine_test_avx2 runs this binary) holds
// Rectifier's SiLU to AVX2 too, so that the AVX2 comparisons stay AVX2;
// without a cap an AVX-512 CPU (F, CD, BW, DQ, VL: oneDNN's avx512_core)
// runs the AVX-512 path.
TEST(DepthwiseKernelTest, SiluFollowsOneDnnsInstructionSetCap) {
  const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA");
  if (cap != nullptr && std::string(cap) == "AVX2") {
    EXPECT_FALSE(UseAvx512Silu());
  } else if (cap == nullptr && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    EXPECT_TRUE(UseAvx512Silu());
  } else {
    GTEST_SKIP() << "no AVX-512 here and no AVX2 cap";
  }
}

// Every length from 1 to 40 (whole vectors and tails of both widths):
// the first n outputs equal those of the whole array, nothing past them is
// written, and SiluFast picks one of the vector paths with the same results.
TEST(DepthwiseKernelTest, SiluTailsWriteOnlyTheirElements) {
  std::vector<float> x(40);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -6.0f + 0.37f * static_cast<float>(i);
  for (SiluIsa isa : VectorSiluIsas()) {
    SCOPED_TRACE(isa == SiluIsa::kAvx512 ? "AVX-512" : "AVX2");
    std::vector<float> whole(x.size());
    SiluFastOn(isa, x.data(), whole.data(), static_cast<int64_t>(x.size()));
    for (int64_t n = 1; n <= static_cast<int64_t>(x.size()); ++n) {
      std::vector<float> y(x.size() + 16, 12345.0f);
      SiluFastOn(isa, x.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], whole[i]) << "n " << n << " i " << i;
      for (size_t i = static_cast<size_t>(n); i < y.size(); ++i) {
        ASSERT_EQ(y[i], 12345.0f) << "n " << n << " wrote past its end at " << i;
      }
    }
  }
  if (!VectorSiluIsas().empty()) {
    std::vector<float> picked(x.size()), on_isa(x.size());
    SiluFast(x.data(), picked.data(), static_cast<int64_t>(x.size()));
    SiluFastOn(VectorSiluIsas().back(), x.data(), on_isa.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(picked, on_isa) << "SiluFast runs the widest path oneDNN may use";
  }
}

// ---- in plans ----------------------------------------------------------------

// x -> depthwise Conv (k x k, stride, bias) -> activation -> y.
std::string DepthwiseModel(int64_t channels, int64_t size, int64_t kernel, int64_t stride,
                           const std::string& activation) {
  ModelBuilder b;
  b.Input("x", {-1, channels, size, size});
  b.RandomInit("wd", {channels, 1, kernel, kernel}, -0.4f, 0.4f);
  b.RandomInit("bd", {channels}, -0.5f, 0.5f);
  b.Init("lo", {}, {0.0f});
  b.Init("hi", {}, {6.0f});
  const int64_t pad = (kernel - 1) / 2;
  auto& dw = b.Node("Conv", {"x", "wd", "bd"}, {"d"}, "depthwise");
  ModelBuilder::IntAttr(dw, "group", channels);
  ModelBuilder::IntsAttr(dw, "pads", {pad, pad, pad, pad});
  ModelBuilder::IntsAttr(dw, "strides", {stride, stride});
  if (activation == "Relu6") {
    b.Node("Clip", {"d", "lo", "hi"}, {"y"});
  } else if (activation == "Relu") {
    b.Node("Relu", {"d"}, {"y"});
  } else if (activation == "SiLU") {
    b.Node("Sigmoid", {"d"}, {"s"});
    b.Node("Mul", {"d", "s"}, {"y"});
  } else {
    b.Node("Identity", {"d"}, {"y"});
  }
  b.Output("y");
  return b.Bytes();
}

testing::PlanRun Compile(const std::string& bytes, const Tensor& x, DepthwiseKernel kernel,
                         ConvLayout layout,
                         ActivationKernel silu_kernel = ActivationKernel::kRectifier) {
  CompileOptions options;
  options.conv_layout = layout;
  options.depthwise_kernel = kernel;
  options.silu_kernel = silu_kernel;
  return testing::CompileDescribeRun(bytes, x, options);
}

TEST(DepthwiseKernelPlanTest, RectifierAgreesWithOneDnnInEveryLayout) {
  struct Shape {
    int64_t channels, size, kernel, stride;
    std::string act;
  };
  for (const Shape& s : {Shape{32, 20, 3, 1, "SiLU"}, Shape{48, 17, 5, 2, "Relu6"},
                         Shape{16, 9, 3, 2, "Relu"}, Shape{64, 8, 5, 1, "none"}}) {
    const std::string bytes = DepthwiseModel(s.channels, s.size, s.kernel, s.stride, s.act);
    const Tensor x = RandomTensor({2, s.channels, s.size, s.size}, 3);
    for (ConvLayout layout :
         {ConvLayout::kBlocked8, ConvLayout::kBlocked16, ConvLayout::kChannelsLast}) {
      SCOPED_TRACE(absl::StrCat(s.channels, "ch ", s.size, " k", s.kernel, " s", s.stride, " ",
                                s.act, " ", ConvLayoutName(layout)));
      const auto ours = Compile(bytes, x, DepthwiseKernel::kRectifier, layout);
      const auto theirs = Compile(bytes, x, DepthwiseKernel::kOneDnn, layout);
      EXPECT_FALSE(absl::StrContains(theirs.plan, "rectifier_dw")) << theirs.plan;
      // Whatever layout oneDNN settles on for the convolution here
      // (nChw16c has no depthwise kernel on AVX2: it falls back to its own
      // choice) is one the kernel reads.
      EXPECT_TRUE(absl::StrContains(ours.plan, "rectifier_dw")) << ours.plan;
      ASSERT_EQ(ours.outputs.size(), 1u);
      ASSERT_EQ(theirs.outputs.size(), 1u);
      testing::ExpectNear(ours.outputs[0], theirs.outputs[0], 1e-5f);
    }
  }
}

TEST(DepthwiseKernelPlanTest, AutoTakesWideStrideOneFewChannelsOrSiluAgainstThePostOp) {
  auto plan_of = [&](int64_t channels, int64_t size, int64_t stride, const std::string& act,
                     int64_t batch = 1,
                     ActivationKernel silu_kernel = ActivationKernel::kRectifier) {
    const Tensor x = RandomTensor({batch, channels, size, size}, 4);
    return Compile(DepthwiseModel(channels, size, 3, stride, act), x, DepthwiseKernel::kAuto,
                   ConvLayout::kBlocked8, silu_kernel)
        .plan;
  };
  // SiLU: against oneDNN's swish post-op, not against jit_dw and
  // Rectifier's SiLU pass (the default).
  EXPECT_TRUE(
      absl::StrContains(plan_of(72, 56, 1, "SiLU", 1, ActivationKernel::kOneDnn), "rectifier_dw"));
  EXPECT_FALSE(absl::StrContains(plan_of(72, 56, 1, "SiLU"), "rectifier_dw"));
  EXPECT_TRUE(absl::StrContains(plan_of(32, 56, 1, "SiLU"), "rectifier_dw"));
  EXPECT_TRUE(absl::StrContains(plan_of(32, 56, 1, "Relu6"), "rectifier_dw"));
  EXPECT_TRUE(absl::StrContains(plan_of(32, 56, 1, "Relu6", 2), "rectifier_dw"));
  EXPECT_FALSE(absl::StrContains(plan_of(32, 56, 1, "Relu6", 3), "rectifier_dw"));
  EXPECT_FALSE(absl::StrContains(plan_of(72, 56, 1, "Relu6"), "rectifier_dw"));
  EXPECT_FALSE(
      absl::StrContains(plan_of(72, 56, 2, "SiLU", 1, ActivationKernel::kOneDnn), "rectifier_dw"));
  EXPECT_FALSE(
      absl::StrContains(plan_of(72, 28, 1, "SiLU", 1, ActivationKernel::kOneDnn), "rectifier_dw"));
  // Off: never.
  const auto off = Compile(DepthwiseModel(32, 56, 3, 1, "SiLU"), RandomTensor({1, 32, 56, 56}, 4),
                           DepthwiseKernel::kOneDnn, ConvLayout::kBlocked8);
  EXPECT_FALSE(absl::StrContains(off.plan, "rectifier_dw")) << off.plan;
}

TEST(DepthwiseKernelPlanTest, ChannelsNotAMultipleOfEightStayOnOneDnn) {
  const std::string bytes = DepthwiseModel(12, 20, 3, 1, "SiLU");
  const Tensor x = RandomTensor({1, 12, 20, 20}, 6);
  const auto ours = Compile(bytes, x, DepthwiseKernel::kRectifier, ConvLayout::kBlocked8);
  const auto theirs = Compile(bytes, x, DepthwiseKernel::kOneDnn, ConvLayout::kBlocked8);
  EXPECT_FALSE(absl::StrContains(ours.plan, "rectifier_dw")) << ours.plan;
  ASSERT_EQ(ours.outputs.size(), 1u);
  ASSERT_EQ(theirs.outputs.size(), 1u);
  testing::ExpectNear(ours.outputs[0], theirs.outputs[0], 1e-5f);
}

}  // namespace
}  // namespace rectifier::engine
