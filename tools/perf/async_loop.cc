#include "tools/perf/async_loop.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace rectifier::tools {
namespace {

// How many completions may start their successor on the stack of the
// call that failed at once before the helper thread takes over.
constexpr int kMaxInlineDepth = 16;

class AsyncLoop {
 public:
  AsyncLoop(Target& target, const AsyncLoopOptions& options, std::atomic<int64_t>& sent,
            const RecordCall& record)
      : target_(target), options_(options), sent_(sent), record_(record) {}

  absl::Status Run(const std::function<void()>& measure) {
    {
      absl::MutexLock lock(&mu_);
      loops_ = options_.concurrency;
    }
    std::thread starter([this] { Starter(); });
    for (int c = 0; c < options_.concurrency; ++c) StartNext();
    measure();
    stop_.store(true);
    bool drained = false;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time deadline = absl::Now() + options_.drain_timeout;
      while (loops_ > 0 && !changed_.WaitWithDeadline(&mu_, deadline)) {
      }
      drained = loops_ == 0;
      if (!drained) abandoned_ = true;  // the starter exits without starting more
      changed_.SignalAll();
    }
    starter.join();
    if (!drained) {
      absl::MutexLock lock(&mu_);
      return absl::DeadlineExceededError(absl::StrCat(loops_, " call(s) still outstanding ",
                                                      absl::FormatDuration(options_.drain_timeout),
                                                      " after the load stopped"));
    }
    return absl::OkStatus();
  }

 private:
  struct Call {
    grpc::ClientContext context;
    absl::Time start;
  };

  // Starts call number sent_++, or ends this loop once the load has stopped.
  void StartNext() {
    const int64_t i = sent_.fetch_add(1);
    if (stop_.load() || i >= options_.max_requests) {
      absl::MutexLock lock(&mu_);
      --loops_;
      changed_.SignalAll();
      return;
    }
    auto* call = new Call();
    call->context.set_deadline(std::chrono::system_clock::now() +
                               absl::ToChronoMilliseconds(options_.call_timeout));
    call->start = absl::Now();
    target_.CallAsync(i, &call->context, [this, call](const grpc::Status& status) {
      record_(status, absl::ToDoubleMilliseconds(absl::Now() - call->start));
      delete call;
      Completed();
    });
  }

  void Completed() {
    static thread_local int depth = 0;
    if (depth >= kMaxInlineDepth) {
      absl::MutexLock lock(&mu_);
      ++deferred_;
      changed_.SignalAll();
      return;
    }
    ++depth;
    StartNext();
    --depth;
  }

  // Starts the calls that completions handed over.
  void Starter() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        while (deferred_ == 0 && loops_ > 0 && !abandoned_) changed_.Wait(&mu_);
        if (deferred_ == 0 || abandoned_) return;  // every loop has ended
        --deferred_;
      }
      StartNext();
    }
  }

  Target& target_;
  const AsyncLoopOptions& options_;
  std::atomic<int64_t>& sent_;
  const RecordCall& record_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  absl::CondVar changed_;
  int loops_ ABSL_GUARDED_BY(mu_) = 0;     // loops still running
  int deferred_ ABSL_GUARDED_BY(mu_) = 0;  // starts handed to the starter thread
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::Status RunAsyncClosedLoop(Target& target, const AsyncLoopOptions& options,
                                std::atomic<int64_t>& sent, const RecordCall& record,
                                const std::function<void()>& measure) {
  if (options.concurrency < 1) return absl::InvalidArgumentError("concurrency must be >= 1");
  AsyncLoop loop(target, options, sent, record);
  return loop.Run(measure);
}

}  // namespace rectifier::tools
