// Triton-style dynamic batching scheduler: a bounded priority queue, the
// batching decision, and one worker thread per model instance.
#ifndef RECTIFIER_SERVER_SCHEDULING_DYNAMIC_BATCH_SCHEDULER_H_
#define RECTIFIER_SERVER_SCHEDULING_DYNAMIC_BATCH_SCHEDULER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/common/mutex.h"
#include "server/scheduling/batch_policy.h"
#include "server/scheduling/request_queue.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::scheduling {

// INVALID_ARGUMENT naming the field when `options` is inconsistent:
// max_batch_size < 1 for a batchable model, a preferred batch size outside
// [1, max_batch_size], a negative delay or timeout, default_priority_level
// outside [1, priority_levels] (0 is allowed only with <= 1 level), a
// priority_queue_policy level outside [1, levels], max_total_queue 0.
absl::Status ValidateSchedulerOptions(const SchedulerOptions& options);

// Creates a DynamicBatchScheduler (below) and starts its workers.
absl::StatusOr<std::unique_ptr<Scheduler>> CreateDynamicBatchScheduler(
    const SchedulerOptions& options, std::vector<std::unique_ptr<BatchExecutor>> instances,
    common::Clock* clock);

// Thread-safe. Every accepted request is answered exactly once: with its
// outputs, or DEADLINE_EXCEEDED (expired in the queue, never computed),
// CANCELLED (is_cancelled() true when dequeued, never computed), the
// executor's error for its whole batch, INTERNAL (outputs whose dim 0 does
// not match the batch), or UNAVAILABLE (still queued at the shutdown deadline).
//
// Threads: one worker per instance, started by Create and joined by Shutdown
// (the destructor calls Shutdown(clock->Now())). An idle worker decides with
// DecideBatch and, when told to wait, blocks on a condition variable until an
// enqueue, the computed time, or Poke(); it never polls.
//
// `done` callbacks run on worker threads (or on the thread calling Enqueue
// for immediate rejections, or Shutdown for requests it drops); they must not
// block and must not call Shutdown or destroy the scheduler.
class DynamicBatchScheduler final : public Scheduler {
 public:
  // `clock` is not owned and must outlive the scheduler; nullptr = real time.
  static absl::StatusOr<std::unique_ptr<DynamicBatchScheduler>> Create(
      const SchedulerOptions& options, std::vector<std::unique_ptr<BatchExecutor>> instances,
      common::Clock* clock);

  ~DynamicBatchScheduler() override;
  DynamicBatchScheduler(const DynamicBatchScheduler&) = delete;
  DynamicBatchScheduler& operator=(const DynamicBatchScheduler&) = delete;

  void Enqueue(std::unique_ptr<InferenceRequest> request) override;
  void Shutdown(absl::Time deadline) override;
  size_t queue_depth() const override;

  // Makes every waiting thread re-read the clock. Waits are bounded by the
  // real time until the computed moment, so production never needs this; a
  // test calls it after advancing a fake clock (tests/scheduling/fake_clock.h
  // can do so on every Advance), which keeps such tests free of real sleeps.
  void Poke();

 private:
  // A finished request waiting to be handed to its `done`.
  struct Completion {
    std::unique_ptr<InferenceRequest> request;
    uint64_t sequence = 0;
    absl::StatusOr<std::vector<common::Tensor>> result;
    RequestTimes times;
  };

  DynamicBatchScheduler(const SchedulerOptions& options,
                        std::vector<std::unique_ptr<BatchExecutor>> instances,
                        common::Clock* clock);

  // Queues `item` (moved from only on success) or says why not: shutting
  // down, bad priority, queue full.
  absl::Status Admit(QueuedRequest& item);
  void WorkerLoop(BatchExecutor* executor);
  // Runs `batch` (cancellation check, assembly, execute, split) and delivers.
  void RunBatch(BatchExecutor* executor, std::vector<QueuedRequest> batch);
  // Blocks on `cv` until signalled or until `until` on the injected clock.
  void WaitUntil(common::CondVar& cv, absl::Time until) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Hands results to `done`, in sequence order when preserve_ordering.
  void Deliver(std::vector<Completion> completions);
  Completion Fail(QueuedRequest item, absl::Status status, absl::Time now) const;

  const SchedulerOptions options_;
  const BatchPolicyOptions policy_;
  const BatchPolicyOptions drain_policy_;  // policy_ without delay
  const std::string label_;                // "model 'x' version 1"
  common::Clock* const clock_;
  const std::vector<std::unique_ptr<BatchExecutor>> instances_;
  std::vector<std::thread> workers_;  // written only by Create and Shutdown
  // Instances prepared (BatchExecutor::Prepare) so far, and the first failure.
  size_t prepared_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status prepare_error_ ABSL_GUARDED_BY(mu_);
  common::CondVar prepared_cv_;

  mutable common::Mutex mu_;
  common::CondVar work_cv_;     // workers: queue changed, time moved, exit
  common::CondVar drained_cv_;  // Shutdown: queue emptied, time moved
  RequestQueue queue_ ABSL_GUARDED_BY(mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // dispatch without delay
  bool exit_ ABSL_GUARDED_BY(mu_) = false;      // workers return when idle

  common::Mutex shutdown_mu_;  // serializes Shutdown; held while joining
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;

  // preserve_ordering: completions wait here until every earlier sequence
  // number has been delivered; one thread at a time delivers.
  common::Mutex order_mu_;
  std::map<uint64_t, Completion> ready_ ABSL_GUARDED_BY(order_mu_);
  uint64_t next_to_deliver_ ABSL_GUARDED_BY(order_mu_) = 0;
  bool delivering_ ABSL_GUARDED_BY(order_mu_) = false;
};

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_DYNAMIC_BATCH_SCHEDULER_H_
