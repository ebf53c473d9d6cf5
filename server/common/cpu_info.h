// CPU budget of this process: affinity mask and cgroup quota, for sizing
// thread pools inside containers.
#ifndef RECTIFIER_SERVER_COMMON_CPU_INFO_H_
#define RECTIFIER_SERVER_COMMON_CPU_INFO_H_

#include <optional>
#include <string>

namespace rectifier::common {

// Number of CPUs this process may use: the smaller of the scheduler affinity
// mask and the cgroup v2 (cpu.max) or v1 (cfs_quota/period) quota, rounded up,
// at least 1.
int AvailableCpus();

// Parses a cgroup v2 "cpu.max" line ("max 100000" or "150000 100000") into a
// CPU count (rounded up); nullopt for "max" or malformed text.
std::optional<int> ParseCgroupCpuMax(const std::string& text);

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_CPU_INFO_H_
