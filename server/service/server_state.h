// Liveness and readiness of the whole server, shared by the services.
#ifndef RECTIFIER_SERVER_SERVICE_SERVER_STATE_H_
#define RECTIFIER_SERVER_SERVICE_SERVER_STATE_H_

#include <atomic>

namespace rectifier::service {

// Thread-safe. Ready goes true once every service is up and false for good
// when draining starts. (Liveness needs no state: a process that answers
// ServerLive is live.)
class ServerState {
 public:
  bool ready() const { return ready_.load(std::memory_order_acquire); }
  void set_ready(bool ready) { ready_.store(ready, std::memory_order_release); }

 private:
  std::atomic<bool> ready_{false};
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_SERVER_STATE_H_
