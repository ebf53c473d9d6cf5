// Preprocessing: decoded image -> one batch item of a model's float input tensor.
#ifndef RECTIFIER_SERVER_IMAGING_PREPROCESS_H_
#define RECTIFIER_SERVER_IMAGING_PREPROCESS_H_

#include <array>
#include <cstdint>
#include <opencv2/core.hpp>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "server/imaging/transform.h"

namespace rectifier::imaging {

enum class ColorFormat { kRgb, kBgr, kGray };
enum class ResizeMode {
  kStretch,     // Both axes to the input size; aspect not kept.
  kLetterbox,   // Ultralytics LetterBox: fit, centre, pad with pad_value.
  kCenterCrop,  // torchvision Resize(shorter side) + CenterCrop(height, width).
};
enum class Interpolation { kNearest, kLinear, kCubic, kArea };
enum class SixteenBitMode {
  kMinMax,     // The image's own min..max -> [0, 1].
  kWindow,     // window_center/window_width (DICOM linear window) -> [0, 1].
  kFullRange,  // 0..65535 -> [0, 1].
};
enum class Layout { kNchw, kNhwc };

struct PreprocessOptions {
  int width = 224;   // Model input width.
  int height = 224;  // Model input height.
  int channels = 3;  // 1 or 3. GRAY with 3 channels replicates the gray plane.
  ColorFormat color = ColorFormat::kRgb;
  ResizeMode resize = ResizeMode::kStretch;
  Interpolation interpolation = Interpolation::kLinear;
  int pad_value = 114;  // Letterbox border, in 8-bit units.
  // kCenterCrop: shorter side before the crop; >= max(width, height) so the
  // crop always fits; 0 = max(width, height).
  int resize_shorter = 0;
  // out[c] = (pixel * scale - mean[c]) / std[c], with pixel in 0..255 units and
  // c in output channel order (RGB order for kRgb). A 16-bit image is first
  // mapped to [0, 1] by `sixteen_bit` and then treated as 0..255 with full
  // precision, so the same scale/mean/std serve 8- and 16-bit inputs.
  float scale = 1.0f / 255.0f;
  std::array<float, 3> mean = {0.0f, 0.0f, 0.0f};
  std::array<float, 3> std = {1.0f, 1.0f, 1.0f};
  SixteenBitMode sixteen_bit = SixteenBitMode::kMinMax;
  double window_center = 0.0;  // kWindow only, in stored 16-bit units.
  double window_width = 0.0;
  Layout layout = Layout::kNchw;
  // Keep-size mode (RESIZE_KEEP_SIZE, models with dynamic height and
  // width): `width` and `height` above are then the largest input allowed,
  // `resize` is kLetterbox, and ForImage() gives each image its own size.
  struct KeepSize {
    bool enabled = false;
    int long_side = 0;         // the image's longer side scaled to this; 0: its own size
    int pad_to_multiple = 32;  // each side padded up to a multiple of this
    // Set by ForImage: the image's scale (from its original size). The
    // letterbox scales by this, not by what would fill the padded input.
    double scale = 0.0;
  };
  KeepSize keep_size;
};

// The options for one image of `width` x `height` (after decoding): in
// keep-size mode, width and height become the image's size scaled so that
// its longer side is keep_size.long_side (or not scaled), lowered to fit
// the bounds in `options.width` x `options.height`, each rounded up to a
// multiple of pad_to_multiple; the letterbox then centres the image in
// that. Otherwise `options` unchanged.
PreprocessOptions ForImage(const PreprocessOptions& options, int width, int height);

// INVALID_ARGUMENT naming the offending option.
absl::Status ValidatePreprocessOptions(const PreprocessOptions& options);

// One line saying what happens to an image, e.g. "RGB 224x224 NCHW, stretch
// (linear), x * 0.00392157, mean [0, 0, 0], std [1, 1, 1], 16-bit min-max".
std::string DescribePreprocessing(const PreprocessOptions& options);

// Floats one batch item needs: width * height * channels.
int64_t PreprocessOutputSize(const PreprocessOptions& options);

// Sides the decoded image must keep for this preprocessing not to upsample an
// image of original size `width` x `height` (either orientation), for
// DecodeOptions::min_short_side / min_long_side.
struct SideBounds {
  int min_short_side = 0;
  int min_long_side = 0;
};
SideBounds ScaledDecodeBounds(const PreprocessOptions& options, int width, int height);

// Writes `image` (CV_8U/CV_16U, 1 or 3 channels, BGR) into `out`, which must
// hold exactly PreprocessOutputSize() floats. `original_size` is the size the
// returned transform maps back to (the client's image); empty means
// image.size(). Thread-safe; never throws.
//
// 16-bit images are windowed (SixteenBitMode) on 16-bit data, resized, and
// only then converted to float, so no full-size float copy is made; the
// rvalue overload windows in place, without even a 16-bit copy.
absl::StatusOr<ImageTransform> Preprocess(const cv::Mat& image, const PreprocessOptions& options,
                                          absl::Span<float> out,
                                          cv::Size original_size = cv::Size());
absl::StatusOr<ImageTransform> Preprocess(cv::Mat&& image, const PreprocessOptions& options,
                                          absl::Span<float> out,
                                          cv::Size original_size = cv::Size());

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_PREPROCESS_H_
