// CompiledModel / ExecutionContext behaviour: batching, static models,
// typed non-float outputs, run-time validation, concurrency, plans.
#include <limits>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ExpectNear;
using testing::ModelBuilder;
using testing::RandomTensor;

// Conv 3x3 + ReLU + MaxPool + GlobalAveragePool + Flatten + Gemm: a tiny CNN.
std::string TinyCnn() {
  ModelBuilder b;
  b.Input("x", {-1, 3, 9, 9});
  b.RandomInit("w", {8, 3, 3, 3}, -0.3f, 0.3f);
  b.RandomInit("b", {8});
  b.RandomInit("fc", {5, 8});
  b.RandomInit("fcb", {5});
  auto& conv = b.Node("Conv", {"x", "w", "b"}, {"c"});
  ModelBuilder::IntsAttr(conv, "pads", {1, 1, 1, 1});
  b.Node("Relu", {"c"}, {"r"});
  auto& pool = b.Node("MaxPool", {"r"}, {"p"});
  ModelBuilder::IntsAttr(pool, "kernel_shape", {2, 2});
  ModelBuilder::IntsAttr(pool, "strides", {2, 2});
  b.Node("GlobalAveragePool", {"p"}, {"g"});
  b.Node("Flatten", {"g"}, {"f"});
  auto& gemm = b.Node("Gemm", {"f", "fc", "fcb"}, {"y"});
  ModelBuilder::IntAttr(gemm, "transB", 1);
  b.Output("y");
  return b.Bytes();
}

TEST(RuntimeTest, BatchedRunsMatchPerImageRuns) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->batchable());
  EXPECT_EQ((*model)->outputs()[0].shape, (std::vector<int64_t>{-1, 5}));
  auto ctx = ExecutionContext::Create(*model, {2});
  ASSERT_TRUE(ctx.ok());
  Tensor batch = RandomTensor({3, 3, 9, 9});
  auto all = (*ctx)->Run({batch});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ((*all)[0].shape, (std::vector<int64_t>{3, 5}));
  const int64_t per = 3 * 9 * 9;
  for (int i = 0; i < 3; ++i) {
    Tensor one = Tensor::Zeros(DataType::kFloat32, {1, 3, 9, 9});
    std::copy(batch.data<float>() + i * per, batch.data<float>() + (i + 1) * per,
              one.data<float>());
    auto out = (*ctx)->Run({one});
    ASSERT_TRUE(out.ok()) << out.status();
    for (int j = 0; j < 5; ++j)
      EXPECT_NEAR((*out)[0].data<float>()[j], (*all)[0].data<float>()[i * 5 + j], 1e-4f);
  }
}

TEST(RuntimeTest, RunIntoMatchesRunAndChecksBuffers) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok());
  auto ctx = ExecutionContext::Create(*model);
  ASSERT_TRUE(ctx.ok());
  Tensor x = RandomTensor({2, 3, 9, 9});
  auto ref = (*ctx)->Run({x});
  ASSERT_TRUE(ref.ok());
  Tensor out = Tensor::Zeros(DataType::kFloat32, {2, 5});
  ASSERT_TRUE((*ctx)->RunInto({&x}, {&out}).ok());
  ExpectNear(out, (*ref)[0], 0.0f);
  Tensor wrong = Tensor::Zeros(DataType::kFloat32, {3, 5});
  auto st = (*ctx)->RunInto({&x}, {&wrong});
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
}

TEST(RuntimeTest, ShapeAndCountErrorsNameTheInput) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok());
  auto ctx = ExecutionContext::Create(*model);
  ASSERT_TRUE(ctx.ok());
  auto r = (*ctx)->Run({RandomTensor({1, 3, 8, 9})});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_TRUE(absl::StrContains(r.status().message(), "'x'")) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "[1,3,8,9]")) << r.status();
  r = (*ctx)->Run({});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  r = (*ctx)->Run({RandomTensor({65, 3, 9, 9})});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  Tensor ints = Tensor::Zeros(DataType::kInt64, {1, 3, 9, 9});
  r = (*ctx)->Run({ints});
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
}

