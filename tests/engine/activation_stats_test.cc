// Activation statistics: a network whose channels 1 and 3 are dead by
// construction (zero weights, negative bias, then Relu) reports exactly those
// channels, and the zero fraction equals a count over the outputs.
#include "server/engine/runtime/activation_stats.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

// 6 output channels: not a multiple of the 8/16-channel blocks, so blocked
// layouts carry padding channels the scan must not count.
constexpr int64_t kOut = 6;

// x [N, 3, 7, 5] -> Conv 3x3 (channels 1 and 3: zero weights, bias -1)
// -> act -> y (graph output), plus a second branch Conv -> Relu -> y2 that
// is not an output (its buffer is reused by the planner).
std::string DeadChannelModel(const std::string& act) {
  ModelBuilder b(13);
  b.Input("x", {-1, 3, 7, 5}).Output("y").Output("y2");
  std::vector<float> w(kOut * 3 * 9), bias(kOut);
  for (int64_t o = 0; o < kOut; ++o) {
    const bool dead = o == 1 || o == 3;
    for (int64_t i = 0; i < 27; ++i)
      w[o * 27 + i] = dead ? 0.0f : static_cast<float>(((o * 31 + i * 17) % 13) - 6) / 10.0f;
    bias[o] = dead ? -1.0f : 0.1f * static_cast<float>(o);
  }
  b.Init("w", {kOut, 3, 3, 3}, w).Init("b", {kOut}, bias);
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w", "b"}, {"c"}, "conv"), "pads", {1, 1, 1, 1});
  b.Node(act, {"c"}, {"y"}, "act");
  b.RandomInit("w2", {kOut, kOut, 1, 1});
  b.Node("Conv", {"y", "w2"}, {"c2"}, "conv2");
  b.Node("Relu", {"c2"}, {"r2"}, "relu2");
  ModelBuilder::IntsAttr(b.Node("MaxPool", {"r2"}, {"y2"}, "pool"), "kernel_shape", {2, 2});
  return b.Bytes();
}

double ZeroFraction(const Tensor& t) {
  int64_t zeros = 0;
  for (int64_t i = 0; i < t.num_elements(); ++i) zeros += t.data<float>()[i] == 0.0f;
  return static_cast<double>(zeros) / static_cast<double>(t.num_elements());
}

std::vector<int64_t> DeadChannels(const Tensor& t) {
  std::vector<int64_t> dead;
  const int64_t n = t.shape[0], c = t.shape[1], inner = t.num_elements() / (n * c);
  for (int64_t ch = 0; ch < c; ++ch) {
    bool all_zero = true;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t i = 0; i < inner; ++i)
        all_zero = all_zero && t.data<float>()[(b * c + ch) * inner + i] == 0.0f;
    if (all_zero) dead.push_back(ch);
  }
  return dead;
}

const ActivationLayerStats* Find(const std::vector<ActivationLayerStats>& s,
                                 const std::string& name) {
  for (const auto& l : s)
    if (l.name == name) return &l;
  return nullptr;
}

TEST(ActivationStatsTest, ReportsDeadChannelsAndZeroFraction) {
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fused" : "standalone");
    CompileOptions o;
    o.fuse = fuse;
    o.activation_stats_sample_every = 1;
    auto model = CompiledModel::FromBytes(DeadChannelModel("Relu"), o);
    ASSERT_TRUE(model.ok()) << model.status();
    auto ctx = ExecutionContext::Create(*model, {1});
    ASSERT_TRUE(ctx.ok());
    double fraction_sum = 0.0;
    const int runs = 3;
    for (int r = 0; r < runs; ++r) {
      auto y = (*ctx)->Run({testing::RandomTensor({2 + r, 3, 7, 5}, 40 + r)});
      ASSERT_TRUE(y.ok()) << y.status();
      fraction_sum += ZeroFraction((*y)[0]);
      EXPECT_EQ(DeadChannels((*y)[0]), (std::vector<int64_t>{1, 3}));
    }
    const auto stats = (*model)->activation_statistics();
    const ActivationLayerStats* act = Find(stats, "y");
    ASSERT_NE(act, nullptr);
    EXPECT_EQ(act->kind, "Relu");
    EXPECT_EQ(act->channels, kOut);
    EXPECT_EQ(act->sampled_count, runs);
    EXPECT_EQ(act->dead_channels, (std::vector<int64_t>{1, 3}));
    EXPECT_NEAR(act->zero_fraction, fraction_sum / runs, 1e-12);
    EXPECT_GT(act->zero_fraction, 2.0 / 6.0);  // at least the dead channels
    // The hidden Relu (its buffer reused later) is scanned too.
    const ActivationLayerStats* hidden = Find(stats, "r2");
    ASSERT_NE(hidden, nullptr);
    EXPECT_EQ(hidden->sampled_count, runs);
    EXPECT_EQ(hidden->channels, kOut);
    EXPECT_GT(hidden->zero_fraction, 0.0);
    EXPECT_LT(hidden->zero_fraction, 1.0);
    // Snapshot entries follow execution order.
    EXPECT_EQ(stats.front().name, "y");
  }
}

