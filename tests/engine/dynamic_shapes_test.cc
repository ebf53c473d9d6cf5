// Models with dynamic dimensions besides the batch: one plan per input-shape
// signature, shape chains folded per signature, bounds checked before any
// compile, and outputs equal to the same graph compiled with static shapes.
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

// x [N,4,H,W] -> 3x3 Conv (4 -> 6) -> times W (a float folded from
// Shape(x), a plan constant whose value differs per signature) -> Resize
// to twice x's height and width, the sizes computed from Shape(y) and
// Shape(x) as exporters write them. With `dims` all -1 but C the model is
// dynamic; with concrete dims it is the same graph, static.
std::string ShapeChainModel(const std::vector<int64_t>& dims) {
  ModelBuilder b;
  b.Input("x", dims);
  b.RandomInit("w", {6, 4, 3, 3});
  b.RandomInit("bias", {6});
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w", "bias"}, {"y"}), "pads", {1, 1, 1, 1});
  b.Node("Shape", {"x"}, {"xs"});
  b.InitInts("i3", {}, {3});
  b.Node("Gather", {"xs", "i3"}, {"width_i"});
  ModelBuilder::IntAttr(b.Node("Cast", {"width_i"}, {"width_f"}), "to", onnx::TensorProto::FLOAT);
  b.Node("Mul", {"y", "width_f"}, {"scaled"});
  b.Node("Shape", {"scaled"}, {"ys"});
  b.InitInts("s0", {1}, {0});
  b.InitInts("s2", {1}, {2});
  b.InitInts("s4", {1}, {4});
  b.InitInts("two", {1}, {2});
  b.Node("Slice", {"ys", "s0", "s2"}, {"nc"});
  b.Node("Slice", {"xs", "s2", "s4"}, {"hw"});
  b.Node("Mul", {"hw", "two"}, {"hw2"});
  ModelBuilder::IntAttr(b.Node("Concat", {"nc", "hw2"}, {"sizes"}), "axis", 0);
  ModelBuilder::StringAttr(b.Node("Resize", {"scaled", "", "", "sizes"}, {"out"}), "mode",
                           "nearest");
  b.Output("out");
  return b.Bytes();
}

std::shared_ptr<const CompiledModelImpl> Compile(const std::string& bytes,
                                                 const CompileOptions& options = {}) {
  auto model = CompiledModel::FromBytes(bytes, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::dynamic_pointer_cast<const CompiledModelImpl>(*model) : nullptr;
}

const std::vector<int64_t> kDynamic = {-1, 4, -1, -1};

TEST(DynamicShapesTest, InputsAndOutputsReportTheirDynamicDims) {
  auto model = Compile(ShapeChainModel(kDynamic));
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->batchable());
  EXPECT_TRUE(model->has_dynamic_dims());
  EXPECT_EQ(model->inputs()[0].shape, kDynamic);
  EXPECT_EQ(model->outputs()[0].shape, (std::vector<int64_t>{-1, 6, -1, -1}));
  auto out = model->OutputShapes({{2, 4, 5, 7}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, (InputShapes{{2, 6, 10, 14}}));
}

TEST(DynamicShapesTest, BatchOnlyModelHasNoOtherDynamicDims) {
  auto model = Compile(ShapeChainModel({-1, 4, 8, 8}));
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->batchable());
  EXPECT_FALSE(model->has_dynamic_dims());
  EXPECT_EQ(model->outputs()[0].shape, (std::vector<int64_t>{-1, 6, 16, 16}));
}

// Several signatures through one context (plans alternate, so a value folded
// for one shape must never be reused by another) against the same graph
// compiled static at each shape.
TEST(DynamicShapesTest, EverySignatureMatchesTheStaticGraph) {
  auto model = Compile(ShapeChainModel(kDynamic));
  ASSERT_NE(model, nullptr);
  auto ctx = ExecutionContext::Create(model, {1});
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  const std::vector<std::vector<int64_t>> shapes = {{1, 4, 8, 8}, {2, 4, 5, 11}, {1, 4, 16, 3},
                                                    {1, 4, 8, 8}, {3, 4, 1, 1},  {2, 4, 5, 11}};
  for (size_t i = 0; i < shapes.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("shape ", i));
    const Tensor x = testing::RandomTensor(shapes[i], static_cast<uint32_t>(i + 1));
    auto got = (*ctx)->Run({x});
    ASSERT_TRUE(got.ok()) << got.status();
    auto want = testing::CompileAndRun(ShapeChainModel(shapes[i]), {x});
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ((*got)[0].shape, (*want)[0].shape);
    const float* g = (*got)[0].data<float>();
    const float* w = (*want)[0].data<float>();
    for (int64_t k = 0; k < (*got)[0].num_elements(); ++k) {
      ASSERT_NEAR(g[k], w[k], 1e-4f * (1.0f + std::fabs(w[k]))) << "element " << k;
    }
  }
}

TEST(DynamicShapesTest, OnePlanPerSignatureAndHitsAfterThat) {
  auto model = Compile(ShapeChainModel(kDynamic));
  ASSERT_NE(model, nullptr);
  const auto before = model->plan_cache_stats();  // the load shapes
  EXPECT_EQ(before.compiles, 1);
  ASSERT_TRUE(model->GetPlan({{1, 4, 9, 9}}).ok());
  ASSERT_TRUE(model->GetPlan({{1, 4, 9, 9}}).ok());
  ASSERT_TRUE(model->GetPlan({{2, 4, 9, 9}}).ok());
  ASSERT_TRUE(model->GetPlan({{1, 4, 9, 10}}).ok());
  const auto after = model->plan_cache_stats();
  EXPECT_EQ(after.compiles, 4);
  EXPECT_EQ(after.cached, 4);
  EXPECT_EQ(after.hits - before.hits, 1);
  EXPECT_EQ(after.misses - before.misses, 3);
}

