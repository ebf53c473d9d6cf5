// Malformed, inconsistent and oversized models, and bad Run() arguments: each
// must come back as the documented Status code with a message naming the
// culprit, never as a crash.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/hostile_models.h"
#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine {
namespace {

using ::testing::AnyOf;
using testing::AttrFloat;
using testing::AttrInts;
using testing::AttrString;
using testing::FloatTensor;
using ::testing::HasSubstr;
using testing::ModelBuilder;
using testing::RandomFloatTensor;

absl::StatusCode CompileCode(const std::string& bytes, const CompileOptions& options = {}) {
  return CompiledModel::FromBytes(bytes, options).status().code();
}

// x [1, 3, 8, 8] -> Conv (4 filters 3x3, pads 1, bias) -> Relu -> y.
ModelBuilder ConvReluModel() {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 8, 8});
  builder.Initializer("w", RandomFloatTensor({4, 3, 3, 3}, 1));
  builder.Initializer("b", RandomFloatTensor({4}, 2));
  AttrInts(builder.Node("Conv", {"x", "w", "b"}, {"c"}, "conv"), "pads", {1, 1, 1, 1});
  builder.Node("Relu", {"c"}, {"y"}, "relu");
  builder.Output("y", {1, 4, 8, 8});
  return builder;
}

TEST(EngineBadModelTest, TheValidBaseModelLoads) {
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(ConvReluModel().Bytes());
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ((*model)->inputs().size(), 1u);
  EXPECT_EQ((*model)->inputs()[0].name, "x");
  ASSERT_EQ((*model)->outputs().size(), 1u);
  EXPECT_EQ((*model)->outputs()[0].shape, (std::vector<int64_t>{1, 4, 8, 8}));
}

TEST(EngineBadModelTest, EmptyBytesAreInvalid) {
  EXPECT_EQ(CompileCode(""), absl::StatusCode::kInvalidArgument);
}

TEST(EngineBadModelTest, EveryTruncationIsInvalid) {
  ModelBuilder builder = ConvReluModel();
  const std::string bytes = builder.Bytes();
  // Cutting exactly before opset_import (the last field) leaves a well-formed
  // model without an opset: either verdict is acceptable there.
  onnx::ModelProto without_opset = builder.model();
  without_opset.clear_opset_import();
  const size_t opset_boundary = without_opset.SerializeAsString().size();
  ASSERT_LT(opset_boundary, bytes.size());
  for (size_t length = 1; length < bytes.size(); ++length) {
    SCOPED_TRACE(testing::ShapeString({static_cast<int64_t>(length)}) + " bytes of " +
                 std::to_string(bytes.size()));
    const absl::StatusCode code = CompileCode(bytes.substr(0, length));
    if (length == opset_boundary) {
      EXPECT_THAT(code, AnyOf(absl::StatusCode::kOk, absl::StatusCode::kInvalidArgument));
    } else {
      EXPECT_EQ(code, absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(EngineBadModelTest, RandomBytesAreInvalid) {
  std::mt19937 rng(42);
  for (int i = 0; i < 64; ++i) {
    std::string bytes(1 + rng() % 4096, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
    EXPECT_EQ(CompileCode(bytes), absl::StatusCode::kInvalidArgument) << "buffer " << i;
  }
}

TEST(EngineBadModelTest, UnknownOpIsUnimplementedAndNamed) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Node("FrobnicateXyz", {"x"}, {"y"}, "mystery_node");
  builder.Output("y", {1, 3, 4, 4});
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("FrobnicateXyz"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("mystery_node"));
}

TEST(EngineBadModelTest, UnsupportedAttributeValueIsUnimplementedAndNamed) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Initializer("scales", FloatTensor({4}, {1, 1, 2, 2}));
  AttrString(builder.Node("Resize", {"x", "", "scales"}, {"y"}, "cubic_resize"), "mode", "cubic");
  builder.Output("y", {1, 3, 8, 8});
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnimplemented) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("cubic"));
}

TEST(EngineBadModelTest, CycleIsInvalid) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Node("Add", {"x", "t2"}, {"t1"}, "cycle_a");
  builder.Node("Relu", {"t1"}, {"t2"}, "cycle_b");
  builder.Output("t2", {1, 3, 4, 4});
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  const std::string message = absl::AsciiStrToLower(status.message());
  EXPECT_THAT(message, AnyOf(HasSubstr("cycle"), HasSubstr("cycle_a"), HasSubstr("cycle_b")));
}

