#include "server/imaging/decode.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "tests/imaging/test_images.h"

namespace rectifier::imaging {
namespace {

using ::testing::HasSubstr;

double MaxAbsDiff(const cv::Mat& a, const cv::Mat& b) { return cv::norm(a, b, cv::NORM_INF); }

struct LosslessCase {
  const char* ext;
  ImageFormat format;
  int depth;
  int channels;
};

// Deterministic parameter text for test listings (the struct has padding).
void PrintTo(const LosslessCase& c, std::ostream* os) {
  *os << c.ext << " depth " << c.depth << " x" << c.channels;
}

class DecodeLosslessTest : public ::testing::TestWithParam<LosslessCase> {};

TEST_P(DecodeLosslessTest, RoundTripsExactly) {
  const LosslessCase& c = GetParam();
  const cv::Mat src =
      c.depth == CV_8U ? Gradient8(37, 23, c.channels) : Gradient16(37, 23, c.channels);
  std::vector<int> params;
  if (std::string(c.ext) == ".webp") params = {cv::IMWRITE_WEBP_QUALITY, 101};  // Lossless.
  const std::string bytes = Encode(src, c.ext, params);
  ASSERT_FALSE(bytes.empty());

  auto header = ProbeImageHeader(bytes);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->format, c.format);
  EXPECT_EQ(header->width, 37);
  EXPECT_EQ(header->height, 23);

  auto decoded = DecodeImage(bytes, DecodeOptions());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->format, c.format);
  EXPECT_EQ(decoded->image.depth(), c.depth);
  EXPECT_EQ(decoded->image.channels(), c.channels);
  EXPECT_EQ(decoded->original_width, 37);
  EXPECT_EQ(decoded->original_height, 23);
  EXPECT_EQ(MaxAbsDiff(decoded->image, src), 0.0);
}

INSTANTIATE_TEST_SUITE_P(Formats, DecodeLosslessTest,
                         ::testing::Values(LosslessCase{".png", ImageFormat::kPng, CV_8U, 3},
                                           LosslessCase{".png", ImageFormat::kPng, CV_8U, 1},
                                           LosslessCase{".png", ImageFormat::kPng, CV_16U, 1},
                                           LosslessCase{".png", ImageFormat::kPng, CV_16U, 3},
                                           LosslessCase{".bmp", ImageFormat::kBmp, CV_8U, 3},
                                           LosslessCase{".tiff", ImageFormat::kTiff, CV_8U, 3},
                                           LosslessCase{".tiff", ImageFormat::kTiff, CV_8U, 1},
                                           LosslessCase{".tiff", ImageFormat::kTiff, CV_16U, 1},
                                           LosslessCase{".tiff", ImageFormat::kTiff, CV_16U, 3},
                                           LosslessCase{".webp", ImageFormat::kWebp, CV_8U, 3},
                                           LosslessCase{".pgm", ImageFormat::kPnm, CV_8U, 1},
                                           LosslessCase{".pgm", ImageFormat::kPnm, CV_16U, 1},
                                           LosslessCase{".ppm", ImageFormat::kPnm, CV_8U, 3}),
                         [](const ::testing::TestParamInfo<LosslessCase>& info) {
                           return std::string(info.param.ext + 1) +
                                  (info.param.depth == CV_8U ? "8" : "16") + "c" +
                                  std::to_string(info.param.channels);
                         });

TEST(DecodeTest, JpegColourAndGrayAreClose) {
  for (int channels : {1, 3}) {
    cv::Mat src(48, 64, CV_8UC(channels), cv::Scalar(40, 120, 200));
    const std::string bytes = Encode(src, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 95});
    auto decoded = DecodeImage(bytes, DecodeOptions());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->format, ImageFormat::kJpeg);
    EXPECT_EQ(decoded->image.channels(), channels);
    EXPECT_EQ(decoded->image.size(), cv::Size(64, 48));
    EXPECT_LE(MaxAbsDiff(decoded->image, src), 3.0);
  }
}

