// rectifier-server: parses flags, starts the metrics endpoint and the gRPC
// services, and drains gracefully on SIGTERM/SIGINT.
#include <grpc/support/log.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/common/cpu_info.h"
#include "server/common/logging.h"
#include "server/common/process_env.h"
#include "server/common/thread_name.h"
#include "server/imaging/decode.h"
#include "server/metrics/https_endpoint.h"
#include "server/metrics/metrics_server.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_repository.h"
#include "server/security/tls_files.h"
#include "server/security/tokens.h"
#include "server/service/grpc_server.h"
#include "server/service/server_options.h"
#include "spdlog/spdlog.h"

namespace {

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;
// After SIGTERM, the drain gets --exit-timeout plus this, then the process exits.
constexpr absl::Duration kDrainGrace = absl::Seconds(5);

// gRPC's own log lines go through spdlog at debug level, so a failed bind is
// reported once, by us, as one line.
void RouteGrpcLog(gpr_log_func_args* args) {
  spdlog::debug("grpc {}:{} {}", args->file, args->line, args->message);
}

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "rectifier-server: error: %s\n", message.c_str());
  return code;
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

using rectifier::service::ServerOptions;

// What a running server is made of. Declared so that destruction runs in the
// order shutdown needs: gRPC server, tokens, repository, metrics families,
// metrics endpoint.
struct Server {
  std::unique_ptr<rectifier::metrics::MetricsServer> metrics;
  std::unique_ptr<rectifier::metrics::ServerMetrics> server_metrics;
  std::unique_ptr<rectifier::repository::ModelRepository> repository;
  std::unique_ptr<rectifier::security::TokenStore> tokens;
  std::unique_ptr<rectifier::service::GrpcServer> grpc;
};

// Blocks the shutdown signals in every thread created from here on; the
// main thread collects them with sigwait (WaitForStopSignal).
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // re-reads --auth-tokens
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// Logging, then everything that must be usable before any port opens: the
// repository folder, the control mode, the TLS files and the tokens (loaded
// into `server`). Returns 0, or the exit code once the error is printed.
int CheckStartup(const ServerOptions& options, Server& server,
                 rectifier::repository::ControlMode* mode) {
  if (absl::Status s = rectifier::common::SetupLogging(options.logging); !s.ok()) {
    return Fail(kExitUsage, std::string(s.message()));
  }
  gpr_set_log_function(RouteGrpcLog);
  if (!IsDirectory(options.model_repository)) {
    return Fail(kExitUsage, absl::StrCat("model repository '", options.model_repository,
                                         "' is not a directory"));
  }
  const auto control_mode = rectifier::repository::ParseControlMode(options.model_control_mode);
  if (!control_mode.ok()) return Fail(kExitUsage, std::string(control_mode.status().message()));
  *mode = *control_mode;
  // Unusable security files stop the start with one line, before any port opens.
  if (options.tls.enabled()) {
    if (absl::Status s = rectifier::security::ValidateTlsFiles(options.tls); !s.ok()) {
      return Fail(kExitUsage, std::string(s.message()));
    }
  }
  // The ports bind after the models compile (minutes); a busy one fails now.
  for (const auto& [address, flag] : {std::pair{options.grpc_address, "--grpc-address"},
                                      std::pair{options.http_address, "--http-address"},
                                      std::pair{options.metrics_address, "--metrics-address"}}) {
    if (address.empty()) continue;
    if (absl::Status s = rectifier::service::CheckAddressFree(address, flag); !s.ok()) {
      return Fail(kExitRuntimeError, std::string(s.message()));
    }
  }
  if (!options.auth_tokens_file.empty()) {
    auto loaded = rectifier::security::TokenStore::Load(options.auth_tokens_file);
    if (!loaded.ok()) return Fail(kExitUsage, std::string(loaded.status().message()));
    server.tokens = std::move(loaded).value();
  }
  return 0;
}

// The /metrics endpoint and the per-model metric families (none without
// --metrics-address). Returns 0 or the exit code.
int StartMetrics(const ServerOptions& options, Server& server) {
  if (options.metrics_address.empty()) return 0;
  rectifier::metrics::MetricsServerOptions metrics_options;
  metrics_options.address = options.metrics_address;
  metrics_options.tls = options.tls;
  metrics_options.tls_reload_interval = options.tls_reload_interval;
  metrics_options.build_labels = {{"version", RECTIFIER_VERSION},
                                  {"git_commit", RECTIFIER_GIT_COMMIT},
                                  {"build_type", RECTIFIER_BUILD_TYPE},
                                  {"compiler", __VERSION__}};
  auto created = rectifier::metrics::MetricsServer::Create(metrics_options);
  if (!created.ok()) {
    return Fail(absl::IsFailedPrecondition(created.status()) ? kExitUsage : kExitRuntimeError,
                std::string(created.status().message()));
  }
  server.metrics = std::move(created).value();
  rectifier::metrics::MetricsOptions histogram_options;
  if (!options.latency_buckets.empty()) histogram_options.latency_buckets = options.latency_buckets;
  server.server_metrics = std::make_unique<rectifier::metrics::ServerMetrics>(
      server.metrics->registry(), histogram_options);
  server.metrics->AddCollectable(server.server_metrics->scrape_time_gauges());
  return 0;
}

