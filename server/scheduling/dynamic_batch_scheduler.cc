// Dynamic batching scheduler; see dynamic_batch_scheduler.h for the contract.
#include "server/scheduling/dynamic_batch_scheduler.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/thread_name.h"
#include "server/scheduling/batch_assembly.h"
#include "spdlog/spdlog.h"

namespace rectifier::scheduling {
namespace {

// Longest single real-time wait; a longer wait just re-decides and waits
// again (keeps steady_clock arithmetic far from overflow).
constexpr absl::Duration kMaxWait = absl::Hours(1);

absl::Status ValidatePolicy(const QueuePolicy& policy, const std::string& field) {
  if (policy.default_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".default_timeout must not be negative"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSchedulerOptions(const SchedulerOptions& options) {
  const std::string label =
      absl::StrCat("model '", options.model_name, "' version ", options.model_version, ": ");
  if (options.batchable) {
    if (options.max_batch_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, "max_batch_size ", options.max_batch_size, " must be >= 1"));
    }
    for (const int size : options.preferred_batch_sizes) {
      if (size < 1 || size > options.max_batch_size) {
        return absl::InvalidArgumentError(absl::StrCat(label, "preferred_batch_size ", size,
                                                       " is outside [1, max_batch_size ",
                                                       options.max_batch_size, "]"));
      }
    }
  }
  if (options.max_queue_delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(label, "max_queue_delay must not be negative"));
  }
  const uint64_t levels = std::max<uint64_t>(options.priority_levels, 1);
  const bool default_ok = options.priority_levels <= 1
                              ? options.default_priority_level <= 1
                              : options.default_priority_level >= 1 &&
                                    options.default_priority_level <= options.priority_levels;
  if (!default_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, "default_priority_level ", options.default_priority_level,
                     " is outside [1, priority_levels ", levels, "]"));
  }
  absl::Status status = ValidatePolicy(options.default_queue_policy, "default_queue_policy");
  if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(label, status.message()));
  for (const auto& [level, policy] : options.priority_queue_policy) {
    if (level < 1 || level > levels) {
      return absl::InvalidArgumentError(absl::StrCat(label, "priority_queue_policy level ", level,
                                                     " is outside [1, ", levels, "]"));
    }
    status = ValidatePolicy(policy, absl::StrCat("priority_queue_policy[", level, "]"));
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(label, status.message()));
  }
  if (options.max_total_queue < 1) {
    return absl::InvalidArgumentError(absl::StrCat(label, "max_total_queue must be >= 1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Scheduler>> CreateDynamicBatchScheduler(
    const SchedulerOptions& options, std::vector<std::unique_ptr<BatchExecutor>> instances,
    common::Clock* clock) {
  absl::StatusOr<std::unique_ptr<DynamicBatchScheduler>> scheduler =
      DynamicBatchScheduler::Create(options, std::move(instances), clock);
  if (!scheduler.ok()) return scheduler.status();
  return std::unique_ptr<Scheduler>(std::move(scheduler).value());
}

absl::StatusOr<std::unique_ptr<DynamicBatchScheduler>> DynamicBatchScheduler::Create(
    const SchedulerOptions& options, std::vector<std::unique_ptr<BatchExecutor>> instances,
    common::Clock* clock) {
  absl::Status status = ValidateSchedulerOptions(options);
  if (!status.ok()) return status;
  if (instances.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("model '", options.model_name, "' version ",
                                                   options.model_version,
                                                   ": a scheduler needs at least one instance"));
  }
  for (const auto& instance : instances) {
    if (instance == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("model '", options.model_name, "' version ",
                                                     options.model_version, ": null instance"));
    }
  }
  std::unique_ptr<DynamicBatchScheduler> scheduler(new DynamicBatchScheduler(
      options, std::move(instances), clock != nullptr ? clock : common::Clock::Real()));
  scheduler->workers_.reserve(scheduler->instances_.size());
  for (const auto& instance : scheduler->instances_) {
    scheduler->workers_.emplace_back([self = scheduler.get(), executor = instance.get()] {
      // Before Prepare: OpenMP teams started on this thread inherit the name.
      common::SetCurrentThreadName(self->options_.model_name);
      const absl::Status prepared = executor->Prepare();
      {
        common::MutexLock lock(&self->mu_);
        ++self->prepared_;
        if (!prepared.ok() && self->prepare_error_.ok()) self->prepare_error_ = prepared;
      }
      self->prepared_cv_.SignalAll();
      self->WorkerLoop(executor);
    });
  }
  // Ready only once every instance has prepared on its own thread.
  absl::Status prepare_error;
  {
    common::MutexLock lock(&scheduler->mu_);
    while (scheduler->prepared_ != scheduler->instances_.size()) {
      scheduler->prepared_cv_.Wait(&scheduler->mu_);
    }
    prepare_error = scheduler->prepare_error_;
  }
  if (!prepare_error.ok()) {
    scheduler->Shutdown(scheduler->clock_->Now());
    return prepare_error;
  }
  return scheduler;
}

