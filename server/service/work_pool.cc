#include "server/service/work_pool.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/queue_full.h"
#include "server/common/thread_name.h"

namespace rectifier::service {

absl::StatusOr<std::unique_ptr<WorkPool>> WorkPool::Create(int threads, size_t max_queue) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("image worker threads must be >= 1, got ", threads));
  }
  if (max_queue < 1) return absl::InvalidArgumentError("image worker queue size must be >= 1");
  std::unique_ptr<WorkPool> pool(new WorkPool(max_queue));
  pool->threads_.reserve(threads);
  for (int i = 0; i < threads; ++i)
    pool->threads_.emplace_back([p = pool.get()] {
      common::SetCurrentThreadName("image-worker");
      p->Loop();
    });
  return pool;
}

WorkPool::~WorkPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

absl::Status WorkPool::TrySubmit(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("server is shutting down");
  if (tasks_.size() >= max_queue_) {
    return common::QueueFullError(
        absl::StrCat("image worker queue is full (", tasks_.size(), " waiting); retry later"));
  }
  tasks_.push_back(std::move(task));
  return absl::OkStatus();
}

void WorkPool::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void WorkPool::Loop() {
  const auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !tasks_.empty() || stopping_;
  };
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_, absl::Condition(&has_work));
      // Drain before stopping: every admitted task runs exactly once.
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace rectifier::service