// Loads the models, then opens the gRPC port. A model that fails is
// reported and the server still starts (ServerReady stays false until it is
// fixed). Returns 0 or the exit code.
int StartServing(const ServerOptions& options, rectifier::repository::ControlMode mode,
                 Server& server) {
  rectifier::repository::RepositoryOptions repository_options;
  repository_options.metrics = server.server_metrics.get();
  repository_options.root = options.model_repository;
  repository_options.mode = mode;
  repository_options.poll_interval = options.repository_poll_interval;
  repository_options.startup_models = options.load_models;
  repository_options.intra_op_threads = options.intra_op_threads;
  rectifier::engine::ParseConvLayout(options.conv_layout, &repository_options.conv_layout);
  repository_options.tuning_cache_dir = options.tuning_cache_dir;
  repository_options.drain_timeout = options.exit_timeout;
  auto repository = rectifier::repository::ModelRepository::Create(repository_options);
  if (!repository.ok()) return Fail(kExitRuntimeError, std::string(repository.status().message()));
  server.repository = std::move(repository).value();

  rectifier::service::GrpcServerOptions grpc_options;
  grpc_options.address = options.grpc_address;
  grpc_options.http_address = options.http_address;
  grpc_options.http_threads = options.http_threads;
  grpc_options.max_message_bytes = options.max_message_bytes;
  grpc_options.max_connection_age = options.max_connection_age;
  grpc_options.image_threads = options.image_threads;
  grpc_options.image_queue = options.image_queue;
  grpc_options.image_memory_bytes = options.image_memory_mb << 20;
  grpc_options.allow_client_shm = options.allow_client_shm;
  grpc_options.tls = options.tls;
  grpc_options.tls_reload_interval = options.tls_reload_interval;
  grpc_options.tokens = server.tokens.get();
  auto grpc = rectifier::service::GrpcServer::Create(grpc_options, server.repository.get());
  if (!grpc.ok()) {
    return Fail(absl::IsFailedPrecondition(grpc.status()) ? kExitUsage : kExitRuntimeError,
                std::string(grpc.status().message()));
  }
  server.grpc = std::move(grpc).value();
  return 0;
}

// The host of a listening address as a client would type it: a wildcard
// address means this machine.
std::string LocalHost(const std::string& address) {
  const auto split = rectifier::metrics::SplitHostPort(address);
  if (!split.ok() || split->host.empty() || split->host == "0.0.0.0" || split->host == "::") {
    return "localhost";
  }
  return split->host.find(':') != std::string::npos ? "[" + split->host + "]" : split->host;
}

// What main set up for the process before any thread started.
struct ProcessSettings {
  bool heap_only = false;           // common::ReuseLargeAllocations took effect
  bool deadlock_detection = false;  // common::ConfigureMutexDeadlockDetection left it on
};

void LogStarted(const ServerOptions& options, const Server& server,
                const ProcessSettings& process) {
  // A unix-domain socket has no port (gRPC reports 1 for it): its address.
  const bool unix_socket = absl::StartsWith(options.grpc_address, "unix:") ||
                           absl::StartsWith(options.grpc_address, "unix-abstract:");
  const std::string grpc_at =
      unix_socket ? options.grpc_address
                  : absl::StrCat("port ", server.grpc->port(), " (", options.grpc_address, ")");
  spdlog::info(
      "rectifier-server {} serving gRPC on {}, HTTP on port {}, metrics on port {}, "
      "model repository '{}', {} CPUs",
      RECTIFIER_VERSION, grpc_at, server.grpc->http_port(),
      server.metrics ? server.metrics->port() : 0, options.model_repository,
      rectifier::common::AvailableCpus());
  if (server.grpc->http_port() != 0) {
    spdlog::info("KServe HTTP/REST at http://{}:{}/v2 (health: /v2/health/ready)",
                 LocalHost(options.http_address), server.grpc->http_port());
  }
  if (server.metrics != nullptr && server.metrics->port() != 0) {
    spdlog::info("metrics at {}://{}:{}/metrics", options.tls.enabled() ? "https" : "http",
                 LocalHost(options.metrics_address), server.metrics->port());
  }
  if (options.http_off_for_tls) {
    spdlog::info(
        "HTTP/REST is off: it has no TLS and --tls-cert is set (--http-address turns "
        "it on for a TLS-terminating proxy in front)");
  }
  // One summary of what loaded, with the reason for each failure.
  int ready = 0;
  int not_loaded = 0;  // explicit mode: in the repository, not asked for
  std::vector<std::string> failed;
  for (const auto& entry : server.repository->Index()) {
    if (entry.state == "READY") {
      ++ready;
    } else if (entry.reason == "not loaded") {
      ++not_loaded;
    } else if (entry.state == "UNAVAILABLE" && !entry.reason.empty()) {
      failed.push_back(absl::StrCat(entry.name, " (", entry.reason, ")"));
    }
  }
  const std::string unloaded =
      not_loaded > 0 ? absl::StrCat(", ", not_loaded, " in the repository not loaded") : "";
  if (failed.empty()) {
    spdlog::info("models: {} ready{}", ready, unloaded);
  } else {
    spdlog::warn("models: {} ready{}, {} failed: {}", ready, unloaded, failed.size(),
                 absl::StrJoin(failed, "; "));
  }
  const rectifier::security::TokenStore* tokens = server.tokens.get();
  spdlog::info("security: {}, {}",
               !options.tls.enabled()          ? "plaintext (no --tls-cert)"
               : options.tls.client_ca.empty() ? "TLS"
                                               : "mutual TLS (client certificates required)",
               tokens != nullptr
                   ? absl::StrCat(tokens->size(), " tokens from '", tokens->path(), "'")
                   : std::string("no tokens (no --auth-tokens)"));
  const auto env = rectifier::common::EnvOrUnset;
  spdlog::info(
      "runtime: OMP_WAIT_POLICY={} GOMP_SPINCOUNT={}, malloc {}, mutex deadlock detection {}",
      env("OMP_WAIT_POLICY"), env("GOMP_SPINCOUNT"),
      process.heap_only ? "from the heap only (large buffers reused)"
                        : "as configured by GLIBC_TUNABLES or glibc",
      process.deadlock_detection ? "on" : "off");
}