DynamicBatchScheduler::DynamicBatchScheduler(const SchedulerOptions& options,
                                             std::vector<std::unique_ptr<BatchExecutor>> instances,
                                             common::Clock* clock)
    : options_(options),
      policy_(BatchPolicyOptions::From(options)),
      drain_policy_(policy_.WithoutDelay()),
      label_(absl::StrCat("model '", options.model_name, "' version ", options.model_version)),
      clock_(clock),
      instances_(std::move(instances)),
      queue_(options) {}

DynamicBatchScheduler::~DynamicBatchScheduler() { Shutdown(clock_->Now()); }

void DynamicBatchScheduler::Enqueue(std::unique_ptr<InferenceRequest> request) {
  if (request == nullptr) return;
  if (!request->done) {
    // Nobody to answer; accepting it would break "answered exactly once".
    spdlog::error("{}: dropped request '{}' without a done callback", label_, request->id);
    return;
  }
  const absl::Time now = clock_->Now();
  absl::Status status;
  absl::StatusOr<int64_t> batch_size =
      ValidateRequestInputs(request->inputs, options_.batchable, policy_.max_batch_size);
  QueuedRequest item;
  if (batch_size.ok()) {
    item.batch_size = *batch_size;
    item.signature = SignatureOf(request->inputs, options_.batchable);
    item.enqueued = now;
    item.request = std::move(request);
    status = Admit(item);
    if (status.ok()) {
      work_cv_.Signal();
      return;
    }
  } else {
    status = absl::InvalidArgumentError(absl::StrCat(label_, ": ", batch_size.status().message()));
    item.request = std::move(request);
  }
  RequestTimes times;
  times.enqueued = times.batch_start = times.compute_end = now;
  item.request->done(std::move(status), times);
}

absl::Status DynamicBatchScheduler::Admit(QueuedRequest& item) {
  common::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError(absl::StrCat(label_, ": server shutting down"));
  absl::StatusOr<uint64_t> level = queue_.LevelFor(item.request->priority);
  if (!level.ok()) return level.status();
  absl::Status status = queue_.CheckCapacity(*level);
  if (!status.ok()) return status;
  item.level = *level;
  item.sequence = next_sequence_++;
  queue_.Push(std::move(item));
  return absl::OkStatus();
}

void DynamicBatchScheduler::Poke() {
  // Taking the lock orders this after any waiter's clock read, so a waiter
  // that read the old time is already waiting and gets the notification.
  { common::MutexLock lock(&mu_); }
  work_cv_.SignalAll();
  drained_cv_.SignalAll();
}

size_t DynamicBatchScheduler::queue_depth() const {
  common::MutexLock lock(&mu_);
  return queue_.size();
}

