// End-to-end tests of the KServe model and repository methods against the
// real rectifier-server binary and a repository written by the test.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/integration/scale_request.h"
#include "tests/integration/server_process.h"
#include "tests/repository/test_models.h"

namespace rectifier::testing {
namespace {

// Sets an environment variable for the servers this test starts (they
// inherit the environment), and restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

namespace fs = std::filesystem;
using inference::GRPCInferenceService;

class KServeModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rectifier-kserve-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    WriteFile(root_ / "scale" / "1" / "model.onnx", ScaleModelBytes(2.f));
    WriteFile(root_ / "scale" / "config.pbtxt",
              "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [2, 4] }\n");
    WriteFile(root_ / "other" / "1" / "model.onnx", ScaleModelBytes(5.f));
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(root_);
  }

  void Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--model-repository", root_.string(),      "--grpc-address",
                                     "127.0.0.1:0",        "--metrics-address", "127.0.0.1:0"};
    if (std::find(extra.begin(), extra.end(), "--exit-timeout") == extra.end()) {
      args.insert(args.end(), {"--exit-timeout", "5"});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = ServerProcess::Spawn(RECTIFIER_SERVER_BINARY, args);
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = std::move(process).value();
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(60)).ok()) << server_->ReadOutput();
    stub_ = GRPCInferenceService::NewStub(
        grpc::CreateChannel(server_->grpc_target(), grpc::InsecureChannelCredentials()));
  }

  bool ModelReady(const std::string& name) {
    grpc::ClientContext context;
    inference::ModelReadyRequest request;
    request.set_name(name);
    inference::ModelReadyResponse response;
    EXPECT_TRUE(stub_->ModelReady(&context, request, &response).ok());
    return response.ready();
  }
  bool ServerReady() {
    grpc::ClientContext context;
    inference::ServerReadyResponse response;
    EXPECT_TRUE(stub_->ServerReady(&context, {}, &response).ok());
    return response.ready();
  }
  // ModelStatistics of the one "scale" version.
  inference::ModelStatistics ScaleStatistics() {
    grpc::ClientContext context;
    inference::ModelStatisticsRequest request;
    request.set_name("scale");
    inference::ModelStatisticsResponse response;
    EXPECT_TRUE(stub_->ModelStatistics(&context, request, &response).ok());
    EXPECT_EQ(response.model_stats_size(), 1);
    return response.model_stats_size() > 0 ? response.model_stats(0) : inference::ModelStatistics{};
  }
  grpc::Status Load(const std::string& name) {
    grpc::ClientContext context;
    inference::RepositoryModelLoadRequest request;
    request.set_model_name(name);
    inference::RepositoryModelLoadResponse response;
    return stub_->RepositoryModelLoad(&context, request, &response);
  }
  grpc::Status Unload(const std::string& name) {
    grpc::ClientContext context;
    inference::RepositoryModelUnloadRequest request;
    request.set_model_name(name);
    inference::RepositoryModelUnloadResponse response;
    return stub_->RepositoryModelUnload(&context, request, &response);
  }

  // A request for the test model "slow" (SlowModelBytes): `batch` images of
  // 32 x 96 x 96 zeros.
  static inference::ModelInferRequest SlowRequest(int64_t batch) {
    inference::ModelInferRequest request;
    request.set_model_name("slow");
    auto* input = request.add_inputs();
    input->set_name("x");
    input->set_datatype("FP32");
    for (int64_t d : {batch, int64_t{32}, int64_t{96}, int64_t{96}}) input->add_shape(d);
    request.add_raw_input_contents(
        std::string(static_cast<size_t>(batch) * 32 * 96 * 96 * 4, '\0'));
    return request;
  }
  // Waits (up to 30 s) until the server holds `n` requests of "slow" (its
  // in-flight gauge), however loaded the machine is.
  void WaitForSlowInFlight(int n) {
    const std::string want =
        absl::StrCat(R"(rectifier_inflight_requests{model="slow",version="1"} )", n);
    const absl::Time limit = absl::Now() + absl::Seconds(30);
    while (absl::Now() < limit) {
      auto page = HttpGet(server_->metrics_port(), "/metrics");
      if (page.ok() && page->find(want) != std::string::npos) return;
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

  fs::path root_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<GRPCInferenceService::Stub> stub_;
};

TEST_F(KServeModelTest, MetadataConfigAndIndexDescribeTheRepository) {
  WriteFile(root_ / "broken" / "1" / "model.onnx", "not onnx");
  WriteFile(root_ / "leaky" / "1" / "model.onnx", ConvReluModelBytes());
  WriteFile(root_ / "leaky" / "config.pbtxt",
            "activation { replace { from: \"Relu\" to: \"LeakyRelu\" alpha: 0.01 } }\n");
  Start({});
  // Strict readiness: one broken model keeps the server not ready.
  EXPECT_FALSE(ServerReady());
  EXPECT_TRUE(ModelReady("scale"));
  EXPECT_TRUE(ModelReady("other"));
  EXPECT_FALSE(ModelReady("broken"));
  EXPECT_FALSE(ModelReady("nope"));

  {
    grpc::ClientContext context;
    inference::ModelMetadataRequest request;
    request.set_name("scale");
    inference::ModelMetadataResponse response;
    ASSERT_TRUE(stub_->ModelMetadata(&context, request, &response).ok());
    EXPECT_EQ(response.name(), "scale");
    ASSERT_EQ(response.versions_size(), 1);
    EXPECT_EQ(response.versions(0), "1");
    ASSERT_EQ(response.inputs_size(), 1);
    EXPECT_EQ(response.inputs(0).name(), "x");
    EXPECT_EQ(response.inputs(0).datatype(), "FP32");
    EXPECT_EQ(
        std::vector<int64_t>(response.inputs(0).shape().begin(), response.inputs(0).shape().end()),
        (std::vector<int64_t>{-1, 3, 2, 2}));
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_EQ(response.outputs(0).name(), "y");
  }
  {
    grpc::ClientContext context;
    inference::ModelConfigRequest request;
    request.set_name("scale");
    inference::ModelConfigResponse response;
    ASSERT_TRUE(stub_->ModelConfig(&context, request, &response).ok());
    EXPECT_EQ(response.config().name(), "scale");
    EXPECT_EQ(response.config().max_batch_size(), 4);
    EXPECT_EQ(response.config().input(0).data_type(), inference::TYPE_FP32);
    EXPECT_EQ(response.config().dynamic_batching().preferred_batch_size_size(), 2);
  }
  {
    // The effective activations, after a configured replacement.
    grpc::ClientContext context;
    inference::ModelConfigRequest request;
    request.set_name("leaky");
    inference::ModelConfigResponse response;
    ASSERT_TRUE(stub_->ModelConfig(&context, request, &response).ok());
    const auto& parameters = response.config().parameters();
    ASSERT_EQ(parameters.count("rectifier.activations"), 1u);
    EXPECT_NE(parameters.at("rectifier.activations").string_value().find("LeakyRelu"),
              std::string::npos)
        << parameters.at("rectifier.activations").string_value();
    ASSERT_EQ(parameters.count("rectifier.activation_warning"), 1u);
    EXPECT_NE(parameters.at("rectifier.activation_warning").string_value().find("differ"),
              std::string::npos);
  }
  for (const auto& [name, code] : std::vector<std::pair<std::string, grpc::StatusCode>>{
           {"broken", grpc::StatusCode::UNAVAILABLE}, {"nope", grpc::StatusCode::NOT_FOUND}}) {
    grpc::ClientContext context;
    inference::ModelMetadataRequest request;
    request.set_name(name);
    inference::ModelMetadataResponse response;
    const grpc::Status status = stub_->ModelMetadata(&context, request, &response);
    EXPECT_EQ(status.error_code(), code) << name;
    EXPECT_NE(status.error_message().find(name), std::string::npos) << status.error_message();
  }
  {
    grpc::ClientContext context;
    inference::RepositoryIndexRequest request;
    inference::RepositoryIndexResponse response;
    ASSERT_TRUE(stub_->RepositoryIndex(&context, request, &response).ok());
    std::map<std::string, inference::RepositoryIndexResponse::ModelIndex> by_name;
    for (const auto& m : response.models()) by_name[m.name()] = m;
    ASSERT_EQ(by_name.size(), 4u);
    EXPECT_EQ(by_name["scale"].state(), "READY");
    EXPECT_EQ(by_name["broken"].state(), "UNAVAILABLE");
    EXPECT_FALSE(by_name["broken"].reason().empty());
  }
  {
    grpc::ClientContext context;
    inference::RepositoryIndexRequest request;
    request.set_ready(true);
    inference::RepositoryIndexResponse response;
    ASSERT_TRUE(stub_->RepositoryIndex(&context, request, &response).ok());
    EXPECT_EQ(response.models_size(), 3);
  }
  {
    grpc::ClientContext context;
    inference::ServerMetadataResponse response;
    ASSERT_TRUE(stub_->ServerMetadata(&context, {}, &response).ok());
    EXPECT_NE(
        std::find(response.extensions().begin(), response.extensions().end(), "model_repository"),
        response.extensions().end());
  }
}

TEST_F(KServeModelTest, ExplicitLoadAndUnloadOverGrpc) {
  Start({"--model-control-mode", "explicit", "--load-model", "scale"});
  EXPECT_TRUE(ServerReady());
  EXPECT_TRUE(ModelReady("scale"));
  EXPECT_FALSE(ModelReady("other"));
  ASSERT_TRUE(Load("other").ok());
  EXPECT_TRUE(ModelReady("other"));
  ASSERT_TRUE(Unload("scale").ok());
  EXPECT_FALSE(ModelReady("scale"));
  EXPECT_EQ(Unload("scale").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Load("../etc").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Load("absent").error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(ServerReady());

  server_->Signal(SIGTERM);
  const auto exit = server_->WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

TEST_F(KServeModelTest, ModelInferComputesAndValidates) {
  Start({});
  {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    const grpc::Status status = stub_->ModelInfer(&context, ScaleRequest(3, 1.f), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.model_name(), "scale");
    EXPECT_EQ(response.model_version(), "1");
    EXPECT_EQ(response.id(), "r-42");
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_EQ(response.outputs(0).name(), "y");
    EXPECT_EQ(response.outputs(0).datatype(), "FP32");
    EXPECT_EQ(response.outputs(0).shape(0), 3);
    ASSERT_EQ(response.raw_output_contents(0).size(), 36u * 4);
    std::vector<float> y(36);
    std::memcpy(y.data(), response.raw_output_contents(0).data(), 36 * 4);
    for (int i = 0; i < 36; ++i) EXPECT_FLOAT_EQ(y[i], 2.f * (1.f + i)) << i;
  }
  // Typed contents work too.
  {
    inference::ModelInferRequest request = ScaleRequest(1, 0.f);
    request.clear_raw_input_contents();
    for (int i = 0; i < 12; ++i)
      request.mutable_inputs(0)->mutable_contents()->add_fp32_contents(i);
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    ASSERT_TRUE(stub_->ModelInfer(&context, request, &response).ok());
    float last = 0;
    std::memcpy(&last, response.raw_output_contents(0).data() + 44, 4);
    EXPECT_FLOAT_EQ(last, 22.f);
  }
  struct Case {
    std::string what;
    std::function<void(inference::ModelInferRequest*)> mutate;
    grpc::StatusCode code;
    std::string needle;
  };
  const std::vector<Case> kCases = {
      {"unknown model", [](auto* r) { r->set_model_name("nope"); }, grpc::StatusCode::NOT_FOUND,
       "nope"},
      {"unknown version", [](auto* r) { r->set_model_version("9"); }, grpc::StatusCode::NOT_FOUND,
       "version 9"},
      {"wrong datatype", [](auto* r) { r->mutable_inputs(0)->set_datatype("INT64"); },
       grpc::StatusCode::INVALID_ARGUMENT, "INT64"},
      {"wrong byte size", [](auto* r) { r->mutable_raw_input_contents(0)->resize(7); },
       grpc::StatusCode::INVALID_ARGUMENT, "7 bytes"},
      {"mixed contents",
       [](auto* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
       grpc::StatusCode::INVALID_ARGUMENT, "one or the other"},
      {"batch over max", [](auto* r) { *r = ScaleRequest(5, 0.f); },
       grpc::StatusCode::INVALID_ARGUMENT, "batch size 5"},
      {"unknown output", [](auto* r) { r->add_outputs()->set_name("z"); },
       grpc::StatusCode::INVALID_ARGUMENT, "'z'"},
      {"expired timeout", [](auto* r) { (*r->mutable_parameters())["timeout"].set_int64_param(0); },
       grpc::StatusCode::DEADLINE_EXCEEDED, ""},
  };
  for (const Case& c : kCases) {
    inference::ModelInferRequest request = ScaleRequest(1, 0.f);
    c.mutate(&request);
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    const grpc::Status status = stub_->ModelInfer(&context, request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.needle), std::string::npos)
        << c.what << ": " << status.error_message();
  }
  // The server survived every bad request.
  EXPECT_TRUE(ModelReady("scale"));
  {
    const inference::ModelStatistics stats = ScaleStatistics();
    EXPECT_EQ(stats.version(), "1");
    EXPECT_EQ(stats.inference_count(), 4u);  // batch 3 + batch 1
    EXPECT_EQ(stats.execution_count(), 2u);
    EXPECT_EQ(stats.inference_stats().success().count(), 2u);
    // Six requests reached the model and failed (unknown model/version never did).
    EXPECT_EQ(stats.inference_stats().fail().count(), 6u);
    EXPECT_EQ(stats.inference_stats().queue().count(), 2u);
    EXPECT_EQ(stats.inference_stats().compute_infer().count(), 2u);
    EXPECT_GT(stats.inference_stats().compute_infer().ns(), 0u);
    EXPECT_GT(stats.last_inference(), 0u);
    std::map<uint64_t, uint64_t> batches;
    for (const auto& b : stats.batch_stats()) batches[b.batch_size()] = b.compute_infer().count();
    EXPECT_EQ(batches, (std::map<uint64_t, uint64_t>{{1, 1}, {3, 1}}));
  }
  const auto metrics = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_NE(
      metrics->find(
          R"(rectifier_requests_total{api="kserve",model="scale",outcome="success",version="1"} 2)"),
      std::string::npos)
      << *metrics;
  EXPECT_NE(metrics->find(R"(rectifier_queue_depth{model="scale",version="1"} 0)"),
            std::string::npos);
}

// A model with dynamic height and width: any size within the config's
// max_input_dims, one plan per shape, and larger inputs refused before they
// queue. The model_warmup shape is what the model is checked with at load.
TEST_F(KServeModelTest, DynamicHeightAndWidthWithinMaxInputDims) {
  WriteFile(root_ / "any_size" / "1" / "model.onnx",
            ScaleModelBytes(3.f, 3, /*dynamic_batch=*/true, /*dynamic_hw=*/true));
  WriteFile(root_ / "any_size" / "config.pbtxt", R"(
    max_batch_size: 4
    engine { max_input_dims { name: "x" dims: [ 3, 16, 24 ] } }
    model_warmup {
      name: "native" batch_size: 1
      inputs { key: "x" value { data_type: TYPE_FP32 dims: [ 3, 8, 12 ] zero_data: true } }
    })");
  Start({});
  {
    grpc::ClientContext context;
    inference::ModelMetadataRequest request;
    request.set_name("any_size");
    inference::ModelMetadataResponse metadata;
    ASSERT_TRUE(stub_->ModelMetadata(&context, request, &metadata).ok());
    ASSERT_EQ(metadata.inputs_size(), 1);
    EXPECT_EQ(
        std::vector<int64_t>(metadata.inputs(0).shape().begin(), metadata.inputs(0).shape().end()),
        (std::vector<int64_t>{-1, 3, -1, -1}));
    EXPECT_EQ(std::vector<int64_t>(metadata.outputs(0).shape().begin(),
                                   metadata.outputs(0).shape().end()),
              (std::vector<int64_t>{-1, 3, -1, -1}));
  }
  const auto infer = [&](const std::vector<int64_t>& shape,
                         inference::ModelInferResponse* response) {
    inference::ModelInferRequest request;
    request.set_model_name("any_size");
    auto* input = request.add_inputs();
    input->set_name("x");
    input->set_datatype("FP32");
    int64_t n = 1;
    for (int64_t d : shape) {
      input->add_shape(d);
      n *= d;
    }
    std::vector<float> values(static_cast<size_t>(n));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 97);
    request.add_raw_input_contents(reinterpret_cast<const char*>(values.data()),
                                   values.size() * sizeof(float));
    grpc::ClientContext context;
    return stub_->ModelInfer(&context, request, response);
  };
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{1, 3, 5, 7}, {2, 3, 16, 24}, {1, 3, 8, 12}, {1, 3, 5, 7}}) {
    inference::ModelInferResponse response;
    const grpc::Status status = infer(shape, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_EQ(std::vector<int64_t>(response.outputs(0).shape().begin(),
                                   response.outputs(0).shape().end()),
              shape);
    const std::string& raw = response.raw_output_contents(0);
    ASSERT_EQ(raw.size(), static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]) * 4);
    std::vector<float> y(raw.size() / 4);
    std::memcpy(y.data(), raw.data(), raw.size());
    for (size_t i = 0; i < y.size(); ++i) ASSERT_FLOAT_EQ(y[i], 3.f * (i % 97)) << i;
  }
  for (const std::vector<int64_t>& shape :
       {std::vector<int64_t>{1, 3, 17, 4}, std::vector<int64_t>{1, 3, 4, 25}}) {
    inference::ModelInferResponse response;
    const grpc::Status status = infer(shape, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("over max_input_dims [-1,3,16,24]"), std::string::npos)
        << status.error_message();
  }
  // A wrong channel count is the config's error, as for any model.
  inference::ModelInferResponse response;
  grpc::Status status = infer({1, 4, 8, 8}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("does not match [-1,3,-1,-1]"), std::string::npos)
      << status.error_message();
  // Encoded images need a fixed input size: refused with the reason.
  inference::ModelInferRequest image;
  image.set_model_name("any_size");
  auto* bytes = image.add_inputs();
  bytes->set_name("x");
  bytes->set_datatype("BYTES");
  bytes->add_shape(1);
  bytes->mutable_contents()->add_bytes_contents(std::string("P5\n2 2\n255\n\1\2\3\4"));
  grpc::ClientContext context;
  status = stub_->ModelInfer(&context, image, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("needs a fixed height and width"), std::string::npos)
      << status.error_message();
}

