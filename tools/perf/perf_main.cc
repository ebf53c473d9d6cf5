// rectifier-perf: load generator for KServe v2 / Triton gRPC servers
// (perf_analyzer's role): closed-loop concurrency sweeps and open-loop
// request rates, measured in windows until stable. Drives KServe ModelInfer
// (random or file tensors, or encoded images as a BYTES input) and the
// vision API's Classify and Detect (image files).
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc_service.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "rectifier/v1/vision.grpc.pb.h"
#include "server/common/process_env.h"
#include "server/common/status_macros.h"
#include "server/engine/tensor.h"
#include "tools/client/connection.h"
#include "tools/client/tensor_file.h"
#include "tools/perf/async_loop.h"
#include "tools/perf/http_client.h"
#include "tools/perf/input_data.h"
#include "tools/perf/load_stats.h"
#include "tools/perf/perf_targets.h"

namespace rectifier::tools {
namespace {

using inference::GRPCInferenceService;

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

absl::StatusOr<std::vector<double>> ParseSweep(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  double start = 0, end = 0;
  if (parts.empty() || !absl::SimpleAtod(parts[0], &start) || start <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bad sweep '", text, "'"));
  }
  if (parts.size() == 1) return std::vector<double>{start};
  if (parts.size() != 3 || !absl::SimpleAtod(parts[1], &end) || end < start ||
      parts[2].size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad sweep '", text, "' (use a:b:xF or a:b:+S)"));
  }
  double step = 0;
  if (!absl::SimpleAtod(parts[2].substr(1), &step) || (parts[2][0] == 'x'   ? step <= 1
                                                       : parts[2][0] == '+' ? step <= 0
                                                                            : true)) {
    return absl::InvalidArgumentError(absl::StrCat("bad sweep step '", parts[2], "'"));
  }
  std::vector<double> levels;
  for (double v = start; v <= end + 1e-9 && levels.size() < 64;
       v = parts[2][0] == 'x' ? v * step : v + step) {
    levels.push_back(v);
  }
  return levels;
}

// The first failed status of each code over the run, so that what to fix
// (a TLS or token problem) is printed once, not per request.
class FirstErrors {
 public:
  void Record(const grpc::Status& status) {
    absl::MutexLock lock(&mu_);
    first_.emplace(status.error_code(), status);
  }
  std::vector<grpc::Status> Statuses() {
    absl::MutexLock lock(&mu_);
    std::vector<grpc::Status> statuses;
    for (const auto& [code, status] : first_) statuses.push_back(status);
    return statuses;
  }

