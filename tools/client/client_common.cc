#include "tools/client/client_common.h"

#include <cstdio>

#include "absl/status/status.h"

namespace rectifier::tools {

int RpcError(const grpc::Status& status) {
  std::fprintf(stderr, "rectifier-client: error: %s: %s\n",
               absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())).c_str(),
               status.error_message().c_str());
  return kExitRpcError;
}

int CallError(const Connection& connection, const grpc::Status& status) {
  std::fprintf(stderr, "rectifier-client: error: %s\n", connection.Describe(status).c_str());
  return kExitRpcError;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "rectifier-client: error: %s\n", message.c_str());
  return kExitUsage;
}

}  // namespace rectifier::tools
