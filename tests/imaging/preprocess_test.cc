#include "server/imaging/preprocess.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

namespace rectifier::imaging {
namespace {

PreprocessOptions RawOptions(int width, int height) {
  PreprocessOptions o;
  o.width = width;
  o.height = height;
  o.scale = 1.0f;  // Outputs in 0..255 units: easy to compare with pixels.
  return o;
}

TEST(PreprocessTest, LetterboxGeometryIsExact) {
  // 100x50 -> 64x64: r = 0.64, content 64x32, dh = 16: rows 16..47 content.
  cv::Mat image(50, 100, CV_8UC3, cv::Scalar(10, 20, 30));  // BGR
  PreprocessOptions o = RawOptions(64, 64);
  o.resize = ResizeMode::kLetterbox;
  std::vector<float> out(PreprocessOutputSize(o));
  auto t = Preprocess(image, o, absl::MakeSpan(out));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_DOUBLE_EQ(t->scale_x, 0.64);
  EXPECT_DOUBLE_EQ(t->scale_y, 0.64);
  EXPECT_DOUBLE_EQ(t->offset_x, 0.0);
  EXPECT_DOUBLE_EQ(t->offset_y, 16.0);
  const int plane = 64 * 64;
  for (int y = 0; y < 64; ++y) {
    const bool content = y >= 16 && y < 48;
    // RGB order: channel 0 is the red value 30.
    EXPECT_EQ(out[y * 64 + 5], content ? 30.0f : 114.0f) << y;
    EXPECT_EQ(out[plane + y * 64 + 5], content ? 20.0f : 114.0f) << y;
    EXPECT_EQ(out[2 * plane + y * 64 + 5], content ? 10.0f : 114.0f) << y;
  }
}

TEST(PreprocessTest, LetterboxOddPaddingFollowsUltralytics) {
  // 100x49 -> 64x64: content 64x31 (round(31.36)), dh = 16.5: top 16, bottom 17.
  cv::Mat image(49, 100, CV_8UC1, cv::Scalar(200));
  PreprocessOptions o = RawOptions(64, 64);
  o.channels = 1;
  o.color = ColorFormat::kGray;
  o.resize = ResizeMode::kLetterbox;
  std::vector<float> out(PreprocessOutputSize(o));
  auto t = Preprocess(image, o, absl::MakeSpan(out));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->offset_y, 16.0);
  EXPECT_EQ(out[15 * 64], 114.0f);
  EXPECT_EQ(out[16 * 64], 200.0f);
  EXPECT_EQ(out[46 * 64], 200.0f);
  EXPECT_EQ(out[47 * 64], 114.0f);
}

TEST(PreprocessTest, LetterboxRoundTripRecoversBoxWithinOnePixel) {
  // Letterbox 640x480 -> 320x320 and a reduced decode (1/2) both fold into
  // the transform: the box found in the input maps back to the original.
  for (int reduction : {1, 2}) {
    cv::Mat image(480 / reduction, 640 / reduction, CV_8UC3, cv::Scalar(0, 0, 0));
    const cv::Rect box(100, 50, 200, 150);  // Original pixels.
    cv::rectangle(image,
                  cv::Rect(box.x / reduction, box.y / reduction, box.width / reduction,
                           box.height / reduction),
                  cv::Scalar(255, 255, 255), cv::FILLED);
    PreprocessOptions o;
    o.width = 320;
    o.height = 320;
    o.resize = ResizeMode::kLetterbox;
    o.interpolation = Interpolation::kNearest;
    std::vector<float> out(PreprocessOutputSize(o));
    auto t = Preprocess(image, o, absl::MakeSpan(out), cv::Size(640, 480));
    ASSERT_TRUE(t.ok()) << t.status();
    int x1 = 320, y1 = 320, x2 = -1, y2 = -1;
    for (int y = 0; y < 320; ++y) {
      for (int x = 0; x < 320; ++x) {
        if (out[y * 320 + x] > 0.5f && out[y * 320 + x] < 0.99f) continue;  // Pad (114/255).
        if (out[y * 320 + x] > 0.99f) {
          x1 = std::min(x1, x);
          y1 = std::min(y1, y);
          x2 = std::max(x2, x + 1);
          y2 = std::max(y2, y + 1);
        }
      }
    }
    EXPECT_NEAR(t->ToOriginalX(x1), box.x, 1.0);
    EXPECT_NEAR(t->ToOriginalY(y1), box.y, 1.0);
    EXPECT_NEAR(t->ToOriginalX(x2), box.x + box.width, 1.0);
    EXPECT_NEAR(t->ToOriginalY(y2), box.y + box.height, 1.0);
  }
}

TEST(PreprocessTest, CenterCropIsExact) {
  // 9x6 gray, value x + 10y; shorter side 6 keeps the size; crop 4x4 starts at
  // left round(2.5) = 2 (half to even, like torchvision), top round(1.0) = 1.
  cv::Mat image(6, 9, CV_8UC1);
  for (int y = 0; y < 6; ++y) {
    for (int x = 0; x < 9; ++x) image.at<uchar>(y, x) = static_cast<uchar>(x + 10 * y);
  }
  PreprocessOptions o = RawOptions(4, 4);
  o.channels = 1;
  o.color = ColorFormat::kGray;
  o.resize = ResizeMode::kCenterCrop;
  o.resize_shorter = 6;
  o.interpolation = Interpolation::kNearest;
  std::vector<float> out(PreprocessOutputSize(o));
  auto t = Preprocess(image, o, absl::MakeSpan(out));
  ASSERT_TRUE(t.ok()) << t.status();
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) EXPECT_EQ(out[y * 4 + x], (x + 2) + 10 * (y + 1));
  }
  EXPECT_EQ(t->offset_x, -2.0);
  EXPECT_EQ(t->offset_y, -1.0);
  EXPECT_EQ(t->scale_x, 1.0);
}

