#include "server/service/drain_tracker.h"

#include <algorithm>

namespace rectifier::service {

bool DrainTracker::Started() {
  absl::MutexLock lock(&mu_);
  if (draining_) return false;
  ++in_flight_;
  return true;
}

void DrainTracker::Ended(bool counted) {
  if (!counted) return;
  absl::MutexLock lock(&mu_);
  --in_flight_;
  last_end_ = absl::Now();
}

bool DrainTracker::BeginAndWait(absl::Duration linger, absl::Time deadline) {
  absl::Time until;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    if (!mu_.AwaitWithDeadline(absl::Condition(this, &DrainTracker::Idle), deadline)) return false;
    until = std::min(last_end_ + linger, deadline);
  }
  const absl::Duration left = until - absl::Now();
  if (left > absl::ZeroDuration()) absl::SleepFor(left);
  return true;
}

}  // namespace rectifier::service
