#include "server/service/call_auth.h"

#include <optional>

#include "spdlog/spdlog.h"

namespace rectifier::service {

absl::Status AuthorizeCall(const security::TokenStore* tokens,
                           const grpc::CallbackServerContext& context, security::Role needed) {
  if (tokens == nullptr) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  const auto [first, last] = metadata.equal_range("authorization");
  std::optional<absl::string_view> authorization;
  if (first != last) {
    if (std::next(first) != last) {
      return absl::UnauthenticatedError("more than one authorization metadata entry");
    }
    authorization = absl::string_view(first->second.data(), first->second.size());
  }
  absl::Status status = tokens->Authorize(authorization, needed);
  if (!status.ok()) {
    spdlog::debug("refused a call from {}: {}", context.peer(), std::string(status.message()));
  }
  return status;
}

}  // namespace rectifier::service
