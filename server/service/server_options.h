// Command-line flags of rectifier-server, parsed into ServerOptions.
#ifndef RECTIFIER_SERVER_SERVICE_SERVER_OPTIONS_H_
#define RECTIFIER_SERVER_SERVICE_SERVER_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/logging.h"
#include "server/security/tls_files.h"

namespace rectifier::service {

struct ServerOptions {
  std::string model_repository = "models";
  std::string model_control_mode = "none";  // none | poll | explicit
  absl::Duration repository_poll_interval = absl::Seconds(15);
  std::vector<std::string> load_models;  // explicit mode: loaded at start
  std::string grpc_address = "0.0.0.0:8001";
  // KServe v2 HTTP/REST; empty: none. Cleared with TLS unless given.
  std::string http_address = "0.0.0.0:8000";
  bool http_off_for_tls = false;  // cleared for that reason (logged at start)
  int http_threads = 16;
  std::string metrics_address = "0.0.0.0:8002";  // empty: no metrics endpoint
  common::LoggingOptions logging;
  // Bound on draining at shutdown: in-flight calls get this long to finish.
  absl::Duration exit_timeout = absl::Seconds(30);
  // OpenMP threads per model instance; 0 = available CPUs / instances.
  int intra_op_threads = 0;
  // Convolution activation layout for every model ("tuned": each plan times
  // the candidates when it compiles); a config's parameters { key:
  // "conv_layout" } wins. Tuned choices are kept in tuning_cache_dir when set.
  std::string conv_layout = "tuned";
  std::string tuning_cache_dir;
  // Triton's system shared memory extension for clients on this host
  // (SystemSharedMemoryRegister ...); off unless asked for.
  bool allow_client_shm = false;
  // Connections older than this get a GOAWAY (clients reconnect, so a load
  // balancer over several replicas sees new connections); zero = never.
  absl::Duration max_connection_age = absl::ZeroDuration();
  // Largest gRPC message accepted or sent, in bytes.
  int max_message_bytes = 256 << 20;
  // Latency histogram buckets in seconds, ascending; empty = the defaults
  // (0.5 ms .. 10 s, docs/METRICS.md).
  std::vector<double> latency_buckets;
  // Image worker pool (see GrpcServerOptions).
  int image_threads = 0;
  int image_queue = 1024;
  // Memory that images being decoded and preprocessed may hold at once
  // (each charged its worst case); 0 = unbounded.
  int64_t image_memory_mb = 1024;
  // TLS for the gRPC and metrics ports (both, or neither); files checked
  // for changes every tls_reload_interval.
  security::TlsFiles tls;
  absl::Duration tls_reload_interval = absl::Seconds(60);
  // Bearer tokens with roles ("ROLE TOKEN" lines); empty: no tokens needed.
  std::string auth_tokens_file;
};

// What the command line asks for: run the server, or print text and exit
// (--help, --version) with exit code 0.
struct ParsedFlags {
  ServerOptions options;
  bool exit_now = false;
  std::string output;  // help or version text when exit_now
};

// Parses argv (argv[0] is the program name). Errors are INVALID_ARGUMENT with
// a one-line message naming the flag ("unknown flag --foo", "--log-level:
// unknown log level 'loud' ...").
absl::StatusOr<ParsedFlags> ParseServerFlags(const std::vector<std::string>& args);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_SERVER_OPTIONS_H_
