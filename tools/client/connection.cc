#include "tools/client/connection.h"

#include <grpcpp/support/client_interceptor.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tools/client/tls_probe.h"

namespace rectifier::tools {
namespace {

using grpc::experimental::ClientInterceptorFactoryInterface;
using grpc::experimental::ClientRpcInfo;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::Interceptor;
using grpc::experimental::InterceptorBatchMethods;

// How long a failed plaintext call may spend finding out whether the server speaks TLS.
constexpr absl::Duration kProbeTimeout = absl::Seconds(2);

constexpr char kTlsHandshakeHint[] =
    "TLS handshake with the server failed: check --tls-ca, --tls-server-name, and "
    "--tls-cert/--tls-key if the server requires client certificates";

// Adds the authorization header to every call: an interceptor, so that no
// call site can forget it.
class TokenInterceptor final : public Interceptor {
 public:
  explicit TokenInterceptor(const std::string& header) : header_(header) {}
  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      // The map is the call's ClientContext's: it keeps the strings alive
      // until they are sent.
      methods->GetSendInitialMetadata()->emplace("authorization", header_);
    }
    methods->Proceed();
  }

 private:
  const std::string& header_;  // owned by the factory, which outlives the channel's calls
};

class TokenInterceptorFactory final : public ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  Interceptor* CreateClientInterceptor(ClientRpcInfo* /*info*/) override {
    return new TokenInterceptor(header_);
  }

 private:
  const std::string header_;
};

absl::StatusOr<std::string> ReadFile(const char* flag, const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::string text;
  char buffer[8192];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  const int error = std::ferror(file) ? errno : 0;
  std::fclose(file);
  if (error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read: ", std::strerror(error)));
  }
  return text;
}

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& text) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The PEM certificates in `pem`, in order.
std::vector<std::unique_ptr<X509, X509Free>> ParseCertificates(const std::string& pem) {
  std::vector<std::unique_ptr<X509, X509Free>> certs;
  auto bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the file reads as an error
  return certs;
}

// Refuses a passphrase instead of prompting for one: gRPC cannot use an
// encrypted key either.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) { return -1; }

// The files named by the TLS flags, checked here so that a wrong file is
// named now rather than reported as a failed handshake later.
absl::StatusOr<grpc::SslCredentialsOptions> ReadTlsFiles(const ConnectionFlags& flags) {
  grpc::SslCredentialsOptions options;
  if (!flags.tls_ca.empty()) {
    auto pem = ReadFile("--tls-ca", flags.tls_ca);
    if (!pem.ok()) return pem.status();
    if (ParseCertificates(*pem).empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-ca ", flags.tls_ca, ": no PEM certificate in the file"));
    }
    options.pem_root_certs = *std::move(pem);
  }
  if (flags.tls_cert.empty()) return options;
  auto cert_pem = ReadFile("--tls-cert", flags.tls_cert);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadFile("--tls-key", flags.tls_key);
  if (!key_pem.ok()) return key_pem.status();
  const auto certs = ParseCertificates(*cert_pem);
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", flags.tls_cert, ": no PEM certificate in the file"));
  }
  auto key_bio = MemoryBio(*key_pem);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassphrase, nullptr));
  ERR_clear_error();
  if (!key) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", flags.tls_key, ": no unencrypted PEM private key in the file"));
  }
  if (X509_check_private_key(certs[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", flags.tls_key, ": not the key of the certificate in --tls-cert ",
                     flags.tls_cert));
  }
  options.pem_cert_chain = *std::move(cert_pem);
  options.pem_private_key = *std::move(key_pem);
  return options;
}

