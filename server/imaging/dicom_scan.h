// A bounded, forward-only walk over a DICOM Part 10 file that checks what
// DCMTK would otherwise trust: element lengths, nesting depth, the size a
// deflated dataset inflates to, the pixel data's length against the image
// geometry, and the RLE segment table of each fragment. It runs before DCMTK
// sees the bytes and never allocates in proportion to a declared length.
#ifndef RECTIFIER_SERVER_IMAGING_DICOM_SCAN_H_
#define RECTIFIER_SERVER_IMAGING_DICOM_SCAN_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rectifier::imaging {

struct DicomScanLimits {
  int64_t max_pixels = 64LL << 20;  // Rows x Columns of one frame.
  // All frames' pixel bytes together, as Rows x Columns x SamplesPerPixel x
  // bytes per sample x NumberOfFrames declare them.
  int64_t max_pixel_bytes = 256LL << 20;
  // Everything but the pixel data (all other elements, nested ones included).
  int64_t max_header_bytes = 16LL << 20;
  int max_depth = 16;  // Nested sequences.
};

struct DicomScan {
  std::string transfer_syntax_uid;
  bool deflated = false;
  bool encapsulated = false;
  int rows = 0;
  int columns = 0;
  int samples_per_pixel = 1;
  int bits_allocated = 0;
  int64_t frames = 1;
  int fragments = 0;             // Encapsulated pixel data, after the offset table.
  int64_t dataset_bytes = 0;     // After inflation, for deflated files.
  int64_t pixel_data_bytes = 0;  // Native: its length; encapsulated: fragments' sum.
  // Bytes Rows x Columns x samples x bytes per sample x frames declare.
  int64_t expected_pixel_bytes = 0;
};

// INVALID_ARGUMENT naming the problem for a file that is not Part 10, has a
// length or nesting beyond its data or the limits, inflates past what its
// geometry allows, or (RLE Lossless) has a segment table that does not fit
// its fragment: 1-15 segments, offsets even, increasing and inside the
// fragment, at least SamplesPerPixel x bytes per sample of them.
absl::StatusOr<DicomScan> ScanDicom(std::string_view bytes, const DicomScanLimits& limits);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_DICOM_SCAN_H_
