// Tests for the vision API's per-call options: unsigned request fields are
// validated as sent, before any conversion to int or to a duration.
#include "server/service/vision_service.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace rectifier::service {
namespace {

constexpr uint32_t kU32Max = std::numeric_limits<uint32_t>::max();

TEST(VisionOptionsTest, TopKIsCheckedBeforeItBecomesAnInt) {
  for (const uint32_t top_k : {kU32Max, 1u << 31, kMaxRequestTopK + 1}) {
    imaging::ClassificationOptions options;
    const absl::Status status = ApplyClassifyOverrides(top_k, std::nullopt, options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << top_k;
    EXPECT_EQ(status.message(), absl::StrCat("top_k is ", top_k,
                                             "; it must be in [0, 1048576] "
                                             "(0: the model's)"));
    EXPECT_EQ(options.top_k, 5) << "the model's value is kept";
  }
  imaging::ClassificationOptions options;
  ASSERT_TRUE(ApplyClassifyOverrides(kMaxRequestTopK, 0.25f, options).ok());
  EXPECT_EQ(options.top_k, static_cast<int>(kMaxRequestTopK));
  EXPECT_EQ(options.threshold, 0.25f);
  ASSERT_TRUE(ApplyClassifyOverrides(0, std::nullopt, options).ok());
  EXPECT_EQ(options.top_k, static_cast<int>(kMaxRequestTopK)) << "0 keeps the value";
}

TEST(VisionOptionsTest, MaxDetectionsIsCheckedBeforeItBecomesAnInt) {
  const google::protobuf::RepeatedField<uint32_t> no_filter;
  for (const uint32_t max_detections : {kU32Max, 1u << 31, kMaxRequestDetections + 1}) {
    imaging::DetectionOptions options;
    const absl::Status status = ApplyDetectOverrides(std::nullopt, std::nullopt, max_detections,
                                                     no_filter, /*num_classes=*/3, options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << max_detections;
    // Was "postprocessing: max_detections must be > 0" for a positive value.
    EXPECT_EQ(status.message(), absl::StrCat("max_detections is ", max_detections,
                                             "; it must be in [0, 1048576] (0: the model's)"));
  }
  imaging::DetectionOptions options;
  ASSERT_TRUE(
      ApplyDetectOverrides(std::nullopt, std::nullopt, kMaxRequestDetections, no_filter, 3, options)
          .ok());
  EXPECT_EQ(options.max_detections, static_cast<int>(kMaxRequestDetections));

  google::protobuf::RepeatedField<uint32_t> filter;
  filter.Add(kU32Max);
  const absl::Status status =
      ApplyDetectOverrides(std::nullopt, std::nullopt, 0, filter, 3, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("class_filter: class 4294967295 does not exist"),
            std::string::npos)
      << status.message();
}

TEST(VisionOptionsTest, HugeTimeoutsMeanNoTimeoutNotAnExpiredOne) {
  const absl::Time start = absl::FromUnixSeconds(1000);
  const absl::Time context_deadline = start + absl::Seconds(30);
  EXPECT_EQ(RequestDeadline(context_deadline, start, 0), context_deadline);
  EXPECT_EQ(RequestDeadline(context_deadline, start, 5), start + absl::Microseconds(5));
  // Used to wrap to -1 us and -2^63 us: the request expired before it queued.
  for (const uint64_t huge : {std::numeric_limits<uint64_t>::max(), uint64_t{1} << 63}) {
    EXPECT_EQ(RequestDeadline(context_deadline, start, huge), context_deadline) << huge;
    EXPECT_EQ(RequestDeadline(absl::InfiniteFuture(), start, huge), absl::InfiniteFuture());
  }
  const uint64_t largest = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(RequestDeadline(context_deadline, start, largest), context_deadline);
  EXPECT_GT(RequestDeadline(absl::InfiniteFuture(), start, largest), start);
}

}  // namespace
}  // namespace rectifier::service
