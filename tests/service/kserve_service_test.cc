// Tests for KServeService's request path without a socket: ModelInfer is
// started directly (StartInfer) against a real repository of a tiny model,
// with a real image worker pool whose thread the test occupies and a fake
// clock shared by the service, the repository and its schedulers, so
// deadline, cancellation and reload decisions are exact. The accounting is
// read back from ModelStatistics and the Prometheus registry.
#include "server/service/kserve_service.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/common/queue_full.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_repository.h"
#include "server/service/image_budget.h"
#include "server/service/work_pool.h"
#include "tests/imaging/test_images.h"
#include "tests/repository/test_models.h"
#include "tests/scheduling/fake_clock.h"

namespace rectifier::service {
namespace {

namespace fs = std::filesystem;

// The value of the counter `name` whose labels are exactly `labels`.
std::optional<double> Counter(prometheus::Registry& registry, const std::string& name,
                              const prometheus::Labels& labels) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      prometheus::Labels have;
      for (const auto& pair : metric.label) have[pair.name] = pair.value;
      if (have == labels) return metric.counter.value;
    }
  }
  return std::nullopt;
}

// A 2x2 RGB PNG: the size of model `scale`'s input, so it is not resized.
std::string Png() { return imaging::Encode(imaging::Gradient8(2, 2, 3), ".png"); }

// One encoded image (`bytes`) for model `scale` as a KServe BYTES input,
// with a `timeout` parameter in microseconds (0: none).
inference::ModelInferRequest ImageRequest(const std::string& bytes = "never decoded",
                                          int64_t timeout_us = 0) {
  inference::ModelInferRequest request;
  request.set_model_name("scale");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("BYTES");
  input->add_shape(1);
  input->mutable_contents()->add_bytes_contents(bytes);
  if (timeout_us > 0) (*request.mutable_parameters())["timeout"].set_int64_param(timeout_us);
  return request;
}

std::vector<float> Output(const inference::ModelInferResponse& response) {
  if (response.raw_output_contents_size() != 1) return {};
  const std::string& raw = response.raw_output_contents(0);
  std::vector<float> values(raw.size() / sizeof(float));
  std::memcpy(values.data(), raw.data(), values.size() * sizeof(float));
  return values;
}

// A ModelInfer started now and finished later.
class PendingInfer {
 public:
  PendingInfer(KServeService& service, inference::ModelInferRequest request,
               std::function<bool()> is_cancelled = nullptr)
      : request_(std::move(request)) {
    service.StartInfer(&request_, &response_, absl::InfiniteFuture(), std::move(is_cancelled),
                       [this](const absl::Status& status) { finished_.set_value(status); });
  }
  absl::Status Wait() { return future_.get(); }
  const inference::ModelInferResponse& response() const { return response_; }

 private:
  inference::ModelInferRequest request_;
  inference::ModelInferResponse response_;
  std::promise<absl::Status> finished_;
  std::future<absl::Status> future_ = finished_.get_future();
};

class KServeServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rectifier-kserve-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    testing::WriteFile(root_ / "scale" / "1" / "model.onnx", testing::ScaleModelBytes(2.0f));
    metrics_ = std::make_unique<metrics::ServerMetrics>(registry_);
    repository::RepositoryOptions options;
    options.root = root_.string();
    options.cpus = 1;
    options.drain_timeout = absl::Seconds(10);
    options.metrics = metrics_.get();
    options.clock = &clock_;
    auto repository = repository::ModelRepository::Create(options);
    ASSERT_TRUE(repository.ok()) << repository.status();
    repository_ = *std::move(repository);
    state_.set_ready(true);
  }
  void TearDown() override {
    service_.reset();
    pool_.reset();
    repository_.reset();
    fs::remove_all(root_);
  }

  // The service over an image pool of `threads` workers and `queue` slots.
  void StartService(int threads, size_t queue) {
    auto pool = WorkPool::Create(threads, queue);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    service_ = std::make_unique<KServeService>(&state_, repository_.get(), pool_.get(), &budget_,
                                               /*tokens=*/nullptr, &clock_);
  }

  // Occupies the pool's single worker until `release_` is notified, and
  // fills its queue with one more task.
  void FillImagePool() {
    absl::Notification started;
    ASSERT_TRUE(pool_
                    ->TrySubmit([&started, this] {
                      started.Notify();
                      release_.WaitForNotification();
                    })
                    .ok());
    started.WaitForNotification();
    ASSERT_TRUE(pool_->TrySubmit([] {}).ok());
  }

  // Occupies the pool's single worker until `release_` is notified.
  void BlockImagePool() {
    absl::Notification started;
    ASSERT_TRUE(pool_
                    ->TrySubmit([&started, this] {
                      started.Notify();
                      release_.WaitForNotification();
                    })
                    .ok());
    started.WaitForNotification();
  }

  // Runs one ModelInfer to its end.
  absl::Status Infer(const inference::ModelInferRequest& request,
                     inference::ModelInferResponse* response) {
    std::promise<absl::Status> finished;
    service_->StartInfer(&request, response, absl::InfiniteFuture(), nullptr,
                         [&finished](const absl::Status& status) { finished.set_value(status); });
    return finished.get_future().get();
  }

  std::optional<double> Failures(const std::string& reason) {
    return Counter(registry_, "rectifier_request_failures_total",
                   {{"model", "scale"}, {"version", "1"}, {"api", "kserve"}, {"reason", reason}});
  }

  // Replaces model `scale` version 1 on disk and reloads it.
  void Reload(float factor, int channels) {
    testing::WriteFile(root_ / "scale" / "1" / "model.onnx",
                       testing::ScaleModelBytes(factor, channels));
    ASSERT_TRUE(repository_->Load("scale").ok());
  }

  inference::ModelStatistics Statistics() {
    auto served = repository_->Get("scale", "1");
    EXPECT_TRUE(served.ok()) << served.status();
    inference::ModelStatistics stats;
    if (served.ok()) (*served)->stats->Fill(&stats);
    return stats;
  }

  fs::path root_;
  scheduling::FakeClock clock_;
  prometheus::Registry registry_;
  std::unique_ptr<metrics::ServerMetrics> metrics_;
  std::unique_ptr<repository::ModelRepository> repository_;
  ServerState state_;
  ImageMemoryBudget budget_{0};
  absl::Notification release_;
  std::unique_ptr<WorkPool> pool_;
  std::unique_ptr<KServeService> service_;
};

