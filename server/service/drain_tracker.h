// The unary calls a drain waits for before gRPC's own shutdown.
//
// gRPC's Server::Shutdown sends GOAWAY at once and closes a connection as
// soon as its last call has handed its response to the kernel. A client
// that reads slowly (a loaded machine) may then still be sending flow-control
// frames for a large response: they reach a closed socket, the kernel
// answers with a reset and throws away the response bytes it had not sent
// yet, and the client sees "Connection reset by peer" for a call the server
// completed. So a drain first waits, with the connections open, for the
// unary calls that were in flight when it began, plus a short linger after
// the last of them ended for their responses to be read, and only then
// shuts gRPC down (Triton's order: inference first, endpoints last).
#ifndef RECTIFIER_SERVER_SERVICE_DRAIN_TRACKER_H_
#define RECTIFIER_SERVER_SERVICE_DRAIN_TRACKER_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace rectifier::service {

// Thread-safe.
class DrainTracker {
 public:
  // A unary call starts. Returns whether it counts, i.e. started before the
  // drain; pass that to Ended.
  bool Started();
  // A call from Started ends (its response handed to the transport).
  void Ended(bool counted);
  // Begins the drain (later calls do not count), then waits until every
  // counted call has ended and `linger` has passed since the last one ended,
  // or until `deadline`. Returns false at the deadline with calls in flight.
  bool BeginAndWait(absl::Duration linger, absl::Time deadline);

 private:
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; }

  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_end_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_DRAIN_TRACKER_H_
