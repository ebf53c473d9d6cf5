#include "server/service/server_options.h"

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "server/common/cpu_info.h"
#include "server/common/status_macros.h"

namespace rectifier::service {
namespace {

constexpr char kVersion[] = "rectifier-server " RECTIFIER_VERSION;

// TLS and tokens; --tls-reload-secs is parsed into `*tls_reload_s` (seconds).
void AddSecurityFlags(CLI::App& app, ServerOptions& o, double* tls_reload_s) {
  app.add_option(
      "--tls-cert", o.tls.cert,
      "PEM certificate chain: the gRPC and metrics ports speak TLS only (with --tls-key)");
  app.add_option("--tls-key", o.tls.key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", o.tls.client_ca,
                 "PEM CA bundle: mutual TLS, clients must present a certificate it signed");
  app.add_option("--tls-reload-secs", *tls_reload_s,
                 "Seconds between checks of the TLS files for changes (rotation without restart)")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  app.add_option("--auth-tokens", o.auth_tokens_file,
                 "File of 'ROLE TOKEN' lines (ROLE infer or admin): calls need 'authorization: "
                 "Bearer TOKEN'; re-read on SIGHUP");
}

// Flags parsed into plain values first, converted into ServerOptions once
// the command line is known to parse.
struct RawFlags {
  explicit RawFlags(const ServerOptions& o)
      : exit_timeout_s(absl::ToDoubleSeconds(o.exit_timeout)),
        max_message_mb(o.max_message_bytes >> 20),
        poll_secs(absl::ToDoubleSeconds(o.repository_poll_interval)),
        tls_reload_s(absl::ToDoubleSeconds(o.tls_reload_interval)) {}

  std::string log_format = "text";
  double exit_timeout_s;
  int max_message_mb;
  double poll_secs;
  double max_connection_age_s = 0;
  double tls_reload_s;
  std::string latency_buckets;
};

void AddRepositoryFlags(CLI::App& app, ServerOptions& o, RawFlags& raw) {
  app.add_option("--model-repository", o.model_repository,
                 "Directory holding <model>/<version>/model.onnx (+ config.pbtxt)")
      ->capture_default_str();
  app.add_option("--model-control-mode", o.model_control_mode,
                 "none: load every model at start; poll: also reload changes on disk; "
                 "explicit: load only --load-model names and API requests")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "poll", "explicit"}));
  app.add_option("--repository-poll-secs", raw.poll_secs,
                 "Seconds between repository scans in poll mode")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--load-model", o.load_models,
                 "Model to load at start in explicit mode (repeatable)");
}

// Addresses, logging, draining, threads and metrics.
void AddServingFlags(CLI::App& app, ServerOptions& o, RawFlags& raw) {
  app.add_option("--grpc-address", o.grpc_address,
                 "host:port (or unix:PATH) for the gRPC services (KServe v2, vision, health, "
                 "reflection)")
      ->capture_default_str();
  app.add_option("--http-address", o.http_address,
                 "host:port for the KServe v2 HTTP/REST endpoint (plaintext); empty disables it; "
                 "off by default with --tls-cert")
      ->capture_default_str();
  app.add_option("--http-threads", o.http_threads,
                 "HTTP connections served at once (each inference holds one until answered)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--metrics-address", o.metrics_address,
                 "host:port for the Prometheus /metrics endpoint; empty disables it")
      ->capture_default_str();
  app.add_option("--log-level", o.logging.level, "trace, debug, info, warn, error, critical or off")
      ->capture_default_str();
  app.add_option("--log-format", raw.log_format, "text or json (one JSON object per line)")
      ->capture_default_str();
  app.add_option("--exit-timeout", raw.exit_timeout_s,
                 "Seconds in-flight requests may take to finish after SIGTERM/SIGINT")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--intra-op-threads", o.intra_op_threads,
                 absl::StrCat("OpenMP threads per model instance; 0 = available CPUs (",
                              common::AvailableCpus(), " here) / instances"))
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--conv-layout", o.conv_layout,
                 "Convolution activation layout: tuned (time the candidates per plan when it "
                 "compiles), any (oneDNN's choice), blocked8, blocked16 or nhwc; a model's "
                 "parameters { key: \"conv_layout\" } wins")
      ->capture_default_str()
      ->check(CLI::IsMember({"tuned", "any", "blocked8", "blocked16", "nhwc"}));
  app.add_flag("--allow-client-shm", o.allow_client_shm,
               "Let clients on this host pass tensors through POSIX shared memory (Triton's "
               "system shared memory extension: SystemSharedMemoryRegister, then "
               "shared_memory_region parameters); any client may then make the server open "
               "shm objects its user can read and write");
  app.add_option("--tuning-cache-dir", o.tuning_cache_dir,
                 "Directory keeping tuned conv layouts (a file per model, CPU and thread "
                 "count) so a restart skips the timing; empty: tuned at every load");
  app.add_option("--grpc-max-connection-age-secs", raw.max_connection_age_s,
                 "Close client connections after this many seconds (0 = never), so clients "
                 "spread over replicas behind an L4 balancer")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--metrics-latency-buckets", raw.latency_buckets,
                 "Latency histogram buckets in seconds, comma-separated and ascending "
                 "(default 0.0005,0.001,...,10)");
}

