// Tests for concatenating inputs and splitting outputs along dim 0.
#include "server/scheduling/batch_assembly.h"

#include <vector>

#include "gtest/gtest.h"
#include "tests/scheduling/recording_executor.h"

namespace rectifier::scheduling {
namespace {

using common::InputTensor;
using common::Tensor;
using testing::FilledTensor;

// A request's inputs, owning the tensors.
template <typename... T>
std::vector<InputTensor> Inputs(T... tensors) {
  std::vector<InputTensor> inputs;
  (inputs.emplace_back(std::move(tensors)), ...);
  return inputs;
}

// A float tensor [rows, 2] whose row r is {base + r, -(base + r)}.
Tensor Rows(float base, int64_t rows) {
  Tensor tensor;
  tensor.type = common::DataType::kFloat32;
  tensor.shape = {rows, 2};
  tensor.bytes.resize(static_cast<size_t>(rows) * 2 * sizeof(float));
  for (int64_t r = 0; r < rows; ++r) {
    tensor.data<float>()[2 * r] = base + static_cast<float>(r);
    tensor.data<float>()[2 * r + 1] = -(base + static_cast<float>(r));
  }
  return tensor;
}

TEST(BatchAssemblyTest, ValidatesInputs) {
  EXPECT_EQ(*ValidateRequestInputs(Inputs(FilledTensor(1, {3, 2})), true, 4), 3);
  EXPECT_EQ(*ValidateRequestInputs(Inputs(FilledTensor(1, {7})), false, 1), 1);
  EXPECT_EQ(ValidateRequestInputs(Inputs(), true, 4).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateRequestInputs(Inputs(FilledTensor(1, {5, 2})), true, 4).status().code(),
            absl::StatusCode::kInvalidArgument);  // exceeds max
  EXPECT_EQ(ValidateRequestInputs(Inputs(FilledTensor(1, {2}), FilledTensor(1, {3})), true, 4)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);  // dim 0 disagrees
  Tensor scalar = FilledTensor(1, {});
  EXPECT_EQ(ValidateRequestInputs(Inputs(scalar), true, 4).status().code(),
            absl::StatusCode::kInvalidArgument);  // no batch dim
  Tensor short_data = FilledTensor(1, {2, 2});
  short_data.bytes.pop_back();
  EXPECT_EQ(ValidateRequestInputs(Inputs(short_data), false, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BatchAssemblyTest, SignatureIgnoresOnlyTheBatchDimension) {
  EXPECT_EQ(SignatureOf(Inputs(FilledTensor(1, {1, 3})), true),
            SignatureOf(Inputs(FilledTensor(2, {4, 3})), true));
  EXPECT_NE(SignatureOf(Inputs(FilledTensor(1, {1, 3})), true),
            SignatureOf(Inputs(FilledTensor(1, {1, 4})), true));
  EXPECT_NE(SignatureOf(Inputs(FilledTensor(1, {1, 3})), false),
            SignatureOf(Inputs(FilledTensor(1, {2, 3})), false));
  EXPECT_NE(SignatureOf(Inputs(FilledTensor(1, {1, 3})), true),
            SignatureOf(Inputs(FilledTensor(1, {1, 3}), FilledTensor(1, {1, 3})), true));
}

TEST(BatchAssemblyTest, ConcatenatesEveryInputInRequestOrder) {
  const std::vector<InputTensor> a = Inputs(Rows(10, 1), FilledTensor(7, {1, 1}));
  const std::vector<InputTensor> b = Inputs(Rows(20, 2), FilledTensor(8, {2, 1}));
  const std::vector<Tensor> batch = ConcatenateInputs({&a, &b});
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].shape, (std::vector<int64_t>{3, 2}));
  const float* f = batch[0].data<float>();
  EXPECT_EQ(std::vector<float>(f, f + 6), (std::vector<float>{10, -10, 20, -20, 21, -21}));
  EXPECT_EQ(batch[1].shape, (std::vector<int64_t>{3, 1}));
  const int64_t* i = batch[1].data<int64_t>();
  EXPECT_EQ(std::vector<int64_t>(i, i + 3), (std::vector<int64_t>{7, 8, 8}));
}

TEST(BatchAssemblyTest, SplitIsTheInverseOfConcatenate) {
  const Tensor a = Rows(1, 2);
  const Tensor b = Rows(5, 1);
  const Tensor c = Rows(9, 3);
  const std::vector<InputTensor> ra = Inputs(a), rb = Inputs(b), rc = Inputs(c);
  auto split = SplitOutputs(ConcatenateInputs({&ra, &rb, &rc}), {2, 1, 3});
  ASSERT_TRUE(split.ok()) << split.status();
  ASSERT_EQ(split->size(), 3u);
  EXPECT_EQ((*split)[0][0].shape, a.shape);
  EXPECT_EQ((*split)[0][0].bytes, a.bytes);
  EXPECT_EQ((*split)[1][0].bytes, b.bytes);
  EXPECT_EQ((*split)[2][0].shape, c.shape);
  EXPECT_EQ((*split)[2][0].bytes, c.bytes);
}

TEST(BatchAssemblyTest, SplitRejectsWrongBatchDimension) {
  std::vector<Tensor> outputs = {Rows(0, 4)};
  auto split = SplitOutputs(std::move(outputs), {2, 1});
  EXPECT_EQ(split.status().code(), absl::StatusCode::kInternal);
  auto single = SplitOutputs({Rows(0, 2)}, {1});
  EXPECT_EQ(single.status().code(), absl::StatusCode::kInternal);
  auto scalar = SplitOutputs({FilledTensor(1, {})}, {1});
  EXPECT_EQ(scalar.status().code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace rectifier::scheduling
