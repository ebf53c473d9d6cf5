// /metrics over HTTPS: a small HTTP/1.1 responder on OpenSSL, used when the
// server has --tls-cert. (Debian's civetweb 1.15 cannot serve TLS with
// OpenSSL 3: it looks up SSL_get_peer_certificate, which OpenSSL 3 no longer
// exports, and calls the null pointer on the first connection.)
#ifndef RECTIFIER_SERVER_METRICS_HTTPS_ENDPOINT_H_
#define RECTIFIER_SERVER_METRICS_HTTPS_ENDPOINT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security/tls_context.h"

namespace rectifier::metrics {

struct HttpsEndpointOptions {
  std::string address;  // "host:port", "[v6]:port" or ":port"; port 0 picks one
  int threads = 8;      // connections served at once
  // Bound on each connection: handshake, request and response together.
  int request_timeout_ms = 3000;
  security::TlsContext* tls = nullptr;  // REQUIRED; must outlive the endpoint
  // The body of GET /metrics (Prometheus text format); called concurrently.
  std::function<std::string()> metrics_body;
};

// "host:port", "[v6]:port" or ":port" (host empty: every address), the port
// a number in [0, 65535]; INVALID_ARGUMENT otherwise. Both metrics endpoints
// (civetweb's and this one) accept exactly these.
struct HostPort {
  std::string host;
  std::string port;
};
absl::StatusOr<HostPort> SplitHostPort(const std::string& address);

// The whole HTTP/1.1 response to `request` (the bytes read, up to and
// including the blank line after the headers; `complete` false when none
// came within the size limit): 200 with metrics_body() for GET/HEAD
// /metrics, 404, 405 or 400. Pure; what HttpsEndpoint sends.
std::string MetricsResponse(absl::string_view request, bool complete,
                            const std::function<std::string()>& metrics_body);

// Answers `GET /metrics` (and HEAD) with 200, other paths with 404, other
// methods with 405, a malformed or oversized (16 KiB) request with 400; one
// request per connection (Connection: close). Each worker thread accepts
// and serves one connection at a time, so an idle or slow client holds one
// worker for at most request_timeout_ms.
class HttpsEndpoint {
 public:
  // Errors: INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it
  // cannot be bound, INTERNAL if OpenSSL fails.
  static absl::StatusOr<std::unique_ptr<HttpsEndpoint>> Create(HttpsEndpointOptions options);
  // Stops accepting and waits for the connections being served.
  ~HttpsEndpoint();

  HttpsEndpoint(const HttpsEndpoint&) = delete;
  HttpsEndpoint& operator=(const HttpsEndpoint&) = delete;

  int port() const { return port_; }

 private:
  explicit HttpsEndpoint(HttpsEndpointOptions options) : options_(std::move(options)) {}
  void AcceptLoop();
  void Serve(int fd);

  const HttpsEndpointOptions options_;
  void* ssl_ctx_ = nullptr;  // SSL_CTX*
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> workers_;
};

}  // namespace rectifier::metrics

#endif  // RECTIFIER_SERVER_METRICS_HTTPS_ENDPOINT_H_
