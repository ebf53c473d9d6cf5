// Scheduler tests on a FakeClock: batching decisions as the workers apply
// them, priorities, queue policies, errors, ordering and shutdown. Time moves
// only when a test advances the clock (which pokes the scheduler).
#include "server/scheduling/dynamic_batch_scheduler.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/common/queue_full.h"
#include "tests/scheduling/fake_clock.h"
#include "tests/scheduling/recording_executor.h"

namespace rectifier::scheduling {
namespace {

using testing::Collector;
using testing::ExpectedOutput;
using testing::FirstOutput;
using testing::RecordingModel;

class DynamicBatchSchedulerTest : public ::testing::Test {
 protected:
  DynamicBatchSchedulerTest() {
    options_.model_name = "resnet50";
    options_.model_version = "1";
    options_.max_batch_size = 8;
    options_.max_queue_delay = absl::Milliseconds(100);
  }
  ~DynamicBatchSchedulerTest() override {
    clock_.ClearListeners();
    scheduler_.reset();
  }

  void Start(int instances = 1) {
    absl::StatusOr<std::unique_ptr<DynamicBatchScheduler>> scheduler =
        DynamicBatchScheduler::Create(options_, model_.NewInstances(instances), &clock_);
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(scheduler).value();
    clock_.AddListener([this] { scheduler_->Poke(); });
  }

  void Enqueue(int64_t value, std::vector<int64_t> shape = {1, 1}, uint64_t priority = 0) {
    scheduler_->Enqueue(collector_.Request(value, std::move(shape), priority));
  }

  // Occupies the (single) instance with request `value` until Release().
  void Occupy(int64_t value = 100) {
    model_.BlockNext();
    Enqueue(value);
    ASSERT_TRUE(model_.WaitBlocked());
  }

  absl::StatusCode Code(int64_t value) const {
    return collector_.Get("r" + std::to_string(value)).result.status().code();
  }
  void ExpectComputed(int64_t value) const {
    const testing::Answer answer = collector_.Get("r" + std::to_string(value));
    EXPECT_EQ(answer.calls, 1);
    ASSERT_TRUE(answer.result.ok()) << value << ": " << answer.result.status();
    EXPECT_EQ(FirstOutput(answer), ExpectedOutput(value));
  }

