// Tests for the pure batching decision (no threads, no clock).
#include "server/scheduling/batch_policy.h"

#include <vector>

#include "gtest/gtest.h"

namespace rectifier::scheduling {
namespace {

using Reason = BatchDecision::Reason;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

class BatchPolicyTest : public ::testing::Test {
 protected:
  BatchPolicyTest() {
    shape_a_.inputs.push_back({common::DataType::kFloat32, {3, 4}});
    shape_b_.inputs.push_back({common::DataType::kFloat32, {3, 5}});
    options_.max_batch_size = 8;
    options_.max_queue_delay = absl::Microseconds(100);
  }

  // `sizes[i]` arrives at kT0 + i microseconds, with shape A.
  std::vector<PendingRequest> Queue(const std::vector<int64_t>& sizes) {
    std::vector<PendingRequest> queue;
    for (size_t i = 0; i < sizes.size(); ++i) {
      queue.push_back({sizes[i], kT0 + absl::Microseconds(static_cast<int64_t>(i)), &shape_a_});
    }
    return queue;
  }

  BatchSignature shape_a_;
  BatchSignature shape_b_;
  BatchPolicyOptions options_;
};

TEST_F(BatchPolicyTest, EmptyQueueWaitsForever) {
  const BatchDecision decision = DecideBatch({}, kT0, options_);
  EXPECT_FALSE(decision.dispatch());
  EXPECT_EQ(decision.reason, Reason::kEmpty);
  EXPECT_EQ(decision.wait_until, absl::InfiniteFuture());
}

TEST_F(BatchPolicyTest, WaitsUntilOldestPlusMaxDelay) {
  const auto queue = Queue({1, 1, 1});
  const BatchDecision decision = DecideBatch(queue, kT0 + absl::Microseconds(50), options_);
  EXPECT_FALSE(decision.dispatch());
  EXPECT_EQ(decision.reason, Reason::kWaitForMore);
  EXPECT_EQ(decision.wait_until, kT0 + absl::Microseconds(100));
}

TEST_F(BatchPolicyTest, DispatchesEverythingWhenDelayExpires) {
  const auto queue = Queue({1, 2, 1});
  const BatchDecision early = DecideBatch(queue, kT0 + absl::Microseconds(99), options_);
  EXPECT_FALSE(early.dispatch());
  const BatchDecision decision = DecideBatch(queue, kT0 + absl::Microseconds(100), options_);
  EXPECT_EQ(decision.reason, Reason::kDelayExpired);
  EXPECT_EQ(decision.count, 3u);
  EXPECT_EQ(decision.batch_size, 4);
}

TEST_F(BatchPolicyTest, ZeroDelayDispatchesWhatIsQueued) {
  options_.max_queue_delay = absl::ZeroDuration();
  const BatchDecision decision = DecideBatch(Queue({1, 1}), kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kDelayExpired);
  EXPECT_EQ(decision.count, 2u);
}

TEST_F(BatchPolicyTest, OldestRequestInTheCandidateSetsTheDelay) {
  // Dispatch order is by priority, so a later entry can be older.
  auto queue = Queue({1, 1});
  queue[1].enqueued = kT0 - absl::Microseconds(40);
  const BatchDecision decision = DecideBatch(queue, kT0, options_);
  EXPECT_EQ(decision.wait_until, kT0 + absl::Microseconds(60));
}

TEST_F(BatchPolicyTest, PreferredSizeDispatchesAtOnce) {
  options_.preferred_batch_sizes = {4};
  const BatchDecision three = DecideBatch(Queue({1, 1, 1}), kT0, options_);
  EXPECT_FALSE(three.dispatch());
  const BatchDecision four = DecideBatch(Queue({1, 1, 1, 1}), kT0, options_);
  EXPECT_EQ(four.reason, Reason::kPreferredSize);
  EXPECT_EQ(four.count, 4u);
  EXPECT_EQ(four.batch_size, 4);
}

TEST_F(BatchPolicyTest, LargestReachablePreferredSizeWins) {
  options_.preferred_batch_sizes = {2, 4, 6};
  // Prefix sums 2, 4, 5: 6 is not reachable, 4 is the largest reached.
  const BatchDecision decision = DecideBatch(Queue({2, 2, 1}), kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kPreferredSize);
  EXPECT_EQ(decision.count, 2u);
  EXPECT_EQ(decision.batch_size, 4);
}

TEST_F(BatchPolicyTest, PreferredSizeMustBeHitExactly) {
  options_.preferred_batch_sizes = {4};
  // Prefix sums 3, 5: never 4, so wait for the delay.
  const BatchDecision decision = DecideBatch(Queue({3, 2}), kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kWaitForMore);
}

TEST_F(BatchPolicyTest, FullBatchDispatchesAtOnceAndLeavesTheRest) {
  const BatchDecision decision = DecideBatch(Queue({4, 4, 1}), kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kMaxBatchSize);
  EXPECT_EQ(decision.count, 2u);
  EXPECT_EQ(decision.batch_size, 8);
}

TEST_F(BatchPolicyTest, RequestThatWouldOverflowClosesTheBatch) {
  // 5 + 4 > 8: the batch cannot grow, send the 5 now.
  const BatchDecision decision = DecideBatch(Queue({5, 4}), kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kCannotGrow);
  EXPECT_EQ(decision.count, 1u);
  EXPECT_EQ(decision.batch_size, 5);
}

TEST_F(BatchPolicyTest, DifferentShapeClosesTheBatch) {
  auto queue = Queue({1, 1, 1});
  queue[2].signature = &shape_b_;
  const BatchDecision decision = DecideBatch(queue, kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kCannotGrow);
  EXPECT_EQ(decision.count, 2u);  // never mixes A and B
  EXPECT_EQ(decision.members, (std::vector<size_t>{0, 1}));
}

// Mixed shapes: the head's shape collects its requests from behind the
// others, so a common shape still batches; the others are not waited for.
TEST_F(BatchPolicyTest, RequestsOfOtherShapesArePassedOver) {
  auto queue = Queue({1, 1, 2, 1, 1, 1});
  queue[1].signature = &shape_b_;
  queue[4].signature = &shape_b_;
  const BatchDecision decision = DecideBatch(queue, kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kCannotGrow);
  EXPECT_EQ(decision.members, (std::vector<size_t>{0, 2, 3, 5}));
  EXPECT_EQ(decision.count, 4u);
  EXPECT_EQ(decision.batch_size, 5);
  // Up to max: 5 + 4 > 8 stops at the request that would overflow.
  auto full = Queue({4, 1, 3, 2});
  full[1].signature = &shape_b_;
  const BatchDecision capped = DecideBatch(full, kT0, options_);
  EXPECT_EQ(capped.members, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(capped.batch_size, 7);
  // A head of a rare shape runs at once rather than hold the others back.
  auto rare = Queue({1, 1, 1});
  rare[0].signature = &shape_b_;
  const BatchDecision alone = DecideBatch(rare, kT0, options_);
  EXPECT_EQ(alone.reason, Reason::kCannotGrow);
  EXPECT_EQ(alone.members, (std::vector<size_t>{0}));
}

TEST_F(BatchPolicyTest, LookaheadCoversSeveralBatches) {
  EXPECT_EQ(BatchLookahead(options_), 33u);
  options_.max_batch_size = 1;
  EXPECT_EQ(BatchLookahead(options_), 2u);
  options_.max_batch_size = 4096;
  EXPECT_EQ(BatchLookahead(options_), 1024u);
}

TEST_F(BatchPolicyTest, EqualSignaturesAtDifferentAddressesBatchTogether) {
  BatchSignature copy_of_a = shape_a_;
  auto queue = Queue({1, 1});
  queue[1].signature = &copy_of_a;
  const BatchDecision decision = DecideBatch(queue, kT0 + absl::Seconds(1), options_);
  EXPECT_EQ(decision.count, 2u);
}

TEST_F(BatchPolicyTest, DifferentTypeIsADifferentShape) {
  BatchSignature int_a;
  int_a.inputs.push_back({common::DataType::kInt64, {3, 4}});
  auto queue = Queue({1, 1});
  queue[1].signature = &int_a;
  const BatchDecision decision = DecideBatch(queue, kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kCannotGrow);
  EXPECT_EQ(decision.count, 1u);
}

TEST_F(BatchPolicyTest, ShapeMismatchBeatsPreferredPrefix) {
  // Sums 2, 3 then a B: the batch cannot grow, so all 3 rows go (not the
  // preferred 2, which would leave a lone 1 behind).
  options_.preferred_batch_sizes = {2};
  auto queue = Queue({2, 1, 1});
  queue[2].signature = &shape_b_;
  const BatchDecision decision = DecideBatch(queue, kT0, options_);
  EXPECT_EQ(decision.reason, Reason::kCannotGrow);
  EXPECT_EQ(decision.batch_size, 3);
}

TEST_F(BatchPolicyTest, NonBatchableRunsOneAtATime) {
  SchedulerOptions scheduler;
  scheduler.batchable = false;
  scheduler.max_batch_size = 8;
  scheduler.preferred_batch_sizes = {4};
  scheduler.max_queue_delay = absl::Seconds(1);
  const BatchPolicyOptions options = BatchPolicyOptions::From(scheduler);
  EXPECT_EQ(options.max_batch_size, 1);
  EXPECT_TRUE(options.preferred_batch_sizes.empty());
  const BatchDecision decision = DecideBatch(Queue({1, 1, 1}), kT0, options);
  EXPECT_EQ(decision.count, 1u);
}

TEST_F(BatchPolicyTest, DynamicBatchingOffTakesWhatIsQueuedWithoutWaiting) {
  SchedulerOptions scheduler;
  scheduler.max_batch_size = 4;
  scheduler.dynamic_batching = false;
  scheduler.max_queue_delay = absl::Seconds(1);
  const BatchPolicyOptions options = BatchPolicyOptions::From(scheduler);
  const BatchDecision decision = DecideBatch(Queue({1, 1, 1, 1, 1}), kT0, options);
  EXPECT_EQ(decision.count, 4u);
  const BatchDecision partial = DecideBatch(Queue({1, 1}), kT0, options);
  EXPECT_EQ(partial.count, 2u);
}

TEST_F(BatchPolicyTest, OptionsNormalizePreferredSizes) {
  SchedulerOptions scheduler;
  scheduler.max_batch_size = 8;
  scheduler.preferred_batch_sizes = {8, 2, 4, 2};
  const BatchPolicyOptions options = BatchPolicyOptions::From(scheduler);
  EXPECT_EQ(options.preferred_batch_sizes, (std::vector<int64_t>{2, 4, 8}));
  EXPECT_EQ(options.WithoutDelay().max_queue_delay, absl::ZeroDuration());
}

TEST_F(BatchPolicyTest, IsPure) {
  options_.preferred_batch_sizes = {4};
  const auto queue = Queue({1, 2});
  const BatchDecision a = DecideBatch(queue, kT0 + absl::Microseconds(10), options_);
  const BatchDecision b = DecideBatch(queue, kT0 + absl::Microseconds(10), options_);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.count, b.count);
  EXPECT_EQ(a.wait_until, b.wait_until);
}

}  // namespace
}  // namespace rectifier::scheduling
