// Process-wide logging setup (spdlog): text or JSON lines, level from flags.
#ifndef RECTIFIER_SERVER_COMMON_LOGGING_H_
#define RECTIFIER_SERVER_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"

namespace rectifier::common {

enum class LogFormat { kText, kJson };

struct LoggingOptions {
  std::string level = "info";  // trace|debug|info|warn|error|critical|off
  LogFormat format = LogFormat::kText;
};

// Installs the default spdlog logger writing to stderr. Call once from main
// before any thread logs. Returns INVALID_ARGUMENT for an unknown level.
absl::Status SetupLogging(const LoggingOptions& options);

// OK for trace, debug, info, warn, error, critical and off.
absl::Status ValidateLogLevel(const std::string& level);

// Parses "text" or "json".
absl::Status ParseLogFormat(const std::string& text, LogFormat* format);

// Escapes a string for inclusion inside a JSON string literal (no quotes
// added). Used for structured log fields in JSON mode.
std::string JsonEscape(const std::string& text);

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_LOGGING_H_
