// Process environment that must be fixed before the OpenMP runtime loads.
#ifndef RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_
#define RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_

namespace rectifier::common {

// libgomp (oneDNN's CPU runtime here) reads OMP_WAIT_POLICY when it is
// loaded, before main runs. Its default, spinning workers, collapses when
// CPUs are shared (ResNet-50 batch 1 was 3x slower on a busy 2-core machine),
// and an inference server always shares them with gRPC and other instances.
// Unless the caller set OMP_WAIT_POLICY, this sets it to PASSIVE and
// re-executes the binary once with the same argv (same pid); if the exec
// fails it returns and the process runs with the default.
// Call first thing in main, before any thread starts.
void ReexecWithPassiveOpenMp(char** argv);

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_
