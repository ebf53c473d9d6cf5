#include "server/service/vision_json.h"

#include "absl/strings/escaping.h"

namespace rectifier::service {
namespace {

using nlohmann::json;
namespace v1 = rectifier::v1;

const std::string& FileName(const std::vector<std::string>& files, int i) {
  static const std::string kNone;
  return i < static_cast<int>(files.size()) ? files[static_cast<size_t>(i)] : kNone;
}

template <typename Response>
json ResponseJson(const Response& response, json results) {
  return {{"model_name", response.model_name()},
          {"model_version", response.model_version()},
          {"id", response.id()},
          {"results", std::move(results)}};
}

}  // namespace

json TimingJson(const v1::Timing& t) {
  return {{"decode_us", t.decode_us()},
          {"preprocess_us", t.preprocess_us()},
          {"queue_us", t.queue_us()},
          {"inference_us", t.inference_us()},
          {"postprocess_us", t.postprocess_us()},
          {"total_us", t.total_us()}};
}

json ImageJson(const v1::ImageInfo& image) {
  json out = {{"width", image.width()},
              {"height", image.height()},
              {"format", image.format()},
              {"decode_reduction", image.decode_reduction()}};
  if (image.has_dicom()) {
    const v1::DicomInfo& d = image.dicom();
    out["dicom"] = {{"rows", d.rows()},
                    {"columns", d.columns()},
                    {"modality", d.modality()},
                    {"photometric_interpretation", d.photometric_interpretation()},
                    {"transfer_syntax", d.transfer_syntax()},
                    {"rescale_slope", d.rescale_slope()},
                    {"rescale_intercept", d.rescale_intercept()},
                    {"window_source", d.window_source()},
                    {"window_center", d.window_center()},
                    {"window_width", d.window_width()},
                    {"frame", d.frame()},
                    {"frame_count", d.frame_count()}};
  }
  return out;
}

json DetectionJson(const v1::Detection& d) {
  return {{"label", d.label()},
          {"class_id", d.class_id()},
          {"score", d.score()},
          {"box", {d.box().x1(), d.box().y1(), d.box().x2(), d.box().y2()}}};
}

json ClassifyResponseJson(const v1::ClassifyResponse& response,
                          const std::vector<std::string>& files) {
  json results = json::array();
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::ClassifyResult& r = response.results(i);
    json classes = json::array();
    for (const v1::Classification& c : r.classes()) {
      classes.push_back({{"label", c.label()}, {"class_id", c.class_id()}, {"score", c.score()}});
    }
    results.push_back({{"file", FileName(files, i)},
                       {"classes", std::move(classes)},
                       {"image", ImageJson(r.image())},
                       {"timing", TimingJson(r.timing())}});
  }
  return ResponseJson(response, std::move(results));
}

json DetectResponseJson(const v1::DetectResponse& response, const std::vector<std::string>& files) {
  json results = json::array();
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::DetectResult& r = response.results(i);
    json detections = json::array();
    for (const v1::Detection& d : r.detections()) detections.push_back(DetectionJson(d));
    results.push_back({{"file", FileName(files, i)},
                       {"detections", std::move(detections)},
                       {"image", ImageJson(r.image())},
                       {"timing", TimingJson(r.timing())}});
  }
  return ResponseJson(response, std::move(results));
}

json SegmentResponseJson(const v1::SegmentResponse& response, const std::vector<std::string>& files,
                         bool with_png) {
  json results = json::array();
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::SegmentResult& r = response.results(i);
    json classes = json::array();
    for (const v1::ClassArea& a : r.classes()) {
      classes.push_back({{"label", a.label()},
                         {"class_id", a.class_id()},
                         {"pixels", a.pixels()},
                         {"fraction", a.fraction()}});
    }
    json result = {{"file", FileName(files, i)},    {"width", r.width()},
                   {"height", r.height()},          {"classes", std::move(classes)},
                   {"image", ImageJson(r.image())}, {"timing", TimingJson(r.timing())}};
    if (with_png) {
      result["mask_png"] = absl::Base64Escape(r.mask_png());
      json maps = json::array();
      for (const v1::ProbabilityMap& m : r.probabilities()) {
        maps.push_back({{"label", m.label()},
                        {"class_id", m.class_id()},
                        {"png", absl::Base64Escape(m.png())}});
      }
      result["probabilities"] = std::move(maps);
    }
    results.push_back(std::move(result));
  }
  return ResponseJson(response, std::move(results));
}

}  // namespace rectifier::service