TEST(ActivationStatsTest, SamplesEveryNthExecutionPerContext) {
  CompileOptions o;
  o.activation_stats_sample_every = 3;
  auto model = CompiledModel::FromBytes(DeadChannelModel("Relu"), o);
  ASSERT_TRUE(model.ok()) << model.status();
  auto ctx = ExecutionContext::Create(*model, {1});
  for (int r = 0; r < 7; ++r)
    ASSERT_TRUE((*ctx)->Run({testing::RandomTensor({1, 3, 7, 5}, r)}).ok());
  const auto stats = (*model)->activation_statistics();
  ASSERT_NE(Find(stats, "y"), nullptr);
  EXPECT_EQ(Find(stats, "y")->sampled_count, 3);  // executions 0, 3, 6
}

TEST(ActivationStatsTest, OffByDefault) {
  auto model = CompiledModel::FromBytes(DeadChannelModel("Relu"), {});
  ASSERT_TRUE(model.ok());
  auto ctx = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE((*ctx)->Run({testing::RandomTensor({1, 3, 7, 5}, 1)}).ok());
  EXPECT_TRUE((*model)->activation_statistics().empty());
}

TEST(ActivationStatsTest, SigmoidHasNoExactZerosOrDeadChannels) {
  CompileOptions o;
  o.activation_stats_sample_every = 1;
  // Sigmoid of the constant -1 channels is 0.27, not zero: never dead.
  auto model = CompiledModel::FromBytes(DeadChannelModel("Sigmoid"), o);
  ASSERT_TRUE(model.ok());
  auto ctx = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE((*ctx)->Run({testing::RandomTensor({2, 3, 7, 5}, 3)}).ok());
  const ActivationLayerStats* act = Find((*model)->activation_statistics(), "y");
  ASSERT_NE(act, nullptr);
  EXPECT_EQ(act->kind, "Sigmoid");
  EXPECT_EQ(act->zero_fraction, 0.0);
  EXPECT_TRUE(act->dead_channels.empty());
}

TEST(ActivationStatsTest, ScanCountsPerChannel) {
  // [2, 3, 2]: channel 0 zero everywhere, channel 2 zero in batch 0 only.
  const std::vector<float> v = {0, 0, 1, 0, 0, 0,  //
                                0, 0, 0, 2, 0, 0};
  ActivationSample s = ScanActivation(v.data(), {2, 3, 2});
  EXPECT_EQ(s.elements, 12);
  EXPECT_EQ(s.zeros, 10);
  EXPECT_EQ(s.channel_nonzero, (std::vector<uint8_t>{0, 1, 0}));
  ActivationStatsAccumulator acc;
  acc.Merge("a", "Relu", 0, s);
  const std::vector<float> w = {0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};
  acc.Merge("a", "Relu", 0, ScanActivation(w.data(), {2, 3, 2}));
  auto snap = acc.Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap[0].sampled_count, 2);
  EXPECT_EQ(snap[0].dead_channels, (std::vector<int64_t>{0}));
  EXPECT_NEAR(snap[0].zero_fraction, (10.0 / 12 + 11.0 / 12) / 2, 1e-12);
}

TEST(ActivationStatsTest, NhwcAndBlockedScansMatchPlain) {
  const int64_t n = 2, c = 6, h = 2, w = 3;
  std::vector<float> plain(n * c * h * w);
  for (size_t i = 0; i < plain.size(); ++i) plain[i] = (i * 7) % 5 < 2 ? 0.0f : 1.0f;
  for (int64_t b = 0; b < n; ++b)  // channel 4 all zero
    for (int64_t i = 0; i < h * w; ++i) plain[(b * c + 4) * h * w + i] = 0.0f;
  const ActivationSample want = ScanActivation(plain.data(), {n, c, h, w});
  std::vector<float> nhwc(plain.size());
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t i = 0; i < h * w; ++i)
        nhwc[(b * h * w + i) * c + ch] = plain[(b * c + ch) * h * w + i];
  for (int block : {0, 8, 16}) {
    SCOPED_TRACE(block);
    const std::vector<float>* data = &nhwc;
    std::vector<float> blocked;
    if (block > 0) {
      // Padding channels hold non-zero garbage: they must be ignored.
      blocked.assign(static_cast<size_t>(n * block * h * w), 9.0f);
      for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t i = 0; i < h * w; ++i)
            blocked[(b * h * w + i) * block + ch] = plain[(b * c + ch) * h * w + i];
      data = &blocked;
    }
    const ActivationSample got = ScanActivationNhwcOrBlocked(data->data(), {n, c, h, w}, block);
    EXPECT_EQ(got.elements, want.elements);
    EXPECT_EQ(got.zeros, want.zeros);
    EXPECT_EQ(got.channel_nonzero, want.channel_nonzero);
  }
  EXPECT_EQ(want.channel_nonzero[4], 0);
}

}  // namespace
}  // namespace rectifier::engine
