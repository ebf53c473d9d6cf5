// Process set-up that must happen before any thread starts: the OpenMP
// runtime's waiting policy (read when libgomp loads, hence a re-exec) and
// glibc's allocation of large buffers.
#ifndef RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_
#define RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_

namespace rectifier::common {

// How long idle OpenMP workers spin before sleeping (GOMP_SPINCOUNT).
// libgomp (oneDNN's CPU runtime here) reads it when it is loaded, before main
// runs. Measured on 2 cores (docs/PERFORMANCE.md, "OpenMP waiting"):
// sleeping at once (OMP_WAIT_POLICY=PASSIVE) adds a thread wake-up to every
// primitive, 5.7x slower on MobileNetV3-small at batch 1; the default
// 300000 spins burn a CPU long after each parallel region, which hurts when
// CPUs are shared with gRPC threads and other instances. 10000 spins (a few
// microseconds) keep the gaps between consecutive primitives hot and sleep
// soon after a request ends.
inline constexpr char kDefaultGompSpinCount[] = "10000";

// libgomp's wait policy, set with the spin count. Once a process holds more
// OpenMP threads than CPUs (each model instance's worker thread owns a team:
// two loaded models with 2 intra-op threads on a 2-CPU machine already count
// 3 threads), libgomp spins only a "throttled" count before sleeping: 100
// iterations by default, which puts a futex wake-up in front of nearly every
// primitive (the default road detector computed in 2.8 ms per request inside
// a three-model server against 1.1 ms alone). With ACTIVE the throttled count
// is 1000 (1.4-1.5 ms); the spin count itself stays GOMP_SPINCOUNT, so an
// idle team still sleeps a few microseconds after a request.
inline constexpr char kDefaultOmpWaitPolicy[] = "ACTIVE";

// Unless the caller set OMP_WAIT_POLICY or GOMP_SPINCOUNT, sets
// GOMP_SPINCOUNT to kDefaultGompSpinCount and OMP_WAIT_POLICY to
// kDefaultOmpWaitPolicy and re-executes the binary once with the same argv
// (same pid); if the exec fails it returns and the process runs with
// libgomp's defaults. Call first thing in main, before any thread starts.
void ReexecWithBoundedOpenMpSpinning(char** argv);

// Free heap kept at the top of glibc's main heap instead of being returned
// to the kernel (M_TRIM_THRESHOLD) while ReuseLargeAllocations is in effect.
inline constexpr int kMallocTrimThreshold = 256 << 20;

// Free memory glibc keeps in a heap it would otherwise give back (M_TOP_PAD)
// while ReuseLargeAllocations is in effect: 64 MiB, the largest heap of a
// thread's malloc arena, so that no such heap is unmapped when it empties.
inline constexpr int kMallocTopPad = 64 << 20;

// Request buffers above glibc's largest mmap threshold (32 MiB: a batch of
// eight 640x640 RGB frames is 39 MB) are each a fresh mmap, every page
// faulted in and zeroed by the kernel, and unmapped again when freed: ~10k
// page faults per such buffer, several buffers per request (the gRPC
// message, the decoded tensor, the response). This serves every allocation
// from the heap (M_MMAP_MAX 0), so a freed buffer's pages are reused by the
// next request, and returns free heap to the kernel only beyond
// kMallocTrimThreshold. Threads other than main (gRPC's, which parse
// requests and serialize responses) allocate from arenas of their own,
// which grow in heaps of at most 64 MiB; glibc unmaps such a heap as soon as
// it empties unless M_TOP_PAD asks it to keep that much free, so two live
// 39 MB buffers on one thread faulted the second one in again on every
// request: kMallocTopPad keeps those heaps. The cost: the process keeps the
// high-water mark of its buffers, per arena (bounded by the request size and
// concurrency limits). Does nothing, and returns false, when GLIBC_TUNABLES
// sets a malloc tunable (the operator's choice) or mallopt refuses. Call in
// main before any thread starts.
bool ReuseLargeAllocations();

// absl::Mutex as Debian builds it (without NDEBUG) checks every lock
// acquisition against a graph of the lock orders seen so far, to abort on a
// potential deadlock (a cycle). At saturation on a small model that graph's
// upkeep took 1.8% of the server's CPU samples (docs/PERFORMANCE.md,
// "absl's mutex deadlock detection"). This turns
// it off unless RECTIFIER_MUTEX_DEADLOCK_DETECTION=1 (to debug a hang);
// returns whether it stays on. Unit tests keep absl's default. Call in main
// before any thread starts.
bool ConfigureMutexDeadlockDetection();

// The environment variable `name`, or "unset" (for logs of the settings above).
const char* EnvOrUnset(const char* name);

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_PROCESS_ENV_H_
