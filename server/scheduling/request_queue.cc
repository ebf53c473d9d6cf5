// Priority queue with per-level policies; see request_queue.h.
#include "server/scheduling/request_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/queue_full.h"

namespace rectifier::scheduling {
namespace {

// Earliest moment the request must be looked at again: its own deadline, or
// its policy timeout while that has not yet fired.
absl::Time ExpiryOf(const QueuedRequest& item) {
  const absl::Time deadline = item.request->deadline;
  return item.delayed ? deadline : std::min(deadline, item.timeout);
}

}  // namespace

RequestQueue::RequestQueue(const SchedulerOptions& options)
    : label_(absl::StrCat("model '", options.model_name, "' version ", options.model_version)),
      max_total_(options.max_total_queue) {
  const uint64_t count = std::max<uint64_t>(options.priority_levels, 1);
  default_level_ = options.default_priority_level == 0 ? 1 : options.default_priority_level;
  levels_ = std::vector<Level>(count);  // no resize: std::deque does not move noexcept
  for (uint64_t level = 1; level <= count; ++level) {
    const auto it = options.priority_queue_policy.find(level);
    levels_[level - 1].policy =
        it != options.priority_queue_policy.end() ? it->second : options.default_queue_policy;
  }
}

absl::StatusOr<uint64_t> RequestQueue::LevelFor(uint64_t priority) const {
  if (priority == 0) return default_level_;
  if (priority > levels_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": priority ", priority, " is outside [0, ", levels_.size(), "]"));
  }
  return priority;
}

absl::Status RequestQueue::CheckCapacity(uint64_t level) const {
  const Level& entry = levels_[level - 1];
  const uint32_t limit = entry.policy.max_queue_size;
  if (limit > 0 && entry.size() >= limit) {
    return common::QueueFullError(
        absl::StrCat(label_, ": queue full (max_queue_size ", limit,
                     levels_.size() > 1 ? absl::StrCat(" at priority level ", level) : "", ")"));
  }
  if (size_ >= max_total_) {
    return common::QueueFullError(
        absl::StrCat(label_, ": queue full (max_total_queue ", max_total_, ")"));
  }
  return absl::OkStatus();
}

void RequestQueue::Push(QueuedRequest item) {
  Level& entry = levels_[item.level - 1];
  const QueuePolicy& policy = entry.policy;
  item.timeout = absl::InfiniteFuture();
  item.delayed = false;
  const bool overridden =
      policy.allow_timeout_override && item.request->deadline != absl::InfiniteFuture();
  if (!overridden && policy.default_timeout > absl::ZeroDuration()) {
    item.timeout = item.enqueued + policy.default_timeout;
  }
  next_expiry_ = std::min(next_expiry_, ExpiryOf(item));
  entry.active.push_back(std::move(item));
  ++size_;
}

void RequestQueue::Expire(absl::Time now, std::vector<ExpiredRequest>* expired) {
  if (now < next_expiry_) return;
  absl::Time next = absl::InfiniteFuture();
  for (Level& entry : levels_) {
    const QueuePolicy& policy = entry.policy;
    std::deque<QueuedRequest> kept;
    std::deque<QueuedRequest> newly_delayed;
    for (QueuedRequest& item : entry.active) {
      if (item.request->deadline <= now) {
        expired->push_back({std::move(item), absl::DeadlineExceededError(absl::StrCat(
                                                 label_, ": deadline exceeded while queued"))});
      } else if (item.timeout <= now) {
        if (policy.timeout_action == QueuePolicy::TimeoutAction::kReject) {
          expired->push_back({std::move(item), absl::DeadlineExceededError(absl::StrCat(
                                                   label_, ": timed out in queue after ",
                                                   absl::FormatDuration(policy.default_timeout),
                                                   " (queue policy)"))});
        } else {
          item.delayed = true;
          next = std::min(next, ExpiryOf(item));
          newly_delayed.push_back(std::move(item));
        }
      } else {
        next = std::min(next, ExpiryOf(item));
        kept.push_back(std::move(item));
      }
    }
    entry.active = std::move(kept);
    std::deque<QueuedRequest> delayed;
    for (QueuedRequest& item : entry.delayed) {
      if (item.request->deadline <= now) {
        expired->push_back({std::move(item), absl::DeadlineExceededError(absl::StrCat(
                                                 label_, ": deadline exceeded while queued"))});
      } else {
        next = std::min(next, ExpiryOf(item));
        delayed.push_back(std::move(item));
      }
    }
    // Newly delayed requests go behind the ones delayed earlier.
    for (QueuedRequest& item : newly_delayed) delayed.push_back(std::move(item));
    entry.delayed = std::move(delayed);
  }
  size_t size = 0;
  for (const Level& entry : levels_) size += entry.size();
  size_ = size;
  next_expiry_ = next;
}

void RequestQueue::Peek(size_t max_count, std::vector<PendingRequest>* out) const {
  out->clear();
  for (const Level& entry : levels_) {
    for (const std::deque<QueuedRequest>* part : {&entry.active, &entry.delayed}) {
      for (const QueuedRequest& item : *part) {
        if (out->size() >= max_count) return;
        out->push_back({item.batch_size, item.enqueued, &item.signature});
      }
    }
  }
}

std::vector<QueuedRequest> RequestQueue::PopFront(size_t count) {
  std::vector<QueuedRequest> popped;
  popped.reserve(std::min(count, size_));
  for (Level& entry : levels_) {
    for (std::deque<QueuedRequest>* part : {&entry.active, &entry.delayed}) {
      while (popped.size() < count && !part->empty()) {
        popped.push_back(std::move(part->front()));
        part->pop_front();
      }
    }
  }
  size_ -= popped.size();
  return popped;
}

std::vector<QueuedRequest> RequestQueue::PopAt(const std::vector<size_t>& positions) {
  std::vector<QueuedRequest> popped;
  popped.reserve(positions.size());
  size_t position = 0;  // of the next element visited, in dispatch order
  auto next = positions.begin();
  for (Level& entry : levels_) {
    for (std::deque<QueuedRequest>* part : {&entry.active, &entry.delayed}) {
      for (auto it = part->begin(); it != part->end() && next != positions.end();) {
        if (position++ == *next) {
          popped.push_back(std::move(*it));
          it = part->erase(it);
          ++next;
        } else {
          ++it;
        }
      }
    }
  }
  size_ -= popped.size();
  return popped;
}

std::vector<QueuedRequest> RequestQueue::PopAll() { return PopFront(size_); }

}  // namespace rectifier::scheduling
