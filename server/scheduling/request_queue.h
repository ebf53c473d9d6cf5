// Bounded multi-level priority queue with a Triton queue policy per level
// (max size, default timeout, timeout override, REJECT or DELAY on timeout).
#ifndef RECTIFIER_SERVER_SCHEDULING_REQUEST_QUEUE_H_
#define RECTIFIER_SERVER_SCHEDULING_REQUEST_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/scheduling/batch_assembly.h"
#include "server/scheduling/batch_policy.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::scheduling {

// A request plus the scheduler's bookkeeping for it.
struct QueuedRequest {
  std::unique_ptr<InferenceRequest> request;
  BatchSignature signature;
  int64_t batch_size = 1;
  uint64_t level = 1;     // 1 = highest priority
  uint64_t sequence = 0;  // acceptance order (preserve_ordering)
  absl::Time enqueued;
  // Set by Push: when the level's queue policy times the request out
  // (InfiniteFuture: never). The request's own deadline is separate and
  // always final.
  absl::Time timeout = absl::InfiniteFuture();
  bool delayed = false;  // timed out under a DELAY policy
};

// A request taken out of the queue because it expired, with its answer.
struct ExpiredRequest {
  QueuedRequest item;
  absl::Status status;  // DEADLINE_EXCEEDED
};

// Dispatch order: level 1 first; within a level, requests that have not timed
// out in arrival order, then the ones a DELAY policy pushed back, in arrival
// order. Not thread-safe: the scheduler guards it with its mutex.
class RequestQueue {
 public:
  // REQUIRES: `options` passed ValidateSchedulerOptions.
  explicit RequestQueue(const SchedulerOptions& options);

  // The level a request priority maps to: 0 -> the default level.
  // INVALID_ARGUMENT when the priority is above the number of levels.
  absl::StatusOr<uint64_t> LevelFor(uint64_t priority) const;

  // OK if one more request fits at `level`; otherwise UNAVAILABLE naming the
  // model and the limit that is reached.
  absl::Status CheckCapacity(uint64_t level) const;

  // Appends to its level and computes `timeout` from the level's policy:
  // enqueued + default_timeout, unless the policy allows override and the
  // request carries a deadline (then that deadline alone governs).
  // REQUIRES: CheckCapacity(item.level) was OK.
  void Push(QueuedRequest item);

  // Takes out every request whose deadline has passed, or whose policy timeout
  // has passed under REJECT, appending them to *expired; moves requests whose
  // timeout passed under DELAY behind the others of their level.
  void Expire(absl::Time now, std::vector<ExpiredRequest>* expired);

  // No queued request expires or gets delayed before this time (it may be
  // earlier than necessary, never later). Valid after Expire.
  absl::Time NextExpiry() const { return next_expiry_; }

  // Replaces *out with the first `max_count` requests in dispatch order.
  // Their signatures point into the queue: valid until it is next modified.
  void Peek(size_t max_count, std::vector<PendingRequest>* out) const;

  // Removes and returns the first `count` requests in dispatch order.
  std::vector<QueuedRequest> PopFront(size_t count);
  // Removes and returns the requests at `positions` (in dispatch order, as
  // Peek numbers them; ascending), in that order.
  std::vector<QueuedRequest> PopAt(const std::vector<size_t>& positions);
  std::vector<QueuedRequest> PopAll();

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Level {
    QueuePolicy policy;
    std::deque<QueuedRequest> active;   // not timed out
    std::deque<QueuedRequest> delayed;  // timed out under DELAY
    size_t size() const { return active.size() + delayed.size(); }
  };

  std::string label_;  // "model 'x' version 1"
  uint64_t default_level_ = 1;
  uint32_t max_total_ = 0;
  std::vector<Level> levels_;  // index = level - 1
  size_t size_ = 0;
  absl::Time next_expiry_ = absl::InfiniteFuture();
};

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_REQUEST_QUEUE_H_