  SchedulerOptions options_;
  FakeClock clock_;
  RecordingModel model_;
  Collector collector_;
  std::unique_ptr<DynamicBatchScheduler> scheduler_;  // destroyed first
};

TEST_F(DynamicBatchSchedulerTest, CreateRejectsInvalidOptions) {
  const auto code = [&](const SchedulerOptions& options, int instances = 1) {
    return CreateDynamicBatchScheduler(options, model_.NewInstances(instances), &clock_)
        .status()
        .code();
  };
  EXPECT_EQ(code(options_), absl::StatusCode::kOk);
  EXPECT_EQ(code(options_, 0), absl::StatusCode::kInvalidArgument);
  SchedulerOptions bad = options_;
  bad.max_batch_size = 0;
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.preferred_batch_sizes = {4, 16};
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.priority_levels = 2;
  bad.default_priority_level = 3;
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad.default_priority_level = 0;
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad.default_priority_level = 2;
  EXPECT_EQ(code(bad), absl::StatusCode::kOk);
  bad.priority_queue_policy[3] = QueuePolicy();
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.max_queue_delay = absl::Milliseconds(-1);
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.default_queue_policy.default_timeout = absl::Milliseconds(-1);
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  bad = options_;
  bad.max_total_queue = 0;
  EXPECT_EQ(code(bad), absl::StatusCode::kInvalidArgument);
  std::vector<std::unique_ptr<BatchExecutor>> with_null;
  with_null.push_back(nullptr);
  EXPECT_EQ(CreateDynamicBatchScheduler(options_, std::move(with_null), &clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DynamicBatchSchedulerTest, PreferredSizeDispatchesWithoutWaitingForTheDelay) {
  options_.preferred_batch_sizes = {4};
  options_.max_queue_delay = absl::Hours(1);
  Start();
  for (int64_t v = 1; v <= 4; ++v) Enqueue(v);
  ASSERT_TRUE(collector_.WaitFor(4));
  EXPECT_EQ(model_.batch_sizes(), (std::vector<int64_t>{4}));
  for (int64_t v = 1; v <= 4; ++v) ExpectComputed(v);
  const RequestTimes times = collector_.Get("r1").times;
  EXPECT_EQ(times.batch_size, 4);
  EXPECT_EQ(times.enqueued, clock_.Now());  // the clock never moved
  EXPECT_EQ(times.batch_start, clock_.Now());
}

TEST_F(DynamicBatchSchedulerTest, MaxQueueDelayDispatchesAPartialBatch) {
  options_.preferred_batch_sizes = {4};
  const absl::Time t0 = clock_.Now();
  Start();
  for (int64_t v = 1; v <= 3; ++v) Enqueue(v);
  clock_.Advance(absl::Milliseconds(90));
  EXPECT_EQ(scheduler_->queue_depth(), 3u);
  clock_.Advance(absl::Milliseconds(10));
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(model_.batch_sizes(), (std::vector<int64_t>{3}));
  for (int64_t v = 1; v <= 3; ++v) ExpectComputed(v);
  // Dispatched exactly when the oldest request had waited max_queue_delay.
  const RequestTimes times = collector_.Get("r1").times;
  EXPECT_EQ(times.enqueued, t0);
  EXPECT_EQ(times.batch_start, t0 + absl::Milliseconds(100));
  EXPECT_EQ(times.compute_end, t0 + absl::Milliseconds(100));
  EXPECT_EQ(times.batch_size, 3);
}

TEST_F(DynamicBatchSchedulerTest, FullBatchGoesAtOnceAndTheRestWaits) {
  options_.max_batch_size = 4;
  options_.max_queue_delay = absl::Hours(1);
  Start();
  for (int64_t v = 1; v <= 6; ++v) Enqueue(v);
  ASSERT_TRUE(collector_.WaitFor(4));
  EXPECT_EQ(scheduler_->queue_depth(), 2u);
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(collector_.WaitFor(6));
  EXPECT_EQ(model_.batch_sizes(), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  for (int64_t v = 1; v <= 6; ++v) ExpectComputed(v);
}

TEST_F(DynamicBatchSchedulerTest, MultiRowRequestsAreSplitBackByRows) {
  options_.preferred_batch_sizes = {5};
  Start();
  Enqueue(7, {2, 1});
  Enqueue(9, {3, 1});
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_EQ(model_.batch_sizes(), (std::vector<int64_t>{5}));
  const testing::Answer answer = collector_.Get("r9");
  ASSERT_TRUE(answer.result.ok());
  ASSERT_EQ(answer.result->size(), 2u);
  const common::Tensor& out0 = (*answer.result)[0];
  const common::Tensor& out1 = (*answer.result)[1];
  EXPECT_EQ(out0.shape, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(std::vector<int64_t>(out0.data<int64_t>(), out0.data<int64_t>() + 3),
            (std::vector<int64_t>{19, 19, 19}));
  EXPECT_EQ(out1.shape, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(out1.data<int64_t>()[4], 9);
  EXPECT_EQ(out1.data<int64_t>()[5], -9);
  EXPECT_EQ((*collector_.Get("r7").result)[0].shape, (std::vector<int64_t>{2, 1}));
}

TEST_F(DynamicBatchSchedulerTest, DifferentShapesNeverShareABatch) {
  Start();
  Enqueue(1, {1, 2});
  Enqueue(2, {1, 2});
  Enqueue(3, {1, 3});  // closes the [*, 2] batch at once
  ASSERT_TRUE(collector_.WaitFor(2));
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_TRUE(collector_.WaitFor(3));
  const std::vector<testing::RecordedBatch> batches = model_.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].input_shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(batches[0].values, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(batches[1].input_shape, (std::vector<int64_t>{1, 3}));
  for (int64_t v = 1; v <= 3; ++v) ExpectComputed(v);
}

// A queue of mixed shapes (images of two sizes) still forms full batches of
// each: the head's shape is collected from behind the other one.
TEST_F(DynamicBatchSchedulerTest, MixedShapesBatchEachShapeTogether) {
  options_.max_batch_size = 4;
  Start();
  model_.BlockNext();  // the instance busy with 100 while the others queue
  Enqueue(100);
  clock_.Advance(absl::Milliseconds(100));
  ASSERT_TRUE(model_.WaitBlocked());
  Enqueue(1, {1, 2});
  Enqueue(2, {1, 3});
  Enqueue(3, {1, 2});
  Enqueue(4, {1, 2});
  Enqueue(5, {1, 3});
  Enqueue(6, {1, 2});
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(5));       // 100, then 1, 3, 4, 6 at once
  clock_.Advance(absl::Milliseconds(100));  // 2 and 5: nothing else waits, so the delay runs
  ASSERT_TRUE(collector_.WaitFor(7));
  const std::vector<testing::RecordedBatch> batches = model_.batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[1].input_shape, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(batches[1].values, (std::vector<int64_t>{1, 3, 4, 6}));
  EXPECT_EQ(batches[2].input_shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(batches[2].values, (std::vector<int64_t>{2, 5}));
  for (int64_t v : {1, 2, 3, 4, 5, 6}) ExpectComputed(v);
}

TEST_F(DynamicBatchSchedulerTest, HigherPriorityRunsFirst) {
  options_.max_batch_size = 1;
  options_.priority_levels = 2;
  options_.default_priority_level = 2;
  Start();
  Occupy(100);
  Enqueue(1, {1, 1}, 2);
  Enqueue(2, {1, 1}, 0);  // default level 2
  Enqueue(3, {1, 1}, 1);
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(4));
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100, 3, 1, 2}));
}

TEST_F(DynamicBatchSchedulerTest, PriorityOutOfRangeIsRejectedAtOnce) {
  options_.priority_levels = 2;
  options_.default_priority_level = 1;
  Start();
  Enqueue(1, {1, 1}, 3);
  ASSERT_EQ(collector_.total_calls(), 1u);  // answered inside Enqueue
  EXPECT_EQ(Code(1), absl::StatusCode::kInvalidArgument);
}

TEST_F(DynamicBatchSchedulerTest, BadInputsAreRejectedAtOnce) {
  Start();
  Enqueue(1, {9, 1});  // batch 9 > max_batch_size 8
  auto empty = collector_.Request(2);
  empty->inputs.clear();
  scheduler_->Enqueue(std::move(empty));
  ASSERT_EQ(collector_.total_calls(), 2u);
  EXPECT_EQ(Code(1), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(2), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(model_.batches().empty());
}

TEST_F(DynamicBatchSchedulerTest, FullQueueAnswersUnavailableNamingModelAndLimit) {
  options_.max_batch_size = 1;
  options_.default_queue_policy.max_queue_size = 2;
  Start();
  Occupy(100);
  Enqueue(1);
  Enqueue(2);
  Enqueue(3);
  ASSERT_TRUE(collector_.has("r3"));  // answered inside Enqueue
  const testing::Answer rejected = collector_.Get("r3");
  EXPECT_EQ(rejected.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(rejected.result.status().message(),
            "model 'resnet50' version 1: queue full (max_queue_size 2)");
  EXPECT_TRUE(common::IsQueueFull(rejected.result.status()));
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(4));
  ExpectComputed(1);
  ExpectComputed(2);
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100, 1, 2}));
}

TEST_F(DynamicBatchSchedulerTest, RejectTimeoutAnswersDeadlineExceededWithoutCompute) {
  options_.max_batch_size = 1;
  options_.default_queue_policy.default_timeout = absl::Milliseconds(50);
  Start();
  Occupy(100);
  Enqueue(1);
  clock_.Advance(absl::Milliseconds(50));
  Enqueue(2);
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(Code(1), absl::StatusCode::kDeadlineExceeded);
  ExpectComputed(2);
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100, 2}));
  EXPECT_EQ(collector_.Get("r1").times.batch_size, 0);
}

