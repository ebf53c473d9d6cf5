// The KServe v2 HTTP/REST protocol as pure functions: routes, the JSON
// inference request (with Triton's binary tensor data extension) to and from
// the gRPC messages the services already speak, protobuf messages as JSON,
// and status codes. No sockets here; http_endpoint.cc serves them.
#ifndef RECTIFIER_SERVER_SERVICE_HTTP_CODEC_H_
#define RECTIFIER_SERVER_SERVICE_HTTP_CODEC_H_

#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpc_service.pb.h"
#include "nlohmann/json.hpp"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace rectifier::service {

// What a request path asks for. Model routes carry the model name and the
// version ("" = the policy's choice).
struct HttpRoute {
  enum class Kind {
    kServerMetadata,   // GET  /v2
    kLive,             // GET  /v2/health/live
    kReady,            // GET  /v2/health/ready
    kModelMetadata,    // GET  /v2/models/{m}[/versions/{v}]
    kModelReady,       // GET  .../ready
    kModelConfig,      // GET  .../config
    kModelStats,       // GET  .../stats, and /v2/models/stats for every model
    kInfer,            // POST .../infer
    kRepositoryIndex,  // POST /v2/repository/index
    kLoad,             // POST /v2/repository/models/{m}/load
    kUnload,           // POST /v2/repository/models/{m}/unload
    kClassify,         // POST /v1/models/{m}[/versions/{v}]/classify
    kDetect,           // POST /v1/models/{m}[/versions/{v}]/detect
    kSegment,          // POST /v1/models/{m}[/versions/{v}]/segment
    kShmStatus,        // GET  /v2/systemsharedmemory[/region/{r}]/status
    kShmRegister,      // POST /v2/systemsharedmemory/region/{r}/register
    kShmUnregister,    // POST /v2/systemsharedmemory[/region/{r}]/unregister
  };
  Kind kind = Kind::kServerMetadata;
  std::string model;
  std::string version;
  std::string region;  // the shared memory routes' {r}; empty: every region
  // The one method the route takes ("GET" routes take HEAD too).
  const char* method = "GET";
};

// Routes a (URL-decoded) path without its query string. NOT_FOUND, with a
// message naming the path, for any other path, a model or version segment
// that is empty, or one longer than 1024 bytes.
absl::StatusOr<HttpRoute> ParseHttpRoute(absl::string_view path);

// The HTTP status for a canonical code, as grpc-gateway maps them (400
// INVALID_ARGUMENT and FAILED_PRECONDITION, 401, 403, 404, 409, 429
// RESOURCE_EXHAUSTED, 499 CANCELLED, 501, 503 UNAVAILABLE, 504
// DEADLINE_EXCEEDED, 500 otherwise).
int HttpStatusFor(absl::StatusCode code);

// {"error": message}, the body of every error answer.
std::string HttpErrorBody(const absl::Status& status);

// A protobuf message as KServe/Triton JSON: proto field names, 64-bit
// integers as JSON numbers (not strings as in proto3's JSON mapping), enums
// by name, maps as objects. Scalars, lists and maps are always present
// (defaults included, as Triton prints them); unset sub-messages and oneof
// members are left out.
nlohmann::json ProtoToJson(const google::protobuf::Message& message);

// Limits on an inference request body.
struct HttpInferLimits {
  // The JSON part. Parsed JSON takes up to ~16 bytes of memory per input
  // byte (a number per two bytes), so this bounds a request's memory; large
  // tensors belong in the binary part.
  size_t max_json_bytes = size_t{32} << 20;
  // Nesting of a tensor's "data" arrays.
  int max_data_depth = 32;
};

// Parses a POST .../infer body into `request` (whose model name and version
// the caller sets from the route). `header_length` is the
// Inference-Header-Content-Length header (nullopt when absent: the whole body
// is JSON); the binary part follows the JSON, one `binary_data_size` slice
// per input that has that parameter, in input order. Every input becomes
// raw contents (JSON "data" is packed little-endian, BYTES as 4-byte length
// + bytes), so JSON and binary inputs mix. Request and output parameters are
// kept (binary_data, binary_data_output decide the answer's encoding).
// INVALID_ARGUMENT, naming the field or input, for: malformed JSON or a
// header length that is not a number within the body, a JSON part over the
// limit, missing or mistyped fields, a data element of the wrong type or out
// of the datatype's range, FP16/BF16 data in JSON, data nested deeper than
// the limit, both or neither of data and binary_data_size, slices that do
// not add up to the binary part, a data element count that does not match
// the shape.
absl::Status ParseHttpInferRequest(absl::string_view body,
                                   std::optional<absl::string_view> header_length,
                                   const HttpInferLimits& limits,
                                   inference::ModelInferRequest* request);

// An encoded inference answer: `body` is the JSON followed by the binary
// outputs; `json_size` the JSON's length (the Inference-Header-Content-Length
// to send when the body has binary outputs, i.e. json_size < body.size()).
struct HttpInferBody {
  std::string body;
  size_t json_size = 0;
};

// Encodes `response` (raw contents, as KServeService answers) for `request`:
// each output as JSON "data" (flat, row-major), or as binary when the request
// asked for it for that output ("binary_data": true) or for all of them
// ("binary_data_output": true). FP16/BF16 become JSON numbers; a NaN or
// infinity is JSON null; BYTES elements become strings (invalid UTF-8
// replaced by U+FFFD; ask for binary to get bytes as sent).
HttpInferBody EncodeHttpInferResponse(const inference::ModelInferRequest& request,
                                      const inference::ModelInferResponse& response);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_HTTP_CODEC_H_
