// Image decoding (JPEG, PNG, BMP, TIFF, WebP, PGM/PPM) with size limits checked from the header.
#ifndef RECTIFIER_SERVER_IMAGING_DECODE_H_
#define RECTIFIER_SERVER_IMAGING_DECODE_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string_view>

#include "absl/status/statusor.h"

namespace rectifier::imaging {

enum class ImageFormat { kUnknown, kJpeg, kPng, kBmp, kTiff, kWebp, kPnm };

const char* ImageFormatName(ImageFormat format);

// What the header says, read without decoding pixels.
struct ImageHeader {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0;
  int height = 0;
  int channels = 0;  // 0 when the header does not say cheaply.
};

struct DecodeOptions {
  // Refused before anything is decoded.
  int64_t max_encoded_bytes = 64LL << 20;
  int max_width = 16384;
  int max_height = 16384;
  int64_t max_pixels = 64LL << 20;
  // Decompression bombs: an image of more than ratio_exempt_pixels may
  // declare at most max_pixels_per_byte pixels per byte of its encoding
  // (0: no limit). 16384 is twice what deflate reaches on a one-colour
  // 1-bit PNG or TIFF (1032:1, 8256 pixels a byte); lossless WebP declares
  // 64 Mi pixels in 32 bytes, which take seconds and hundreds of MiB to
  // decode (docs/IMAGING.md).
  int64_t max_pixels_per_byte = 16384;
  int64_t ratio_exempt_pixels = 1LL << 20;
  // JPEG only: libjpeg may decode at 1/2, 1/4 or 1/8 scale (IMREAD_REDUCED_*)
  // as long as the result keeps a shorter side >= min_short_side and a longer
  // side >= min_long_side. Sides, not width/height, because EXIF orientation
  // is only known after decoding. 0 and 0 disable scaled decoding. See
  // ScaledDecodeBounds() in preprocess.h for the values a model input needs.
  int min_short_side = 0;
  int min_long_side = 0;
  // Apply the EXIF Orientation tag (JPEG; OpenCV also honours it in others).
  bool apply_exif_orientation = true;
};

struct DecodedImage {
  // CV_8U or CV_16U; 1 channel (gray) or 3 channels in OpenCV's BGR order.
  // Alpha is dropped.
  cv::Mat image;
  ImageFormat format = ImageFormat::kUnknown;
  // Size of the full-resolution image after orientation; differs from
  // image.size() when reduction > 1.
  int original_width = 0;
  int original_height = 0;
  int reduction = 1;  // 1, 2, 4 or 8.
};

// Reads format and dimensions from the first bytes. INVALID_ARGUMENT for an
// unrecognized format or a malformed/truncated header. Never allocates
// in proportion to the claimed size.
absl::StatusOr<ImageHeader> ProbeImageHeader(std::string_view bytes);

// INVALID_ARGUMENT naming the size and the limits when `header`'s image is
// larger than options' max_width, max_height or max_pixels (or not
// positive), or declares more pixels than options allow for its
// `encoded_bytes` (max_pixels_per_byte).
absl::Status CheckImageSize(const ImageHeader& header, const DecodeOptions& options,
                            size_t encoded_bytes);

// The scale (1, 2, 4 or 8) DecodeImage decodes `header`'s image at: JPEG
// only, the largest that keeps options' min_short_side / min_long_side.
int JpegReduction(const ImageHeader& header, const DecodeOptions& options);

// Sets OpenCV's own decoder pixel limit (OPENCV_IO_MAX_IMAGE_PIXELS) to
// DecodeOptions' default max_pixels, unless the environment already sets
// it: a backstop behind the header checks, for any header the probe and the
// decoder might read differently. Thread-safe; the server calls it at start,
// DecodeImage on first use (OpenCV reads the variable at its first decode).
void InstallDecoderPixelLimit();

// Decodes `bytes`. INVALID_ARGUMENT (naming the reason) for oversize, truncated
// or undecodable data, unsupported sample types (float TIFF). Thread-safe;
// never throws.
absl::StatusOr<DecodedImage> DecodeImage(std::string_view bytes, const DecodeOptions& options);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_DECODE_H_
