// Tests for the model repository: scan, versions, errors per model,
// explicit load/unload, polling, and hot reload under load.
#include "server/repository/model_repository.h"

#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/ops/winograd.h"
#include "tests/repository/submit_request.h"
#include "tests/repository/test_models.h"

namespace rectifier::repository {
namespace {

namespace fs = std::filesystem;
using testing::ScaleModelBytes;
using testing::SubmitRequest;
using testing::WriteFile;

engine::Tensor Input(float value, int batch = 1) {
  engine::Tensor t = engine::Tensor::Zeros(engine::DataType::kFloat32, {batch, 3, 2, 2});
  for (int64_t i = 0; i < t.num_elements(); ++i) t.data<float>()[i] = value;
  return t;
}

// Synchronous inference through the repository; returns the first output value.
absl::StatusOr<float> InferOne(ModelRepository& repo, const std::string& name,
                               const std::string& version, float value) {
  auto request = std::make_unique<scheduling::InferenceRequest>();
  request->inputs.push_back(Input(value));
  std::promise<absl::StatusOr<std::vector<engine::Tensor>>> promise;
  auto future = promise.get_future();
  request->done = [&promise](absl::StatusOr<std::vector<engine::Tensor>> result,
                             const scheduling::RequestTimes&) {
    promise.set_value(std::move(result));
  };
  SubmitRequest(repo, name, version, std::move(request));
  auto result = future.get();
  if (!result.ok()) return result.status();
  if (result->size() != 1 || (*result)[0].num_elements() != 12) {
    return absl::InternalError("unexpected output shape");
  }
  const float first = (*result)[0].data<float>()[0];
  for (int64_t i = 1; i < 12; ++i) {
    if ((*result)[0].data<float>()[i] != first) return absl::InternalError("mixed output");
  }
  return first;
}

class ModelRepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("rectifier-repo-test-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  void AddModel(const std::string& name, int version, float factor,
                const std::string& config = "") {
    WriteFile(root_ / name / std::to_string(version) / "model.onnx", ScaleModelBytes(factor));
    if (!config.empty()) WriteFile(root_ / name / "config.pbtxt", config);
  }

  std::unique_ptr<ModelRepository> Open(ControlMode mode = ControlMode::kNone,
                                        std::vector<std::string> startup = {}) {
    RepositoryOptions options;
    options.root = root_.string();
    options.mode = mode;
    options.startup_models = std::move(startup);
    options.cpus = 1;
    options.drain_timeout = absl::Seconds(10);
    auto repo = ModelRepository::Create(options);
    EXPECT_TRUE(repo.ok()) << repo.status();
    return repo.ok() ? std::move(repo).value() : nullptr;
  }

  const ModelIndexEntry* Find(const std::vector<ModelIndexEntry>& index, const std::string& name) {
    for (const auto& e : index) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }

