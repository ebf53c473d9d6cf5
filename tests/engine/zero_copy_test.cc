// Zero-copy views (CompileOptions::zero_copy): a Slice/Split that is one
// contiguous range of its source becomes a view of it, and a Concat of
// such ranges has its inputs' producers write into its output. Each graph
// runs with the views on and off (the copy steps) at batch 1, where the
// views apply, and batch 3, where the copies stay; the outputs must be the
// same. The hazard graphs write a buffer in place (an activation over a
// concat's output, a residual sum over a slice) while another view of the
// same bytes is still to be read: the planner must not let them.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/engine/lower/plan.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using testing::RandomTensor;

using Run = testing::PlanRun;

// Blocked8 convolutions on every CPU: channel ranges at multiples of 8 of a
// batch-1 tensor are then contiguous (channels last would not be). Tanh on
// Rectifier's kernel, which runs in place where it may. Run twice: the
// second run reuses the bound memory of the first.
Run Compile(const std::string& bytes, const Tensor& x, bool zero_copy) {
  CompileOptions options;
  options.conv_layout = ConvLayout::kBlocked8;
  options.tanh_kernel = ActivationKernel::kRectifier;
  options.zero_copy = zero_copy;
  return testing::CompileDescribeRun(bytes, x, options, /*runs=*/2);
}

// Runs `bytes` with the views on and off at batch 1 and 3; at batch 1 the
// plan must list `views` (and no copy step), at batch 3 none. Returns the
// batch-1 plan with the views.
std::string ExpectViewsMatchCopies(const std::string& bytes, std::vector<int64_t> shape,
                                   const std::vector<std::string>& views) {
  std::string plan1;
  for (int64_t batch : {1, 3}) {
    shape[0] = batch;
    const Tensor x = RandomTensor(shape, 17);
    const Run on = Compile(bytes, x, true);
    const Run off = Compile(bytes, x, false);
    EXPECT_FALSE(absl::StrContains(off.plan, "views (no step")) << off.plan;
    if (batch == 1) {
      plan1 = on.plan;
      for (const auto& v : views)
        EXPECT_TRUE(absl::StrContains(on.plan, v)) << v << "\n" << on.plan;
      EXPECT_FALSE(absl::StrContains(on.plan, "[rectifier:copy]")) << on.plan;
    } else {
      EXPECT_FALSE(absl::StrContains(on.plan, "views (no step")) << on.plan;
    }
    EXPECT_EQ(on.outputs.size(), off.outputs.size());
    for (size_t i = 0; i < on.outputs.size() && i < off.outputs.size(); ++i) {
      // The same primitives on the same data: equal up to the threads' order.
      testing::ExpectNear(on.outputs[i], off.outputs[i], 1e-6f);
    }
  }
  return plan1;
}

void AxisOf(onnx::NodeProto& node, int64_t axis) { ModelBuilder::IntAttr(node, "axis", axis); }

