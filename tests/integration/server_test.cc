// End-to-end tests of the rectifier-server binary: health, KServe basics,
// reflection, /metrics, graceful drain and start-up errors.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpc_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace rectifier::testing {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

constexpr char kBinary[] = RECTIFIER_SERVER_BINARY;

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_ = std::filesystem::temp_directory_path() / ("rectifier-repo-" + std::to_string(getpid()));
    std::filesystem::create_directories(repo_);
  }
  void TearDown() override { std::filesystem::remove_all(repo_); }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--model-repository", repo_.string(),      "--grpc-address",
                                     "127.0.0.1:0",        "--metrics-address", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = ServerProcess::Spawn(kBinary, args);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    const absl::Status serving = (*process)->WaitUntilServing(absl::Seconds(30));
    EXPECT_TRUE(serving.ok()) << serving;
    if (!serving.ok()) return nullptr;
    return std::move(process).value();
  }

  static std::shared_ptr<grpc::Channel> Channel(const ServerProcess& server) {
    return grpc::CreateChannel(server.grpc_target(), grpc::InsecureChannelCredentials());
  }

  std::filesystem::path repo_;
};

HealthCheckResponse::ServingStatus CheckHealth(Health::Stub& stub, const std::string& service) {
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(10)));
  context.set_wait_for_ready(true);
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = stub.Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST_F(ServerTest, ServesHealthKServeReflectionAndMetricsThenExitsCleanly) {
  auto server = Start();
  ASSERT_NE(server, nullptr);
  auto channel = Channel(*server);

  auto health = Health::NewStub(channel);
  EXPECT_EQ(CheckHealth(*health, ""), HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckHealth(*health, "inference.GRPCInferenceService"), HealthCheckResponse::SERVING);

  auto kserve = inference::GRPCInferenceService::NewStub(channel);
  {
    grpc::ClientContext context;
    inference::ServerLiveResponse response;
    ASSERT_TRUE(kserve->ServerLive(&context, {}, &response).ok());
    EXPECT_TRUE(response.live());
  }
  {
    grpc::ClientContext context;
    inference::ServerReadyResponse response;
    ASSERT_TRUE(kserve->ServerReady(&context, {}, &response).ok());
    EXPECT_TRUE(response.ready());
  }
  {
    grpc::ClientContext context;
    inference::ServerMetadataResponse response;
    ASSERT_TRUE(kserve->ServerMetadata(&context, {}, &response).ok());
    EXPECT_EQ(response.name(), "rectifier");
    EXPECT_FALSE(response.version().empty());
  }
  {
    // The repository is empty: inference names the missing model.
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    inference::ModelInferRequest request;
    request.set_model_name("resnet50");
    const grpc::Status status = kserve->ModelInfer(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(status.error_message().find("resnet50"), std::string::npos);
  }
  {
    // No models: statistics are empty, and a named model is NOT_FOUND.
    grpc::ClientContext context;
    inference::ModelStatisticsResponse response;
    ASSERT_TRUE(kserve->ModelStatistics(&context, {}, &response).ok());
    EXPECT_EQ(response.model_stats_size(), 0);
    grpc::ClientContext named_context;
    inference::ModelStatisticsRequest named;
    named.set_name("resnet50");
    EXPECT_EQ(kserve->ModelStatistics(&named_context, named, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }

  {
    auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(10)));
    auto stream = reflection->ServerReflectionInfo(&context);
    grpc::reflection::v1alpha::ServerReflectionRequest request;
    request.set_list_services("");
    ASSERT_TRUE(stream->Write(request));
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse response;
    ASSERT_TRUE(stream->Read(&response));
    std::set<std::string> names;
    for (const auto& service : response.list_services_response().service()) {
      names.insert(service.name());
    }
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_TRUE(names.count("inference.GRPCInferenceService")) << names.size();
    EXPECT_TRUE(names.count("grpc.health.v1.Health"));
    EXPECT_TRUE(names.count("grpc.reflection.v1alpha.ServerReflection"));
  }

  const auto metrics = HttpGet(server->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NE(metrics->find("200 OK"), std::string::npos);
  EXPECT_NE(metrics->find("rectifier_build_info{"), std::string::npos);
  EXPECT_NE(metrics->find("process_cpu_seconds_total"), std::string::npos);
  EXPECT_NE(metrics->find("process_resident_memory_bytes"), std::string::npos);

  server->Signal(SIGTERM);
  const auto exit = server->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value()) << "no exit after SIGTERM";
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_NE(exit->stderr_text.find("draining"), std::string::npos);

  // The port is closed: new calls fail UNAVAILABLE.
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(2)));
  inference::ServerLiveResponse response;
  EXPECT_EQ(inference::GRPCInferenceService::NewStub(Channel(*server))
                ->ServerLive(&context, {}, &response)
                .error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// --grpc-address unix:PATH serves on a unix-domain socket; the start line
// names the socket (gRPC reports port 1 for it).
TEST_F(ServerTest, ServesOnAUnixSocket) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("rectifier-test-" + std::to_string(getpid()) + ".sock"))
                               .string();
  std::filesystem::remove(path);
  auto process = ServerProcess::Spawn(
      kBinary, {"--model-repository", repo_.string(), "--grpc-address", "unix:" + path,
                "--metrics-address", "", "--http-address", ""});
  ASSERT_TRUE(process.ok()) << process.status();
  ServerProcess& server = **process;
  const std::string line = "serving gRPC on unix:" + path + ", HTTP on port 0";
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (server.ReadOutput().find(line) == std::string::npos && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_NE(server.ReadOutput().find(line), std::string::npos) << server.ReadOutput();
  EXPECT_EQ(server.ReadOutput().find("gRPC on port"), std::string::npos) << server.ReadOutput();

  auto channel = grpc::CreateChannel("unix:" + path, grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(10)));
  inference::ServerLiveResponse live;
  const grpc::Status status =
      inference::GRPCInferenceService::NewStub(channel)->ServerLive(&context, {}, &live);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(live.live());
  auto health = Health::NewStub(channel);
  EXPECT_EQ(CheckHealth(*health, ""), HealthCheckResponse::SERVING);

  server.Signal(SIGTERM);
  const auto exit = server.WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value()) << "no exit after SIGTERM";
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  std::filesystem::remove(path);
}

