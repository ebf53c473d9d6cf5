#include "server/common/process_env.h"

#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/synchronization/mutex.h"

namespace rectifier::common {

void ReexecWithBoundedOpenMpSpinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) {
    return;
  }
  setenv("GOMP_SPINCOUNT", kDefaultGompSpinCount, 1);
  setenv("OMP_WAIT_POLICY", kDefaultOmpWaitPolicy, 1);
  execv("/proc/self/exe", argv);
}

bool ReuseLargeAllocations() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return false;
  return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, kMallocTrimThreshold) == 1 &&
         mallopt(M_TOP_PAD, kMallocTopPad) == 1;
}

bool ConfigureMutexDeadlockDetection() {
  const char* value = std::getenv("RECTIFIER_MUTEX_DEADLOCK_DETECTION");
  if (value != nullptr && std::strcmp(value, "1") == 0) return true;
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return false;
}

const char* EnvOrUnset(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "unset";
}

}  // namespace rectifier::common
