// The one tensor type and its data-type table.
#include "server/common/tensor.h"

#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

TEST(DataTypeTableTest, OneRowPerTypeInEnumOrder) {
  const auto& table = AllDataTypes();
  ASSERT_EQ(table.size(), 7u);
  std::set<std::string> names;
  std::set<int> onnx, config;
  for (size_t i = 0; i < table.size(); ++i) {
    EXPECT_EQ(static_cast<size_t>(table[i].type), i);
    EXPECT_EQ(&Traits(table[i].type), &table[i]);
    names.insert(table[i].kserve);
    onnx.insert(table[i].onnx);
    config.insert(table[i].config);
  }
  // Every code is distinct, so each inverse is a function.
  EXPECT_EQ(names.size(), table.size());
  EXPECT_EQ(onnx.size(), table.size());
  EXPECT_EQ(config.size(), table.size());
}

TEST(DataTypeTableTest, SizesAndNamesMatchTheWireTypes) {
  EXPECT_EQ(DataTypeSize(DataType::kFloat32), 4u);
  EXPECT_EQ(DataTypeSize(DataType::kInt64), 8u);
  EXPECT_EQ(DataTypeSize(DataType::kFloat64), 8u);
  EXPECT_EQ(DataTypeSize(DataType::kInt32), 4u);
  EXPECT_EQ(DataTypeSize(DataType::kUint8), 1u);
  EXPECT_EQ(DataTypeSize(DataType::kInt8), 1u);
  EXPECT_EQ(DataTypeSize(DataType::kBool), 1u);
  EXPECT_STREQ(DataTypeName(DataType::kFloat32), "FP32");
  EXPECT_STREQ(DataTypeName(DataType::kBool), "BOOL");
  EXPECT_STREQ(DataTypeName(static_cast<DataType>(99)), "UNKNOWN");
}

TEST(DataTypeTableTest, InversesRoundTrip) {
  for (const auto& t : AllDataTypes()) {
    EXPECT_EQ(DataTypeFromKServe(t.kserve), t.type) << t.kserve;
    EXPECT_EQ(DataTypeFromOnnxCode(t.onnx), t.type) << t.kserve;
    EXPECT_EQ(DataTypeFromConfigCode(t.config), t.type) << t.kserve;
  }
  EXPECT_EQ(DataTypeFromKServe("FP16"), std::nullopt);
  EXPECT_EQ(DataTypeFromKServe("BYTES"), std::nullopt);
  EXPECT_EQ(DataTypeFromOnnxCode(10), std::nullopt);    // FLOAT16
  EXPECT_EQ(DataTypeFromConfigCode(13), std::nullopt);  // TYPE_STRING
}

TEST(TensorTest, NumElementsAndZeros) {
  EXPECT_EQ(NumElements({}), 1);
  EXPECT_EQ(NumElements({2, 3, 4}), 24);
  EXPECT_EQ(NumElements({0, std::numeric_limits<int64_t>::max(), 4}), 0);
  EXPECT_EQ(NumElements({std::numeric_limits<int64_t>::max(), 2}),
            std::numeric_limits<int64_t>::max());
  Tensor t = Tensor::Zeros(DataType::kInt64, {2, 3});
  EXPECT_EQ(t.bytes.size(), 48u);
  EXPECT_EQ(t.num_elements(), 6);
  EXPECT_EQ(t.data<int64_t>()[5], 0);
}

TEST(TensorTest, CopyOfTakesTheShapesBytes) {
  const std::vector<float> values = {1.5f, -2.f, 3.f, 4.f, 5.f, 6.f, 99.f};  // one extra
  Tensor t = Tensor::CopyOf(DataType::kFloat32, {2, 3}, values.data());
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(t.bytes.size(), 24u);
  EXPECT_EQ(t.data<float>()[0], 1.5f);
  EXPECT_EQ(t.data<float>()[5], 6.f);
  // Nothing to read for an empty shape (its data may be null).
  Tensor empty = Tensor::CopyOf(DataType::kFloat32, {0, 3}, nullptr);
  EXPECT_TRUE(empty.bytes.empty());
}

TEST(InputTensorTest, TakesATensorsBytesWithoutACopy) {
  Tensor t = Tensor::CopyOf(DataType::kFloat32, {1, 3}, std::vector<float>{1, 2, 3}.data());
  const std::byte* buffer = t.bytes.data();
  std::vector<InputTensor> inputs;
  inputs.emplace_back(std::move(t));
  EXPECT_FALSE(inputs[0].borrowed());
  EXPECT_EQ(inputs[0].bytes.data(), buffer);
  EXPECT_EQ(inputs[0].bytes.size(), 12u);
  EXPECT_EQ(inputs[0].shape, (std::vector<int64_t>{1, 3}));
  // Moves (here: the vector growing) keep the view on the same buffer.
  for (int i = 0; i < 16; ++i) inputs.emplace_back(Tensor::Zeros(DataType::kInt64, {2}));
  EXPECT_EQ(inputs[0].bytes.data(), buffer);
  EXPECT_EQ(inputs[0].data<float>()[2], 3.f);
}

TEST(InputTensorTest, BorrowsBytesItDoesNotOwn) {
  const std::vector<int64_t> values = {4, 5, 6, 7};
  InputTensor input = InputTensor::Borrow(DataType::kInt64, {2, 2}, values.data(), 32);
  EXPECT_TRUE(input.borrowed());
  EXPECT_EQ(input.data<int64_t>(), values.data());
  const InputTensor moved = std::move(input);
  EXPECT_EQ(moved.data<int64_t>(), values.data());
  const TensorView view = moved.view();
  EXPECT_EQ(view.type, DataType::kInt64);
  EXPECT_EQ(view.num_elements(), 4);
  EXPECT_EQ(Tensor::CopyOf(view).data<int64_t>()[3], 7);
}

}  // namespace
}  // namespace rectifier::common
