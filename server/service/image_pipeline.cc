#include "server/service/image_pipeline.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/status_macros.h"
#include "server/engine/compiled_model.h"
#include "server/imaging/config.h"
#include "server/imaging/decode.h"
#include "server/imaging/dicom_scan.h"
#include "server/repository/model_repository.h"

namespace rectifier::service {
namespace {

using inference::PostprocessingConfig;
using inference::PreprocessingConfig;

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

absl::Status ApplyDicomOverride(const rectifier::v1::DicomOptions& request,
                                imaging::DicomOptions& options) {
  if (request.frame() > static_cast<uint32_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("dicom.frame ", request.frame(), " is out of range"));
  }
  options.frame = static_cast<int>(request.frame());
  switch (request.window()) {
    case rectifier::v1::DicomOptions::WINDOW_MODEL:
      break;
    case rectifier::v1::DicomOptions::WINDOW_FILE:
      options.window = imaging::WindowSource::kFile;
      break;
    case rectifier::v1::DicomOptions::WINDOW_MIN_MAX:
      options.window = imaging::WindowSource::kMinMax;
      break;
    case rectifier::v1::DicomOptions::WINDOW_FIXED:
      if (!(request.window_width() > 0)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "dicom.window_width must be > 0 for WINDOW_FIXED, got ", request.window_width()));
      }
      options.window = imaging::WindowSource::kCaller;
      options.window_center = request.window_center();
      options.window_width = request.window_width();
      break;
    default:
      return absl::InvalidArgumentError("dicom.window: unknown value");
  }
  return absl::OkStatus();
}

const char* WindowSourceName(imaging::WindowSource source) {
  switch (source) {
    case imaging::WindowSource::kFile:
      return "file";
    case imaging::WindowSource::kMinMax:
      return "min_max";
    case imaging::WindowSource::kCaller:
      return "fixed";
  }
  return "unknown";
}

void FillDicomInfo(const imaging::DicomReport& r, rectifier::v1::DicomInfo* out) {
  out->set_rows(r.rows);
  out->set_columns(r.columns);
  out->set_modality(r.modality);
  out->set_photometric_interpretation(r.photometric);
  out->set_transfer_syntax(absl::StrCat(r.transfer_syntax_name, " (", r.transfer_syntax_uid, ")"));
  out->set_rescale_slope(r.rescale_slope);
  out->set_rescale_intercept(r.rescale_intercept);
  out->set_window_source(WindowSourceName(r.window_source));
  out->set_window_center(r.window_center);
  out->set_window_width(r.window_width);
  out->set_frame(r.frame);
  out->set_frame_count(r.frame_count);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ModelImaging>> BuildModelImaging(
    const repository::ServedModel& served) {
  const std::string& name = served.name;
  const auto& inputs = served.model->inputs();
  const auto& outputs = served.model->outputs();
  if (inputs.size() != 1 || inputs[0].type != engine::DataType::kFloat32 ||
      inputs[0].shape.size() != 4) {
    return Precondition(name,
                        "image requests need a model with one FP32 input of rank 4 (an image "
                        "batch); use ModelInfer with tensors for this model");
  }
  if (outputs.empty() || outputs[0].type != engine::DataType::kFloat32) {
    return Precondition(name, "output 0 must be FP32 for image postprocessing");
  }
  auto imaging = std::make_shared<ModelImaging>();
  const inference::ModelConfig& config = served.config;
  imaging->preprocessing = config.preprocessing();
  const std::vector<int64_t>& shape = inputs[0].shape;
  imaging->input_item_shape = {shape[1], shape[2], shape[3]};
  auto size = imaging::ImageInputSizeFromShape(config.preprocessing(), shape);
  if (!size.ok()) return Precondition(name, size.status().message());
  auto pre = imaging::PreprocessOptionsFromConfig(config.preprocessing(), size->width, size->height,
                                                  size->channels);
  if (!pre.ok()) return Precondition(name, pre.status().message());
  imaging->preprocess = *pre;
  auto dicom = imaging::DicomOptionsFromConfig(config.preprocessing());
  if (!dicom.ok()) return Precondition(name, dicom.status().message());
  imaging->dicom = *dicom;

  const PostprocessingConfig& post = config.postprocessing();
  const std::vector<int64_t>& out_shape = outputs[0].shape;
  if (post.task() == PostprocessingConfig::TASK_CLASSIFICATION) {
    auto options = imaging::ClassificationOptionsFromConfig(post);
    if (!options.ok()) return Precondition(name, options.status().message());
    imaging->task = ImageTask::kClassification;
    imaging->classification = *std::move(options);
    if (imaging->classification.labels.empty()) imaging->classification.labels = served.labels;
    imaging->num_classes = static_cast<int>(ItemElements(out_shape));
    if (imaging->num_classes <= 0) {
      return Precondition(name, absl::StrCat("output '", outputs[0].name,
                                             "' needs a fixed size per image for classification"));
    }
    const auto& labels = imaging->classification.labels;
    if (!labels.empty() && static_cast<int>(labels.size()) != imaging->num_classes) {
      return Precondition(
          name, absl::StrCat(labels.size(), " labels for ", imaging->num_classes, " classes"));
    }
  } else if (post.task() == PostprocessingConfig::TASK_DETECTION) {
    auto options = imaging::DetectionOptionsFromConfig(post);
    if (!options.ok()) return Precondition(name, options.status().message());
    imaging->task = ImageTask::kDetection;
    imaging->detection = *std::move(options);
    if (imaging->detection.labels.empty()) imaging->detection.labels = served.labels;
    if (out_shape.size() != 3 || out_shape[1] <= 4 || out_shape[2] <= 0) {
      return Precondition(name,
                          absl::StrCat("detection needs output 0 laid out [batch, 4 + classes, "
                                       "anchors] (Ultralytics YOLOv8), got rank ",
                                       out_shape.size()));
    }
    imaging->num_classes = static_cast<int>(out_shape[1] - 4);
    imaging->num_anchors = static_cast<int>(out_shape[2]);
    const auto& labels = imaging->detection.labels;
    if (!labels.empty() && static_cast<int>(labels.size()) != imaging->num_classes) {
      return Precondition(
          name, absl::StrCat(labels.size(), " labels for ", imaging->num_classes, " classes"));
    }
  }
  return std::shared_ptr<const ModelImaging>(std::move(imaging));
}

absl::StatusOr<std::shared_ptr<const ModelImaging>> ModelImagingCache::Get(
    const std::shared_ptr<const repository::ServedModel>& served) {
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(served.get());
    if (it != entries_.end() && it->second.served.lock() == served) return it->second.imaging;
  }
  // Built outside the lock; a concurrent duplicate build is harmless.
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelImaging> imaging, BuildModelImaging(*served));
  absl::MutexLock lock(&mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = it->second.served.expired() ? entries_.erase(it) : std::next(it);
  }
  entries_[served.get()] = Entry{served, imaging};
  return imaging;
}