// Requests of concurrent clients share batches, each read in place from its
// own message: every answer is computed from its own request's bytes.
TEST_F(KServeModelTest, ConcurrentCallersSharingBatchesGetTheirOwnAnswers) {
  // Each batch waits 20 ms before it computes, so the others queue behind it.
  ScopedEnv delay("RECTIFIER_TEST_EXECUTE_DELAY_MS", "20");
  Start({});
  constexpr int kClients = 8;
  constexpr int kCalls = 6;
  std::vector<std::future<std::string>> clients;
  clients.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(std::async(std::launch::async, [this, c]() -> std::string {
      for (int k = 0; k < kCalls; ++k) {
        const int batch = 1 + (c + k) % 2;
        const float base = static_cast<float>(1000 * c + 100 * k);
        grpc::ClientContext context;
        inference::ModelInferResponse response;
        const grpc::Status status =
            stub_->ModelInfer(&context, ScaleRequest(batch, base), &response);
        if (!status.ok()) return status.error_message();
        const size_t count = static_cast<size_t>(batch) * 12;
        if (response.raw_output_contents_size() != 1 ||
            response.raw_output_contents(0).size() != count * 4) {
          return "client " + std::to_string(c) + ": wrong output size";
        }
        std::vector<float> y(count);
        std::memcpy(y.data(), response.raw_output_contents(0).data(), count * 4);
        for (size_t i = 0; i < count; ++i) {
          if (y[i] != 2.f * (base + static_cast<float>(i))) {
            return "client " + std::to_string(c) + " call " + std::to_string(k) + ": y[" +
                   std::to_string(i) + "] = " + std::to_string(y[i]);
          }
        }
      }
      return "";
    }));
  }
  for (auto& client : clients) EXPECT_EQ(client.get(), "");
  // Some batches held more than one request (the case this test is about).
  const inference::ModelStatistics model = ScaleStatistics();
  EXPECT_EQ(model.inference_count(), static_cast<uint64_t>(kClients * kCalls * 3 / 2));
  EXPECT_LT(model.execution_count(), static_cast<uint64_t>(kClients * kCalls));
}

