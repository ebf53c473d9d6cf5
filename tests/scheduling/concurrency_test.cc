// Concurrency tests on the real clock: many client threads against a slow
// fake model with several instances. Every request carries a unique value and
// must get its own result back exactly once; no deadlock (bounded waits).
// These are the tests the ThreadSanitizer build exists for.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/scheduling/dynamic_batch_scheduler.h"
#include "tests/scheduling/recording_executor.h"

namespace rectifier::scheduling {
namespace {

using testing::Collector;
using testing::ExpectedOutput;
using testing::FirstOutput;
using testing::RecordingModel;

constexpr int kClients = 8;
constexpr int kPerClient = 200;

int64_t ValueOf(int client, int i) { return static_cast<int64_t>(client) * 100000 + i; }

// Requests with i % 3 == 0 use a second input shape, so batches must split
// by shape under load.
std::vector<int64_t> ShapeOf(int i) {
  return i % 3 == 0 ? std::vector<int64_t>{1, 2} : std::vector<int64_t>{1, 1};
}

class ConcurrencyTest : public ::testing::Test {
 protected:
  ConcurrencyTest() {
    options_.model_name = "fake";
    options_.model_version = "1";
    options_.max_batch_size = 8;
    options_.preferred_batch_sizes = {4, 8};
    options_.max_queue_delay = absl::Microseconds(300);
    model_.SetComputeTime(absl::Microseconds(200), /*jitter=*/true);
  }

  void Start(int instances) {
    absl::StatusOr<std::unique_ptr<Scheduler>> scheduler = CreateDynamicBatchScheduler(
        options_, model_.NewInstances(instances), common::Clock::Real());
    ASSERT_TRUE(scheduler.ok()) << scheduler.status();
    scheduler_ = std::move(scheduler).value();
  }

  // Runs kClients threads, each enqueueing kPerClient requests built by
  // `make(client, i)` (nullptr = skip).
  template <typename Make>
  void RunClients(Make make) {
    std::vector<std::thread> clients;
    clients.reserve(kClients);
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        for (int i = 0; i < kPerClient; ++i) {
          std::unique_ptr<InferenceRequest> request = make(c, i);
          if (request != nullptr) scheduler_->Enqueue(std::move(request));
        }
      });
    }
    for (std::thread& client : clients) client.join();
  }

  // Each value's answer arrived once; OK answers carry that value's result.
  void ExpectEachAnsweredOnce(absl::StatusCode allowed_error) {
    for (int c = 0; c < kClients; ++c) {
      for (int i = 0; i < kPerClient; ++i) {
        const int64_t value = ValueOf(c, i);
        const std::string id = "r" + std::to_string(value);
        ASSERT_TRUE(collector_.has(id)) << id;
        const testing::Answer answer = collector_.Get(id);
        EXPECT_EQ(answer.calls, 1) << id;
        if (answer.result.ok()) {
          EXPECT_EQ(FirstOutput(answer), ExpectedOutput(value)) << id;
          EXPECT_EQ((*answer.result)[1].data<int64_t>()[1], -value) << id;
          EXPECT_GE(answer.times.batch_size, 1);
          EXPECT_LE(answer.times.batch_size, options_.max_batch_size);
        } else {
          EXPECT_EQ(answer.result.status().code(), allowed_error) << id << answer.result.status();
        }
      }
    }
  }

  SchedulerOptions options_;
  RecordingModel model_;
  Collector collector_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(ConcurrencyTest, EveryClientGetsItsOwnResultExactlyOnce) {
  Start(3);
  // A metrics reader polls the queue depth while clients run (a gauge does).
  std::atomic<bool> clients_done{false};
  size_t max_depth = 0;
  std::thread gauge([&] {
    while (!clients_done.load()) {
      max_depth = std::max(max_depth, scheduler_->queue_depth());
      std::this_thread::yield();
    }
  });
  RunClients([&](int c, int i) { return collector_.Request(ValueOf(c, i), ShapeOf(i)); });
  clients_done = true;
  gauge.join();
  EXPECT_LE(max_depth, static_cast<size_t>(kClients * kPerClient));
  ASSERT_TRUE(collector_.WaitFor(kClients * kPerClient, absl::Seconds(60)));
  ExpectEachAnsweredOnce(absl::StatusCode::kOk);
  int64_t rows = 0;
  for (const testing::RecordedBatch& batch : model_.batches()) {
    rows += static_cast<int64_t>(batch.values.size());
    // Shapes never mix: every value of the batch has the batch's shape.
    for (const int64_t value : batch.values) {
      EXPECT_EQ(ShapeOf(static_cast<int>(value % 100000)),
                (std::vector<int64_t>{1, batch.input_shape[1]}));
    }
  }
  EXPECT_EQ(rows, kClients * kPerClient);  // nothing computed twice
  scheduler_->Shutdown(absl::InfiniteFuture());
  EXPECT_EQ(collector_.total_calls(), static_cast<size_t>(kClients * kPerClient));
}

