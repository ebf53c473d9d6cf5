// rectifier-client and rectifier-perf against real servers with TLS, mutual
// TLS and tokens: the flags work, each misconfiguration is answered with the
// message that names its fix, and the token is never printed.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/repository/test_models.h"
#include "tools/client/connection.h"
#include "tools/client/tls_probe.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;
using tools::ProbeTls;
using tools::TlsProbe;

constexpr char kInferToken[] = "infer-tools-7c1f0a9e3b5d2468";
constexpr char kAdminToken[] = "admin-tools-4e8b6d2f0a1c3579";
constexpr char kRequiresTls[] = "server requires TLS: pass --tls-ca";
constexpr char kHandshakeFailed[] =
    "TLS handshake with the server failed: check --tls-ca, --tls-server-name, and "
    "--tls-cert/--tls-key if the server requires client certificates";
constexpr char kNoToken[] =
    "server requires a token (UNAUTHENTICATED): pass --token or set RECTIFIER_TOKEN";
constexpr char kTokenRejected[] =
    "token rejected (UNAUTHENTICATED): pass --token or set RECTIFIER_TOKEN";
constexpr char kLacksRole[] = "token lacks the role for this call (PERMISSION_DENIED): ";

size_t Count(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// A throwaway PKI in `dir`, made with the openssl command line: NAME.crt and
// NAME.key per certificate. P-256 keys, which take milliseconds to make.
class Pki {
 public:
  explicit Pki(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }

  bool MakeCa(const std::string& name) const {
    return Openssl(
        absl::StrCat("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ",
                     "-days 2 -subj /CN=", name, " -keyout ", name, ".key -out ", name,
                     ".crt -addext basicConstraints=critical,CA:TRUE ",
                     "-addext keyUsage=critical,keyCertSign"));
  }
  // Signed by CA `ca`; `san` ("DNS:localhost,IP:127.0.0.1") makes a server
  // certificate, none a client one.
  bool MakeLeaf(const std::string& name, const std::string& ca, const std::string& san) const {
    const std::string ext = name + ".ext";
    WriteFile(dir_ / ext, san.empty() ? "extendedKeyUsage=clientAuth\n"
                                      : absl::StrCat("extendedKeyUsage=serverAuth\n",
                                                     "subjectAltName=", san, "\n"));
    return Openssl(absl::StrCat("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ",
                                "-subj /CN=", name, " -keyout ", name, ".key -out ", name,
                                ".csr")) &&
           Openssl(absl::StrCat("x509 -req -days 2 -in ", name, ".csr -CA ", ca, ".crt -CAkey ", ca,
                                ".key -set_serial ", ++serial_, " -extfile ", ext, " -out ", name,
                                ".crt"));
  }
  std::string Cert(const std::string& name) const { return (dir_ / (name + ".crt")).string(); }
  std::string Key(const std::string& name) const { return (dir_ / (name + ".key")).string(); }

 private:
  bool Openssl(const std::string& args) const {
    const std::string command =
        absl::StrCat("cd '", dir_.string(), "' && openssl ", args, " >/dev/null 2>&1");
    return std::system(command.c_str()) == 0;
  }

  const fs::path dir_;
  mutable int serial_ = 1;
};

// Sets RECTIFIER_TOKEN for the processes started in its scope (they inherit
// this process's environment).
class ScopedToken {
 public:
  explicit ScopedToken(const std::string& token) {
    setenv(tools::kTokenEnvironmentVariable, token.c_str(), 1);
  }
  ~ScopedToken() { unsetenv(tools::kTokenEnvironmentVariable); }
};

class ToolsSecurityTest : public ::testing::Test {
 protected:
  // Four servers: TLS with tokens (and the scale model), mutual TLS,
  // TLS with a certificate for DNS:rectifier.test only, and plaintext.
  static void SetUpTestSuite() {
    unsetenv(tools::kTokenEnvironmentVariable);  // a developer's own must not leak in
    if (std::system("openssl version >/dev/null 2>&1") != 0) return;
    root_ = new fs::path(fs::temp_directory_path() /
                         ("rectifier-tools-security-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    pki_ = new Pki(*root_ / "pki");
    if (!pki_->MakeCa("ca") || !pki_->MakeCa("other") ||
        !pki_->MakeLeaf("server", "ca", "DNS:localhost,IP:127.0.0.1") ||
        !pki_->MakeLeaf("client", "ca", "") ||
        !pki_->MakeLeaf("named", "ca", "DNS:rectifier.test")) {
      ADD_FAILURE() << "openssl could not make the test certificates";
      return;
    }
    const fs::path repo = *root_ / "repo";
    WriteFile(repo / "scale" / "1" / "model.onnx", ScaleModelBytes(2.f));
    WriteFile(repo / "scale" / "config.pbtxt", "max_batch_size: 4\n");
    WriteFile(repo / "spare" / "1" / "model.onnx", ScaleModelBytes(3.f));
    const fs::path tokens = *root_ / "tokens";
    WriteFile(tokens, absl::StrCat("infer ", kInferToken, "\nadmin ", kAdminToken, "\n"));

    const std::vector<std::string> common = {"--model-repository", repo.string(),
                                             "--grpc-address",     "127.0.0.1:0",
                                             "--metrics-address",  "127.0.0.1:0"};
    // All four start at once, then each is waited for.
    std::vector<std::unique_ptr<ServerProcess>> started;
    for (std::vector<std::string> more : std::vector<std::vector<std::string>>{
             {"--tls-cert", pki_->Cert("server"), "--tls-key", pki_->Key("server"), "--auth-tokens",
              tokens.string(), "--model-control-mode", "explicit", "--load-model", "scale"},
             {"--tls-cert", pki_->Cert("server"), "--tls-key", pki_->Key("server"),
              "--tls-client-ca", pki_->Cert("ca")},
             {"--tls-cert", pki_->Cert("named"), "--tls-key", pki_->Key("named")},
             {}}) {
      more.insert(more.begin(), common.begin(), common.end());
      auto server = ServerProcess::Spawn(RECTIFIER_SERVER_BINARY, more);
      if (!server.ok()) {
        ADD_FAILURE() << server.status();
        return;
      }
      started.push_back(*std::move(server));
    }
    for (const auto& server : started) {
      const absl::Status serving = server->WaitUntilServing(absl::Seconds(60));
      if (!serving.ok()) {
        ADD_FAILURE() << serving;
        return;
      }
    }
    tls_server_ = started[0].release();
    mtls_server_ = started[1].release();
    named_server_ = started[2].release();
    plain_server_ = started[3].release();
  }
  static void TearDownTestSuite() {
    for (ServerProcess** server : {&tls_server_, &mtls_server_, &named_server_, &plain_server_}) {
      delete *server;
      *server = nullptr;
    }
    delete pki_;
    if (root_ != nullptr) fs::remove_all(*root_);
    delete root_;
  }

  void SetUp() override {
    if (pki_ == nullptr) GTEST_SKIP() << "needs the openssl command line";
    ASSERT_NE(tls_server_, nullptr);
    ASSERT_NE(mtls_server_, nullptr);
    ASSERT_NE(named_server_, nullptr);
    ASSERT_NE(plain_server_, nullptr);
  }

  static ExitResult Client(const ServerProcess& server, std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", server.grpc_target()});
    return RunToExit(RECTIFIER_CLIENT_BINARY, args, absl::Seconds(30));
  }

  // A short closed-loop run on the scale model.
  static ExitResult Perf(const ServerProcess& server, std::vector<std::string> args) {
    args.insert(args.begin(), {"-m", "scale", "--url", server.grpc_target(), "--window-s", "0.2",
                               "--max-windows", "2", "--fail-on-error"});
    return RunToExit(RECTIFIER_PERF_BINARY, args, absl::Seconds(30));
  }

  static std::string Ca() { return pki_->Cert("ca"); }

  static fs::path* root_;
  static Pki* pki_;
  static ServerProcess* tls_server_;
  static ServerProcess* mtls_server_;
  static ServerProcess* named_server_;
  static ServerProcess* plain_server_;
};

fs::path* ToolsSecurityTest::root_ = nullptr;
Pki* ToolsSecurityTest::pki_ = nullptr;
ServerProcess* ToolsSecurityTest::tls_server_ = nullptr;
ServerProcess* ToolsSecurityTest::mtls_server_ = nullptr;
ServerProcess* ToolsSecurityTest::named_server_ = nullptr;
ServerProcess* ToolsSecurityTest::plain_server_ = nullptr;

TEST_F(ToolsSecurityTest, TlsWithCaAndMutualTlsWithClientCertificate) {
  ExitResult tls = Client(*tls_server_, {"--tls-ca", Ca(), "health"});
  EXPECT_EQ(tls.exit_code, 0) << tls.stderr_text;
  EXPECT_TRUE(Contains(tls.stderr_text, "SERVING")) << tls.stderr_text;

  ExitResult mtls = Client(*mtls_server_, {"--tls-ca", Ca(), "--tls-cert", pki_->Cert("client"),
                                           "--tls-key", pki_->Key("client"), "health"});
  EXPECT_EQ(mtls.exit_code, 0) << mtls.stderr_text;
  EXPECT_TRUE(Contains(mtls.stderr_text, "SERVING")) << mtls.stderr_text;

  // Without the client certificate the same server refuses the handshake.
  ExitResult no_cert = Client(*mtls_server_, {"--tls-ca", Ca(), "health"});
  EXPECT_EQ(no_cert.exit_code, 1);
  EXPECT_TRUE(Contains(no_cert.stderr_text, kHandshakeFailed)) << no_cert.stderr_text;
  EXPECT_TRUE(Contains(no_cert.stderr_text, "this server asks for one and none was given"))
      << no_cert.stderr_text;
}

TEST_F(ToolsSecurityTest, PlaintextClientsAgainstTlsServersAreToldToPassTlsCa) {
  ExitResult client = Client(*tls_server_, {"health"});
  EXPECT_EQ(client.exit_code, 1);
  EXPECT_EQ(Count(client.stderr_text, kRequiresTls), 1u) << client.stderr_text;
  EXPECT_FALSE(Contains(client.stderr_text, "--tls-cert")) << client.stderr_text;

  // A server that also wants a client certificate says so.
  ExitResult mtls = Client(*mtls_server_, {"health"});
  EXPECT_EQ(mtls.exit_code, 1);
  EXPECT_TRUE(Contains(mtls.stderr_text, kRequiresTls)) << mtls.stderr_text;
  EXPECT_TRUE(Contains(mtls.stderr_text, "--tls-cert and --tls-key")) << mtls.stderr_text;

  // rectifier-perf stops before measuring, with the hint once.
  ExitResult perf = Perf(*tls_server_, {});
  EXPECT_EQ(perf.exit_code, 2) << perf.stderr_text;
  EXPECT_EQ(Count(perf.stderr_text, kRequiresTls), 1u) << perf.stderr_text;

  // A plaintext server that refuses the call for another reason keeps the
  // plain message.
  ExitResult down =
      RunToExit(RECTIFIER_CLIENT_BINARY, {"--url", "127.0.0.1:1", "health"}, absl::Seconds(30));
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_TRUE(Contains(down.stderr_text, "UNAVAILABLE")) << down.stderr_text;
  EXPECT_FALSE(Contains(down.stderr_text, "TLS")) << down.stderr_text;
}

TEST_F(ToolsSecurityTest, WrongCaOrPlaintextServerFailsWithTheHandshakeHint) {
  ExitResult wrong_ca = Client(*tls_server_, {"--tls-ca", pki_->Cert("other"), "health"});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  EXPECT_TRUE(Contains(wrong_ca.stderr_text, kHandshakeFailed)) << wrong_ca.stderr_text;
  EXPECT_FALSE(Contains(wrong_ca.stderr_text, "asks for one")) << wrong_ca.stderr_text;

  ExitResult perf = Perf(*tls_server_, {"--tls-ca", pki_->Cert("other")});
  EXPECT_EQ(perf.exit_code, 2);
  EXPECT_EQ(Count(perf.stderr_text, kHandshakeFailed), 1u) << perf.stderr_text;

  ExitResult plain = Client(*plain_server_, {"--tls-ca", Ca(), "health"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_TRUE(Contains(plain.stderr_text, "the server does not speak TLS")) << plain.stderr_text;
}

TEST_F(ToolsSecurityTest, ServerNameOverrideVerifiesAnotherName) {
  // The certificate names only rectifier.test; the tool connects to 127.0.0.1.
  ExitResult named =
      Client(*named_server_, {"--tls-ca", Ca(), "--tls-server-name", "rectifier.test", "health"});
  EXPECT_EQ(named.exit_code, 0) << named.stderr_text;
  EXPECT_TRUE(Contains(named.stderr_text, "SERVING")) << named.stderr_text;

  ExitResult unnamed = Client(*named_server_, {"--tls-ca", Ca(), "health"});
  EXPECT_EQ(unnamed.exit_code, 1);
  EXPECT_TRUE(Contains(unnamed.stderr_text, kHandshakeFailed)) << unnamed.stderr_text;

  ExitResult no_tls = Client(*named_server_, {"--tls-server-name", "rectifier.test", "health"});
  EXPECT_EQ(no_tls.exit_code, 2);
  EXPECT_TRUE(Contains(no_tls.stderr_text, "--tls-server-name needs TLS")) << no_tls.stderr_text;
}

TEST_F(ToolsSecurityTest, TokenFromFlagOrEnvironmentIsSentAndNeverPrinted) {
  ExitResult flag =
      Client(*tls_server_, {"--tls-ca", Ca(), "--token", kInferToken, "metadata", "scale"});
  EXPECT_EQ(flag.exit_code, 0) << flag.stderr_text;
  EXPECT_TRUE(Contains(flag.stderr_text, "\"scale\"")) << flag.stderr_text;
  EXPECT_FALSE(Contains(flag.stderr_text, kInferToken));

  ScopedToken token(kInferToken);
  ExitResult env = Client(*tls_server_, {"--tls-ca", Ca(), "--json", "metadata", "scale"});
  EXPECT_EQ(env.exit_code, 0) << env.stderr_text;
  EXPECT_TRUE(Contains(env.stderr_text, "\"name\":\"scale\"")) << env.stderr_text;
  EXPECT_FALSE(Contains(env.stderr_text, kInferToken));

  // Every call of a load run carries it: no request fails (--fail-on-error).
  ExitResult perf = Perf(*tls_server_, {"--tls-ca", Ca()});
  EXPECT_EQ(perf.exit_code, 0) << perf.stderr_text;
  EXPECT_FALSE(Contains(perf.stderr_text, kInferToken));
  ExitResult perf_flag = Perf(*tls_server_, {"--tls-ca", Ca(), "--token", kAdminToken});
  EXPECT_EQ(perf_flag.exit_code, 0) << perf_flag.stderr_text;
  EXPECT_FALSE(Contains(perf_flag.stderr_text, kAdminToken));

  for (const char* binary : {RECTIFIER_CLIENT_BINARY, RECTIFIER_PERF_BINARY}) {
    ExitResult help = RunToExit(binary, {"--help"}, absl::Seconds(30));
    EXPECT_EQ(help.exit_code, 0) << binary;
    EXPECT_TRUE(Contains(help.stderr_text, "RECTIFIER_TOKEN")) << help.stderr_text;
    EXPECT_FALSE(Contains(help.stderr_text, kInferToken)) << binary;
  }
}

TEST_F(ToolsSecurityTest, MissingOrRejectedTokenNamesTheFix) {
  ExitResult none = Client(*tls_server_, {"--tls-ca", Ca(), "metadata", "scale"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(Contains(none.stderr_text, kNoToken)) << none.stderr_text;

  const std::string wrong = "wrong-token-0123456789abcdef";
  ExitResult rejected =
      Client(*tls_server_, {"--tls-ca", Ca(), "--token", wrong, "metadata", "scale"});
  EXPECT_EQ(rejected.exit_code, 1);
  EXPECT_TRUE(Contains(rejected.stderr_text, kTokenRejected)) << rejected.stderr_text;
  EXPECT_FALSE(Contains(rejected.stderr_text, wrong));

  // Health needs no token.
  EXPECT_EQ(Client(*tls_server_, {"--tls-ca", Ca(), "health"}).exit_code, 0);

  ExitResult perf = Perf(*tls_server_, {"--tls-ca", Ca()});
  EXPECT_EQ(perf.exit_code, 2);
  EXPECT_EQ(Count(perf.stderr_text, kNoToken), 1u) << perf.stderr_text;
}

TEST_F(ToolsSecurityTest, InferTokenCannotLoadAdminTokenCan) {
  {
    ScopedToken token(kInferToken);
    ExitResult load = Client(*tls_server_, {"--tls-ca", Ca(), "load", "spare"});
    EXPECT_EQ(load.exit_code, 1);
    EXPECT_TRUE(Contains(load.stderr_text, kLacksRole)) << load.stderr_text;
    EXPECT_FALSE(Contains(load.stderr_text, kInferToken));
  }
  ScopedToken token(kAdminToken);
  ExitResult load = Client(*tls_server_, {"--tls-ca", Ca(), "load", "spare"});
  EXPECT_EQ(load.exit_code, 0) << load.stderr_text;
  EXPECT_TRUE(Contains(load.stderr_text, "spare loaded")) << load.stderr_text;
  EXPECT_EQ(Client(*tls_server_, {"--tls-ca", Ca(), "unload", "spare"}).exit_code, 0);
}

TEST_F(ToolsSecurityTest, BadTlsFlagsAreUsageErrorsNamingTheFlag) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
    bool perf_too = false;  // the flags are parsed by one library: a sample suffices
  };
  const std::string missing = (*root_ / "missing.pem").string();
  const std::vector<Case> cases = {
      {{"--tls-cert", pki_->Cert("client")}, "--tls-cert needs --tls-key", true},
      {{"--tls-key", pki_->Key("client")}, "--tls-key needs --tls-cert"},
      {{"--tls-ca", missing}, "--tls-ca " + missing + ": cannot read", true},
      {{"--tls-ca", Ca(), "--tls-cert", missing, "--tls-key", pki_->Key("client")},
       "--tls-cert " + missing + ": cannot read"},
      {{"--tls-ca", pki_->Key("client")}, "no PEM certificate"},
      {{"--tls-cert", pki_->Cert("client"), "--tls-key", pki_->Key("server")},
       "--tls-key " + pki_->Key("server") + ": not the key of the certificate"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> client_args = c.flags;
    client_args.emplace_back("health");
    ExitResult client = Client(*tls_server_, client_args);
    EXPECT_EQ(client.exit_code, 2) << c.message;
    EXPECT_EQ(Count(client.stderr_text, c.message), 1u) << client.stderr_text;
    EXPECT_EQ(Count(client.stderr_text, "\n"), 1u) << client.stderr_text;  // one line

    if (!c.perf_too) continue;
    ExitResult perf = Perf(*tls_server_, c.flags);
    EXPECT_EQ(perf.exit_code, 2) << c.message;
    EXPECT_EQ(Count(perf.stderr_text, c.message), 1u) << perf.stderr_text;
  }
}

TEST_F(ToolsSecurityTest, ProbeTellsTlsServersFromOthers) {
  EXPECT_EQ(ProbeTls(tls_server_->grpc_target(), absl::Seconds(2)), TlsProbe::kTls);
  EXPECT_EQ(ProbeTls(absl::StrCat("localhost:", tls_server_->grpc_port()), absl::Seconds(2)),
            TlsProbe::kTls);
  EXPECT_EQ(ProbeTls(mtls_server_->grpc_target(), absl::Seconds(2)), TlsProbe::kTlsAsksCertificate);
  EXPECT_EQ(ProbeTls(plain_server_->grpc_target(), absl::Seconds(2)), TlsProbe::kNotTls);
  EXPECT_EQ(ProbeTls("127.0.0.1:1", absl::Seconds(2)), TlsProbe::kUnreachable);
  EXPECT_EQ(ProbeTls("unix:/nonexistent.sock", absl::Seconds(2)), TlsProbe::kUnreachable);

  // A listener that accepts and says nothing: not TLS, once the timeout ends
  // the wait (the bound is loose: it only tells a timeout from a hang).
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  socklen_t size = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  const absl::Time start = absl::Now();
  EXPECT_EQ(ProbeTls(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)), absl::Milliseconds(300)),
            TlsProbe::kNotTls);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  close(fd);
}

TEST(ParseTargetTest, HostAndPortOfGrpcTargets) {
  struct Case {
    std::string target, host, port;
  };
  const std::vector<Case> cases = {
      {"127.0.0.1:8001", "127.0.0.1", "8001"},
      {"localhost:50051", "localhost", "50051"},
      {"rectifier.svc", "rectifier.svc", "443"},
      {"[::1]:8001", "::1", "8001"},
      {"::1", "::1", "443"},
      {"dns:///rectifier.svc:8001", "rectifier.svc", "8001"},
      {"dns://8.8.8.8/rectifier.svc:8001", "rectifier.svc", "8001"},
      {"dns:rectifier.svc:8001", "rectifier.svc", "8001"},
      {"ipv4:10.0.0.1:8001", "10.0.0.1", "8001"},
      {"ipv6:[::1]:8001", "::1", "8001"},
  };
  for (const Case& c : cases) {
    const auto hp = tools::ParseTarget(c.target);
    ASSERT_TRUE(hp.has_value()) << c.target;
    EXPECT_EQ(hp->host, c.host) << c.target;
    EXPECT_EQ(hp->port, c.port) << c.target;
  }
  for (const char* target : {"unix:/tmp/rectifier.sock", "unix-abstract:x", "vsock:2:8001",
                             "ipv4:10.0.0.1:1,10.0.0.2:1", "[::1", ":8001"}) {
    EXPECT_FALSE(tools::ParseTarget(target).has_value()) << target;
  }
}

}  // namespace
}  // namespace rectifier::testing
