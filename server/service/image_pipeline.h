// ImagePipeline: what a served model's config says about images (how they
// become its input tensor, how its output becomes labels or boxes), and the
// per-image steps the vision API and KServe BYTES inputs share.
#ifndef RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_
#define RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model_config.pb.h"
#include "rectifier/v1/vision.pb.h"
#include "server/engine/tensor.h"
#include "server/imaging/classification.h"
#include "server/imaging/detection.h"
#include "server/imaging/dicom.h"
#include "server/imaging/preprocess.h"
#include "server/imaging/transform.h"
#include "server/service/image_budget.h"

namespace rectifier::repository {
struct ServedModel;
}  // namespace rectifier::repository

namespace rectifier::service {

enum class ImageTask { kNone, kClassification, kDetection };

// Immutable once built; shared by every request to one served version.
struct ModelImaging {
  ImageTask task = ImageTask::kNone;
  inference::PreprocessingConfig preprocessing;
  imaging::PreprocessOptions preprocess;
  imaging::DicomOptions dicom;
  std::vector<int64_t> input_item_shape;  // One batch item: [C, H, W] or [H, W, C].
  bool batched = true;                    // Input dim 0 is the batch.
  imaging::ClassificationOptions classification;
  imaging::DetectionOptions detection;
  int num_classes = 0;  // Classification: output values per item; detection: rows - 4.
  int num_anchors = 0;  // Detection: N of the [4 + nc, N] head.
};

// Builds the imaging view of a served model. FAILED_PRECONDITION (naming the
// model and the reason) when its input is not a single FP32 image tensor
// with fixed size or its config's imaging blocks are invalid.
absl::StatusOr<std::shared_ptr<const ModelImaging>> BuildModelImaging(
    const repository::ServedModel& served);

// Caches BuildModelImaging per served version (a reload gets a new entry).
// Thread-safe.
class ModelImagingCache {
 public:
  absl::StatusOr<std::shared_ptr<const ModelImaging>> Get(
      const std::shared_ptr<const repository::ServedModel>& served);

 private:
  struct Entry {
    std::weak_ptr<const repository::ServedModel> served;
    std::shared_ptr<const ModelImaging> imaging;
  };
  absl::Mutex mu_;
  std::map<const repository::ServedModel*, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// One image decoded and written into a [1, ...] input tensor.
struct PreparedImage {
  engine::Tensor tensor;
  imaging::ImageTransform transform;
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
// naming the reason.
absl::StatusOr<PreparedImage> PrepareImage(std::string_view bytes, const ModelImaging& imaging,
                                           const rectifier::v1::DicomOptions* dicom,
                                           ImageMemoryBudget* budget = nullptr);

// Postprocessing of one batch item of output 0.
absl::StatusOr<std::vector<imaging::Classification>> ClassifyOutput(
    const engine::Tensor& output, const imaging::ClassificationOptions& options);
absl::StatusOr<std::vector<imaging::Detection>> DetectOutput(
    const engine::Tensor& output, const ModelImaging& imaging,
    const imaging::DetectionOptions& options, const imaging::ImageTransform& transform);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_IMAGE_PIPELINE_H_
