// The batching decision; see batch_policy.h for the rules.
#include "server/scheduling/batch_policy.h"

#include <algorithm>

namespace rectifier::scheduling {

BatchPolicyOptions BatchPolicyOptions::From(const SchedulerOptions& options) {
  BatchPolicyOptions policy;
  if (!options.batchable) return policy;
  policy.max_batch_size = std::max(options.max_batch_size, 1);
  if (!options.dynamic_batching) return policy;
  for (const int size : options.preferred_batch_sizes) {
    if (size >= 1 && size <= policy.max_batch_size) policy.preferred_batch_sizes.push_back(size);
  }
  std::sort(policy.preferred_batch_sizes.begin(), policy.preferred_batch_sizes.end());
  policy.preferred_batch_sizes.erase(
      std::unique(policy.preferred_batch_sizes.begin(), policy.preferred_batch_sizes.end()),
      policy.preferred_batch_sizes.end());
  policy.max_queue_delay = std::max(options.max_queue_delay, absl::ZeroDuration());
  return policy;
}

BatchPolicyOptions BatchPolicyOptions::WithoutDelay() const {
  BatchPolicyOptions policy = *this;
  policy.max_queue_delay = absl::ZeroDuration();
  return policy;
}

size_t BatchLookahead(const BatchPolicyOptions& options) {
  if (options.max_batch_size <= 1) return 2;
  return static_cast<size_t>(std::min<int64_t>(4 * options.max_batch_size + 1, 1024));
}

BatchDecision DecideBatch(absl::Span<const PendingRequest> queue, absl::Time now,
                          const BatchPolicyOptions& options) {
  BatchDecision decision;
  if (queue.empty()) return decision;

  const BatchSignature* signature = queue.front().signature;
  std::vector<size_t> members;
  int64_t total = 0;
  absl::Time oldest = absl::InfiniteFuture();
  size_t preferred_count = 0;  // members reaching the largest preferred size so far
  int64_t preferred_total = 0;
  bool can_grow = true;
  for (size_t i = 0; i < queue.size(); ++i) {
    const PendingRequest& request = queue[i];
    const bool same_shape =
        request.signature == signature ||
        (request.signature != nullptr && signature != nullptr && *request.signature == *signature);
    if (!same_shape) {
      can_grow = false;  // others wait behind this batch: do not hold them back
      continue;
    }
    if (total + request.batch_size > options.max_batch_size) {
      can_grow = false;
      break;
    }
    members.push_back(i);
    total += request.batch_size;
    oldest = std::min(oldest, request.enqueued);
    if (std::binary_search(options.preferred_batch_sizes.begin(),
                           options.preferred_batch_sizes.end(), total)) {
      preferred_count = members.size();
      preferred_total = total;
    }
    if (total == options.max_batch_size) break;
  }

  if (members.empty()) {
    // The head request alone exceeds max (Enqueue rejects those); run it alone
    // rather than stall the queue.
    decision.reason = BatchDecision::Reason::kCannotGrow;
    decision.count = 1;
    decision.members = {0};
    decision.batch_size = queue.front().batch_size;
    return decision;
  }
  if (total == options.max_batch_size) {
    decision.reason = BatchDecision::Reason::kMaxBatchSize;
  } else if (!can_grow) {
    decision.reason = BatchDecision::Reason::kCannotGrow;
  } else if (preferred_count > 0) {
    decision.reason = BatchDecision::Reason::kPreferredSize;
    members.resize(preferred_count);
    decision.count = preferred_count;
    decision.members = std::move(members);
    decision.batch_size = preferred_total;
    return decision;
  } else if (now - oldest >= options.max_queue_delay) {
    decision.reason = BatchDecision::Reason::kDelayExpired;
  } else {
    decision.reason = BatchDecision::Reason::kWaitForMore;
    decision.wait_until = oldest + options.max_queue_delay;
    return decision;
  }
  decision.count = members.size();
  decision.members = std::move(members);
  decision.batch_size = total;
  return decision;
}

}  // namespace rectifier::scheduling