TEST(RuntimeTest, StaticModelIsNotBatchableAndReturnsTypedShape) {
  ModelBuilder b;
  b.Input("x", {2, 3, 4});
  b.Node("Shape", {"x"}, {"s"});
  b.Node("Relu", {"x"}, {"y"});
  b.Output("s", onnx::TensorProto::INT64);
  b.Output("y");
  auto model = CompiledModel::FromBytes(b.Bytes());
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_FALSE((*model)->batchable());
  EXPECT_EQ((*model)->outputs()[0].type, DataType::kInt64);
  auto ctx = ExecutionContext::Create(*model);
  ASSERT_TRUE(ctx.ok());
  auto out = (*ctx)->Run({RandomTensor({2, 3, 4})});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ((*out)[0].type, DataType::kInt64);
  ASSERT_EQ((*out)[0].shape, (std::vector<int64_t>{3}));
  EXPECT_EQ((*out)[0].data<int64_t>()[0], 2);
  EXPECT_EQ((*out)[0].data<int64_t>()[2], 4);
  auto bad = (*ctx)->Run({RandomTensor({1, 3, 4})});
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status()));
}

TEST(RuntimeTest, ContextsRunConcurrentlyOnOneModel) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok());
  Tensor x = RandomTensor({4, 3, 9, 9});
  auto ctx0 = ExecutionContext::Create(*model, {1});
  ASSERT_TRUE(ctx0.ok());
  auto ref = (*ctx0)->Run({x});
  ASSERT_TRUE(ref.ok());
  std::vector<std::thread> threads;
  threads.reserve(3);
  std::vector<int> mismatches(3, 0);
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      auto ctx = ExecutionContext::Create(*model, {1});
      if (!ctx.ok()) {
        mismatches[t] = -1;
        return;
      }
      for (int i = 0; i < 5; ++i) {
        const int batch = 1 + (i + t) % 4;
        Tensor part = Tensor::Zeros(DataType::kFloat32, {batch, 3, 9, 9});
        std::copy(x.data<float>(), x.data<float>() + part.num_elements(), part.data<float>());
        auto out = (*ctx)->Run({part});
        if (!out.ok()) {
          mismatches[t] = -1;
          return;
        }
        for (int64_t j = 0; j < (*out)[0].num_elements(); ++j)
          if (std::fabs((*out)[0].data<float>()[j] - (*ref)[0].data<float>()[j]) > 1e-4f)
            ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(RuntimeTest, DescribePlanShowsFusionLayoutsAndImplementations) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok());
  auto plan = (*model)->DescribePlan(2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_TRUE(absl::StrContains(*plan, "Conv 'c_node'")) << *plan;
  EXPECT_TRUE(absl::StrContains(*plan, "+relu")) << *plan;
  EXPECT_TRUE(absl::StrContains(*plan, "MaxPool")) << *plan;
  EXPECT_TRUE(absl::StrContains(*plan, "jit")) << *plan;
  EXPECT_FALSE(absl::StrContains(*plan, "Relu 'r_node' relu")) << *plan;  // no standalone step
  EXPECT_FALSE((*model)->DescribePlan(0).ok());
}

TEST(RuntimeTest, PlansForDifferentBatchesShareReorderedWeights) {
  auto model = CompiledModel::FromBytes(TinyCnn());
  ASSERT_TRUE(model.ok());
  auto impl = std::dynamic_pointer_cast<const CompiledModelImpl>(*model);
  ASSERT_NE(impl, nullptr);
  auto p1 = impl->GetPlan(1);
  auto p3 = impl->GetPlan(3);
  ASSERT_TRUE(p1.ok() && p3.ok());
  EXPECT_NE(p1->get(), p3->get());
  auto again = impl->GetPlan(3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), p3->get());  // cached, not rebuilt
  int shared = 0;
  for (const auto& a : (*p1)->constant_storage)
    for (const auto& b : (*p3)->constant_storage) shared += a == b ? 1 : 0;
  EXPECT_GE(shared, 2) << "conv weights/bias should be reordered once per model";
}

