// Bearer tokens with roles (--auth-tokens): the file format, and the check
// every call makes.
#ifndef RECTIFIER_SERVER_SECURITY_TOKENS_H_
#define RECTIFIER_SERVER_SECURITY_TOKENS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rectifier::security {

// `infer`: inference, metadata, config, statistics and the vision API.
// `admin`: everything, including the model repository (index, load, unload).
enum class Role { kInfer, kAdmin };

const char* RoleName(Role role);

// Shortest token accepted: 16 characters (e.g. `openssl rand -hex 24` gives 48).
inline constexpr size_t kMinTokenLength = 16;

// A token as kept in memory: its SHA-256, never the token itself.
struct TokenEntry {
  std::array<uint8_t, 32> digest;
  Role role;
};

// Parses a tokens file: one `ROLE TOKEN` per line, separated by spaces or
// tabs; blank lines and lines starting with `#` are ignored. Errors are
// INVALID_ARGUMENT naming the line (never quoting a token): an unknown role,
// a missing or short token, extra fields, a token listed twice, no token at all.
absl::StatusOr<std::vector<TokenEntry>> ParseTokens(absl::string_view text);

// The tokens of one file, replaced as a whole by Reload(). Thread-safe.
class TokenStore {
 public:
  // Errors: FAILED_PRECONDITION for an unreadable file, then ParseTokens's.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Load(const std::string& path);

  TokenStore(const TokenStore&) = delete;
  TokenStore& operator=(const TokenStore&) = delete;

  // Reads the file again; on an error the current tokens stay in use.
  absl::Status Reload();

  // Checks a call's `authorization` metadata (nullopt: the call had none):
  // OK, UNAUTHENTICATED (missing, not `Bearer TOKEN`, or an unknown token) or
  // PERMISSION_DENIED (a known token whose role is not enough). The token is
  // compared with every known one in constant time, through its SHA-256.
  absl::Status Authorize(std::optional<absl::string_view> authorization, Role needed) const;

  const std::string& path() const { return path_; }
  size_t size() const;

 private:
  explicit TokenStore(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<TokenEntry>> tokens_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::security

#endif  // RECTIFIER_SERVER_SECURITY_TOKENS_H_
