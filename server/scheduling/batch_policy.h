// The dynamic batcher's decision (Triton semantics) as a pure function of a
// queue snapshot, the time and the options: dispatch k requests now, or wait.
#ifndef RECTIFIER_SERVER_SCHEDULING_BATCH_POLICY_H_
#define RECTIFIER_SERVER_SCHEDULING_BATCH_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/scheduling/batch_assembly.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::scheduling {

// The batching-relevant parts of SchedulerOptions, normalized.
struct BatchPolicyOptions {
  int64_t max_batch_size = 1;                  // 1 for a model that cannot batch
  std::vector<int64_t> preferred_batch_sizes;  // ascending, unique, each in [1, max]
  absl::Duration max_queue_delay = absl::ZeroDuration();

  // Non-batchable: max 1, no preferred sizes, no delay. dynamic_batching off:
  // no preferred sizes, no delay (take whatever is queued, up to max).
  // REQUIRES: `options` passed ValidateSchedulerOptions.
  static BatchPolicyOptions From(const SchedulerOptions& options);
  // The same, but never waiting (used while draining at shutdown).
  BatchPolicyOptions WithoutDelay() const;
};

// One queued request as the policy sees it.
struct PendingRequest {
  int64_t batch_size = 1;  // its own dim 0
  absl::Time enqueued;
  // Requests may share a batch only if their signatures compare equal.
  // Not owned; must outlive the DecideBatch call.
  const BatchSignature* signature = nullptr;
};

struct BatchDecision {
  enum class Reason {
    kEmpty,          // nothing queued: wait (for an enqueue)
    kWaitForMore,    // wait until `wait_until` (oldest request + max delay)
    kPreferredSize,  // a preferred batch size was reached
    kMaxBatchSize,   // the batch is full
    kCannotGrow,     // the next request of its shape would overflow max, or requests
                     // of other shapes wait behind it
    kDelayExpired,   // the oldest request waited max_queue_delay
  };
  Reason reason = Reason::kEmpty;
  // > 0: dispatch `count` requests of the snapshot now: those at `members`
  // (positions in the snapshot, ascending; the head is always one).
  size_t count = 0;
  std::vector<size_t> members;
  int64_t batch_size = 0;  // sum of their batch sizes
  // When count == 0: re-decide no later than this (InfiniteFuture: only when
  // the queue changes).
  absl::Time wait_until = absl::InfiniteFuture();

  bool dispatch() const { return count > 0; }
};

// Decides the next batch from `queue` (requests in dispatch order: priority,
// then arrival; a window of a few times max_batch_size is enough):
//  1. The candidate batch is the first request and the requests after it
//     that share its signature (shape and type), in order, while their
//     batch sizes sum to <= max. Requests of other signatures are passed
//     over, not waited for: a load of mixed image sizes still forms full
//     batches of its common sizes (the order of answers is kept separately,
//     by preserve_ordering).
//  2. It is dispatched at once when it is full (sum == max) or cannot grow:
//     the next request of its signature would overflow max, or requests of
//     other signatures wait behind it (waiting longer would hold them back).
//  3. Otherwise, when some prefix of it sums to a preferred batch size, the
//     prefix for the largest such preferred size is dispatched.
//  4. Otherwise it is dispatched when its oldest request has waited
//     max_queue_delay (at once when the delay is zero); before that, the
//     decision is to wait until that moment.
// Pure: the same arguments give the same answer.
BatchDecision DecideBatch(absl::Span<const PendingRequest> queue, absl::Time now,
                          const BatchPolicyOptions& options);

// How many queued requests DecideBatch should see for `options`: enough to
// pass over requests of other shapes, bounded so a long queue costs little.
size_t BatchLookahead(const BatchPolicyOptions& options);

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_BATCH_POLICY_H_
