// Scheduler interface: per model version, takes inference requests, forms
// batches (Triton dynamic-batching semantics) and runs them on N instances.
#ifndef RECTIFIER_SERVER_SCHEDULING_SCHEDULER_H_
#define RECTIFIER_SERVER_SCHEDULING_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/tensor.h"

namespace rectifier::scheduling {

// Timing of one request, filled by the scheduler (for statistics/metrics).
struct RequestTimes {
  absl::Time enqueued;
  absl::Time batch_start;  // picked up by an instance
  absl::Time compute_end;
  int batch_size = 0;  // the size of the batch it ran in
};

// One inference request. Ownership passes to the scheduler on Enqueue.
struct InferenceRequest {
  std::string id;  // echoed in logs; not interpreted
  // One tensor per model input, in model order; dim 0 is this request's own
  // batch (usually 1) when the model is batchable. Borrowed bytes (the
  // request message's) stay valid until `done` has been called: the
  // scheduler reads them no later than the batch's Execute.
  std::vector<common::InputTensor> inputs;
  // 0 = the model's default priority level; 1 is the highest (Triton).
  uint64_t priority = 0;
  // Absolute deadline; InfiniteFuture() if none. A request still queued at
  // its deadline is answered DEADLINE_EXCEEDED and never computed.
  absl::Time deadline = absl::InfiniteFuture();
  // Polled before compute; a cancelled request is answered CANCELLED and not
  // computed. May be empty.
  std::function<bool()> is_cancelled;
  // Called exactly once, from a scheduler thread (or from Enqueue's caller
  // thread when Enqueue fails), with the outputs in model order (dim 0 = this
  // request's batch) or an error. Must not block.
  std::function<void(absl::StatusOr<std::vector<common::Tensor>>, const RequestTimes&)> done;
};

// Runs one batch on one model instance. Each instance is used by one worker
// thread at a time (so it may own an engine::ExecutionContext).
class BatchExecutor {
 public:
  virtual ~BatchExecutor() = default;
  // `inputs` view the concatenated requests (dim 0 = total batch), or a
  // lone request's own inputs, valid until Execute returns.
  virtual absl::StatusOr<std::vector<common::Tensor>> Execute(
      const std::vector<common::TensorView>& inputs) = 0;
  // Called once on the instance's own worker thread before it takes any
  // request (warmup): per-thread state such as the OpenMP team is then
  // created on the thread that runs the batches. An error fails the
  // scheduler's creation.
  virtual absl::Status Prepare() { return absl::OkStatus(); }
};

struct QueuePolicy {
  enum class TimeoutAction { kReject, kDelay };
  TimeoutAction timeout_action = TimeoutAction::kReject;
  absl::Duration default_timeout = absl::ZeroDuration();  // zero = none
  bool allow_timeout_override = false;
  uint32_t max_queue_size = 0;  // 0 = unbounded by policy (global bound still applies)
};

// Triton's dynamic_batching block as plain values (the repository converts
// the config proto; scheduling never sees protobuf).
struct SchedulerOptions {
  std::string model_name;     // for error messages and logs
  std::string model_version;  // ditto
  bool batchable = true;      // false: every request runs alone (max_batch_size 0)
  int max_batch_size = 1;
  bool dynamic_batching = true;  // false: no waiting, batches of whatever is queued up to max
  std::vector<int> preferred_batch_sizes;
  absl::Duration max_queue_delay = absl::ZeroDuration();
  bool preserve_ordering = false;
  uint64_t priority_levels = 0;  // 0 or 1 = a single level
  uint64_t default_priority_level = 0;
  QueuePolicy default_queue_policy;
  std::map<uint64_t, QueuePolicy> priority_queue_policy;
  // Hard bound on queued requests across all levels (back-pressure).
  uint32_t max_total_queue = 4096;
  // Test hook: each batch waits this long before it computes, so tests of
  // draining and queueing do not depend on how fast the machine computes
  // (like Triton's TRITONSERVER_DELAY_SCHEDULER). The repository sets it from
  // the environment variable RECTIFIER_TEST_EXECUTE_DELAY_MS; zero otherwise.
  absl::Duration execute_delay = absl::ZeroDuration();
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Takes the request. On immediate rejection (queue full: UNAVAILABLE naming
  // the model and the limit; shutting down: UNAVAILABLE; bad priority or
  // inputs: INVALID_ARGUMENT) `done` is called before Enqueue returns with
  // that error. Never blocks on compute.
  virtual void Enqueue(std::unique_ptr<InferenceRequest> request) = 0;

  // Stops accepting, lets queued requests run until `deadline`, answers the
  // rest UNAVAILABLE, and joins the workers. Idempotent.
  virtual void Shutdown(absl::Time deadline) = 0;

  virtual size_t queue_depth() const = 0;
};

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_SCHEDULER_H_
