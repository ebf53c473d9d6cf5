#include "server/common/process_env.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

// Minor page faults of this process so far.
long MinorFaults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Page faults of writing `count` live buffers of `mib` MiB each (above
// glibc's largest mmap threshold), after the same buffers were written and
// freed once, measured in a child process (mallopt is process-wide).
// `reuse`: with ReuseLargeAllocations first; `on_thread`: allocated and
// freed by a second thread, which glibc gives a malloc arena of its own (as
// it does gRPC's threads, which parse requests and serialize responses).
// -1 when the child failed.
long FaultsOfSecondRound(bool reuse, bool on_thread, int count, size_t mib) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    unsetenv("GLIBC_TUNABLES");
    if (reuse && !ReuseLargeAllocations()) _exit(2);
    long faults = -1;
    auto rounds = [&] {
      const size_t bytes = mib << 20;
      for (int round = 0; round < 2; ++round) {
        const long before = MinorFaults();
        std::vector<char*> buffers;
        for (int k = 0; k < count; ++k) {
          auto* p = static_cast<char*>(std::malloc(bytes));
          if (p == nullptr) _exit(3);
          std::memset(p, round + 1, bytes);
          // The compiler may not drop the buffer: it escapes here.
          asm volatile("" : : "r"(p) : "memory");
          buffers.push_back(p);
        }
        if (round == 1) faults = MinorFaults() - before;
        for (char* p : buffers) std::free(p);
      }
    };
    if (on_thread) {
      std::thread(rounds).join();
    } else {
      rounds();
    }
    if (write(fds[1], &faults, sizeof(faults)) != sizeof(faults)) _exit(5);
    _exit(0);
  }
  close(fds[1]);
  long faults = -1;
  if (read(fds[0], &faults, sizeof(faults)) != sizeof(faults)) faults = -1;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? faults : -1;
}

// FaultsOfSecondRound without and with ReuseLargeAllocations, recorded as
// test properties: the fresh mappings fault in at least `min_fresh` pages
// (fewer than one per page where the kernel backs them with huge pages), the
// reused memory under a quarter of the fresh count.
void ExpectReuse(bool on_thread, int count, size_t mib, long min_fresh) {
  const long fresh = FaultsOfSecondRound(false, on_thread, count, mib);
  const long reused = FaultsOfSecondRound(true, on_thread, count, mib);
  testing::Test::RecordProperty("fresh_faults", static_cast<int>(fresh));
  testing::Test::RecordProperty("reused_faults", static_cast<int>(reused));
  ASSERT_GE(fresh, 0);
  ASSERT_GE(reused, 0);
  EXPECT_GE(fresh, min_fresh) << "fresh mappings fault in their pages";
  EXPECT_LT(reused, fresh / 4) << "the freed pages are reused";
}

// Without it every 48 MiB buffer is a fresh mapping: one fault per page
// (12288 of 4 KiB; 24 where the kernel backs it with 2 MiB transparent huge
// pages). With it the second buffer reuses the first one's pages.
TEST(ProcessEnvTest, LargeBufferReusesFreedPagesOnlyWithReuseLargeAllocations) {
  ExpectReuse(false, 1, 48, 20);
}

// A thread's arena grows in heaps of at most 64 MiB; two live 40 MiB
// buffers need two, and glibc unmaps a heap as soon as it is empty unless
// M_TOP_PAD asks it to keep that much free memory. Without ReuseLargeAllocations
// both buffers are fresh mappings; with M_MMAP_MAX and M_TRIM_THRESHOLD
// alone the second heap came and went with every round (10240 faults).
TEST(ProcessEnvTest, ThreadArenaKeepsFreedHeapsWithReuseLargeAllocations) {
  ExpectReuse(true, 2, 40, 40);
}

TEST(ProcessEnvTest, OperatorsMallocTunablesWin) {
  const pid_t pid = fork();
  if (pid == 0) {
    setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576", 1);
    _exit(ReuseLargeAllocations() ? 1 : 0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "ReuseLargeAllocations overrode GLIBC_TUNABLES";
}

// Takes a then b, then b then a: a lock-order cycle, which absl's deadlock
// detection (when on) reports and aborts on; then exits 0.
void InvertLockOrder() {
  absl::Mutex a, b;
  {
    absl::MutexLock la(&a);
    absl::MutexLock lb(&b);
  }
  {
    absl::MutexLock lb(&b);
    absl::MutexLock la(&a);
  }
  std::exit(0);
}

// Only meaningful where absl was built with its deadlock detection on by
// default (Debian's build, without NDEBUG): the first expectation checks
// that, the others what ConfigureMutexDeadlockDetection does.
TEST(ProcessEnvTest, MutexDeadlockDetectionOffUnlessAsked) {
  testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(InvertLockOrder(), "[Dd]eadlock") << "absl's default detects the cycle";
  EXPECT_EXIT(
      {
        unsetenv("RECTIFIER_MUTEX_DEADLOCK_DETECTION");
        if (ConfigureMutexDeadlockDetection()) std::exit(2);
        InvertLockOrder();
      },
      testing::ExitedWithCode(0), "")
      << "detection stays off by default";
  EXPECT_DEATH(
      {
        setenv("RECTIFIER_MUTEX_DEADLOCK_DETECTION", "1", 1);
        if (!ConfigureMutexDeadlockDetection()) std::exit(2);
        InvertLockOrder();
      },
      "[Dd]eadlock")
      << "RECTIFIER_MUTEX_DEADLOCK_DETECTION=1 keeps it";
}

}  // namespace
}  // namespace rectifier::common
