// A full queue, told apart by a payload on the status, not by its message:
// the scheduler's request queue and the image worker pool both refuse with
// it, and metrics count both as reason "queue_full".
#ifndef RECTIFIER_SERVER_COMMON_QUEUE_FULL_H_
#define RECTIFIER_SERVER_COMMON_QUEUE_FULL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace rectifier::common {

inline constexpr char kQueueFullPayload[] = "type.rectifier/queue_full";

// UNAVAILABLE (Triton's code for a full queue: the client may retry) with
// the payload.
inline absl::Status QueueFullError(absl::string_view message) {
  absl::Status status = absl::UnavailableError(message);
  status.SetPayload(kQueueFullPayload, absl::Cord());
  return status;
}

inline bool IsQueueFull(const absl::Status& status) {
  return status.GetPayload(kQueueFullPayload).has_value();
}

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_QUEUE_FULL_H_
