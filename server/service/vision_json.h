// The vision API's answers as JSON: one format for `rectifier-client
// --json` and the HTTP image routes (/v1/models/M/classify, /detect, /segment), so a
// curl user and a client user read the same fields.
#ifndef RECTIFIER_SERVER_SERVICE_VISION_JSON_H_
#define RECTIFIER_SERVER_SERVICE_VISION_JSON_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "rectifier/v1/vision.pb.h"

namespace rectifier::service {

nlohmann::json TimingJson(const rectifier::v1::Timing& timing);
// Size, format, decode reduction, and the DICOM attributes when present.
nlohmann::json ImageJson(const rectifier::v1::ImageInfo& image);
// {label, class_id, score, box: [x1, y1, x2, y2]}
nlohmann::json DetectionJson(const rectifier::v1::Detection& detection);

// {model_name, model_version, id, results: [{file, classes | detections,
// image, timing}]}, `files[i]` naming result i ("" past the end).
nlohmann::json ClassifyResponseJson(const rectifier::v1::ClassifyResponse& response,
                                    const std::vector<std::string>& files);
nlohmann::json DetectResponseJson(const rectifier::v1::DetectResponse& response,
                                  const std::vector<std::string>& files);
// results: [{file, width, height, classes: [{label, class_id, pixels,
// fraction}], image, timing}], plus, with `with_png`, "mask_png" and
// "probabilities": [{label, class_id, png}] (PNG bytes in base64).
nlohmann::json SegmentResponseJson(const rectifier::v1::SegmentResponse& response,
                                   const std::vector<std::string>& files, bool with_png);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_VISION_JSON_H_
