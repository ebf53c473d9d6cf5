// Test doubles for the scheduler: a recording executor (computes a known
// function of each row, records every batch, can block on demand or fail),
// request builders and a collector of answers.
#ifndef RECTIFIER_TESTS_SCHEDULING_RECORDING_EXECUTOR_H_
#define RECTIFIER_TESTS_SCHEDULING_RECORDING_EXECUTOR_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/common/tensor.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::scheduling::testing {

// An int64 tensor of `shape` filled with `value`.
inline common::Tensor FilledTensor(int64_t value, std::vector<int64_t> shape) {
  common::Tensor tensor;
  tensor.type = common::DataType::kInt64;
  int64_t count = 1;
  for (const int64_t dim : shape) count *= dim;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(static_cast<size_t>(count) * sizeof(int64_t));
  for (int64_t i = 0; i < count; ++i) tensor.data<int64_t>()[i] = value;
  return tensor;
}

// The model the executor computes, per row: output 0 [rows, 1] =
// 2 * (first element of the row) + 1; output 1 [rows, 2] = {v, -v}.
inline int64_t ExpectedOutput(int64_t value) { return 2 * value + 1; }

// Values seen by the executor: one entry per batch, one value per row.
struct RecordedBatch {
  std::vector<int64_t> values;
  std::vector<int64_t> input_shape;  // of input 0, as executed
};

// Thread-safe. Instances made by one RecordingModel share its log, so a test
// sees the batches of all instances in execution order.
class RecordingModel {
 public:
  class Executor;

  std::unique_ptr<BatchExecutor> NewInstance();
  std::vector<std::unique_ptr<BatchExecutor>> NewInstances(int count) {
    std::vector<std::unique_ptr<BatchExecutor>> instances;
    for (int i = 0; i < count; ++i) instances.push_back(NewInstance());
    return instances;
  }

  // The next Execute call (on any instance) blocks until Release().
  void BlockNext() {
    std::lock_guard<std::mutex> lock(mu_);
    block_next_ = true;
  }
  // Waits (real time, bounded) until a blocked Execute is waiting.
  bool WaitBlocked(absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return blocked_; });
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }
  // Every Execute returns this error while set.
  void FailWith(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    failure_ = std::move(status);
  }
  // Every Execute returns outputs with one row too many while set.
  void ReturnWrongBatch(bool wrong) {
    std::lock_guard<std::mutex> lock(mu_);
    wrong_batch_ = wrong;
  }
  // Each Execute sleeps this long (a slow model; real time). With `jitter`,
  // (1 + first value % 3) times as long, so instances finish out of order.
  void SetComputeTime(absl::Duration duration, bool jitter = false) {
    std::lock_guard<std::mutex> lock(mu_);
    compute_time_ = duration;
    jitter_ = jitter;
  }
  // Waits (real time, bounded) until `count` batches have started.
  bool WaitBatches(size_t count, absl::Duration timeout = absl::Seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return batches_.size() >= count; });
  }
  std::vector<RecordedBatch> batches() const {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  std::vector<int64_t> batch_sizes() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> sizes;
    for (const RecordedBatch& batch : batches_) {
      sizes.push_back(static_cast<int64_t>(batch.values.size()));
    }
    return sizes;
  }
  // Values in execution order, across batches.
  std::vector<int64_t> executed_values() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> values;
    for (const RecordedBatch& batch : batches_) {
      values.insert(values.end(), batch.values.begin(), batch.values.end());
    }
    return values;
  }

 private:
  absl::StatusOr<std::vector<common::Tensor>> Execute(
      const std::vector<common::TensorView>& inputs) {
    const common::TensorView& input = inputs.at(0);
    const int64_t rows = input.shape.empty() ? 1 : input.shape[0];
    // Elements per row from the byte count: scheduling does not link the engine.
    const int64_t elements = static_cast<int64_t>(input.bytes.size() / sizeof(int64_t));
    const int64_t row_elements = rows > 0 ? elements / rows : 0;
    RecordedBatch record;
    record.input_shape = input.shape;
    for (int64_t r = 0; r < rows; ++r) {
      record.values.push_back(input.data<int64_t>()[r * row_elements]);
    }
    absl::Duration compute_time;
    absl::Status failure;
    bool wrong_batch = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      batches_.push_back(record);
      cv_.notify_all();
      if (block_next_) {
        block_next_ = false;
        blocked_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return released_; });
      }
      compute_time = compute_time_;
      if (jitter_ && !record.values.empty()) compute_time *= 1 + (record.values[0] % 3);
      failure = failure_;
      wrong_batch = wrong_batch_;
    }
    if (compute_time > absl::ZeroDuration()) absl::SleepFor(compute_time);
    if (!failure.ok()) return failure;
    const int64_t out_rows = rows + (wrong_batch ? 1 : 0);
    std::vector<common::Tensor> outputs;
    outputs.push_back(FilledTensor(0, {out_rows, 1}));
    outputs.push_back(FilledTensor(0, {out_rows, 2}));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t v = record.values[static_cast<size_t>(r)];
      outputs[0].data<int64_t>()[r] = ExpectedOutput(v);
      outputs[1].data<int64_t>()[2 * r] = v;
      outputs[1].data<int64_t>()[2 * r + 1] = -v;
    }
    return outputs;
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RecordedBatch> batches_;
  bool block_next_ = false;
  bool blocked_ = false;
  bool released_ = false;
  absl::Status failure_;
  bool wrong_batch_ = false;
  absl::Duration compute_time_ = absl::ZeroDuration();
  bool jitter_ = false;
};