// The image worker pool, image memory and message size.
void AddLimitFlags(CLI::App& app, ServerOptions& o, RawFlags& raw) {
  app.add_option("--image-threads", o.image_threads,
                 "Image workers (decode, preprocess, postprocess) for the vision API and BYTES "
                 "inputs; 0 = available CPUs")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--image-queue", o.image_queue,
                 "Images waiting for a worker beyond which new ones are refused (UNAVAILABLE)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--image-memory-mb", o.image_memory_mb,
                 "Memory images being decoded and preprocessed may hold at once, each charged "
                 "its worst case from its header; beyond it images are refused "
                 "(RESOURCE_EXHAUSTED); 0 = unbounded")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--max-message-mb", raw.max_message_mb,
                 "Largest gRPC request or response in MiB (large images need more)")
      ->capture_default_str()
      ->check(CLI::Range(1, 2047));
}

absl::StatusOr<std::vector<double>> ParseLatencyBuckets(const std::string& text) {
  std::vector<double> buckets;
  if (text.empty()) return buckets;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double bound = 0;
    if (!absl::SimpleAtod(part, &bound) || !(bound > 0) ||
        (!buckets.empty() && bound <= buckets.back())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--metrics-latency-buckets: '", part,
          "' is not a positive number above the previous bucket (seconds, ascending)"));
    }
    buckets.push_back(bound);
  }
  return buckets;
}

// Checks what CLI11 cannot and converts `raw` into `o`.
absl::Status FinishOptions(const RawFlags& raw, ServerOptions& o) {
  if (absl::Status s = common::ParseLogFormat(raw.log_format, &o.logging.format); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log-format: ", s.message()));
  }
  if (absl::Status s = common::ValidateLogLevel(o.logging.level); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log-level: ", s.message()));
  }
  if (o.grpc_address.empty()) return absl::InvalidArgumentError("--grpc-address is empty");
  if (o.model_repository.empty()) {
    return absl::InvalidArgumentError("--model-repository is empty");
  }
  ASSIGN_OR_RETURN(o.latency_buckets, ParseLatencyBuckets(raw.latency_buckets));
  o.exit_timeout = absl::Seconds(raw.exit_timeout_s);
  o.repository_poll_interval = absl::Seconds(raw.poll_secs);
  o.max_connection_age = absl::Seconds(raw.max_connection_age_s);
  o.max_message_bytes = raw.max_message_mb << 20;
  o.tls_reload_interval = absl::Seconds(raw.tls_reload_s);
  if (o.tls.enabled() && (o.tls.cert.empty() || o.tls.key.empty())) {
    return absl::InvalidArgumentError(
        o.tls.cert.empty()
            ? absl::StrCat(o.tls.key.empty() ? "--tls-client-ca" : "--tls-key", " needs --tls-cert")
            : "--tls-cert needs --tls-key");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ParsedFlags> ParseServerFlags(const std::vector<std::string>& args) {
  ParsedFlags parsed;
  ServerOptions& o = parsed.options;
  RawFlags raw(o);
  CLI::App app{"Rectifier: gRPC inference server for CNN image models (KServe v2 / Triton API).",
               "rectifier-server"};
  app.set_version_flag("--version", std::string(kVersion));
  AddRepositoryFlags(app, o, raw);
  AddServingFlags(app, o, raw);
  AddLimitFlags(app, o, raw);
  AddSecurityFlags(app, o, &raw.tls_reload_s);

  std::vector<std::string> reversed(args.rbegin(), args.rend());
  if (!reversed.empty()) reversed.pop_back();  // program name
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    parsed.exit_now = true;
    parsed.output = app.help();
    return parsed;
  } catch (const CLI::CallForVersion&) {
    parsed.exit_now = true;
    parsed.output = absl::StrCat(kVersion, "\n");
    return parsed;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(absl::StrReplaceAll(e.what(), {{"\n", " "}}));
  }
  RETURN_IF_ERROR(FinishOptions(raw, o));
  // The HTTP endpoint has no TLS: with --tls-cert it is off unless asked
  // for, and then the server refuses to start (GrpcServer::Create).
  if (o.tls.enabled() && app.count("--http-address") == 0) {
    o.http_address.clear();
    o.http_off_for_tls = true;
  }
  return parsed;
}

}  // namespace rectifier::service