TEST(DecodeTest, ProgressiveJpegAndLossyWebp) {
  const cv::Mat src(40, 50, CV_8UC3, cv::Scalar(40, 120, 200));
  for (const auto& [ext, params] :
       {std::pair<std::string, std::vector<int>>{".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
        std::pair<std::string, std::vector<int>>{".webp", {cv::IMWRITE_WEBP_QUALITY, 90}}}) {
    const std::string bytes = Encode(src, ext, params);
    auto header = ProbeImageHeader(bytes);
    ASSERT_TRUE(header.ok()) << header.status();
    EXPECT_EQ(header->width, 50) << ext;
    EXPECT_EQ(header->height, 40) << ext;
    auto decoded = DecodeImage(bytes, DecodeOptions());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_LE(MaxAbsDiff(decoded->image, src), 4.0) << ext;
  }
}

TEST(DecodeTest, AlphaIsDropped) {
  cv::Mat src(10, 12, CV_8UC4, cv::Scalar(10, 20, 30, 77));
  auto decoded = DecodeImage(Encode(src, ".png"), DecodeOptions());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_EQ(decoded->image.channels(), 3);
  EXPECT_EQ(decoded->image.at<cv::Vec3b>(5, 5), cv::Vec3b(10, 20, 30));
}

// APP1 "Exif" segment holding one IFD0 entry: Orientation (0x0112) = value.
std::string WithExifOrientation(const std::string& jpeg, int orientation) {
  const std::string app1 =
      std::string("\xFF\xE1\x00\x22", 4) + std::string("Exif\0\0", 6) +
      std::string("MM\x00\x2A\x00\x00\x00\x08", 8) + std::string("\x00\x01", 2) +
      std::string("\x01\x12\x00\x03\x00\x00\x00\x01", 8) + std::string(1, '\0') +
      std::string(1, static_cast<char>(orientation)) + std::string(2, '\0') + std::string(4, '\0');
  return jpeg.substr(0, 2) + app1 + jpeg.substr(2);
}

TEST(DecodeTest, ExifOrientationIsApplied) {
  // 40x20: left half black, right half white.
  cv::Mat src(20, 40, CV_8UC1, cv::Scalar(0));
  src(cv::Rect(20, 0, 20, 20)).setTo(255);
  const std::string bytes =
      WithExifOrientation(Encode(src, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 100}), 6);

  auto rotated = DecodeImage(bytes, DecodeOptions());
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  // Orientation 6: rotate 90 degrees clockwise to display, so the left
  // (black) half ends up on top.
  ASSERT_EQ(rotated->image.size(), cv::Size(20, 40));
  EXPECT_EQ(rotated->original_width, 20);
  EXPECT_EQ(rotated->original_height, 40);
  EXPECT_LT(rotated->image.at<uchar>(5, 10), 30);
  EXPECT_GT(rotated->image.at<uchar>(35, 10), 225);

  DecodeOptions raw;
  raw.apply_exif_orientation = false;
  auto unrotated = DecodeImage(bytes, raw);
  ASSERT_TRUE(unrotated.ok()) << unrotated.status();
  EXPECT_EQ(unrotated->image.size(), cv::Size(40, 20));
}

TEST(DecodeTest, ScaledJpegDecodeKeepsRequiredSides) {
  const cv::Mat src = Gradient8(1600, 1200, 3);
  const std::string bytes = Encode(src, ".jpg");
  DecodeOptions options;
  options.min_short_side = 300;
  options.min_long_side = 400;
  auto decoded = DecodeImage(bytes, options);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->reduction, 4);
  EXPECT_EQ(decoded->image.size(), cv::Size(400, 300));
  EXPECT_EQ(decoded->original_width, 1600);
  EXPECT_EQ(decoded->original_height, 1200);

  options.min_short_side = 301;  // 1/4 would give 300: only 1/2 qualifies.
  decoded = DecodeImage(bytes, options);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->reduction, 2);
  EXPECT_EQ(decoded->image.size(), cv::Size(800, 600));
}

std::string PngClaiming(uint32_t width, uint32_t height) {
  std::string s("\x89PNG\r\n\x1a\n", 8);
  s += std::string("\x00\x00\x00\x0DIHDR", 8);
  for (uint32_t v : {width, height}) {
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xFF);
  }
  s += std::string("\x08\x02\x00\x00\x00", 5);
  s += std::string("\x00\x00\x00\x00", 4);  // CRC (never checked: refused first).
  s += std::string("\x00\x00\x00\x00IEND\xAE\x42\x60\x82", 12);
  return s;
}

// libjpeg skips bytes other than 0xFF before a marker. 12 such bytes after
// APP0 that read like a 16x16 SOF0 used to fool the header probe, so a real
// 20000x20000 SOF0 behind them was decoded (+382 MB) past the limits.
std::string WithJunkAfterApp0(const std::string& jpeg) {
  EXPECT_EQ(static_cast<unsigned char>(jpeg[2]), 0xFF);
  EXPECT_EQ(static_cast<unsigned char>(jpeg[3]), 0xE0);  // APP0 (JFIF) first.
  const size_t app0_end =
      4 + ((static_cast<unsigned char>(jpeg[4]) << 8) | static_cast<unsigned char>(jpeg[5]));
  const std::string junk("\xC0\x00\x11\x08\x00\x10\x00\x10\x03\x01\x22\x00", 12);
  return jpeg.substr(0, app0_end) + junk + jpeg.substr(app0_end);
}

