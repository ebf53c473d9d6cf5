// Inputs that used to have to be constants: convolution weights and biases
// given at run time (reordered per execution), and inputs whose values
// select the plan (Resize scales, ...: one plan per value, cached).
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

// y = Conv(x, w, b) (or ConvTranspose), groups `g`, with w and b graph
// inputs when `runtime`, initializers `w_init`/`b_init` otherwise.
std::string ConvModel(bool transpose, int g, bool runtime, const Tensor& w, const Tensor& b) {
  ModelBuilder m;
  m.Input("x", {1, 4, 6, 5});
  if (runtime) {
    m.Input("w", w.shape);
    m.Input("b", b.shape);
  } else {
    m.Init("w", w.shape, std::vector<float>(w.data<float>(), w.data<float>() + w.num_elements()));
    m.Init("b", b.shape, std::vector<float>(b.data<float>(), b.data<float>() + b.num_elements()));
  }
  onnx::NodeProto& n = m.Node(transpose ? "ConvTranspose" : "Conv", {"x", "w", "b"}, {"y"});
  ModelBuilder::IntsAttr(n, "pads", {1, 1, 1, 1});
  ModelBuilder::IntsAttr(n, "strides", {2, 1});
  ModelBuilder::IntAttr(n, "group", g);
  m.Output("y");
  return m.Bytes();
}

TEST(RuntimeInputsTest, ConvolutionWeightsGivenAtRunTime) {
  for (const bool transpose : {false, true}) {
    for (const int g : {1, 2}) {
      SCOPED_TRACE(::testing::Message() << (transpose ? "ConvTranspose" : "Conv") << " g" << g);
      // Conv: [M, C/g, 3, 3]; ConvTranspose: [C, M/g, 3, 3]; M = 6, C = 4.
      const std::vector<int64_t> wshape =
          transpose ? std::vector<int64_t>{4, 6 / g, 3, 3} : std::vector<int64_t>{6, 4 / g, 3, 3};
      auto model = CompiledModel::FromBytes(
          ConvModel(transpose, g, true, testing::RandomTensor(wshape), testing::RandomTensor({6})),
          {});
      ASSERT_TRUE(model.ok()) << model.status();
      EXPECT_FALSE((*model)->has_value_inputs());  // weights are read, not compiled in
      auto ctx = ExecutionContext::Create(*model, {1});
      ASSERT_TRUE(ctx.ok()) << ctx.status();
      const Tensor x = testing::RandomTensor({1, 4, 6, 5}, 3);
      // Two different weights through one plan: each equals the same graph
      // with those weights as initializers.
      for (uint32_t seed : {11u, 12u}) {
        const Tensor w = testing::RandomTensor(wshape, seed);
        const Tensor b = testing::RandomTensor({6}, seed + 100);
        auto got = (*ctx)->Run({x, w, b});
        ASSERT_TRUE(got.ok()) << got.status();
        auto want = testing::CompileAndRun(ConvModel(transpose, g, false, w, b), {x});
        ASSERT_TRUE(want.ok()) << want.status();
        testing::ExpectNear((*got)[0], (*want)[0]);
      }
    }
  }
}

// x [1, 1, 2, 3], scales [4] as a graph input -> nearest Resize.
std::string ResizeScalesModel() {
  ModelBuilder m;
  m.Input("x", {1, 1, 2, 3});
  m.Input("scales", {4});
  ModelBuilder::StringAttr(m.Node("Resize", {"x", "", "scales"}, {"y"}), "mode", "nearest");
  m.Output("y");
  return m.Bytes();
}

Tensor Scales(std::vector<float> values) {
  Tensor t = Tensor::Zeros(DataType::kFloat32, {4});
  for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = values[i];
  return t;
}

TEST(RuntimeInputsTest, ResizeScalesSelectThePlanByValue) {
  auto loaded = CompiledModel::FromBytes(ResizeScalesModel(), {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto model = std::dynamic_pointer_cast<const CompiledModelImpl>(*loaded);
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->has_value_inputs());
  EXPECT_EQ(model->value_inputs(), (std::vector<size_t>{1}));
  EXPECT_FALSE(model->batchable());
  EXPECT_EQ(model->plan_cache_stats().compiles, 0);  // no values yet: no load plan
  auto ctx = ExecutionContext::Create(*loaded, {1});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  const Tensor x = testing::RandomTensor({1, 1, 2, 3});
  auto twice = (*ctx)->Run({x, Scales({1, 1, 2, 2})});
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ((*twice)[0].shape, (std::vector<int64_t>{1, 1, 4, 6}));
  EXPECT_EQ((*twice)[0].data<float>()[6 + 1], x.data<float>()[0]);  // row 1, col 1 <- (0, 0)
  auto thrice = (*ctx)->Run({x, Scales({1, 1, 3, 3})});
  ASSERT_TRUE(thrice.ok()) << thrice.status();
  EXPECT_EQ((*thrice)[0].shape, (std::vector<int64_t>{1, 1, 6, 9}));
  ASSERT_TRUE((*ctx)->Run({x, Scales({1, 1, 2, 2})}).ok());
  // Values read through views select the same plans.
  const Tensor scales = Scales({1, 1, 3, 3});
  auto viewed = (*ctx)->RunViews({TensorView::Of(x), TensorView::Of(scales)});
  ASSERT_TRUE(viewed.ok()) << viewed.status();
  EXPECT_EQ((*viewed)[0].bytes, (*thrice)[0].bytes);
  const auto stats = model->plan_cache_stats();
  EXPECT_EQ(stats.compiles, 2);
  EXPECT_EQ(stats.hits, 2);
  // A bad value is that call's error; the model keeps serving.
  auto bad = (*ctx)->Run({x, Scales({1, 1, 0, 2})});
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE((*ctx)->Run({x, Scales({1, 1, 3, 3})}).ok());
  // Without the values there is nothing to describe.
  EXPECT_FALSE(model->DescribePlanForShapes({{1, 1, 2, 3}, {4}}).ok());
}

// Only inputs whose values reach such a slot are value inputs: an input
// seen through Shape is not one.
TEST(RuntimeInputsTest, FindValueInputsFollowsValuesNotShapes) {
  ModelBuilder m;
  m.Input("x", {-1, 3, 4, 4});
  m.Input("target", {2}, onnx::TensorProto::INT64);
  m.Node("Shape", {"x"}, {"xs"});
  m.Node("Reshape", {"x", "target"}, {"flat"});  // target: by value
  m.Node("Expand", {"x", "xs"}, {"same"});       // x: only its shape
  m.Output("flat");
  m.Output("same");
  auto model = CompiledModel::FromBytes(m.Bytes(), {});
  ASSERT_TRUE(model.ok()) << model.status();
  auto impl = std::dynamic_pointer_cast<const CompiledModelImpl>(*model);
  EXPECT_EQ(impl->value_inputs(), (std::vector<size_t>{1}));
  auto ctx = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE(ctx.ok());
  Tensor target = Tensor::Zeros(DataType::kInt64, {2});
  target.data<int64_t>()[0] = 2;
  target.data<int64_t>()[1] = -1;
  auto out = (*ctx)->Run({testing::RandomTensor({2, 3, 4, 4}), target});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{2, 48}));
}

}  // namespace
}  // namespace rectifier::engine
