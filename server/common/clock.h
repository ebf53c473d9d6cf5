// Injectable clock: real time in production, FakeClock in tests, so time-based
// decisions (batching delay, deadlines) are deterministic under test.
#ifndef RECTIFIER_SERVER_COMMON_CLOCK_H_
#define RECTIFIER_SERVER_COMMON_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rectifier::common {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;

  // The process-wide real clock (never destroyed).
  static Clock* Real();
};

class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

inline Clock* Clock::Real() {
  static RealClock* const clock = new RealClock();
  return clock;
}

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_CLOCK_H_