// gRPC's words for a failed handshake, for when the server cannot be probed.
bool MentionsTls(const std::string& message) {
  const std::string lower = absl::AsciiStrToLower(message);
  for (const char* word : {"ssl", "tls", "handshake", "certificate"}) {
    if (absl::StrContains(lower, word)) return true;
  }
  return false;
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace

void AddConnectionFlags(CLI::App& app, ConnectionFlags* flags) {
  app.add_option("--tls-ca", flags->tls_ca,
                 "PEM file of the CA certificates that verify the server; turns TLS on");
  app.add_option("--tls-cert", flags->tls_cert,
                 "PEM client certificate for mutual TLS (with --tls-key); turns TLS on");
  app.add_option("--tls-key", flags->tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-server-name", flags->tls_server_name,
                 "Name to verify in the server's certificate instead of the --url host");
  // No default shown: the token is never printed.
  app.add_option("--token", flags->token,
                 "Bearer token sent on every call (prefer the environment variable, which "
                 "stays out of the process list)")
      ->envname(kTokenEnvironmentVariable);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const ConnectionFlags& flags,
                                                               grpc::ChannelArguments args) {
  if (!flags.tls_cert.empty() && flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert needs --tls-key (the certificate's private key)");
  }
  if (flags.tls_cert.empty() && !flags.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-key needs --tls-cert (the client certificate)");
  }
  const bool tls = !flags.tls_ca.empty() || !flags.tls_cert.empty();
  if (!flags.tls_server_name.empty() && !tls) {
    return absl::InvalidArgumentError(
        "--tls-server-name needs TLS: pass --tls-ca (or --tls-cert and --tls-key)");
  }
  ConnectionFlags checked = flags;
  // Surrounding white space is a file's or a shell's, not the token's.
  checked.token = std::string(absl::StripAsciiWhitespace(flags.token));
  for (const char c : checked.token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--token (or ", kTokenEnvironmentVariable,
          ") holds a character an HTTP header cannot carry: printable ASCII without spaces only"));
    }
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (tls) {
    auto options = ReadTlsFiles(checked);
    if (!options.ok()) return options.status();
    credentials = grpc::SslCredentials(*options);
    if (!checked.tls_server_name.empty()) args.SetSslTargetNameOverride(checked.tls_server_name);
  }
  std::unique_ptr<Connection> connection(new Connection(checked, tls));
  std::vector<std::unique_ptr<ClientInterceptorFactoryInterface>> interceptors;
  if (!checked.token.empty()) {
    interceptors.push_back(std::make_unique<TokenInterceptorFactory>(checked.token));
  }
  connection->channel_ = grpc::experimental::CreateCustomChannelWithInterceptors(
      checked.url, credentials, args, std::move(interceptors));
  return connection;
}

std::optional<std::string> Connection::Hint(const grpc::Status& status) const {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return TransportHint(status);
    case grpc::StatusCode::UNAUTHENTICATED:
      return flags_.token.empty()
                 ? "server requires a token (UNAUTHENTICATED): pass --token or set RECTIFIER_TOKEN"
                 : "token rejected (UNAUTHENTICATED): pass --token or set RECTIFIER_TOKEN";
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::StrCat("token lacks the role for this call (PERMISSION_DENIED): ",
                          Redact(status.error_message()));
    default:
      return std::nullopt;
  }
}

std::optional<std::string> Connection::TransportHint(const grpc::Status& status) const {
  // A ready channel means the server itself answered UNAVAILABLE (a full
  // queue, a model not ready, shutting down): nothing to do with TLS.
  if (channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) return std::nullopt;
  const TlsProbe probe = ProbeTls(flags_.url, kProbeTimeout);
  const bool asks_certificate = probe == TlsProbe::kTlsAsksCertificate;
  const std::string grpc_said = absl::StrCat(" (", Format(status), ")");
  if (probe == TlsProbe::kUnreachable) {
    return absl::StrCat(
        "cannot reach rectifier-server at ", flags_.url, ": is it running?",
        absl::StrContains(flags_.url, "://") ? " (--url takes host:port, not a URL)" : "",
        grpc_said);
  }
  if (!tls_) {
    if (probe != TlsProbe::kTls && !asks_certificate) return std::nullopt;
    return absl::StrCat(
        "server requires TLS: pass --tls-ca (the CA certificate that signed the server's "
        "certificate)",
        asks_certificate ? ", and --tls-cert and --tls-key: it asks for a client certificate" : "");
  }
  if (probe == TlsProbe::kNotTls) {
    return absl::StrCat(
        "the server does not speak TLS: leave out --tls-ca, --tls-cert, --tls-key and "
        "--tls-server-name",
        grpc_said);
  }
  if (probe == TlsProbe::kTls || asks_certificate || MentionsTls(status.error_message())) {
    const bool no_certificate = asks_certificate && flags_.tls_cert.empty();
    return absl::StrCat(kTlsHandshakeHint,
                        no_certificate ? "; this server asks for one and none was given" : "",
                        grpc_said);
  }
  return std::nullopt;
}

std::string Connection::Describe(const grpc::Status& status) const {
  if (std::optional<std::string> hint = Hint(status)) return *std::move(hint);
  return Format(status);
}

std::string Connection::Format(const grpc::Status& status) const {
  return absl::StrCat(CodeName(status.error_code()), ": ", Redact(status.error_message()));
}

std::string Connection::Redact(const std::string& text) const {
  if (flags_.token.empty()) return text;
  return absl::StrReplaceAll(text, {{flags_.token, "[token]"}});
}

}  // namespace rectifier::tools