TEST_F(KServeModelTest, StreamInferAnswersEveryRequestOnceAndSurvivesCancel) {
  Start({});
  {
    grpc::ClientContext context;
    auto stream = stub_->ModelStreamInfer(&context);
    for (int i = 0; i < 6; ++i) {
      inference::ModelInferRequest request = ScaleRequest(1, static_cast<float>(i));
      request.set_id("s-" + std::to_string(i));
      if (i == 3) request.mutable_inputs(0)->set_datatype("INT64");  // fails in-stream
      ASSERT_TRUE(stream->Write(request));
    }
    stream->WritesDone();
    std::map<std::string, inference::ModelStreamInferResponse> answers;
    inference::ModelStreamInferResponse response;
    while (stream->Read(&response)) {
      const std::string id = response.infer_response().id();
      EXPECT_EQ(answers.count(id), 0u) << "answered twice: " << id;
      answers[id] = response;
    }
    const grpc::Status status = stream->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(answers.size(), 6u);
    for (int i = 0; i < 6; ++i) {
      const auto& answer = answers["s-" + std::to_string(i)];
      if (i == 3) {
        EXPECT_NE(answer.error_message().find("INT64"), std::string::npos);
        continue;
      }
      EXPECT_TRUE(answer.error_message().empty()) << answer.error_message();
      float first = 0;
      ASSERT_EQ(answer.infer_response().raw_output_contents_size(), 1);
      std::memcpy(&first, answer.infer_response().raw_output_contents(0).data(), 4);
      EXPECT_FLOAT_EQ(first, 2.f * i);
    }
  }
  {
    // A client that cancels mid-stream: the server cleans up and keeps serving.
    grpc::ClientContext context;
    auto stream = stub_->ModelStreamInfer(&context);
    for (int i = 0; i < 20; ++i) stream->Write(ScaleRequest(2, 1.f));
    context.TryCancel();
    inference::ModelStreamInferResponse response;
    while (stream->Read(&response)) {
    }
    EXPECT_FALSE(stream->Finish().ok());
  }
  EXPECT_TRUE(ModelReady("scale"));
  grpc::ClientContext context;
  inference::ModelInferResponse response;
  EXPECT_TRUE(stub_->ModelInfer(&context, ScaleRequest(1, 1.f), &response).ok());
}

