// The process's one Prometheus registry and its HTTP endpoint (/metrics).
#ifndef RECTIFIER_SERVER_METRICS_METRICS_SERVER_H_
#define RECTIFIER_SERVER_METRICS_METRICS_SERVER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/registry.h"
#include "server/security/tls_files.h"

namespace rectifier::security {
class TlsContext;
}  // namespace rectifier::security

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace rectifier::metrics {

class HttpsEndpoint;
class ProcessCollector;

struct MetricsServerOptions {
  // "host:port"; port 0 binds a free port (see port()). Empty: no HTTP
  // endpoint, the registry still works (tests, embedding).
  std::string address = "0.0.0.0:8002";
  // Labels of the constant rectifier_build_info gauge (value 1).
  std::map<std::string, std::string> build_labels;
  // civetweb serves one connection per worker thread, and a worker waits for
  // a connection's request for up to request_timeout_ms (civetweb's default:
  // 30 s), so N idle connections hold N workers. With the defaults a scrape
  // is answered at once while up to http_threads - 1 connections sit idle,
  // and within one request timeout per http_threads further ones. The same
  // timeout bounds writing the response to a client that does not read.
  // Keep-alive is off: each scrape uses its own connection, so no worker
  // waits between scrapes. Fixed (no flags; Triton has none either).
  int http_threads = 8;
  int request_timeout_ms = 3000;
  // Set: /metrics is served over HTTPS only, and with a client CA only to
  // clients presenting a certificate it signed. The files are checked for
  // changes every tls_reload_interval; new connections use the new ones.
  security::TlsFiles tls;
  absl::Duration tls_reload_interval = absl::Seconds(60);
};

// Owns the registry every module registers its families in, and serves it
// together with process metrics. Thread-safe. Stopping the HTTP server
// (destructor) takes up to ~2 s with prometheus-cpp's civetweb (longer while
// a worker is still waiting out a request timeout).
class MetricsServer {
 public:
  // Errors: INVALID_ARGUMENT for a malformed address, UNAVAILABLE when the
  // address cannot be bound (e.g. port in use), FAILED_PRECONDITION for TLS
  // files that cannot be used.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Create(const MetricsServerOptions& options);
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  prometheus::Registry& registry() { return *registry_; }
  const std::shared_ptr<prometheus::Registry>& shared_registry() const { return registry_; }
  // Serves `collectable` too (e.g. ServerMetrics::scrape_time_gauges()); a
  // no-op without an HTTP endpoint.
  void AddCollectable(const std::weak_ptr<prometheus::Collectable>& collectable);

  // The bound port, or 0 without an HTTP endpoint.
  int port() const { return port_; }

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<ProcessCollector> process_collector_;
  // What /metrics serves over HTTPS (the exposer keeps its own list).
  std::vector<std::weak_ptr<prometheus::Collectable>> Collectables() const;

  mutable absl::Mutex collectables_mu_;
  std::vector<std::weak_ptr<prometheus::Collectable>> collectables_
      ABSL_GUARDED_BY(collectables_mu_);
  // Without TLS civetweb serves /metrics (the exposer); with TLS our HTTPS
  // endpoint does, and the TLS context must outlive its connections.
  std::unique_ptr<security::TlsContext> tls_;
  std::unique_ptr<HttpsEndpoint> https_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace rectifier::metrics

#endif  // RECTIFIER_SERVER_METRICS_METRICS_SERVER_H_
