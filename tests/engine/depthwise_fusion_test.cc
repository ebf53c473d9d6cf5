// Depthwise fusion (CompileOptions::fuse_depthwise): a 1x1 convolution
// whose output only a depthwise convolution reads runs both as one oneDNN
// step (the depthwise post-op). Each graph runs with the fusion on and off;
// the outputs must agree, and the plan must show the fused step exactly
// where the conditions hold (ReLU/clip activations, a 1x1 output of at
// least 1 MiB per image, a channel-blocked layout, the JIT fused kernel).
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;

// The blocked layout of this CPU's direct kernels, where oneDNN has its
// JIT fused kernel: nChw16c with AVX-512 (ONEDNN_MAX_CPU_ISA counts), else
// nChw8c.
ConvLayout NativeBlocked() {
  const int isa = static_cast<int>(dnnl::get_effective_cpu_isa());
  const int avx512 = static_cast<int>(dnnl::cpu_isa::avx512_core);
  return isa != 0 && (isa & avx512) == avx512 ? ConvLayout::kBlocked16 : ConvLayout::kBlocked8;
}

testing::PlanRun Compile(const std::string& bytes, const Tensor& x, bool fuse_depthwise,
                         ConvLayout layout, int stats_every = 0) {
  CompileOptions options;
  options.activation_stats_sample_every = stats_every;
  options.conv_layout = layout;
  options.fuse_depthwise = fuse_depthwise;
  return testing::CompileDescribeRun(bytes, x, options);
}

struct Block {
  int64_t in = 16, expanded = 96, size = 112;
  int64_t kernel = 3, stride = 2;
  std::string activation = "Relu6";  // "Relu6", "Relu" or "Sigmoid*x" (SiLU)
  bool dw_bias = true;
  bool second_reader = false;  // the 1x1's output is also a graph output
};

// x -> 1x1 Conv (in -> expanded) -> act -> depthwise kxk Conv (stride) ->
// act -> 1x1 Conv (expanded -> in) -> y: a MobileNetV2 inverted residual
// without its shortcut.
std::string InvertedResidual(const Block& p) {
  ModelBuilder b;
  b.Input("x", {-1, p.in, p.size, p.size});
  b.RandomInit("w1", {p.expanded, p.in, 1, 1}, -0.3f, 0.3f);
  b.RandomInit("b1", {p.expanded}, -0.5f, 0.5f);
  b.RandomInit("wd", {p.expanded, 1, p.kernel, p.kernel}, -0.4f, 0.4f);
  b.RandomInit("bd", {p.expanded}, -0.5f, 0.5f);
  b.RandomInit("w3", {p.in, p.expanded, 1, 1}, -0.1f, 0.1f);
  b.Init("lo", {}, {0.0f});
  b.Init("hi", {}, {6.0f});
  auto act = [&](const std::string& x, const std::string& y) {
    if (p.activation == "Relu6") {
      b.Node("Clip", {x, "lo", "hi"}, {y});
    } else if (p.activation == "Relu") {
      b.Node("Relu", {x}, {y});
    } else {
      b.Node("Sigmoid", {x}, {y + "_s"});
      b.Node("Mul", {x, y + "_s"}, {y});
    }
  };
  b.Node("Conv", {"x", "w1", "b1"}, {"e"}, "expand");
  act("e", "ea");
  const int64_t pad = (p.kernel - 1) / 2;
  auto& dw = b.Node("Conv", {"ea", "wd", p.dw_bias ? "bd" : ""}, {"d"}, "depthwise");
  ModelBuilder::IntAttr(dw, "group", p.expanded);
  ModelBuilder::IntsAttr(dw, "pads", {pad, pad, pad, pad});
  ModelBuilder::IntsAttr(dw, "strides", {p.stride, p.stride});
  act("d", "da");
  b.Node("Conv", {"da", "w3"}, {"y"}, "project");
  b.Output("y");
  if (p.second_reader) b.Output("ea");
  return b.Bytes();
}

// Fused and unfused at `batch`; returns the fused plan.
std::string ExpectFusedMatchesUnfused(const Block& p, int64_t batch,
                                      ConvLayout layout = NativeBlocked()) {
  const std::string bytes = InvertedResidual(p);
  const Tensor x = RandomTensor({batch, p.in, p.size, p.size}, 5);
  const testing::PlanRun on = Compile(bytes, x, true, layout);
  const testing::PlanRun off = Compile(bytes, x, false, layout);
  EXPECT_FALSE(absl::StrContains(off.plan, "+dw")) << off.plan;
  EXPECT_EQ(on.outputs.size(), off.outputs.size());
  for (size_t i = 0; i < on.outputs.size() && i < off.outputs.size(); ++i) {
    testing::ExpectNear(on.outputs[i], off.outputs[i], 1e-4f);
  }
  return on.plan;
}

