// An OpenSSL server context whose identity follows its files: the TLS side of
// an HTTP server (the metrics endpoint) with certificate rotation.
#ifndef RECTIFIER_SERVER_SECURITY_TLS_CONTEXT_H_
#define RECTIFIER_SERVER_SECURITY_TLS_CONTEXT_H_

#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/security/tls_files.h"

struct ssl_st;

namespace rectifier::security {

// Configures an HTTP server's SSL_CTX (TLS 1.2 or later) to take its
// certificate, key and client CA from the current TlsIdentity at each
// handshake, so that after Reload() new connections use the new files and
// open ones keep theirs. With a client CA, a client must present a
// certificate it signed.
// With a reload interval, a thread calls Reload() that often and logs what
// changed or why the new files were refused. Thread-safe.
class TlsContext {
 public:
  // Errors: those of TlsIdentity::Load; INTERNAL if OpenSSL fails.
  static absl::StatusOr<std::unique_ptr<TlsContext>> Create(
      const TlsFiles& files, absl::Duration reload_interval = absl::ZeroDuration());
  ~TlsContext();

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Sets up `ssl_ctx` (an SSL_CTX*, e.g. the one civetweb's init_ssl
  // callback hands over). REQUIRES: this object outlives every connection
  // made with it (the context refers to it).
  void Configure(void* ssl_ctx);

  // Reads the files again. Returns true if their contents changed and the new
  // identity is in use, false if nothing changed; on an error (a half-written
  // pair, a key that does not match) the current identity stays.
  absl::StatusOr<bool> Reload();

  // The identity handshakes use now.
  std::shared_ptr<const TlsIdentity> identity() const;

 private:
  TlsContext() = default;
  static int SelectCertificate(::ssl_st* ssl, void* arg);

  void ReloadLoop(absl::Duration interval);

  TlsFiles files_;
  absl::Notification stop_;
  std::thread reloader_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TlsIdentity> identity_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::security

#endif  // RECTIFIER_SERVER_SECURITY_TLS_CONTEXT_H_
