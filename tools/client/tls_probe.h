// Finds out whether a server speaks TLS, so a failed plaintext call can say
// "server requires TLS" only when that is true.
#ifndef RECTIFIER_TOOLS_CLIENT_TLS_PROBE_H_
#define RECTIFIER_TOOLS_CLIENT_TLS_PROBE_H_

#include <optional>
#include <string>

#include "absl/time/time.h"

namespace rectifier::tools {

struct HostPort {
  std::string host;  // a name or an address, without IPv6 brackets
  std::string port;
};

// The host and port of a gRPC target: "host:port", "[v6]:port", "dns:///host:port",
// "ipv4:a.b.c.d:port", "ipv6:[v6]:port"; without a port, 443 (gRPC's default).
// nullopt for targets that are not TCP host names (unix:, several addresses).
std::optional<HostPort> ParseTarget(const std::string& target);

enum class TlsProbe {
  kTls,                 // the handshake completed, or the server answered with TLS records
  kTlsAsksCertificate,  // the same, and the server asked for a client certificate
  kNotTls,              // it accepted the connection but answered no TLS record
  kUnreachable,         // no connection (or the target is not a TCP host:port)
};

// Connects to `target` (a gRPC target, see ParseTarget) and attempts a TLS
// handshake without verifying anything; gives up after `timeout` in all.
// A server that rejects the handshake with a TLS alert (certificate
// required, no shared cipher) still speaks TLS.
TlsProbe ProbeTls(const std::string& target, absl::Duration timeout);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_TLS_PROBE_H_
