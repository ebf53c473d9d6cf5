// Tests for the priority queue and its per-level policies.
#include "server/scheduling/request_queue.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rectifier::scheduling {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

class RequestQueueTest : public ::testing::Test {
 protected:
  RequestQueueTest() {
    options_.model_name = "resnet50";
    options_.model_version = "1";
  }

  // Pushes a request "<id>" at time `at` and priority `priority`.
  void Push(RequestQueue& queue, const std::string& id, absl::Time at, uint64_t priority = 0,
            absl::Time deadline = absl::InfiniteFuture()) {
    QueuedRequest item;
    item.request = std::make_unique<InferenceRequest>();
    item.request->id = id;
    item.request->deadline = deadline;
    absl::StatusOr<uint64_t> level = queue.LevelFor(priority);
    ASSERT_TRUE(level.ok()) << level.status();
    ASSERT_TRUE(queue.CheckCapacity(*level).ok());
    item.level = *level;
    item.enqueued = at;
    queue.Push(std::move(item));
  }

  static std::vector<std::string> Ids(const std::vector<QueuedRequest>& items) {
    std::vector<std::string> ids;
    ids.reserve(items.size());
    for (const QueuedRequest& item : items) ids.push_back(item.request->id);
    return ids;
  }
  static std::vector<std::string> Ids(const std::vector<ExpiredRequest>& items) {
    std::vector<std::string> ids;
    ids.reserve(items.size());
    for (const ExpiredRequest& item : items) ids.push_back(item.item.request->id);
    return ids;
  }

  SchedulerOptions options_;
};

TEST_F(RequestQueueTest, HigherPriorityLevelsComeFirst) {
  options_.priority_levels = 3;
  options_.default_priority_level = 2;
  RequestQueue queue(options_);
  Push(queue, "low", kT0, 3);
  Push(queue, "default", kT0, 0);
  Push(queue, "high", kT0, 1);
  Push(queue, "high2", kT0, 1);
  EXPECT_EQ(queue.size(), 4u);
  EXPECT_EQ(Ids(queue.PopAll()), (std::vector<std::string>{"high", "high2", "default", "low"}));
  EXPECT_TRUE(queue.empty());
}

TEST_F(RequestQueueTest, PriorityOutOfRangeIsInvalid) {
  options_.priority_levels = 2;
  options_.default_priority_level = 1;
  RequestQueue queue(options_);
  EXPECT_EQ(queue.LevelFor(3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*queue.LevelFor(0), 1u);
  EXPECT_EQ(*queue.LevelFor(2), 2u);
}

TEST_F(RequestQueueTest, FullLevelNamesModelAndLimit) {
  options_.default_queue_policy.max_queue_size = 2;
  RequestQueue queue(options_);
  Push(queue, "a", kT0);
  Push(queue, "b", kT0);
  const absl::Status status = queue.CheckCapacity(1);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "model 'resnet50' version 1: queue full (max_queue_size 2)");
}

TEST_F(RequestQueueTest, LevelLimitsAreIndependent) {
  options_.priority_levels = 2;
  options_.default_priority_level = 2;
  QueuePolicy small;
  small.max_queue_size = 1;
  options_.priority_queue_policy[1] = small;
  RequestQueue queue(options_);
  Push(queue, "high", kT0, 1);
  EXPECT_EQ(queue.CheckCapacity(1).message(),
            "model 'resnet50' version 1: queue full (max_queue_size 1 at priority level 1)");
  EXPECT_TRUE(queue.CheckCapacity(2).ok());
}

TEST_F(RequestQueueTest, GlobalBoundApplies) {
  options_.max_total_queue = 2;
  RequestQueue queue(options_);
  Push(queue, "a", kT0);
  Push(queue, "b", kT0);
  EXPECT_EQ(queue.CheckCapacity(1).message(),
            "model 'resnet50' version 1: queue full (max_total_queue 2)");
}

TEST_F(RequestQueueTest, DeadlineExpiresRequest) {
  RequestQueue queue(options_);
  Push(queue, "a", kT0, 0, kT0 + absl::Microseconds(10));
  Push(queue, "b", kT0);
  EXPECT_EQ(queue.NextExpiry(), kT0 + absl::Microseconds(10));
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(9), &expired);
  EXPECT_TRUE(expired.empty());
  queue.Expire(kT0 + absl::Microseconds(10), &expired);
  ASSERT_EQ(Ids(expired), (std::vector<std::string>{"a"}));
  EXPECT_EQ(expired[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue.NextExpiry(), absl::InfiniteFuture());
}

TEST_F(RequestQueueTest, RejectPolicyTimesOut) {
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  RequestQueue queue(options_);
  Push(queue, "a", kT0);
  Push(queue, "b", kT0 + absl::Microseconds(20));
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(50), &expired);
  ASSERT_EQ(Ids(expired), (std::vector<std::string>{"a"}));
  EXPECT_EQ(expired[0].status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(queue.NextExpiry(), kT0 + absl::Microseconds(70));
}