TEST(RuntimeTest, ConvChainsStayBlockedWithoutReorders) {
  // conv -> relu -> conv -> add(conv1 output) -> maxpool: one reorder in
  // (graph input) and one out (graph output), none in between.
  ModelBuilder b;
  b.Input("x", {-1, 16, 12, 12});
  b.RandomInit("w1", {32, 16, 3, 3}, -0.1f, 0.1f);
  b.RandomInit("w2", {32, 32, 3, 3}, -0.1f, 0.1f);
  auto& c1 = b.Node("Conv", {"x", "w1"}, {"a"});
  ModelBuilder::IntsAttr(c1, "pads", {1, 1, 1, 1});
  b.Node("Relu", {"a"}, {"r"});
  auto& c2 = b.Node("Conv", {"r", "w2"}, {"c"});
  ModelBuilder::IntsAttr(c2, "pads", {1, 1, 1, 1});
  b.Node("Sigmoid", {"r"}, {"s"});
  b.Node("Mul", {"c", "s"}, {"m"});
  auto& pool = b.Node("MaxPool", {"m"}, {"y"});
  ModelBuilder::IntsAttr(pool, "kernel_shape", {2, 2});
  ModelBuilder::IntsAttr(pool, "strides", {2, 2});
  b.Output("y");
  auto model = CompiledModel::FromBytes(b.Bytes());
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = (*model)->DescribePlan(2);
  ASSERT_TRUE(plan.ok());
  int reorders = 0;
  for (size_t pos = 0; (pos = plan->find("Reorder", pos)) != std::string::npos; ++pos) ++reorders;
  EXPECT_LE(reorders, 1) << *plan;
  EXPECT_TRUE(absl::StrContains(*plan, "reference") == false) << *plan;
  Tensor x = RandomTensor({2, 16, 12, 12});
  auto fused = testing::CompileAndRun(b.Bytes(), {x}, true);
  auto unfused = testing::CompileAndRun(b.Bytes(), {x}, false);
  ASSERT_TRUE(fused.ok() && unfused.ok());
  ExpectNear((*fused)[0], (*unfused)[0]);
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

TEST(RuntimeTest, SplitSliceAndResizeOnBlockedLayoutsMatchPlainSemantics) {
  ModelBuilder b(12);
  b.Input("x", {-1, 8, 5, 6});
  b.RandomInit("w", {16, 8, 3, 3}, -0.2f, 0.2f);
  auto& conv = b.Node("Conv", {"x", "w"}, {"c"});
  ModelBuilder::IntsAttr(conv, "pads", {1, 1, 1, 1});
  auto& split = b.Node("Split", {"c"}, {"a", "s"});
  ModelBuilder::IntAttr(split, "axis", 1);
  ModelBuilder::IntsAttr(split, "split", {8, 8});
  b.InitInts("starts", {1}, {2});
  b.InitInts("ends", {1}, {6});
  b.InitInts("axes", {1}, {1});
  b.Node("Slice", {"s", "starts", "ends", "axes"}, {"sl"});
  b.Init("roi", {0}, {});
  b.Init("scales", {4}, {1, 1, 2, 3});
  auto& resize = b.Node("Resize", {"a", "roi", "scales"}, {"r"});
  ModelBuilder::StringAttr(resize, "mode", "nearest");
  ModelBuilder::StringAttr(resize, "coordinate_transformation_mode", "asymmetric");
  ModelBuilder::StringAttr(resize, "nearest_mode", "floor");
  for (const char* o : {"c", "a", "sl", "r"}) b.Output(o);
  auto out = testing::CompileAndRun(b.Bytes(), {RandomTensor({2, 8, 5, 6})});
  ASSERT_TRUE(out.ok()) << out.status();
  const Tensor& c = (*out)[0];
  const Tensor& a = (*out)[1];
  const Tensor& sl = (*out)[2];
  const Tensor& r = (*out)[3];
  ASSERT_EQ(sl.shape, (std::vector<int64_t>{2, 4, 5, 6}));
  ASSERT_EQ(r.shape, (std::vector<int64_t>{2, 8, 10, 18}));
  auto at = [](const Tensor& t, int64_t n, int64_t ch, int64_t h, int64_t w) {
    return t.data<float>()[((n * t.shape[1] + ch) * t.shape[2] + h) * t.shape[3] + w];
  };
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 5; ++h)
      for (int64_t w = 0; w < 6; ++w) {
        for (int64_t ch = 0; ch < 8; ++ch) EXPECT_EQ(at(a, n, ch, h, w), at(c, n, ch, h, w));
        for (int64_t ch = 0; ch < 4; ++ch) EXPECT_EQ(at(sl, n, ch, h, w), at(c, n, 10 + ch, h, w));
      }
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t ch = 0; ch < 8; ++ch)
      for (int64_t h = 0; h < 10; ++h)
        for (int64_t w = 0; w < 18; ++w) EXPECT_EQ(at(r, n, ch, h, w), at(a, n, ch, h / 2, w / 3));
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

