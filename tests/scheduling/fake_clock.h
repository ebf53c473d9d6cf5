// FakeClock: a manually advanced common::Clock that tells listeners (e.g. a
// scheduler's Poke) when time moves, so timing tests need no real sleeps.
#ifndef RECTIFIER_TESTS_SCHEDULING_FAKE_CLOCK_H_
#define RECTIFIER_TESTS_SCHEDULING_FAKE_CLOCK_H_

#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/common/clock.h"

namespace rectifier::scheduling {

// Thread-safe.
class FakeClock final : public common::Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'000'000'000)) : now_(start) {}

  absl::Time Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }

  // Moves time forward, then calls every listener (without the lock held).
  void Advance(absl::Duration delta) {
    std::vector<std::function<void()>> listeners;
    {
      std::lock_guard<std::mutex> lock(mu_);
      now_ += delta;
      listeners = listeners_;
    }
    for (const auto& listener : listeners) listener();
  }

  // REQUIRES: the listener stays callable until the clock is destroyed or
  // ClearListeners is called.
  void AddListener(std::function<void()> listener) {
    std::lock_guard<std::mutex> lock(mu_);
    listeners_.push_back(std::move(listener));
  }

  void ClearListeners() {
    std::lock_guard<std::mutex> lock(mu_);
    listeners_.clear();
  }

 private:
  mutable std::mutex mu_;
  absl::Time now_;
  std::vector<std::function<void()>> listeners_;
};

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_TESTS_SCHEDULING_FAKE_CLOCK_H_
