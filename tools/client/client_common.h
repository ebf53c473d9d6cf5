// Shared by rectifier-client's commands: global flags, exit codes and how
// errors are printed.
#ifndef RECTIFIER_TOOLS_CLIENT_CLIENT_COMMON_H_
#define RECTIFIER_TOOLS_CLIENT_CLIENT_COMMON_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "tools/client/connection.h"

namespace rectifier::tools {

struct Globals {
  ConnectionFlags connection;  // --url, TLS flags, token
  double timeout_s = 30;
  bool json = false;
  int max_message_mb = 256;
};

// Exit codes: 0 success, 1 the server answered with an error (or NOT_SERVING),
// 2 usage or local input error.
inline constexpr int kExitRpcError = 1;
inline constexpr int kExitUsage = 2;

// Prints "rectifier-client: error: CODE: message" on stderr; returns kExitRpcError.
// For errors the server reported inside an answer, or found in one.
int RpcError(const grpc::Status& status);
// The same for a call on `connection` that failed; names the fix instead when
// TLS or the token caused it (Connection::Describe).
int CallError(const Connection& connection, const grpc::Status& status);
// Prints "rectifier-client: error: message" on stderr; returns kExitUsage.
int UsageError(const std::string& message);

// The call's deadline: now + --timeout.
inline void SetDeadline(const Globals& g, grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(g.timeout_s * 1e3)));
}

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_CLIENT_COMMON_H_
