// Tests for rectifier-server flag parsing.
#include "server/service/server_options.h"

#include "gtest/gtest.h"

namespace rectifier::service {
namespace {

absl::StatusOr<ParsedFlags> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "rectifier-server");
  return ParseServerFlags(args);
}

TEST(ServerOptionsTest, DefaultsMatchTheDocumentedPorts) {
  auto parsed = Parse({});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->exit_now);
  const ServerOptions& o = parsed->options;
  EXPECT_EQ(o.model_repository, "models");
  EXPECT_EQ(o.grpc_address, "0.0.0.0:8001");
  EXPECT_EQ(o.metrics_address, "0.0.0.0:8002");
  EXPECT_EQ(o.http_address, "0.0.0.0:8000");
  EXPECT_EQ(o.http_threads, 16);
  EXPECT_EQ(o.logging.level, "info");
  EXPECT_EQ(o.logging.format, common::LogFormat::kText);
  EXPECT_EQ(o.exit_timeout, absl::Seconds(30));
}

TEST(ServerOptionsTest, ParsesEveryFlag) {
  auto parsed = Parse({"--model-repository",
                       "/srv/models",
                       "--grpc-address=127.0.0.1:9001",
                       "--metrics-address",
                       "",
                       "--log-level",
                       "debug",
                       "--log-format",
                       "json",
                       "--exit-timeout",
                       "2.5",
                       "--intra-op-threads",
                       "3",
                       "--max-message-mb",
                       "64",
                       "--grpc-max-connection-age-secs",
                       "300",
                       "--image-threads",
                       "5",
                       "--image-queue",
                       "17",
                       "--metrics-latency-buckets",
                       "0.01,0.1,1"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServerOptions& o = parsed->options;
  EXPECT_EQ(o.model_repository, "/srv/models");
  EXPECT_EQ(o.grpc_address, "127.0.0.1:9001");
  EXPECT_EQ(o.metrics_address, "");
  EXPECT_EQ(o.logging.level, "debug");
  EXPECT_EQ(o.logging.format, common::LogFormat::kJson);
  EXPECT_EQ(o.exit_timeout, absl::Milliseconds(2500));
  EXPECT_EQ(o.intra_op_threads, 3);
  EXPECT_EQ(o.max_message_bytes, 64 << 20);
  EXPECT_EQ(o.max_connection_age, absl::Minutes(5));
  EXPECT_EQ(o.image_threads, 5);
  EXPECT_EQ(o.image_queue, 17);
  EXPECT_EQ(o.latency_buckets, (std::vector<double>{0.01, 0.1, 1}));
}

TEST(ServerOptionsTest, HelpAndVersionExitWithText) {
  auto help = Parse({"--help"});
  ASSERT_TRUE(help.ok());
  EXPECT_TRUE(help->exit_now);
  for (const char* flag : {"--model-repository", "--grpc-address", "--metrics-address",
                           "--log-level", "--log-format", "--exit-timeout", "--intra-op-threads"}) {
    EXPECT_NE(help->output.find(flag), std::string::npos) << flag;
  }
  auto version = Parse({"--version"});
  ASSERT_TRUE(version.ok());
  EXPECT_TRUE(version->exit_now);
  EXPECT_NE(version->output.find("rectifier-server"), std::string::npos);
}

TEST(ServerOptionsTest, BadFlagsAreOneLineErrorsNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const Case kCases[] = {
      {{"--bogus"}, "--bogus"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--log-format", "xml"}, "--log-format"},
      {{"--exit-timeout", "-1"}, "--exit-timeout"},
      {{"--exit-timeout", "soon"}, "--exit-timeout"},
      {{"--max-message-mb", "0"}, "--max-message-mb"},
      {{"--grpc-address", ""}, "--grpc-address"},
      {{"--metrics-latency-buckets", "0.1,0.01"}, "--metrics-latency-buckets"},
      {{"--metrics-latency-buckets", "0.1,x"}, "--metrics-latency-buckets"},
  };
  for (const Case& c : kCases) {
    auto parsed = Parse(c.args);
    ASSERT_FALSE(parsed.ok()) << c.args[0];
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.needle), std::string::npos)
        << parsed.status().message();
    EXPECT_EQ(parsed.status().message().find('\n'), std::string::npos);
  }
}

TEST(ServerOptionsTest, HttpIsOffWithTlsUnlessAskedFor) {
  auto parsed = Parse({"--http-address", "127.0.0.1:9000", "--http-threads", "4"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.http_address, "127.0.0.1:9000");
  EXPECT_EQ(parsed->options.http_threads, 4);
  EXPECT_FALSE(parsed->options.http_off_for_tls);
  parsed = Parse({"--tls-cert", "s.crt", "--tls-key", "s.key"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.http_address, "");
  EXPECT_TRUE(parsed->options.http_off_for_tls);
  // Asked for with TLS: kept, and the server refuses to start (GrpcServer).
  parsed = Parse({"--tls-cert", "s.crt", "--tls-key", "s.key", "--http-address", ":8000"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.http_address, ":8000");
  EXPECT_FALSE(parsed->options.http_off_for_tls);
  EXPECT_FALSE(Parse({"--http-threads", "0"}).ok());
}

TEST(ServerOptionsTest, SecurityFlags) {
  auto parsed = Parse({"--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-client-ca", "ca.crt",
                       "--tls-reload-secs", "5", "--auth-tokens", "tokens"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const ServerOptions& o = parsed->options;
  EXPECT_EQ(o.tls.cert, "s.crt");
  EXPECT_EQ(o.tls.key, "s.key");
  EXPECT_EQ(o.tls.client_ca, "ca.crt");
  EXPECT_EQ(o.tls_reload_interval, absl::Seconds(5));
  EXPECT_EQ(o.auth_tokens_file, "tokens");

  auto defaults = Parse({});
  ASSERT_TRUE(defaults.ok());
  EXPECT_FALSE(defaults->options.tls.enabled());
  EXPECT_TRUE(defaults->options.auth_tokens_file.empty());
  EXPECT_EQ(defaults->options.tls_reload_interval, absl::Seconds(60));

  for (const auto& [args, expected] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--tls-cert", "s.crt"}, "--tls-cert needs --tls-key"},
           {{"--tls-key", "s.key"}, "--tls-key needs --tls-cert"},
           {{"--tls-client-ca", "ca.crt"}, "--tls-client-ca needs --tls-cert"},
           {{"--tls-reload-secs", "0"}, "--tls-reload-secs"}}) {
    auto bad = Parse(args);
    ASSERT_FALSE(bad.ok()) << expected;
    EXPECT_NE(bad.status().message().find(expected), std::string::npos) << bad.status();
  }
}

}  // namespace
}  // namespace rectifier::service