TEST_F(KServeServiceTest, ImagePoolRefusalIsCountedLikeTheVisionApi) {
  StartService(/*threads=*/1, /*queue=*/1);
  FillImagePool();
  const inference::ModelInferRequest request = ImageRequest();
  inference::ModelInferResponse response;
  const absl::Status status = Infer(request, &response);
  release_.Notify();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_TRUE(common::IsQueueFull(status)) << status;
  // Used to reach the client only: neither ModelStatistics nor the metrics
  // knew the model had refused a request.
  EXPECT_EQ(Statistics().inference_stats().fail().count(), 1u);
  EXPECT_EQ(Statistics().inference_stats().success().count(), 0u);
  EXPECT_EQ(
      Counter(registry_, "rectifier_request_failures_total",
              {{"model", "scale"}, {"version", "1"}, {"api", "kserve"}, {"reason", "queue_full"}}),
      1.0);
  EXPECT_EQ(
      Counter(registry_, "rectifier_requests_total",
              {{"model", "scale"}, {"version", "1"}, {"api", "kserve"}, {"outcome", "failure"}}),
      1.0);
}

TEST_F(KServeServiceTest, AnImageRequestIsAnsweredAndAccountedOnce) {
  StartService(/*threads=*/1, /*queue=*/4);
  inference::ModelInferResponse response;
  const absl::Status status = Infer(ImageRequest(Png()), &response);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(response.model_name(), "scale");
  EXPECT_EQ(response.model_version(), "1");
  ASSERT_EQ(response.outputs_size(), 1);
  EXPECT_EQ(
      std::vector<int64_t>(response.outputs(0).shape().begin(), response.outputs(0).shape().end()),
      (std::vector<int64_t>{1, 3, 2, 2}));
  EXPECT_EQ(Output(response).size(), 12u);
  const inference::ModelStatistics stats = Statistics();
  EXPECT_EQ(stats.inference_stats().success().count(), 1u);
  EXPECT_EQ(stats.inference_stats().fail().count(), 0u);
  EXPECT_EQ(stats.inference_stats().compute_output().count(), 1u);
  EXPECT_EQ(
      Counter(registry_, "rectifier_requests_total",
              {{"model", "scale"}, {"version", "1"}, {"api", "kserve"}, {"outcome", "success"}}),
      1.0);
}

TEST_F(KServeServiceTest, ImagesStillWaitingAtTheirDeadlineAreNotDecoded) {
  StartService(/*threads=*/1, /*queue=*/4);
  BlockImagePool();
  // Deadline = start + 1 ms on the fake clock.
  PendingInfer late(*service_, ImageRequest(Png(), /*timeout_us=*/1000));
  clock_.Advance(absl::Milliseconds(2));
  // Arrives after the advance: its deadline is still 1 ms away, however
  // long the worker is blocked in real time.
  PendingInfer in_time(*service_, ImageRequest(Png(), /*timeout_us=*/1000));
  release_.Notify();
  const absl::Status expired = late.Wait();
  EXPECT_EQ(expired.code(), absl::StatusCode::kDeadlineExceeded) << expired;
  EXPECT_EQ(expired.message(), "deadline passed while the images waited for an image worker");
  const absl::Status ran = in_time.Wait();
  EXPECT_TRUE(ran.ok()) << ran;
  EXPECT_EQ(Failures("deadline"), 1.0);
  EXPECT_EQ(Statistics().inference_stats().success().count(), 1u);
}