namespace {

// Bytes per sample a decoder may produce for `header` (16-bit formats: 2).
int64_t SampleBytes(std::string_view bytes, const imaging::ImageHeader& header) {
  switch (header.format) {
    case imaging::ImageFormat::kPng:
      // IHDR bit depth (byte 24; ProbeImageHeader checked the length).
      return static_cast<unsigned char>(bytes[24]) > 8 ? 2 : 1;
    case imaging::ImageFormat::kTiff:
    case imaging::ImageFormat::kPnm:
      return 2;
    default:
      return 1;
  }
}

struct ImageEstimate {
  int64_t bytes = 0;
  std::optional<imaging::ImageHeader> header;
  std::optional<imaging::DicomScan> dicom;
};

// Decoder state (libjpeg/libpng/DCMTK tables and row buffers) and small
// intermediates, whatever the image's size: measured at 2-3 MiB
// (bench/imaging/image_peak_rss).
constexpr int64_t kDecoderOverhead = 4 << 20;

absl::StatusOr<ImageEstimate> Estimate(std::string_view bytes, const ModelImaging& imaging) {
  ImageEstimate estimate;
  const int64_t input = imaging::PreprocessOutputSize(imaging.preprocess) * 4 + kDecoderOverhead;
  if (imaging::LooksLikeDicom(bytes)) {
    imaging::DicomScanLimits limits;
    limits.max_pixels = imaging.dicom.max_pixels;
    limits.max_pixel_bytes = imaging.dicom.max_pixel_bytes;
    ASSIGN_OR_RETURN(estimate.dicom, imaging::ScanDicom(bytes, limits));
    const imaging::DicomScan& scan = *estimate.dicom;
    // DCMTK copies every value (the inflated dataset when deflated); one
    // frame is then rendered through 32-bit intermediates to 16-bit output,
    // converted to BGR for colour, and preprocessed.
    const int64_t held = scan.deflated ? scan.dataset_bytes : static_cast<int64_t>(bytes.size());
    const int64_t frame = int64_t{scan.rows} * scan.columns * std::max(scan.samples_per_pixel, 1);
    estimate.bytes = held + frame * (4 + 2 + 2 + 2) + input;
    return estimate;
  }
  ASSIGN_OR_RETURN(estimate.header, imaging::ProbeImageHeader(bytes));
  const imaging::ImageHeader& header = *estimate.header;
  const imaging::DecodeOptions options = imaging::DecodeOptionsFor(
      imaging.preprocessing, imaging.preprocess, header.width, header.height);
  // The size limits first: they also keep the arithmetic below in range.
  RETURN_IF_ERROR(imaging::CheckImageSize(header, options));
  const int reduction = imaging::JpegReduction(header, options);
  const int64_t pixels = int64_t{(header.width + reduction - 1) / reduction} *
                         ((header.height + reduction - 1) / reduction);
  const int64_t channels = header.channels > 0 ? std::min(header.channels, 4) : 4;
  // The decoder's output (up to 4 channels), a 3-channel conversion of it,
  // and the model's input; preprocessing resizes before it converts to float.
  estimate.bytes = pixels * SampleBytes(bytes, header) * (channels + 3) + input;
  return estimate;
}

}  // namespace

