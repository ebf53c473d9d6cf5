#include "server/imaging/segmentation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/imgproc.hpp>
#include <random>
#include <vector>

namespace rectifier::imaging {
namespace {

ImageTransform Identity(int width, int height) {
  ImageTransform t;
  t.original_width = width;
  t.original_height = height;
  return t;
}

ScoreMap Map(const std::vector<float>& scores, int classes, int height, int width, int input_w,
             int input_h) {
  ScoreMap map;
  map.scores = scores;
  map.classes = classes;
  map.height = height;
  map.width = width;
  map.input_width = input_w;
  map.input_height = input_h;
  return map;
}

TEST(SegmentationTest, EachPixelTakesItsBestClass) {
  // 3 classes over a 4x2 output; ties go to the lower id.
  const std::vector<float> scores = {1, 0, 0, 0, 0, 0, 0, 0,   // class 0
                                     0, 1, 0, 0, 0, 2, 0, 0,   // class 1
                                     0, 0, 1, 0, 0, 0, 3, 0};  // class 2
  auto r = SegmentScores(Map(scores, 3, 2, 4, 4, 2), Identity(4, 2), {}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->mask.type(), CV_8UC1);
  const std::vector<int> expected = {0, 1, 2, 0, 0, 1, 2, 0};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(r->mask.at<uint8_t>(i / 4, i % 4), expected[i]) << i;
  EXPECT_EQ(r->pixels_per_class, (std::vector<int64_t>{4, 2, 2}));
  EXPECT_TRUE(r->probabilities.empty());
}

// A half-size output upsampled to the original: the same scores as OpenCV's
// bilinear resize (half-pixel centres, border repeated).
TEST(SegmentationTest, InterpolatesScoresLikeABilinearResize) {
  constexpr int kClasses = 4, kH = 6, kW = 8;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-3, 3);
  std::vector<float> scores(kClasses * kH * kW);
  for (float& v : scores) v = uniform(rng);
  auto r = SegmentScores(Map(scores, kClasses, kH, kW, 2 * kW, 2 * kH), Identity(2 * kW, 2 * kH),
                         {}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<cv::Mat> up(kClasses);
  for (int c = 0; c < kClasses; ++c) {
    const cv::Mat plane(kH, kW, CV_32F, scores.data() + c * kH * kW);
    cv::resize(plane, up[c], cv::Size(2 * kW, 2 * kH), 0, 0, cv::INTER_LINEAR);
  }
  for (int y = 0; y < 2 * kH; ++y) {
    for (int x = 0; x < 2 * kW; ++x) {
      float best = up[0].at<float>(y, x);
      for (int c = 1; c < kClasses; ++c) best = std::max(best, up[c].at<float>(y, x));
      const int label = r->mask.at<uint8_t>(y, x);
      EXPECT_NEAR(up[label].at<float>(y, x), best, 1e-4) << x << "," << y;
    }
  }
}

// Letterbox padding is never seen; a centre crop's cut-off columns take the
// nearest seen scores.
TEST(SegmentationTest, MapsThroughTheImagesTransform) {
  // 8x8 input/output; the 8x4 image sits in rows 2..5 (class 1 there,
  // class 0 in the padding).
  std::vector<float> scores(2 * 64, 0.0f);
  for (int y = 2; y < 6; ++y) {
    for (int x = 0; x < 8; ++x) scores[64 + y * 8 + x] = 1.0f;
  }
  ImageTransform letterbox = Identity(8, 4);
  letterbox.offset_y = 2;
  auto r = SegmentScores(Map(scores, 2, 8, 8, 8, 8), letterbox, {}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->mask.size(), cv::Size(8, 4));
  EXPECT_EQ(r->pixels_per_class[1], 32);

  // 12x8 image cropped to its middle 8 columns: class 1 only in input
  // column 0, so original columns 0..2 are class 1.
  std::vector<float> crop_scores(2 * 64, 0.0f);
  for (int y = 0; y < 8; ++y) crop_scores[64 + y * 8] = 1.0f;
  ImageTransform crop = Identity(12, 8);
  crop.offset_x = -2;
  r = SegmentScores(Map(crop_scores, 2, 8, 8, 8, 8), crop, {}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  for (int x = 0; x < 12; ++x) EXPECT_EQ(r->mask.at<uint8_t>(3, x), x <= 2 ? 1 : 0) << x;
}

TEST(SegmentationTest, ProbabilitiesAndMinScore) {
  // One pixel, scores [0, 1, 2].
  const std::vector<float> scores = {0, 1, 2};
  SegmentationOptions o;
  auto r = SegmentScores(Map(scores, 3, 1, 1, 1, 1), Identity(1, 1), o, {2, 0});
  ASSERT_TRUE(r.ok()) << r.status();
  const double sum = 1 + std::exp(1.0) + std::exp(2.0);
  ASSERT_EQ(r->probabilities.size(), 2u);
  EXPECT_NEAR(r->probabilities[0].at<float>(0, 0), std::exp(2.0) / sum, 1e-6);
  EXPECT_NEAR(r->probabilities[1].at<float>(0, 0), 1 / sum, 1e-6);
  EXPECT_EQ(r->mask.at<uint8_t>(0, 0), 2);
  // The best class has 0.665: below 0.7 it becomes the background class.
  o.min_score = 0.7f;
  o.background_class = 1;
  r = SegmentScores(Map(scores, 3, 1, 1, 1, 1), Identity(1, 1), o, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mask.at<uint8_t>(0, 0), 1);
  o.activation = ScoreActivation::kSigmoid;  // sigmoid(2) = 0.88
  r = SegmentScores(Map(scores, 3, 1, 1, 1, 1), Identity(1, 1), o, {1});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mask.at<uint8_t>(0, 0), 2);
  EXPECT_NEAR(r->probabilities[0].at<float>(0, 0), 1 / (1 + std::exp(-1.0)), 1e-6);
}

TEST(SegmentationTest, MoreThan256ClassesGiveASixteenBitMask) {
  std::vector<float> scores(300, 0.0f);
  scores[299] = 1.0f;
  auto r = SegmentScores(Map(scores, 300, 1, 1, 1, 1), Identity(2, 2), {}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->mask.type(), CV_16UC1);
  EXPECT_EQ(r->mask.at<uint16_t>(1, 1), 299);
  EXPECT_EQ(r->pixels_per_class[299], 4);
}

TEST(SegmentationTest, RefusesWhatDoesNotFit) {
  const std::vector<float> scores(2 * 4, 0.0f);
  EXPECT_EQ(SegmentScores(Map(scores, 2, 2, 3, 2, 2), Identity(2, 2), {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SegmentScores(Map(scores, 2, 2, 2, 2, 2), Identity(2, 2), {}, {2}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SegmentScores(Map(scores, 2, 2, 2, 0, 2), Identity(2, 2), {}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  SegmentationOptions o;
  o.min_score = 1.5f;
  EXPECT_FALSE(ValidateSegmentationOptions(o, 2).ok());
  o.min_score = 0.5f;
  o.background_class = 2;
  EXPECT_FALSE(ValidateSegmentationOptions(o, 2).ok());
  o.background_class = 0;
  o.activation = ScoreActivation::kNone;
  EXPECT_FALSE(ValidateSegmentationOptions(o, 2).ok());
  o.activation = ScoreActivation::kSoftmax;
  EXPECT_TRUE(ValidateSegmentationOptions(o, 2).ok());
}

}  // namespace
}  // namespace rectifier::imaging