TEST_F(KServeServiceTest, ImagesCancelledWhileWaitingAreNotDecodedAndAreCounted) {
  StartService(/*threads=*/1, /*queue=*/4);
  BlockImagePool();
  std::atomic<bool> cancelled{false};
  PendingInfer infer(*service_, ImageRequest(Png()), [&cancelled] { return cancelled.load(); });
  cancelled = true;
  release_.Notify();
  const absl::Status status = infer.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(Failures("cancelled"), 1.0);
  EXPECT_EQ(Statistics().inference_stats().fail().count(), 1u);
}

// Triton's system shared memory: a [1, 3, 2, 2] FP32 input read from one
// region, the output written to another; the response carries no bytes.
TEST_F(KServeServiceTest, ModelInferThroughClientSharedMemory) {
  StartService(/*threads=*/1, /*queue=*/4);
  const std::string key = absl::StrCat("/rectifier_kserve_test_", getpid());
  const int fd = shm_open(key.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  std::vector<float> x(12);
  for (int i = 0; i < 12; ++i) x[i] = static_cast<float>(i) - 5.5f;
  ASSERT_EQ(pwrite(fd, x.data(), 48, 0), 48);
  inference::ModelInferRequest request;
  request.set_model_name("scale");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  for (int d : {1, 3, 2, 2}) input->add_shape(d);
  auto shm = [](auto* params, const std::string& region, int64_t size) {
    (*params)["shared_memory_region"].set_string_param(region);
    (*params)["shared_memory_byte_size"].set_int64_param(size);
  };
  shm(input->mutable_parameters(), "in", 48);
  auto* output = request.add_outputs();
  output->set_name("y");
  shm(output->mutable_parameters(), "out", 48);

  // Off until the server has a registry: the error names the flag.
  inference::ModelInferResponse refused;
  const absl::Status off = Infer(request, &refused);
  EXPECT_EQ(off.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(off.message(), "--allow-client-shm")) << off;

  SharedMemoryRegistry registry;
  service_->set_shared_memory(&registry);
  ASSERT_TRUE(registry.Register("in", key, 0, 1024).ok());
  ASSERT_TRUE(registry.Register("out", key, 1024, 1024).ok());
  inference::ServerMetadataResponse metadata;
  service_->GetServerMetadata(&metadata);
  EXPECT_NE(
      std::find(metadata.extensions().begin(), metadata.extensions().end(), "system_shared_memory"),
      metadata.extensions().end());
  inference::ModelInferResponse response;
  const absl::Status status = Infer(request, &response);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  EXPECT_TRUE(response.raw_output_contents(0).empty());
  std::vector<float> y(12);
  ASSERT_EQ(pread(fd, y.data(), 48, 1024), 48);
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(y[i], 2.0f * x[i]) << i;

  // An unknown output region is refused before the model runs.
  shm(output->mutable_parameters(), "missing", 48);
  inference::ModelInferResponse unknown;
  const absl::Status missing = Infer(request, &unknown);
  EXPECT_EQ(missing.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(missing.message(), "'missing'")) << missing;
  service_->set_shared_memory(nullptr);
  close(fd);
  shm_unlink(key.c_str());
}

TEST_F(KServeServiceTest, AReloadWithTheSameInputRunsOnTheNewCopy) {
  StartService(/*threads=*/1, /*queue=*/4);
  inference::ModelInferResponse before;
  ASSERT_TRUE(Infer(ImageRequest(Png()), &before).ok());
  BlockImagePool();
  // Resolved (version 1, factor 2) now; decoded after the reload (factor 3).
  PendingInfer infer(*service_, ImageRequest(Png()));
  Reload(/*factor=*/3.0f, /*channels=*/3);
  release_.Notify();
  const absl::Status status = infer.Wait();
  ASSERT_TRUE(status.ok()) << status;
  const std::vector<float> old_values = Output(before);
  const std::vector<float> new_values = Output(infer.response());
  ASSERT_EQ(new_values.size(), old_values.size());
  for (size_t i = 0; i < new_values.size(); ++i) {
    EXPECT_FLOAT_EQ(new_values[i], old_values[i] * 1.5f) << i;
  }
}

TEST_F(KServeServiceTest, AReloadWithAnotherInputRefusesWhatWasPreparedForTheOld) {
  StartService(/*threads=*/1, /*queue=*/4);
  BlockImagePool();
  PendingInfer infer(*service_, ImageRequest(Png()));
  Reload(/*factor=*/2.0f, /*channels=*/1);
  release_.Notify();
  const absl::Status status = infer.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(status.message(),
            "model 'scale' was reloaded with different inputs or outputs while the request was "
            "being prepared; retry");
}

}  // namespace
}  // namespace rectifier::service