 private:
  absl::Mutex mu_;
  std::map<grpc::StatusCode, grpc::Status> first_ ABSL_GUARDED_BY(mu_);
};

// One answered call: its latency when it succeeded, else its code (and the
// first status of that code).
void RecordCall(LoadStats& stats, FirstErrors& first_errors, const grpc::Status& status,
                double latency_ms) {
  if (status.ok()) {
    stats.RecordOk(latency_ms);
  } else {
    stats.RecordError(CodeName(status.error_code()));
    first_errors.Record(status);
  }
}

// Server-side totals from ModelStatistics (zeros if unsupported).
struct ServerTotals {
  bool available = false;
  uint64_t count = 0, queue_ns = 0, compute_ns = 0;
};

ServerTotals ReadServerTotals(GRPCInferenceService::Stub& stub, const Options& o) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  inference::ModelStatisticsRequest request;
  request.set_name(o.model);
  request.set_version(o.version);
  inference::ModelStatisticsResponse response;
  ServerTotals totals;
  if (!stub.ModelStatistics(&context, request, &response).ok()) return totals;
  totals.available = true;
  for (const auto& s : response.model_stats()) {
    totals.count += s.inference_stats().success().count();
    totals.queue_ns += s.inference_stats().queue().ns();
    totals.compute_ns += s.inference_stats().compute_input().ns() +
                         s.inference_stats().compute_infer().ns() +
                         s.inference_stats().compute_output().ns();
  }
  return totals;
}

// Server-side totals over HTTP (GET .../stats); zeros if unavailable.
ServerTotals ReadHttpServerTotals(const std::string& host, const std::string& port,
                                  const Options& o) {
  HttpClient client(host, port);
  ServerTotals totals;
  const absl::StatusOr<HttpResponse> response =
      client.Send("GET", ModelPath(o, "/v2") + "/stats", TokenHeader(o), "", absl::Seconds(5));
  if (!response.ok() || response->status != 200) return totals;
  const nlohmann::json j = nlohmann::json::parse(response->body, nullptr, false);
  if (!j.is_object() || !j.contains("model_stats") || !j["model_stats"].is_array()) return totals;
  totals.available = true;
  const auto ns = [](const nlohmann::json& stats, const char* name, const char* field) {
    const auto it = stats.find(name);
    if (it == stats.end() || !it->is_object()) return uint64_t{0};
    return it->value(field, uint64_t{0});
  };
  for (const nlohmann::json& s : j["model_stats"]) {
    const nlohmann::json stats = s.value("inference_stats", nlohmann::json::object());
    totals.count += ns(stats, "success", "count");
    totals.queue_ns += ns(stats, "queue", "ns");
    totals.compute_ns += ns(stats, "compute_input", "ns") + ns(stats, "compute_infer", "ns") +
                         ns(stats, "compute_output", "ns");
  }
  return totals;
}

struct LevelResult {
  std::string mode;
  double level = 0;
  WindowSummary summary;  // merged over the stable windows
  bool stable = false;
  std::string unstable_reason;  // UnstableReason when not stable
  ServerTotals before, after;
};

// Runs windows until stable (or the window/request bounds) while `load` runs.
LevelResult Measure(const Options& o, LoadStats& stats, std::atomic<int64_t>& sent) {
  LevelResult result;
  std::vector<WindowSummary> windows;
  absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(std::min(o.window_s, 1.0)));
  // Discard the ramp-up, unless --max-requests was reached during it: then
  // those requests are all there is, and the first window measures them.
  const double percentile = o.percentile > 0 ? o.percentile : 99;
  if (sent.load() < o.max_requests) {
    stats.TakeWindow(0, percentile);
    start = absl::Now();
  }
  // Every request of the level answered: --max-requests ended it.
  auto all_answered = [&] {
    return sent.load() >= o.max_requests && stats.Answered() >= o.max_requests;
  };
  // At least one window; the load stops at --max-requests. A window that
  // the last answer ends is measured up to that answer, not to its nominal
  // end (the requests it holds are all there are).
  do {
    const absl::Time nominal_end = start + absl::Seconds(o.window_s);
    while (absl::Now() < nominal_end && !all_answered()) {
      absl::SleepFor(std::min(absl::Milliseconds(5), nominal_end - absl::Now()));
    }
    absl::Time end = absl::Now();
    if (all_answered())
      end = std::min(end, std::max(stats.LastAnswer(), start + absl::Microseconds(1)));
    windows.push_back(stats.TakeWindow(absl::ToDoubleSeconds(end - start), percentile));
    start = end;
    if (o.verbose) {
      const WindowSummary& w = windows.back();
      std::printf("  window %zu: %.2f s, %lld ok, %.1f infer/s, p50 %.2f ms, p%g %.2f ms\n",
                  windows.size(), w.seconds, static_cast<long long>(w.ok), w.throughput * o.batch,
                  w.p50_ms, percentile, w.percentile_ms);
      std::fflush(stdout);
    }
    if (IsStable(windows, o.stable_windows, o.tolerance, percentile)) {
      result.stable = true;
      break;
    }
  } while (static_cast<int>(windows.size()) < o.max_windows && !all_answered());
  if (!result.stable) {
    result.unstable_reason = UnstableReason(windows, o.stable_windows, o.tolerance, percentile);
    if (all_answered()) {
      result.unstable_reason +=
          absl::StrCat("; --max-requests (", o.max_requests, ") ended the level");
    }
  }
  // Report the last `stable_windows` windows (or all when unstable).
  const size_t n = std::min<size_t>(windows.size(), o.stable_windows);
  WindowSummary merged;
  for (size_t i = windows.size() - n; i < windows.size(); ++i) {
    const WindowSummary& w = windows[i];
    merged.ok += w.ok;
    merged.seconds += w.seconds;
    for (const auto& [code, count] : w.errors) merged.errors[code] += count;
    merged.p50_ms += w.p50_ms / n;
    merged.p90_ms += w.p90_ms / n;
    merged.p95_ms += w.p95_ms / n;
    merged.p99_ms += w.p99_ms / n;
    merged.percentile_ms += w.percentile_ms / n;
    merged.mean_ms += w.mean_ms / n;
  }
  merged.throughput = merged.seconds > 0 ? merged.ok / merged.seconds : 0;
  result.summary = merged;
  return result;
}