TEST(RuntimeTest, StandaloneBatchNormMatchesFormula) {
  // BN after Concat cannot fold into a conv; it runs as oneDNN batch norm
  // on the conv's blocked layout.
  ModelBuilder b;
  b.Input("x", {-1, 3, 4, 5});
  b.RandomInit("w", {5, 3, 1, 1}, -0.5f, 0.5f);
  b.Node("Conv", {"x", "w"}, {"c"});
  auto& cat = b.Node("Concat", {"c", "c"}, {"cc"});
  ModelBuilder::IntAttr(cat, "axis", 1);
  const std::vector<float> gamma = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5};
  const std::vector<float> beta = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
  const std::vector<float> mean = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0, 0, 0, 0, 0};
  const std::vector<float> var = {1, 2, 3, 4, 5, 1, 1, 1, 1, 1};
  b.Init("g", {10}, gamma).Init("bt", {10}, beta).Init("m", {10}, mean).Init("v", {10}, var);
  b.Node("BatchNormalization", {"cc", "g", "bt", "m", "v"}, {"y"});
  b.Output("cc");
  b.Output("y");
  auto out = testing::CompileAndRun(b.Bytes(), {RandomTensor({2, 3, 4, 5})});
  ASSERT_TRUE(out.ok()) << out.status();
  const Tensor& cc = (*out)[0];
  const Tensor& y = (*out)[1];
  for (int64_t i = 0; i < y.num_elements(); ++i) {
    const int64_t ch = (i / 20) % 10;
    const float want =
        (cc.data<float>()[i] - mean[ch]) / std::sqrt(var[ch] + 1e-5f) * gamma[ch] + beta[ch];
    ASSERT_NEAR(y.data<float>()[i], want, 1e-4f * (1 + std::fabs(want))) << i;
  }
  auto model = CompiledModel::FromBytes(b.Bytes());
  ASSERT_TRUE(model.ok());
  auto plan = (*model)->DescribePlan(2);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(absl::StrContains(*plan, "BatchNormalization 'y_node'")) << *plan;
  EXPECT_FALSE(absl::StrContains(*plan, "reference")) << *plan;
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

