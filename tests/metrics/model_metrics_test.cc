// Tests for per-model metric children: values, labels, removal at unload.
#include "server/metrics/model_metrics.h"

#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "server/common/queue_full.h"

namespace rectifier::metrics {
namespace {

std::string Scrape(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(ModelMetricsTest, ObservationsLandInLabelledSeries) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto metrics = server.ForModel("resnet50", "1");
  metrics->ObserveRequest(Api::kKServe, absl::OkStatus(), 0.004);
  metrics->ObserveRequest(Api::kKServe, absl::OkStatus(), 0.006);
  metrics->ObserveRequest(Api::kVision, absl::DeadlineExceededError("late"), 2.0);
  metrics->ObserveRequest(Api::kKServe,
                          common::QueueFullError("model 'x' version 1: queue full (16)"), 0);
  metrics->ObserveQueue(0.001);
  metrics->ObserveExecution(4, 0.05);
  metrics->ObserveExecution(2, 0.03);
  metrics->ObserveStage(Stage::kDecode, 0.002);
  metrics->SetInstances(2);
  metrics->SetState(ModelState::kReady);
  const std::string text = Scrape(registry);
  // The text format sorts labels by name.
  const std::string m = R"(model="resnet50")";
  const std::string v = R"(version="1")";
  const std::string l = m + "," + v;
  EXPECT_TRUE(Has(
      text, "rectifier_requests_total{api=\"kserve\"," + m + ",outcome=\"success\"," + v + "} 2"))
      << text;
  EXPECT_TRUE(Has(
      text, "rectifier_requests_total{api=\"vision\"," + m + ",outcome=\"failure\"," + v + "} 1"));
  EXPECT_TRUE(Has(text, "rectifier_request_failures_total{api=\"vision\"," + m +
                            ",reason=\"deadline\"," + v + "} 1"));
  EXPECT_TRUE(Has(text, "rectifier_request_failures_total{api=\"kserve\"," + m +
                            ",reason=\"queue_full\"," + v + "} 1"));
  EXPECT_TRUE(Has(text, "rectifier_inferences_total{" + l + "} 6"));
  EXPECT_TRUE(Has(text, "rectifier_executions_total{" + l + "} 2"));
  EXPECT_TRUE(Has(text, "rectifier_batch_size_count{" + l + "} 2"));
  EXPECT_TRUE(Has(text, "rectifier_batch_size_sum{" + l + "} 6"));
  // 0.004 s and the 0 s failure are at or under 5 ms; 0.006 s is not.
  EXPECT_TRUE(Has(
      text, "rectifier_request_duration_seconds_bucket{api=\"kserve\"," + l + ",le=\"0.005\"} 2"));
  EXPECT_TRUE(Has(
      text, "rectifier_request_duration_seconds_bucket{api=\"kserve\"," + l + ",le=\"0.01\"} 3"));
  EXPECT_TRUE(
      Has(text, "rectifier_stage_duration_seconds_count{" + m + ",stage=\"decode\"," + v + "} 1"));
  EXPECT_TRUE(Has(text, "rectifier_model_instances{" + l + "} 2"));
}

TEST(ModelMetricsTest, UnloadRemovesTheModelsSeriesOnly) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto a = server.ForModel("a", "1");
  auto b = server.ForModel("b", "3");
  a->ObserveExecution(1, 0.01);
  b->ObserveExecution(1, 0.01);
  a.reset();
  const std::string text = Scrape(registry);
  EXPECT_EQ(text.find("model=\"a\""), std::string::npos);
  EXPECT_TRUE(Has(text, R"(rectifier_executions_total{model="b",version="3"} 1)")) << text;
}

TEST(ModelMetricsTest, ReasonsCoverTheStatusCodes) {
  EXPECT_EQ(ReasonFor(absl::InvalidArgumentError("x")), FailureReason::kInvalidInput);
  EXPECT_EQ(ReasonFor(absl::NotFoundError("x")), FailureReason::kNotFound);
  EXPECT_EQ(ReasonFor(absl::CancelledError("x")), FailureReason::kCancelled);
  EXPECT_EQ(ReasonFor(absl::UnavailableError("shutting down")), FailureReason::kUnavailable);
  EXPECT_EQ(ReasonFor(absl::InternalError("x")), FailureReason::kInternal);
  // A full queue is told by the status's payload, whatever its message says:
  // the scheduler's and the image pool's refusals both count.
  EXPECT_EQ(ReasonFor(common::QueueFullError("image worker queue is full (9 waiting)")),
            FailureReason::kQueueFull);
  EXPECT_EQ(ReasonFor(absl::UnavailableError("model 'x': queue full")),
            FailureReason::kUnavailable);
  EXPECT_STREQ(ReasonName(FailureReason::kQueueFull), "queue_full");
}

}  // namespace
}  // namespace rectifier::metrics

