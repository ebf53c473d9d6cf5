// The scheduler's own cost per request: closed-loop clients against a
// zero-cost executor (it echoes its inputs), at concurrency 1, 4, 16 and 64,
// with dynamic batching on (max 64, no delay) and off (every request alone).
// Whatever time a request takes here is queueing, batching, thread hand-off
// and answer delivery: the floor the scheduler adds to every model.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "benchmark/benchmark.h"
#include "server/scheduling/dynamic_batch_scheduler.h"

namespace rectifier::scheduling {
namespace {

constexpr int kInstances = 2;  // the default budget on the 2-CPU bench machine

std::atomic<int64_t> g_batches{0};
std::atomic<int64_t> g_rows{0};

class EchoExecutor final : public BatchExecutor {
 public:
  absl::StatusOr<std::vector<common::Tensor>> Execute(
      const std::vector<common::TensorView>& inputs) override {
    g_batches.fetch_add(1, std::memory_order_relaxed);
    g_rows.fetch_add(inputs.front().shape[0], std::memory_order_relaxed);
    std::vector<common::Tensor> outputs;
    outputs.reserve(inputs.size());
    for (const common::TensorView& input : inputs) outputs.push_back(common::Tensor::CopyOf(input));
    return outputs;
  }
};

// Shared by the benchmark's threads: thread 0 creates it before the timed
// loop and destroys it after (Google Benchmark puts a barrier at both ends).
std::unique_ptr<Scheduler> g_scheduler;

common::Tensor SmallInput() {
  common::Tensor tensor;
  tensor.type = common::DataType::kFloat32;
  tensor.shape = {1, 4};
  tensor.bytes.resize(4 * sizeof(float));
  return tensor;
}

void SchedulerOverhead(benchmark::State& state) {
  const bool batching = state.range(0) != 0;
  if (state.thread_index() == 0) {
    SchedulerOptions options;
    options.model_name = "echo";
    options.model_version = "1";
    options.batchable = true;
    options.max_batch_size = batching ? 64 : 1;
    options.dynamic_batching = batching;
    options.max_queue_delay = absl::ZeroDuration();
    std::vector<std::unique_ptr<BatchExecutor>> instances;
    instances.reserve(kInstances);
    for (int i = 0; i < kInstances; ++i) instances.push_back(std::make_unique<EchoExecutor>());
    auto scheduler =
        CreateDynamicBatchScheduler(options, std::move(instances), common::Clock::Real());
    if (!scheduler.ok()) {
      state.SkipWithError(scheduler.status().ToString().c_str());
      return;
    }
    g_scheduler = std::move(scheduler).value();
    g_batches = 0;
    g_rows = 0;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool answered = false;
  bool ok = true;
  const common::Tensor input = SmallInput();
  for (auto _ : state) {
    auto request = std::make_unique<InferenceRequest>();
    request->inputs.push_back(input);
    request->done = [&](const absl::StatusOr<std::vector<common::Tensor>>& result,
                        const RequestTimes&) {
      {
        std::lock_guard<std::mutex> lock(mu);
        answered = true;
        ok = result.ok();
      }
      cv.notify_one();
    };
    g_scheduler->Enqueue(std::move(request));
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return answered; });
    answered = false;
    if (!ok) {
      state.SkipWithError("request failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());

  if (state.thread_index() == 0) {
    g_scheduler->Shutdown(absl::InfiniteFuture());
    g_scheduler.reset();
    const int64_t batches = g_batches.load();
    state.counters["avg_batch"] =
        batches > 0 ? static_cast<double>(g_rows.load()) / static_cast<double>(batches) : 0.0;
  }
}
BENCHMARK(SchedulerOverhead)
    ->ArgName("batching")
    ->Arg(0)
    ->Arg(1)
    ->Threads(1)
    ->Threads(4)
    ->Threads(16)
    ->Threads(64)
    ->UseRealTime()
    // The 2-vCPU machine is shared: with --benchmark_repetitions the minimum is
    // the scheduler's floor, the median what a busy machine gives.
    ->ComputeStatistics("min", [](const std::vector<double>& v) {
      return *std::min_element(v.begin(), v.end());
    });

}  // namespace
}  // namespace rectifier::scheduling

BENCHMARK_MAIN();
