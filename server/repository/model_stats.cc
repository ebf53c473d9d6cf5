#include "server/repository/model_stats.h"

#include <algorithm>

namespace rectifier::repository {

void DurationStat::Add(absl::Duration d) {
  count.fetch_add(1, std::memory_order_relaxed);
  ns.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Nanoseconds(d))),
               std::memory_order_relaxed);
}

void DurationStat::Fill(inference::StatisticDuration* out) const {
  out->set_count(count.load(std::memory_order_relaxed));
  out->set_ns(ns.load(std::memory_order_relaxed));
}

ModelStats::ModelStats(int max_batch_size, const common::Clock* clock)
    : batch_infer_(new DurationStat[std::max(max_batch_size, 1) + 1]),
      max_batch_size_(std::max(max_batch_size, 1)),
      clock_(clock) {}

void ModelStats::RecordRequest(bool ok, absl::Duration total) {
  (ok ? success_ : fail_).Add(total);
}

void ModelStats::RecordPhases(absl::Duration input, absl::Duration queue, absl::Duration infer,
                              absl::Duration output) {
  compute_input_.Add(input);
  queue_.Add(queue);
  compute_infer_.Add(infer);
  compute_output_.Add(output);
}

void ModelStats::RecordExecution(int batch_size, absl::Duration infer) {
  inference_count_.fetch_add(batch_size, std::memory_order_relaxed);
  execution_count_.fetch_add(1, std::memory_order_relaxed);
  last_inference_ms_.store(absl::ToUnixMillis(clock_->Now()), std::memory_order_relaxed);
  if (batch_size >= 1 && batch_size <= max_batch_size_) batch_infer_[batch_size].Add(infer);
}

void ModelStats::Fill(inference::ModelStatistics* out) const {
  out->set_last_inference(
      static_cast<uint64_t>(last_inference_ms_.load(std::memory_order_relaxed)));
  out->set_inference_count(inference_count_.load(std::memory_order_relaxed));
  out->set_execution_count(execution_count_.load(std::memory_order_relaxed));
  auto* stats = out->mutable_inference_stats();
  success_.Fill(stats->mutable_success());
  fail_.Fill(stats->mutable_fail());
  queue_.Fill(stats->mutable_queue());
  compute_input_.Fill(stats->mutable_compute_input());
  compute_infer_.Fill(stats->mutable_compute_infer());
  compute_output_.Fill(stats->mutable_compute_output());
  for (int b = 1; b <= max_batch_size_; ++b) {
    if (batch_infer_[b].count.load(std::memory_order_relaxed) == 0) continue;
    auto* batch = out->add_batch_stats();
    batch->set_batch_size(b);
    batch_infer_[b].Fill(batch->mutable_compute_infer());
    // Inputs and outputs are assembled per request (RecordPhases); a batch
    // has no separate input/output phase of its own.
    batch->mutable_compute_input()->set_count(
        batch_infer_[b].count.load(std::memory_order_relaxed));
    batch->mutable_compute_output()->set_count(
        batch_infer_[b].count.load(std::memory_order_relaxed));
  }
}

}  // namespace rectifier::repository
