// DICOM decoding with DCMTK: pixel codecs, modality LUT, VOI windowing, frame selection.
#ifndef RECTIFIER_SERVER_IMAGING_DICOM_H_
#define RECTIFIER_SERVER_IMAGING_DICOM_H_

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/imaging/dicom_scan.h"

namespace rectifier::imaging {

enum class WindowSource {
  kFile,    // The file's first WindowCenter/Width; min-max when it has none.
  kMinMax,  // Min..max of the chosen frame's modality values.
  kCaller,  // DicomOptions::window_center / window_width.
};

struct DicomOptions {
  int64_t max_encoded_bytes = 256LL << 20;
  int64_t max_pixels = 64LL << 20;  // Rows x Columns of one frame.
  // All frames' pixel bytes as the header declares them (this bounds what a
  // deflated file may inflate to).
  int64_t max_pixel_bytes = 256LL << 20;
  int frame = 0;  // 0-based frame of a multi-frame object.
  WindowSource window = WindowSource::kFile;
  // kCaller only; in modality units (after RescaleSlope/Intercept, e.g. HU).
  double window_center = 0.0;
  double window_width = 0.0;
  int output_bits = 16;  // 8 (CV_8U) or 16 (CV_16U), full range after the window.
};

// What was found and what was applied.
struct DicomReport {
  int rows = 0;
  int columns = 0;
  std::string modality;
  std::string photometric;  // As in the file (MONOCHROME1 is output inverted).
  int bits_allocated = 0;
  int bits_stored = 0;
  bool is_signed = false;
  double rescale_slope = 1.0;
  double rescale_intercept = 0.0;
  WindowSource window_source = WindowSource::kFile;  // kMinMax when kFile found none.
  double window_center = 0.0;  // Window applied (modality units); 0/0 for colour.
  double window_width = 0.0;
  int frame_count = 1;
  int frame = 0;
  std::string transfer_syntax_uid;
  std::string transfer_syntax_name;
};

struct DicomImageResult {
  // Monochrome: 1 channel; colour (RGB/YBR): 3 channels in BGR order.
  // CV_8U or CV_16U per DicomOptions::output_bits. Displayed sense: for
  // MONOCHROME1 low values are already bright.
  cv::Mat image;
  DicomReport report;
};

// Cheap check of the "DICM" magic at offset 128 (Part 10 files).
bool LooksLikeDicom(std::string_view bytes);

// Decodes one frame. INVALID_ARGUMENT for malformed or oversize data or a
// frame out of range; UNIMPLEMENTED naming the transfer syntax for codecs
// DCMTK lacks here (JPEG 2000, video). On first use (thread-safe) registers
// DCMTK's decoders and routes DCMTK's logger (oflog) into spdlog at debug
// level instead of stderr. Never throws.
// Every file is first checked by ScanDicom (dicom_scan.h); `scan`, when
// given, is that check's result for these bytes and options, which skips
// repeating it.
absl::StatusOr<DicomImageResult> DecodeDicom(std::string_view bytes, const DicomOptions& options,
                                             const DicomScan* scan = nullptr);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_DICOM_H_
