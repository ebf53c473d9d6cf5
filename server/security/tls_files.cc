#include "server/security/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"

namespace rectifier::security {
namespace {

// PEM files of a few certificates are kilobytes; a CA bundle may be larger.
constexpr long kMaxPemBytes = 4 << 20;

std::string Where(const char* flag, const std::string& path) {
  return absl::StrCat(flag, " '", path, "'");
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(flag, path), ": cannot read: ", std::strerror(errno)));
  }
  std::string bytes;
  char buffer[16384];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file)) > 0) {
    bytes.append(buffer, n);
    if (static_cast<long>(bytes.size()) > kMaxPemBytes) break;
  }
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) {
    return absl::FailedPreconditionError(absl::StrCat(Where(flag, path), ": cannot read"));
  }
  if (static_cast<long>(bytes.size()) > kMaxPemBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(Where(flag, path), ": larger than ", kMaxPemBytes >> 20, " MiB"));
  }
  if (bytes.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(Where(flag, path), ": empty file"));
  }
  return bytes;
}

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

BioPtr MemoryBio(const std::string& bytes) {
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

// Every certificate of a PEM bundle, in order; stops at the first block that
// is not a certificate.
STACK_OF(X509) * ReadCertificates(const std::string& pem) {
  STACK_OF(X509)* certs = sk_X509_new_null();
  BioPtr bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    sk_X509_push(certs, cert);
  }
  ERR_clear_error();  // the end of the bundle reads as "no start line"
  return certs;
}

std::string Describe(X509* cert) {
  char subject[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  std::string expiry = "unknown";
  struct tm tm {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &tm);
    expiry = text;
  }
  return absl::StrCat(subject, ", expires ", expiry);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsIdentity>> TlsIdentity::Load(const TlsFiles& files) {
  if (files.cert.empty() || files.key.empty()) {
    return absl::FailedPreconditionError(
        files.cert.empty()
            ? absl::StrCat(files.key.empty() ? "--tls-client-ca" : "--tls-key", " needs --tls-cert")
            : "--tls-cert needs --tls-key");
  }
  std::unique_ptr<TlsIdentity> identity(new TlsIdentity());
  auto cert_pem = ReadPem("--tls-cert", files.cert);
  if (!cert_pem.ok()) return cert_pem.status();
  identity->cert_pem_ = *std::move(cert_pem);
  auto key_pem = ReadPem("--tls-key", files.key);
  if (!key_pem.ok()) return key_pem.status();
  identity->key_pem_ = *std::move(key_pem);

  STACK_OF(X509)* certs = ReadCertificates(identity->cert_pem_);
  if (sk_X509_num(certs) == 0) {
    sk_X509_free(certs);
    return absl::FailedPreconditionError(
        absl::StrCat(Where("--tls-cert", files.cert), ": no PEM certificate in it"));
  }
  X509* leaf = sk_X509_shift(certs);
  identity->leaf_ = leaf;
  identity->chain_ = certs;  // the intermediates, possibly none
  identity->description_ = Describe(leaf);

  BioPtr key_bio = MemoryBio(identity->key_pem_);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  ERR_clear_error();
  if (key == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        Where("--tls-key", files.key), ": no PEM private key in it (or it is encrypted)"));
  }
  identity->key_ = key;
  if (X509_check_private_key(leaf, key) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(absl::StrCat(Where("--tls-key", files.key),
                                                      " does not match the certificate in ",
                                                      Where("--tls-cert", files.cert)));
  }

  if (!files.client_ca.empty()) {
    auto ca_pem = ReadPem("--tls-client-ca", files.client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    identity->client_ca_pem_ = *std::move(ca_pem);
    STACK_OF(X509)* cas = ReadCertificates(identity->client_ca_pem_);
    X509_STORE* store = X509_STORE_new();
    identity->client_ca_store_ = store;
    const int count = sk_X509_num(cas);
    for (int i = 0; i < count; ++i) X509_STORE_add_cert(store, sk_X509_value(cas, i));
    sk_X509_pop_free(cas, X509_free);  // the store holds its own references
    if (count == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(Where("--tls-client-ca", files.client_ca), ": no PEM certificate in it"));
    }
  }
  return identity;
}

TlsIdentity::~TlsIdentity() {
  X509_free(static_cast<X509*>(leaf_));
  sk_X509_pop_free(static_cast<STACK_OF(X509)*>(chain_), X509_free);
  EVP_PKEY_free(static_cast<EVP_PKEY*>(key_));
  X509_STORE_free(static_cast<X509_STORE*>(client_ca_store_));
}

absl::Status ValidateTlsFiles(const TlsFiles& files) { return TlsIdentity::Load(files).status(); }

}  // namespace rectifier::security