TEST_F(DynamicBatchSchedulerTest, DelayTimeoutMovesTheRequestBehindFreshOnes) {
  options_.max_batch_size = 1;
  options_.default_queue_policy.default_timeout = absl::Milliseconds(50);
  options_.default_queue_policy.timeout_action = QueuePolicy::TimeoutAction::kDelay;
  Start();
  Occupy(100);
  Enqueue(1);
  clock_.Advance(absl::Milliseconds(60));
  Enqueue(2);
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100, 2, 1}));
  ExpectComputed(1);
  ExpectComputed(2);
}

TEST_F(DynamicBatchSchedulerTest, RequestDeadlineIsAnsweredWhenItPassesNotAtDispatch) {
  options_.max_queue_delay = absl::Hours(1);
  Start();
  auto request = collector_.Request(1);
  request->deadline = clock_.Now() + absl::Milliseconds(10);
  scheduler_->Enqueue(std::move(request));
  clock_.Advance(absl::Milliseconds(10));
  ASSERT_TRUE(collector_.WaitFor(1));
  EXPECT_EQ(Code(1), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(model_.batches().empty());
}

TEST_F(DynamicBatchSchedulerTest, CancelledRequestIsNotComputed) {
  options_.max_batch_size = 1;
  Start();
  Occupy(100);
  std::atomic<bool> cancelled{false};
  auto request = collector_.Request(1);
  request->is_cancelled = [&cancelled] { return cancelled.load(); };
  scheduler_->Enqueue(std::move(request));
  Enqueue(2);
  cancelled = true;
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(Code(1), absl::StatusCode::kCancelled);
  ExpectComputed(2);
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100, 2}));
}

