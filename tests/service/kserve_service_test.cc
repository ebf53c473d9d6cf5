// Tests for KServeService's request path without a socket: ModelInfer is
// started directly (StartInfer) against a real repository of a tiny model,
// with a real image worker pool whose threads the test occupies, and the
// accounting is read back from ModelStatistics and the Prometheus registry.
#include "server/service/kserve_service.h"

#include <unistd.h>

#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/common/queue_full.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_repository.h"
#include "server/service/image_budget.h"
#include "server/service/work_pool.h"
#include "tests/repository/test_models.h"

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

// One encoded "image" of model `scale` as a KServe BYTES input.
inference::ModelInferRequest ImageRequest() {
  inference::ModelInferRequest request;
  request.set_model_name("scale");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("BYTES");
  input->add_shape(1);
  input->mutable_contents()->add_bytes_contents("not decoded in these tests");
  return request;
}

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
    service_ = std::make_unique<KServeService>(&state_, repository_.get(), pool_.get(), &budget_);
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

  // Runs one ModelInfer to its end.
  absl::Status Infer(const inference::ModelInferRequest& request,
                     inference::ModelInferResponse* response) {
    std::promise<absl::Status> finished;
    service_->StartInfer(&request, response, absl::InfiniteFuture(), nullptr,
                         [&finished](const absl::Status& status) { finished.set_value(status); });
    return finished.get_future().get();
  }

  inference::ModelStatistics Statistics() {
    auto served = repository_->Get("scale", "1");
    EXPECT_TRUE(served.ok()) << served.status();
    inference::ModelStatistics stats;
    if (served.ok()) (*served)->stats->Fill(&stats);
    return stats;
  }

  fs::path root_;
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

}  // namespace
}  // namespace rectifier::service
