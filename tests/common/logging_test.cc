// Tests for logging setup and JSON escaping.
#include "server/common/logging.h"

#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

TEST(LoggingTest, JsonEscapeHandlesQuotesControlAndBackslash) {
  EXPECT_EQ(JsonEscape("plain"), "plain");
  EXPECT_EQ(JsonEscape("a\"b"), "a\\\"b");
  EXPECT_EQ(JsonEscape("C:\\x"), "C:\\\\x");
  EXPECT_EQ(JsonEscape("l1\nl2\t"), "l1\\nl2\\t");
  EXPECT_EQ(JsonEscape(std::string("\x01", 1)), "\\u0001");
}

TEST(LoggingTest, LevelsAndFormatsAreValidated) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_TRUE(ValidateLogLevel(level).ok()) << level;
  }
  const absl::Status bad = ValidateLogLevel("loud");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("'loud'"), std::string::npos);

  LogFormat format = LogFormat::kText;
  ASSERT_TRUE(ParseLogFormat("json", &format).ok());
  EXPECT_EQ(format, LogFormat::kJson);
  EXPECT_EQ(ParseLogFormat("xml", &format).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(format, LogFormat::kJson);

  LoggingOptions options;
  options.level = "nope";
  EXPECT_EQ(SetupLogging(options).code(), absl::StatusCode::kInvalidArgument);
  options.level = "warn";
  options.format = LogFormat::kJson;
  EXPECT_TRUE(SetupLogging(options).ok());
}

}  // namespace
}  // namespace rectifier::common
