// Tests for the metrics the model repository keeps: model state through
// load, failure, in-place reload, version roll-out and unload, and in-flight
// requests from Submit until the response callback has run. Values are read
// from a real prometheus-cpp registry.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_repository.h"
#include "tests/repository/submit_request.h"
#include "tests/repository/test_models.h"

namespace rectifier::repository {
namespace {

namespace fs = std::filesystem;
using testing::ScaleModelBytes;
using testing::SubmitRequest;
using testing::WriteFile;
using Done = std::function<void(absl::StatusOr<std::vector<engine::Tensor>>,
                                const scheduling::RequestTimes&)>;

// The value of the series `name` whose labels are exactly `labels`.
std::optional<double> Sample(const std::vector<prometheus::MetricFamily>& families,
                             const std::string& name, const prometheus::Labels& labels) {
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      prometheus::Labels have;
      for (const auto& pair : metric.label) have[pair.name] = pair.value;
      if (have != labels) continue;
      switch (family.type) {
        case prometheus::MetricType::Counter:
          return metric.counter.value;
        case prometheus::MetricType::Gauge:
          return metric.gauge.value;
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

// Every label set of `name` that has label model=`model`.
int SeriesOf(const std::vector<prometheus::MetricFamily>& families, const std::string& name,
             const std::string& model) {
  int count = 0;
  for (const auto& family : families) {
    if (family.name != name) continue;
    for (const auto& metric : family.metric) {
      for (const auto& pair : metric.label) {
        if (pair.name == "model" && pair.value == model) ++count;
      }
    }
  }
  return count;
}

engine::Tensor Input(float value) {
  engine::Tensor t = engine::Tensor::Zeros(engine::DataType::kFloat32, {1, 3, 2, 2});
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = value;
  return t;
}

// y = Relu(x), x and y FP32 [batch, 3, 2, 2]: one standalone activation layer.
std::string ReluModelBytes() {
  onnx::ModelProto model;
  model.set_ir_version(8);
  model.add_opset_import()->set_version(13);
  onnx::GraphProto* graph = model.mutable_graph();
  graph->set_name("relu");
  const auto describe = [](onnx::ValueInfoProto* value, const char* name) {
    value->set_name(name);
    auto* tensor = value->mutable_type()->mutable_tensor_type();
    tensor->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tensor->mutable_shape();
    shape->add_dim()->set_dim_param("batch");
    for (int d : {3, 2, 2}) shape->add_dim()->set_dim_value(d);
  };
  describe(graph->add_input(), "x");
  describe(graph->add_output(), "y");
  onnx::NodeProto* node = graph->add_node();
  node->set_op_type("Relu");
  node->set_name("relu");
  node->add_input("x");
  node->add_output("y");
  return model.SerializeAsString();
}

class RepositoryMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rectifier-repo-metrics-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override {
    repo_.reset();  // before the metrics it observes into
    fs::remove_all(root_);
  }

  void AddModel(const std::string& name, int version, float factor) {
    WriteFile(root_ / name / std::to_string(version) / "model.onnx", ScaleModelBytes(factor));
  }

  void Open(std::vector<std::string> startup) {
    RepositoryOptions options;
    options.root = root_.string();
    options.mode = ControlMode::kExplicit;
    options.startup_models = std::move(startup);
    options.cpus = 1;
    options.drain_timeout = absl::Seconds(10);
    options.metrics = &metrics_;
    auto repo = ModelRepository::Create(options);
    ASSERT_TRUE(repo.ok()) << repo.status();
    repo_ = std::move(repo).value();
  }

  // Submits one request; `done` runs on the scheduler's worker thread.
  void Submit(const std::string& name, float value, Done done) {
    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(Input(value));
    request->done = std::move(done);
    SubmitRequest(*repo_, name, "", std::move(request));
  }

  absl::Status Infer(const std::string& name) {
    std::promise<absl::Status> promise;
    Submit(name, 1.f,
           [&promise](const absl::StatusOr<std::vector<engine::Tensor>>& result,
                      const scheduling::RequestTimes&) { promise.set_value(result.status()); });
    return promise.get_future().get();
  }

  std::optional<double> State(const std::string& model, const std::string& version,
                              const char* state) {
    prometheus::Labels labels{{"model", model}, {"state", state}};
    if (!version.empty()) labels["version"] = version;
    return Sample(registry_.Collect(), "rectifier_model_state", labels);
  }

  std::optional<double> Value(const std::string& name, const std::string& model,
                              const std::string& version) {
    return Sample(registry_.Collect(), name, {{"model", model}, {"version", version}});
  }

  std::optional<double> Scraped(const std::string& name, const prometheus::Labels& labels) {
    return Sample(metrics_.scrape_time_gauges()->Collect(), name, labels);
  }

  fs::path root_;
  prometheus::Registry registry_;
  metrics::ServerMetrics metrics_{registry_};
  std::unique_ptr<ModelRepository> repo_;
};

TEST_F(RepositoryMetricsTest, StateFollowsLoadFailureReloadRolloutAndUnload) {
  AddModel("m", 1, 2.f);
  AddModel("broken", 1, 2.f);
  WriteFile(root_ / "broken" / "config.pbtxt", "max_batch_size: -3");
  Open({"m", "broken"});
  ASSERT_NE(repo_, nullptr);

  EXPECT_EQ(State("m", "1", "ready"), 1.0);
  EXPECT_EQ(State("m", "1", "loading"), 0.0);
  EXPECT_EQ(State("m", "", "ready"), std::nullopt);  // a version is loaded: no model-level series
  // The failed model has no version: one model-level series set, unavailable.
  EXPECT_EQ(State("broken", "", "unavailable"), 1.0);
  EXPECT_EQ(State("broken", "", "ready"), 0.0);
  EXPECT_EQ(State("broken", "1", "loading"), std::nullopt);  // its attempt left no series

  // In-place reload of version 1: the series carry on (same label set), ready.
  ASSERT_TRUE(Infer("m").ok());
  EXPECT_EQ(Value("rectifier_inferences_total", "m", "1"), 1.0);
  WriteFile(root_ / "m" / "config.pbtxt", "max_batch_size: 4");
  ASSERT_TRUE(repo_->Load("m").ok());
  EXPECT_EQ(State("m", "1", "ready"), 1.0);
  EXPECT_EQ(State("m", "1", "unloading"), 0.0);
  ASSERT_TRUE(Infer("m").ok());
  EXPECT_EQ(Value("rectifier_inferences_total", "m", "1"), 2.0);
  EXPECT_EQ(Value("rectifier_model_instances", "m", "1"), 1.0);

  // A failed reload keeps the served version ready.
  WriteFile(root_ / "m" / "config.pbtxt", "max_batch_size: -1");
  EXPECT_FALSE(repo_->Load("m").ok());
  EXPECT_EQ(State("m", "1", "ready"), 1.0);
  EXPECT_EQ(State("m", "", "unavailable"), std::nullopt);

  // Fixed: the model-level series goes, the version is ready.
  WriteFile(root_ / "broken" / "config.pbtxt", "max_batch_size: 2");
  ASSERT_TRUE(repo_->Load("broken").ok());
  EXPECT_EQ(State("broken", "", "unavailable"), std::nullopt);
  EXPECT_EQ(State("broken", "1", "ready"), 1.0);

  // Roll-out to version 2: 1 drains and its series go; 2 is ready.
  fs::remove(root_ / "m" / "config.pbtxt");
  AddModel("m", 2, 3.f);
  ASSERT_TRUE(repo_->Load("m").ok());
  EXPECT_EQ(State("m", "2", "ready"), 1.0);
  EXPECT_EQ(State("m", "1", "ready"), std::nullopt);
  EXPECT_EQ(Value("rectifier_inferences_total", "m", "1"), std::nullopt);

  // Unload: no series of m left in any family.
  ASSERT_TRUE(repo_->Unload("m").ok());
  const auto families = registry_.Collect();
  for (const char* name :
       {"rectifier_model_state", "rectifier_inflight_requests", "rectifier_requests_total",
        "rectifier_inferences_total", "rectifier_model_instances"}) {
    EXPECT_EQ(SeriesOf(families, name, "m"), 0) << name;
  }
  EXPECT_EQ(SeriesOf(metrics_.scrape_time_gauges()->Collect(), "rectifier_queue_depth", "m"), 0);
  EXPECT_EQ(State("broken", "1", "ready"), 1.0);

  // Shutdown: what is still served drains as unloading.
  repo_->Shutdown(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(State("broken", "1", "unloading"), 1.0);
  EXPECT_EQ(State("broken", "1", "ready"), 0.0);
}

TEST_F(RepositoryMetricsTest, InflightCountsRequestsUntilTheirCallbackHasRun) {
  AddModel("m", 1, 2.f);
  WriteFile(root_ / "m" / "config.pbtxt", "max_batch_size: 1\ninstance_group { count: 1 }");
  Open({"m"});
  ASSERT_NE(repo_, nullptr);
  EXPECT_EQ(Value("rectifier_inflight_requests", "m", "1"), 0.0);

  // The first request's callback blocks the only worker, so the next two wait
  // in the queue: three requests accepted and not answered.
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  Submit("m", 1.f,
         [&entered, released](const absl::StatusOr<std::vector<engine::Tensor>>&,
                              const scheduling::RequestTimes&) {
           entered.set_value();
           released.wait();
         });
  entered.get_future().wait();
  std::vector<std::promise<absl::Status>> results(2);
  for (auto& result : results) {
    Submit("m", 2.f,
           [&result](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                     const scheduling::RequestTimes&) { result.set_value(r.status()); });
  }
  EXPECT_EQ(Value("rectifier_inflight_requests", "m", "1"), 3.0);
  EXPECT_EQ(Sample(metrics_.scrape_time_gauges()->Collect(), "rectifier_queue_depth",
                   {{"model", "m"}, {"version", "1"}}),
            2.0);
  release.set_value();
  for (auto& result : results) EXPECT_TRUE(result.get_future().get().ok());
  // The last callback has returned once its promise is set, but the gauge
  // drops just after it returns: wait for it (bounded).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Value("rectifier_inflight_requests", "m", "1") != 0.0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(Value("rectifier_inflight_requests", "m", "1"), 0.0);

  // Refused requests (unknown version) were never accepted: not counted.
  auto request = std::make_unique<scheduling::InferenceRequest>();
  request->inputs.push_back(Input(1.f));
  std::promise<absl::Status> refused;
  request->done = [&refused](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                             const scheduling::RequestTimes&) { refused.set_value(r.status()); };
  SubmitRequest(*repo_, "m", "9", std::move(request));
  EXPECT_EQ(refused.get_future().get().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Value("rectifier_inflight_requests", "m", "1"), 0.0);
}

// engine { max_cached_plans } reaches the engine, and its plan cache is
// exported: with room for one plan, batch 2 after batch 1 drops one.
TEST_F(RepositoryMetricsTest, PlanCacheIsBoundedByConfigAndExported) {
  WriteFile(root_ / "capped" / "1" / "model.onnx", ReluModelBytes());
  WriteFile(root_ / "capped" / "config.pbtxt",
            "max_batch_size: 4\nengine { max_cached_plans: 1 }\n");
  Open({"capped"});
  ASSERT_NE(repo_, nullptr);
  const prometheus::Labels labels{{"model", "capped"}, {"version", "1"}};
  const double compiles_before = Scraped("rectifier_plan_compiles_total", labels).value_or(-1);
  EXPECT_GE(compiles_before, 1.0);
  for (int64_t batch : {1, 2}) {
    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {batch, 3, 2, 2}));
    std::promise<absl::Status> done;
    request->done = [&done](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                            const scheduling::RequestTimes&) { done.set_value(r.status()); };
    SubmitRequest(*repo_, "capped", "", std::move(request));
    ASSERT_TRUE(done.get_future().get().ok()) << "batch " << batch;
  }
  EXPECT_EQ(Scraped("rectifier_cached_plans", labels), 1.0);
  EXPECT_GE(Scraped("rectifier_plan_evictions_total", labels).value_or(0), 1.0);
  EXPECT_GT(Scraped("rectifier_plan_compiles_total", labels).value_or(0), compiles_before);
  ASSERT_TRUE(repo_->Unload("capped").ok());
  EXPECT_EQ(Scraped("rectifier_cached_plans", labels), std::nullopt);
}

// A model with dynamic height and width is checked at load with its first
// model_warmup shape, so that warmup compiles nothing more; each new shape
// then compiles one plan, and the cache counts its hits and misses.
TEST_F(RepositoryMetricsTest, DynamicModelCompilesItsWarmupShapeAtLoadAndOnePlanPerShape) {
  WriteFile(root_ / "any_size" / "1" / "model.onnx",
            testing::ScaleModelBytes(2.f, 3, /*dynamic_batch=*/true, /*dynamic_hw=*/true));
  WriteFile(root_ / "any_size" / "config.pbtxt", R"(
    max_batch_size: 4
    model_warmup {
      name: "native" batch_size: 1
      inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 3, 6, 10 ] zero_data: true } }
    })");
  Open({"any_size"});
  ASSERT_NE(repo_, nullptr);
  const prometheus::Labels labels{{"model", "any_size"}, {"version", "1"}};
  EXPECT_EQ(Scraped("rectifier_plan_compiles_total", labels), 1.0);
  const double hits = Scraped("rectifier_plan_cache_hits_total", labels).value_or(-1);
  EXPECT_GE(hits, 1.0);  // the warmup run found the load plan
  const auto run = [&](std::vector<int64_t> shape) {
    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, shape));
    std::promise<absl::Status> done;
    request->done = [&done](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                            const scheduling::RequestTimes&) { done.set_value(r.status()); };
    SubmitRequest(*repo_, "any_size", "", std::move(request));
    EXPECT_TRUE(done.get_future().get().ok()) << shape[2] << "x" << shape[3];
  };
  run({1, 3, 6, 10});
  EXPECT_EQ(Scraped("rectifier_plan_compiles_total", labels), 1.0);
  run({1, 3, 7, 9});
  run({1, 3, 7, 9});
  EXPECT_EQ(Scraped("rectifier_plan_compiles_total", labels), 2.0);
  EXPECT_EQ(Scraped("rectifier_cached_plans", labels), 2.0);
  EXPECT_EQ(Scraped("rectifier_plan_cache_hits_total", labels), hits + 2);
  EXPECT_GE(Scraped("rectifier_plan_cache_misses_total", labels).value_or(0), 2.0);
}