absl::StatusOr<int64_t> EstimateImageBytes(std::string_view bytes, const ModelImaging& imaging) {
  ASSIGN_OR_RETURN(const ImageEstimate estimate, Estimate(bytes, imaging));
  return estimate.bytes;
}

absl::StatusOr<PreparedImage> PrepareImage(std::string_view bytes, const ModelImaging& imaging,
                                           const rectifier::v1::DicomOptions* dicom,
                                           ImageMemoryBudget* budget) {
  if (bytes.empty()) return absl::InvalidArgumentError("image data is empty");
  PreparedImage out;
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(const ImageEstimate estimate, Estimate(bytes, imaging));
  ImageMemoryBudget::Reservation reservation;
  if (budget != nullptr) {
    const std::string what =
        estimate.dicom.has_value()
            ? absl::StrCat("a ", estimate.dicom->columns, "x", estimate.dicom->rows, " DICOM image")
            : absl::StrCat("a ", estimate.header->width, "x", estimate.header->height, " ",
                           imaging::ImageFormatName(estimate.header->format), " image");
    ASSIGN_OR_RETURN(reservation, budget->Reserve(estimate.bytes, what));
  }
  cv::Mat image;
  cv::Size original;
  imaging::PreprocessOptions pre = imaging.preprocess;
  if (estimate.dicom.has_value()) {
    imaging::DicomOptions options = imaging.dicom;
    if (dicom != nullptr) RETURN_IF_ERROR(ApplyDicomOverride(*dicom, options));
    ASSIGN_OR_RETURN(imaging::DicomImageResult result,
                     imaging::DecodeDicom(bytes, options, &*estimate.dicom));
    // The VOI window already mapped the values to the full 16-bit range.
    pre.sixteen_bit = imaging::SixteenBitMode::kFullRange;
    image = std::move(result.image);
    original = image.size();
    out.info.set_format("dicom");
    out.info.set_decode_reduction(1);
    FillDicomInfo(result.report, out.info.mutable_dicom());
  } else {
    const imaging::ImageHeader& header = *estimate.header;
    const imaging::DecodeOptions options =
        imaging::DecodeOptionsFor(imaging.preprocessing, pre, header.width, header.height);
    ASSIGN_OR_RETURN(imaging::DecodedImage decoded, imaging::DecodeImage(bytes, options));
    image = std::move(decoded.image);
    original = cv::Size(decoded.original_width, decoded.original_height);
    out.info.set_format(absl::AsciiStrToLower(imaging::ImageFormatName(decoded.format)));
    out.info.set_decode_reduction(decoded.reduction);
  }
  out.info.set_width(original.width);
  out.info.set_height(original.height);
  const absl::Time decoded_at = absl::Now();

  std::vector<int64_t> shape = {1};
  shape.insert(shape.end(), imaging.input_item_shape.begin(), imaging.input_item_shape.end());
  out.tensor.type = engine::DataType::kFloat32;
  out.tensor.shape = std::move(shape);
  out.tensor.bytes.resize(engine::NumElements(out.tensor.shape) * sizeof(float));
  absl::Span<float> span(out.tensor.data<float>(), out.tensor.num_elements());
  ASSIGN_OR_RETURN(out.transform, imaging::Preprocess(std::move(image), pre, span, original));
  out.decode = decoded_at - start;
  out.preprocess = absl::Now() - decoded_at;
  return out;
}

absl::StatusOr<std::vector<imaging::Classification>> ClassifyOutput(
    const engine::Tensor& output, const imaging::ClassificationOptions& options) {
  if (output.type != engine::DataType::kFloat32) {
    return absl::InternalError("classification output is not FP32");
  }
  return imaging::Classify(absl::MakeConstSpan(output.data<float>(), output.num_elements()),
                           options);
}

absl::StatusOr<std::vector<imaging::Detection>> DetectOutput(
    const engine::Tensor& output, const ModelImaging& imaging,
    const imaging::DetectionOptions& options, const imaging::ImageTransform& transform) {
  if (output.type != engine::DataType::kFloat32 ||
      output.num_elements() != int64_t{4 + imaging.num_classes} * imaging.num_anchors) {
    return absl::InternalError("detection output does not match the model's head shape");
  }
  return imaging::DecodeYoloDetections(
      absl::MakeConstSpan(output.data<float>(), output.num_elements()), imaging.num_classes,
      imaging.num_anchors, options, transform);
}

}  // namespace rectifier::service
