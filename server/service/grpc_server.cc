#include "server/service/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/server_interceptor.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/common/cpu_info.h"
#include "server/common/status_macros.h"
#include "server/metrics/https_endpoint.h"
#include "server/service/http_endpoint.h"
#include "server/service/image_budget.h"
#include "server/service/kserve_service.h"
#include "server/service/vision_service.h"
#include "server/service/work_pool.h"

namespace rectifier::service {
namespace {

constexpr char kKServeServiceName[] = "inference.GRPCInferenceService";
constexpr char kVisionServiceName[] = "rectifier.v1.Vision";
// How long a drain keeps the connections open after the last unary call in
// flight at its start has ended, for its response to be read.
constexpr absl::Duration kDrainLinger = absl::Milliseconds(500);

// Plaintext, or TLS from files that gRPC's watcher re-reads (it checks that
// a new key matches its certificate before switching).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials(
    const GrpcServerOptions& options) {
  if (!options.tls.enabled()) return grpc::InsecureServerCredentials();
  RETURN_IF_ERROR(security::ValidateTlsFiles(options.tls));
  const auto interval = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(options.tls_reload_interval)));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.tls.key, options.tls.cert, options.tls.client_ca, interval);
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_identity_key_cert_pairs();
  if (options.tls.client_ca.empty()) {
    tls.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls.watch_root_certs();
    tls.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(tls);
}

// Lives as long as its unary call: gRPC destroys a call's interceptors with
// its context, after the final status went to the transport. Counts the
// call for the drain (DrainTracker).
class DrainCountingInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit DrainCountingInterceptor(DrainTracker* tracker)
      : tracker_(tracker), counted_(tracker->Started()) {}
  ~DrainCountingInterceptor() override { tracker_->Ended(counted_); }
  DrainCountingInterceptor(const DrainCountingInterceptor&) = delete;
  DrainCountingInterceptor& operator=(const DrainCountingInterceptor&) = delete;

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  DrainTracker* const tracker_;
  const bool counted_;
};

class DrainCountingFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit DrainCountingFactory(DrainTracker* tracker) : tracker_(tracker) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Streams end when their client ends them or at the drain's deadline,
    // as before; only unary calls are waited for.
    if (info->type() != grpc::experimental::ServerRpcInfo::Type::UNARY) return nullptr;
    return new DrainCountingInterceptor(tracker_);
  }

 private:
  DrainTracker* const tracker_;
};

}  // namespace

absl::Status CheckAddressFree(const std::string& address, const char* what) {
  const absl::StatusOr<metrics::HostPort> split = metrics::SplitHostPort(address);
  if (!split.ok() || split->port == "0") return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  if (getaddrinfo(split->host.empty() ? nullptr : split->host.c_str(), split->port.c_str(), &hints,
                  &results) != 0) {
    return absl::OkStatus();  // a name gRPC may still resolve; its bind decides
  }
  std::string error;
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) error = std::strerror(errno);
    close(fd);
    if (!error.empty()) break;
  }
  freeaddrinfo(results);
  if (error.empty()) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(what, " '", address, "' cannot be bound (", error,
                   "); is another server running? Pick a free port or stop it"));
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Create(
    const GrpcServerOptions& options, repository::ModelRepository* repository) {
  if (options.tls.enabled() && !options.http_address.empty()) {
    return absl::FailedPreconditionError(
        "the HTTP/REST endpoint is plaintext only: with --tls-cert, pass --http-address '' "
        "(gRPC and metrics use TLS) or put a TLS-terminating proxy in front of a plaintext server");
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials, MakeCredentials(options));
  std::unique_ptr<GrpcServer> server(new GrpcServer());
  const int image_threads =
      options.image_threads > 0 ? options.image_threads : common::AvailableCpus();
  ASSIGN_OR_RETURN(server->image_pool_,
                   WorkPool::Create(image_threads, static_cast<size_t>(options.image_queue)));
  server->image_budget_ = std::make_unique<ImageMemoryBudget>(options.image_memory_bytes);
  server->kserve_ =
      std::make_unique<KServeService>(&server->state_, repository, server->image_pool_.get(),
                                      server->image_budget_.get(), options.tokens, options.clock);
  if (options.allow_client_shm) {
    server->shared_memory_ = std::make_unique<SharedMemoryRegistry>(
        SharedMemoryRegistry::kDefaultMaxRegions, static_cast<uint64_t>(options.max_message_bytes));
    server->kserve_->set_shared_memory(server->shared_memory_.get());
  }
  server->vision_ =
      std::make_unique<VisionService>(&server->state_, repository, server->image_pool_.get(),
                                      server->image_budget_.get(), options.tokens, options.clock);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.address, credentials, &server->port_);
  // Without this, gRPC binds with SO_REUSEPORT and a second server on the
  // same port would silently share it instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_connection_age > absl::ZeroDuration()) {
    builder.AddChannelArgument(
        GRPC_ARG_MAX_CONNECTION_AGE_MS,
        static_cast<int>(absl::ToInt64Milliseconds(options.max_connection_age)));
    // In-flight calls on an aged connection get this long to finish.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, 30000);
  }
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.RegisterService(server->kserve_.get());
  builder.RegisterService(server->vision_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<DrainCountingFactory>(&server->drain_tracker_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on '", options.address, "' (address in use or invalid)"));
  }
  if (!options.http_address.empty()) {
    HttpEndpointOptions http;
    http.address = options.http_address;
    http.threads = options.http_threads;
    http.max_body_bytes = static_cast<size_t>(options.max_message_bytes);
    ASSIGN_OR_RETURN(server->http_,
                     HttpEndpoint::Create(http, server->kserve_.get(), server->vision_.get()));
  }
  grpc::HealthCheckServiceInterface* health = server->server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kKServeServiceName, true);
  health->SetServingStatus(kVisionServiceName, true);
  server->state_.set_ready(true);
  return server;
}

void GrpcServer::Drain(absl::Duration timeout) {
  if (drained_) return;
  drained_ = true;
  state_.set_ready(false);
  // Health goes NOT_SERVING for every service (Check and open Watch streams)
  // and stays there whatever is set later.
  server_->GetHealthCheckService()->Shutdown();
  // HTTP stops listening and waits for its requests while gRPC drains.
  std::thread http_stop([this] {
    if (http_ != nullptr) http_->Stop();
  });
  // The unary calls in flight finish over open connections, and their
  // responses get kDrainLinger to be read, before gRPC sends GOAWAY and
  // closes each connection as its last call ends (DrainTracker). Calls
  // arriving meanwhile are answered (inference: UNAVAILABLE, the models
  // are draining too).
  const absl::Time deadline = absl::Now() + timeout;
  drain_tracker_.BeginAndWait(kDrainLinger, deadline);
  server_->Shutdown(absl::ToChronoTime(deadline));
  server_->Wait();
  http_stop.join();
}

int GrpcServer::http_port() const { return http_ != nullptr ? http_->port() : 0; }

GrpcServer::~GrpcServer() {
  if (server_ != nullptr) Drain(absl::ZeroDuration());
  http_.reset();
}

}  // namespace rectifier::service
