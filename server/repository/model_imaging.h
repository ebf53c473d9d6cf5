// ModelImaging: what a model version's config says about images (how they
// become its input tensor, how its output becomes labels or boxes), built
// once when the version loads and stored on its ServedModel.
#ifndef RECTIFIER_SERVER_REPOSITORY_MODEL_IMAGING_H_
#define RECTIFIER_SERVER_REPOSITORY_MODEL_IMAGING_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_config.pb.h"
#include "server/engine/compiled_model.h"
#include "server/imaging/classification.h"
#include "server/imaging/detection.h"
#include "server/imaging/dicom.h"
#include "server/imaging/preprocess.h"
#include "server/imaging/segmentation.h"

namespace rectifier::repository {

enum class ImageTask { kNone, kClassification, kDetection, kSegmentation };

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
  imaging::SegmentationOptions segmentation;
  // Classification: output values per item; detection: rows - 4;
  // segmentation: channels of the [batch, classes, h, w] output.
  int num_classes = 0;
  int num_anchors = 0;  // Detection: N of the [4 + nc, N] head; -1: each output's own
                        // (a model with dynamic height and width)
};

// What image requests get: the view, or FAILED_PRECONDITION naming the model
// and why it cannot take images.
using ImagingView = absl::StatusOr<std::shared_ptr<const ModelImaging>>;

// Builds the imaging view of model `name` (its completed `config`, compiled
// `model` and labels file lines) in one pass over the config's imaging blocks.
// The outer status fails the load: the config has imaging blocks
// (`preprocessing`, or a `postprocessing` task) and they are invalid or do not
// fit the model (INVALID_ARGUMENT naming the field, "image models need
// exactly one 4-D input", or the reason below). The inner one is
// FAILED_PRECONDITION, for a config without imaging blocks, when the model
// cannot take images: its input is not a single FP32 image tensor of fixed
// size, its output 0 does not fit the task, or the labels do not match the
// classes.
absl::StatusOr<ImagingView> BuildModelImaging(const std::string& name,
                                              const inference::ModelConfig& config,
                                              const engine::CompiledModel& model,
                                              const std::vector<std::string>& labels);

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_MODEL_IMAGING_H_
