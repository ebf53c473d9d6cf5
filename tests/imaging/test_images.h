// Helpers shared by the imaging tests: synthetic images and encoders.
#ifndef RECTIFIER_TESTS_IMAGING_TEST_IMAGES_H_
#define RECTIFIER_TESTS_IMAGING_TEST_IMAGES_H_

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <string>
#include <vector>

namespace rectifier::imaging {

// A BGR gradient whose every pixel differs from its neighbours.
inline cv::Mat Gradient8(int width, int height, int channels) {
  cv::Mat m(height, width, CV_8UC(channels));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        m.ptr<uchar>(y)[x * channels + c] = static_cast<uchar>((x * 3 + y * 7 + c * 50) % 256);
      }
    }
  }
  return m;
}

inline cv::Mat Gradient16(int width, int height, int channels) {
  cv::Mat m(height, width, CV_16UC(channels));
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        m.ptr<uint16_t>(y)[x * channels + c] =
            static_cast<uint16_t>((x * 1031 + y * 257 + c * 9000) % 65536);
      }
    }
  }
  return m;
}

inline std::string Encode(const cv::Mat& image, const std::string& ext,
                          const std::vector<int>& params = {}) {
  std::vector<uchar> buf;
  cv::imencode(ext, image, buf, params);
  return std::string(buf.begin(), buf.end());
}

// 32 bytes of lossless WebP (VP8L) declaring 15625x4096 pixels, inside every
// size limit: libwebp decodes it, in 2.4 s and 560 MB (found by
// vision_request_fuzz; refused by DecodeOptions::max_pixels_per_byte).
inline std::string WebpBomb() {
  return std::string(
      "RIFF\x18\x00\x00\x00WEBPVP8L\x0b\x00\x00\x00"
      "\x2f\x08\xfd\xff\x13\x88\xfe\x17\xa2\x80\x01\x00",
      32);
}

}  // namespace rectifier::imaging

#endif  // RECTIFIER_TESTS_IMAGING_TEST_IMAGES_H_
