// The HTTP image routes' requests (POST /v1/models/M/classify, /detect and /segment)
// as pure functions: a raw or multipart/form-data body into images, and the
// query string into a ClassifyRequest or DetectRequest. http_endpoint.cc
// serves them; routes and status codes are in http_codec.h.
#ifndef RECTIFIER_SERVER_SERVICE_HTTP_IMAGE_REQUEST_H_
#define RECTIFIER_SERVER_SERVICE_HTTP_IMAGE_REQUEST_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rectifier/v1/vision.pb.h"

namespace rectifier::service {

// The image routes' input: one part per image, named by its multipart
// filename (or "" for a raw body).
struct HttpImagePart {
  std::string filename;
  absl::string_view data;  // into the body
};

// The images of a classify/detect body: the whole body as one image, or,
// for Content-Type multipart/form-data, each part that has a body (RFC
// 7578: parts separated by "--BOUNDARY" lines, headers, a blank line).
// INVALID_ARGUMENT for an empty body, a multipart type without a boundary,
// a body without the closing boundary, a part without the blank line after
// its headers, or no parts.
absl::StatusOr<std::vector<HttpImagePart>> ParseImageBody(absl::string_view content_type,
                                                          absl::string_view body);

// A query string ("a=1&b=x%20y") as ordered (name, value) pairs, each
// percent- and '+'-decoded. INVALID_ARGUMENT for a malformed escape.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    absl::string_view query);

// The query parameters of POST /v1/models/M/classify into `request`:
// top_k, threshold, priority, timeout_us, id. INVALID_ARGUMENT naming an
// unknown parameter or a value that is not a number of the field's type.
absl::Status ApplyClassifyQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                rectifier::v1::ClassifyRequest* request);
// ... of /detect: score_threshold, iou_threshold, max_detections, classes
// (comma-separated class ids, or repeated), priority, timeout_us, id.
absl::Status ApplyDetectQuery(const std::vector<std::pair<std::string, std::string>>& query,
                              rectifier::v1::DetectRequest* request);
// ... of /segment: probabilities (comma-separated class ids, or repeated,
// or "all"), min_score, priority, timeout_us, id.
absl::Status ApplySegmentQuery(const std::vector<std::pair<std::string, std::string>>& query,
                               rectifier::v1::SegmentRequest* request);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_HTTP_IMAGE_REQUEST_H_
