// The PEM files of a server's TLS identity (--tls-cert, --tls-key,
// --tls-client-ca), read and checked the way the handshake will use them.
#ifndef RECTIFIER_SERVER_SECURITY_TLS_FILES_H_
#define RECTIFIER_SERVER_SECURITY_TLS_FILES_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace rectifier::security {

struct TlsFiles {
  std::string cert;       // PEM certificate chain, leaf first
  std::string key;        // PEM private key of the leaf
  std::string client_ca;  // PEM CA bundle; set: clients must present a cert it signed
  bool enabled() const { return !cert.empty() || !key.empty() || !client_ca.empty(); }
};

// One consistent reading of the files: a chain whose leaf matches the key,
// and the client CA certificates if any. Owns its OpenSSL objects.
class TlsIdentity {
 public:
  // Reads and checks every file. Errors are FAILED_PRECONDITION, one line
  // naming the flag and the file: unreadable, empty, not PEM, a key that does
  // not match the certificate, a flag without its partner.
  static absl::StatusOr<std::unique_ptr<TlsIdentity>> Load(const TlsFiles& files);
  ~TlsIdentity();

  TlsIdentity(const TlsIdentity&) = delete;
  TlsIdentity& operator=(const TlsIdentity&) = delete;

  // The bytes read from each file, to tell whether a later reading changed.
  const std::string& cert_pem() const { return cert_pem_; }
  const std::string& key_pem() const { return key_pem_; }
  const std::string& client_ca_pem() const { return client_ca_pem_; }
  // The leaf's subject and expiry, for logs ("CN=rectifier, expires 2027-...").
  const std::string& description() const { return description_; }

  // OpenSSL objects (x509_st*, stack_st_X509*, evp_pkey_st*, x509_store_st*;
  // opaque here so that this header needs no OpenSSL). The store is null
  // without a client CA.
  void* leaf() const { return leaf_; }
  void* chain() const { return chain_; }
  void* key() const { return key_; }
  void* client_ca_store() const { return client_ca_store_; }

 private:
  TlsIdentity() = default;

  std::string cert_pem_, key_pem_, client_ca_pem_, description_;
  void* leaf_ = nullptr;
  void* chain_ = nullptr;
  void* key_ = nullptr;
  void* client_ca_store_ = nullptr;
};

// Load() without keeping the result: the start-up check of the flags.
absl::Status ValidateTlsFiles(const TlsFiles& files);

}  // namespace rectifier::security

#endif  // RECTIFIER_SERVER_SECURITY_TLS_FILES_H_
