// Latency/outcome accumulation for rectifier-perf: percentiles, throughput
// and errors by gRPC code over one measurement window.
#ifndef RECTIFIER_TOOLS_PERF_LOAD_STATS_H_
#define RECTIFIER_TOOLS_PERF_LOAD_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rectifier::tools {

struct WindowSummary {
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;  // gRPC code name -> count
  double seconds = 0;
  double throughput = 0;  // successful requests per second
  double p50_ms = 0, p90_ms = 0, p95_ms = 0, p99_ms = 0, mean_ms = 0;
  double percentile_ms = 0;  // the percentile TakeWindow was asked for
};

// Nearest-rank percentile of sorted values (p in [0, 100]); 0 if empty.
double Percentile(const std::vector<double>& sorted, double p);

// Thread-safe recorder for one window.
class LoadStats {
 public:
  void RecordOk(double latency_ms);
  void RecordError(const std::string& code);
  // An error for a request that was never sent (the client's own overload):
  // counted in the window's errors but not as an answered request.
  void RecordRejected(const std::string& code);
  // Requests answered (ok or error) since construction, and when the last
  // answer came: a level that --max-requests ends is measured up to there.
  int64_t Answered();
  absl::Time LastAnswer();
  // Summarizes what was recorded over `seconds` and clears it.
  WindowSummary TakeWindow(double seconds, double percentile = 99);

 private:
  absl::Mutex mu_;
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> errors_ ABSL_GUARDED_BY(mu_);
  int64_t answered_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_answer_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// True when the last `n` windows' throughputs lie within `tolerance`
// (relative) of their mean, and so do their latencies at `percentile` (p99,
// or percentile_ms for another one, as TakeWindow was asked):
// perf_analyzer's stability rule with --percentile.
bool IsStable(const std::vector<WindowSummary>& windows, int n, double tolerance,
              double percentile = 99);

// Why the last `n` windows are not stable ("" when they are): too few
// windows, or the largest deviation from the mean of throughput or the
// percentile's latency, in percent, against the tolerance.
std::string UnstableReason(const std::vector<WindowSummary>& windows, int n, double tolerance,
                           double percentile = 99);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_PERF_LOAD_STATS_H_
