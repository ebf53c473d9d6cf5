#include "server/service/image_budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "server/service/image_pipeline.h"

namespace rectifier::service {
namespace {

using ::testing::HasSubstr;

TEST(ImageMemoryBudgetTest, ChargesAndReleases) {
  ImageMemoryBudget budget(100 << 20);
  auto a = budget.Reserve(60 << 20, "image a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(budget.in_use(), 60 << 20);
  auto b = budget.Reserve(60 << 20, "image b");
  ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status().message(), HasSubstr("image b needs up to 60 MiB"));
  EXPECT_THAT(b.status().message(), HasSubstr("60 MiB of 100 MiB"));
  a->Release();
  EXPECT_EQ(budget.in_use(), 0);
  auto c = budget.Reserve(60 << 20, "image c");
  ASSERT_TRUE(c.ok());
  {
    ImageMemoryBudget::Reservation moved = *std::move(c);
    EXPECT_EQ(budget.in_use(), 60 << 20);
  }
  EXPECT_EQ(budget.in_use(), 0);
}

TEST(ImageMemoryBudgetTest, AnImageLargerThanTheWholeBudgetSaysSo) {
  ImageMemoryBudget budget(10 << 20);
  auto r = budget.Reserve(11 << 20, "a 4096x4096 PNG image");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("whole image memory budget of 10 MiB"));
  EXPECT_THAT(r.status().message(), HasSubstr("--image-memory-mb"));
}

TEST(ImageMemoryBudgetTest, ZeroMeansUnbounded) {
  ImageMemoryBudget budget(0);
  auto r = budget.Reserve(int64_t{1} << 40, "huge");
  EXPECT_TRUE(r.ok());
}

TEST(ImageMemoryBudgetTest, NeverOverCommitsUnderContention) {
  ImageMemoryBudget budget(10);
  std::atomic<int> held{0};
  std::atomic<int> peak{0};
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        auto r = budget.Reserve(3, "x");
        if (!r.ok()) continue;
        const int now = held += 3;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        held -= 3;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(peak.load(), 9);
  EXPECT_EQ(budget.in_use(), 0);
}

// The size limits are checked before the worst case is computed: a header
// claiming 2^30 x 2^30 pixels overflowed int64 in the estimate (found by
// fuzz/vision_request).
TEST(EstimateImageBytesTest, OversizeHeadersAreRefusedBeforeAnyArithmetic) {
  std::string png(
      "\x89PNG\r\n\x1a\n\x00\x00\x00\x0DIHDR\x40\x00\x00\x00\x40\x00\x00\x00"
      "\x10\x06\x00\x00\x00",
      29);
  png += std::string(4, '\0') + std::string("\x00\x00\x00\x00IEND\xAE\x42\x60\x82", 12);
  ModelImaging imaging;
  imaging.input_item_shape = {3, 224, 224};
  auto estimate = EstimateImageBytes(png, imaging);
  ASSERT_EQ(estimate.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(estimate.status().message(), HasSubstr("1073741824x1073741824"));
}

}  // namespace
}  // namespace rectifier::service