TEST(DynamicShapesTest, ConcurrentCallersForANewSignatureShareOneCompile) {
  auto model = Compile(ShapeChainModel(kDynamic));
  ASSERT_NE(model, nullptr);
  const int before = model->compiles();
  std::vector<std::thread> callers;
  std::vector<const CompiledPlan*> plans(6, nullptr);
  callers.reserve(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    callers.emplace_back([&, i] {
      auto plan = model->GetPlan({{1, 4, 33, 17}});
      ASSERT_TRUE(plan.ok()) << plan.status();
      plans[i] = plan->get();
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(model->compiles(), before + 1);
  for (const CompiledPlan* p : plans) EXPECT_EQ(p, plans[0]);
}

TEST(DynamicShapesTest, MaxInputDimsRefusesLargerInputsBeforeCompiling) {
  CompileOptions options;
  options.max_input_dims["x"] = {-1, -1, 32, 48};
  auto model = Compile(ShapeChainModel(kDynamic), options);
  ASSERT_NE(model, nullptr);
  const int before = model->compiles();
  EXPECT_TRUE(model->CheckInputShapes({{1, 4, 32, 48}}).ok());
  auto plan = model->GetPlan({{1, 4, 33, 8}});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("dimension 2 is 33, over max_input_dims [-1,-1,32,48]"),
            std::string::npos)
      << plan.status();
  EXPECT_EQ(model->compiles(), before);
  // The default load shapes respect the bound: 64 is lowered to 32 and 48.
  auto described = model->DescribePlan(1);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_NE(described->find("plan for input shapes [1,4,32,48]"), std::string::npos) << *described;
}

TEST(DynamicShapesTest, LoadShapesAreCompiledAtLoad) {
  CompileOptions options;
  options.load_shapes["x"] = {1, 4, 12, 20};
  auto model = Compile(ShapeChainModel(kDynamic), options);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->compiles(), 1);
  ASSERT_TRUE(model->GetPlan({{1, 4, 12, 20}}).ok());
  EXPECT_EQ(model->compiles(), 1);  // already there

  options.load_shapes["x"] = {1, 5, 12, 20};
  auto refused = CompiledModel::FromBytes(ShapeChainModel(kDynamic), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("load shapes: input 'x' has shape [1,5,12,20]"),
            std::string::npos)
      << refused.status();
  options.load_shapes = {{"y", {1}}};
  refused = CompiledModel::FromBytes(ShapeChainModel(kDynamic), options);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("'y', which is not an input"), std::string::npos)
      << refused.status();
}

TEST(DynamicShapesTest, ShapesThatDoNotFitAreRefusedWithBothShapes) {
  auto model = Compile(ShapeChainModel(kDynamic));
  ASSERT_NE(model, nullptr);
  auto ctx = ExecutionContext::Create(model, {1});
  ASSERT_TRUE(ctx.ok());
  struct Case {
    std::vector<int64_t> shape;
    const char* message;
  };
  const std::vector<Case> cases = {
      {{1, 3, 8, 8}, "input 'x' has shape [1,3,8,8], model expects [-1,4,-1,-1]"},
      {{1, 4, 8}, "input 'x' has shape [1,4,8], model expects [-1,4,-1,-1]"},
      {{1, 4, 0, 8}, "input 'x' has shape [1,4,0,8], model expects [-1,4,-1,-1]"},
      {{65, 4, 2, 2}, "batch size 65, outside [1, 64]"},
  };
  for (const Case& c : cases) {
    auto out = (*ctx)->Run({Tensor::Zeros(DataType::kFloat32, c.shape)});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(c.message), std::string::npos) << out.status();
  }
}

// A dynamic dim 0 in a model with a second, static input is an ordinary
// dynamic dimension: the model is not batchable but takes any length.
TEST(DynamicShapesTest, DynamicFirstDimOfANonBatchableModel) {
  ModelBuilder b;
  b.Input("seq", {-1, 3});
  b.Input("scale", {1, 3});
  b.Node("Mul", {"seq", "scale"}, {"out"});
  b.Output("out");
  auto model = Compile(b.Bytes());
  ASSERT_NE(model, nullptr);
  EXPECT_FALSE(model->batchable());
  EXPECT_TRUE(model->has_dynamic_dims());
  auto ctx = ExecutionContext::Create(model, {1});
  ASSERT_TRUE(ctx.ok());
  for (int64_t n : {1, 5, 100}) {
    Tensor seq = testing::RandomTensor({n, 3}, 5);
    Tensor scale = testing::RandomTensor({1, 3}, 6);
    auto out = (*ctx)->Run({seq, scale});
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_EQ((*out)[0].shape, (std::vector<int64_t>{n, 3}));
    for (int64_t i = 0; i < n * 3; ++i) {
      EXPECT_FLOAT_EQ((*out)[0].data<float>()[i],
                      seq.data<float>()[i] * scale.data<float>()[i % 3]);
    }
  }
}

}  // namespace
}  // namespace rectifier::engine