class RecordingModel::Executor final : public BatchExecutor {
 public:
  explicit Executor(RecordingModel* model) : model_(model) {}
  absl::StatusOr<std::vector<common::Tensor>> Execute(
      const std::vector<common::TensorView>& inputs) override {
    return model_->Execute(inputs);
  }

 private:
  RecordingModel* model_;
};

inline std::unique_ptr<BatchExecutor> RecordingModel::NewInstance() {
  return std::make_unique<Executor>(this);
}

// One answer as `done` received it.
struct Answer {
  absl::StatusOr<std::vector<common::Tensor>> result;
  RequestTimes times;
  int calls = 0;  // how often done was called for this id (must end at 1)
};

// Collects answers by request id. Thread-safe.
class Collector {
 public:
  // A request with one int64 input of `shape` filled with `value`, id
  // "r<value>", answered into this collector.
  std::unique_ptr<InferenceRequest> Request(int64_t value, std::vector<int64_t> shape = {1, 1},
                                            uint64_t priority = 0) {
    auto request = std::make_unique<InferenceRequest>();
    request->id = "r" + std::to_string(value);
    request->inputs.push_back(FilledTensor(value, std::move(shape)));
    request->priority = priority;
    request->done = [this, id = request->id](absl::StatusOr<std::vector<common::Tensor>> result,
                                             const RequestTimes& times) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        Answer& answer = answers_[id];
        answer.result = std::move(result);
        answer.times = times;
        ++answer.calls;
        order_.push_back(id);
        ++total_calls_;
      }
      cv_.notify_all();
    };
    return request;
  }

  // Waits (real time, bounded) until `count` done calls happened in total.
  bool WaitFor(size_t count, absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return total_calls_ >= count; });
  }
  size_t total_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_calls_;
  }
  bool has(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return answers_.count(id) > 0;
  }
  // REQUIRES: `id` was answered.
  Answer Get(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    const Answer& answer = answers_.at(id);
    Answer copy;
    copy.result = answer.result;
    copy.times = answer.times;
    copy.calls = answer.calls;
    return copy;
  }
  std::vector<std::string> order() const {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Answer> answers_;
  std::vector<std::string> order_;
  size_t total_calls_ = 0;
};

// The first element of output 0 of an OK answer, or -1.
inline int64_t FirstOutput(const Answer& answer) {
  if (!answer.result.ok() || answer.result->empty()) return -1;
  return (*answer.result)[0].data<int64_t>()[0];
}

}  // namespace rectifier::scheduling::testing

#endif  // RECTIFIER_TESTS_SCHEDULING_RECORDING_EXECUTOR_H_