TEST_F(RequestQueueTest, DelayPolicyMovesTimedOutBehind) {
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  options_.default_queue_policy.timeout_action = QueuePolicy::TimeoutAction::kDelay;
  RequestQueue queue(options_);
  Push(queue, "a", kT0);
  Push(queue, "b", kT0 + absl::Microseconds(1));
  Push(queue, "c", kT0 + absl::Microseconds(40));
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(60), &expired);
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(queue.size(), 3u);
  std::vector<PendingRequest> snapshot;
  queue.Peek(10, &snapshot);
  ASSERT_EQ(snapshot.size(), 3u);
  EXPECT_EQ(snapshot[0].enqueued, kT0 + absl::Microseconds(40));  // c first
  EXPECT_EQ(Ids(queue.PopAll()), (std::vector<std::string>{"c", "a", "b"}));
}

TEST_F(RequestQueueTest, DelayedRequestsStayAheadOfLowerLevels) {
  options_.priority_levels = 2;
  options_.default_priority_level = 1;
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  options_.default_queue_policy.timeout_action = QueuePolicy::TimeoutAction::kDelay;
  RequestQueue queue(options_);
  Push(queue, "high-late", kT0, 1);
  Push(queue, "low", kT0 + absl::Microseconds(55), 2);
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(60), &expired);
  EXPECT_EQ(Ids(queue.PopAll()), (std::vector<std::string>{"high-late", "low"}));
}

TEST_F(RequestQueueTest, DelayedRequestStillHonoursItsDeadline) {
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  options_.default_queue_policy.timeout_action = QueuePolicy::TimeoutAction::kDelay;
  RequestQueue queue(options_);
  Push(queue, "a", kT0, 0, kT0 + absl::Microseconds(80));
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(50), &expired);
  EXPECT_TRUE(expired.empty());
  EXPECT_EQ(queue.NextExpiry(), kT0 + absl::Microseconds(80));
  queue.Expire(kT0 + absl::Microseconds(80), &expired);
  EXPECT_EQ(Ids(expired), (std::vector<std::string>{"a"}));
}

TEST_F(RequestQueueTest, OverrideLetsTheRequestDeadlineReplaceTheDefaultTimeout) {
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  options_.default_queue_policy.allow_timeout_override = true;
  RequestQueue queue(options_);
  Push(queue, "own-deadline", kT0, 0, kT0 + absl::Microseconds(500));
  Push(queue, "no-deadline", kT0);
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(100), &expired);
  EXPECT_EQ(Ids(expired), (std::vector<std::string>{"no-deadline"}));
  expired.clear();
  queue.Expire(kT0 + absl::Microseconds(500), &expired);
  EXPECT_EQ(Ids(expired), (std::vector<std::string>{"own-deadline"}));
}

TEST_F(RequestQueueTest, WithoutOverrideTheDefaultTimeoutStillApplies) {
  options_.default_queue_policy.default_timeout = absl::Microseconds(50);
  RequestQueue queue(options_);
  Push(queue, "a", kT0, 0, kT0 + absl::Microseconds(500));
  std::vector<ExpiredRequest> expired;
  queue.Expire(kT0 + absl::Microseconds(50), &expired);
  EXPECT_EQ(Ids(expired), (std::vector<std::string>{"a"}));
}

TEST_F(RequestQueueTest, PeekAndPopFrontFollowDispatchOrder) {
  RequestQueue queue(options_);
  Push(queue, "a", kT0);
  Push(queue, "b", kT0 + absl::Microseconds(1));
  Push(queue, "c", kT0 + absl::Microseconds(2));
  std::vector<PendingRequest> snapshot;
  queue.Peek(2, &snapshot);
  ASSERT_EQ(snapshot.size(), 2u);
  EXPECT_EQ(snapshot[1].enqueued, kT0 + absl::Microseconds(1));
  EXPECT_EQ(Ids(queue.PopFront(2)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(queue.size(), 1u);
}

// PopAt takes the batch's members out of the middle of the queue (requests
// of another shape passed over), across priority levels, and leaves the
// others in order.
TEST_F(RequestQueueTest, PopAtTakesChosenPositionsAndKeepsTheRestInOrder) {
  options_.priority_levels = 2;
  options_.default_priority_level = 2;
  RequestQueue queue(options_);
  Push(queue, "a", kT0, /*priority=*/1);
  Push(queue, "b", kT0 + absl::Microseconds(1), 1);
  Push(queue, "c", kT0 + absl::Microseconds(2), 1);
  Push(queue, "d", kT0 + absl::Microseconds(3), 2);
  Push(queue, "e", kT0 + absl::Microseconds(4), 2);
  EXPECT_EQ(Ids(queue.PopAt({0, 2, 4})), (std::vector<std::string>{"a", "c", "e"}));
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(Ids(queue.PopAll()), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(queue.size(), 0u);
}

}  // namespace
}  // namespace rectifier::scheduling