TEST_F(DynamicBatchSchedulerTest, ExecutorErrorFailsTheWholeBatch) {
  options_.preferred_batch_sizes = {3};
  model_.FailWith(absl::ResourceExhaustedError("out of arena"));
  Start();
  for (int64_t v = 1; v <= 3; ++v) Enqueue(v);
  ASSERT_TRUE(collector_.WaitFor(3));
  for (int64_t v = 1; v <= 3; ++v) {
    const absl::Status status = collector_.Get("r" + std::to_string(v)).result.status();
    EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(status.message(), "out of arena");
  }
}

TEST_F(DynamicBatchSchedulerTest, OutputWithWrongBatchIsInternal) {
  options_.preferred_batch_sizes = {1, 2};
  model_.ReturnWrongBatch(true);
  Start();
  Enqueue(1);
  ASSERT_TRUE(collector_.WaitFor(1));
  Enqueue(2, {2, 1});
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_EQ(Code(1), absl::StatusCode::kInternal);
  EXPECT_EQ(Code(2), absl::StatusCode::kInternal);
}

TEST_F(DynamicBatchSchedulerTest, NonBatchableModelRunsEachRequestAsIs) {
  options_.batchable = false;
  options_.max_batch_size = 1;
  options_.max_queue_delay = absl::Hours(1);
  Start();
  Enqueue(4, {3});
  Enqueue(5, {3});
  ASSERT_TRUE(collector_.WaitFor(2));
  const std::vector<testing::RecordedBatch> batches = model_.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].input_shape, (std::vector<int64_t>{3}));
  ExpectComputed(4);
  ExpectComputed(5);
}

