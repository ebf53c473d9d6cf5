#include "tools/client/tls_probe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace rectifier::tools {
namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
struct AddrInfoFree {
  void operator()(addrinfo* info) const { freeaddrinfo(info); }
};

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left until `deadline` for poll(), at least 0.
int MillisLeft(absl::Time deadline) {
  return static_cast<int>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now()) + 1));
}

// Waits for `events` on `fd`; false on timeout or error.
bool Wait(int fd, short events, absl::Time deadline) {
  pollfd p{fd, events, 0};
  while (true) {
    const int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0 || errno != EINTR) return false;
  }
}

// A connected non-blocking TCP socket to the first address of `hp` that
// answers before `deadline`; -1 if none does.
int Connect(const HostPort& hp, absl::Time deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  if (getaddrinfo(hp.host.c_str(), hp.port.c_str(), &hints, &raw) != 0) return -1;
  std::unique_ptr<addrinfo, AddrInfoFree> list(raw);
  for (const addrinfo* a = list.get(); a != nullptr; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) return fd;
    int error = errno;
    if (error == EINPROGRESS && Wait(fd, POLLOUT, deadline)) {
      socklen_t size = sizeof(error);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 && error == 0) return fd;
    }
    close(fd);
  }
  return -1;
}

// What the peer sent during the handshake.
struct PeerSaw {
  bool tls = false;  // a record header that parses as TLS, or an alert
  bool certificate_request = false;
};

void OnMessage(int write_p, int /*version*/, int content_type, const void* buf, size_t len,
               SSL* /*ssl*/, void* arg) {
  if (write_p != 0) return;
  auto* saw = static_cast<PeerSaw*>(arg);
  const auto* bytes = static_cast<const unsigned char*>(buf);
  // Content type 20..23 (change cipher spec, alert, handshake, data), major version 3.
  if (content_type == SSL3_RT_HEADER && len >= 3 && bytes[0] >= 20 && bytes[0] <= 23 &&
      bytes[1] == 3) {
    saw->tls = true;
  }
  if (content_type == SSL3_RT_ALERT) saw->tls = true;
  // Handshake messages arrive decrypted (TLS 1.3 encrypts CertificateRequest).
  if (content_type == SSL3_RT_HANDSHAKE && len >= 1 && bytes[0] == SSL3_MT_CERTIFICATE_REQUEST) {
    saw->certificate_request = true;
  }
}

// Sends everything OpenSSL queued in `out`, until the peer is gone.
void Flush(int fd, BIO* out, absl::Time deadline) {
  char buffer[4096];
  int n = 0;
  while ((n = BIO_read(out, buffer, sizeof(buffer))) > 0) {
    for (int sent = 0; sent < n;) {
      const ssize_t k = send(fd, buffer + sent, n - sent, MSG_NOSIGNAL);
      if (k > 0) {
        sent += static_cast<int>(k);
      } else if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (!Wait(fd, POLLOUT, deadline)) return;
      } else {
        return;
      }
    }
  }
}

TlsProbe Handshake(int fd, const HostPort& hp, absl::Time deadline) {
  std::unique_ptr<SSL_CTX, SslCtxFree> ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return TlsProbe::kNotTls;
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_msg_callback(ctx.get(), OnMessage);
  std::unique_ptr<SSL, SslFree> ssl(SSL_new(ctx.get()));
  if (!ssl) return TlsProbe::kNotTls;
  PeerSaw saw;
  SSL_set_msg_callback_arg(ssl.get(), &saw);
  // Offer what a gRPC client offers, so a gRPC server does not refuse the
  // handshake for a reason of its own.
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_set_alpn_protos(ssl.get(), kAlpn, sizeof(kAlpn));
  // SNI only for names (RFC 6066 forbids addresses there).
  unsigned char address[sizeof(in6_addr)];
  if (inet_pton(AF_INET, hp.host.c_str(), address) != 1 &&
      inet_pton(AF_INET6, hp.host.c_str(), address) != 1) {
    SSL_set_tlsext_host_name(ssl.get(), hp.host.c_str());
  }
  // Memory BIOs: the socket I/O is ours (MSG_NOSIGNAL, the deadline).
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // ssl owns both now
  SSL_set_connect_state(ssl.get());

  char buffer[16384];
  while (true) {
    const int rc = SSL_do_handshake(ssl.get());
    // A failed send still leaves the peer's answer (an alert) to read.
    Flush(fd, out, deadline);
    if (rc == 1) {
      saw.tls = true;
      break;
    }
    if (SSL_get_error(ssl.get(), rc) != SSL_ERROR_WANT_READ) break;
    // The peer may have closed after its alert: read what it sent anyway.
    if (!Wait(fd, POLLIN, deadline)) break;
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    BIO_write(in, buffer, static_cast<int>(n));
  }
  ERR_clear_error();  // this thread's queue is shared with gRPC's use of OpenSSL
  if (!saw.tls) return TlsProbe::kNotTls;
  return saw.certificate_request ? TlsProbe::kTlsAsksCertificate : TlsProbe::kTls;
}

}  // namespace

std::optional<HostPort> ParseTarget(const std::string& target) {
  absl::string_view rest = target;
  if (absl::StartsWith(rest, "dns://")) {
    // dns://AUTHORITY/host:port (the authority is the DNS server, often empty)
    rest.remove_prefix(6);
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) return std::nullopt;
    rest.remove_prefix(slash + 1);
  } else if (absl::StartsWith(rest, "dns:")) {
    rest.remove_prefix(4);
  } else if (absl::StartsWith(rest, "ipv4:") || absl::StartsWith(rest, "ipv6:")) {
    rest.remove_prefix(5);
    if (absl::StrContains(rest, ',')) return std::nullopt;
  } else if (absl::StrContains(rest, ":/") || absl::StartsWith(rest, "unix") ||
             absl::StartsWith(rest, "vsock:")) {
    return std::nullopt;
  }
  HostPort hp{std::string(rest), "443"};
  if (absl::StartsWith(rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return std::nullopt;
    hp.host = std::string(rest.substr(1, close - 1));
    absl::string_view tail = rest.substr(close + 1);
    if (absl::StartsWith(tail, ":")) {
      hp.port = std::string(tail.substr(1));
    } else if (!tail.empty()) {
      return std::nullopt;
    }
  } else if (std::count(rest.begin(), rest.end(), ':') == 1) {
    const size_t colon = rest.find(':');
    hp.host = std::string(rest.substr(0, colon));
    hp.port = std::string(rest.substr(colon + 1));
  }
  if (hp.host.empty() || hp.port.empty()) return std::nullopt;
  return hp;
}

TlsProbe ProbeTls(const std::string& target, absl::Duration timeout) {
  const std::optional<HostPort> hp = ParseTarget(target);
  if (!hp) return TlsProbe::kUnreachable;
  const absl::Time deadline = absl::Now() + timeout;
  const int fd = Connect(*hp, deadline);
  if (fd < 0) return TlsProbe::kUnreachable;
  Socket socket(fd);
  return Handshake(socket.fd(), *hp, deadline);
}

}  // namespace rectifier::tools
