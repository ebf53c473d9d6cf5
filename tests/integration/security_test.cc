// The security flags end to end on the real rectifier-server: TLS and mutual
// TLS on gRPC and /metrics with certificates the test makes, rotation without
// a restart, bearer tokens and roles (with SIGHUP reload), model control by
// mode, and start-up errors for unusable files.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/security/test_certs.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kBinary[] = RECTIFIER_SERVER_BINARY;
constexpr char kAdmin[] = "admin-0123456789abcdef0123456789";
constexpr char kInfer[] = "infer-0123456789abcdef0123456789";

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

struct ClientTls {
  std::string ca;         // roots to verify the server with
  std::string cert, key;  // client certificate, for mutual TLS
};

std::shared_ptr<grpc::Channel> Connect(const std::string& target,
                                       const std::optional<ClientTls>& tls) {
  if (!tls.has_value()) return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(tls->ca);
  if (!tls->cert.empty()) {
    options.pem_cert_chain = ReadFile(tls->cert);
    options.pem_private_key = ReadFile(tls->key);
  }
  // A fresh channel per call site: the tests are about new connections.
  grpc::ChannelArguments args;
  args.SetInt("grpc.use_local_subchannel_pool", 1);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

grpc::Status ServerReady(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& token = "") {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(5)));
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  inference::ServerReadyRequest request;
  inference::ServerReadyResponse response;
  return stub->ServerReady(&context, request, &response);
}

// HTTPS GET /metrics through OpenSSL; nullopt when the connection or the
// handshake fails (e.g. the server refused our certificate).
std::optional<std::string> HttpsGet(int port, const ClientTls& tls) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!tls.cert.empty()) {
    SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str());
    SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM);
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::optional<std::string> result;
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set1_host(ssl, "127.0.0.1");
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      SSL_connect(ssl) == 1) {
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0) {
      std::string response;
      char buffer[4096];
      int n = 0;
      while ((n = SSL_read(ssl, buffer, sizeof buffer)) > 0) response.append(buffer, n);
      // TLS 1.3 sends the refusal of a client certificate after the client
      // finished its handshake: it shows as a read with nothing in it.
      if (!response.empty()) result = response;
    }
  }
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return result;
}

class SecurityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new std::string(fs::temp_directory_path() / ("rectifier-sec-" + std::to_string(getpid())));
    pki_ = new TestPki(*dir_);
    ASSERT_TRUE(pki_->MakeCa("ca"));
    ASSERT_TRUE(pki_->MakeCa("other_ca"));
    ASSERT_TRUE(pki_->MakeLeaf("server", "ca", "DNS:localhost,IP:127.0.0.1"));
    ASSERT_TRUE(pki_->MakeLeaf("server_other", "other_ca", "DNS:localhost,IP:127.0.0.1"));
    ASSERT_TRUE(pki_->MakeLeaf("client", "ca", ""));
    ASSERT_TRUE(pki_->MakeLeaf("client_other", "other_ca", ""));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete pki_;
    delete dir_;
  }

  void SetUp() override {
    repo_ = fs::path(*dir_) / ("repo-" + std::to_string(counter_++));
    fs::create_directories(repo_);
    // A model the default repository has, copied so tests may add folders.
    fs::copy("models/scan_classifier", repo_ / "scan_classifier", fs::copy_options::recursive);
    fs::create_directories(repo_ / "not_a_model");
  }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--model-repository", repo_.string(),      "--grpc-address",
                                     "127.0.0.1:0",        "--metrics-address", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = ServerProcess::Spawn(kBinary, args);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) return nullptr;
    const absl::Status serving = (*process)->WaitUntilServing(absl::Seconds(60));
    EXPECT_TRUE(serving.ok()) << serving << (*process)->ReadOutput();
    if (!serving.ok()) return nullptr;
    return std::move(process).value();
  }

  std::vector<std::string> TlsFlags(bool mutual) const {
    std::vector<std::string> flags = {"--tls-cert", pki_->Cert("server"), "--tls-key",
                                      pki_->Key("server")};
    if (mutual) flags.insert(flags.end(), {"--tls-client-ca", pki_->Cert("ca")});
    return flags;
  }

  std::string WriteTokens(const std::string& text) const {
    std::string path = (repo_ / "../tokens").lexically_normal().string() + std::to_string(counter_);
    WriteFile(path, text);
    return path;
  }

  static std::string* dir_;
  static TestPki* pki_;
  static int counter_;
  fs::path repo_;
};
std::string* SecurityTest::dir_ = nullptr;
TestPki* SecurityTest::pki_ = nullptr;
int SecurityTest::counter_ = 0;

