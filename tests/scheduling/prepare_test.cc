// Tests for BatchExecutor::Prepare: run on the instance's worker thread
// (named after the model) before any batch, and a failure fails the
// scheduler's creation.
#include <future>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "server/common/thread_name.h"
#include "server/scheduling/dynamic_batch_scheduler.h"

namespace rectifier::scheduling {
namespace {

class ThreadRecordingExecutor : public BatchExecutor {
 public:
  explicit ThreadRecordingExecutor(absl::Status prepare_result)
      : prepare_result_(std::move(prepare_result)) {}
  absl::Status Prepare() override {
    prepare_thread_ = std::this_thread::get_id();
    prepare_thread_name_ = common::CurrentThreadName();
    return prepare_result_;
  }
  absl::StatusOr<std::vector<common::Tensor>> Execute(
      const std::vector<common::TensorView>& inputs) override {
    execute_thread_ = std::this_thread::get_id();
    std::vector<common::Tensor> outputs;
    outputs.reserve(inputs.size());
    for (const common::TensorView& input : inputs) outputs.push_back(common::Tensor::CopyOf(input));
    return outputs;
  }
  std::thread::id prepare_thread_;
  std::string prepare_thread_name_;
  std::thread::id execute_thread_;

 private:
  absl::Status prepare_result_;
};

SchedulerOptions Options() {
  SchedulerOptions options;
  options.model_name = "chest_xray_classifier";
  options.model_version = "1";
  options.max_batch_size = 4;
  return options;
}

TEST(PrepareTest, RunsOnTheWorkerThreadBeforeAnyBatch) {
  auto executor = std::make_unique<ThreadRecordingExecutor>(absl::OkStatus());
  ThreadRecordingExecutor* raw = executor.get();
  std::vector<std::unique_ptr<BatchExecutor>> instances;
  instances.push_back(std::move(executor));
  auto scheduler = CreateDynamicBatchScheduler(Options(), std::move(instances), nullptr);
  ASSERT_TRUE(scheduler.ok()) << scheduler.status();
  // Create returned, so Prepare has run.
  EXPECT_NE(raw->prepare_thread_, std::thread::id());
  EXPECT_NE(raw->prepare_thread_, std::this_thread::get_id());
  // top -H and perf show the model's name (cut to the kernel's 15 bytes).
  EXPECT_EQ(raw->prepare_thread_name_, "chest_xray_clas");

  auto request = std::make_unique<InferenceRequest>();
  common::Tensor input;  // built by hand: scheduling links no engine code
  input.shape = {1, 2};
  input.bytes.resize(2 * sizeof(float));
  request->inputs.push_back(std::move(input));
  std::promise<absl::Status> done;
  request->done = [&done](const absl::StatusOr<std::vector<common::Tensor>>& result,
                          const RequestTimes&) { done.set_value(result.status()); };
  (*scheduler)->Enqueue(std::move(request));
  EXPECT_TRUE(done.get_future().get().ok());
  EXPECT_EQ(raw->execute_thread_, raw->prepare_thread_);
}

TEST(PrepareTest, AFailedPrepareFailsCreation) {
  std::vector<std::unique_ptr<BatchExecutor>> instances;
  instances.push_back(std::make_unique<ThreadRecordingExecutor>(absl::OkStatus()));
  instances.push_back(
      std::make_unique<ThreadRecordingExecutor>(absl::InvalidArgumentError("warmup 'b8' failed")));
  auto scheduler = CreateDynamicBatchScheduler(Options(), std::move(instances), nullptr);
  ASSERT_FALSE(scheduler.ok());
  EXPECT_EQ(scheduler.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.status().message(), "warmup 'b8' failed");
}

}  // namespace
}  // namespace rectifier::scheduling
