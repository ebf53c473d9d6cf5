#include "server/service/image_pipeline.h"

#include <algorithm>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/imaging/config.h"
#include "server/imaging/decode.h"
#include "server/imaging/dicom_scan.h"

namespace rectifier::service {
namespace {

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
  RETURN_IF_ERROR(imaging::CheckImageSize(header, options, bytes.size()));
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
                                           ImageMemoryBudget* budget, const common::Clock* clock) {
  if (bytes.empty()) return absl::InvalidArgumentError("image data is empty");
  PreparedImage out;
  const absl::Time start = clock->Now();
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
  // Keep-size mode: this image's own input size, from its header for the
  // decode, then from its decoded, oriented size below.
  pre = estimate.dicom.has_value()
            ? imaging::ForImage(pre, estimate.dicom->columns, estimate.dicom->rows)
            : imaging::ForImage(pre, estimate.header->width, estimate.header->height);
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
  if (pre.keep_size.enabled) {
    const imaging::PreprocessOptions sized =
        imaging::ForImage(imaging.preprocess, original.width, original.height);
    pre.width = sized.width;
    pre.height = sized.height;
    pre.keep_size.scale = sized.keep_size.scale;
  }
  const absl::Time decoded_at = clock->Now();

  std::vector<int64_t> shape = {1};
  if (pre.keep_size.enabled) {
    const int64_t c = pre.channels, h = pre.height, w = pre.width;
    if (pre.layout == imaging::Layout::kNchw) {
      shape.insert(shape.end(), {c, h, w});
    } else {
      shape.insert(shape.end(), {h, w, c});
    }
  } else {
    shape.insert(shape.end(), imaging.input_item_shape.begin(), imaging.input_item_shape.end());
  }
  out.tensor.type = engine::DataType::kFloat32;
  out.tensor.shape = std::move(shape);
  out.tensor.bytes.resize(engine::NumElements(out.tensor.shape) * sizeof(float));
  absl::Span<float> span(out.tensor.data<float>(), out.tensor.num_elements());
  ASSIGN_OR_RETURN(out.transform, imaging::Preprocess(std::move(image), pre, span, original));
  out.input_width = pre.width;
  out.input_height = pre.height;
  out.decode = decoded_at - start;
  out.preprocess = clock->Now() - decoded_at;
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
  const int64_t anchors = imaging.num_anchors >= 0   ? imaging.num_anchors
                          : output.shape.size() == 3 ? output.shape[2]
                                                     : -1;
  if (output.type != engine::DataType::kFloat32 || anchors < 0 || anchors > (int64_t{1} << 30) ||
      output.num_elements() != int64_t{4 + imaging.num_classes} * anchors) {
    return absl::InternalError("detection output does not match the model's head shape");
  }
  return imaging::DecodeYoloDetections(
      absl::MakeConstSpan(output.data<float>(), output.num_elements()), imaging.num_classes,
      static_cast<int>(anchors), options, transform);
}

namespace {

std::string EncodePng(const cv::Mat& image) {
  std::vector<uchar> png;
  // Lossless either way; level 1 is OpenCV's fastest and the masks are
  // mostly runs, so they stay small.
  cv::imencode(".png", image, png, {cv::IMWRITE_PNG_COMPRESSION, 1});
  return std::string(png.begin(), png.end());
}

const std::string& LabelOf(const std::vector<std::string>& labels, int id) {
  static const std::string kNone;
  return id >= 0 && id < static_cast<int>(labels.size()) ? labels[static_cast<size_t>(id)] : kNone;
}

}  // namespace

absl::Status SegmentOutput(const engine::Tensor& output, const ModelImaging& imaging,
                           const imaging::SegmentationOptions& options,
                           const std::vector<int>& probability_classes,
                           const PreparedImage& prepared, rectifier::v1::SegmentResult* out) {
  const std::vector<int64_t>& shape = output.shape;
  if (output.type != engine::DataType::kFloat32 || shape.size() != 4 || shape[0] != 1 ||
      shape[1] != imaging.num_classes || shape[2] < 1 || shape[3] < 1 ||
      shape[2] > (int64_t{1} << 20) || shape[3] > (int64_t{1} << 20)) {
    return absl::InternalError("segmentation output does not match the model's head shape");
  }
  const int64_t pixels =
      int64_t{prepared.transform.original_width} * prepared.transform.original_height;
  if (static_cast<int64_t>(probability_classes.size()) * pixels > kMaxProbabilityPixels) {
    return absl::InvalidArgumentError(absl::StrCat(
        probability_classes.size(), " probability maps of a ", prepared.transform.original_width,
        "x", prepared.transform.original_height, " image exceed ", kMaxProbabilityPixels,
        " map pixels per image; ask for fewer probability_classes"));
  }
  imaging::ScoreMap map;
  map.scores = absl::MakeConstSpan(output.data<float>(), output.num_elements());
  map.classes = imaging.num_classes;
  map.height = static_cast<int>(shape[2]);
  map.width = static_cast<int>(shape[3]);
  map.input_width = prepared.input_width;
  map.input_height = prepared.input_height;
  ASSIGN_OR_RETURN(imaging::SegmentationResult result,
                   imaging::SegmentScores(map, prepared.transform, options, probability_classes));
  out->set_width(static_cast<uint32_t>(result.mask.cols));
  out->set_height(static_cast<uint32_t>(result.mask.rows));
  out->set_mask_png(EncodePng(result.mask));
  const double total = static_cast<double>(result.mask.total());
  std::vector<int> present;
  for (int c = 0; c < static_cast<int>(result.pixels_per_class.size()); ++c) {
    if (result.pixels_per_class[static_cast<size_t>(c)] > 0) present.push_back(c);
  }
  std::stable_sort(present.begin(), present.end(), [&](int a, int b) {
    return result.pixels_per_class[static_cast<size_t>(a)] >
           result.pixels_per_class[static_cast<size_t>(b)];
  });
  for (const int c : present) {
    auto* area = out->add_classes();
    area->set_class_id(c);
    area->set_label(LabelOf(options.labels, c));
    const int64_t pixels = result.pixels_per_class[static_cast<size_t>(c)];
    area->set_pixels(static_cast<uint64_t>(pixels));
    area->set_fraction(static_cast<float>(static_cast<double>(pixels) / total));
  }
  for (size_t k = 0; k < probability_classes.size(); ++k) {
    cv::Mat sixteen;
    result.probabilities[k].convertTo(sixteen, CV_16U, 65535.0);
    auto* map_out = out->add_probabilities();
    map_out->set_class_id(probability_classes[k]);
    map_out->set_label(LabelOf(options.labels, probability_classes[k]));
    map_out->set_png(EncodePng(sixteen));
  }
  return absl::OkStatus();
}

}  // namespace rectifier::service
