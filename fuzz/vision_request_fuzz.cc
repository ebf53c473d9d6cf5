// libFuzzer target: untrusted image bytes as one image of a Classify or
// Detect request: PrepareImage (format sniffing, DICOM or DecodeImage with
// the model's scaled-decode options, then Preprocess into the input tensor),
// once for each default model's imaging (scan_classifier: gray stretch to
// 128x128; road_detector: RGB letterbox to 320x320, with a request's DICOM
// min-max window override).
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

void Prepare(std::string_view bytes, const ModelImaging& imaging,
             const rectifier::v1::DicomOptions* dicom) {
  // The server's image memory budget at its default size.
  static auto* budget = new rectifier::service::ImageMemoryBudget(
      rectifier::service::ServerOptions{}.image_memory_mb << 20);
  auto prepared = rectifier::service::PrepareImage(bytes, imaging, dicom, budget);
  rectifier::fuzz::Report("PrepareImage", prepared.status());
  if (!prepared.ok()) return;
  const auto& t = prepared->tensor;
  RECTIFIER_FUZZ_CHECK(t.shape.size() == 1 + imaging.input_item_shape.size() && t.shape[0] == 1);
  RECTIFIER_FUZZ_CHECK(static_cast<int64_t>(t.bytes.size()) == t.num_elements() * 4);
  RECTIFIER_FUZZ_CHECK(prepared->info.width() > 0 && prepared->info.height() > 0);
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
  Prepare(bytes, **scan, nullptr);
  Prepare(bytes, **road, min_max);
  return 0;
}