LevelResult RunClosedLoop(const Options& o, Target& target, int concurrency,
                          FirstErrors& first_errors) {
  LoadStats stats;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  std::vector<std::thread> workers;
  workers.reserve(concurrency);
  for (int i = 0; i < concurrency; ++i) {
    workers.emplace_back([&] {
      for (int64_t i = sent.fetch_add(1); !stop.load() && i < o.max_requests;
           i = sent.fetch_add(1)) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1e3)));
        const absl::Time start = absl::Now();
        const grpc::Status status = target.Call(i, &context);
        RecordCall(stats, first_errors, status, absl::ToDoubleMilliseconds(absl::Now() - start));
      }
    });
  }
  LevelResult result = Measure(o, stats, sent);
  stop = true;
  for (auto& w : workers) w.join();
  result.mode = "concurrency";
  result.level = concurrency;
  return result;
}

// --async (gRPC): the same closed loop through asynchronous calls
// (tools/perf/async_loop.h).
LevelResult RunClosedLoopAsync(const Options& o, Target& target, int concurrency,
                               FirstErrors& first_errors) {
  LoadStats stats;
  std::atomic<int64_t> sent{0};
  AsyncLoopOptions options;
  options.concurrency = concurrency;
  options.max_requests = o.max_requests;
  options.call_timeout = absl::Seconds(o.timeout_s);
  options.drain_timeout = absl::Seconds(o.timeout_s + 5);
  LevelResult result;
  const absl::Status run = RunAsyncClosedLoop(
      target, options, sent,
      [&](const grpc::Status& status, double latency_ms) {
        RecordCall(stats, first_errors, status, latency_ms);
      },
      [&] { result = Measure(o, stats, sent); });
  if (!run.ok()) {
    // The calls still outstanding refer to this frame: stop here.
    std::fprintf(stderr, "rectifier-perf: %s\n", std::string(run.message()).c_str());
    std::_Exit(1);
  }
  result.mode = "concurrency";
  result.level = concurrency;
  return result;
}

