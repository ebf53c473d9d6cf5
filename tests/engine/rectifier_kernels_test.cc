// Rectifier's own kernels for the steps oneDNN 2.6 runs with reference or
// generic implementations (CompileOptions::rectifier_kernels): the
// middle-axis softmax against a double-precision reference, and whole
// graphs (a C2f-like block, a DFL head, plain and blocked concat/slice)
// with the kernels on against the same graphs lowered to oneDNN only.
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/engine/ops/fast_activations.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;

std::vector<double> ReferenceSoftmax(const std::vector<float>& x, int64_t outer, int64_t axis,
                                     int64_t inner, bool log) {
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) {
      const float* xs = x.data() + o * axis * inner + j;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t a = 0; a < axis; ++a) m = std::max(m, static_cast<double>(xs[a * inner]));
      double sum = 0;
      for (int64_t a = 0; a < axis; ++a) sum += std::exp(xs[a * inner] - m);
      for (int64_t a = 0; a < axis; ++a) {
        const double v = xs[a * inner] - m;
        y[o * axis * inner + a * inner + j] = log ? v - std::log(sum) : std::exp(v) / sum;
      }
    }
  }
  return y;
}

struct SoftmaxCase {
  int64_t outer, axis, inner;
};

// Shapes covering full 32-column units, 8-column tails and scalar tails.
constexpr SoftmaxCase kCases[] = {{1, 16, 33600 / 100}, {3, 16, 37}, {2, 5, 8}, {4, 1, 9},
                                  {1, 300, 45},         {2, 16, 3}};

TEST(SoftmaxMiddleAxisTest, MatchesDoubleReference) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-30.0f, 30.0f);
  for (const auto& c : kCases) {
    for (bool log : {false, true}) {
      std::vector<float> x(static_cast<size_t>(c.outer * c.axis * c.inner));
      for (float& v : x) v = dist(rng);
      const auto want = ReferenceSoftmax(x, c.outer, c.axis, c.inner, log);
      std::vector<float> fast(x.size()), scalar(x.size());
      SoftmaxMiddleAxis(x.data(), fast.data(), c.outer, c.axis, c.inner, log);
      SoftmaxMiddleAxisScalar(x.data(), scalar.data(), c.outer, c.axis, c.inner, log);
      for (size_t i = 0; i < x.size(); ++i) {
        // Probabilities: relative to the largest (1) of a column; log-probs:
        // relative to their own magnitude.
        const double tol = log ? 2e-6 * (1.0 + std::fabs(want[i])) : 2e-6;
        ASSERT_NEAR(fast[i], want[i], tol) << "fast, log " << log << ", element " << i << " of ["
                                           << c.outer << "," << c.axis << "," << c.inner << "]";
        ASSERT_NEAR(scalar[i], want[i], tol) << "scalar, log " << log << ", element " << i;
      }
    }
  }
}

TEST(SoftmaxMiddleAxisTest, InPlaceEqualsOutOfPlace) {
  std::vector<float> x(3 * 16 * 50);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  for (float& v : x) v = dist(rng);
  for (bool log : {false, true}) {
    std::vector<float> out(x.size()), in_place = x;
    SoftmaxMiddleAxis(x.data(), out.data(), 3, 16, 50, log);
    SoftmaxMiddleAxis(in_place.data(), in_place.data(), 3, 16, 50, log);
    EXPECT_EQ(out, in_place) << "log " << log;
  }
}

TEST(SoftmaxMiddleAxisTest, NanMakesItsColumnNanOnly) {
  const int64_t axis = 4, inner = 40;
  std::vector<float> x(static_cast<size_t>(axis * inner), 1.0f);
  x[2 * inner + 9] = std::numeric_limits<float>::quiet_NaN();  // column 9
  std::vector<float> y(x.size());
  SoftmaxMiddleAxis(x.data(), y.data(), 1, axis, inner, false);
  for (int64_t a = 0; a < axis; ++a) {
    for (int64_t j = 0; j < inner; ++j) {
      const float v = y[a * inner + j];
      if (j == 9) {
        EXPECT_TRUE(std::isnan(v)) << "row " << a;
      } else {
        EXPECT_FLOAT_EQ(v, 0.25f) << "row " << a << " column " << j;
      }
    }
  }
}