TEST_F(SecurityTest, TlsServerRefusesPlaintextAndServesVerifiedClients) {
  auto server = Start(TlsFlags(/*mutual=*/false));
  ASSERT_NE(server, nullptr);
  const std::string target = server->grpc_target();
  EXPECT_EQ(ServerReady(Connect(target, std::nullopt)).error_code(), grpc::UNAVAILABLE);
  EXPECT_EQ(ServerReady(Connect(target, ClientTls{pki_->Cert("other_ca"), "", ""})).error_code(),
            grpc::UNAVAILABLE);
  EXPECT_TRUE(ServerReady(Connect(target, ClientTls{pki_->Cert("ca"), "", ""})).ok());
  // /metrics is HTTPS too.
  const auto metrics = HttpsGet(server->metrics_port(), {pki_->Cert("ca"), "", ""});
  ASSERT_TRUE(metrics.has_value());
  EXPECT_TRUE(absl::StartsWith(*metrics, "HTTP/1.1 200 OK")) << *metrics;
  EXPECT_TRUE(absl::StrContains(*metrics, "rectifier_build_info{"));
  auto plain = HttpGet(server->metrics_port(), "/metrics");
  EXPECT_FALSE(plain.ok() && absl::StrContains(*plain, "rectifier_build_info"));
}

TEST_F(SecurityTest, MutualTlsNeedsAClientCertificateFromTheCa) {
  auto server = Start(TlsFlags(/*mutual=*/true));
  ASSERT_NE(server, nullptr);
  const std::string target = server->grpc_target();
  const std::string ca = pki_->Cert("ca");
  EXPECT_EQ(ServerReady(Connect(target, ClientTls{ca, "", ""})).error_code(), grpc::UNAVAILABLE);
  EXPECT_EQ(ServerReady(Connect(target, ClientTls{ca, pki_->Cert("client_other"),
                                                  pki_->Key("client_other")}))
                .error_code(),
            grpc::UNAVAILABLE);
  EXPECT_TRUE(
      ServerReady(Connect(target, ClientTls{ca, pki_->Cert("client"), pki_->Key("client")})).ok());
  EXPECT_FALSE(HttpsGet(server->metrics_port(), {ca, "", ""}).has_value());
  EXPECT_FALSE(
      HttpsGet(server->metrics_port(), {ca, pki_->Cert("client_other"), pki_->Key("client_other")})
          .has_value());
  const auto metrics =
      HttpsGet(server->metrics_port(), {ca, pki_->Cert("client"), pki_->Key("client")});
  ASSERT_TRUE(metrics.has_value());
  EXPECT_TRUE(absl::StartsWith(*metrics, "HTTP/1.1 200 OK")) << *metrics;
}

TEST_F(SecurityTest, RotatedCertificateIsUsedByNewConnectionsWithoutRestart) {
  const std::string cert = (repo_ / "../tls.crt").lexically_normal().string();
  const std::string key = (repo_ / "../tls.key").lexically_normal().string();
  ReplaceFile(pki_->Cert("server"), cert);
  ReplaceFile(pki_->Key("server"), key);
  auto server = Start({"--tls-cert", cert, "--tls-key", key, "--tls-reload-secs", "1"});
  ASSERT_NE(server, nullptr);
  const std::string target = server->grpc_target();
  const ClientTls old_roots{pki_->Cert("ca"), "", ""};
  const ClientTls new_roots{pki_->Cert("other_ca"), "", ""};
  EXPECT_TRUE(ServerReady(Connect(target, old_roots)).ok());
  EXPECT_FALSE(ServerReady(Connect(target, new_roots)).ok());
  auto kept = Connect(target, old_roots);  // an open connection keeps its session
  ASSERT_TRUE(ServerReady(kept).ok());

  // Key first, then certificate: the half-rotated pair must not be used.
  ReplaceFile(pki_->Key("server_other"), key);
  ReplaceFile(pki_->Cert("server_other"), cert);
  bool grpc_rotated = false;
  bool metrics_rotated = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(15);
       absl::Now() < deadline && !(grpc_rotated && metrics_rotated);) {
    absl::SleepFor(absl::Milliseconds(250));
    grpc_rotated = grpc_rotated || ServerReady(Connect(target, new_roots)).ok();
    metrics_rotated = metrics_rotated || HttpsGet(server->metrics_port(), new_roots).has_value();
  }
  EXPECT_TRUE(grpc_rotated);
  EXPECT_TRUE(metrics_rotated);
  EXPECT_FALSE(ServerReady(Connect(target, old_roots)).ok());
  EXPECT_FALSE(HttpsGet(server->metrics_port(), old_roots).has_value());
  EXPECT_TRUE(ServerReady(kept).ok());
}