LevelResult RunOpenLoop(const Options& o, Target& target, double rate, FirstErrors& first_errors) {
  LoadStats stats;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  std::atomic<int> outstanding{0};
  absl::Mutex mu;
  absl::CondVar drained;
  struct Call {
    grpc::ClientContext context;
    absl::Time scheduled;
  };
  std::thread dispatcher([&] {
    std::mt19937_64 rng(7);
    std::exponential_distribution<double> gap(rate);
    absl::Time next = absl::Now();
    while (!stop.load() && sent.load() < o.max_requests) {
      next += absl::Seconds(o.poisson ? gap(rng) : 1.0 / rate);
      const absl::Duration wait = next - absl::Now();
      if (wait > absl::ZeroDuration()) absl::SleepFor(wait);
      if (outstanding.load() >= o.max_outstanding) {
        stats.RecordRejected("CLIENT_OVERLOADED");  // the server cannot keep up with this rate
        continue;
      }
      const int64_t i = sent++;
      ++outstanding;
      auto* call = new Call();
      call->scheduled = next;
      call->context.set_deadline(
          std::chrono::system_clock::now() +
          std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1e3)));
      target.CallAsync(i, &call->context, [&, call](const grpc::Status& status) {
        // Latency from the scheduled send time, so a late dispatch counts
        // against the server.
        RecordCall(stats, first_errors, status,
                   absl::ToDoubleMilliseconds(absl::Now() - call->scheduled));
        delete call;
        absl::MutexLock lock(&mu);
        --outstanding;
        drained.SignalAll();
      });
    }
  });
  LevelResult result = Measure(o, stats, sent);
  stop = true;
  dispatcher.join();
  {
    absl::MutexLock lock(&mu);
    const absl::Time deadline = absl::Now() + absl::Seconds(o.timeout_s + 5);
    while (outstanding.load() > 0 && !drained.WaitWithDeadline(&mu, deadline)) {
    }
  }
  result.mode = "rate";
  result.level = rate;
  return result;
}

// A --percentile other than the four perf_analyzer always reports gets its
// own column, as in perf_analyzer.
bool ExtraPercentile(double percentile) {
  return percentile > 0 && percentile != 50 && percentile != 90 && percentile != 95 &&
         percentile != 99;
}

// One level as perf_analyzer's -f writes it (latencies in microseconds).
// The client-side split (send, receive) is not measured here: 0; the
// server's queue and compute come from its statistics, and the rest of
// the average latency is "Network+Server Send/Recv".
std::string PerfAnalyzerRow(double level, double infer_per_s, const WindowSummary& s,
                            double queue_us, double compute_us, double percentile) {
  const auto us = [](double ms) { return std::llround(ms * 1e3); };
  const double queue = std::max(queue_us, 0.0), compute = std::max(compute_us, 0.0);
  const double network = std::max(0.0, s.mean_ms * 1e3 - queue - compute);
  std::string row =
      absl::StrCat(level, ",", infer_per_s, ",0,", std::llround(network), ",", std::llround(queue),
                   ",0,", std::llround(compute), ",0,0,", us(s.p50_ms), ",", us(s.p90_ms), ",",
                   us(s.p95_ms), ",", us(s.p99_ms));
  if (ExtraPercentile(percentile)) absl::StrAppend(&row, ",", us(s.percentile_ms));
  return row;
}