// Runs `bytes` at `batch` with the kernels on and off; the plans must
// differ as described and the outputs agree.
void ExpectKernelsMatchOneDnn(const std::string& bytes, const std::vector<int64_t>& shape,
                              const std::vector<std::string>& rectifier_steps) {
  for (int64_t batch : {1, 3}) {
    std::vector<int64_t> s = shape;
    s[0] = batch;
    const Tensor x = RandomTensor(s, 21);
    std::vector<Tensor> outs[2];
    std::string plans[2];
    for (int on = 0; on < 2; ++on) {
      CompileOptions options;
      options.rectifier_kernels = on == 1;
      // The copy steps themselves (at batch 1 they would be views).
      options.zero_copy = false;
      auto model = CompiledModel::FromBytes(bytes, options);
      ASSERT_TRUE(model.ok()) << model.status();
      auto plan = (*model)->DescribePlan(static_cast<int>(batch));
      ASSERT_TRUE(plan.ok()) << plan.status();
      plans[on] = *plan;
      auto ctx = ExecutionContext::Create(*model, {2});
      ASSERT_TRUE(ctx.ok());
      auto out = (*ctx)->Run({x});
      ASSERT_TRUE(out.ok()) << out.status();
      outs[on] = *std::move(out);
    }
    if (batch == 1) {
      for (const auto& step : rectifier_steps) {
        EXPECT_TRUE(absl::StrContains(plans[1], step)) << "missing '" << step << "':\n" << plans[1];
      }
    }
    EXPECT_FALSE(absl::StrContains(plans[0], "[rectifier:")) << plans[0];
    EXPECT_TRUE(absl::StrContains(plans[0], "simple:any") || absl::StrContains(plans[0], "ref:any"))
        << "oneDNN has fast kernels here; the case tests nothing:\n"
        << plans[0];
    EXPECT_FALSE(absl::StrContains(plans[1], "simple:any")) << plans[1];
    EXPECT_FALSE(absl::StrContains(plans[1], "ref:any")) << plans[1];
    ASSERT_EQ(outs[0].size(), outs[1].size());
    for (size_t i = 0; i < outs[0].size(); ++i) {
      // Same arithmetic except the softmax's exp: a few float ulps.
      testing::ExpectNear(outs[1][i], outs[0][i], 1e-5f);
    }
  }
}