TEST(PreprocessTest, CenterCropResizesShorterSideLikeTorchvision) {
  // 300x200 -> shorter side 256: 384x256 (int(256 * 300 / 200)), crop 224.
  cv::Mat image(200, 300, CV_8UC3, cv::Scalar(1, 2, 3));
  PreprocessOptions o;
  o.resize = ResizeMode::kCenterCrop;
  o.resize_shorter = 256;
  std::vector<float> out(PreprocessOutputSize(o));
  auto t = Preprocess(image, o, absl::MakeSpan(out));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_DOUBLE_EQ(t->scale_x, 384.0 / 300.0);
  EXPECT_DOUBLE_EQ(t->scale_y, 256.0 / 200.0);
  EXPECT_EQ(t->offset_x, -80.0);  // (384 - 224) / 2
  EXPECT_EQ(t->offset_y, -16.0);  // (256 - 224) / 2
}

TEST(PreprocessTest, NormalizationValuesInBothLayouts) {
  cv::Mat image(1, 1, CV_8UC3, cv::Scalar(0, 128, 255));  // B=0, G=128, R=255
  PreprocessOptions o;
  o.width = 2;
  o.height = 2;
  o.mean = {0.485f, 0.456f, 0.406f};
  o.std = {0.229f, 0.224f, 0.225f};
  const float r = (255 / 255.0f - 0.485f) / 0.229f;
  const float g = (128 / 255.0f - 0.456f) / 0.224f;
  const float b = (0 / 255.0f - 0.406f) / 0.225f;
  std::vector<float> out(PreprocessOutputSize(o));
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(out[i], r, 1e-5);
    EXPECT_NEAR(out[4 + i], g, 1e-5);
    EXPECT_NEAR(out[8 + i], b, 1e-5);
  }
  o.layout = Layout::kNhwc;
  o.color = ColorFormat::kBgr;
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());
  for (int i = 0; i < 4; ++i) {
    // BGR order with mean/std given in that same (output) order.
    EXPECT_NEAR(out[i * 3 + 0], (0 / 255.0f - 0.485f) / 0.229f, 1e-5);
    EXPECT_NEAR(out[i * 3 + 1], g, 1e-5);
    EXPECT_NEAR(out[i * 3 + 2], (255 / 255.0f - 0.406f) / 0.225f, 1e-5);
  }
}

TEST(PreprocessTest, GrayIsReplicatedToThreeChannels) {
  cv::Mat image(2, 2, CV_8UC1, cv::Scalar(51));
  PreprocessOptions o;
  o.width = 2;
  o.height = 2;
  o.color = ColorFormat::kGray;
  std::vector<float> out(PreprocessOutputSize(o));
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());
  for (float v : out) EXPECT_NEAR(v, 0.2f, 1e-6);
  // A colour image to GRAY uses the BT.601 weights.
  cv::Mat colour(2, 2, CV_8UC3, cv::Scalar(0, 0, 255));  // Pure red.
  ASSERT_TRUE(Preprocess(colour, o, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0], 76 / 255.0f, 1e-6);  // round(0.299 * 255)
}

