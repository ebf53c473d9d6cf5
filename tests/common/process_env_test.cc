#include "server/common/process_env.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

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

// Page faults of writing a 48 MiB buffer allocated after an equal one was
// freed (above glibc's largest mmap threshold), measured in a child process
// (mallopt is process-wide); `reuse`: with ReuseLargeAllocations first.
// -1 when the child failed.
long FaultsOfSecondLargeBuffer(bool reuse) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    unsetenv("GLIBC_TUNABLES");
    if (reuse && !ReuseLargeAllocations()) _exit(2);
    constexpr size_t kBytes = 48u << 20;
    for (int round = 0; round < 2; ++round) {
      const long before = MinorFaults();
      auto* p = static_cast<char*>(std::malloc(kBytes));
      if (p == nullptr) _exit(3);
      std::memset(p, round + 1, kBytes);
      // The compiler may not drop the buffer: it escapes here.
      asm volatile("" : : "r"(p) : "memory");
      const long faults = MinorFaults() - before;
      std::free(p);
      if (round == 1 && write(fds[1], &faults, sizeof(faults)) != sizeof(faults)) _exit(5);
    }
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

// Without it every 48 MiB buffer is a fresh mapping: one fault per page
// (12288 of 4 KiB; 24 where the kernel backs it with 2 MiB transparent huge
// pages). With it the second buffer reuses the first one's pages.
TEST(ProcessEnvTest, LargeBufferReusesFreedPagesOnlyWithReuseLargeAllocations) {
  const long fresh = FaultsOfSecondLargeBuffer(false);
  const long reused = FaultsOfSecondLargeBuffer(true);
  RecordProperty("fresh_faults", static_cast<int>(fresh));
  RecordProperty("reused_faults", static_cast<int>(reused));
  ASSERT_GE(fresh, 0);
  ASSERT_GE(reused, 0);
  EXPECT_GE(fresh, 20) << "a fresh mapping faults in every page";
  EXPECT_LT(reused, fresh / 4) << "the freed heap pages are reused";
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