// A YOLOv8 C2f block: conv -> channel Split in two -> bottleneck on the
// second half -> Concat of all three -> conv. Blocked (aBcd8b/16b) layouts
// throughout on AVX2; on AVX-512 oneDNN's brgconv picks acdb and the copies
// run on plain rows, so the expected steps name no layout.
std::string C2fBlock() {
  ModelBuilder b;
  b.Input("x", {-1, 8, 12, 12});
  b.RandomInit("w1", {32, 8, 1, 1}, -0.3f, 0.3f);
  b.RandomInit("w2", {16, 16, 3, 3}, -0.2f, 0.2f);
  b.RandomInit("w3", {16, 48, 1, 1}, -0.2f, 0.2f);
  b.Node("Conv", {"x", "w1"}, {"c1"});
  b.Node("Relu", {"c1"}, {"r1"});
  b.InitInts("split", {2}, {16, 16});
  auto& split = b.Node("Split", {"r1", "split"}, {"a", "h"});
  ModelBuilder::IntAttr(split, "axis", 1);
  auto& c2 = b.Node("Conv", {"h", "w2"}, {"m"});
  ModelBuilder::IntsAttr(c2, "pads", {1, 1, 1, 1});
  auto& cat = b.Node("Concat", {"a", "h", "m"}, {"cat"});
  ModelBuilder::IntAttr(cat, "axis", 1);
  b.Node("Conv", {"cat", "w3"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(RectifierKernelsTest, C2fSplitAndConcatAsCopies) {
  ExpectKernelsMatchOneDnn(
      C2fBlock(), {1, 8, 12, 12},
      {"Split 'a_node' #0 [1,16,12,12] #1 [1,16,12,12] ", "Concat 'cat_node' [1,48,12,12] 3 x "});
  // Where the convolutions run channels last (AVX-512), the copies stay in
  // that layout: no reorders to plain and back around them.
  auto model = CompiledModel::FromBytes(C2fBlock(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = (*model)->DescribePlan(1);
  ASSERT_TRUE(plan.ok()) << plan.status();
  if (absl::StrContains(*plan, "dst:acdb")) {
    EXPECT_TRUE(absl::StrContains(
        *plan, "Split 'a_node' #0 [1,16,12,12] #1 [1,16,12,12] acdb  [rectifier:copy]"))
        << *plan;
    EXPECT_TRUE(
        absl::StrContains(*plan, "Concat 'cat_node' [1,48,12,12] 3 x acdb  [rectifier:copy]"))
        << *plan;
  }
}

// A DFL head: [N, 64, K] -> Reshape [N, 4, 16, K] -> Transpose [N, 16, 4, K]
// -> Softmax(axis 1) -> a 1x1 conv with fixed 0..15 weights (the expectation).
std::string DflHead() {
  ModelBuilder b;
  b.Input("x", {-1, 64, 50});
  b.InitInts("shape", {4}, {-1, 4, 16, 50});
  b.Node("Reshape", {"x", "shape"}, {"r"});
  auto& t = b.Node("Transpose", {"r"}, {"t"});
  ModelBuilder::IntsAttr(t, "perm", {0, 2, 1, 3});
  auto& sm = b.Node("Softmax", {"t"}, {"p"});
  ModelBuilder::IntAttr(sm, "axis", 1);
  std::vector<float> w(16);
  for (int i = 0; i < 16; ++i) w[i] = static_cast<float>(i);
  b.Init("w", {1, 16, 1, 1}, w);
  b.Node("Conv", {"p", "w"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(RectifierKernelsTest, DflSoftmaxRunsOwnKernel) {
  ExpectKernelsMatchOneDnn(DflHead(), {1, 64, 50},
                           {"Softmax 'p_node' [1,16,200] axis 1 of 3  [rectifier:"});
}

// Plain layouts: a box decode's Slices along axis 1 of [N, 4, K] and the
// Concat of the pieces along axis 1, and a LogSoftmax over axis 1.
std::string PlainSlices() {
  ModelBuilder b(13);
  b.Input("x", {-1, 4, 33});
  b.InitInts("s0", {1}, {0});
  b.InitInts("e0", {1}, {2});
  b.InitInts("s1", {1}, {2});
  b.InitInts("e1", {1}, {4});
  b.InitInts("ax", {1}, {1});
  b.Node("Slice", {"x", "s0", "e0", "ax"}, {"xy"});
  b.Node("Slice", {"x", "s1", "e1", "ax"}, {"wh"});
  b.Node("Sub", {"wh", "xy"}, {"d"});
  auto& cat = b.Node("Concat", {"d", "xy", "wh"}, {"c"});
  ModelBuilder::IntAttr(cat, "axis", 1);
  auto& ls = b.Node("LogSoftmax", {"c"}, {"y"});
  ModelBuilder::IntAttr(ls, "axis", 1);
  b.Output("y");
  return b.Bytes();
}

// Concat inputs whose channel counts are not block multiples (5 + 3 in
// aBcd8b, padded): concatenated as plain rows.
std::string PaddedConcat() {
  ModelBuilder b(13);
  b.Input("x", {-1, 4, 6, 6});
  b.RandomInit("w5", {5, 4, 3, 3}, -0.3f, 0.3f);
  b.RandomInit("w3", {3, 4, 1, 1}, -0.3f, 0.3f);
  b.RandomInit("w", {8, 8, 1, 1}, -0.3f, 0.3f);
  auto& c5 = b.Node("Conv", {"x", "w5"}, {"c5"});
  ModelBuilder::IntsAttr(c5, "pads", {1, 1, 1, 1});
  b.Node("Conv", {"x", "w3"}, {"c3"});
  auto& cat = b.Node("Concat", {"c5", "c3"}, {"cat"});
  ModelBuilder::IntAttr(cat, "axis", 1);
  b.Node("Conv", {"cat", "w"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

// True when oneDNN runs the model's convolutions channels last (acdb, as
// its AVX-512 brgconv does): channel copies then need no plain copy.
bool ChannelsLast(const std::string& bytes) {
  auto model = CompiledModel::FromBytes(bytes, {});
  if (!model.ok()) return false;
  auto plan = (*model)->DescribePlan(1);
  return plan.ok() && absl::StrContains(*plan, "dst:acdb");
}

TEST(RectifierKernelsTest, PaddedBlockedConcatCopiesPlainRows) {
  const std::string layout = ChannelsLast(PaddedConcat()) ? "acdb" : "abcd";
  ExpectKernelsMatchOneDnn(PaddedConcat(), {1, 4, 6, 6},
                           {"Concat 'cat_node' [1,8,6,6] 2 x " + layout + "  [rectifier:copy]"});
}

TEST(RectifierKernelsTest, PlainSlicesConcatAndLogSoftmax) {
  ExpectKernelsMatchOneDnn(
      PlainSlices(), {1, 4, 33},
      {"Slice 'xy_node' #0 [1,2,33] abc  [rectifier:copy]", "Concat 'c_node' [1,6,33] 3 x abc",
       "LogSoftmax 'y_node' [1,6,33] axis 1 of 3  [rectifier:"});
}

// A channel slice inside a block (offset 4 of an 8-channel block) cannot be
// a block copy: the slice copies rows of a plain copy instead (channels
// last, any channel range is a row copy).
TEST(RectifierKernelsTest, UnalignedChannelSliceCopiesPlainRows) {
  ModelBuilder b(13);
  b.Input("x", {-1, 8, 6, 6});
  b.RandomInit("w", {16, 8, 3, 3}, -0.3f, 0.3f);
  auto& c = b.Node("Conv", {"x", "w"}, {"c"});
  ModelBuilder::IntsAttr(c, "pads", {1, 1, 1, 1});
  b.InitInts("s", {1}, {4});
  b.InitInts("e", {1}, {12});
  b.InitInts("ax", {1}, {1});
  b.Node("Slice", {"c", "s", "e", "ax"}, {"y"});
  b.Output("y");
  const std::string bytes = b.Bytes();
  CompileOptions on;
  on.zero_copy = false;  // a plain batch-1 slice would be a view
  auto model = CompiledModel::FromBytes(bytes, on);
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = (*model)->DescribePlan(1);
  ASSERT_TRUE(plan.ok());
  const std::string layout = ChannelsLast(bytes) ? "acdb" : "abcd";
  EXPECT_TRUE(
      absl::StrContains(*plan, "Slice 'y_node' #0 [1,8,6,6] " + layout + "  [rectifier:copy]"))
      << *plan;
  const Tensor x = RandomTensor({2, 8, 6, 6}, 5);
  auto got = testing::CompileAndRun(bytes, {x});
  ASSERT_TRUE(got.ok()) << got.status();
  CompileOptions off;
  off.fuse = false;
  off.rectifier_kernels = false;
  auto ref_model = CompiledModel::FromBytes(bytes, off);
  ASSERT_TRUE(ref_model.ok());
  auto ctx = ExecutionContext::Create(*ref_model, {1});
  ASSERT_TRUE(ctx.ok());
  auto want = (*ctx)->Run({x});
  ASSERT_TRUE(want.ok());
  testing::ExpectNear((*got)[0], (*want)[0], 1e-5f);
}

TEST(StepProfileTest, TimesEveryStepOfEachPlan) {
  auto model = CompiledModel::FromBytes(C2fBlock(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto ctx = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE(ctx.ok());
  ASSERT_TRUE((*ctx)->Run({RandomTensor({1, 8, 12, 12})}).ok());
  EXPECT_TRUE((*ctx)->StepProfiles().empty()) << "profiling is off by default";
  (*ctx)->EnableStepProfile(true);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ctx)->Run({RandomTensor({1, 8, 12, 12})}).ok());
  ASSERT_TRUE((*ctx)->Run({RandomTensor({2, 8, 12, 12})}).ok());
  (*ctx)->EnableStepProfile(false);
  ASSERT_TRUE((*ctx)->Run({RandomTensor({2, 8, 12, 12})}).ok());
  const auto profiles = (*ctx)->StepProfiles();
  ASSERT_EQ(profiles.size(), 2u);
  EXPECT_EQ(profiles[0].batch, 1);
  EXPECT_EQ(profiles[0].runs, 3);
  EXPECT_EQ(profiles[1].batch, 2);
  EXPECT_EQ(profiles[1].runs, 1);
  auto plan = (*model)->DescribePlan(1);
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(profiles[0].steps.size(), profiles[0].ms.size());
  ASSERT_FALSE(profiles[0].steps.empty());
  for (size_t s = 0; s < profiles[0].steps.size(); ++s) {
    EXPECT_TRUE(absl::StrContains(*plan, profiles[0].steps[s])) << profiles[0].steps[s];
    EXPECT_GE(profiles[0].ms[s], 0.0);
  }
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

// ReduceMean / ReduceMax over H and W (a channel-attention block) run as
// oneDNN global pooling in the conv's blocked layout, not the reference
// kernel; keepdims 0 and 1, axes as attribute (13) or input (18).
TEST(SpatialReduceTest, RunsAsGlobalPoolingAndMatchesLoops) {
  for (int opset : {13, 18}) {
    for (int keep : {0, 1}) {
      ModelBuilder b(opset);
      b.Input("x", {-1, 4, 5, 7});
      b.RandomInit("w", {16, 4, 3, 3}, -0.3f, 0.3f);
      auto& c = b.Node("Conv", {"x", "w"}, {"c"});
      ModelBuilder::IntsAttr(c, "pads", {1, 1, 1, 1});
      for (const char* op : {"ReduceMean", "ReduceMax"}) {
        const std::string out = std::string(op) == "ReduceMean" ? "mean" : "max";
        std::vector<std::string> ins = {"c"};
        if (opset >= 18) {
          b.InitInts(out + "_axes", {2}, {2, 3});
          ins.push_back(out + "_axes");
        }
        auto& r = b.Node(op, ins, {out});
        if (opset < 18) ModelBuilder::IntsAttr(r, "axes", {2, 3});
        ModelBuilder::IntAttr(r, "keepdims", keep);
      }
      b.Node("Add", {"mean", "max"}, {"y"});
      b.Output("y");
      b.Output("c");
      auto model = CompiledModel::FromBytes(b.Bytes(), {});
      ASSERT_TRUE(model.ok()) << model.status();
      auto plan = (*model)->DescribePlan(2);
      ASSERT_TRUE(plan.ok());
      EXPECT_TRUE(absl::StrContains(*plan, "ReduceMean 'mean_node' [2,16,1,1] as global pooling"))
          << *plan;
      EXPECT_TRUE(absl::StrContains(*plan, "ReduceMax 'max_node' [2,16,1,1] as global pooling"))
          << *plan;
      EXPECT_FALSE(absl::StrContains(*plan, "<- generic")) << *plan;
      auto ctx = ExecutionContext::Create(*model, {1});
      ASSERT_TRUE(ctx.ok());
      auto out = (*ctx)->Run({RandomTensor({2, 4, 5, 7}, 9)});
      ASSERT_TRUE(out.ok()) << out.status();
      const Tensor& conv = (*out)[1];
      const std::vector<int64_t> want_shape =
          keep ? std::vector<int64_t>{2, 16, 1, 1} : std::vector<int64_t>{2, 16};
      ASSERT_EQ((*out)[0].shape, want_shape);
      for (int n = 0; n < 2; ++n) {
        for (int ch = 0; ch < 16; ++ch) {
          double sum = 0, mx = -1e30;
          for (int i = 0; i < 35; ++i) {
            const float v = conv.data<float>()[(n * 16 + ch) * 35 + i];
            sum += v;
            mx = std::max(mx, static_cast<double>(v));
          }
          EXPECT_NEAR((*out)[0].data<float>()[n * 16 + ch], sum / 35 + mx, 1e-5)
              << "opset " << opset << " keepdims " << keep;
        }
      }
    }
  }
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

// Sub with its first operand broadcast (anchors [1,2,K] minus a batch of
// distances [N,2,K]): oneDNN broadcasts only its second operand, so the plan
// computes -(b - a) with a linear(-1) post-op instead of the reference kernel.
TEST(BroadcastSubTest, FirstOperandBroadcastRunsSwappedAndNegated) {
  ModelBuilder b;
  b.Input("x", {-1, 2, 7});
  std::vector<float> anchors(14);
  for (int i = 0; i < 14; ++i) anchors[i] = 0.5f * static_cast<float>(i) - 3.0f;
  b.Init("anchors", {1, 2, 7}, anchors);
  b.Node("Sub", {"anchors", "x"}, {"y"});
  b.Output("y");
  auto model = CompiledModel::FromBytes(b.Bytes(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = (*model)->DescribePlan(3);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(absl::StrContains(*plan, "(operands swapped, negated)")) << *plan;
  EXPECT_FALSE(absl::StrContains(*plan, "<- generic")) << *plan;
  const Tensor x = RandomTensor({3, 2, 7}, 13);
  auto ctx = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE(ctx.ok());
  auto out = (*ctx)->Run({x});
  ASSERT_TRUE(out.ok()) << out.status();
  for (int n = 0; n < 3; ++n) {
    for (int i = 0; i < 14; ++i) {
      EXPECT_FLOAT_EQ((*out)[0].data<float>()[n * 14 + i], anchors[i] - x.data<float>()[n * 14 + i])
          << "n " << n << " i " << i;
    }
  }
}

}  // namespace
}  // namespace rectifier::engine