// The default warmup compiles every batch size the batcher may form, so no
// request compiles a plan: all of 1..max_batch_size up to 16, beyond that 1,
// the preferred sizes and the maximum.
TEST_F(RepositoryMetricsTest, DefaultWarmupCompilesTheBatchSizesTheBatcherForms) {
  WriteFile(root_ / "small" / "1" / "model.onnx", ReluModelBytes());
  WriteFile(root_ / "small" / "config.pbtxt",
            "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 4 ] }\n");
  WriteFile(root_ / "large" / "1" / "model.onnx", ReluModelBytes());
  WriteFile(root_ / "large" / "config.pbtxt",
            "max_batch_size: 32\ndynamic_batching { preferred_batch_size: [ 8, 16 ] }\n");
  Open({"small", "large"});
  ASSERT_NE(repo_, nullptr);
  const prometheus::Labels small{{"model", "small"}, {"version", "1"}};
  const prometheus::Labels large{{"model", "large"}, {"version", "1"}};
  EXPECT_EQ(Scraped("rectifier_cached_plans", small), 4.0);  // 1, 2, 3, 4
  EXPECT_EQ(Scraped("rectifier_cached_plans", large), 4.0);  // 1, 8, 16, 32
  const double compiles = Scraped("rectifier_plan_compiles_total", small).value_or(-1);
  for (int64_t batch : {1, 2, 3, 4}) {
    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {batch, 3, 2, 2}));
    std::promise<absl::Status> done;
    request->done = [&done](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                            const scheduling::RequestTimes&) { done.set_value(r.status()); };
    SubmitRequest(*repo_, "small", "", std::move(request));
    ASSERT_TRUE(done.get_future().get().ok()) << "batch " << batch;
  }
  EXPECT_EQ(Scraped("rectifier_plan_compiles_total", small), compiles);  // none on requests
}

