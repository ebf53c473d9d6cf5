// One background thread for slow control-plane work (model load/unload), so
// gRPC callback threads never block on a compile.
#ifndef RECTIFIER_SERVER_SERVICE_CONTROL_WORKER_H_
#define RECTIFIER_SERVER_SERVICE_CONTROL_WORKER_H_

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace rectifier::service {

// Runs submitted tasks in order on its own thread. The destructor runs what
// is queued, then joins. Thread-safe.
class ControlWorker {
 public:
  ControlWorker();
  ~ControlWorker();
  ControlWorker(const ControlWorker&) = delete;
  ControlWorker& operator=(const ControlWorker&) = delete;

  void Submit(std::function<void()> task);

 private:
  void Loop();

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_CONTROL_WORKER_H_
