#include "server/common/logging.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace rectifier::common {
namespace {

// Writes the message payload as a JSON string value. Callers that want
// structured fields log them inside the message ("model=x version=1"); in
// JSON mode the whole message stays one escaped field, so a line is always
// valid JSON whatever the message contains.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& /*tm_time*/,
              spdlog::memory_buf_t& dest) override {
    const std::string escaped = JsonEscape(std::string(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

}  // namespace

std::string JsonEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

absl::Status ParseLogFormat(const std::string& text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log format '", text, "' (expected text or json)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLogLevel(const std::string& level) {
  // spdlog's from_str maps unknown names to "off"; only accept "off" when asked for.
  if (spdlog::level::from_str(level) == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level '", level,
                     "' (expected trace, debug, info, warn, error, critical or off)"));
  }
  return absl::OkStatus();
}

absl::Status SetupLogging(const LoggingOptions& options) {
  if (absl::Status status = ValidateLogLevel(options.level); !status.ok()) return status;
  const spdlog::level::level_enum level = spdlog::level::from_str(options.level);
  auto logger = std::make_shared<spdlog::logger>(
      "rectifier", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  std::unique_ptr<spdlog::pattern_formatter> formatter;
  if (options.format == LogFormat::kJson) {
    formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","thread":%t,"msg":"%*"})");
  } else {
    formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ %t] %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace rectifier::common