namespace rectifier::metrics {
namespace {

TEST(ModelMetricsTest, PlanCacheCountsAreReadAtScrapeTime) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto model = server.ForModel("m", "1");
  ModelMetrics::PlanCacheValues values{3, 1, 2, 10, 4};
  ScrapeSourceHandle handle = model->AddPlanCacheSource([&values] { return values; });
  const auto scrape = [&] {
    return prometheus::TextSerializer().Serialize(server.scrape_time_gauges()->Collect());
  };
  EXPECT_TRUE(Has(scrape(), "# TYPE rectifier_plan_compiles_total counter")) << scrape();
  EXPECT_TRUE(Has(scrape(), "rectifier_plan_compiles_total{model=\"m\",version=\"1\"} 3"))
      << scrape();
  EXPECT_TRUE(Has(scrape(), "rectifier_plan_evictions_total{model=\"m\",version=\"1\"} 1"));
  EXPECT_TRUE(Has(scrape(), "# TYPE rectifier_cached_plans gauge")) << scrape();
  EXPECT_TRUE(Has(scrape(), "rectifier_cached_plans{model=\"m\",version=\"1\"} 2"));
  EXPECT_TRUE(Has(scrape(), "# TYPE rectifier_plan_cache_hits_total counter")) << scrape();
  EXPECT_TRUE(Has(scrape(), "rectifier_plan_cache_hits_total{model=\"m\",version=\"1\"} 10"));
  EXPECT_TRUE(Has(scrape(), "rectifier_plan_cache_misses_total{model=\"m\",version=\"1\"} 4"));
  values.compiles = 4;
  EXPECT_TRUE(Has(scrape(), "rectifier_plan_compiles_total{model=\"m\",version=\"1\"} 4"));
  handle.Reset();
  EXPECT_EQ(scrape().find("model=\"m\""), std::string::npos) << scrape();
}

TEST(ModelMetricsTest, QueueDepthIsReadAtScrapeTimeUntilTheHandleGoes) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto model = server.ForModel("m", "2");
  double depth = 3;
  ScrapeTimeGauges::Handle handle = model->AddQueueDepthSource([&depth] { return depth; });
  const auto scrape = [&] {
    return prometheus::TextSerializer().Serialize(server.scrape_time_gauges()->Collect());
  };
  EXPECT_NE(scrape().find("rectifier_queue_depth{model=\"m\",version=\"2\"} 3"), std::string::npos)
      << scrape();
  depth = 5;
  EXPECT_NE(scrape().find("} 5"), std::string::npos);
  // A second copy of the version (reload while the old one drains): summed.
  ScrapeTimeGauges::Handle second = model->AddQueueDepthSource([] { return 2.0; });
  EXPECT_TRUE(Has(scrape(), "rectifier_queue_depth{model=\"m\",version=\"2\"} 7")) << scrape();
  handle.Reset();
  EXPECT_TRUE(Has(scrape(), "rectifier_queue_depth{model=\"m\",version=\"2\"} 2")) << scrape();
  ScrapeTimeGauges::Handle moved = std::move(second);
  second.Reset();  // NOLINT(bugprone-use-after-move): a moved-from handle removes nothing
  EXPECT_TRUE(Has(scrape(), "rectifier_queue_depth{model=\"m\",version=\"2\"} 2"));
  { ScrapeTimeGauges::Handle gone = std::move(moved); }  // destruction removes it
  EXPECT_EQ(scrape().find("model=\"m\""), std::string::npos);
}

TEST(ModelMetricsTest, ActivationStatisticsAreReadAtScrapeTimeNewestCopyWins) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto model = server.ForModel("m", "3");
  const auto scrape = [&] {
    return prometheus::TextSerializer().Serialize(server.scrape_time_gauges()->Collect());
  };
  std::vector<ActivationLayerValues> layers = {{"relu1", 0.5, 1, 3}, {"relu2", 0.25, 0, 8}};
  ScrapeSourceHandle old_copy = model->AddActivationSource([&layers] { return layers; });
  std::string text = scrape();
  EXPECT_TRUE(
      Has(text, R"(rectifier_activation_zero_fraction{layer="relu1",model="m",version="3"} 0.5)"))
      << text;
  EXPECT_TRUE(
      Has(text, R"(rectifier_activation_dead_channels{layer="relu1",model="m",version="3"} 1)"));
  EXPECT_TRUE(Has(text, R"(rectifier_activation_channels{layer="relu2",model="m",version="3"} 8)"));
  EXPECT_TRUE(
      Has(text, R"(rectifier_activation_zero_fraction{layer="relu2",model="m",version="3"} 0.25)"));
  // Values are read at each scrape.
  layers[1].dead_channels = 2;
  EXPECT_TRUE(Has(scrape(),
                  R"(rectifier_activation_dead_channels{layer="relu2",model="m",version="3"} 2)"));
  // A reloaded copy of the same version replaces the old one's values (not summed).
  ScrapeSourceHandle new_copy = model->AddActivationSource([] {
    return std::vector<ActivationLayerValues>{{"relu1", 0.75, 0, 3}};
  });
  text = scrape();
  EXPECT_TRUE(
      Has(text, R"(rectifier_activation_zero_fraction{layer="relu1",model="m",version="3"} 0.75)"))
      << text;
  EXPECT_EQ(text.find("relu2"), std::string::npos);
  new_copy.Reset();
  EXPECT_TRUE(Has(
      scrape(), R"(rectifier_activation_zero_fraction{layer="relu1",model="m",version="3"} 0.5)"));
  old_copy.Reset();
  EXPECT_EQ(scrape().find("rectifier_activation_zero_fraction{"), std::string::npos);
  // Queue depth is served by the same collectable.
  ScrapeSourceHandle depth = model->AddQueueDepthSource([] { return 4.0; });
  EXPECT_TRUE(Has(scrape(), R"(rectifier_queue_depth{model="m",version="3"} 4)"));
}

