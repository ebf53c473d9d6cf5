// rectifier-perf --async: the closed loop through asynchronous calls
// (perf_analyzer's --async). A fixed number of calls stays in flight; each
// completion records its call and starts the next, so the load needs no
// thread per outstanding request.
#ifndef RECTIFIER_TOOLS_PERF_ASYNC_LOOP_H_
#define RECTIFIER_TOOLS_PERF_ASYNC_LOOP_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "tools/perf/perf_targets.h"

namespace rectifier::tools {

struct AsyncLoopOptions {
  int concurrency = 1;                              // calls kept in flight
  int64_t max_requests = 0;                         // calls started at most, numbered by `sent`
  absl::Duration call_timeout = absl::Seconds(30);  // each call's deadline
  // How long to wait, once `measure` has returned, for the calls in flight.
  absl::Duration drain_timeout = absl::Seconds(35);
};

// Called once per completed call: its status and its latency in
// milliseconds (from just before the call was started). Runs on the
// threads that complete calls, several at a time.
using RecordCall = std::function<void(const grpc::Status& status, double latency_ms)>;

// Starts options.concurrency calls of `target` (call numbers from `sent`),
// each completion starting the next, until `measure` (run on this thread)
// has returned or options.max_requests calls have started; then waits for
// the calls in flight. A completion that runs on the thread that started
// its call (a call that fails at once) starts the next one itself only up
// to a small depth, then hands it to a helper thread, so a run of
// immediate failures cannot grow the stack. Returns an error when calls
// are still outstanding after options.drain_timeout: their callbacks still
// refer to this call's state, so the process must not go on (exit).
absl::Status RunAsyncClosedLoop(Target& target, const AsyncLoopOptions& options,
                                std::atomic<int64_t>& sent, const RecordCall& record,
                                const std::function<void()>& measure);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_PERF_ASYNC_LOOP_H_
