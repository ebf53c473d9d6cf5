#include "server/common/process_env.h"

#include <unistd.h>

#include <cstdlib>

namespace rectifier::common {

void ReexecWithBoundedOpenMpSpinning(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) {
    return;
  }
  setenv("GOMP_SPINCOUNT", kDefaultGompSpinCount, 1);
  setenv("OMP_WAIT_POLICY", kDefaultOmpWaitPolicy, 1);
  execv("/proc/self/exe", argv);
}

}  // namespace rectifier::common
