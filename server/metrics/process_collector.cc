#include "server/metrics/process_collector.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

namespace rectifier::metrics {
namespace {

prometheus::MetricFamily Family(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(metric);
  return family;
}

std::string ReadFile(const char* path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Boot time in seconds since the epoch, from the "btime" line of /proc/stat.
std::optional<double> BootTime() {
  std::istringstream in(ReadFile("/proc/stat"));
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double value = 0;
      if (in >> value) return value;
      return std::nullopt;
    }
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return 0;
  int count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory stream's own fd
}

}  // namespace

std::optional<ProcStat> ParseProcStat(const std::string& text, double ticks_per_second,
                                      double page_size) {
  // Fields after "(comm)" start at field 3 (state). The comm may contain ')'.
  const size_t close = text.rfind(')');
  if (close == std::string::npos || ticks_per_second <= 0) return std::nullopt;
  std::istringstream in(text.substr(close + 1));
  std::vector<std::string> fields{std::istream_iterator<std::string>(in),
                                  std::istream_iterator<std::string>()};
  // fields[0] is field 3 (state); field N is fields[N - 3].
  constexpr size_t kUtime = 14 - 3, kStime = 15 - 3, kThreads = 20 - 3, kStart = 22 - 3,
                   kVsize = 23 - 3, kRss = 24 - 3;
  if (fields.size() <= kRss) return std::nullopt;
  try {
    ProcStat stat;
    stat.cpu_seconds = (std::stod(fields[kUtime]) + std::stod(fields[kStime])) / ticks_per_second;
    stat.threads = std::stoi(fields[kThreads]);
    stat.start_time_ticks = std::stod(fields[kStart]);
    stat.virtual_bytes = std::stod(fields[kVsize]);
    stat.resident_bytes = std::stod(fields[kRss]) * page_size;
    return stat;
  } catch (...) {
    return std::nullopt;
  }
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::vector<prometheus::MetricFamily> families;
  const auto stat = ParseProcStat(ReadFile("/proc/self/stat"), ticks, page);
  if (!stat) return families;
  using prometheus::MetricType;
  families.push_back(Family("process_cpu_seconds_total", "Total user and system CPU time spent.",
                            MetricType::Counter, stat->cpu_seconds));
  families.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                            MetricType::Gauge, stat->resident_bytes));
  families.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                            MetricType::Gauge, stat->virtual_bytes));
  families.push_back(Family("process_threads", "Number of OS threads in the process.",
                            MetricType::Gauge, stat->threads));
  families.push_back(Family("process_open_fds", "Number of open file descriptors.",
                            MetricType::Gauge, CountOpenFds()));
  if (const auto boot = BootTime()) {
    families.push_back(Family("process_start_time_seconds",
                              "Start time of the process since unix epoch in seconds.",
                              MetricType::Gauge, *boot + stat->start_time_ticks / ticks));
  }
  return families;
}

}  // namespace rectifier::metrics