  fs::path root_;
};

TEST_F(ModelRepositoryTest, BrokenModelsAreReportedAndDoNotStopOthers) {
  AddModel("double", 1, 2.f);
  WriteFile(root_ / "garbage" / "1" / "model.onnx", "this is not an onnx model");
  AddModel("badconfig", 1, 2.f, "max_batch_size: 4\nmax_batch_sise: 8\n");
  fs::create_directories(root_ / "nofile" / "1");
  AddModel("gpu", 1, 2.f, "instance_group [ { kind: KIND_GPU } ]");
  // Imaging blocks are checked at load against the model's input.
  AddModel("badimaging", 1, 2.f, "preprocessing { mean: [1, 2] }");
  AddModel("imaging", 1, 2.f, "preprocessing { color_format: COLOR_GRAY }\n");
  // A detection task on a model whose output is not a detection head.
  AddModel("notdetector", 1, 2.f,
           "preprocessing { color_format: COLOR_GRAY }\n"
           "postprocessing { task: TASK_DETECTION score_threshold: 0.5 }");
  fs::create_directories(root_ / ".hidden" / "1");
  WriteFile(root_ / "tools" / "export.py", "# not a model");

  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  auto value = InferOne(*repo, "double", "", 1.5f);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_FLOAT_EQ(*value, 3.f);

  const auto index = repo->Index();
  ASSERT_NE(Find(index, "double"), nullptr);
  EXPECT_EQ(Find(index, "double")->state, "READY");
  EXPECT_EQ(Find(index, "double")->version, "1");
  EXPECT_EQ(Find(index, "imaging")->state, "READY") << Find(index, "imaging")->reason;
  for (const char* broken :
       {"garbage", "badconfig", "nofile", "gpu", "badimaging", "notdetector"}) {
    const ModelIndexEntry* e = Find(index, broken);
    ASSERT_NE(e, nullptr) << broken;
    EXPECT_EQ(e->state, "UNAVAILABLE") << broken;
    EXPECT_FALSE(e->reason.empty()) << broken;
  }
  EXPECT_NE(Find(index, "badconfig")->reason.find("config.pbtxt:2:"), std::string::npos)
      << Find(index, "badconfig")->reason;
  EXPECT_NE(Find(index, "gpu")->reason.find("KIND_GPU"), std::string::npos);
  EXPECT_NE(Find(index, "badimaging")->reason.find("preprocessing.mean"), std::string::npos)
      << Find(index, "badimaging")->reason;
  EXPECT_NE(Find(index, "notdetector")->reason.find("detection needs output 0 laid out"),
            std::string::npos)
      << Find(index, "notdetector")->reason;
  EXPECT_EQ(Find(index, ".hidden"), nullptr);
  EXPECT_EQ(Find(index, "tools"), nullptr);  // no config, no version folder: not a model
  EXPECT_FALSE(repo->AllReady());

  EXPECT_EQ(InferOne(*repo, "garbage", "", 1.f).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(InferOne(*repo, "missing", "", 1.f).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(InferOne(*repo, "double", "7", 1.f).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(InferOne(*repo, "double", "x", 1.f).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ModelRepositoryTest, VersionPolicies) {
  for (int v = 1; v <= 3; ++v)
    AddModel("latest2", v, static_cast<float>(v), "version_policy { latest { num_versions: 2 } }");
  for (int v = 1; v <= 3; ++v)
    AddModel("all", v, static_cast<float>(v), "version_policy { all {} }");
  for (int v = 1; v <= 3; ++v)
    AddModel("specific", v, static_cast<float>(v),
             "version_policy { specific { versions: [1, 3] } }");
  for (int v = 1; v <= 2; ++v) AddModel("default", v, static_cast<float>(v));
  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  EXPECT_EQ(repo->ReadyVersions("latest2"), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(repo->ReadyVersions("all"), (std::vector<int64_t>{3, 2, 1}));
  EXPECT_EQ(repo->ReadyVersions("specific"), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(repo->ReadyVersions("default"), (std::vector<int64_t>{2}));
  EXPECT_TRUE(repo->AllReady());
  // Each version computes with its own weights; "" picks the newest.
  EXPECT_FLOAT_EQ(InferOne(*repo, "all", "1", 1.f).value(), 1.f);
  EXPECT_FLOAT_EQ(InferOne(*repo, "all", "2", 1.f).value(), 2.f);
  EXPECT_FLOAT_EQ(InferOne(*repo, "all", "", 1.f).value(), 3.f);
  EXPECT_EQ(InferOne(*repo, "specific", "2", 1.f).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, ExplicitLoadAndUnload) {
  AddModel("a", 1, 2.f);
  AddModel("b", 1, 5.f);
  auto repo = Open(ControlMode::kExplicit, {"a"});
  ASSERT_NE(repo, nullptr);
  EXPECT_FLOAT_EQ(InferOne(*repo, "a", "", 1.f).value(), 2.f);
  EXPECT_EQ(InferOne(*repo, "b", "", 1.f).status().code(), absl::StatusCode::kNotFound);
  const ModelIndexEntry* b = Find(repo->Index(), "b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->reason, "not loaded");

  ASSERT_TRUE(repo->Load("b").ok());
  EXPECT_FLOAT_EQ(InferOne(*repo, "b", "", 1.f).value(), 5.f);
  ASSERT_TRUE(repo->Unload("a").ok());
  EXPECT_EQ(InferOne(*repo, "a", "", 1.f).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(repo->Unload("a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(repo->Load("../etc").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(repo->Load(".hidden").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(repo->Load("nope").code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, FailedReloadKeepsServingThePreviousVersion) {
  AddModel("m", 1, 2.f);
  auto repo = Open(ControlMode::kExplicit, {"m"});
  ASSERT_NE(repo, nullptr);
  WriteFile(root_ / "m" / "config.pbtxt", "max_batch_size: -3");
  const absl::Status status = repo->Load("m");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FLOAT_EQ(InferOne(*repo, "m", "", 1.f).value(), 2.f);
  EXPECT_NE(Find(repo->Index(), "m")->reason.find("max_batch_size"), std::string::npos);
}

// Load errors reach clients (RepositoryModelLoad's status, RepositoryIndex
// reasons, ModelReady / inference on a model that is not ready): they name
// files relative to the repository and never the server's absolute paths,
// however the root was spelt (as is, with "./" and a trailing separator).
TEST_F(ModelRepositoryTest, LoadErrorsNameFilesRelativeToTheRepository) {
  WriteFile(root_ / "garbage" / "1" / "model.onnx", "this is not an onnx model");
  AddModel("badconfig", 1, 2.f, "max_batch_size: 4\nmax_batch_sise: 8\n");
  AddModel("wrongname", 1, 2.f, "name: \"other\"");
  AddModel("badvalue", 1, 2.f, "max_batch_size: -1");
  AddModel("warmup", 1, 2.f,
           "max_batch_size: 4\n"
           "model_warmup [{ name: \"file\" batch_size: 1 inputs { key: \"x\" value {"
           " data_type: TYPE_FP32 dims: [3, 2, 2] input_data_file: \"absent.bin\" } } }]\n");
  const std::string root = root_.string();
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"garbage", "garbage/1/model.onnx"},
      {"badconfig", "badconfig/config.pbtxt:2:"},
      {"wrongname", "wrongname/config.pbtxt: name 'other'"},
      {"badvalue", "badvalue/config.pbtxt: "},
      {"warmup", "warmup/warmup/absent.bin"},
  };
  for (const std::string& spelt : {root, root + "/./"}) {
    SCOPED_TRACE(spelt);
    RepositoryOptions options;
    options.root = spelt;
    options.mode = ControlMode::kExplicit;
    options.cpus = 1;
    auto repo = ModelRepository::Create(options);
    ASSERT_TRUE(repo.ok()) << repo.status();
    std::vector<std::string> messages;
    for (const auto& [name, file] : expected) {
      const absl::Status load = (*repo)->Load(name);
      EXPECT_FALSE(load.ok()) << name;
      // A failed load request loads nothing (the server stays ready); the
      // index shows the model on disk with the reason.
      const std::vector<ModelIndexEntry> index = (*repo)->Index();
      const ModelIndexEntry* entry = Find(index, name);
      ASSERT_NE(entry, nullptr) << name;
      EXPECT_EQ(entry->state, "UNAVAILABLE") << name;
      EXPECT_EQ(entry->reason, load.message()) << name;
      EXPECT_TRUE((*repo)->AllReady()) << name;
      EXPECT_NE(load.message().find(file), std::string::npos) << load.message();
      messages.emplace_back(load.message());
      messages.emplace_back((*repo)->Get(name, "").status().message());
    }
    messages.emplace_back((*repo)->Load("absent").message());
    for (const std::string& message : messages) {
      EXPECT_EQ(message.find(root), std::string::npos) << message;
      EXPECT_EQ(message.find(fs::temp_directory_path().string() + "/"), std::string::npos)
          << message;
    }
  }
}

TEST_F(ModelRepositoryTest, PollLoadsChangesAndUnloadsRemovedModels) {
  AddModel("m", 1, 2.f);
  auto repo = Open(ControlMode::kExplicit, {"m"});
  ASSERT_NE(repo, nullptr);
  AddModel("fresh", 1, 4.f);
  AddModel("m", 2, 3.f);
  ASSERT_TRUE(repo->Poll().ok());
  EXPECT_FLOAT_EQ(InferOne(*repo, "fresh", "", 1.f).value(), 4.f);
  EXPECT_EQ(repo->ReadyVersions("m"), (std::vector<int64_t>{2}));
  EXPECT_FLOAT_EQ(InferOne(*repo, "m", "", 1.f).value(), 3.f);
  fs::remove_all(root_ / "fresh");
  ASSERT_TRUE(repo->Poll().ok());
  EXPECT_EQ(InferOne(*repo, "fresh", "", 1.f).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, HotReloadUnderLoadLosesNoRequest) {
  AddModel("m", 1, 2.f,
           "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 200 }");
  auto repo = Open(ControlMode::kExplicit, {"m"});
  ASSERT_NE(repo, nullptr);

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, wrong{0};
  std::vector<std::thread> clients;
  clients.reserve(4);
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 2000 && !stop.load(); ++i) {
        const float x = static_cast<float>(t * 1000 + i % 97 + 1);
        auto y = InferOne(*repo, "m", "", x);
        if (!y.ok()) {
          ++failed;
        } else if (*y != 2.f * x && *y != 3.f * x && *y != 4.f * x) {
          ++wrong;
        } else {
          ++ok;
        }
      }
    });
  }
  // Bounded waits: a broken server fails the test instead of hanging it.
  const auto wait_for_ok = [&](int target) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (ok.load() < target && failed.load() == 0 && absl::Now() < deadline) {
      std::this_thread::yield();
    }
    return ok.load() >= target;
  };
  // Swap versions twice while requests flow: 1 (x2) -> 2 (x3) -> 3 (x4).
  EXPECT_TRUE(wait_for_ok(50));
  AddModel("m", 2, 3.f);
  EXPECT_TRUE(repo->Load("m").ok());
  EXPECT_TRUE(wait_for_ok(ok.load() + 50));
  AddModel("m", 3, 4.f);
  EXPECT_TRUE(repo->Load("m").ok());
  EXPECT_TRUE(wait_for_ok(ok.load() + 50));
  stop = true;
  for (auto& c : clients) c.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(ok.load(), 150);
  EXPECT_FLOAT_EQ(InferOne(*repo, "m", "", 1.f).value(), 4.f);
}

TEST_F(ModelRepositoryTest, ActivationBlockControlsFusion) {
  WriteFile(root_ / "fused" / "1" / "model.onnx", testing::ConvReluModelBytes());
  WriteFile(root_ / "unfused" / "1" / "model.onnx", testing::ConvReluModelBytes());
  WriteFile(root_ / "unfused" / "config.pbtxt", "activation { fuse: false }");
  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  auto fused = repo->Get("fused", "");
  auto unfused = repo->Get("unfused", "");
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  const std::string fused_plan = (*fused)->model->DescribePlan(1).value();
  const std::string unfused_plan = (*unfused)->model->DescribePlan(1).value();
  // Fused: the Relu rides on the convolution; unfused: it is its own step.
  EXPECT_NE(fused_plan.find("fused: Relu"), std::string::npos) << fused_plan;
  EXPECT_EQ(unfused_plan.find("fused: Relu"), std::string::npos) << unfused_plan;
  EXPECT_NE(unfused_plan.find("Relu 'relu'"), std::string::npos) << unfused_plan;
}

TEST_F(ModelRepositoryTest, ActivationKernelSelectsRectifierTanh) {
  onnx::ModelProto conv_tanh;
  ASSERT_TRUE(conv_tanh.ParseFromString(testing::ConvReluModelBytes()));
  conv_tanh.mutable_graph()->mutable_node(1)->set_op_type("Tanh");
  const std::string bytes = conv_tanh.SerializeAsString();
  WriteFile(root_ / "onednn" / "1" / "model.onnx", bytes);
  WriteFile(root_ / "ours" / "1" / "model.onnx", bytes);
  WriteFile(root_ / "ours" / "config.pbtxt", "activation { kernel: RECTIFIER }");
  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  auto onednn = repo->Get("onednn", "");
  auto ours = repo->Get("ours", "");
  ASSERT_TRUE(onednn.ok()) << onednn.status();
  ASSERT_TRUE(ours.ok()) << ours.status();
  const std::string onednn_plan = (*onednn)->model->DescribePlan(1).value();
  const std::string ours_plan = (*ours)->model->DescribePlan(1).value();
  // Default: tanh is a oneDNN post-op of the conv; RECTIFIER: our kernel
  // runs it right after the conv (writing the graph output).
  EXPECT_EQ(onednn_plan.find("[rectifier:"), std::string::npos) << onednn_plan;
  EXPECT_NE(ours_plan.find("tanh "), std::string::npos) << ours_plan;
  EXPECT_NE(ours_plan.find("[rectifier:"), std::string::npos) << ours_plan;
}

TEST_F(ModelRepositoryTest, SiluKernelOnednnKeepsTheFusedSwish) {
  // Conv -> x * Sigmoid(x): SiLU, on Rectifier's kernel by default.
  onnx::ModelProto conv_silu;
  ASSERT_TRUE(conv_silu.ParseFromString(testing::ConvReluModelBytes()));
  onnx::NodeProto* act = conv_silu.mutable_graph()->mutable_node(1);
  const std::string conv_out = act->input(0), y = act->output(0);
  act->set_op_type("Sigmoid");
  act->set_output(0, "gate");
  onnx::NodeProto* mul = conv_silu.mutable_graph()->add_node();
  mul->set_op_type("Mul");
  mul->add_input(conv_out);
  mul->add_input("gate");
  mul->add_output(y);
  const std::string bytes = conv_silu.SerializeAsString();
  WriteFile(root_ / "ours" / "1" / "model.onnx", bytes);
  WriteFile(root_ / "onednn" / "1" / "model.onnx", bytes);
  WriteFile(root_ / "onednn" / "config.pbtxt", "activation { silu_kernel: ONEDNN }");
  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  auto ours = repo->Get("ours", "");
  auto onednn = repo->Get("onednn", "");
  ASSERT_TRUE(ours.ok()) << ours.status();
  ASSERT_TRUE(onednn.ok()) << onednn.status();
  const std::string ours_plan = (*ours)->model->DescribePlan(1).value();
  const std::string onednn_plan = (*onednn)->model->DescribePlan(1).value();
  EXPECT_NE(ours_plan.find("silu"), std::string::npos) << ours_plan;
  EXPECT_NE(ours_plan.find("[rectifier:"), std::string::npos) << ours_plan;
  EXPECT_NE(onednn_plan.find("+swish"), std::string::npos) << onednn_plan;
  EXPECT_EQ(onednn_plan.find("[rectifier:"), std::string::npos) << onednn_plan;
}

// The repository tunes convolution layouts by default; a config's
// parameters { key: "conv_layout" } picks one, and an unknown value fails
// the load naming it.
TEST_F(ModelRepositoryTest, ConvLayoutFromOptionsAndConfig) {
  WriteFile(root_ / "tuned" / "1" / "model.onnx", testing::ConvReluModelBytes());
  WriteFile(root_ / "fixed" / "1" / "model.onnx", testing::ConvReluModelBytes());
  WriteFile(root_ / "fixed" / "config.pbtxt",
            "parameters { key: \"conv_layout\" value { string_value: \"blocked8\" } }");
  AddModel("bad", 1, 2.f);
  WriteFile(root_ / "bad" / "config.pbtxt",
            "parameters { key: \"conv_layout\" value { string_value: \"diagonal\" } }");
  auto repo = Open(ControlMode::kExplicit, {"tuned", "fixed"});
  ASSERT_NE(repo, nullptr);
  auto tuned = repo->Get("tuned", "");
  auto fixed = repo->Get("fixed", "");
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  const std::string tuned_plan = (*tuned)->model->DescribePlan(1).value();
  const std::string fixed_plan = (*fixed)->model->DescribePlan(1).value();
  EXPECT_EQ(tuned_plan.rfind("conv layout: ", 0), 0u) << tuned_plan;
  EXPECT_NE(tuned_plan.find("tuned"), std::string::npos) << tuned_plan;
  // A fixed layout is not timed (its 2 channels are no block multiple, so
  // the plan itself is oneDNN's choice).
  EXPECT_EQ(fixed_plan.find("conv layout: "), std::string::npos) << fixed_plan;
  const absl::Status bad = repo->Load("bad");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("parameters.conv_layout 'diagonal'"), std::string::npos) << bad;
}

// parameters { key: "conv3x3_kernel" } turns Rectifier's Winograd kernel
// off or on for a model's 3x3 convolutions; an unknown value fails the load.
TEST_F(ModelRepositoryTest, Conv3x3KernelFromConfig) {
  for (const char* name : {"onednn", "winograd", "winograd-f4x4"}) {
    WriteFile(root_ / name / "1" / "model.onnx", testing::SlowModelBytes(1));
    WriteFile(root_ / name / "config.pbtxt",
              absl::StrCat("parameters { key: \"conv3x3_kernel\" value { string_value: \"", name,
                           "\" } } parameters { key: \"conv_layout\" value { string_value: "
                           "\"blocked8\" } }"));
  }
  AddModel("bad", 1, 2.f);
  WriteFile(root_ / "bad" / "config.pbtxt",
            "parameters { key: \"conv3x3_kernel\" value { string_value: \"fft\" } }");
  auto repo = Open(ControlMode::kExplicit, {"onednn", "winograd", "winograd-f4x4"});
  ASSERT_NE(repo, nullptr);
  auto onednn = repo->Get("onednn", "");
  auto winograd = repo->Get("winograd", "");
  auto winograd4 = repo->Get("winograd-f4x4", "");
  ASSERT_TRUE(onednn.ok()) << onednn.status();
  ASSERT_TRUE(winograd.ok()) << winograd.status();
  ASSERT_TRUE(winograd4.ok()) << winograd4.status();
  const std::string onednn_plan = (*onednn)->model->DescribePlan(1).value();
  const std::string winograd_plan = (*winograd)->model->DescribePlan(1).value();
  const std::string winograd4_plan = (*winograd4)->model->DescribePlan(1).value();
  EXPECT_EQ(onednn_plan.find("rectifier_winograd"), std::string::npos) << onednn_plan;
  if (engine::WinogradVectorized()) {
    EXPECT_NE(winograd_plan.find("wei:winograd-f2x2-3x3"), std::string::npos) << winograd_plan;
    EXPECT_NE(winograd4_plan.find("wei:winograd-f4x4-3x3"), std::string::npos) << winograd4_plan;
  }
  const absl::Status bad = repo->Load("bad");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("parameters.conv3x3_kernel 'fft'"), std::string::npos) << bad;
}

// parameters.batch_split: on by default, "false" runs every batch on the
// whole thread team, anything else fails the load.
TEST_F(ModelRepositoryTest, BatchSplitFromConfig) {
  WriteFile(root_ / "split" / "1" / "model.onnx", testing::SlowModelBytes(1));
  WriteFile(root_ / "split" / "config.pbtxt", "max_batch_size: 4");
  WriteFile(root_ / "whole" / "1" / "model.onnx", testing::SlowModelBytes(1));
  WriteFile(root_ / "whole" / "config.pbtxt",
            "max_batch_size: 4 parameters { key: \"batch_split\" value { string_value: "
            "\"false\" } }");
  AddModel("bad", 1, 2.f);
  WriteFile(root_ / "bad" / "config.pbtxt",
            "parameters { key: \"batch_split\" value { string_value: \"maybe\" } }");
  auto repo = Open(ControlMode::kExplicit, {"split", "whole"});
  ASSERT_NE(repo, nullptr);
  const engine::Tensor x = engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 32, 96, 96});
  for (const auto& [name, parts] : {std::pair<const char*, int>{"split", 2}, {"whole", 1}}) {
    SCOPED_TRACE(name);
    auto served = repo->Get(name, "");
    ASSERT_TRUE(served.ok()) << served.status();
    auto ctx = engine::ExecutionContext::Create((*served)->model, {2});
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ASSERT_TRUE((*ctx)->Run({x}).ok());
    EXPECT_EQ((*ctx)->last_batch_parts(), parts);
  }
  const absl::Status bad = repo->Load("bad");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("parameters.batch_split 'maybe'"), std::string::npos) << bad;
}

TEST_F(ModelRepositoryTest, ActivationReplaceAndStatisticsFromConfig) {
  WriteFile(root_ / "leaky" / "1" / "model.onnx", testing::ConvReluModelBytes());
  WriteFile(root_ / "leaky" / "config.pbtxt",
            "activation { replace { from: \"Relu\" to: \"LeakyRelu\" alpha: 0.1 } "
            "gelu_approximation: \"tanh\" statistics { sample_every: 1 } }");
  AddModel("bad", 1, 2.f);
  WriteFile(root_ / "bad" / "config.pbtxt",
            "activation { replace { from: \"Relu\" to: \"Nope\" } }");
  auto repo = Open(ControlMode::kExplicit, {"leaky"});
  ASSERT_NE(repo, nullptr);
  auto leaky = repo->Get("leaky", "");
  ASSERT_TRUE(leaky.ok()) << leaky.status();
  const engine::ActivationSummary& s = (*leaky)->model->activation_summary();
  EXPECT_EQ(s.counts.at("LeakyRelu"), 1) << s.ToString();
  EXPECT_EQ(s.counts.count("Relu"), 0u) << s.ToString();
  EXPECT_NE(s.warning.find("trained with LeakyRelu"), std::string::npos) << s.warning;
  EXPECT_NE((*leaky)->model->DescribePlan(1).value().find("leaky_relu"), std::string::npos);
  const absl::Status bad = repo->Load("bad");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("activation.replace[0].to: unknown activation kind 'Nope'"),
            std::string::npos)
      << bad;
}

