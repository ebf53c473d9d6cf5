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

}  // namespace rectifier::imaging

#endif  // RECTIFIER_TESTS_IMAGING_TEST_IMAGES_H_