TEST(PreprocessTest, SixteenBitModes) {
  cv::Mat image(1, 3, CV_16UC1);
  image.at<uint16_t>(0, 0) = 1000;
  image.at<uint16_t>(0, 1) = 2000;
  image.at<uint16_t>(0, 2) = 3000;
  PreprocessOptions o;
  o.width = 3;
  o.height = 1;
  o.channels = 1;
  o.color = ColorFormat::kGray;
  o.interpolation = Interpolation::kNearest;
  std::vector<float> out(3);
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());  // Min-max.
  EXPECT_NEAR(out[0], 0.0f, 1e-6);
  // Windowing runs on 16-bit data (before the resize), so a value lands on
  // the nearest of 65536 steps: within 0.5 / 65535 of exact.
  EXPECT_NEAR(out[1], 0.5f, 0.5 / 65535 + 1e-7);
  EXPECT_NEAR(out[2], 1.0f, 1e-6);

  o.sixteen_bit = SixteenBitMode::kWindow;
  o.window_center = 2500;
  o.window_width = 1000;  // 2000..3000
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[0], 0.0f, 1e-6);  // Clamped.
  EXPECT_NEAR(out[1], 0.0f, 1e-6);
  EXPECT_NEAR(out[2], 1.0f, 1e-6);

  o.sixteen_bit = SixteenBitMode::kFullRange;
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(out)).ok());
  EXPECT_NEAR(out[2], 3000.0f / 65535.0f, 1e-6);
}

// A 16384x4096 16-bit colour image letterboxed to 224x224: the window and
// the resize run on 16-bit data, in place for an image handed over, so
// nothing near the 805 MB of a full-size float copy is allocated.
TEST(PreprocessTest, LargeSixteenBitImageIsNotCopiedToFloat) {
  auto peak = [] {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return int64_t{usage.ru_maxrss} * 1024;
  };
  cv::Mat image(4096, 16384, CV_16UC3);
  cv::randu(image, 0, 65535);  // Touches every page.
  const cv::Mat original = image.clone();
  PreprocessOptions o;
  o.width = 224;
  o.height = 224;
  o.resize = ResizeMode::kLetterbox;
  o.sixteen_bit = SixteenBitMode::kMinMax;
  std::vector<float> by_copy(PreprocessOutputSize(o));
  std::vector<float> in_place(PreprocessOutputSize(o));
  // The const overload leaves the caller's image as it was.
  ASSERT_TRUE(Preprocess(image, o, absl::MakeSpan(by_copy)).ok());
  EXPECT_EQ(cv::norm(image, original, cv::NORM_INF), 0.0);
  const int64_t before = peak();
  ASSERT_TRUE(Preprocess(std::move(image), o, absl::MakeSpan(in_place)).ok());
  EXPECT_LT(peak() - before, int64_t{64} << 20);
  EXPECT_EQ(by_copy, in_place);
}

TEST(PreprocessTest, RejectsBadBuffersAndOptions) {
  cv::Mat image(4, 4, CV_8UC3, cv::Scalar(0));
  PreprocessOptions o;
  std::vector<float> wrong(10);
  EXPECT_EQ(Preprocess(image, o, absl::MakeSpan(wrong)).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.channels = 2;
  EXPECT_EQ(ValidatePreprocessOptions(o).code(), absl::StatusCode::kInvalidArgument);
  o.channels = 3;
  o.std = {1.0f, 0.0f, 1.0f};
  EXPECT_EQ(ValidatePreprocessOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreprocessTest, ExtremeAspectAndCropThatCannotFit) {
  cv::Mat strip(2000, 1, CV_8UC3, cv::Scalar(9, 9, 9));  // Would round to 0 px wide.
  PreprocessOptions o;
  o.width = 64;
  o.height = 64;
  o.resize = ResizeMode::kLetterbox;
  std::vector<float> out(PreprocessOutputSize(o));
  auto t = Preprocess(strip, o, absl::MakeSpan(out));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->offset_x, 31.0);  // 1 px of content centred: (64 - 1) / 2 -> round(31.4)
  o.resize = ResizeMode::kCenterCrop;
  o.width = 300;
  o.height = 200;
  o.resize_shorter = 250;  // A square image would give 250 x 250: too narrow.
  EXPECT_EQ(ValidatePreprocessOptions(o).code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreprocessTest, ScaledDecodeBoundsForLetterbox) {
  PreprocessOptions o;
  o.width = 640;
  o.height = 640;
  o.resize = ResizeMode::kLetterbox;
  const SideBounds b = ScaledDecodeBounds(o, 1920, 1080);
  EXPECT_EQ(b.min_short_side, 360);
  EXPECT_EQ(b.min_long_side, 640);
}

}  // namespace
}  // namespace rectifier::imaging
