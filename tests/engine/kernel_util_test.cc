// Tests for the shared kernel helpers: reading constant tensors as integers.
#include "server/engine/ops/kernel_util.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {
namespace {

// A model may carry a shape or indices as floats (the fuzzer built such a
// Reshape with NaN in it): values outside int64 saturate, NaN reads as the
// lowest int64, which every shape check refuses; nothing is undefined.
TEST(ReadIntsTest, FloatValuesSaturateInsteadOfOverflowing) {
  constexpr int64_t kLowest = std::numeric_limits<int64_t>::lowest();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  Tensor f = Tensor::Zeros(DataType::kFloat32, {6});
  float* fv = f.data<float>();
  fv[0] = 3.9f;
  fv[1] = -2.5f;
  fv[2] = std::numeric_limits<float>::quiet_NaN();
  fv[3] = std::numeric_limits<float>::infinity();
  fv[4] = -1e30f;
  fv[5] = 1e30f;
  EXPECT_EQ(ReadInts(f), (std::vector<int64_t>{3, -2, kLowest, kMax, kLowest, kMax}));

  Tensor d = Tensor::Zeros(DataType::kFloat64, {3});
  double* dv = d.data<double>();
  dv[0] = 9.2233720368547758e18;  // 2^63: one past int64's maximum
  dv[1] = -std::numeric_limits<double>::infinity();
  dv[2] = 4096.0;
  EXPECT_EQ(ReadInts(d), (std::vector<int64_t>{kMax, kLowest, 4096}));
}

// An empty tensor may have dimensions whose product overflows int64 (the
// fuzzer's Add of [0, 2^60, 102] shapes): its strides saturate.
TEST(ContiguousStridesTest, EmptyTensorsWithHugeDimensionsSaturate) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(ContiguousStrides({2, 3, 4}), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(ContiguousStrides({5, 0, int64_t{1} << 60, 102}),
            (std::vector<int64_t>{0, kMax, 102, 1}));
}

// An initializer may declare huge dimensions next to a 0 (the fuzzer's
// [2^59, 97, 0]): it has no elements, and counting them does not overflow.
TEST(NumElementsTest, EmptyShapesWithHugeDimensionsHaveNoElements) {
  EXPECT_EQ(NumElements({int64_t{1} << 59, 97, 0}), 0);
  EXPECT_EQ(NumElements({2, 3, 4}), 24);
  EXPECT_EQ(NumElements({}), 1);
  EXPECT_EQ(NumElements({int64_t{1} << 40, int64_t{1} << 40}), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(Tensor::Zeros(DataType::kFloat32, {int64_t{1} << 59, 97, 0}).bytes.size(), 0u);
}

}  // namespace
}  // namespace rectifier::engine