// The model is small; every batch waits 3 s first (the server's test hook
// RECTIFIER_TEST_EXECUTE_DELAY_MS), so the calls are still in flight at
// SIGTERM however fast the machine computes.
TEST_F(KServeModelTest, SigtermLetsInFlightRequestsFinish) {
  WriteFile(root_ / "slow" / "1" / "model.onnx", SlowModelBytes(1));
  ScopedEnv delay("RECTIFIER_TEST_EXECUTE_DELAY_MS", "3000");
  Start({"--exit-timeout", "20"});
  const inference::ModelInferRequest request = SlowRequest(1);

  // Three calls in flight (computing or queued) when SIGTERM arrives: a batch
  // takes 3 s.
  struct Pending {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    std::promise<grpc::Status> status;
  };
  std::vector<std::unique_ptr<Pending>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::make_unique<Pending>());
    Pending* p = calls.back().get();
    stub_->async()->ModelInfer(&p->context, &request, &p->response,
                               [p](const grpc::Status& s) { p->status.set_value(s); });
  }
  // All three held by the server: a fixed sleep let a call arrive after the
  // signal.
  WaitForSlowInFlight(3);
  std::vector<std::future<grpc::Status>> results;
  results.reserve(calls.size());
  for (auto& call : calls) results.push_back(call->status.get_future());
  server_->Signal(SIGTERM);
  const int in_flight_at_signal = static_cast<int>(
      std::count_if(results.begin(), results.end(), [](const std::future<grpc::Status>& f) {
        return f.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
      }));
  EXPECT_EQ(in_flight_at_signal, 3);
  for (size_t i = 0; i < calls.size(); ++i) {
    auto& call = calls[i];
    const grpc::Status status = results[i].get();
    EXPECT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(call->response.raw_output_contents_size(), 1);
  }
  const auto exit = server_->WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// While a unary call is in flight at SIGTERM, the drain keeps the
