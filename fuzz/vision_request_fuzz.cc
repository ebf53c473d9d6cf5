// libFuzzer target: untrusted image bytes as one image of a Classify or
// Detect request: PrepareImage (format sniffing, DICOM or DecodeImage with
// the model's scaled-decode options, then Preprocess into the input tensor),
// once for each default model's imaging (scan_classifier: gray stretch to
// 128x128; road_detector: RGB letterbox to 320x320, with a request's DICOM
// min-max window override; scan_segmenter: gray at the image's own size,
// padded to x16, then SegmentOutput maps a score map of that size back to
// the image's pixels).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "fuzz/fuzz_models.h"
#include "rectifier/v1/vision.pb.h"
#include "server/service/image_pipeline.h"
#include "server/service/server_options.h"

namespace {

using rectifier::service::ModelImaging;

std::shared_ptr<const ModelImaging> ImagingFor(const char* name) {
  const auto served = rectifier::fuzz::ServedFor(rectifier::fuzz::LoadModelConfig(name));
  RECTIFIER_FUZZ_CHECK(served->imaging.ok());
  return *served->imaging;
}

absl::StatusOr<rectifier::service::PreparedImage> Prepare(
    std::string_view bytes, const ModelImaging& imaging, const rectifier::v1::DicomOptions* dicom) {
  // The server's image memory budget at its default size.
  static auto* budget = new rectifier::service::ImageMemoryBudget(
      rectifier::service::ServerOptions{}.image_memory_mb << 20);
  auto prepared = rectifier::service::PrepareImage(bytes, imaging, dicom, budget);
  rectifier::fuzz::Report("PrepareImage", prepared.status());
  if (!prepared.ok()) return prepared;
  const auto& t = prepared->tensor;
  RECTIFIER_FUZZ_CHECK(t.shape.size() == 1 + imaging.input_item_shape.size() && t.shape[0] == 1);
  RECTIFIER_FUZZ_CHECK(static_cast<int64_t>(t.bytes.size()) == t.num_elements() * 4);
  RECTIFIER_FUZZ_CHECK(prepared->info.width() > 0 && prepared->info.height() > 0);
  return prepared;
}

// The segmenter's output for a prepared image: its input (one channel) as
// class 1's score against 0.5 for class 0 and 1 - x for class 2, at half
// the input size (a stride-2 head), mapped back to the image.
void Segment(const rectifier::service::PreparedImage& prepared, const ModelImaging& imaging) {
  const int w = std::max(prepared.input_width / 2, 1), h = std::max(prepared.input_height / 2, 1);
  rectifier::engine::Tensor scores;
  scores.type = rectifier::engine::DataType::kFloat32;
  scores.shape = {1, imaging.num_classes, h, w};
  scores.bytes.resize(static_cast<size_t>(scores.num_elements()) * sizeof(float));
  float* out = scores.data<float>();
  const float* in = prepared.tensor.data<float>();
  const size_t plane = static_cast<size_t>(h) * w;
  for (size_t i = 0; i < plane; ++i) {
    const size_t y = i / w, x = i % w;
    const float v = in[(2 * y) * prepared.input_width + 2 * x];
    for (int c = 0; c < imaging.num_classes; ++c) out[c * plane + i] = c == 1 ? v : 0.5f * c;
  }
  rectifier::v1::SegmentResult result;
  const absl::Status status = rectifier::service::SegmentOutput(
      scores, imaging, imaging.segmentation, {1}, prepared, &result);
  rectifier::fuzz::Report("SegmentOutput", status);
  // Only a probability map over kMaxProbabilityPixels may be refused.
  RECTIFIER_FUZZ_CHECK(status.ok() || status.code() == absl::StatusCode::kInvalidArgument);
  if (!status.ok()) return;
  RECTIFIER_FUZZ_CHECK(result.width() == prepared.info.width() &&
                       result.height() == prepared.info.height());
  uint64_t pixels = 0;
  for (const auto& area : result.classes()) pixels += area.pixels();
  RECTIFIER_FUZZ_CHECK(pixels == uint64_t{result.width()} * result.height());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto* scan = new std::shared_ptr<const ModelImaging>(ImagingFor("scan_classifier"));
  static const auto* road = new std::shared_ptr<const ModelImaging>(ImagingFor("road_detector"));
  static const auto* min_max = [] {
    auto* d = new rectifier::v1::DicomOptions;
    d->set_window(rectifier::v1::DicomOptions::WINDOW_MIN_MAX);
    return d;
  }();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  static const auto* seg = new std::shared_ptr<const ModelImaging>(ImagingFor("scan_segmenter"));
  (void)Prepare(bytes, **scan, nullptr);
  (void)Prepare(bytes, **road, min_max);
  if (auto prepared = Prepare(bytes, **seg, nullptr); prepared.ok()) Segment(*prepared, **seg);
  return 0;
}
