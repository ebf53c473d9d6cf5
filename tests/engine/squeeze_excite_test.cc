// Rectifier's squeeze-and-excitation step (ops/squeeze_excite.h,
// lower/lower_squeeze_excite.cc): the kernel against a double-precision
// reference, and plans with the block fused against the five-op plan.
#include "server/engine/ops/squeeze_excite.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/ops/winograd.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;
using Act = SqueezeExciteParams::Act;

// x in nChw8c (SiLU applied first where p.silu_input), the weights as the
// kernel takes them; the result in nChw8c.
std::vector<double> Reference(const SqueezeExciteParams& p, std::vector<double> x,
                              const std::vector<float>& w1, const std::vector<float>& b1,
                              const std::vector<float>& w2t, const std::vector<float>& b2) {
  const int64_t batch = p.batch, channels = p.channels, reduced = p.reduced, hw = p.spatial;
  auto at = [&](int64_t n, int64_t c, int64_t i) {
    return ((n * channels / 8 + c / 8) * hw + i) * 8 + c % 8;
  };
  if (p.silu_input) {
    for (double& v : x) v = v / (1.0 + std::exp(-v));
  }
  std::vector<double> y(x.size());
  for (int64_t n = 0; n < batch; ++n) {
    std::vector<double> mean(channels), hidden(reduced);
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < hw; ++i) mean[c] += x[at(n, c, i)];
      mean[c] /= static_cast<double>(hw);
    }
    for (int64_t r = 0; r < reduced; ++r) {
      double h = b1[r];
      for (int64_t c = 0; c < channels; ++c)
        h += static_cast<double>(w1[r * channels + c]) * mean[c];
      if (p.act == Act::kRelu) h = std::max(h, 0.0);
      if (p.act == Act::kSilu) h = h / (1.0 + std::exp(-h));
      hidden[r] = h;
    }
    for (int64_t c = 0; c < channels; ++c) {
      double s = b2[c];
      for (int64_t r = 0; r < reduced; ++r)
        s += static_cast<double>(w2t[r * channels + c]) * hidden[r];
      s = 1.0 / (1.0 + std::exp(-s));
      for (int64_t i = 0; i < hw; ++i) y[at(n, c, i)] = x[at(n, c, i)] * s;
    }
  }
  return y;
}

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  const Tensor t = RandomTensor({n}, seed);
  std::vector<float> v(t.data<float>(), t.data<float>() + n);
  for (float& f : v) f *= scale;
  return v;
}

TEST(SqueezeExciteKernelTest, MatchesTheReference) {
  SqueezeExciteParams probe;
  probe.batch = probe.reduced = probe.spatial = 1;
  probe.channels = 8;
  if (!SqueezeExciteSupported(probe)) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Case {
    int64_t batch, channels, reduced, spatial;
    Act act;
    bool silu_input;
  };
  for (const Case& k :
       {Case{1, 8, 1, 1, Act::kSilu, false}, Case{1, 16, 4, 49, Act::kSilu, true},
        Case{3, 40, 10, 15, Act::kRelu, false}, Case{2, 96, 4, 196, Act::kNone, true},
        Case{1, 24, 6, 3, Act::kSilu, true}}) {
    SCOPED_TRACE(absl::StrCat(k.batch, "x", k.channels, "->", k.reduced, " hw ", k.spatial, " act ",
                              static_cast<int>(k.act), k.silu_input ? " SiLU(x)" : ""));
    SqueezeExciteParams p;
    p.batch = k.batch;
    p.channels = k.channels;
    p.reduced = k.reduced;
    p.spatial = k.spatial;
    p.act = k.act;
    p.silu_input = k.silu_input;
    ASSERT_TRUE(SqueezeExciteSupported(p));
    const std::vector<float> x = Random(p.batch * p.channels * p.spatial, 1);
    const std::vector<float> w1 = Random(p.reduced * p.channels, 2, 0.5f);
    const std::vector<float> b1 = Random(p.reduced, 3);
    const std::vector<float> w2t = Random(p.reduced * p.channels, 4, 0.5f);
    const std::vector<float> b2 = Random(p.channels, 5);
    const std::vector<double> want =
        Reference(p, std::vector<double>(x.begin(), x.end()), w1, b1, w2t, b2);
    std::vector<float> y(x.size(), -7.0f);
    std::vector<float> xc = x;
    SqueezeExcite(p, xc.data(), w1.data(), b1.data(), w2t.data(), b2.data(), y.data());
    for (size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y[i], want[i], 2e-6 * (1.0 + std::fabs(want[i]))) << "at " << i;
    }
    // x itself: unchanged, or rewritten with SiLU(x).
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      const double want_x = k.silu_input ? v / (1.0 + std::exp(-v)) : v;
      ASSERT_NEAR(xc[i], want_x, 1e-6 * (1.0 + std::fabs(want_x))) << "x at " << i;
    }
    // In place: the same result.
    std::vector<float> z = x;
    SqueezeExcite(p, z.data(), w1.data(), b1.data(), w2t.data(), b2.data(), z.data());
    EXPECT_EQ(z, y);
  }
}