TEST(ModelMetricsTest, InflightCountsAcceptedUntilAnswered) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto model = server.ForModel("m", "1");
  const std::string series = R"(rectifier_inflight_requests{model="m",version="1"} )";
  EXPECT_TRUE(Has(Scrape(registry), series + "0"));
  model->RequestAccepted();
  model->RequestAccepted();
  model->RequestAccepted();
  model->RequestAnswered();
  EXPECT_TRUE(Has(Scrape(registry), series + "2")) << Scrape(registry);
  model->RequestAnswered();
  model->RequestAnswered();
  EXPECT_TRUE(Has(Scrape(registry), series + "0"));
}

TEST(ModelMetricsTest, StateIsOneHotOverTheFourStates) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto model = server.ForModel("m", "4");
  const auto state = [&](const std::string& name) {
    return R"(rectifier_model_state{model="m",state=")" + name + R"(",version="4"} )";
  };
  std::string text = Scrape(registry);
  // A new version starts loading.
  EXPECT_TRUE(Has(text, state("loading") + "1")) << text;
  EXPECT_TRUE(Has(text, state("ready") + "0"));
  EXPECT_TRUE(Has(text, state("unloading") + "0"));
  EXPECT_TRUE(Has(text, state("unavailable") + "0"));
  model->SetState(ModelState::kReady);
  text = Scrape(registry);
  EXPECT_TRUE(Has(text, state("loading") + "0"));
  EXPECT_TRUE(Has(text, state("ready") + "1"));
  model->SetState(ModelState::kUnloading);
  text = Scrape(registry);
  EXPECT_TRUE(Has(text, state("ready") + "0"));
  EXPECT_TRUE(Has(text, state("unloading") + "1"));
  model.reset();
  EXPECT_EQ(Scrape(registry).find("rectifier_model_state{"), std::string::npos);
}

TEST(ModelMetricsTest, ModelLevelStateHasNoVersionLabel) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  server.SetModelState("broken", ModelState::kLoading);
  EXPECT_TRUE(Has(Scrape(registry), R"(rectifier_model_state{model="broken",state="loading"} 1)"));
  server.SetModelState("broken", ModelState::kUnavailable);
  const std::string text = Scrape(registry);
  EXPECT_TRUE(Has(text, R"(rectifier_model_state{model="broken",state="loading"} 0)")) << text;
  EXPECT_TRUE(Has(text, R"(rectifier_model_state{model="broken",state="unavailable"} 1)"));
  server.ClearModelState("broken");
  server.ClearModelState("never-set");
  EXPECT_EQ(Scrape(registry).find("broken"), std::string::npos);
}

TEST(ModelMetricsTest, TheSameVersionSharesItsSeriesUntilTheLastHolderGoes) {
  prometheus::Registry registry;
  ServerMetrics server(registry);
  auto old_copy = server.ForModel("m", "1");
  old_copy->ObserveExecution(2, 0.01);
  old_copy->SetState(ModelState::kReady);
  // A reload of version 1: the new copy shares the children (and the state
  // stays ready, not loading, while the old copy still serves).
  auto new_copy = server.ForModel("m", "1");
  EXPECT_EQ(new_copy.get(), old_copy.get());
  EXPECT_TRUE(
      Has(Scrape(registry), R"(rectifier_model_state{model="m",state="ready",version="1"} 1)"));
  old_copy.reset();
  new_copy->ObserveExecution(3, 0.01);
  EXPECT_TRUE(Has(Scrape(registry), R"(rectifier_inferences_total{model="m",version="1"} 5)"))
      << Scrape(registry);
  new_copy.reset();
  EXPECT_EQ(Scrape(registry).find("model=\"m\""), std::string::npos);
  // Asked for again after removal: fresh children.
  auto again = server.ForModel("m", "1");
  EXPECT_TRUE(Has(Scrape(registry), R"(rectifier_inferences_total{model="m",version="1"} 0)"));
}

}  // namespace
}  // namespace rectifier::metrics