TEST_F(ServerTest, DrainTurnsHealthNotServingAndHonoursExitTimeout) {
  auto server = Start({"--exit-timeout", "1", "--log-format", "json"});
  ASSERT_NE(server, nullptr);
  auto health = Health::NewStub(Channel(*server));

  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(30)));
  HealthCheckRequest request;
  auto watch = health->Watch(&context, request);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  const absl::Time signalled = absl::Now();
  server->Signal(SIGTERM);
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);

  // The open Watch stream is an in-flight call: it is cut at the exit timeout
  // (1 s), and the process still exits 0.
  const auto exit = server->WaitForExit(absl::Seconds(20));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(10));
  while (watch->Read(&update)) {
  }
  EXPECT_FALSE(watch->Finish().ok());
  // JSON log lines: every line is an object.
  std::istringstream lines(exit->stderr_text);
  std::string line;
  int json_lines = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    ++json_lines;
  }
  EXPECT_GE(json_lines, 2);
}

// Listens on a free loopback port until destroyed.
class PortBlocker {
 public:
  PortBlocker() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0 && listen(fd_, 1) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~PortBlocker() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

void ExpectOneLineError(const ExitResult& result, const std::string& needle) {
  EXPECT_NE(result.exit_code, 0) << result.stderr_text;
  EXPECT_EQ(result.term_signal, 0);
  EXPECT_NE(result.stderr_text.find(needle), std::string::npos) << result.stderr_text;
  EXPECT_EQ(std::count(result.stderr_text.begin(), result.stderr_text.end(), '\n'), 1)
      << result.stderr_text;
}

TEST_F(ServerTest, BadFlagsExitNonZeroWithOneLineError) {
  ExpectOneLineError(RunToExit(kBinary, {"--no-such-flag"}, absl::Seconds(20)), "--no-such-flag");
  ExpectOneLineError(
      RunToExit(kBinary, {"--model-repository", "/nonexistent/models"}, absl::Seconds(20)),
      "/nonexistent/models");
  ExpectOneLineError(
      RunToExit(kBinary, {"--model-repository", repo_.string(), "--log-level", "loud"},
                absl::Seconds(20)),
      "loud");

  PortBlocker blocker;
  ASSERT_GT(blocker.port(), 0);
  const std::string busy = "127.0.0.1:" + std::to_string(blocker.port());
  ExpectOneLineError(RunToExit(kBinary,
                               {"--model-repository", repo_.string(), "--grpc-address", busy,
                                "--metrics-address", "127.0.0.1:0"},
                               absl::Seconds(20)),
                     busy);
  ExpectOneLineError(RunToExit(kBinary,
                               {"--model-repository", repo_.string(), "--grpc-address",
                                "127.0.0.1:0", "--metrics-address", busy},
                               absl::Seconds(20)),
                     busy);
}

TEST_F(ServerTest, HelpDocumentsEveryFlag) {
  const ExitResult result = RunToExit(kBinary, {"--help"}, absl::Seconds(20));
  EXPECT_EQ(result.exit_code, 0);
  for (const char* flag :
       {"--model-repository", "--grpc-address", "--metrics-address", "--log-level", "--log-format",
        "--exit-timeout", "--intra-op-threads", "--max-message-mb", "--tls-cert", "--tls-key",
        "--tls-client-ca", "--tls-reload-secs", "--auth-tokens"}) {
    EXPECT_NE(result.stderr_text.find(flag), std::string::npos) << flag;
  }
}

}  // namespace
}  // namespace rectifier::testing
