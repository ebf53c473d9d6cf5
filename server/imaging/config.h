// Conversion of the model config's preprocessing/postprocessing blocks into imaging options.
#ifndef RECTIFIER_SERVER_IMAGING_CONFIG_H_
#define RECTIFIER_SERVER_IMAGING_CONFIG_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "model_config.pb.h"
#include "server/imaging/classification.h"
#include "server/imaging/decode.h"
#include "server/imaging/detection.h"
#include "server/imaging/dicom.h"
#include "server/imaging/preprocess.h"
#include "server/imaging/segmentation.h"

namespace rectifier::imaging {

// The image a model's single 4-D input takes ([N, C, H, W], or [N, H, W, C]
// with `layout: LAYOUT_NHWC`), as PreprocessOptionsFromConfig wants it.
// INVALID_ARGUMENT unless `shape` has rank 4.
struct ImageInputSize {
  int width = 0;
  int height = 0;
  int channels = 0;
};
absl::StatusOr<ImageInputSize> ImageInputSizeFromShape(const inference::PreprocessingConfig& config,
                                                       const std::vector<int64_t>& shape);

// Input size and channel count come from the model's input tensor; the
// config supplies everything else. INVALID_ARGUMENT names the offending
// field, e.g. "preprocessing.mean: expected 0, 1 or 3 values, got 2".
// A dynamic height or width (<= 0) needs RESIZE_KEEP_SIZE; `max_width` and
// `max_height` (0: none) are then the input's engine.max_input_dims bounds.
absl::StatusOr<PreprocessOptions> PreprocessOptionsFromConfig(
    const inference::PreprocessingConfig& config, int input_width, int input_height,
    int input_channels, int max_width = 0, int max_height = 0);

// DICOM window choice for the model (a request may override it later).
absl::StatusOr<DicomOptions> DicomOptionsFromConfig(const inference::PreprocessingConfig& config);

// Decode options that enable JPEG scaled decoding for this model input, for
// an image whose header says width x height (see ProbeImageHeader).
DecodeOptions DecodeOptionsFor(const inference::PreprocessingConfig& config,
                               const PreprocessOptions& preprocess, int width, int height);

absl::StatusOr<ClassificationOptions> ClassificationOptionsFromConfig(
    const inference::PostprocessingConfig& config);

absl::StatusOr<DetectionOptions> DetectionOptionsFromConfig(
    const inference::PostprocessingConfig& config);

// TASK_SEGMENTATION (or a `segmentation` block with TASK_NONE). The class
// count is checked against background_class when the model's output is known.
absl::StatusOr<SegmentationOptions> SegmentationOptionsFromConfig(
    const inference::PostprocessingConfig& config);

}  // namespace rectifier::imaging

#endif  // RECTIFIER_SERVER_IMAGING_CONFIG_H_
