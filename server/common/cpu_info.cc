#include "server/common/cpu_info.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace rectifier::common {
namespace {

std::optional<std::string> ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<int> CgroupV1Quota() {
  const auto quota = ReadFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  const auto period = ReadFirstLine("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  try {
    const long q = std::stol(*quota);
    const long p = std::stol(*period);
    if (q <= 0 || p <= 0) return std::nullopt;
    return static_cast<int>((q + p - 1) / p);
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<int> ParseCgroupCpuMax(const std::string& text) {
  std::istringstream in(text);
  std::string quota;
  long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    const long q = std::stol(quota);
    if (q <= 0) return std::nullopt;
    return static_cast<int>((q + period - 1) / period);
  } catch (...) {
    return std::nullopt;
  }
}

int AvailableCpus() {
  int cpus = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = 1;
  std::optional<int> quota;
  if (const auto line = ReadFirstLine("/sys/fs/cgroup/cpu.max")) {
    quota = ParseCgroupCpuMax(*line);
  } else {
    quota = CgroupV1Quota();
  }
  if (quota) cpus = std::min(cpus, std::max(*quota, 1));
  return cpus;
}

}  // namespace rectifier::common