// x -> depthwise 3x3 + SiLU -> [squeeze-excite] -> 1x1 projection. `fc1_act`
// is "SiLU", "Relu" or "none"; `gate` "Sigmoid" or "HardSigmoid";
// `mul_other` multiplies the gate with the depthwise output's input
// instead (no longer a squeeze-excite block); `pooled_out` also makes the
// pooled tensor a graph output.
std::string SeModel(int64_t channels, int64_t reduced, const std::string& fc1_act = "SiLU",
                    const std::string& gate = "Sigmoid", bool mul_other = false,
                    bool pooled_out = false) {
  ModelBuilder b;
  b.Input("x", {-1, channels, 10, 10});
  b.RandomInit("dw", {channels, 1, 3, 3}, -0.5f, 0.5f).RandomInit("dwb", {channels});
  b.RandomInit("w1", {reduced, channels, 1, 1}, -0.5f, 0.5f).RandomInit("b1", {reduced});
  b.RandomInit("w2", {channels, reduced, 1, 1}, -0.5f, 0.5f).RandomInit("b2", {channels});
  b.RandomInit("wp", {8, channels, 1, 1}, -0.3f, 0.3f);
  auto& dw = b.Node("Conv", {"x", "dw", "dwb"}, {"d"});
  ModelBuilder::IntsAttr(dw, "pads", {1, 1, 1, 1});
  ModelBuilder::IntAttr(dw, "group", channels);
  b.Node("Sigmoid", {"d"}, {"ds"});
  b.Node("Mul", {"d", "ds"}, {"a"});
  b.Node("GlobalAveragePool", {"a"}, {"g"});
  b.Node("Conv", {"g", "w1", "b1"}, {"h0"});
  std::string h = "h0";
  if (fc1_act == "SiLU") {
    b.Node("Sigmoid", {"h0"}, {"hs"});
    b.Node("Mul", {"h0", "hs"}, {"h"});
    h = "h";
  } else if (fc1_act == "Relu") {
    b.Node("Relu", {"h0"}, {"h"});
    h = "h";
  }
  b.Node("Conv", {h, "w2", "b2"}, {"s0"});
  b.Node(gate, {"s0"}, {"s"});
  b.Node("Mul", {mul_other ? "x" : "a", "s"}, {"e"});
  b.Node("Conv", {"e", "wp"}, {"y"});
  b.Output("y");
  if (pooled_out) b.Output("g");
  return b.Bytes();
}

testing::PlanRun Compile(const std::string& bytes, const Tensor& x, bool fuse) {
  CompileOptions options;
  options.conv_layout = ConvLayout::kBlocked8;
  options.fuse_squeeze_excite = fuse;
  return testing::CompileDescribeRun(bytes, x, options, /*runs=*/2);
}

TEST(SqueezeExcitePlanTest, FusedBlockAgreesWithTheFiveSteps) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  struct Case {
    int64_t channels, reduced;
    std::string act;
    int64_t batch;
  };
  for (const Case& k : {Case{16, 4, "SiLU", 1}, Case{32, 8, "Relu", 3}, Case{24, 6, "none", 2}}) {
    SCOPED_TRACE(absl::StrCat(k.channels, "->", k.reduced, " ", k.act, " batch ", k.batch));
    const std::string bytes = SeModel(k.channels, k.reduced, k.act);
    const Tensor x = RandomTensor({k.batch, k.channels, 10, 10}, 8);
    const auto ours = Compile(bytes, x, true);
    const auto theirs = Compile(bytes, x, false);
    EXPECT_TRUE(absl::StrContains(ours.plan, "[rectifier_se:avx2]")) << ours.plan;
    // The pooled tensor is read only by the block: excited in place.
    EXPECT_TRUE(absl::StrContains(ours.plan, "(in place)")) << ours.plan;
    // The depthwise convolution's SiLU pass is the block's first pass.
    EXPECT_TRUE(absl::StrContains(ours.plan, "SiLU(input)")) << ours.plan;
    EXPECT_FALSE(absl::StrContains(theirs.plan, "rectifier_se")) << theirs.plan;
    ASSERT_EQ(ours.outputs.size(), 1u);
    ASSERT_EQ(theirs.outputs.size(), 1u);
    testing::ExpectNear(ours.outputs[0], theirs.outputs[0], 1e-5f);
  }
}

// Graphs that look like the block but are not, or whose values other ops
// also read, keep their five steps.
TEST(SqueezeExcitePlanTest, OnlyTheWholeBlockIsFused) {
  if (!WinogradVectorized()) GTEST_SKIP() << "no AVX2 + FMA on this CPU";
  const Tensor x = RandomTensor({2, 16, 10, 10}, 9);
  struct Case {
    const char* what;
    std::string bytes;
  };
  for (const Case& k :
       {Case{"HardSigmoid gate", SeModel(16, 4, "SiLU", "HardSigmoid")},
        Case{"gate times another tensor", SeModel(16, 4, "SiLU", "Sigmoid", true)},
        Case{"pooled tensor also an output", SeModel(16, 4, "SiLU", "Sigmoid", false, true)}}) {
    SCOPED_TRACE(k.what);
    const auto ours = Compile(k.bytes, x, true);
    const auto theirs = Compile(k.bytes, x, false);
    EXPECT_FALSE(absl::StrContains(ours.plan, "rectifier_se")) << ours.plan;
    ASSERT_EQ(ours.outputs.size(), theirs.outputs.size());
    for (size_t i = 0; i < ours.outputs.size(); ++i)
      testing::ExpectNear(ours.outputs[i], theirs.outputs[i], 1e-6f);
  }
  // Activation statistics observe the first layer's activation: no fusion.
  CompileOptions options;
  options.conv_layout = ConvLayout::kBlocked8;
  options.activation_stats_sample_every = 1;
  const auto sampled = testing::CompileDescribeRun(SeModel(16, 4), x, options);
  EXPECT_FALSE(absl::StrContains(sampled.plan, "rectifier_se")) << sampled.plan;
}

}  // namespace
}  // namespace rectifier::engine
