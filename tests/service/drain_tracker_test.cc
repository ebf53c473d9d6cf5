// DrainTracker: what a drain waits for before gRPC's shutdown. Only lower
// bounds on time are asserted (a loaded machine makes waits longer, never
// shorter); upper bounds are generous, to catch a wait that never ends.
#include "server/service/drain_tracker.h"

#include <thread>

#include "gtest/gtest.h"

namespace rectifier::service {
namespace {

TEST(DrainTrackerTest, NothingInFlightAndNothingRecentReturnsAtOnce) {
  DrainTracker tracker;
  const absl::Time start = absl::Now();
  EXPECT_TRUE(tracker.BeginAndWait(absl::Seconds(30), start + absl::Seconds(60)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // no 30 s linger
}

TEST(DrainTrackerTest, WaitsForTheCallInFlightThenLingers) {
  DrainTracker tracker;
  const bool counted = tracker.Started();
  ASSERT_TRUE(counted);
  absl::Time ended;
  std::thread call([&] {
    absl::SleepFor(absl::Milliseconds(200));
    ended = absl::Now();
    tracker.Ended(counted);
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(tracker.BeginAndWait(absl::Milliseconds(300), start + absl::Seconds(60)));
  const absl::Time returned = absl::Now();
  call.join();
  EXPECT_GE(returned - ended, absl::Milliseconds(300));  // the linger after the end
  EXPECT_LT(returned - start, absl::Seconds(30));
}

TEST(DrainTrackerTest, ACallThatEndedJustBeforeTheDrainStillGetsItsLinger) {
  DrainTracker tracker;
  tracker.Ended(tracker.Started());
  const absl::Time ended = absl::Now();
  EXPECT_TRUE(tracker.BeginAndWait(absl::Milliseconds(300), absl::Now() + absl::Seconds(60)));
  EXPECT_GE(absl::Now() - ended, absl::Milliseconds(300));
}

TEST(DrainTrackerTest, CallsStartedDuringTheDrainDoNotHoldIt) {
  DrainTracker tracker;
  std::thread drain([&] {
    EXPECT_TRUE(tracker.BeginAndWait(absl::ZeroDuration(), absl::Now() + absl::Seconds(60)));
  });
  drain.join();
  // The drain has begun: a new call does not count, and ending it is a no-op.
  const bool counted = tracker.Started();
  EXPECT_FALSE(counted);
  tracker.Ended(counted);
  const absl::Time start = absl::Now();
  EXPECT_TRUE(tracker.BeginAndWait(absl::ZeroDuration(), start + absl::Seconds(60)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(DrainTrackerTest, TheDeadlineBoundsTheWait) {
  DrainTracker tracker;
  const bool counted = tracker.Started();  // never ends before the deadline
  const absl::Time start = absl::Now();
  EXPECT_FALSE(tracker.BeginAndWait(absl::Seconds(5), start + absl::Milliseconds(200)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  tracker.Ended(counted);
}

TEST(DrainTrackerTest, TheLingerStopsAtTheDeadline) {
  DrainTracker tracker;
  tracker.Ended(tracker.Started());
  const absl::Time start = absl::Now();
  EXPECT_TRUE(tracker.BeginAndWait(absl::Seconds(60), start + absl::Milliseconds(200)));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

}  // namespace
}  // namespace rectifier::service