TEST_F(ConcurrencyTest, PreserveOrderingKeepsEachClientsOrder) {
  options_.preserve_ordering = true;
  Start(3);
  RunClients([&](int c, int i) { return collector_.Request(ValueOf(c, i)); });
  ASSERT_TRUE(collector_.WaitFor(kClients * kPerClient, absl::Seconds(60)));
  ExpectEachAnsweredOnce(absl::StatusCode::kOk);
  // A client's own requests are accepted in its order, so they must be
  // answered in that order although three instances finish out of order.
  std::vector<int> last(kClients, -1);
  for (const std::string& id : collector_.order()) {
    const int64_t value = std::stoll(id.substr(1));
    const int client = static_cast<int>(value / 100000);
    const int i = static_cast<int>(value % 100000);
    EXPECT_GT(i, last[client]) << id;
    last[client] = i;
  }
}

TEST_F(ConcurrencyTest, ShortDeadlinesUnderLoadAreAnsweredOnce) {
  options_.priority_levels = 2;
  options_.default_priority_level = 2;
  Start(2);
  RunClients([&](int c, int i) {
    auto request = collector_.Request(ValueOf(c, i), {1, 1}, i % 2 == 0 ? 1 : 2);
    if (i % 4 == 1) request->deadline = absl::Now() + absl::Microseconds(200);
    return request;
  });
  ASSERT_TRUE(collector_.WaitFor(kClients * kPerClient, absl::Seconds(60)));
  ExpectEachAnsweredOnce(absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ConcurrencyTest, ShutdownUnderLoadAnswersEveryRequestOnce) {
  options_.max_total_queue = 64;
  Start(2);
  std::atomic<bool> stop_requested{false};
  std::thread stopper([&] {
    collector_.WaitFor(kClients * kPerClient / 4, absl::Seconds(60));
    scheduler_->Shutdown(absl::Now() + absl::Milliseconds(2));
    stop_requested = true;
  });
  RunClients([&](int c, int i) { return collector_.Request(ValueOf(c, i)); });
  stopper.join();
  EXPECT_TRUE(stop_requested);
  // Shutdown has joined the workers: everything is answered by now.
  ASSERT_EQ(collector_.total_calls(), static_cast<size_t>(kClients * kPerClient));
  // Rejections are UNAVAILABLE: queue full (max_total_queue) or shutting down.
  ExpectEachAnsweredOnce(absl::StatusCode::kUnavailable);
}

TEST_F(ConcurrencyTest, CancellationFromAnotherThreadIsSafe) {
  Start(3);
  std::atomic<bool> cancel_odd{false};
  RunClients([&](int c, int i) {
    auto request = collector_.Request(ValueOf(c, i));
    if (i % 2 == 1) request->is_cancelled = [&cancel_odd] { return cancel_odd.load(); };
    if (c == 0 && i == kPerClient / 2) cancel_odd = true;
    return request;
  });
  ASSERT_TRUE(collector_.WaitFor(kClients * kPerClient, absl::Seconds(60)));
  ExpectEachAnsweredOnce(absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace rectifier::scheduling