grpc::Status Load(const std::shared_ptr<grpc::Channel>& channel, const std::string& model,
                  const std::string& token, bool unload = false) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(60)));
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  if (unload) {
    inference::RepositoryModelUnloadRequest request;
    request.set_model_name(model);
    inference::RepositoryModelUnloadResponse response;
    return stub->RepositoryModelUnload(&context, request, &response);
  }
  inference::RepositoryModelLoadRequest request;
  request.set_model_name(model);
  inference::RepositoryModelLoadResponse response;
  return stub->RepositoryModelLoad(&context, request, &response);
}

grpc::Status Metadata(const std::shared_ptr<grpc::Channel>& channel, const std::string& token) {
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(absl::Seconds(5)));
  if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
  inference::ModelMetadataRequest request;
  request.set_name("scan_classifier");
  inference::ModelMetadataResponse response;
  return stub->ModelMetadata(&context, request, &response);
}

TEST_F(SecurityTest, TokensNeedTheRightRoleAndAreReReadOnSighup) {
  const std::string tokens = WriteTokens(absl::StrCat("admin ", kAdmin, "\ninfer ", kInfer, "\n"));
  auto server = Start({"--auth-tokens", tokens, "--model-control-mode", "explicit", "--load-model",
                       "scan_classifier"});
  ASSERT_NE(server, nullptr);
  auto channel = Connect(server->grpc_target(), std::nullopt);
  // Probes stay open.
  EXPECT_TRUE(ServerReady(channel).ok());
  {
    auto health = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    EXPECT_TRUE(health->Check(&context, request, &response).ok());
  }
  EXPECT_EQ(Metadata(channel, "").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(Metadata(channel, "wrong-token-0123456789abcdef").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_TRUE(Metadata(channel, kInfer).ok());
  EXPECT_TRUE(Metadata(channel, kAdmin).ok());
  const grpc::Status denied = Load(channel, "scan_classifier", kInfer);
  EXPECT_EQ(denied.error_code(), grpc::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(denied.error_message(), "admin")) << denied.error_message();
  EXPECT_EQ(Load(channel, "scan_classifier", "").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_TRUE(Load(channel, "scan_classifier", kAdmin).ok());
  {  // A stream without a token is refused before it starts.
    auto stub = inference::GRPCInferenceService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(In(absl::Seconds(5)));
    auto stream = stub->ModelStreamInfer(&context);
    inference::ModelStreamInferResponse response;
    EXPECT_FALSE(stream->Read(&response));
    EXPECT_EQ(stream->Finish().error_code(), grpc::UNAUTHENTICATED);
  }

  const std::string renewed = "infer-renewed-0123456789abcdef";
  WriteFile(tokens, absl::StrCat("admin ", kAdmin, "\ninfer ", renewed, "\n"));
  server->Signal(SIGHUP);
  bool reloaded = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       absl::Now() < deadline && !reloaded;) {
    absl::SleepFor(absl::Milliseconds(100));
    reloaded = Metadata(channel, renewed).ok();
  }
  EXPECT_TRUE(reloaded);
  EXPECT_EQ(Metadata(channel, kInfer).error_code(), grpc::UNAUTHENTICATED);
  // A broken file on SIGHUP keeps the tokens in use.
  WriteFile(tokens, "admin short\n");
  server->Signal(SIGHUP);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_TRUE(Metadata(channel, renewed).ok());
  const std::string log = server->ReadOutput();
  EXPECT_TRUE(absl::StrContains(log, "tokens not re-read")) << log;
  EXPECT_FALSE(absl::StrContains(log, kAdmin));
  EXPECT_FALSE(absl::StrContains(log, renewed));
  server->Signal(SIGTERM);
  EXPECT_TRUE(server->WaitForExit(absl::Seconds(30)).has_value());
}

TEST_F(SecurityTest, LoadAndUnloadOnlyInExplicitMode) {
  for (const std::string mode : {"none", "poll"}) {
    auto server = Start({"--model-control-mode", mode});
    ASSERT_NE(server, nullptr);
    auto channel = Connect(server->grpc_target(), std::nullopt);
    for (const bool unload : {false, true}) {
      const grpc::Status status = Load(channel, "scan_classifier", "", unload);
      EXPECT_EQ(status.error_code(), grpc::FAILED_PRECONDITION) << mode;
      EXPECT_TRUE(absl::StrContains(status.error_message(), "--model-control-mode " + mode))
          << status.error_message();
    }
    EXPECT_TRUE(Metadata(channel, "").ok()) << mode;  // still served
  }
  auto server = Start({"--model-control-mode", "explicit"});
  ASSERT_NE(server, nullptr);
  auto channel = Connect(server->grpc_target(), std::nullopt);
  EXPECT_TRUE(Load(channel, "scan_classifier", "").ok());
  EXPECT_TRUE(Metadata(channel, "").ok());
  EXPECT_TRUE(Load(channel, "scan_classifier", "", /*unload=*/true).ok());
  EXPECT_EQ(Metadata(channel, "").error_code(), grpc::NOT_FOUND);
}

TEST_F(SecurityTest, LoadingAFolderThatIsNoModelLeavesTheServerReady) {
  auto server = Start({"--model-control-mode", "explicit", "--load-model", "scan_classifier"});
  ASSERT_NE(server, nullptr);
  auto channel = Connect(server->grpc_target(), std::nullopt);
  auto stub = inference::GRPCInferenceService::NewStub(channel);
  const auto ready = [&] {
    grpc::ClientContext context;
    inference::ServerReadyRequest request;
    inference::ServerReadyResponse response;
    EXPECT_TRUE(stub->ServerReady(&context, request, &response).ok());
    return response.ready();
  };
  ASSERT_TRUE(ready());
  EXPECT_EQ(Load(channel, "not_a_model", "").error_code(), grpc::NOT_FOUND);
  EXPECT_TRUE(ready());
  // A model folder that fails to load: refused with the reason, nothing is
  // loaded, the server stays ready and the index shows why.
  fs::create_directories(repo_ / "broken" / "1");
  WriteFile((repo_ / "broken" / "config.pbtxt").string(), "max_batch_sise: 4\n");
  const grpc::Status broken = Load(channel, "broken", "");
  EXPECT_EQ(broken.error_code(), grpc::INVALID_ARGUMENT) << broken.error_message();
  EXPECT_TRUE(ready());
  grpc::ClientContext context;
  inference::RepositoryIndexRequest request;
  inference::RepositoryIndexResponse index;
  ASSERT_TRUE(stub->RepositoryIndex(&context, request, &index).ok());
  bool listed_broken = false;
  for (const auto& model : index.models()) {
    EXPECT_NE(model.name(), "not_a_model");
    if (model.name() == "broken") {
      listed_broken = true;
      EXPECT_EQ(model.state(), "UNAVAILABLE");
      EXPECT_EQ(model.reason(), broken.error_message());
    }
  }
  EXPECT_TRUE(listed_broken);
}

TEST_F(SecurityTest, UnusableFilesStopTheStartWithOneLine) {
  const std::string garbage = (repo_ / "../garbage.pem").lexically_normal().string();
  WriteFile(garbage, "no pem here\n");
  const std::string short_tokens = WriteTokens("admin short\n");
  const struct {
    std::vector<std::string> flags;
    std::string expected;
  } cases[] = {
      {{"--tls-cert", pki_->Path("missing.crt"), "--tls-key", pki_->Key("server")}, "cannot read"},
      {{"--tls-cert", pki_->Cert("server"), "--tls-key", pki_->Key("server_other")},
       "does not match the certificate"},
      {{"--tls-cert", pki_->Cert("server"), "--tls-key", pki_->Key("server"), "--tls-client-ca",
        garbage},
       "no PEM certificate"},
      {{"--tls-cert", pki_->Cert("server")}, "--tls-cert needs --tls-key"},
      {{"--auth-tokens", short_tokens}, "line 1: the token is shorter"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"--model-repository", repo_.string(),      "--grpc-address",
                                     "127.0.0.1:0",        "--metrics-address", "127.0.0.1:0"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const ExitResult result = RunToExit(kBinary, args, absl::Seconds(30));
    EXPECT_EQ(result.exit_code, 2) << c.expected << ": " << result.stderr_text;
    EXPECT_TRUE(absl::StrContains(result.stderr_text, c.expected)) << result.stderr_text;
    EXPECT_EQ(std::count(result.stderr_text.begin(), result.stderr_text.end(), '\n'), 1)
        << result.stderr_text;
  }
}

}  // namespace
}  // namespace rectifier::testing
