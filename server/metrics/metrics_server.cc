#include "server/metrics/metrics_server.h"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"
#include "server/metrics/https_endpoint.h"
#include "server/metrics/process_collector.h"
#include "server/security/tls_context.h"

namespace rectifier::metrics {
namespace {}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(
    const MetricsServerOptions& options) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::make_shared<prometheus::Registry>();
  server->process_collector_ = std::make_shared<ProcessCollector>();

  auto& build_info = prometheus::BuildGauge()
                         .Name("rectifier_build_info")
                         .Help("Build of this server (value is always 1).")
                         .Register(*server->registry_);
  build_info.Add(options.build_labels).Set(1);

  if (options.address.empty()) return server;
  if (absl::Status status = SplitHostPort(options.address).status(); !status.ok()) return status;
  {
    absl::MutexLock lock(&server->collectables_mu_);
    server->collectables_ = {server->registry_, server->process_collector_};
  }
  if (options.tls.enabled()) {
    auto tls = security::TlsContext::Create(options.tls, options.tls_reload_interval);
    if (!tls.ok()) return tls.status();
    server->tls_ = *std::move(tls);
    HttpsEndpointOptions https;
    https.address = options.address;
    https.threads = options.http_threads;
    https.request_timeout_ms = std::max(options.request_timeout_ms, 1);
    https.tls = server->tls_.get();
    https.metrics_body = [raw = server.get()] {
      std::vector<prometheus::MetricFamily> families;
      for (const auto& weak : raw->Collectables()) {
        if (auto collectable = weak.lock()) {
          std::vector<prometheus::MetricFamily> collected = collectable->Collect();
          families.insert(families.end(), std::make_move_iterator(collected.begin()),
                          std::make_move_iterator(collected.end()));
        }
      }
      return prometheus::TextSerializer().Serialize(families);
    };
    auto endpoint = HttpsEndpoint::Create(std::move(https));
    if (!endpoint.ok()) return endpoint.status();
    server->https_ = *std::move(endpoint);
    server->port_ = server->https_->port();
    return server;
  }
  try {
    // civetweb wants "[::]:port" for IPv6 and "host:port" otherwise; both
    // are what users write, so the address passes through unchanged.
    server->exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", options.address,                                //
        "num_threads", std::to_string(std::max(options.http_threads, 1)),  //
        "request_timeout_ms", std::to_string(std::max(options.request_timeout_ms, 1)),
        "enable_keep_alive", "no"});
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on '", options.address, "': ", e.what()));
  }
  server->exposer_->RegisterCollectable(server->registry_);
  server->exposer_->RegisterCollectable(server->process_collector_);
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? 0 : ports.front();
  return server;
}

std::vector<std::weak_ptr<prometheus::Collectable>> MetricsServer::Collectables() const {
  absl::MutexLock lock(&collectables_mu_);
  return collectables_;
}

void MetricsServer::AddCollectable(const std::weak_ptr<prometheus::Collectable>& collectable) {
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
  absl::MutexLock lock(&collectables_mu_);
  collectables_.push_back(collectable);
}

MetricsServer::~MetricsServer() = default;

}  // namespace rectifier::metrics
