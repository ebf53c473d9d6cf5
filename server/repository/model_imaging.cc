#include "server/repository/model_imaging.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/imaging/config.h"

namespace rectifier::repository {
namespace {

using inference::PostprocessingConfig;

constexpr char kNotAnImageInput[] =
    "image requests need a model with one FP32 input of rank 4 (an image batch); use ModelInfer "
    "with tensors for this model";

absl::Status Precondition(const std::string& model, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat("model '", model, "': ", why));
}

// Values per batch item of a [-1, d1, d2, ...] tensor; 0 if a dim is unknown.
int64_t ItemElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) {
    if (shape[i] <= 0) return 0;
    n *= shape[i];
  }
  return shape.empty() ? 0 : n;
}

// The engine.max_input_dims bounds of the image input's width and height
// (0: none), read like ImageInputSizeFromShape reads the input's shape.
std::pair<int, int> MaxImageSize(const inference::ModelConfig& config, const std::string& input,
                                 const std::vector<int64_t>& input_shape) {
  for (const auto& bound : config.engine().max_input_dims()) {
    if (bound.name() != input) continue;
    std::vector<int64_t> full(bound.dims().begin(), bound.dims().end());
    if (config.max_batch_size() > 0) full.insert(full.begin(), -1);
    if (full.size() != input_shape.size()) break;
    auto size = imaging::ImageInputSizeFromShape(config.preprocessing(), full);
    if (!size.ok()) break;
    return {std::max(size->width, 0), std::max(size->height, 0)};
  }
  return {0, 0};
}