bool WritePerfAnalyzerCsv(const std::string& path, bool request_rate, double percentile,
                          std::vector<std::pair<double, std::string>> rows) {
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::ofstream out(path);
  out << (request_rate ? "Request Rate" : "Concurrency")
      << ",Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute "
         "Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,"
         "p95 latency,p99 latency";
  if (ExtraPercentile(percentile)) out << ",p" << percentile << " latency";
  out << "\n";
  for (const auto& [throughput, row] : rows) out << row << "\n";
  return static_cast<bool>(out);
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"rectifier-perf: load generator for KServe v2 / Triton gRPC inference servers.",
               "rectifier-perf"};
  app.add_option("-u,--url", o.connection.url,
                 "Server host:port (loopback by default; 127.0.0.1:8000 with -i http)")
      ->capture_default_str();
  app.add_option("-i,--protocol", o.protocol,
                 "grpc, or http for the KServe v2 HTTP/REST endpoint (binary tensor data) and "
                 "the HTTP image routes")
      ->capture_default_str()
      ->check(CLI::IsMember({"grpc", "http"}));
  AddConnectionFlags(app, &o.connection);
  app.add_option("--shared-memory", o.shared_memory,
                 "system: pass the input tensors through POSIX shared memory registered with "
                 "the server (rectifier-server --allow-client-shm; same host only), as "
                 "perf_analyzer's --shared-memory system; outputs stay in the response")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "system"}));
  app.add_option("-m,--model", o.model, "Model name")->required();
  app.add_option("--model-version", o.version, "Version ('' = newest)");
  app.add_option("-b,--batch", o.batch, "Batch size per request")->capture_default_str();
  app.add_option("--concurrency", o.concurrency,
                 "Closed loop: outstanding requests, one level or a sweep a:b:xF / a:b:+S")
      ->capture_default_str();
  app.add_flag("-a,--async", o.async,
               "Closed loop through asynchronous calls: the --concurrency requests stay in "
               "flight on gRPC's callback threads instead of one blocked thread each "
               "(perf_analyzer's --async; -i http keeps a thread per request, its client "
               "being synchronous; the open loop is always asynchronous)");
  app.add_option("--request-rate", o.request_rate, "Open loop: requests/s, one level or a sweep");
  std::string concurrency_range, rate_range;
  app.add_option("--concurrency-range", concurrency_range,
                 "perf_analyzer's START:END[:STEP] (step 1 by default): --concurrency a:b:+S");
  app.add_option("--request-rate-range", rate_range,
                 "perf_analyzer's START:END[:STEP]: --request-rate a:b:+S");
  double measurement_ms = 0;
  app.add_option("-p,--measurement-interval", measurement_ms,
                 "perf_analyzer's window in milliseconds: --window-s / 1000");
  app.add_flag("--poisson", o.poisson, "Open loop with exponential gaps instead of constant");
  app.add_option("--window-s", o.window_s, "Measurement window seconds")->capture_default_str();
  app.add_option("--stable-windows", o.stable_windows, "Windows that must agree")
      ->capture_default_str();
  app.add_option("--tolerance", o.tolerance, "Relative agreement for stability")
      ->capture_default_str();
  app.add_option("--max-windows", o.max_windows, "Windows per level at most")
      ->capture_default_str();
  app.add_option("--max-requests", o.max_requests, "Requests per level at most")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout_s, "Seconds per request")->capture_default_str();
  app.add_option("--input", o.inputs, "NAME=FILE.npy|FILE.pb instead of random data");
  app.add_option("--input-data", o.input_data,
                 "perf_analyzer's: random (default), zero, a JSON file {\"data\": [{\"NAME\": "
                 "[values]}, ...]} (one batch item per entry, requests rotate through them) or a "
                 "directory with one raw file per input");
  app.add_option("--shape", o.shapes,
                 "NAME:d1,d2,... (or NAME=d1,d2,...) for variable input dims (without batch)");
  app.add_option("--csv", o.csv,
                 "Write one row per level here, Rectifier's columns (ms, errors, stability, api)");
  app.add_option("-f,--latency-report-file", o.pa_csv,
                 "Write one row per level here with perf_analyzer's -f columns (microseconds)");
  app.add_option("--percentile", o.percentile,
                 "Stabilise on this latency percentile (1-99) instead of p99, and report it")
      ->check(CLI::Range(1.0, 99.9));
  app.add_flag("-v,--verbose", o.verbose, "Print every measurement window");
  app.add_flag("--fail-on-error", o.fail_on_error, "Exit 1 if any request failed");
  app.add_option("--api", o.api,
                 "kserve: ModelInfer (tensors, or --image as a BYTES input); classify, detect, "
                 "segment: the vision API (needs --image)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kserve", "classify", "detect", "segment"}));
  app.add_option("--image", o.images,
                 "Encoded image file (repeatable); requests rotate through them, --batch per "
                 "request");
  CLI11_PARSE(app, argc, argv);

  const auto usage_error = [](const std::string& message) {
    std::fprintf(stderr, "rectifier-perf: error: %s\n", message.c_str());
    return 2;
  };
  if (o.batch < 1) return usage_error("--batch must be at least 1");
  // perf_analyzer's spellings, translated.
  const auto range = [](const std::string& text) {
    std::vector<std::string> parts = absl::StrSplit(text, ':');
    if (parts.size() == 2) parts.push_back("1");
    return parts.size() == 3 ? absl::StrCat(parts[0], ":", parts[1], ":+", parts[2]) : text;
  };
  if (!concurrency_range.empty()) o.concurrency = range(concurrency_range);
  if (!rate_range.empty()) o.request_rate = range(rate_range);
  if (measurement_ms > 0) o.window_s = measurement_ms / 1000;
  const bool http = o.protocol == "http";
  if (http && app.count("--url") == 0) o.connection.url = "127.0.0.1:8000";
  if (http && (!o.connection.tls_ca.empty() || !o.connection.tls_cert.empty())) {
    return usage_error("-i http has no TLS (the server's HTTP port is plaintext); use -i grpc");
  }
  if (o.shared_memory != "none" && (http || o.api != "kserve" || !o.images.empty())) {
    return usage_error("--shared-memory needs -i grpc and --api kserve with tensor inputs");
  }
  if (o.api != "kserve" && o.images.empty()) {
    return usage_error(absl::StrCat("--api ", o.api, " needs --image FILE"));
  }
  if (!o.images.empty() && (!o.inputs.empty() || !o.shapes.empty())) {
    return usage_error("--image cannot be combined with --input or --shape");
  }

  const auto levels = ParseSweep(o.request_rate.empty() ? o.concurrency : o.request_rate);
  if (!levels.ok()) {
    std::fprintf(stderr, "rectifier-perf: error: %s\n",
                 std::string(levels.status().message()).c_str());
    return 2;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(INT32_MAX);
  args.SetMaxSendMessageSize(INT32_MAX);
  // Over HTTP the gRPC channel is never connected (it only formats errors).
  ConnectionFlags grpc_flags = o.connection;
  if (http) grpc_flags.url = "127.0.0.1:8001";
  auto connection = Connection::Create(grpc_flags, args);
  if (!connection.ok()) return usage_error(std::string(connection.status().message()));
  auto stub = GRPCInferenceService::NewStub((*connection)->channel());
  auto target = http ? BuildHttpTarget(o) : BuildTarget(**connection, o);
  if (!target.ok()) return usage_error(std::string(target.status().message()));
  const auto host_port = SplitUrl(o.connection.url);
  const auto server_totals = [&]() {
    return http && host_port.ok() ? ReadHttpServerTotals(host_port->first, host_port->second, o)
                                  : ReadServerTotals(*stub, o);
  };
  {
    // One request before measuring: one that can never succeed (unknown
    // model, wrong task or input, bad image, TLS or the token) stops here
    // with its message.
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1e3)));
    const grpc::Status status = (*target)->Call(0, &context);
    const std::optional<std::string> hint = http ? std::nullopt : (*connection)->Hint(status);
    bool hopeless = hint.has_value();  // TLS or the token
    switch (status.error_code()) {
      case grpc::StatusCode::NOT_FOUND:
      case grpc::StatusCode::INVALID_ARGUMENT:
      case grpc::StatusCode::FAILED_PRECONDITION:
      case grpc::StatusCode::UNIMPLEMENTED:
        hopeless = true;
        break;
      default:
        break;
    }
    if (hopeless) {
      return usage_error(
          absl::StrCat("the first request failed: ", hint   ? *hint
                                                     : http ? status.error_message()
                                                            : (*connection)->Format(status)));
    }
  }

  // -f: perf_analyzer's rows, written at the end sorted by throughput as
  // perf_analyzer does.
  std::vector<std::pair<double, std::string>> pa_rows;
  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    csv << "mode,level,batch,throughput_infer_per_s,p50_ms,p90_ms,p95_ms,p99_ms,mean_ms,ok,errors,"
           "stable,server_queue_us,server_compute_us,api\n";
  }
  std::printf("%-12s %8s %12s %9s %9s %9s %9s %8s %s\n",
              o.request_rate.empty() ? "concurrency" : "rate", "infer/s", "ok", "p50 ms", "p90 ms",
              "p99 ms", "queue us", "comp us", "errors");
  int64_t total_errors = 0;
  FirstErrors first_errors;
  for (const double level : *levels) {
    const ServerTotals before = server_totals();
    LevelResult r =
        o.request_rate.empty()
            ? (o.async && !http
                   ? RunClosedLoopAsync(o, **target, static_cast<int>(level), first_errors)
                   : RunClosedLoop(o, **target, static_cast<int>(level), first_errors))
            : RunOpenLoop(o, **target, level, first_errors);
    const ServerTotals after = server_totals();
    const uint64_t served = after.count - before.count;
    const double queue_us =
        after.available && served ? (after.queue_ns - before.queue_ns) / 1e3 / served : -1;
    const double compute_us =
        after.available && served ? (after.compute_ns - before.compute_ns) / 1e3 / served : -1;
    std::vector<std::string> errors;
    for (const auto& [code, count] : r.summary.errors) {
      errors.push_back(absl::StrCat(code, "=", count));
      total_errors += count;
    }
    const double infer_per_s = r.summary.throughput * o.batch;
    std::printf("%-12g %8.1f %12lld %9.2f %9.2f %9.2f %9.0f %8.0f %s%s\n", level, infer_per_s,
                static_cast<long long>(r.summary.ok), r.summary.p50_ms, r.summary.p90_ms,
                r.summary.p99_ms, queue_us, compute_us, absl::StrJoin(errors, " ").c_str(),
                r.stable ? "" : " (unstable)");
    std::fflush(stdout);
    if (!r.stable) {
      std::fprintf(stderr, "rectifier-perf: level %g unstable: %s\n", level,
                   r.unstable_reason.c_str());
    }
    // An open loop that could not send or get answers at the asked rate.
    if (!o.request_rate.empty() && r.summary.throughput < 0.9 * level) {
      std::fprintf(stderr,
                   "rectifier-perf: warning: asked for %g requests/s, %.1f were answered: the "
                   "server (or this client%s) cannot keep up at this rate\n",
                   level, r.summary.throughput,
                   r.summary.errors.count("CLIENT_OVERLOADED") ? ", which refused sends" : "");
    }
    if (!o.pa_csv.empty()) {
      pa_rows.emplace_back(infer_per_s, PerfAnalyzerRow(level, infer_per_s, r.summary, queue_us,
                                                        compute_us, o.percentile));
    }
    if (csv.is_open()) {
      csv << r.mode << "," << level << "," << o.batch << "," << infer_per_s << ","
          << r.summary.p50_ms << "," << r.summary.p90_ms << "," << r.summary.p95_ms << ","
          << r.summary.p99_ms << "," << r.summary.mean_ms << "," << r.summary.ok << ","
          << absl::StrJoin(errors, ";") << "," << (r.stable ? 1 : 0) << "," << queue_us << ","
          << compute_us << "," << (o.api == "kserve" && !o.images.empty() ? "kserve-bytes" : o.api)
          << (http ? "-http" : "") << "\n";
      csv.flush();  // a level's row survives a later level that stops the run
    }
  }
  if (!o.pa_csv.empty() &&
      !WritePerfAnalyzerCsv(o.pa_csv, !o.request_rate.empty(), o.percentile, pa_rows)) {
    return usage_error(absl::StrCat("cannot write ", o.pa_csv));
  }
  for (const grpc::Status& status : first_errors.Statuses()) {
    if (std::optional<std::string> hint = http ? std::nullopt : (*connection)->Hint(status)) {
      std::fprintf(stderr, "rectifier-perf: error: %s\n", hint->c_str());
    }
  }
  return o.fail_on_error && total_errors > 0 ? 1 : 0;
}

}  // namespace
}  // namespace rectifier::tools

int main(int argc, char** argv) {
  // Batches of large frames (39 MB at 8 x 3 x 640 x 640 FP32) would otherwise
  // be fresh, page-faulted mappings in every request and response.
  rectifier::common::ReuseLargeAllocations();
  // The load generator shares the machine with the server it measures: its
  // locks skip absl's deadlock graph as the server's do.
  rectifier::common::ConfigureMutexDeadlockDetection();
  return rectifier::tools::Main(argc, argv);
}
