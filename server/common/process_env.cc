#include "server/common/process_env.h"

#include <unistd.h>

#include <cstdlib>

namespace rectifier::common {

void ReexecWithPassiveOpenMp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);
}

}  // namespace rectifier::common
