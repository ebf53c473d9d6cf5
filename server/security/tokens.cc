#include "server/security/tokens.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rectifier::security {
namespace {

constexpr size_t kMaxTokensFileBytes = 1 << 20;

std::array<uint8_t, 32> Digest(absl::string_view token) {
  std::array<uint8_t, 32> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

}  // namespace

const char* RoleName(Role role) { return role == Role::kAdmin ? "admin" : "infer"; }

absl::StatusOr<std::vector<TokenEntry>> ParseTokens(absl::string_view text) {
  std::vector<TokenEntry> entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    const auto error = [line_number](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": ", what));
    };
    TokenEntry entry{};
    if (fields[0] == "infer") {
      entry.role = Role::kInfer;
    } else if (fields[0] == "admin") {
      entry.role = Role::kAdmin;
    } else {
      return error("the role must be 'infer' or 'admin' (format: ROLE TOKEN)");
    }
    if (fields.size() < 2) return error("no token after the role (format: ROLE TOKEN)");
    if (fields.size() > 2) return error("more than two fields (format: ROLE TOKEN)");
    if (fields[1].size() < kMinTokenLength) {
      return error(absl::StrCat("the token is shorter than ", kMinTokenLength, " characters"));
    }
    entry.digest = Digest(fields[1]);
    for (const TokenEntry& other : entries) {
      if (other.digest == entry.digest) return error("the token is listed twice");
    }
    entries.push_back(entry);
  }
  if (entries.empty()) return absl::InvalidArgumentError("no tokens (format: ROLE TOKEN)");
  return entries;
}

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Load(const std::string& path) {
  std::unique_ptr<TokenStore> store(new TokenStore(path));
  if (absl::Status status = store->Reload(); !status.ok()) return status;
  return store;
}

absl::Status TokenStore::Reload() {
  std::ifstream file(path_, std::ios::binary);
  if (!file) {
    return absl::FailedPreconditionError(
        absl::StrCat("--auth-tokens '", path_, "': cannot read: ", std::strerror(errno)));
  }
  std::ostringstream bytes;
  bytes << file.rdbuf();
  const std::string text = bytes.str();
  if (text.size() > kMaxTokensFileBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("--auth-tokens '", path_, "': larger than 1 MiB"));
  }
  auto parsed = ParseTokens(text);
  if (!parsed.ok()) {
    return absl::Status(parsed.status().code(),
                        absl::StrCat("--auth-tokens '", path_, "': ", parsed.status().message()));
  }
  auto tokens = std::make_shared<const std::vector<TokenEntry>>(*std::move(parsed));
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(tokens);
  return absl::OkStatus();
}

size_t TokenStore::size() const {
  absl::MutexLock lock(&mu_);
  return tokens_->size();
}

absl::Status TokenStore::Authorize(std::optional<absl::string_view> authorization,
                                   Role needed) const {
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "this server requires a token: send the metadata 'authorization: Bearer <token>'");
  }
  absl::string_view value = absl::StripAsciiWhitespace(*authorization);
  constexpr absl::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() || !absl::StartsWithIgnoreCase(value, kScheme)) {
    return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
  }
  const std::array<uint8_t, 32> digest =
      Digest(absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size())));
  std::shared_ptr<const std::vector<TokenEntry>> tokens;
  {
    absl::MutexLock lock(&mu_);
    tokens = tokens_;
  }
  // Every entry is compared, whatever matched earlier: the time taken says
  // nothing about which token (or how much of one) was right.
  int matched = -1;
  for (size_t i = 0; i < tokens->size(); ++i) {
    const bool equal = CRYPTO_memcmp((*tokens)[i].digest.data(), digest.data(), digest.size()) == 0;
    matched = equal ? static_cast<int>(i) : matched;
  }
  if (matched < 0) return absl::UnauthenticatedError("the token is not valid");
  const Role role = (*tokens)[matched].role;
  if (needed == Role::kAdmin && role != Role::kAdmin) {
    return absl::PermissionDeniedError(absl::StrCat(
        "this call needs a token with the 'admin' role; the token has '", RoleName(role), "'"));
  }
  return absl::OkStatus();
}

}  // namespace rectifier::security
