// libFuzzer target: untrusted DICOM Part 10 bytes through DecodeDicom (every
// transfer syntax DCMTK decodes here: native, deflated, RLE, JPEG, JPEG-LS).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_models.h"
#include "server/imaging/dicom.h"

namespace {

using rectifier::imaging::DicomImageResult;
using rectifier::imaging::DicomOptions;

void CheckDecoded(const DicomImageResult& r, const DicomOptions& options) {
  const int depth = options.output_bits == 8 ? CV_8U : CV_16U;
  RECTIFIER_FUZZ_CHECK(!r.image.empty());
  RECTIFIER_FUZZ_CHECK(r.image.depth() == depth);
  RECTIFIER_FUZZ_CHECK(r.image.channels() == 1 || r.image.channels() == 3);
  RECTIFIER_FUZZ_CHECK(r.image.rows == r.report.rows && r.image.cols == r.report.columns);
  RECTIFIER_FUZZ_CHECK(int64_t{r.report.rows} * r.report.columns <= options.max_pixels);
  RECTIFIER_FUZZ_CHECK(r.report.frame >= 0 && r.report.frame < r.report.frame_count);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)rectifier::imaging::LooksLikeDicom(bytes);
  DicomOptions options;  // the server's defaults: the file's window, 16 bits
  auto result = rectifier::imaging::DecodeDicom(bytes, options);
  rectifier::fuzz::Report("DecodeDicom", result.status());
  if (!result.ok()) return 0;
  CheckDecoded(*result, options);
  // What a request can override: min-max window, 8-bit output, another frame.
  options.window = rectifier::imaging::WindowSource::kMinMax;
  options.output_bits = 8;
  options.frame = result->report.frame_count > 1 ? 1 : 0;
  auto again = rectifier::imaging::DecodeDicom(bytes, options);
  rectifier::fuzz::Report("DecodeDicom (min-max, 8 bits)", again.status());
  if (again.ok()) CheckDecoded(*again, options);
  return 0;
}
