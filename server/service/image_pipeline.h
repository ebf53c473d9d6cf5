// ImagePipeline: the per-image steps the vision API and KServe BYTES inputs
// share (decode, preprocess, postprocess), driven by a served version's
// imaging view (repository::ModelImaging, built when it loads).
#ifndef RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_
#define RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rectifier/v1/vision.pb.h"
#include "server/common/clock.h"
#include "server/engine/tensor.h"
#include "server/imaging/classification.h"
#include "server/imaging/detection.h"
#include "server/imaging/dicom.h"
#include "server/imaging/preprocess.h"
#include "server/imaging/segmentation.h"
#include "server/imaging/transform.h"
#include "server/repository/model_imaging.h"
#include "server/service/image_budget.h"

namespace rectifier::service {

using repository::ImageTask;
using repository::ModelImaging;

// One image decoded and written into a [1, ...] input tensor.
struct PreparedImage {
  engine::Tensor tensor;
  imaging::ImageTransform transform;
  int input_width = 0;  // The model input's width and height for this image.
  int input_height = 0;
  rectifier::v1::ImageInfo info;
  absl::Duration decode;
  absl::Duration preprocess;
};

// Worst-case bytes that decoding and preprocessing `bytes` may hold at once,
// from its header alone (ProbeImageHeader, ScanDicom): the decoded image,
// the decoder's and the colour conversion's copies, and the model's input.
// INVALID_ARGUMENT for an unreadable header.
absl::StatusOr<int64_t> EstimateImageBytes(std::string_view bytes, const ModelImaging& imaging);

// Decodes `bytes` (any supported format, or DICOM by its magic) and
// preprocesses it for the model. `dicom` overrides the model's DICOM window
// and frame (null: the model's). The image's EstimateImageBytes() is held
// in `budget` (null: unbounded) while it is decoded: RESOURCE_EXHAUSTED when
// it does not fit. INVALID_ARGUMENT / UNIMPLEMENTED from the decoders,
// naming the reason. `clock` times decode and preprocess.
absl::StatusOr<PreparedImage> PrepareImage(std::string_view bytes, const ModelImaging& imaging,
                                           const rectifier::v1::DicomOptions* dicom,
                                           ImageMemoryBudget* budget = nullptr,
                                           const common::Clock* clock = common::Clock::Real());

// Postprocessing of one batch item of output 0.
absl::StatusOr<std::vector<imaging::Classification>> ClassifyOutput(
    const engine::Tensor& output, const imaging::ClassificationOptions& options);
absl::StatusOr<std::vector<imaging::Detection>> DetectOutput(
    const engine::Tensor& output, const ModelImaging& imaging,
    const imaging::DetectionOptions& options, const imaging::ImageTransform& transform);

// Probability-map pixels (maps x image pixels) one Segment image may ask
// for: 64 Mi floats, 256 MiB while they are encoded.
inline constexpr int64_t kMaxProbabilityPixels = int64_t{1} << 26;

// One batch item of a [1, classes, h, w] segmentation output -> a label
// mask (and the asked probability maps) over the original image, encoded
// into `out` as PNGs with per-class pixel counts (labels from `options`).
// INTERNAL when the output does not fit the model's head; INVALID_ARGUMENT
// for a probability class the model does not have.
absl::Status SegmentOutput(const engine::Tensor& output, const ModelImaging& imaging,
                           const imaging::SegmentationOptions& options,
                           const std::vector<int>& probability_classes,
                           const PreparedImage& prepared, rectifier::v1::SegmentResult* out);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_