TEST(DepthwiseFusionTest, ExpandThenStridedDepthwiseIsOneStep) {
  for (int64_t batch : {1, 2}) {
    const std::string plan = ExpectFusedMatchesUnfused(Block{}, batch);
    EXPECT_TRUE(absl::StrContains(
        plan, "Conv 'expand' [" + std::to_string(batch) + ",96,56,56] +clip+dw3x3s2+clip"))
        << plan;
    EXPECT_TRUE(absl::StrContains(plan, "depthwise Conv 'depthwise'")) << plan;
    EXPECT_FALSE(absl::StrContains(plan, "Conv 'depthwise' [")) << plan;  // no step of its own
    EXPECT_FALSE(absl::StrContains(plan, "ref_fused")) << plan;
  }
}

TEST(DepthwiseFusionTest, OtherBlockedLayoutAgreesFusedOrNot) {
  // The other block size: oneDNN has no JIT fused kernel for it on this
  // CPU (its generic sequence is refused), or no kernels at all (nChw16c
  // on AVX2); the outputs agree either way.
  const ConvLayout other =
      NativeBlocked() == ConvLayout::kBlocked8 ? ConvLayout::kBlocked16 : ConvLayout::kBlocked8;
  const std::string plan = ExpectFusedMatchesUnfused(Block{}, 1, other);
  EXPECT_FALSE(absl::StrContains(plan, "ref_fused")) << plan;
}

// Where oneDNN has its JIT fused kernel for these shapes (this is its
// call: at batch 8 with a 56 x 56 x 144 expanded tensor it has on AVX2 and
// AVX-512 machines alike) the step is fused and labelled so; either way the
// outputs agree.
TEST(DepthwiseFusionTest, ReluAndAFiveByFiveWithoutBias) {
  Block p;
  p.in = 32;
  p.expanded = 144;
  p.size = 56;
  p.activation = "Relu";
  p.kernel = 5;
  p.dw_bias = false;
  const std::string plan = ExpectFusedMatchesUnfused(p, 8);
  if (absl::StrContains(plan, "+dw")) {
    EXPECT_TRUE(absl::StrContains(plan, "+relu+dw5x5s2+relu")) << plan;
  }
}

TEST(DepthwiseFusionTest, StrideOne) {
  Block p;
  p.in = 32;
  p.expanded = 144;
  p.size = 56;
  p.stride = 1;
  const std::string plan = ExpectFusedMatchesUnfused(p, 8);
  if (absl::StrContains(plan, "+dw")) {
    EXPECT_TRUE(absl::StrContains(plan, "[8,144,56,56] +clip+dw3x3s1+clip")) << plan;
  }
}

TEST(DepthwiseFusionTest, SiluIsNotFused) {
  Block p;
  p.activation = "SiLU";
  const std::string plan = ExpectFusedMatchesUnfused(p, 2);
  EXPECT_FALSE(absl::StrContains(plan, "+dw")) << plan;
}

TEST(DepthwiseFusionTest, SmallExpandedTensorIsNotFused) {
  Block p;
  p.size = 28;  // 96 x 28 x 28 x 4 = 294 KiB per image
  const std::string plan = ExpectFusedMatchesUnfused(p, 8);
  EXPECT_FALSE(absl::StrContains(plan, "+dw")) << plan;
}

TEST(DepthwiseFusionTest, SecondReaderOfTheExpandedTensorKeepsTwoSteps) {
  Block p;
  p.second_reader = true;
  const std::string plan = ExpectFusedMatchesUnfused(p, 1);
  EXPECT_FALSE(absl::StrContains(plan, "+dw")) << plan;
}

TEST(DepthwiseFusionTest, ChannelsLastLayoutIsNotFused) {
  const std::string plan = ExpectFusedMatchesUnfused(Block{}, 1, ConvLayout::kChannelsLast);
  EXPECT_FALSE(absl::StrContains(plan, "+dw")) << plan;
}

// Activation statistics see every activation, the 1x1's included: no
// fusion while they are on.
TEST(DepthwiseFusionTest, ActivationStatisticsKeepTwoSteps) {
  const Tensor x = RandomTensor({1, 16, 112, 112}, 5);
  const auto run = Compile(InvertedResidual(Block{}), x, true, NativeBlocked(), /*stats_every=*/1);
  EXPECT_FALSE(absl::StrContains(run.plan, "+dw")) << run.plan;
  EXPECT_TRUE(absl::StrContains(run.plan, "Conv 'depthwise' [1,96,56,56]")) << run.plan;
}

}  // namespace
}  // namespace rectifier::engine
