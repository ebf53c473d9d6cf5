// WorkPool: a fixed set of threads with a bounded queue, for the image work
// (decode, preprocess, postprocess) that must not run on gRPC threads.
#ifndef RECTIFIER_SERVER_SERVICE_WORK_POOL_H_
#define RECTIFIER_SERVER_SERVICE_WORK_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace rectifier::service {

// Thread-safe. Tasks run in submission order on whichever thread is free.
// Back-pressure follows the scheduler's rule: new work beyond `max_queue`
// waiting tasks is refused at once (UNAVAILABLE), never blocked on.
class WorkPool {
 public:
  // INVALID_ARGUMENT for threads < 1 or max_queue < 1.
  static absl::StatusOr<std::unique_ptr<WorkPool>> Create(int threads, size_t max_queue);
  // Runs every task already queued, then joins the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues new work. UNAVAILABLE ("image worker queue is full (N waiting)")
  // when max_queue tasks are waiting; the task is then not run.
  absl::Status TrySubmit(std::function<void()> task);
  // Queues a continuation of work already admitted (postprocessing after an
  // inference): never refused, so admitted requests always finish.
  void Post(std::function<void()> task);

 private:
  explicit WorkPool(size_t max_queue) : max_queue_(max_queue) {}
  void Loop();

  const size_t max_queue_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_WORK_POOL_H_