// Integer arithmetic never overflows in C++ terms: Add/Sub/Mul wrap around
// (two's complement, as ONNX Runtime computes them), Div and Mod of the
// lowest value by -1 wrap, and an integer Pow out of range saturates.
TEST(RuntimeTest, IntegerArithmeticWrapsAndPowSaturates) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t kMin = std::numeric_limits<int64_t>::lowest();
  const struct {
    const char* op;
    int64_t a, b, want;
  } cases[] = {
      {"Add", kMax, 1, kMin},  {"Sub", kMin, 1, kMax}, {"Mul", kMax, 2, -2},
      {"Div", kMin, -1, kMin}, {"Mod", kMin, -1, 0},   {"Pow", 10, 30, kMax},
      {"Pow", -10, 31, kMin},  {"Pow", 3, 4, 81},      {"Div", 7, 0, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.op, "(", c.a, ", ", c.b, ")"));
    ModelBuilder b;
    b.Input("a", {1}, onnx::TensorProto::INT64);
    b.Input("b", {1}, onnx::TensorProto::INT64);
    b.Node(c.op, {"a", "b"}, {"y"});
    b.Output("y", onnx::TensorProto::INT64);
    Tensor a = Tensor::Zeros(DataType::kInt64, {1});
    Tensor bt = Tensor::Zeros(DataType::kInt64, {1});
    a.data<int64_t>()[0] = c.a;
    bt.data<int64_t>()[0] = c.b;
    auto out = testing::CompileAndRun(b.Bytes(), {a, bt});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].data<int64_t>()[0], c.want);
  }
}

// Cast from float to integer types saturates, NaN to 0 (a plain cast of
// NaN or of an out-of-range value is undefined behaviour).
TEST(RuntimeTest, FloatToIntegerCastSaturates) {
  const float kNan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> values = {kNan, 1e30f, -1e30f, 300.0f, -2.7f, 41.9f};
  const struct {
    int to;
    std::vector<int64_t> want;
  } cases[] = {
      {onnx::TensorProto::INT64,
       {0, std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::lowest(), 300, -2,
        41}},
      {onnx::TensorProto::INT32, {0, INT32_MAX, INT32_MIN, 300, -2, 41}},
      {onnx::TensorProto::UINT8, {0, 255, 0, 255, 0, 41}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.to);
    ModelBuilder b;
    b.Input("x", {6});
    ModelBuilder::IntAttr(b.Node("Cast", {"x"}, {"y"}), "to", c.to);
    b.Output("y", c.to);
    Tensor x = Tensor::Zeros(DataType::kFloat32, {6});
    std::copy(values.begin(), values.end(), x.data<float>());
    auto out = testing::CompileAndRun(b.Bytes(), {x});
    ASSERT_TRUE(out.ok()) << out.status();
    for (size_t i = 0; i < values.size(); ++i) {
      int64_t got = 0;
      switch (c.to) {
        case onnx::TensorProto::INT64:
          got = (*out)[0].data<int64_t>()[i];
          break;
        case onnx::TensorProto::INT32:
          got = (*out)[0].data<int32_t>()[i];
          break;
        default:
          got = (*out)[0].data<uint8_t>()[i];
          break;
      }
      EXPECT_EQ(got, c.want[i]) << "element " << i << " (" << values[i] << ")";
    }
  }
}

// Pow with an integer base and a float exponent (the output keeps the
// base's type): NaN gives 0, out of range saturates (was an undefined cast;
// found by fuzzing).
TEST(RuntimeTest, IntegerPowWithFloatExponentSaturates) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const struct {
    int64_t a;
    float b;
    int64_t want;
  } cases[] = {{-8, 0.5f, 0}, {10, 30.0f, kMax}, {2, 10.0f, 1024}};
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat("Pow(", c.a, ", ", c.b, ")"));
    ModelBuilder b;
    b.Input("a", {1}, onnx::TensorProto::INT64);
    b.Input("b", {1}, onnx::TensorProto::FLOAT);
    b.Node("Pow", {"a", "b"}, {"y"});
    b.Output("y", onnx::TensorProto::INT64);
    Tensor a = Tensor::Zeros(DataType::kInt64, {1});
    Tensor bt = Tensor::Zeros(DataType::kFloat32, {1});
    a.data<int64_t>()[0] = c.a;
    bt.data<float>()[0] = c.b;
    auto out = testing::CompileAndRun(b.Bytes(), {a, bt});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].data<int64_t>()[0], c.want);
  }
}

}  // namespace
}  // namespace rectifier::engine
