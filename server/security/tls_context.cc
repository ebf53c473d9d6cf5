#include "server/security/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace rectifier::security {

absl::StatusOr<std::unique_ptr<TlsContext>> TlsContext::Create(const TlsFiles& files,
                                                               absl::Duration reload_interval) {
  std::unique_ptr<TlsContext> context(new TlsContext());
  context->files_ = files;
  auto identity = TlsIdentity::Load(files);
  if (!identity.ok()) return identity.status();
  {
    absl::MutexLock lock(&context->mu_);
    context->identity_ = *std::move(identity);
  }
  if (reload_interval > absl::ZeroDuration()) {
    context->reloader_ =
        std::thread([raw = context.get(), reload_interval] { raw->ReloadLoop(reload_interval); });
  }
  return context;
}

TlsContext::~TlsContext() {
  stop_.Notify();
  if (reloader_.joinable()) reloader_.join();
}

void TlsContext::Configure(void* ssl_ctx) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_cert_cb(ctx, &TlsContext::SelectCertificate, this);
  if (!files_.client_ca.empty()) {
    // Verified against the store SelectCertificate sets on each connection.
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
}

void TlsContext::ReloadLoop(absl::Duration interval) {
  while (!stop_.WaitForNotificationWithTimeout(interval)) {
    const absl::StatusOr<bool> changed = Reload();
    if (!changed.ok()) {
      // Logged at each check until fixed: a rotation that left the files
      // unusable must not go unnoticed while the old certificate expires.
      spdlog::warn("TLS files not reloaded, the previous ones stay in use: {}",
                   std::string(changed.status().message()));
    } else if (*changed) {
      spdlog::info("TLS files reloaded: {}", identity()->description());
    }
  }
}

std::shared_ptr<const TlsIdentity> TlsContext::identity() const {
  absl::MutexLock lock(&mu_);
  return identity_;
}

absl::StatusOr<bool> TlsContext::Reload() {
  auto loaded = TlsIdentity::Load(files_);
  if (!loaded.ok()) return loaded.status();
  absl::MutexLock lock(&mu_);
  if ((*loaded)->cert_pem() == identity_->cert_pem() &&
      (*loaded)->key_pem() == identity_->key_pem() &&
      (*loaded)->client_ca_pem() == identity_->client_ca_pem()) {
    return false;
  }
  identity_ = *std::move(loaded);
  return true;
}

// OpenSSL calls this while it prepares the server's certificate, before any
// is sent: the connection gets the identity current at that moment.
int TlsContext::SelectCertificate(SSL* ssl, void* arg) {
  const std::shared_ptr<const TlsIdentity> identity = static_cast<TlsContext*>(arg)->identity();
  auto* chain = static_cast<STACK_OF(X509)*>(identity->chain());
  if (SSL_use_cert_and_key(ssl, static_cast<X509*>(identity->leaf()),
                           static_cast<EVP_PKEY*>(identity->key()), chain, 1) != 1) {
    return 0;  // the handshake fails
  }
  if (identity->client_ca_store() != nullptr &&
      SSL_set1_verify_cert_store(ssl, static_cast<X509_STORE*>(identity->client_ca_store())) != 1) {
    return 0;
  }
  return 1;
}

}  // namespace rectifier::security
