// Prometheus collector for this process: CPU time, memory, threads, open fds,
// start time (the standard process_* metric names), read from /proc/self.
#ifndef RECTIFIER_SERVER_METRICS_PROCESS_COLLECTOR_H_
#define RECTIFIER_SERVER_METRICS_PROCESS_COLLECTOR_H_

#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace rectifier::metrics {

// Values parsed from /proc/<pid>/stat.
struct ProcStat {
  double cpu_seconds = 0;       // utime + stime
  double start_time_ticks = 0;  // since boot, in clock ticks
  double virtual_bytes = 0;
  double resident_bytes = 0;
  int threads = 0;
};

// Parses the text of /proc/<pid>/stat (the comm field may contain spaces and
// parentheses). `ticks_per_second` from sysconf(_SC_CLK_TCK), `page_size`
// from sysconf(_SC_PAGESIZE).
std::optional<ProcStat> ParseProcStat(const std::string& text, double ticks_per_second,
                                      double page_size);

// Collected on every scrape; costs a few small file reads, nothing on the
// request path. Thread-safe (stateless).
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace rectifier::metrics

#endif  // RECTIFIER_SERVER_METRICS_PROCESS_COLLECTOR_H_