std::string WithSofSize(std::string jpeg, int width, int height) {
  const size_t sof = jpeg.find("\xFF\xC0");
  EXPECT_NE(sof, std::string::npos);
  jpeg[sof + 5] = static_cast<char>(height >> 8);
  jpeg[sof + 6] = static_cast<char>(height & 0xFF);
  jpeg[sof + 7] = static_cast<char>(width >> 8);
  jpeg[sof + 8] = static_cast<char>(width & 0xFF);
  return jpeg;
}

TEST(DecodeTest, JpegProbeSkipsJunkBeforeMarkersAsLibjpegDoes) {
  const std::string jpeg = WithJunkAfterApp0(Encode(Gradient8(64, 48, 3), ".jpg"));
  auto header = ProbeImageHeader(jpeg);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->width, 64);
  EXPECT_EQ(header->height, 48);
  auto decoded = DecodeImage(jpeg, DecodeOptions());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->image.cols, 64);  // What the probe said is what was decoded.
  EXPECT_EQ(decoded->image.rows, 48);

  const std::string bomb = WithSofSize(jpeg, 20000, 20000);
  auto refused = DecodeImage(bomb, DecodeOptions());
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("20000x20000"));
}

// A hand-made little-endian TIFF whose first IFD holds `entries`
// (tag, value) as LONGs.
std::string TiffWith(const std::vector<std::pair<uint16_t, uint32_t>>& entries) {
  std::string s("II\x2A\x00\x08\x00\x00\x00", 8);
  auto u16 = [&](uint32_t v) { s += static_cast<char>(v & 0xFF), s += static_cast<char>(v >> 8); };
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  u16(static_cast<uint32_t>(entries.size()));
  for (const auto& [tag, value] : entries) {
    u16(tag);
    u16(4);  // LONG
    u32(1);
    u32(value);
  }
  u32(0);
  s += std::string(64, '\0');
  return s;
}

TEST(DecodeTest, TiffWithRepeatedSizeTagsIsRefused) {
  // libtiff keeps the first ImageWidth (20000), the old probe the last (16).
  const std::string tiff =
      TiffWith({{256, 20000}, {257, 20000}, {256, 16}, {257, 16}, {258, 8}, {277, 1}});
  auto decoded = DecodeImage(tiff, DecodeOptions());
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("given twice"));
  // Tiles far beyond the image are refused too (their buffers are tile-sized).
  auto tiled = DecodeImage(TiffWith({{256, 16}, {257, 16}, {322, 1 << 20}, {323, 1 << 20}}),
                           DecodeOptions());
  ASSERT_EQ(tiled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tiled.status().message(), HasSubstr("tile size"));
  // An ordinary TIFF (OpenCV writes strips) still decodes.
  auto normal = DecodeImage(Encode(Gradient8(40, 30, 3), ".tiff"), DecodeOptions());
  EXPECT_TRUE(normal.ok()) << normal.status();
}

TEST(DecodeTest, OpenCvPixelLimitIsSetAsABackstop) {
  ASSERT_TRUE(DecodeImage(Encode(Gradient8(8, 8, 1), ".png"), DecodeOptions()).ok());
  const char* limit = std::getenv("OPENCV_IO_MAX_IMAGE_PIXELS");
  ASSERT_NE(limit, nullptr);
  EXPECT_EQ(std::string(limit), std::to_string(DecodeOptions().max_pixels));
}

TEST(DecodeTest, GiantHeaderIsRefusedBeforeDecoding) {
  auto decoded = DecodeImage(PngClaiming(100000, 100000), DecodeOptions());
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("100000x100000"));

  DecodeOptions small;
  small.max_pixels = 1000;
  auto refused = DecodeImage(Encode(Gradient8(40, 40, 3), ".png"), small);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("40x40"));
}

TEST(DecodeTest, DecompressionBombIsRefusedBeforeDecoding) {
  const std::string bomb = WebpBomb();
  auto header = ProbeImageHeader(bomb);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->width, 15625);
  EXPECT_EQ(header->height, 4096);
  // Within every size limit: only the pixels per byte refuse it.
  DecodeOptions no_ratio;
  no_ratio.max_pixels_per_byte = 0;
  EXPECT_TRUE(CheckImageSize(*header, no_ratio, bomb.size()).ok());

  auto decoded = DecodeImage(bomb, DecodeOptions());
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("15625x4096 (64000000 pixels) in 32 bytes"));
  EXPECT_THAT(decoded.status().message(), HasSubstr("16384 pixels per encoded byte"));
}

