// Per-version inference statistics in the shape of KServe/Triton's
// ModelStatistics: lock-free counters updated on the request path.
#ifndef RECTIFIER_SERVER_REPOSITORY_MODEL_STATS_H_
#define RECTIFIER_SERVER_REPOSITORY_MODEL_STATS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "grpc_service.pb.h"
#include "server/common/clock.h"

namespace rectifier::repository {

// A count and a total duration, updated with relaxed atomics (each pair is
// read consistently enough for statistics; exactness across fields is not
// promised, as in Triton).
struct DurationStat {
  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> ns{0};
  void Add(absl::Duration d);
  void Fill(inference::StatisticDuration* out) const;
};

// Thread-safe.
class ModelStats {
 public:
  // `clock` dates the last inference; it must outlive the stats.
  explicit ModelStats(int max_batch_size, const common::Clock* clock = common::Clock::Real());

  // One request that finished: its outcome and end-to-end time in the server.
  void RecordRequest(bool ok, absl::Duration total);
  // One request's phases: input preparation (request decoding), queue wait,
  // model execution of its batch, output extraction (response encoding).
  void RecordPhases(absl::Duration input, absl::Duration queue, absl::Duration infer,
                    absl::Duration output);
  // One executed batch.
  void RecordExecution(int batch_size, absl::Duration infer);

  void Fill(inference::ModelStatistics* out) const;

 private:
  DurationStat success_, fail_, queue_, compute_input_, compute_infer_, compute_output_;
  std::atomic<uint64_t> inference_count_{0};
  std::atomic<uint64_t> execution_count_{0};
  std::atomic<int64_t> last_inference_ms_{0};
  std::unique_ptr<DurationStat[]> batch_infer_;  // index = batch size
  int max_batch_size_;
  const common::Clock* const clock_;
};

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_MODEL_STATS_H_