void DynamicBatchScheduler::WaitUntil(common::CondVar& cv, absl::Time until) {
  if (until == absl::InfiniteFuture()) {
    cv.Wait(&mu_);
    return;
  }
  const absl::Duration remaining = std::min(until - clock_->Now(), kMaxWait);
  if (remaining <= absl::ZeroDuration()) return;
  cv.WaitWithTimeout(&mu_, remaining);
}

void DynamicBatchScheduler::WorkerLoop(BatchExecutor* executor) {
  std::vector<PendingRequest> snapshot;
  const size_t peek = BatchLookahead(policy_);
  for (;;) {
    std::vector<ExpiredRequest> expired;
    std::vector<QueuedRequest> batch;
    bool exit = false;
    bool more = false;
    bool empty = false;
    {
      common::MutexLock lock(&mu_);
      for (;;) {
        if (exit_) {
          exit = true;
          break;
        }
        const absl::Time now = clock_->Now();
        queue_.Expire(now, &expired);
        if (!expired.empty()) break;  // answer them outside the lock, then decide
        queue_.Peek(peek, &snapshot);
        const BatchDecision decision =
            DecideBatch(snapshot, now, draining_ ? drain_policy_ : policy_);
        if (decision.dispatch()) {
          batch = queue_.PopAt(decision.members);
          break;
        }
        WaitUntil(work_cv_, std::min(decision.wait_until, queue_.NextExpiry()));
      }
      empty = queue_.empty();
      more = !empty && !exit;
    }
    if (empty) drained_cv_.SignalAll();
    if (more) work_cv_.Signal();  // another idle worker may take the rest
    if (!expired.empty()) {
      std::vector<Completion> answers;
      answers.reserve(expired.size());
      const absl::Time now = clock_->Now();
      for (ExpiredRequest& entry : expired) {
        answers.push_back(Fail(std::move(entry.item), std::move(entry.status), now));
      }
      Deliver(std::move(answers));
    }
    if (!batch.empty()) RunBatch(executor, std::move(batch));
    if (exit) return;
  }
}

DynamicBatchScheduler::Completion DynamicBatchScheduler::Fail(QueuedRequest item,
                                                              absl::Status status,
                                                              absl::Time now) const {
  Completion completion;
  completion.sequence = item.sequence;
  completion.times.enqueued = item.enqueued;
  completion.times.batch_start = completion.times.compute_end = now;
  completion.result = std::move(status);
  completion.request = std::move(item.request);
  return completion;
}

void DynamicBatchScheduler::RunBatch(BatchExecutor* executor, std::vector<QueuedRequest> batch) {
  std::vector<Completion> completions;
  completions.reserve(batch.size());
  const absl::Time start = clock_->Now();
  std::vector<QueuedRequest> live;
  live.reserve(batch.size());
  for (QueuedRequest& item : batch) {
    const auto& is_cancelled = item.request->is_cancelled;
    if (is_cancelled && is_cancelled()) {
      completions.push_back(Fail(std::move(item),
                                 absl::CancelledError(absl::StrCat(label_, ": request cancelled")),
                                 start));
    } else {
      live.push_back(std::move(item));
    }
  }
  if (!live.empty()) {
    std::vector<int64_t> batch_sizes;
    batch_sizes.reserve(live.size());
    int64_t total = 0;
    for (const QueuedRequest& item : live) {
      batch_sizes.push_back(item.batch_size);
      total += item.batch_size;
    }
    if (options_.execute_delay > absl::ZeroDuration()) absl::SleepFor(options_.execute_delay);
    absl::StatusOr<std::vector<common::Tensor>> outputs;
    // Executors must not throw (style.md); a throw still must not take the
    // worker thread, and every request of the batch down with it.
    try {
      if (live.size() == 1) {
        outputs = executor->Execute(common::ViewsOf(live.front().request->inputs));
      } else {
        std::vector<const std::vector<common::InputTensor>*> inputs;
        inputs.reserve(live.size());
        for (const QueuedRequest& item : live) inputs.push_back(&item.request->inputs);
        const std::vector<common::Tensor> batch = ConcatenateInputs(inputs);
        outputs = executor->Execute(common::ViewsOf(batch));
      }
    } catch (const std::exception& e) {
      outputs = absl::InternalError(absl::StrCat(label_, ": executor threw: ", e.what()));
    } catch (...) {
      outputs = absl::InternalError(absl::StrCat(label_, ": executor threw"));
    }
    const absl::Time end = clock_->Now();
    absl::StatusOr<std::vector<std::vector<common::Tensor>>> split;
    if (!outputs.ok()) {
      split = outputs.status();
    } else if (!options_.batchable) {
      split = std::vector<std::vector<common::Tensor>>(1);
      (*split)[0] = std::move(outputs).value();
    } else {
      split = SplitOutputs(std::move(outputs).value(), batch_sizes);
      if (!split.ok()) {
        split = absl::InternalError(absl::StrCat(label_, ": ", split.status().message()));
      }
    }
    for (size_t r = 0; r < live.size(); ++r) {
      Completion completion;
      completion.sequence = live[r].sequence;
      completion.times.enqueued = live[r].enqueued;
      completion.times.batch_start = start;
      completion.times.compute_end = end;
      completion.times.batch_size = static_cast<int>(total);
      if (split.ok()) {
        completion.result = std::move((*split)[r]);
      } else {
        completion.result = split.status();
      }
      completion.request = std::move(live[r].request);
      completions.push_back(std::move(completion));
    }
  }
  Deliver(std::move(completions));
}