TEST_F(RepositoryMetricsTest, ActivationStatisticsAreExportedWhenSampled) {
  // Channel 0 all negative (dead), channel 1 half negative, channel 2 positive:
  // 6 of 12 outputs are zero.
  const float values[12] = {-1, -2, -3, -4, 1, -1, 2, -2, 1, 2, 3, 4};
  // Warmup runs all-zero inputs, which would report a zero fraction of 1:
  // they are kept out of the statistics (only the real request counts).
  WriteFile(root_ / "sampled" / "1" / "model.onnx", ReluModelBytes());
  WriteFile(root_ / "sampled" / "config.pbtxt",
            "max_batch_size: 4\n"
            "activation { statistics { sample_every: 1 } }\n"
            "model_warmup [{ name: \"zeros\" batch_size: 1 count: 3 inputs { key: \"x\" value {"
            " data_type: TYPE_FP32 dims: [3, 2, 2] zero_data: true } } }]\n");
  WriteFile(root_ / "unsampled" / "1" / "model.onnx", ReluModelBytes());
  Open({"sampled", "unsampled"});
  ASSERT_NE(repo_, nullptr);
  engine::Tensor x = engine::Tensor::Zeros(engine::DataType::kFloat32, {1, 3, 2, 2});
  std::copy(values, values + 12, x.data<float>());
  for (const char* name : {"sampled", "unsampled"}) {
    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(x);
    std::promise<absl::Status> done;
    request->done = [&done](const absl::StatusOr<std::vector<engine::Tensor>>& r,
                            const scheduling::RequestTimes&) { done.set_value(r.status()); };
    SubmitRequest(*repo_, name, "", std::move(request));
    ASSERT_TRUE(done.get_future().get().ok()) << name;
  }
  const prometheus::Labels layer{{"model", "sampled"}, {"version", "1"}, {"layer", "y"}};
  EXPECT_EQ(Scraped("rectifier_activation_zero_fraction", layer), 0.5);
  EXPECT_EQ(Scraped("rectifier_activation_dead_channels", layer), 1.0);
  EXPECT_EQ(Scraped("rectifier_activation_channels", layer), 3.0);
  // Not sampled: no series at all.
  const auto families = metrics_.scrape_time_gauges()->Collect();
  EXPECT_EQ(SeriesOf(families, "rectifier_activation_zero_fraction", "unsampled"), 0);
  // Unloaded: the series go with the model.
  ASSERT_TRUE(repo_->Unload("sampled").ok());
  EXPECT_EQ(Scraped("rectifier_activation_zero_fraction", layer), std::nullopt);
}

}  // namespace
}  // namespace rectifier::repository
