// The KServe v2 HTTP/REST endpoint (Triton's port 8000) on civetweb: the
// same KServeService as gRPC behind the routes of http_codec.h, with the
// same tokens, limits, deadlines and metrics (api="kserve_http"), plus the
// vision API's Classify and Detect for raw or multipart image bodies
// (api="vision_http").
#ifndef RECTIFIER_SERVER_SERVICE_HTTP_ENDPOINT_H_
#define RECTIFIER_SERVER_SERVICE_HTTP_ENDPOINT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/service/http_codec.h"

struct mg_connection;
struct mg_context;

namespace rectifier::service {

class KServeService;
class VisionService;

struct HttpEndpointOptions {
  std::string address = "0.0.0.0:8000";  // "host:port"; port 0 picks a free port
  // civetweb serves each connection on one worker thread, and an inference
  // holds its thread until it is answered, so this bounds the HTTP requests
  // in flight (the batcher sees at most this many from HTTP at once).
  int threads = 16;
  // Largest request body (the gRPC message limit applies to both).
  size_t max_body_bytes = size_t{256} << 20;
  HttpInferLimits infer_limits;
  // Bound on each network read or write of a connection (a client that
  // stops sending or reading frees its thread after this).
  int io_timeout_ms = 30000;
  // A keep-alive connection waits this long for its next request.
  int keep_alive_timeout_ms = 2000;
};

// Thread-safe; every route answers on its connection's thread. Stopping
// (the destructor) waits for the requests being served.
class HttpEndpoint {
 public:
  // REQUIRES: `kserve` and `vision` outlive the endpoint. UNAVAILABLE when
  // the address cannot be bound, INVALID_ARGUMENT for a malformed one.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Create(const HttpEndpointOptions& options,
                                                              KServeService* kserve,
                                                              VisionService* vision);
  ~HttpEndpoint();

  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }

  // Stops accepting and waits for the requests being served. Idempotent.
  void Stop();

 private:
  HttpEndpoint(const HttpEndpointOptions& options, KServeService* kserve, VisionService* vision)
      : options_(options), kserve_(kserve), vision_(vision) {}
  static int HandleRequest(mg_connection* connection, void* self);
  void Serve(mg_connection* connection);
  // The token the route needs, when the server has tokens (OK otherwise).
  absl::Status Authorize(mg_connection* connection, HttpRoute::Kind kind) const;
  // The system shared memory routes (KServeService::shared_memory()).
  void ServeSharedMemory(mg_connection* connection, const HttpRoute& route,
                         const std::string& body);
  void ServeRepository(mg_connection* connection, const HttpRoute& route, const std::string& body);
  void ServeInfer(mg_connection* connection, const HttpRoute& route, std::string body);
  // POST /v1/models/M/classify and /detect.
  void ServeImages(mg_connection* connection, const HttpRoute& route, std::string body);

  const HttpEndpointOptions options_;
  KServeService* const kserve_;
  VisionService* const vision_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_HTTP_ENDPOINT_H_