// The config's imaging blocks converted for a rank-4 `input_shape`: errors
// name the field.
absl::Status ConvertBlocks(const inference::ModelConfig& config, const std::string& input,
                           const std::vector<int64_t>& input_shape, ModelImaging& imaging) {
  imaging.preprocessing = config.preprocessing();
  imaging.input_item_shape = {input_shape[1], input_shape[2], input_shape[3]};
  ASSIGN_OR_RETURN(const imaging::ImageInputSize size,
                   imaging::ImageInputSizeFromShape(config.preprocessing(), input_shape));
  const auto [max_width, max_height] = MaxImageSize(config, input, input_shape);
  ASSIGN_OR_RETURN(imaging.preprocess, imaging::PreprocessOptionsFromConfig(
                                           config.preprocessing(), size.width, size.height,
                                           size.channels, max_width, max_height));
  ASSIGN_OR_RETURN(imaging.dicom, imaging::DicomOptionsFromConfig(config.preprocessing()));
  const PostprocessingConfig& post = config.postprocessing();
  if (post.task() == PostprocessingConfig::TASK_CLASSIFICATION) {
    imaging.task = ImageTask::kClassification;
    ASSIGN_OR_RETURN(imaging.classification, imaging::ClassificationOptionsFromConfig(post));
  } else if (post.task() == PostprocessingConfig::TASK_DETECTION) {
    imaging.task = ImageTask::kDetection;
    ASSIGN_OR_RETURN(imaging.detection, imaging::DetectionOptionsFromConfig(post));
  } else if (post.task() == PostprocessingConfig::TASK_SEGMENTATION || post.has_segmentation()) {
    if (post.task() != PostprocessingConfig::TASK_SEGMENTATION &&
        post.task() != PostprocessingConfig::TASK_NONE) {
      return absl::InvalidArgumentError(
          "postprocessing.segmentation is only for task TASK_SEGMENTATION");
    }
    imaging.task = ImageTask::kSegmentation;
    ASSIGN_OR_RETURN(imaging.segmentation, imaging::SegmentationOptionsFromConfig(post));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(const std::string& name, const std::vector<std::string>& labels,
                         int num_classes) {
  if (labels.empty() || static_cast<int>(labels.size()) == num_classes) return absl::OkStatus();
  return Precondition(name, absl::StrCat(labels.size(), " labels for ", num_classes, " classes"));
}

// The task's view of output 0 (classes, anchors) and the labels.
absl::Status FitOutput(const std::string& name, const engine::TensorInfo& output,
                       const std::vector<std::string>& labels, ModelImaging& imaging) {
  const std::vector<int64_t>& shape = output.shape;
  if (imaging.task == ImageTask::kClassification) {
    if (imaging.classification.labels.empty()) imaging.classification.labels = labels;
    imaging.num_classes = static_cast<int>(ItemElements(shape));
    if (imaging.num_classes <= 0) {
      return Precondition(name, absl::StrCat("output '", output.name,
                                             "' needs a fixed size per image for classification"));
    }
    return CheckLabels(name, imaging.classification.labels, imaging.num_classes);
  }
  if (imaging.task == ImageTask::kDetection) {
    if (imaging.detection.labels.empty()) imaging.detection.labels = labels;
    // A model with dynamic height and width has a dynamic anchor count
    // (-1): each output then says its own.
    if (shape.size() != 3 || shape[1] <= 4 || shape[2] == 0 || shape[2] < -1) {
      return Precondition(name,
                          absl::StrCat("detection needs output 0 laid out [batch, 4 + classes, "
                                       "anchors] (Ultralytics YOLOv8), got rank ",
                                       shape.size()));
    }
    imaging.num_classes = static_cast<int>(shape[1] - 4);
    imaging.num_anchors = static_cast<int>(shape[2]);
    return CheckLabels(name, imaging.detection.labels, imaging.num_classes);
  }
  if (imaging.task == ImageTask::kSegmentation) {
    if (imaging.segmentation.labels.empty()) imaging.segmentation.labels = labels;
    // Height and width may be dynamic (-1); the classes may not.
    if (shape.size() != 4 || shape[1] < 2 || shape[1] > 65536 || shape[2] == 0 || shape[2] < -1 ||
        shape[3] == 0 || shape[3] < -1) {
      return Precondition(name, absl::StrCat("segmentation needs output '", output.name,
                                             "' laid out [batch, classes >= 2, height, width] "
                                             "(class scores per pixel), got rank ",
                                             shape.size()));
    }
    imaging.num_classes = static_cast<int>(shape[1]);
    RETURN_IF_ERROR(
        imaging::ValidateSegmentationOptions(imaging.segmentation, imaging.num_classes));
    return CheckLabels(name, imaging.segmentation.labels, imaging.num_classes);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImagingView> BuildModelImaging(const std::string& name,
                                              const inference::ModelConfig& config,
                                              const engine::CompiledModel& model,
                                              const std::vector<std::string>& labels) {
  // A config with imaging blocks is checked when the version loads, so a
  // typo fails the load (reported by RepositoryIndex) instead of every image
  // request later.
  const bool has_blocks = config.has_preprocessing() ||
                          config.postprocessing().task() != PostprocessingConfig::TASK_NONE ||
                          config.postprocessing().has_segmentation();
  const auto& inputs = model.inputs();
  const auto& outputs = model.outputs();
  if (inputs.size() != 1 || inputs[0].shape.size() != 4) {
    if (has_blocks) {
      return absl::InvalidArgumentError(
          "preprocessing/postprocessing: image models need exactly one 4-D input");
    }
    return ImagingView(Precondition(name, kNotAnImageInput));
  }
  // The first reason an image request is refused, in the order requests
  // have always been told.
  absl::Status unfit;
  if (inputs[0].type != engine::DataType::kFloat32) {
    unfit = Precondition(name, kNotAnImageInput);
  } else if (outputs.empty() || outputs[0].type != engine::DataType::kFloat32) {
    unfit = Precondition(name, "output 0 must be FP32 for image postprocessing");
  }
  auto imaging = std::make_shared<ModelImaging>();
  if (absl::Status converted = ConvertBlocks(config, inputs[0].name, inputs[0].shape, *imaging);
      !converted.ok()) {
    if (has_blocks) return converted;
    if (unfit.ok()) unfit = Precondition(name, converted.message());
  }
  // A config that asks for images (a preprocessing block or a task) on a
  // model that cannot take them, or whose output cannot be read for its
  // task, fails the load with the reason; without blocks, the model loads
  // and image requests are refused with it.
  if (!unfit.ok()) {
    if (has_blocks) return absl::InvalidArgumentError(unfit.message());
    return ImagingView(unfit);
  }
  if (absl::Status fit = FitOutput(name, outputs[0], labels, *imaging); !fit.ok()) {
    if (has_blocks) return absl::InvalidArgumentError(fit.message());
    return ImagingView(fit);
  }
  return ImagingView(std::shared_ptr<const ModelImaging>(std::move(imaging)));
}

}  // namespace rectifier::repository
