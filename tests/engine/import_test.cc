// ONNX import and load-time errors: initializer encodings, Constant nodes,
// corrupt bytes, unsupported ops/attributes, cycles, size limits.
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/engine/onnx_import.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::CompileAndRun;
using testing::ModelBuilder;

ModelBuilder AddModel(bool raw) {
  ModelBuilder b;
  b.Input("x", {2, 2});
  b.Init("c", {2, 2}, {1, 2, 3, 4}, raw);
  b.Node("Add", {"x", "c"}, {"y"});
  b.Output("y");
  return b;
}

TEST(ImportTest, RawAndTypedInitializersAgree) {
  Tensor x = Tensor::Zeros(DataType::kFloat32, {2, 2});
  for (bool raw : {true, false}) {
    auto out = CompileAndRun(AddModel(raw).Bytes(), {x});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_FLOAT_EQ((*out)[0].data<float>()[3], 4.0f) << "raw=" << raw;
  }
}

TEST(ImportTest, ConstantNodesBecomeConstants) {
  ModelBuilder b;
  b.Input("x", {3});
  auto& c = b.Node("Constant", {}, {"k"});
  auto* a = c.add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  for (float v : {0.5f, 1.5f, 2.5f}) a->add_floats(v);
  b.Node("Mul", {"x", "k"}, {"y"});
  b.Output("y");
  auto g = ImportOnnx(b.Bytes(), {}, 1 << 20);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE(g->IsConstant("k"));
  EXPECT_EQ(g->nodes.size(), 1u);
  Tensor x = Tensor::Zeros(DataType::kFloat32, {3});
  for (int i = 0; i < 3; ++i) x.data<float>()[i] = 2.0f;
  auto out = CompileAndRun(b.Bytes(), {x});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[2], 5.0f);
}

TEST(ImportTest, ConstantInputsBindGraphInputs) {
  ModelBuilder b;
  b.Input("x", {2});
  b.Input("k", {2});
  b.Node("Sub", {"x", "k"}, {"y"});
  b.Output("y");
  CompileOptions options;
  Tensor k = Tensor::Zeros(DataType::kFloat32, {2});
  k.data<float>()[0] = 1;
  k.data<float>()[1] = -1;
  options.constant_inputs["k"] = k;
  auto model = CompiledModel::FromBytes(b.Bytes(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->inputs().size(), 1u);
  EXPECT_EQ((*model)->inputs()[0].name, "x");
  auto ctx = ExecutionContext::Create(*model);
  ASSERT_TRUE(ctx.ok());
  auto out = (*ctx)->Run({Tensor::Zeros(DataType::kFloat32, {2})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[0], -1.0f);
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[1], 1.0f);
}

TEST(ImportTest, TruncatedAndRandomBytesAreInvalidArgument) {
  const std::string good = AddModel(true).Bytes();
  for (size_t cut : {size_t{0}, size_t{1}, good.size() / 2, good.size() - 3}) {
    auto m = CompiledModel::FromBytes(std::string_view(good.data(), cut));
    ASSERT_FALSE(m.ok()) << "cut " << cut;
    EXPECT_TRUE(absl::IsInvalidArgument(m.status()) || absl::IsUnimplemented(m.status()))
        << m.status();
  }
  std::string noise(512, '\0');
  uint32_t s = 99;
  for (auto& ch : noise) ch = static_cast<char>((s = s * 1103515245u + 12345u) >> 24);
  auto m = CompiledModel::FromBytes(noise);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status())) << m.status();
}

TEST(ImportTest, MissingFileIsNotFound) {
  auto m = CompiledModel::FromFile("/nonexistent/model.onnx");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsNotFound(m.status()));
}

TEST(ImportTest, UnsupportedOpNamesOpNodeAndOpset) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Foo", {"x"}, {"y"}, "n3");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsUnimplemented(m.status()));
  EXPECT_EQ(m.status().message(), "unsupported op 'Foo' (node 'n3', opset 13)");
}

TEST(ImportTest, UnsupportedAttributeValueNamesAttribute) {
  ModelBuilder b;
  b.Input("x", {1, 1, 2, 2});
  b.Init("scales", {4}, {1, 1, 2, 2});
  b.Init("roi", {0}, {});
  auto& r = b.Node("Resize", {"x", "roi", "scales"}, {"y"}, "r1");
  ModelBuilder::StringAttr(r, "mode", "cubic");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsUnimplemented(m.status()));
  EXPECT_TRUE(
      absl::StrContains(m.status().message(), "Resize mode 'cubic' is not supported (node 'r1')"))
      << m.status();
}

TEST(ImportTest, CycleIsInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Add", {"x", "b"}, {"a"}, "n1");
  b.Node("Relu", {"a"}, {"b"}, "n2");
  b.Output("b");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "cycle")) << m.status();
}

TEST(ImportTest, DanglingInputIsInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {1});
  b.Node("Add", {"x", "ghost"}, {"y"}, "n1");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "'ghost'")) << m.status();
}

TEST(ImportTest, InconsistentShapesAreInvalidArgument) {
  ModelBuilder b;
  b.Input("x", {2, 3});
  b.Init("c", {4}, {1, 2, 3, 4});
  b.Node("Add", {"x", "c"}, {"y"}, "bad_add");
  b.Output("y");
  auto m = CompiledModel::FromBytes(b.Bytes());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(m.status()));
  EXPECT_TRUE(absl::StrContains(m.status().message(), "bad_add")) << m.status();
}

TEST(ImportTest, TensorOverLimitIsResourceExhausted) {
  CompileOptions options;
  options.max_tensor_bytes = 8;
  auto m = CompiledModel::FromBytes(AddModel(true).Bytes(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(m.status())) << m.status();
  // An activation over the limit fails the same way.
  ModelBuilder b;
  b.Input("x", {1, 4});
  b.InitInts("reps", {2}, {1000, 1000});
  b.Node("Tile", {"x", "reps"}, {"y"});
  b.Output("y");
  options.max_tensor_bytes = 1 << 20;
  m = CompiledModel::FromBytes(b.Bytes(), options);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(m.status())) << m.status();
}

}  // namespace
}  // namespace rectifier::engine