TEST(EngineBadModelTest, UndefinedInputTensorIsInvalidAndNamed) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Node("Add", {"x", "ghost_tensor"}, {"y"}, "haunted_add");
  builder.Output("y", {1, 3, 4, 4});
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("ghost_tensor"));
}

// The hostile catalogue (hostile_models.h): each model is refused with a
// documented code naming the node, or, where legal, loads and runs. One test
// per model, so a crash names its model.
class EngineHostileModelTest : public ::testing::TestWithParam<testing::HostileModel> {};

TEST_P(EngineHostileModelTest, IsRefusedWithADocumentedCode) {
  const testing::HostileModel& hostile = GetParam();
  CompileOptions options;
  options.max_tensor_bytes = int64_t{64} << 20;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(hostile.bytes, options);
  absl::Status status = model.status();
  if (model.ok()) {  // then the run must refuse (or, where legal, succeed)
    std::vector<Tensor> inputs;
    for (const TensorInfo& info : (*model)->inputs()) {
      std::vector<int64_t> shape = info.shape;
      for (int64_t& dim : shape) dim = dim < 0 ? 1 : dim;
      ASSERT_LE(NumElements(shape), int64_t{1} << 22) << "input too large to feed";
      inputs.push_back(Tensor::Zeros(info.type, shape));
    }
    absl::StatusOr<std::unique_ptr<ExecutionContext>> context = ExecutionContext::Create(*model);
    ASSERT_TRUE(context.ok()) << context.status();
    status = (*context)->Run(inputs).status();
  }
  if (hostile.may_succeed && status.ok()) return;
  EXPECT_THAT(status.code(),
              AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnimplemented,
                    absl::StatusCode::kResourceExhausted))
      << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(hostile.names));
}

INSTANTIATE_TEST_SUITE_P(Catalogue, EngineHostileModelTest,
                         ::testing::ValuesIn(testing::HostileModels()),
                         [](const ::testing::TestParamInfo<testing::HostileModel>& info) {
                           return info.param.name;
                         });

TEST(EngineBadModelTest, UndefinedGraphOutputIsInvalid) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Node("Relu", {"x"}, {"y"});
  builder.Output("nowhere_output", {1, 3, 4, 4});
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("nowhere_output"));
}

TEST(EngineBadModelTest, TensorProducedTwiceIsInvalid) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  builder.Node("Relu", {"x"}, {"twice"});
  builder.Node("Sigmoid", {"x"}, {"twice"});
  builder.Output("twice", {1, 3, 4, 4});
  EXPECT_EQ(CompileCode(builder.Bytes()), absl::StatusCode::kInvalidArgument);
}

TEST(EngineBadModelTest, InconsistentBroadcastShapesAreInvalid) {
  for (bool both_inputs : {false, true}) {
    SCOPED_TRACE(both_inputs ? "two graph inputs" : "input and initializer");
    ModelBuilder builder;
    builder.Input("a", {1, 3, 4, 4});
    if (both_inputs) {
      builder.Input("b", {1, 5, 4, 4});
    } else {
      builder.Initializer("b", RandomFloatTensor({1, 5, 4, 4}, 3));
    }
    builder.Node("Add", {"a", "b"}, {"y"}, "bad_add");
    builder.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
    const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("bad_add"));
  }
}

TEST(EngineBadModelTest, ConvChannelMismatchIsInvalid) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 8, 8});
  builder.Initializer("w", RandomFloatTensor({4, 5, 3, 3}, 4));
  builder.Node("Conv", {"x", "w"}, {"y"}, "mismatched_conv");
  builder.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("mismatched_conv"));
}

TEST(EngineBadModelTest, RawDataLengthMismatchIsInvalidAndNamed) {
  ModelBuilder builder = ConvReluModel();
  for (onnx::TensorProto& init : *builder.graph()->mutable_initializer()) {
    if (init.name() == "w") init.mutable_raw_data()->resize(100);
  }
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("'w'"));
}

TEST(EngineBadModelTest, InitializerWithUndefinedDataTypeIsRejected) {
  ModelBuilder builder = ConvReluModel();
  for (onnx::TensorProto& init : *builder.graph()->mutable_initializer()) {
    if (init.name() == "b") init.set_data_type(onnx::TensorProto::UNDEFINED);
  }
  // UNDEFINED is malformed; an engine may also call it an unsupported type.
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_THAT(status.code(),
              AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnimplemented))
      << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("'b'"));
}

