#include "server/common/thread_name.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

// Each case names a thread of its own: the test's main thread keeps its name.
std::string NameOnThread(void (*name_it)()) {
  std::string name;
  std::thread t([&] {
    name_it();
    name = CurrentThreadName();
  });
  t.join();
  return name;
}

TEST(ThreadNameTest, SetsTheName) {
  EXPECT_EQ(NameOnThread([] { SetCurrentThreadName("image-worker"); }), "image-worker");
}

TEST(ThreadNameTest, CutsToFifteenBytes) {
  // pthread_setname_np refuses longer names outright (ERANGE); the cut keeps
  // the start, which is what tells two model names apart most often.
  EXPECT_EQ(NameOnThread([] { SetCurrentThreadName("efficientnet_b0_int8"); }), "efficientnet_b0");
}

TEST(ThreadNameTest, NamesTheThreadAfterTheExecutable) {
  // This test binary is common_test; a process re-executed through
  // /proc/self/exe would otherwise be called "exe".
  EXPECT_EQ(NameOnThread([] {
              SetCurrentThreadName("exe");
              NameThreadAfterExecutable();
            }),
            "common_test");
}

}  // namespace
}  // namespace rectifier::common