void DynamicBatchScheduler::Deliver(std::vector<Completion> completions) {
  if (!options_.preserve_ordering) {
    for (Completion& c : completions) c.request->done(std::move(c.result), c.times);
    return;
  }
  // One thread at a time hands out the run of consecutive sequence numbers
  // starting at next_to_deliver_; others only park their completions, so
  // `done` runs without a lock held and in order.
  {
    common::MutexLock lock(&order_mu_);
    for (Completion& c : completions) {
      const uint64_t sequence = c.sequence;
      ready_.emplace(sequence, std::move(c));
    }
    if (delivering_) return;
    delivering_ = true;
  }
  std::vector<Completion> run;
  for (;;) {
    run.clear();
    {
      common::MutexLock lock(&order_mu_);
      while (!ready_.empty() && ready_.begin()->first == next_to_deliver_) {
        run.push_back(std::move(ready_.begin()->second));
        ready_.erase(ready_.begin());
        ++next_to_deliver_;
      }
      if (run.empty()) {
        delivering_ = false;
        return;
      }
    }
    for (Completion& c : run) c.request->done(std::move(c.result), c.times);
  }
}

void DynamicBatchScheduler::Shutdown(absl::Time deadline) {
  common::MutexLock shutdown_lock(&shutdown_mu_);
  if (shut_down_) return;
  {
    common::MutexLock lock(&mu_);
    accepting_ = false;
    draining_ = true;
  }
  work_cv_.SignalAll();  // waiting workers re-decide without the delay
  std::vector<QueuedRequest> dropped;
  {
    common::MutexLock lock(&mu_);
    while (!queue_.empty() && clock_->Now() < deadline) {
      WaitUntil(drained_cv_, deadline);
    }
    dropped = queue_.PopAll();
    exit_ = true;
  }
  work_cv_.SignalAll();
  if (!dropped.empty()) {
    spdlog::warn("{}: shutdown deadline reached with {} request(s) queued", label_, dropped.size());
    std::vector<Completion> answers;
    answers.reserve(dropped.size());
    const absl::Time now = clock_->Now();
    for (QueuedRequest& item : dropped) {
      answers.push_back(Fail(std::move(item),
                             absl::UnavailableError(absl::StrCat(label_, ": server shutting down")),
                             now));
    }
    Deliver(std::move(answers));
  }
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  shut_down_ = true;
}

}  // namespace rectifier::scheduling
