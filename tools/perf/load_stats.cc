#include "tools/perf/load_stats.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rectifier::tools {

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double rank = std::ceil(p / 100.0 * static_cast<double>(sorted.size()));
  const size_t index = static_cast<size_t>(std::max(1.0, rank)) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

void LoadStats::RecordOk(double latency_ms) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  latencies_ms_.push_back(latency_ms);
  ++answered_;
  last_answer_ = std::max(last_answer_, now);
}

void LoadStats::RecordError(const std::string& code) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  ++errors_[code];
  ++answered_;
  last_answer_ = std::max(last_answer_, now);
}

void LoadStats::RecordRejected(const std::string& code) {
  absl::MutexLock lock(&mu_);
  ++errors_[code];
}

int64_t LoadStats::Answered() {
  absl::MutexLock lock(&mu_);
  return answered_;
}

absl::Time LoadStats::LastAnswer() {
  absl::MutexLock lock(&mu_);
  return last_answer_;
}

WindowSummary LoadStats::TakeWindow(double seconds, double percentile) {
  std::vector<double> latencies;
  WindowSummary summary;
  {
    absl::MutexLock lock(&mu_);
    latencies.swap(latencies_ms_);
    summary.errors.swap(errors_);
  }
  std::sort(latencies.begin(), latencies.end());
  summary.ok = static_cast<int64_t>(latencies.size());
  summary.seconds = seconds;
  summary.throughput = seconds > 0 ? static_cast<double>(summary.ok) / seconds : 0;
  summary.p50_ms = Percentile(latencies, 50);
  summary.p90_ms = Percentile(latencies, 90);
  summary.p95_ms = Percentile(latencies, 95);
  summary.p99_ms = Percentile(latencies, 99);
  summary.percentile_ms = Percentile(latencies, percentile);
  summary.mean_ms = latencies.empty() ? 0
                                      : std::accumulate(latencies.begin(), latencies.end(), 0.0) /
                                            static_cast<double>(latencies.size());
  return summary;
}

bool IsStable(const std::vector<WindowSummary>& windows, int n, double tolerance,
              double percentile) {
  return UnstableReason(windows, n, tolerance, percentile).empty();
}

std::string UnstableReason(const std::vector<WindowSummary>& windows, int n, double tolerance,
                           double percentile) {
  if (static_cast<int>(windows.size()) < n) {
    return absl::StrCat("only ", windows.size(), " window(s) measured, ", n, " must agree");
  }
  // The largest deviation from the mean over the last n windows, relative
  // to the mean; infinite when the mean is not positive (nothing answered).
  const auto deviation = [&](auto get) {
    double mean = 0;
    for (size_t i = windows.size() - n; i < windows.size(); ++i) mean += get(windows[i]);
    mean /= n;
    if (mean <= 0) return HUGE_VAL;
    double worst = 0;
    for (size_t i = windows.size() - n; i < windows.size(); ++i) {
      worst = std::max(worst, std::abs(get(windows[i]) - mean) / mean);
    }
    return worst;
  };
  const double throughput = deviation([](const WindowSummary& w) { return w.throughput; });
  const bool p99_asked = percentile == 99;
  const double latency =
      deviation([&](const WindowSummary& w) { return p99_asked ? w.p99_ms : w.percentile_ms; });
  if (throughput == HUGE_VAL) return "no request answered";
  std::vector<std::string> reasons;
  if (throughput > tolerance) {
    reasons.push_back(absl::StrCat("throughput varied ", static_cast<int>(throughput * 100), "%"));
  }
  if (latency > tolerance) {
    reasons.push_back(absl::StrCat("p", percentile, " varied ",
                                   static_cast<int>(std::min(latency, 99.99) * 100), "%"));
  }
  if (reasons.empty()) return "";
  return absl::StrCat(absl::StrJoin(reasons, ", "), " across the last ", n, " windows (tolerance ",
                      static_cast<int>(tolerance * 100), "%)");
}

}  // namespace rectifier::tools