TEST_F(DynamicBatchSchedulerTest, PreserveOrderingHoldsLaterResponsesAcrossInstances) {
  options_.max_batch_size = 1;
  options_.preserve_ordering = true;
  Start(2);
  Occupy(100);  // instance A
  Enqueue(1);   // instance B computes it while A is blocked
  ASSERT_TRUE(model_.WaitBatches(2));
  EXPECT_EQ(collector_.total_calls(), 0u);
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_EQ(collector_.order(), (std::vector<std::string>{"r100", "r1"}));
}

TEST_F(DynamicBatchSchedulerTest, PreserveOrderingAlsoOrdersErrorAnswers) {
  options_.preserve_ordering = true;
  options_.max_queue_delay = absl::Hours(1);
  Start(2);
  model_.BlockNext();
  Enqueue(100, {8, 1});  // a full batch: instance A takes it at once
  ASSERT_TRUE(model_.WaitBlocked());
  auto request = collector_.Request(1);
  request->deadline = clock_.Now() + absl::Milliseconds(10);
  scheduler_->Enqueue(std::move(request));                      // instance B waits for more
  clock_.Advance(absl::Milliseconds(10));                       // ... and expires it
  EXPECT_FALSE(collector_.WaitFor(1, absl::Milliseconds(20)));  // held behind r100
  model_.Release();
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_EQ(collector_.order(), (std::vector<std::string>{"r100", "r1"}));
  EXPECT_EQ(Code(1), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(model_.batch_sizes(), (std::vector<int64_t>{8}));
}

TEST_F(DynamicBatchSchedulerTest, ShutdownDrainsWithoutWaitingForTheDelay) {
  options_.max_queue_delay = absl::Hours(1);
  Start();
  for (int64_t v = 1; v <= 3; ++v) Enqueue(v);
  scheduler_->Shutdown(absl::InfiniteFuture());
  ASSERT_EQ(collector_.total_calls(), 3u);
  for (int64_t v = 1; v <= 3; ++v) ExpectComputed(v);
  Enqueue(4);
  EXPECT_EQ(Code(4), absl::StatusCode::kUnavailable);
  EXPECT_EQ(collector_.Get("r4").result.status().message(),
            "model 'resnet50' version 1: server shutting down");
  scheduler_->Shutdown(absl::InfiniteFuture());  // idempotent
}

TEST_F(DynamicBatchSchedulerTest, ShutdownPastDeadlineAnswersQueuedUnavailable) {
  options_.max_batch_size = 1;
  Start();
  Occupy(100);
  Enqueue(1);
  Enqueue(2);
  const absl::Time deadline = clock_.Now() + absl::Seconds(1);
  std::thread stopper([&] { scheduler_->Shutdown(deadline); });
  EXPECT_FALSE(collector_.WaitFor(1, absl::Milliseconds(20)));  // still draining
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_EQ(Code(1), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Code(2), absl::StatusCode::kUnavailable);
  model_.Release();  // Shutdown joins the worker once its batch is done
  stopper.join();
  ExpectComputed(100);
  EXPECT_EQ(model_.executed_values(), (std::vector<int64_t>{100}));
}

TEST_F(DynamicBatchSchedulerTest, DestructorAnswersEveryQueuedRequestOnce) {
  options_.max_queue_delay = absl::Hours(1);
  Start(2);
  for (int64_t v = 1; v <= 5; ++v) Enqueue(v);
  clock_.ClearListeners();
  scheduler_.reset();
  ASSERT_EQ(collector_.total_calls(), 5u);
  for (int64_t v = 1; v <= 5; ++v) {
    const testing::Answer answer = collector_.Get("r" + std::to_string(v));
    EXPECT_EQ(answer.calls, 1);
    if (answer.result.ok()) {
      EXPECT_EQ(FirstOutput(answer), ExpectedOutput(v));
    } else {
      EXPECT_EQ(answer.result.status().code(), absl::StatusCode::kUnavailable);
    }
  }
}

}  // namespace
}  // namespace rectifier::scheduling