// Serves until SIGTERM or SIGINT (returned); SIGHUP re-reads the tokens.
int WaitForStopSignal(const sigset_t& signals, rectifier::security::TokenStore* tokens) {
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    if (tokens == nullptr) {
      spdlog::info("SIGHUP: nothing to re-read (no --auth-tokens)");
    } else if (absl::Status s = tokens->Reload(); !s.ok()) {
      spdlog::error("SIGHUP: tokens not re-read, the previous ones stay in use: {}",
                    std::string(s.message()));
    } else {
      spdlog::info("SIGHUP: {} tokens re-read from '{}'", tokens->size(), tokens->path());
    }
  }
  return signal_number;
}

void DrainAndStop(const ServerOptions& options, int signal_number, Server& server) {
  spdlog::info("received {}, draining (exit timeout {})", strsignal(signal_number),
               absl::FormatDuration(options.exit_timeout));
  const absl::Time start = absl::Now();
  // gRPC stops taking calls and waits for in-flight ones while the models'
  // queues drain, both within the same budget; whatever is still queued at
  // the deadline is answered UNAVAILABLE, which lets the last calls finish.
  const absl::Time deadline = absl::Now() + options.exit_timeout;
  // The drain is bounded no matter what: a computation that outlives the
  // exit timeout, or a call that never ends, must not keep the process (and
  // the pod's termination) waiting. Past the timeout plus a grace period for
  // the last answers to go out, the process exits without further cleanup.
  std::thread watchdog([deadline] {
    absl::SleepFor(deadline + kDrainGrace - absl::Now());
    spdlog::error("drain did not finish within the exit timeout + {}; exiting now",
                  absl::FormatDuration(kDrainGrace));
    spdlog::shutdown();
    std::_Exit(kExitRuntimeError);
  });
  watchdog.detach();
  // New requests are refused before readiness turns false (in Drain): a
  // client that sees the server not ready must not get a call computed.
  server.repository->BeginShutdown();
  std::thread drain_models(
      [repository = server.repository.get(), deadline] { repository->Shutdown(deadline); });
  server.grpc->Drain(options.exit_timeout);
  drain_models.join();
  server.grpc.reset();
  server.tokens.reset();
  server.repository.reset();
  server.server_metrics.reset();
  server.metrics.reset();
  spdlog::info("stopped in {}", absl::FormatDuration(absl::Now() - start));
  spdlog::shutdown();
}

int Run(const ServerOptions& options, const ProcessSettings& process) {
  const sigset_t signals = BlockShutdownSignals();
  Server server;
  rectifier::repository::ControlMode mode = rectifier::repository::ControlMode::kNone;
  if (const int code = CheckStartup(options, server, &mode); code != 0) return code;
  if (const int code = StartMetrics(options, server); code != 0) return code;
  if (const int code = StartServing(options, mode, server); code != 0) return code;
  LogStarted(options, server, process);
  DrainAndStop(options, WaitForStopSignal(signals, server.tokens.get()), server);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  rectifier::common::ReexecWithBoundedOpenMpSpinning(argv);
  rectifier::common::NameThreadAfterExecutable();  // not "exe" after the re-exec
  ProcessSettings process;
  process.heap_only = rectifier::common::ReuseLargeAllocations();
  auto parsed = rectifier::service::ParseServerFlags(std::vector<std::string>(argv, argv + argc));
  if (!parsed.ok()) {
    return Fail(kExitUsage, absl::StrCat(parsed.status().message(), " (see --help)"));
  }
  if (parsed->exit_now) {
    std::fputs(parsed->output.c_str(), stdout);
    return 0;
  }
  // Before any thread starts: setenv is not safe against concurrent getenv.
  rectifier::imaging::InstallDecoderPixelLimit();
  process.deadlock_detection = rectifier::common::ConfigureMutexDeadlockDetection();
  return Run(parsed->options, process);
}