TEST(EngineBadModelTest, ExternalDataInitializerIsRejected) {
  ModelBuilder builder = ConvReluModel();
  for (onnx::TensorProto& init : *builder.graph()->mutable_initializer()) {
    if (init.name() != "w") continue;
    init.clear_raw_data();
    init.set_data_location(onnx::TensorProto::EXTERNAL);
    onnx::StringStringEntryProto* location = init.add_external_data();
    location->set_key("location");
    location->set_value("../../../../etc/passwd");
  }
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_THAT(status.code(),
              AnyOf(absl::StatusCode::kUnimplemented, absl::StatusCode::kInvalidArgument))
      << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("'w'"));
}

TEST(EngineBadModelTest, UnknownOpsetVersionIsRejected) {
  ModelBuilder builder = ConvReluModel();
  builder.model().mutable_opset_import(0)->set_version(99);
  EXPECT_THAT(CompileCode(builder.Bytes()),
              AnyOf(absl::StatusCode::kUnimplemented, absl::StatusCode::kInvalidArgument));
}

TEST(EngineBadModelTest, ModelWithoutOutputsIsInvalid) {
  ModelBuilder builder = ConvReluModel();
  builder.graph()->clear_output();
  EXPECT_EQ(CompileCode(builder.Bytes()), absl::StatusCode::kInvalidArgument);
}

TEST(EngineBadModelTest, NegativeInitializerDimIsInvalid) {
  ModelBuilder builder = ConvReluModel();
  for (onnx::TensorProto& init : *builder.graph()->mutable_initializer()) {
    if (init.name() == "b") init.set_dims(0, -4);
  }
  EXPECT_EQ(CompileCode(builder.Bytes()), absl::StatusCode::kInvalidArgument);
}

TEST(EngineBadModelTest, InitializerOverMaxTensorBytesIsResourceExhausted) {
  ModelBuilder builder;
  builder.Input("x", {1, 512, 32, 32});
  builder.Initializer("big_bias", RandomFloatTensor({1, 512, 32, 32}, 5));  // 2 MiB
  builder.Node("Add", {"x", "big_bias"}, {"y"});
  builder.Output("y", {1, 512, 32, 32});
  CompileOptions options;
  options.max_tensor_bytes = int64_t{1} << 20;
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes(), options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), AnyOf(HasSubstr("big_bias"), HasSubstr("'x'")));
}

TEST(EngineBadModelTest, GiganticDeclaredInitializerWithoutDataIsInvalid) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  onnx::TensorProto* huge = builder.graph()->add_initializer();
  huge->set_name("huge_weight");
  huge->set_data_type(onnx::TensorProto::FLOAT);
  huge->add_dims(int64_t{1} << 20);
  huge->add_dims(int64_t{1} << 20);  // 4 TiB declared, no data
  builder.Node("Add", {"x", "huge_weight"}, {"y"});
  builder.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
  // The file does not hold the declared bytes: a malformed model, refused
  // before anything of the declared size is allocated.
  const absl::Status status = CompiledModel::FromBytes(builder.Bytes()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("'huge_weight' declares shape [1048576,1048576]"));
}

TEST(EngineBadModelTest, DimsWhoseProductOverflowsAreRejected) {
  ModelBuilder builder;
  builder.Input("x", {1, 3, 4, 4});
  onnx::TensorProto* huge = builder.graph()->add_initializer();
  huge->set_name("overflow_weight");
  huge->set_data_type(onnx::TensorProto::FLOAT);
  for (int i = 0; i < 3; ++i) huge->add_dims(int64_t{1} << 40);
  builder.Node("Add", {"x", "overflow_weight"}, {"y"});
  builder.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
  EXPECT_THAT(CompileCode(builder.Bytes()),
              AnyOf(absl::StatusCode::kResourceExhausted, absl::StatusCode::kInvalidArgument));
}

