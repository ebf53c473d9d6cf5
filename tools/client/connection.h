// How rectifier-client and rectifier-perf reach a server: the address, TLS or
// mutual TLS, a bearer token sent on every call; and, when a call fails for
// one of those, a message that says what to fix.
#ifndef RECTIFIER_TOOLS_CLIENT_CONNECTION_H_
#define RECTIFIER_TOOLS_CLIENT_CONNECTION_H_

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace rectifier::tools {

// The environment variable read when --token is absent (keeps the token out of `ps`).
inline constexpr char kTokenEnvironmentVariable[] = "RECTIFIER_TOKEN";

struct ConnectionFlags {
  std::string url = "127.0.0.1:8001";
  // Any of the three turns TLS on. Without tls_ca, gRPC's default roots verify the server.
  std::string tls_ca;           // PEM file: roots that verify the server's certificate
  std::string tls_cert;         // PEM file: client certificate chain (mutual TLS), with tls_key
  std::string tls_key;          // PEM file: its private key, unencrypted
  std::string tls_server_name;  // verified in the server certificate instead of url's host
  std::string token;            // --token, else RECTIFIER_TOKEN; never printed
};

// Adds --tls-ca, --tls-cert, --tls-key, --tls-server-name and --token (which
// falls back to RECTIFIER_TOKEN) to `app`, writing into `*flags` (which must
// outlive the parse). --url stays each tool's own option.
void AddConnectionFlags(CLI::App& app, ConnectionFlags* flags);

// Thread-safe after Create: every method is const.
class Connection {
 public:
  // Checks the flags (--tls-cert and --tls-key come together, --tls-server-name
  // needs TLS, the token fits in a header), reads and checks the PEM files
  // (parseable, the key matches the certificate) and creates the channel; it
  // connects on the first call. `args` are the tool's own channel arguments.
  // An error is one line naming the flag (and file) to fix: a usage error.
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const ConnectionFlags& flags,
                                                            grpc::ChannelArguments args);

  // Every call on this channel carries "authorization: Bearer TOKEN" when a
  // token was given.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  bool tls() const { return tls_; }

  // What to fix when `status` (from a call on channel()) failed because of
  // TLS or the token; nullopt when it did not:
  //   UNAVAILABLE before any answer: "server requires TLS: pass --tls-ca", a
  //     failed TLS handshake, or a plaintext server given TLS flags. Finding
  //     out whether the server speaks TLS takes one extra connection (at most
  //     2 s), so call this once per failure shown, not per request.
  //   UNAUTHENTICATED: pass a (valid) token. PERMISSION_DENIED: the token's role.
  std::optional<std::string> Hint(const grpc::Status& status) const;
  // Hint(status), else Format(status).
  std::string Describe(const grpc::Status& status) const;
  // "CODE: message", without a hint. The token never appears in it.
  std::string Format(const grpc::Status& status) const;

 private:
  Connection(const ConnectionFlags& flags, bool tls) : flags_(flags), tls_(tls) {}
  std::optional<std::string> TransportHint(const grpc::Status& status) const;
  // `text` with the token replaced, in case a server echoes it.
  std::string Redact(const std::string& text) const;

  const ConnectionFlags flags_;
  const bool tls_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_CONNECTION_H_
