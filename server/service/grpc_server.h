// The gRPC server: KServe v2 service, grpc.health.v1 and reflection on one
// port, the same KServe service over HTTP/REST on another, with a bounded
// graceful drain of both.
#ifndef RECTIFIER_SERVER_SERVICE_GRPC_SERVER_H_
#define RECTIFIER_SERVER_SERVICE_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/security/tls_files.h"
#include "server/security/tokens.h"
#include "server/service/drain_tracker.h"
#include "server/service/server_state.h"
#include "server/service/shared_memory.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace rectifier::repository {
class ModelRepository;
}  // namespace rectifier::repository

namespace rectifier::service {

class HttpEndpoint;
class KServeService;
class VisionService;
class ImageMemoryBudget;
class WorkPool;

struct GrpcServerOptions {
  std::string address = "0.0.0.0:8001";  // port 0 picks a free port
  // The KServe v2 HTTP/REST endpoint (HttpEndpoint); empty: none. Plaintext
  // only: Create refuses it together with `tls`.
  std::string http_address;
  int http_threads = 16;
  int max_message_bytes = 256 << 20;
  absl::Duration max_connection_age = absl::ZeroDuration();  // zero = never
  // Image workers (decode, preprocess, postprocess) for the vision API and
  // KServe BYTES inputs; 0 = the CPUs the process may use.
  int image_threads = 0;
  // Images waiting for a worker beyond which new ones are refused (UNAVAILABLE).
  int image_queue = 1024;
  // Bytes images being decoded may hold at once (ImageMemoryBudget); 0 = unbounded.
  int64_t image_memory_bytes = int64_t{1} << 30;
  // Set: the port speaks TLS only (and with a client CA, mutual TLS); gRPC
  // re-reads the files every tls_reload_interval and new connections use
  // the new ones (a pair that does not match is skipped until it does).
  security::TlsFiles tls;
  absl::Duration tls_reload_interval = absl::Seconds(60);
  // Set: calls need a bearer token (KServeService, VisionService); must
  // outlive the server. grpc.health.v1 and reflection stay open.
  const security::TokenStore* tokens = nullptr;
  // Times requests and their deadlines in the services; must outlive the server.
  const common::Clock* clock = common::Clock::Real();
  // Triton's system shared memory extension (SharedMemoryRegistry): clients
  // on this host may register shm_open objects and pass tensors through
  // them. Off by default, as in Triton (--allow-client-shm).
  bool allow_client_shm = false;
};

// Fails fast, before minutes of model compilation, when `address`
// ("host:port") cannot be bound: binds a socket to it and closes it again.
// UNAVAILABLE naming `what` (e.g. "--http-address") and the address when it
// is in use or not an address of this host; OK for port 0 and for an
// address that is not host:port (the real bind reports those).
absl::Status CheckAddressFree(const std::string& address, const char* what);

class GrpcServer {
 public:
  // Builds, binds and starts serving; health reports SERVING when this
  // returns, and ServerReady is true once every model is ready too.
  // UNAVAILABLE if the address cannot be bound, FAILED_PRECONDITION for TLS
  // files that cannot be used. `repository` may be null (no models);
  // otherwise it must outlive the server.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Create(
      const GrpcServerOptions& options, repository::ModelRepository* repository = nullptr);
  ~GrpcServer();

  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  int port() const { return port_; }
  // The HTTP/REST port, or 0 without one.
  int http_port() const;
  const ServerState& state() const { return state_; }

  // Readiness false and health NOT_SERVING at once; HTTP stops listening.
  // The unary gRPC calls in flight finish over open connections (new calls
  // are still answered meanwhile), and half a second after the last of them
  // ended gRPC stops accepting calls (GOAWAY; new connections are refused)
  // and lets what is left finish until `timeout`, after which gRPC calls
  // are cancelled (HTTP requests end when their model answers them, at the
  // latest when the repository's own drain answers what is queued). Returns
  // when the server has stopped (every call finished, so no image work is
  // pending). Idempotent.
  void Drain(absl::Duration timeout);

 private:
  GrpcServer() = default;

  ServerState state_;
  // Outlives the gRPC server, whose interceptors report to it.
  DrainTracker drain_tracker_;
  // Declared before the services that use it, so it is destroyed after them.
  std::unique_ptr<WorkPool> image_pool_;
  std::unique_ptr<ImageMemoryBudget> image_budget_;
  std::unique_ptr<SharedMemoryRegistry> shared_memory_;  // null: client shm off
  std::unique_ptr<KServeService> kserve_;
  std::unique_ptr<VisionService> vision_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpEndpoint> http_;
  int port_ = 0;
  bool drained_ = false;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_GRPC_SERVER_H_