// YOLOv8's C2f with a shortcut: conv -> Split in two -> bottleneck on the
// second half with a residual add of it -> Concat of all three -> conv.
std::string C2fWithShortcut() {
  ModelBuilder b;
  b.Input("x", {-1, 8, 10, 10});
  b.RandomInit("w1", {32, 8, 1, 1}, -0.3f, 0.3f);
  b.RandomInit("wm1", {16, 16, 3, 3}, -0.2f, 0.2f);
  b.RandomInit("wm2", {16, 16, 3, 3}, -0.2f, 0.2f);
  b.RandomInit("w3", {16, 48, 1, 1}, -0.2f, 0.2f);
  b.Node("Conv", {"x", "w1"}, {"c1"});
  b.Node("Relu", {"c1"}, {"r1"});
  b.InitInts("split", {2}, {16, 16});
  AxisOf(b.Node("Split", {"r1", "split"}, {"a", "h"}), 1);
  ModelBuilder::IntsAttr(b.Node("Conv", {"h", "wm1"}, {"m1"}), "pads", {1, 1, 1, 1});
  ModelBuilder::IntsAttr(b.Node("Conv", {"m1", "wm2"}, {"m2"}), "pads", {1, 1, 1, 1});
  b.Node("Add", {"h", "m2"}, {"m"});
  AxisOf(b.Node("Concat", {"a", "h", "m"}, {"cat"}), 1);
  b.Node("Conv", {"cat", "w3"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(ZeroCopyTest, C2fSplitAndConcatAreViews) {
  ExpectViewsMatchCopies(C2fWithShortcut(), {1, 8, 10, 10},
                         {"Split 'a_node' #0 [1,16,10,10] at 0 #1 [1,16,10,10] at 16 aBcd8b",
                          "Concat 'cat_node' [1,48,10,10] 3 x aBcd8b: in place"});
}

// The concat's output is activated in place by its last reader while one
// of its inputs is read again afterwards: the activation must not run in
// place (it would overwrite that input's bytes).
std::string ActivationOverConcatThenInputAgain() {
  ModelBuilder b;
  b.Input("x", {-1, 8, 6, 6});
  b.RandomInit("wa", {8, 8, 1, 1}, -0.5f, 0.5f);
  b.RandomInit("wb", {8, 8, 1, 1}, -0.5f, 0.5f);
  b.RandomInit("wc", {8, 16, 1, 1}, -0.5f, 0.5f);
  b.Node("Conv", {"x", "wa"}, {"a"});
  b.Node("Conv", {"x", "wb"}, {"b"});
  AxisOf(b.Node("Concat", {"a", "b"}, {"cat"}), 1);
  b.Node("Tanh", {"cat"}, {"s"});
  b.Node("Conv", {"s", "wc"}, {"c"});
  b.Node("Mul", {"c", "a"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(ZeroCopyTest, NoInPlaceActivationOverAConcatWhoseInputIsReadLater) {
  const std::string plan = ExpectViewsMatchCopies(ActivationOverConcatThenInputAgain(),
                                                  {1, 8, 6, 6}, {"Concat 'cat_node' [1,16,6,6]"});
  EXPECT_TRUE(absl::StrContains(plan, "Tanh 's_node' tanh aBcd8b")) << plan;
}

// A residual sum whose addend is a slice it reads last (its source is the
// graph input, not the sliced tensor), while the sliced tensor is read
// whole afterwards: the sum must not accumulate in place.
std::string SumOverASliceOfALiveTensor() {
  ModelBuilder b;
  b.Input("x", {-1, 8, 6, 6});
  b.RandomInit("w1", {16, 8, 1, 1}, -0.5f, 0.5f);
  b.RandomInit("w2", {8, 8, 3, 3}, -0.3f, 0.3f);
  b.RandomInit("w3", {8, 16, 1, 1}, -0.3f, 0.3f);
  b.Node("Conv", {"x", "w1"}, {"c"});
  b.InitInts("split", {2}, {8, 8});
  AxisOf(b.Node("Split", {"c", "split"}, {"lo", "hi"}), 1);
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w2"}, {"m"}), "pads", {1, 1, 1, 1});
  b.Node("Add", {"m", "hi"}, {"r"});
  b.Node("Add", {"r", "lo"}, {"r2"});
  b.Node("Conv", {"c", "w3"}, {"z"});
  b.Node("Add", {"r2", "z"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(ZeroCopyTest, NoInPlaceSumOverASliceOfATensorReadLater) {
  const std::string plan = ExpectViewsMatchCopies(SumOverASliceOfALiveTensor(), {1, 8, 6, 6},
                                                  {"Split 'lo_node' #0 [1,8,6,6] at 0"});
  EXPECT_TRUE(absl::StrContains(plan, "+sum (copied)")) << plan;
}

// The sliced tensor itself activated in place by its last reader while a
// view of it is read afterwards.
std::string ActivationOverASlicedTensor() {
  ModelBuilder b;
  b.Input("x", {-1, 8, 6, 6});
  b.RandomInit("w1", {16, 8, 1, 1}, -0.5f, 0.5f);
  b.RandomInit("w2", {8, 16, 1, 1}, -0.3f, 0.3f);
  b.Node("Conv", {"x", "w1"}, {"c"});
  b.InitInts("s", {1}, {8});
  b.InitInts("e", {1}, {16});
  b.InitInts("ax", {1}, {1});
  b.Node("Slice", {"c", "s", "e", "ax"}, {"hi"});
  b.Node("Tanh", {"c"}, {"t"});
  b.Node("Conv", {"t", "w2"}, {"z"});
  b.Node("Add", {"z", "hi"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

TEST(ZeroCopyTest, NoInPlaceActivationOverATensorWithALiveView) {
  const std::string plan = ExpectViewsMatchCopies(ActivationOverASlicedTensor(), {1, 8, 6, 6},
                                                  {"Slice 'hi_node' #0 [1,8,6,6] at 8"});
  EXPECT_TRUE(absl::StrContains(plan, "Tanh 't_node' tanh aBcd8b")) << plan;
}

// Plain layouts: a box decode's Slices of [1, 4, K] and the Concat of the
// results (the detector's tail), the Concat being a graph output.
std::string PlainDecode() {
  ModelBuilder b;
  b.Input("x", {-1, 4, 48});
  b.InitInts("s0", {1}, {0});
  b.InitInts("e0", {1}, {2});
  b.InitInts("s1", {1}, {2});
  b.InitInts("e1", {1}, {4});
  b.InitInts("ax", {1}, {1});
  b.Node("Exp", {"x"}, {"ex"});
  b.Node("Slice", {"ex", "s0", "e0", "ax"}, {"xy"});
  b.Node("Slice", {"ex", "s1", "e1", "ax"}, {"wh"});
  b.Node("Sub", {"xy", "wh"}, {"lt"});
  b.Node("Add", {"xy", "wh"}, {"rb"});
  AxisOf(b.Node("Concat", {"lt", "rb"}, {"y"}), 1);
  b.Output("y");
  return b.Bytes();
}

TEST(ZeroCopyTest, PlainSlicesAndAConcatIntoTheOutput) {
  ExpectViewsMatchCopies(PlainDecode(), {1, 4, 48},
                         {"Slice 'xy_node' #0 [1,2,48] at 0 abc: views of 'ex'",
                          "Slice 'wh_node' #0 [1,2,48] at 2 abc", "Concat 'y_node' [1,4,48]"});
}

TEST(ZeroCopyTest, ByteOffsetAddsAlongTheAliasChain) {
  CompiledPlan plan;
  plan.values.resize(3);
  plan.values[1].alias_of = 0;
  plan.values[1].alias_offset = 128;
  plan.values[2].alias_of = 1;
  plan.values[2].alias_offset = 64;
  EXPECT_EQ(plan.ByteOffset(0), 0u);
  EXPECT_EQ(plan.ByteOffset(1), 128u);
  EXPECT_EQ(plan.ByteOffset(2), 192u);
  EXPECT_EQ(plan.Root(2), 0);
}

}  // namespace
}  // namespace rectifier::engine