TEST_F(ModelRepositoryTest, PollModeRescansOnItsOwn) {
  AddModel("m", 1, 2.f);
  RepositoryOptions options;
  options.root = root_.string();
  options.mode = ControlMode::kPoll;
  options.poll_interval = absl::Milliseconds(50);
  options.cpus = 1;
  auto repo = ModelRepository::Create(options);
  ASSERT_TRUE(repo.ok()) << repo.status();
  EXPECT_FLOAT_EQ(InferOne(**repo, "m", "", 1.f).value(), 2.f);
  AddModel("late", 1, 7.f);
  // The poll thread picks the new model up without any call from us.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!(*repo)->Get("late", "").ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FLOAT_EQ(InferOne(**repo, "late", "", 1.f).value(), 7.f);
}

TEST_F(ModelRepositoryTest, ShutdownRejectsNewRequests) {
  AddModel("m", 1, 2.f);
  auto repo = Open();
  ASSERT_NE(repo, nullptr);
  repo->Shutdown(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(InferOne(*repo, "m", "", 1.f).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(repo->AllReady());
}

TEST_F(ModelRepositoryTest, ValidatesNamesAndControlModes) {
  EXPECT_TRUE(ValidateModelName("resnet50_v1.5-int").ok());
  for (const char* bad : {"", "..", "../x", "a/b", ".hidden", "white space"}) {
    EXPECT_EQ(ValidateModelName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(ParseControlMode("poll").value(), ControlMode::kPoll);
  EXPECT_EQ(ParseControlMode("sometimes").status().code(), absl::StatusCode::kInvalidArgument);
  RepositoryOptions options;
  options.root = (root_ / "absent").string();
  EXPECT_EQ(ModelRepository::Create(options).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, CurrentVersionForFollowsReloadsThatKeepTheInterface) {
  AddModel("m", 1, 2.0f);
  auto repo = Open(ControlMode::kExplicit, {"m"});
  auto first = repo->Get("m", "");
  ASSERT_TRUE(first.ok()) << first.status();
  auto current = repo->CurrentVersionFor(*first, "");
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(*current, *first);

  // Reloaded with the same interface: a request prepared for the first copy
  // runs on the second.
  AddModel("m", 1, 3.0f);
  ASSERT_TRUE(repo->Load("m").ok());
  current = repo->CurrentVersionFor(*first, "");
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_NE(*current, *first);
  EXPECT_EQ((*current)->version, 1);
  auto request = std::make_unique<scheduling::InferenceRequest>();
  request->inputs.push_back(Input(1.0f));
  std::promise<absl::StatusOr<std::vector<engine::Tensor>>> answer;
  request->done = [&answer](absl::StatusOr<std::vector<engine::Tensor>> result,
                            const scheduling::RequestTimes&) {
    answer.set_value(std::move(result));
  };
  std::shared_ptr<const ServedModel> ran;
  ASSERT_TRUE(repo->Submit(*first, "", std::move(request), &ran).ok());
  EXPECT_EQ(ran, *current);
  auto result = answer.get_future().get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ((*result)[0].data<float>()[0], 3.0f);

  // Reloaded with another input: refused, and `done` is never called.
  WriteFile(root_ / "m" / "1" / "model.onnx", ScaleModelBytes(2.0f, /*channels=*/1));
  ASSERT_TRUE(repo->Load("m").ok());
  current = repo->CurrentVersionFor(*first, "");
  EXPECT_EQ(current.status().code(), absl::StatusCode::kUnavailable) << current.status();
  auto refused = std::make_unique<scheduling::InferenceRequest>();
  refused->inputs.push_back(Input(1.0f));
  refused->done = [](const absl::StatusOr<std::vector<engine::Tensor>>&,
                     const scheduling::RequestTimes&) {
    ADD_FAILURE() << "done called for a refused request";
  };
  EXPECT_EQ(repo->Submit(*first, "", std::move(refused)).code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(repo->Unload("m").ok());
  EXPECT_EQ(repo->CurrentVersionFor(*first, "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ModelRepositoryTest, ASchedulerRefusalIsAnsweredAfterTheLockIsReleased) {
  AddModel("m", 1, 2.0f,
           "max_batch_size: 8\n"
           "dynamic_batching { priority_levels: 2 default_priority_level: 1 }\n");
  auto repo = Open(ControlMode::kExplicit, {"m"});
  auto served = repo->Get("m", "");
  ASSERT_TRUE(served.ok()) << served.status();
  auto request = std::make_unique<scheduling::InferenceRequest>();
  request->inputs.push_back(Input(1.0f));
  request->priority = 3;  // above priority_levels: refused inside Enqueue
  absl::Status answered = absl::UnknownError("not answered");
  absl::Status unloaded = absl::UnknownError("not run");
  // Front-end code in `done` may call back into the repository: it would
  // deadlock if `done` ran under the repository lock.
  request->done = [&](const absl::StatusOr<std::vector<engine::Tensor>>& result,
                      const scheduling::RequestTimes&) {
    answered = result.status();
    unloaded = repo->Unload("m");
  };
  EXPECT_TRUE(repo->Submit(*served, "", std::move(request)).ok());
  EXPECT_EQ(answered.code(), absl::StatusCode::kInvalidArgument) << answered;
  EXPECT_TRUE(unloaded.ok()) << unloaded;
}

TEST_F(ModelRepositoryTest, AMissingLabelsFileNamedInTheConfigFailsTheLoad) {
  const std::string config =
      "max_batch_size: 8\n"
      "output { name: \"y\" data_type: TYPE_FP32 dims: [ 3, 2, 2 ] "
      "label_filename: \"missing.txt\" }\n";
  AddModel("m", 1, 2.0f, config);
  auto repo = Open();
  const std::vector<ModelIndexEntry> index = repo->Index();
  const ModelIndexEntry* entry = Find(index, "m");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->state, "UNAVAILABLE");
  // Used to load with no labels, silently.
  EXPECT_EQ(entry->reason,
            "version 1: output 'y' label_filename: cannot read labels file m/missing.txt");

  WriteFile(root_ / "m" / "missing.txt", "a\nb\nc\r\n");
  ASSERT_TRUE(repo->Load("m").ok());
  auto served = repo->Get("m", "");
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ((*served)->labels, (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace rectifier::repository
