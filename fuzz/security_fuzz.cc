// libFuzzer target: the bytes a client or an operator hands the security
// code. The first byte picks the path:
//   0: a tokens file (--auth-tokens) through ParseTokens;
//   1: an `authorization` metadata value through TokenStore::Authorize, for
//      both roles, against a store of two known tokens;
//   2: what a client sent the HTTPS /metrics endpoint, through MetricsResponse.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "fuzz/fuzz_models.h"
#include "server/metrics/https_endpoint.h"
#include "server/security/tokens.h"

namespace {

using rectifier::security::Role;
using rectifier::security::TokenStore;

const TokenStore& Store() {
  static const TokenStore* store = [] {
    char path[] = "/tmp/rectifier-security-fuzz-XXXXXX";
    const int fd = mkstemp(path);
    RECTIFIER_FUZZ_CHECK(fd >= 0);
    const std::string text =
        "admin admin-token-0123456789abcdef\ninfer infer-token-0123456789abcdef\n";
    RECTIFIER_FUZZ_CHECK(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    close(fd);
    auto loaded = TokenStore::Load(path);
    unlink(path);
    RECTIFIER_FUZZ_CHECK(loaded.ok());
    return loaded->release();
  }();
  return *store;
}

void Tokens(absl::string_view text) {
  auto parsed = rectifier::security::ParseTokens(text);
  if (!parsed.ok()) {
    rectifier::fuzz::Report("ParseTokens", parsed.status());
    RECTIFIER_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  RECTIFIER_FUZZ_CHECK(!parsed->empty());
}

void Authorization(absl::string_view value) {
  const absl::Status admin = Store().Authorize(value, Role::kAdmin);
  const absl::Status infer = Store().Authorize(value, Role::kInfer);
  rectifier::fuzz::Report("Authorize", admin);
  // Only the two outcomes a refusal may have, and admin implies infer.
  RECTIFIER_FUZZ_CHECK(admin.ok() || absl::IsUnauthenticated(admin) ||
                       absl::IsPermissionDenied(admin));
  RECTIFIER_FUZZ_CHECK(infer.ok() || absl::IsUnauthenticated(infer));
  if (admin.ok()) RECTIFIER_FUZZ_CHECK(infer.ok());
  if (absl::IsPermissionDenied(admin)) RECTIFIER_FUZZ_CHECK(infer.ok());
  // A refusal never quotes what the client sent: its message is one of the
  // fixed ones.
  if (!admin.ok()) {
    RECTIFIER_FUZZ_CHECK(
        admin.message() == "the authorization metadata must be 'Bearer <token>'" ||
        admin.message() == "the token is not valid" ||
        absl::StartsWith(admin.message(), "this call needs a token with the 'admin' role"));
  }
}

void HttpRequest(absl::string_view request) {
  const bool complete = absl::StrContains(request, "\r\n\r\n");
  const std::string response = rectifier::metrics::MetricsResponse(
      request, complete, [] { return std::string("rectifier_build_info 1\n"); });
  RECTIFIER_FUZZ_CHECK(absl::StartsWith(response, "HTTP/1.1 "));
  const size_t header_end = response.find("\r\n\r\n");
  RECTIFIER_FUZZ_CHECK(header_end != std::string::npos);
  const size_t length_at = response.find("Content-Length: ");
  RECTIFIER_FUZZ_CHECK(length_at != std::string::npos && length_at < header_end);
  size_t length = 0;
  const size_t length_end = response.find("\r\n", length_at);
  RECTIFIER_FUZZ_CHECK(absl::SimpleAtoi(
      absl::string_view(response).substr(length_at + 16, length_end - length_at - 16), &length));
  const size_t body = response.size() - header_end - 4;
  // HEAD answers carry the length of the body they leave out.
  RECTIFIER_FUZZ_CHECK(body == length || body == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      Tokens(rest);
      break;
    case 1:
      Authorization(rest);
      break;
    default:
      HttpRequest(rest);
      break;
  }
  return 0;
}