TEST(DecodeTest, PixelsPerByteLimit) {
  const ImageHeader header{ImageFormat::kPng, 100, 100, 1};
  DecodeOptions options;
  options.ratio_exempt_pixels = 0;
  options.max_pixels_per_byte = 100;
  EXPECT_TRUE(CheckImageSize(header, options, 100).ok());  // 10000 pixels, at the limit
  EXPECT_EQ(CheckImageSize(header, options, 99).code(), absl::StatusCode::kInvalidArgument);
  options.ratio_exempt_pixels = 10000;  // not above the exemption: any size
  EXPECT_TRUE(CheckImageSize(header, options, 1).ok());

  // A one-colour image compresses far below a noisy one.
  const cv::Mat solid(64, 64, CV_8UC3, cv::Scalar(40, 80, 120));
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(256));
  DecodeOptions strict;
  strict.ratio_exempt_pixels = 0;
  strict.max_pixels_per_byte = 8;
  const std::string solid_png = Encode(solid, ".png");
  ASSERT_GT(64 * 64, 8 * static_cast<int64_t>(solid_png.size()));
  auto refused = DecodeImage(solid_png, strict);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("pixels per encoded byte"));
  EXPECT_TRUE(DecodeImage(Encode(noise, ".png"), strict).ok());

  // The defaults: a one-colour lossless WebP of 1 Mi pixels is exempt.
  const cv::Mat big_solid(1024, 1024, CV_8UC3, cv::Scalar(10, 20, 30));
  const std::string webp = Encode(big_solid, ".webp", {cv::IMWRITE_WEBP_QUALITY, 101});
  auto exempt = DecodeImage(webp, DecodeOptions());
  ASSERT_TRUE(exempt.ok()) << exempt.status() << " (" << webp.size() << " bytes)";
  EXPECT_EQ(exempt->image.cols, 1024);
}

TEST(DecodeTest, EncodedByteLimit) {
  DecodeOptions options;
  options.max_encoded_bytes = 100;
  auto decoded = DecodeImage(Encode(Gradient8(40, 40, 3), ".bmp"), options);
  ASSERT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(decoded.status().message(), HasSubstr("over the limit"));
}

TEST(DecodeTest, EmptyZeroAndRandomBytesAreInvalid) {
  EXPECT_EQ(DecodeImage("", DecodeOptions()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(DecodeImage(std::string(256, '\0'), DecodeOptions()).status().message(),
              HasSubstr("unrecognized image format"));
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string bytes(rng() % 2048, '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    EXPECT_FALSE(DecodeImage(bytes, DecodeOptions()).ok());
  }
}

TEST(DecodeTest, TruncatedDataIsInvalidForEveryFormat) {
  const cv::Mat src = Gradient8(64, 48, 3);
  for (const char* ext : {".jpg", ".png", ".bmp", ".tiff", ".webp", ".ppm"}) {
    const std::string bytes = Encode(src, ext);
    for (size_t keep : {bytes.size() / 2, bytes.size() - 3, size_t{20}, size_t{5}}) {
      auto decoded = DecodeImage(bytes.substr(0, keep), DecodeOptions());
      EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument)
          << ext << " cut to " << keep << " bytes";
    }
  }
}

// Flipped bytes inside otherwise valid files: any status is fine, a crash or
// an exception is not. Limits keep hostile dimensions cheap.
TEST(DecodeTest, CorruptedFilesNeverCrash) {
  DecodeOptions options;
  options.max_pixels = 1 << 20;
  options.max_width = 2048;
  options.max_height = 2048;
  std::mt19937 rng(11);
  const cv::Mat src = Gradient8(32, 24, 3);
  for (const char* ext : {".jpg", ".png", ".bmp", ".tiff", ".webp", ".ppm"}) {
    const std::string bytes = Encode(src, ext);
    for (int i = 0; i < 40; ++i) {
      std::string corrupt = bytes;
      for (int k = 0; k < 4; ++k) corrupt[rng() % corrupt.size()] = static_cast<char>(rng());
      auto decoded = DecodeImage(corrupt, options);
      if (decoded.ok()) {
        EXPECT_FALSE(decoded->image.empty());
      } else {
        EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << ext;
      }
    }
  }
}

}  // namespace
}  // namespace rectifier::imaging
