#include "server/imaging/preprocess.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {
namespace {

int CvInterpolation(Interpolation interpolation) {
  switch (interpolation) {
    case Interpolation::kNearest:
      return cv::INTER_NEAREST;
    case Interpolation::kCubic:
      return cv::INTER_CUBIC;
    case Interpolation::kArea:
      return cv::INTER_AREA;
    case Interpolation::kLinear:
      break;
  }
  return cv::INTER_LINEAR;
}

// Python's round(): halves to even, as Ultralytics and torchvision compute.
int RoundHalfEven(double v) { return static_cast<int>(std::nearbyint(v)); }

// 16-bit input is windowed onto the full 16-bit range *before* the resize
// and converted to CV_32F 0..255 units after it, at the model's size: a
// full-size float copy of a large 16-bit image would cost 4x its pixels
// (see PreprocessOptions::scale). convertTo saturates, which is the clamp.
// Writes into `image` when `in_place`, else into a new 16-bit image.
cv::Mat WindowSixteenBit(cv::Mat& image, bool in_place, const PreprocessOptions& options) {
  double lo = 0.0;
  double hi = 65535.0;
  if (options.sixteen_bit == SixteenBitMode::kMinMax) {
    cv::minMaxLoc(image.reshape(1), &lo, &hi);
  } else if (options.sixteen_bit == SixteenBitMode::kWindow) {
    lo = options.window_center - options.window_width / 2.0;
    hi = options.window_center + options.window_width / 2.0;
  }
  if (lo == 0.0 && hi == 65535.0) return image;
  const double range = hi - lo;
  const double alpha = range > 0 ? 65535.0 / range : 0.0;
  cv::Mat out;
  image.convertTo(in_place ? image : out, CV_16U, alpha, -lo * alpha);
  return in_place ? image : out;
}

// Converts to the model's channel order and count. Input is 1 or 3 channels BGR.
cv::Mat ToColor(const cv::Mat& image, const PreprocessOptions& options) {
  cv::Mat out;
  const bool gray_in = image.channels() == 1;
  if (options.color == ColorFormat::kGray || options.channels == 1) {
    if (gray_in) {
      out = image;
    } else {
      cv::cvtColor(image, out, cv::COLOR_BGR2GRAY);
    }
    if (options.channels == 3) cv::cvtColor(out, out, cv::COLOR_GRAY2BGR);
    return out;
  }
  if (options.color == ColorFormat::kRgb) {
    cv::cvtColor(image, out, gray_in ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
  } else if (gray_in) {
    cv::cvtColor(image, out, cv::COLOR_GRAY2BGR);
  } else {
    out = image;
  }
  return out;
}

}  // namespace

absl::Status ValidatePreprocessOptions(const PreprocessOptions& options) {
  if (options.width <= 0 || options.height <= 0 || options.width > 16384 ||
      options.height > 16384) {
    return absl::InvalidArgumentError("preprocessing: width and height must be in 1..16384");
  }
  if (options.channels != 1 && options.channels != 3) {
    return absl::InvalidArgumentError("preprocessing: channels must be 1 or 3");
  }
  if (options.pad_value < 0 || options.pad_value > 255) {
    return absl::InvalidArgumentError("preprocessing: pad_value must be in 0..255");
  }
  if (options.resize_shorter < 0) {
    return absl::InvalidArgumentError("preprocessing: resize_shorter must be >= 0");
  }
  if (options.keep_size.enabled &&
      (options.resize != ResizeMode::kLetterbox || options.keep_size.long_side < 0 ||
       options.keep_size.long_side > 16384 || options.keep_size.pad_to_multiple < 1 ||
       options.keep_size.pad_to_multiple > std::min(options.width, options.height))) {
    return absl::InvalidArgumentError(
        "preprocessing: keep size needs letterbox placement, long_side in 0..16384 and "
        "pad_to_multiple between 1 and the smaller bound");
  }
  // With the shorter side at >= max(width, height) the crop always fits,
  // whatever the image's aspect ratio.
  if (options.resize == ResizeMode::kCenterCrop && options.resize_shorter > 0 &&
      options.resize_shorter < std::max(options.width, options.height)) {
    return absl::InvalidArgumentError(
        "preprocessing: resize_shorter must be at least the larger input side");
  }
  for (float s : options.std) {
    if (!(s != 0.0f) || !std::isfinite(s)) {
      return absl::InvalidArgumentError("preprocessing: std values must be finite and non-zero");
    }
  }
  if (!std::isfinite(options.scale)) {
    return absl::InvalidArgumentError("preprocessing: scale must be finite");
  }
  if (options.sixteen_bit == SixteenBitMode::kWindow && !(options.window_width > 0)) {
    return absl::InvalidArgumentError("preprocessing: window_width must be > 0 for WINDOW");
  }
  return absl::OkStatus();
}

PreprocessOptions ForImage(const PreprocessOptions& options, int width, int height) {
  if (!options.keep_size.enabled || width <= 0 || height <= 0) return options;
  PreprocessOptions o = options;
  const int m = std::max(1, options.keep_size.pad_to_multiple);
  // The bounds rounded down to the stride, so that padding never passes them.
  const int max_w = std::max(m, options.width / m * m);
  const int max_h = std::max(m, options.height / m * m);
  double s = options.keep_size.long_side > 0
                 ? static_cast<double>(options.keep_size.long_side) / std::max(width, height)
                 : 1.0;
  s = std::min({s, static_cast<double>(max_w) / width, static_cast<double>(max_h) / height});
  const auto side = [&](int length, int bound) {
    const int scaled = std::clamp(static_cast<int>(std::lround(length * s)), 1, bound);
    return std::min(bound, (scaled + m - 1) / m * m);
  };
  o.width = side(width, max_w);
  o.height = side(height, max_h);
  o.keep_size.scale = s;
  return o;
}

int64_t PreprocessOutputSize(const PreprocessOptions& options) {
  return int64_t{options.width} * options.height * options.channels;
}

SideBounds ScaledDecodeBounds(const PreprocessOptions& options, int width, int height) {
  auto needed = [&](int w, int h) -> cv::Size {
    switch (options.resize) {
      case ResizeMode::kStretch:
        return {options.width, options.height};
      case ResizeMode::kLetterbox: {
        const double r = std::min(static_cast<double>(options.width) / w,
                                  static_cast<double>(options.height) / h);
        return {static_cast<int>(std::ceil(w * r)), static_cast<int>(std::ceil(h * r))};
      }
      case ResizeMode::kCenterCrop: {
        const int target = options.resize_shorter > 0 ? options.resize_shorter
                                                      : std::max(options.width, options.height);
        const double r = static_cast<double>(target) / std::min(w, h);
        return {static_cast<int>(std::ceil(w * r)), static_cast<int>(std::ceil(h * r))};
      }
    }
    return {w, h};
  };
  const cv::Size a = needed(width, height);
  const cv::Size b = needed(height, width);
  // Each orientation needs its own (width, height); on the unrotated image
  // those are sides, so take the larger requirement for each side.
  const int short_a = std::min(a.width, a.height);
  const int long_a = std::max(a.width, a.height);
  const int short_b = std::min(b.width, b.height);
  const int long_b = std::max(b.width, b.height);
  return {std::max(short_a, short_b), std::max(long_a, long_b)};
}

namespace {
absl::StatusOr<ImageTransform> PreprocessImpl(cv::Mat& image, bool in_place,
                                              const PreprocessOptions& options,
                                              absl::Span<float> out, cv::Size original_size);
}  // namespace

absl::StatusOr<ImageTransform> Preprocess(const cv::Mat& image, const PreprocessOptions& options,
                                          absl::Span<float> out, cv::Size original_size) {
  cv::Mat shared = image;
  return PreprocessImpl(shared, /*in_place=*/false, options, out, original_size);
}

absl::StatusOr<ImageTransform> Preprocess(cv::Mat&& image, const PreprocessOptions& options,
                                          absl::Span<float> out, cv::Size original_size) {
  cv::Mat owned = std::move(image);
  return PreprocessImpl(owned, /*in_place=*/true, options, out, original_size);
}

namespace {

absl::Status CheckPreprocessInput(const cv::Mat& image, const PreprocessOptions& options,
                                  absl::Span<float> out) {
  RETURN_IF_ERROR(ValidatePreprocessOptions(options));
  if (image.empty()) return absl::InvalidArgumentError("preprocessing: empty image");
  if (image.depth() != CV_8U && image.depth() != CV_16U) {
    return absl::InvalidArgumentError("preprocessing: image must be 8- or 16-bit unsigned");
  }
  if (image.channels() != 1 && image.channels() != 3) {
    return absl::InvalidArgumentError("preprocessing: image must have 1 or 3 channels");
  }
  if (static_cast<int64_t>(out.size()) != PreprocessOutputSize(options)) {
    return absl::InvalidArgumentError(absl::StrCat("preprocessing: output holds ", out.size(),
                                                   " floats, expected ",
                                                   PreprocessOutputSize(options)));
  }
  return absl::OkStatus();
}

// Ultralytics LetterBox(auto=False, center=True): fit inside the target
// keeping the aspect ratio, pad the rest with pad_value.
cv::Mat Letterbox(const cv::Mat& src, bool sixteen, const PreprocessOptions& options,
                  int interpolation, cv::Size original_size, ImageTransform& transform) {
  const int dst_w = options.width;
  const int dst_h = options.height;
  double r = std::min(static_cast<double>(dst_w) / src.cols, static_cast<double>(dst_h) / src.rows);
  // Keep-size mode: the image's own scale (of the original; the decoder may
  // have reduced it already); the padding up to the stride stays padding.
  if (options.keep_size.enabled && options.keep_size.scale > 0) {
    r = std::min(r, options.keep_size.scale * original_size.width / src.cols);
  }
  // At least one pixel: a 1 x 10000 strip would otherwise round to 0.
  const int new_w = std::max(1, RoundHalfEven(src.cols * r));
  const int new_h = std::max(1, RoundHalfEven(src.rows * r));
  const double dw = (dst_w - new_w) / 2.0;
  const double dh = (dst_h - new_h) / 2.0;
  const int left = RoundHalfEven(dw - 0.1);
  const int right = RoundHalfEven(dw + 0.1);
  const int top = RoundHalfEven(dh - 0.1);
  const int bottom = RoundHalfEven(dh + 0.1);
  cv::Mat resized = src;
  if (new_w != src.cols || new_h != src.rows) {
    cv::resize(src, resized, cv::Size(new_w, new_h), 0, 0, interpolation);
  }
  // In 16-bit units until the conversion to float (x 65535 / 255).
  const double pad = sixteen ? options.pad_value * 257.0 : options.pad_value;
  cv::Mat canvas;
  cv::copyMakeBorder(resized, canvas, top, bottom, left, right, cv::BORDER_CONSTANT,
                     cv::Scalar(pad, pad, pad));
  // The exact scale of the resized content, not r: new_w was rounded.
  transform.scale_x = static_cast<double>(new_w) / original_size.width;
  transform.scale_y = static_cast<double>(new_h) / original_size.height;
  transform.offset_x = left;
  transform.offset_y = top;
  return canvas;
}

// torchvision Resize(int): shorter side -> target, longer side truncated;
// then CenterCrop rounds the crop origin.
cv::Mat CenterCrop(const cv::Mat& src, const PreprocessOptions& options, int interpolation,
                   cv::Size original_size, ImageTransform& transform) {
  const int dst_w = options.width;
  const int dst_h = options.height;
  const int target = options.resize_shorter > 0 ? options.resize_shorter : std::max(dst_w, dst_h);
  int new_w = target;
  int new_h = target;
  if (src.cols <= src.rows) {
    new_h = static_cast<int>(static_cast<int64_t>(target) * src.rows / src.cols);
  } else {
    new_w = static_cast<int>(static_cast<int64_t>(target) * src.cols / src.rows);
  }
  cv::Mat resized;
  cv::resize(src, resized, cv::Size(new_w, new_h), 0, 0, interpolation);
  const int crop_left = RoundHalfEven((new_w - dst_w) / 2.0);
  const int crop_top = RoundHalfEven((new_h - dst_h) / 2.0);
  transform.scale_x = static_cast<double>(new_w) / original_size.width;
  transform.scale_y = static_cast<double>(new_h) / original_size.height;
  transform.offset_x = -crop_left;
  transform.offset_y = -crop_top;
  return resized(cv::Rect(crop_left, crop_top, dst_w, dst_h));
}

// out = pixel * a[c] + b[c], a = scale / std, b = -mean / std, in the
// configured layout.
void Normalize(const cv::Mat& canvas, const PreprocessOptions& options, absl::Span<float> out) {
  const int channels = options.channels;
  const int dst_w = options.width;
  const int dst_h = options.height;
  float a[3];
  float b[3];
  for (int c = 0; c < 3; ++c) {
    a[c] = options.scale / options.std[c];
    b[c] = -options.mean[c] / options.std[c];
  }
  if (options.layout == Layout::kNchw) {
    std::vector<cv::Mat> planes;
    cv::split(canvas, planes);
    for (int c = 0; c < channels; ++c) {
      cv::Mat dst(dst_h, dst_w, CV_32F, out.data() + static_cast<int64_t>(c) * dst_w * dst_h);
      planes[c].convertTo(dst, CV_32F, a[c], b[c]);
    }
    return;
  }
  cv::Mat f;
  canvas.convertTo(f, CV_32F);
  for (int y = 0; y < dst_h; ++y) {
    const float* row = f.ptr<float>(y);
    float* dst = out.data() + static_cast<int64_t>(y) * dst_w * channels;
    for (int x = 0; x < dst_w * channels; x += channels) {
      for (int c = 0; c < channels; ++c) dst[x + c] = row[x + c] * a[c] + b[c];
    }
  }
}

absl::StatusOr<ImageTransform> PreprocessImpl(cv::Mat& image, bool in_place,
                                              const PreprocessOptions& options,
                                              absl::Span<float> out, cv::Size original_size) {
  RETURN_IF_ERROR(CheckPreprocessInput(image, options, out));
  if (original_size.empty()) original_size = image.size();
  const int interpolation = CvInterpolation(options.interpolation);
  ImageTransform transform;
  transform.original_width = original_size.width;
  transform.original_height = original_size.height;
  try {
    const bool sixteen = image.depth() == CV_16U;
    cv::Mat src = sixteen ? WindowSixteenBit(image, in_place, options) : image;
    cv::Mat canvas;
    switch (options.resize) {
      case ResizeMode::kStretch:
        cv::resize(src, canvas, cv::Size(options.width, options.height), 0, 0, interpolation);
        transform.scale_x = static_cast<double>(options.width) / original_size.width;
        transform.scale_y = static_cast<double>(options.height) / original_size.height;
        break;
      case ResizeMode::kLetterbox:
        canvas = Letterbox(src, sixteen, options, interpolation, original_size, transform);
        break;
      case ResizeMode::kCenterCrop:
        canvas = CenterCrop(src, options, interpolation, original_size, transform);
        break;
    }
    if (sixteen) canvas.convertTo(canvas, CV_32F, 255.0 / 65535.0);
    // Colour conversion runs on the (usually smaller) resized image; the
    // letterbox border is gray, so the order does not change it.
    canvas = ToColor(canvas, options);
    Normalize(canvas, options, out);
  } catch (const cv::Exception& e) {
    return absl::InternalError(absl::StrCat("preprocessing failed: ", e.what()));
  }
  return transform;
}

}  // namespace

std::string DescribePreprocessing(const PreprocessOptions& o) {
  const char* color = o.color == ColorFormat::kRgb   ? "RGB"
                      : o.color == ColorFormat::kBgr ? "BGR"
                                                     : "gray";
  const char* resize = o.resize == ResizeMode::kStretch     ? "stretch"
                       : o.resize == ResizeMode::kLetterbox ? "letterbox"
                                                            : "center crop";
  const char* interpolation = o.interpolation == Interpolation::kNearest  ? "nearest"
                              : o.interpolation == Interpolation::kLinear ? "linear"
                              : o.interpolation == Interpolation::kCubic  ? "cubic"
                                                                          : "area";
  const char* sixteen = o.sixteen_bit == SixteenBitMode::kMinMax   ? "min-max"
                        : o.sixteen_bit == SixteenBitMode::kWindow ? "window"
                                                                   : "full range";
  const std::string size =
      o.keep_size.enabled
          ? absl::StrCat("keep size (long side ",
                         o.keep_size.long_side > 0 ? absl::StrCat(o.keep_size.long_side)
                                                   : std::string("as is"),
                         ", padded to x", o.keep_size.pad_to_multiple, ", at most ", o.width, "x",
                         o.height, ")")
          : absl::StrCat(o.width, "x", o.height);
  return absl::StrCat(color, " ", size, " ", o.layout == Layout::kNchw ? "NCHW" : "NHWC", ", ",
                      o.keep_size.enabled ? "centred" : resize, " (", interpolation, "), x * ",
                      o.scale, ", mean [", absl::StrJoin(o.mean, ", "), "], std [",
                      absl::StrJoin(o.std, ", "), "], 16-bit ", sixteen);
}

}  // namespace rectifier::imaging
