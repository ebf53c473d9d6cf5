#include "server/metrics/https_endpoint.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace rectifier::metrics {
namespace {

constexpr size_t kMaxRequestBytes = 16 << 10;

// Limits the next blocking socket operation to what is left of `deadline`.
bool SetTimeouts(int fd, absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return false;
  const timeval tv = absl::ToTimeval(std::max(left, absl::Milliseconds(1)));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return true;
}

std::string Response(int code, absl::string_view reason, absl::string_view body,
                     absl::string_view content_type, bool head) {
  return absl::StrCat("HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                      head ? absl::string_view() : body);
}

}  // namespace

absl::StatusOr<HostPort> SplitHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return HostPort{host, std::to_string(port)};
}

std::string MetricsResponse(absl::string_view request, bool complete,
                            const std::function<std::string()>& metrics_body) {
  // "METHOD TARGET HTTP/1.x"
  const std::vector<absl::string_view> line =
      absl::StrSplit(request.substr(0, request.find("\r\n")), ' ');
  if (!complete || line.size() != 3 || !absl::StartsWith(line[2], "HTTP/1.")) {
    return Response(400, "Bad Request", "bad request\n", "text/plain", false);
  }
  if (line[0] != "GET" && line[0] != "HEAD") {
    return Response(405, "Method Not Allowed", "only GET\n", "text/plain", false);
  }
  if (line[1].substr(0, line[1].find('?')) != "/metrics") {
    return Response(404, "Not Found", "not found: the metrics are at /metrics\n", "text/plain",
                    line[0] == "HEAD");
  }
  return Response(200, "OK", metrics_body(), "text/plain; version=0.0.4; charset=utf-8",
                  line[0] == "HEAD");
}

absl::StatusOr<std::unique_ptr<HttpsEndpoint>> HttpsEndpoint::Create(HttpsEndpointOptions options) {
  auto address = SplitHostPort(options.address);
  if (!address.ok()) return address.status();
  std::unique_ptr<HttpsEndpoint> endpoint(new HttpsEndpoint(std::move(options)));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  const int gai = getaddrinfo(address->host.empty() ? nullptr : address->host.c_str(),
                              address->port.c_str(), &hints, &results);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", endpoint->options_.address, "': ", gai_strerror(gai)));
  }
  std::string bind_error = "no usable address";
  for (addrinfo* ai = results; ai != nullptr && endpoint->listen_fd_ < 0; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0) {
      endpoint->listen_fd_ = fd;
    } else {
      bind_error = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(results);
  if (endpoint->listen_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on '", endpoint->options_.address, "': ", bind_error));
  }
  sockaddr_storage bound{};
  socklen_t bound_size = sizeof bound;
  getsockname(endpoint->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &bound_size);
  endpoint->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    ERR_clear_error();
    return absl::InternalError("OpenSSL cannot create a TLS server context");
  }
  endpoint->ssl_ctx_ = ctx;
  endpoint->options_.tls->Configure(ctx);
  // A client that closes early must not kill the process when a response is
  // written to its socket (civetweb, the plaintext endpoint, does the same).
  signal(SIGPIPE, SIG_IGN);

  for (int i = 0; i < std::max(endpoint->options_.threads, 1); ++i) {
    endpoint->workers_.emplace_back([raw = endpoint.get()] { raw->AcceptLoop(); });
  }
  return endpoint;
}

HttpsEndpoint::~HttpsEndpoint() {
  stopping_ = true;
  // Wakes every worker blocked in accept(); a worker serving a connection
  // finishes it within the request timeout.
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  for (std::thread& worker : workers_) worker.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  SSL_CTX_free(static_cast<SSL_CTX*>(ssl_ctx_));
}

void HttpsEndpoint::AcceptLoop() {
  while (!stopping_) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (stopping_) return;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: back off instead of spinning on accept.
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      continue;
    }
    Serve(fd);
    close(fd);
  }
}

void HttpsEndpoint::Serve(int fd) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(options_.request_timeout_ms);
  SSL* ssl = SSL_new(static_cast<SSL_CTX*>(ssl_ctx_));
  if (ssl == nullptr) return;
  SSL_set_fd(ssl, fd);
  std::string request;
  bool complete = false;
  if (SetTimeouts(fd, deadline) && SSL_accept(ssl) == 1) {
    char buffer[4096];
    while (!complete && request.size() < kMaxRequestBytes && SetTimeouts(fd, deadline)) {
      const int n = SSL_read(ssl, buffer, sizeof buffer);
      if (n <= 0) break;
      request.append(buffer, static_cast<size_t>(n));
      complete = absl::StrContains(request, "\r\n\r\n");
    }
  }
  if (complete || request.size() >= kMaxRequestBytes) {
    const std::string response = MetricsResponse(request, complete, options_.metrics_body);
    size_t written = 0;
    while (written < response.size() && SetTimeouts(fd, deadline)) {
      const int n =
          SSL_write(ssl, response.data() + written,
                    static_cast<int>(std::min<size_t>(response.size() - written, 1 << 20)));
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
    if (written == response.size()) SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ERR_clear_error();  // per-thread error queue: handshake failures are the client's
}

}  // namespace rectifier::metrics
