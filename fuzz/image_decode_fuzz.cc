// libFuzzer target: untrusted encoded image bytes (JPEG, PNG, BMP, TIFF, WebP,
// PGM/PPM) through ProbeImageHeader and DecodeImage with the server's limits.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_models.h"
#include "server/imaging/decode.h"

namespace {

using rectifier::imaging::DecodedImage;
using rectifier::imaging::DecodeOptions;

// The contract decode.h states for a successful decode.
void CheckDecoded(const DecodedImage& d, const DecodeOptions& options) {
  RECTIFIER_FUZZ_CHECK(!d.image.empty());
  RECTIFIER_FUZZ_CHECK(d.image.depth() == CV_8U || d.image.depth() == CV_16U);
  RECTIFIER_FUZZ_CHECK(d.image.channels() == 1 || d.image.channels() == 3);
  RECTIFIER_FUZZ_CHECK(d.reduction == 1 || d.reduction == 2 || d.reduction == 4 ||
                       d.reduction == 8);
  RECTIFIER_FUZZ_CHECK(d.original_width > 0 && d.original_height > 0);
  RECTIFIER_FUZZ_CHECK(int64_t{d.original_width} * d.original_height <= options.max_pixels);
  RECTIFIER_FUZZ_CHECK(int64_t{d.image.cols} * d.image.rows <= options.max_pixels);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto header = rectifier::imaging::ProbeImageHeader(bytes);
  DecodeOptions options;  // the server's defaults (decode.h)
  rectifier::fuzz::Report("ProbeImageHeader", header.status());
  auto decoded = rectifier::imaging::DecodeImage(bytes, options);
  rectifier::fuzz::Report("DecodeImage", decoded.status());
  if (decoded.ok()) CheckDecoded(*decoded, options);
  // JPEG also takes the scaled (IMREAD_REDUCED_*) path when a model input is
  // much smaller than the image.
  if (header.ok() && header->format == rectifier::imaging::ImageFormat::kJpeg) {
    options.min_short_side = 8;
    options.min_long_side = 8;
    auto scaled = rectifier::imaging::DecodeImage(bytes, options);
    rectifier::fuzz::Report("DecodeImage (scaled)", scaled.status());
    if (scaled.ok()) CheckDecoded(*scaled, options);
  }
  return 0;
}
