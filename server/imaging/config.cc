#include "server/imaging/config.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace rectifier::imaging {
namespace {

using inference::PostprocessingConfig;
using inference::PreprocessingConfig;

absl::Status FieldError(const char* field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

// 0 values: keep the default; 1: all channels; 3: per channel.
absl::Status PerChannel(const google::protobuf::RepeatedField<float>& values, const char* field,
                        std::array<float, 3>& out) {
  if (values.empty()) return absl::OkStatus();
  if (values.size() == 1) {
    out = {values[0], values[0], values[0]};
  } else if (values.size() == 3) {
    out = {values[0], values[1], values[2]};
  } else {
    return FieldError(field, absl::StrCat("expected 0, 1 or 3 values, got ", values.size()));
  }
  for (float v : out) {
    if (!std::isfinite(v)) return FieldError(field, "values must be finite");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ImageInputSize> ImageInputSizeFromShape(const PreprocessingConfig& config,
                                                       const std::vector<int64_t>& shape) {
  if (shape.size() != 4) {
    return FieldError("input.dims",
                      absl::StrCat("an image input has rank 4, this one ", shape.size()));
  }
  const bool nhwc = config.layout() == PreprocessingConfig::LAYOUT_NHWC;
  return ImageInputSize{static_cast<int>(nhwc ? shape[2] : shape[3]),
                        static_cast<int>(nhwc ? shape[1] : shape[2]),
                        static_cast<int>(nhwc ? shape[3] : shape[1])};
}

namespace {

// Colour format, resize mode and interpolation.
absl::Status SetSampling(const PreprocessingConfig& config, PreprocessOptions& o) {
  switch (config.color_format()) {
    case PreprocessingConfig::COLOR_FORMAT_DEFAULT:
    case PreprocessingConfig::COLOR_RGB:
      o.color = ColorFormat::kRgb;
      break;
    case PreprocessingConfig::COLOR_BGR:
      o.color = ColorFormat::kBgr;
      break;
    case PreprocessingConfig::COLOR_GRAY:
      o.color = ColorFormat::kGray;
      break;
    default:
      return FieldError("preprocessing.color_format", "unknown value");
  }
  switch (config.resize_mode()) {
    case PreprocessingConfig::RESIZE_DEFAULT:
    case PreprocessingConfig::RESIZE_STRETCH:
      o.resize = ResizeMode::kStretch;
      break;
    case PreprocessingConfig::RESIZE_LETTERBOX:
      o.resize = ResizeMode::kLetterbox;
      break;
    case PreprocessingConfig::RESIZE_CENTER_CROP:
      o.resize = ResizeMode::kCenterCrop;
      break;
    case PreprocessingConfig::RESIZE_KEEP_SIZE:
      o.resize = ResizeMode::kLetterbox;
      o.keep_size.enabled = true;
      break;
    default:
      return FieldError("preprocessing.resize_mode", "unknown value");
  }
  switch (config.interpolation()) {
    case PreprocessingConfig::INTERPOLATION_DEFAULT:
    case PreprocessingConfig::INTERPOLATION_LINEAR:
      o.interpolation = Interpolation::kLinear;
      break;
    case PreprocessingConfig::INTERPOLATION_NEAREST:
      o.interpolation = Interpolation::kNearest;
      break;
    case PreprocessingConfig::INTERPOLATION_CUBIC:
      o.interpolation = Interpolation::kCubic;
      break;
    case PreprocessingConfig::INTERPOLATION_AREA:
      o.interpolation = Interpolation::kArea;
      break;
    default:
      return FieldError("preprocessing.interpolation", "unknown value");
  }
  return absl::OkStatus();
}

// 16-bit handling (with its window) and tensor layout.
absl::Status SetSixteenBitAndLayout(const PreprocessingConfig& config, PreprocessOptions& o) {
  switch (config.sixteen_bit()) {
    case PreprocessingConfig::SIXTEEN_BIT_DEFAULT:
    case PreprocessingConfig::SIXTEEN_BIT_MIN_MAX:
      o.sixteen_bit = SixteenBitMode::kMinMax;
      break;
    case PreprocessingConfig::SIXTEEN_BIT_WINDOW:
      o.sixteen_bit = SixteenBitMode::kWindow;
      if (!(config.window_width() > 0)) {
        return FieldError("preprocessing.window_width", "must be > 0 with SIXTEEN_BIT_WINDOW");
      }
      o.window_center = config.window_center();
      o.window_width = config.window_width();
      break;
    case PreprocessingConfig::SIXTEEN_BIT_FULL_RANGE:
      o.sixteen_bit = SixteenBitMode::kFullRange;
      break;
    default:
      return FieldError("preprocessing.sixteen_bit", "unknown value");
  }
  switch (config.layout()) {
    case PreprocessingConfig::LAYOUT_DEFAULT:
    case PreprocessingConfig::LAYOUT_NCHW:
      o.layout = Layout::kNchw;
      break;
    case PreprocessingConfig::LAYOUT_NHWC:
      o.layout = Layout::kNhwc;
      break;
    default:
      return FieldError("preprocessing.layout", "unknown value");
  }
  return absl::OkStatus();
}

// Keep-size mode: the bounds (max_input_dims, else long_side rounded up to
// the stride) and the options' own fields.
absl::Status SetKeepSize(const PreprocessingConfig& config, int max_width, int max_height,
                         PreprocessOptions& o) {
  const bool dynamic = o.width <= 0 || o.height <= 0;
  if (!o.keep_size.enabled) {
    if (config.long_side() > 0 || config.pad_to_multiple() > 0) {
      return FieldError("preprocessing.long_side",
                        "long_side and pad_to_multiple apply to RESIZE_KEEP_SIZE only");
    }
    if (dynamic) {
      return FieldError("input.dims",
                        "the model input needs a fixed height and width, or preprocessing { "
                        "resize_mode: RESIZE_KEEP_SIZE } to keep each image's own size");
    }
    return absl::OkStatus();
  }
  if (!dynamic) {
    return FieldError("preprocessing.resize_mode",
                      "RESIZE_KEEP_SIZE needs a model input with dynamic height and width");
  }
  if (config.long_side() > 16384) return FieldError("preprocessing.long_side", "must be <= 16384");
  if (config.pad_to_multiple() > 1024) {
    return FieldError("preprocessing.pad_to_multiple", "must be <= 1024");
  }
  o.keep_size.long_side = static_cast<int>(config.long_side());
  if (config.pad_to_multiple() > 0) o.keep_size.pad_to_multiple = config.pad_to_multiple();
  const int m = o.keep_size.pad_to_multiple;
  const int from_long = (o.keep_size.long_side + m - 1) / m * m;
  o.width = max_width > 0 ? max_width : from_long;
  o.height = max_height > 0 ? max_height : from_long;
  if (o.width <= 0 || o.height <= 0) {
    return FieldError("preprocessing.long_side",
                      "RESIZE_KEEP_SIZE needs long_side or engine.max_input_dims for the input's "
                      "height and width, so that a large image cannot make a huge input");
  }
  if (o.width < m || o.height < m) {
    return FieldError("preprocessing.pad_to_multiple",
                      absl::StrCat("is ", m, ", over the input's largest height or width (",
                                   o.width, "x", o.height, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PreprocessOptions> PreprocessOptionsFromConfig(const PreprocessingConfig& config,
                                                              int input_width, int input_height,
                                                              int input_channels, int max_width,
                                                              int max_height) {
  PreprocessOptions o;
  if (input_channels != 1 && input_channels != 3) {
    return FieldError("input.dims", absl::StrCat("the model input must have 1 or 3 channels, has ",
                                                 input_channels));
  }
  o.width = input_width;
  o.height = input_height;
  o.channels = input_channels;
  RETURN_IF_ERROR(SetSampling(config, o));
  RETURN_IF_ERROR(SetKeepSize(config, max_width, max_height, o));
  if (config.has_pad_value()) {
    if (config.pad_value() > 255) return FieldError("preprocessing.pad_value", "must be 0..255");
    o.pad_value = static_cast<int>(config.pad_value());
  }
  if (config.resize_shorter() > 0) {
    if (config.resize_shorter() > 16384 ||
        static_cast<int>(config.resize_shorter()) < std::max(o.width, o.height)) {
      return FieldError("preprocessing.resize_shorter",
                        "must be between the larger input side and 16384");
    }
    o.resize_shorter = static_cast<int>(config.resize_shorter());
  }
  if (config.scale() != 0.0f) {
    if (!std::isfinite(config.scale())) return FieldError("preprocessing.scale", "must be finite");
    o.scale = config.scale();
  }
  if (absl::Status s = PerChannel(config.mean(), "preprocessing.mean", o.mean); !s.ok()) return s;
  if (absl::Status s = PerChannel(config.stddev(), "preprocessing.stddev", o.std); !s.ok()) {
    return s;
  }
  for (float v : o.std) {
    if (v == 0.0f) return FieldError("preprocessing.stddev", "values must be non-zero");
  }
  RETURN_IF_ERROR(SetSixteenBitAndLayout(config, o));
  if (absl::Status s = ValidatePreprocessOptions(o); !s.ok()) return s;
  return o;
}

absl::StatusOr<DicomOptions> DicomOptionsFromConfig(const PreprocessingConfig& config) {
  DicomOptions o;
  switch (config.dicom_window()) {
    case PreprocessingConfig::DICOM_WINDOW_DEFAULT:
    case PreprocessingConfig::DICOM_WINDOW_FILE:
      o.window = WindowSource::kFile;
      break;
    case PreprocessingConfig::DICOM_WINDOW_MIN_MAX:
      o.window = WindowSource::kMinMax;
      break;
    case PreprocessingConfig::DICOM_WINDOW_FIXED:
      if (!(config.dicom_window_width() >= 1.0)) {
        return FieldError("preprocessing.dicom_window_width",
                          "must be >= 1 with DICOM_WINDOW_FIXED");
      }
      o.window = WindowSource::kCaller;
      o.window_center = config.dicom_window_center();
      o.window_width = config.dicom_window_width();
      break;
    default:
      return FieldError("preprocessing.dicom_window", "unknown value");
  }
  return o;
}

DecodeOptions DecodeOptionsFor(const PreprocessingConfig& config,
                               const PreprocessOptions& preprocess, int width, int height) {
  DecodeOptions o;
  if (!config.disable_scaled_decode() && width > 0 && height > 0) {
    const SideBounds b = ScaledDecodeBounds(preprocess, width, height);
    o.min_short_side = b.min_short_side;
    o.min_long_side = b.min_long_side;
  }
  return o;
}

namespace {

absl::StatusOr<ScoreActivation> ScoreActivationFromConfig(const PostprocessingConfig& config) {
  switch (config.score_activation()) {
    case PostprocessingConfig::SCORE_ACTIVATION_DEFAULT:
    case PostprocessingConfig::SCORE_ACTIVATION_SOFTMAX:
      return ScoreActivation::kSoftmax;
    case PostprocessingConfig::SCORE_ACTIVATION_SIGMOID:
      return ScoreActivation::kSigmoid;
    case PostprocessingConfig::SCORE_ACTIVATION_NONE:
      return ScoreActivation::kNone;
    default:
      return FieldError("postprocessing.score_activation", "unknown value");
  }
}

}  // namespace

absl::StatusOr<ClassificationOptions> ClassificationOptionsFromConfig(
    const PostprocessingConfig& config) {
  if (config.task() != PostprocessingConfig::TASK_CLASSIFICATION) {
    return FieldError("postprocessing.task", "is not TASK_CLASSIFICATION");
  }
  ClassificationOptions o;
  ASSIGN_OR_RETURN(o.activation, ScoreActivationFromConfig(config));
  if (config.top_k() > 0) o.top_k = static_cast<int>(std::min<uint32_t>(config.top_k(), 1 << 20));
  if (!std::isfinite(config.threshold())) {
    return FieldError("postprocessing.threshold", "must be finite");
  }
  o.threshold = config.threshold();
  o.labels.assign(config.labels().begin(), config.labels().end());
  return o;
}

absl::StatusOr<DetectionOptions> DetectionOptionsFromConfig(const PostprocessingConfig& config) {
  if (config.task() != PostprocessingConfig::TASK_DETECTION) {
    return FieldError("postprocessing.task", "is not TASK_DETECTION");
  }
  DetectionOptions o;
  if (config.has_score_threshold()) {
    if (!(config.score_threshold() >= 0.0f && config.score_threshold() <= 1.0f)) {
      return FieldError("postprocessing.score_threshold", "must be in [0, 1]");
    }
    o.score_threshold = config.score_threshold();
  }
  if (config.has_iou_threshold()) {
    if (!(config.iou_threshold() >= 0.0f && config.iou_threshold() <= 1.0f)) {
      return FieldError("postprocessing.iou_threshold", "must be in [0, 1]");
    }
    o.iou_threshold = config.iou_threshold();
  }
  if (config.max_detections() > 0) {
    o.max_detections = static_cast<int>(std::min<uint32_t>(config.max_detections(), 1 << 20));
  }
  o.class_agnostic = config.class_agnostic();
  for (uint32_t c : config.class_filter()) {
    if (c > (1u << 20)) return FieldError("postprocessing.class_filter", "class id out of range");
    o.class_filter.push_back(static_cast<int>(c));
  }
  o.labels.assign(config.labels().begin(), config.labels().end());
  return o;
}

absl::StatusOr<SegmentationOptions> SegmentationOptionsFromConfig(
    const PostprocessingConfig& config) {
  const bool implied =
      config.task() == PostprocessingConfig::TASK_NONE && config.has_segmentation();
  if (config.task() != PostprocessingConfig::TASK_SEGMENTATION && !implied) {
    return FieldError("postprocessing.task", "is not TASK_SEGMENTATION");
  }
  SegmentationOptions o;
  ASSIGN_OR_RETURN(o.activation, ScoreActivationFromConfig(config));
  const inference::SegmentationConfig& seg = config.segmentation();
  if (!(seg.min_score() >= 0.0f && seg.min_score() <= 1.0f)) {
    return FieldError("postprocessing.segmentation.min_score", "must be in [0, 1]");
  }
  if (seg.min_score() > 0.0f && o.activation == ScoreActivation::kNone) {
    return FieldError("postprocessing.segmentation.min_score",
                      "needs probabilities: score_activation SOFTMAX or SIGMOID");
  }
  if (seg.background_class() > 65535) {
    return FieldError("postprocessing.segmentation.background_class", "must be below 65536");
  }
  o.min_score = seg.min_score();
  o.background_class = static_cast<int>(seg.background_class());
  o.labels.assign(config.labels().begin(), config.labels().end());
  return o;
}

}  // namespace rectifier::imaging