TEST(EngineBadModelTest, ActivationOverMaxTensorBytesIsResourceExhausted) {
  ModelBuilder builder;
  builder.Input("x", {1, 1, 8, 8});
  builder.Initializer("scales", FloatTensor({4}, {1, 1, 64, 64}));  // -> 1 MiB
  builder.Node("Resize", {"x", "", "scales"}, {"y"}, "blow_up");
  builder.Output("y", {1, 1, 512, 512});
  CompileOptions options;
  options.max_tensor_bytes = int64_t{64} << 10;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(builder.Bytes(), options);
  absl::Status status = model.status();
  if (model.ok()) {  // plans may be built lazily: then the first Run must refuse
    absl::StatusOr<std::unique_ptr<ExecutionContext>> context = ExecutionContext::Create(*model);
    ASSERT_TRUE(context.ok()) << context.status();
    status = (*context)->Run({RandomFloatTensor({1, 1, 8, 8}, 6)}).status();
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
}

// ---------------------------------------------------------------------------
// Run-time argument errors on a batchable model.

class EngineBadRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ModelBuilder builder;
    builder.Input("pixel_values", {-1, 3, 8, 8});
    builder.Initializer("w", RandomFloatTensor({4, 3, 3, 3}, 7));
    AttrInts(builder.Node("Conv", {"pixel_values", "w"}, {"c"}), "pads", {1, 1, 1, 1});
    AttrFloat(builder.Node("LeakyRelu", {"c"}, {"logits"}), "alpha", 0.1f);
    builder.Output("logits", {-1, 4, 8, 8});
    CompileOptions options;
    options.max_batch_size = 4;
    absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
        CompiledModel::FromBytes(builder.Bytes(), options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    absl::StatusOr<std::unique_ptr<ExecutionContext>> context = ExecutionContext::Create(model_);
    ASSERT_TRUE(context.ok()) << context.status();
    context_ = *std::move(context);
  }

  // Expects INVALID_ARGUMENT naming the input.
  void ExpectRejected(const std::vector<Tensor>& inputs) {
    const absl::Status status = context_->Run(inputs).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("pixel_values"));
  }

  std::shared_ptr<const CompiledModel> model_;
  std::unique_ptr<ExecutionContext> context_;
};

TEST_F(EngineBadRunTest, ModelIsBatchable) {
  EXPECT_TRUE(model_->batchable());
  EXPECT_EQ(model_->max_batch_size(), 4);
  ASSERT_EQ(model_->inputs().size(), 1u);
  EXPECT_EQ(model_->inputs()[0].shape, (std::vector<int64_t>{-1, 3, 8, 8}));
}

TEST_F(EngineBadRunTest, WrongInputCountIsInvalid) {
  EXPECT_EQ(context_->Run({}).status().code(), absl::StatusCode::kInvalidArgument);
  const Tensor x = RandomFloatTensor({1, 3, 8, 8}, 8);
  EXPECT_EQ(context_->Run({x, x}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineBadRunTest, WrongShapeIsInvalidAndNamesTheInput) {
  ExpectRejected({RandomFloatTensor({1, 3, 9, 8}, 9)});
  ExpectRejected({RandomFloatTensor({1, 4, 8, 8}, 10)});
  ExpectRejected({RandomFloatTensor({3, 8, 8}, 11)});
  ExpectRejected({RandomFloatTensor({1, 1, 3, 8, 8}, 12)});
}

TEST_F(EngineBadRunTest, BatchOverMaxBatchSizeIsInvalid) {
  ExpectRejected({RandomFloatTensor({5, 3, 8, 8}, 13)});
}

TEST_F(EngineBadRunTest, WrongTypeIsInvalid) {
  Tensor x = Tensor::Zeros(DataType::kInt64, {1, 3, 8, 8});
  ExpectRejected({x});
}

TEST_F(EngineBadRunTest, BufferSizeNotMatchingShapeIsInvalid) {
  Tensor x = RandomFloatTensor({1, 3, 8, 8}, 14);
  x.bytes.resize(10);
  ExpectRejected({x});
}

TEST_F(EngineBadRunTest, RunIntoWithWrongOutputShapeIsInvalid) {
  const Tensor x = RandomFloatTensor({2, 3, 8, 8}, 15);
  Tensor wrong = Tensor::Zeros(DataType::kFloat32, {2, 4, 8, 9});
  EXPECT_EQ(context_->RunInto({&x}, {&wrong}).code(), absl::StatusCode::kInvalidArgument);
  Tensor right = Tensor::Zeros(DataType::kFloat32, {2, 4, 8, 8});
  EXPECT_EQ(context_->RunInto({&x}, {}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(context_->RunInto({&x}, {&right}).ok());
}

TEST_F(EngineBadRunTest, ContextStillWorksAfterRejectedRuns) {
  const Tensor x = RandomFloatTensor({3, 3, 8, 8}, 16);
  absl::StatusOr<std::vector<Tensor>> before = context_->Run({x});
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(context_->Run({RandomFloatTensor({5, 3, 8, 8}, 17)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(context_->Run({RandomFloatTensor({3, 3, 7, 8}, 18)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<Tensor>> after = context_->Run({x});
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].shape, (std::vector<int64_t>{3, 4, 8, 8}));
  EXPECT_EQ(testing::CompareTensors((*before)[0], (*after)[0], {0.0, 0.0}), "");
}

}  // namespace
}  // namespace rectifier::engine