// connections open (no GOAWAY yet): a call made meanwhile on the same
// channel reaches the server and gets its answer (readiness false; an
// inference UNAVAILABLE naming the shutdown), instead of a transport
// failure; the call in flight completes and the process exits 0. gRPC's
// shutdown, which closes each connection as its last call ends, comes only
// after the calls in flight ended (DrainTracker).
TEST_F(KServeModelTest, SigtermAnswersOnOpenConnectionsUntilCallsInFlightEnd) {
  WriteFile(root_ / "slow" / "1" / "model.onnx", SlowModelBytes(1));
  ScopedEnv delay("RECTIFIER_TEST_EXECUTE_DELAY_MS", "3000");
  Start({"--exit-timeout", "20"});
  const inference::ModelInferRequest request = SlowRequest(1);
  grpc::ClientContext slow_context;
  inference::ModelInferResponse slow_response;
  std::promise<grpc::Status> slow_done;
  stub_->async()->ModelInfer(&slow_context, &request, &slow_response,
                             [&slow_done](const grpc::Status& s) { slow_done.set_value(s); });
  WaitForSlowInFlight(1);
  server_->Signal(SIGTERM);
  // Readiness turns false once the drain has begun; until the slow call
  // ends, every call here is answered by the server itself.
  bool ready = true;
  const absl::Time limit = absl::Now() + absl::Seconds(30);
  while (ready && absl::Now() < limit) {
    grpc::ClientContext context;
    inference::ServerReadyResponse response;
    const grpc::Status status = stub_->ServerReady(&context, {}, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ready = response.ready();
  }
  EXPECT_FALSE(ready);
  {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    const grpc::Status status = stub_->ModelInfer(&context, ScaleRequest(1, 1.f), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(status.error_message().find("shutting down"), std::string::npos)
        << status.error_message();
  }
  const grpc::Status slow = slow_done.get_future().get();
  EXPECT_TRUE(slow.ok()) << slow.error_message();
  EXPECT_EQ(slow_response.raw_output_contents_size(), 1);
  const auto exit = server_->WaitForExit(absl::Seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << exit->stderr_text;
}

// A computation that outlives --exit-timeout must not hold the process:
// past the timeout plus a 5 s grace the server exits (code 1, saying so).
// The batch takes 60 s (the test hook RECTIFIER_TEST_EXECUTE_DELAY_MS), on
// any machine.
TEST_F(KServeModelTest, DrainIsBoundedWhileAModelStillComputes) {
  WriteFile(root_ / "slow" / "1" / "model.onnx", SlowModelBytes(1));
  WriteFile(root_ / "slow" / "config.pbtxt", "max_batch_size: 64\n");
  ScopedEnv delay("RECTIFIER_TEST_EXECUTE_DELAY_MS", "60000");
  Start({"--exit-timeout", "0"});
  const inference::ModelInferRequest request = SlowRequest(64);
  grpc::ClientContext context;
  inference::ModelInferResponse response;
  std::promise<grpc::Status> done;
  stub_->async()->ModelInfer(&context, &request, &response,
                             [&done](const grpc::Status& s) { done.set_value(s); });
  WaitForSlowInFlight(1);
  absl::SleepFor(absl::Milliseconds(200));  // Into the computation.
  const absl::Time signalled = absl::Now();
  server_->Signal(SIGTERM);
  const auto exit = server_->WaitForExit(absl::Seconds(60));
  ASSERT_TRUE(exit.has_value());
  const absl::Duration took = absl::Now() - signalled;
  EXPECT_LT(took, absl::Seconds(9)) << exit->stderr_text;
  EXPECT_EQ(exit->exit_code, 1);
  EXPECT_NE(exit->stderr_text.find("drain did not finish"), std::string::npos) << exit->stderr_text;
  done.get_future().wait();
}

TEST_F(KServeModelTest, FullQueueIsRefusedOverTheWireAndOthersComplete) {
  // One request computes (each batch waits 1 s: the test hook), one may
  // wait; the rest find the queue full.
  WriteFile(root_ / "slow" / "1" / "model.onnx", SlowModelBytes(1));
  ScopedEnv delay("RECTIFIER_TEST_EXECUTE_DELAY_MS", "1000");
  WriteFile(root_ / "slow" / "config.pbtxt",
            "max_batch_size: 1\n"
            "dynamic_batching { default_queue_policy { max_queue_size: 1 } }\n");
  Start({});
  const inference::ModelInferRequest request = SlowRequest(1);
  struct Pending {
    grpc::ClientContext context;
    inference::ModelInferResponse response;
    std::promise<grpc::Status> status;
  };
  constexpr int kCalls = 8;
  std::vector<std::unique_ptr<Pending>> calls;
  std::vector<std::future<grpc::Status>> results;
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Pending>());
    Pending* p = calls.back().get();
    results.push_back(p->status.get_future());
    stub_->async()->ModelInfer(&p->context, &request, &p->response,
                               [p](const grpc::Status& s) { p->status.set_value(s); });
  }
  int ok = 0, full = 0;
  for (auto& result : results) {
    const grpc::Status status = result.get();
    if (status.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
      EXPECT_NE(status.error_message().find("queue"), std::string::npos) << status.error_message();
      EXPECT_NE(status.error_message().find("slow"), std::string::npos) << status.error_message();
      ++full;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(full, 1) << "no request found the queue full";
  EXPECT_EQ(ok + full, kCalls);
  // Refusals do not hurt the server: the next request completes.
  grpc::ClientContext context;
  inference::ModelInferResponse response;
  EXPECT_TRUE(stub_->ModelInfer(&context, request, &response).ok());
}

}  // namespace
}  // namespace rectifier::testing
