// Tests for config.pbtxt parsing, validation and completion.
#include "server/repository/model_config.h"

#include "gtest/gtest.h"
#include "tests/repository/test_models.h"

namespace rectifier::repository {
namespace {

TEST(ModelConfigTest, ParsesTritonOnnxConfig) {
  const char* kText = R"pb(
    name: "resnet50"
    platform: "onnxruntime_onnx"
    max_batch_size: 8 input
    [ {
      name: "input"
      data_type: TYPE_FP32
      format: FORMAT_NCHW
      dims: [ 3, 224, 224 ]
    }] output
    [ {
      name: "logits"
      data_type: TYPE_FP32
      dims: [ 1000 ]
      label_filename: "labels.txt"
    }] instance_group
    [ { count: 2 kind: KIND_CPU }]
    version_policy: { latest: { num_versions: 2 } }
    dynamic_batching {
      preferred_batch_size: [ 4, 8 ]
      max_queue_delay_microseconds: 500
      priority_levels: 2
      default_priority_level: 2
      default_queue_policy {
        timeout_action: DELAY
        default_timeout_microseconds: 1000
        max_queue_size: 16
      }
      priority_queue_policy {
        key: 1
        value: { max_queue_size: 4 }
      }
    }
    parameters {
      key: "intra_op_threads"
      value: { string_value: "2" }
    }
  )pb";
  auto config = ParseModelConfig(kText, "models/resnet50/config.pbtxt");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateModelConfig(*config).ok());
  EXPECT_EQ(config->max_batch_size(), 8);
  EXPECT_EQ(config->instance_group(0).count(), 2);

  const scheduling::SchedulerOptions options = SchedulerOptionsFromConfig(*config, "3");
  EXPECT_EQ(options.model_name, "resnet50");
  EXPECT_EQ(options.model_version, "3");
  EXPECT_TRUE(options.batchable);
  EXPECT_EQ(options.max_batch_size, 8);
  EXPECT_EQ(options.preferred_batch_sizes, (std::vector<int>{4, 8}));
  EXPECT_EQ(options.max_queue_delay, absl::Microseconds(500));
  EXPECT_EQ(options.priority_levels, 2u);
  EXPECT_EQ(options.default_priority_level, 2u);
  EXPECT_EQ(options.default_queue_policy.timeout_action,
            scheduling::QueuePolicy::TimeoutAction::kDelay);
  EXPECT_EQ(options.default_queue_policy.default_timeout, absl::Milliseconds(1));
  EXPECT_EQ(options.default_queue_policy.max_queue_size, 16u);
  EXPECT_EQ(options.priority_queue_policy.at(1).max_queue_size, 4u);
}

TEST(ModelConfigTest, ParseErrorsNameFileLineAndField) {
  auto config = ParseModelConfig("name: \"m\"\nmax_batch_size: 4\nmax_batch_sise: 8\n",
                                 "models/m/config.pbtxt");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(config.status().message());
  EXPECT_NE(message.find("models/m/config.pbtxt:3:"), std::string::npos) << message;
  EXPECT_NE(message.find("max_batch_sise"), std::string::npos) << message;

  auto bad_enum = ParseModelConfig("instance_group [ { kind: KIND_TPU } ]", "c.pbtxt");
  ASSERT_FALSE(bad_enum.ok());
  EXPECT_NE(bad_enum.status().message().find("KIND_TPU"), std::string::npos);
}

TEST(ModelConfigTest, ValidationNamesTheField) {
  struct Case {
    const char* text;
    const char* needle;
  };
  const Case kCases[] = {
      {"max_batch_size: -1", "max_batch_size"},
      {"platform: \"tensorflow_savedmodel\"", "tensorflow_savedmodel"},
      {"max_batch_size: 4 dynamic_batching { preferred_batch_size: 8 }", "preferred_batch_size 8"},
      {"input [ { name: \"x\" dims: [ 3, 0 ] } ]", "input 'x'"},
      {"instance_group [ { count: -2 } ]", "instance_group.count"},
      {"max_batch_size: 4 dynamic_batching { priority_levels: 2 default_priority_level: 3 }",
       "default_priority_level"},
      {"version_policy { latest { num_versions: 0 } }", "num_versions"},
      {"engine { max_cached_plans: 5000 }", "engine.max_cached_plans is 5000"},
  };
  for (const Case& c : kCases) {
    auto config = ParseModelConfig(c.text, "c.pbtxt");
    ASSERT_TRUE(config.ok()) << c.text;
    const absl::Status status = ValidateModelConfig(*config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(status.message().find(c.needle), std::string::npos) << status.message();
  }
}

TEST(ModelConfigTest, CompletesFromTheModelAndChecksWhatItStates) {
  engine::CompileOptions compile;
  compile.max_batch_size = 16;
  auto model = engine::CompiledModel::FromBytes(testing::ScaleModelBytes(2.f), compile);
  ASSERT_TRUE(model.ok()) << model.status();

  inference::ModelConfig config;
  config.set_name("scale");
  ASSERT_TRUE(CompleteConfigFromModel(**model, &config).ok());
  EXPECT_EQ(config.max_batch_size(), 16);
  ASSERT_EQ(config.input_size(), 1);
  EXPECT_EQ(config.input(0).name(), "x");
  EXPECT_EQ(config.input(0).data_type(), inference::TYPE_FP32);
  EXPECT_EQ(std::vector<int64_t>(config.input(0).dims().begin(), config.input(0).dims().end()),
            (std::vector<int64_t>{3, 2, 2}));
  ASSERT_EQ(config.output_size(), 1);
  EXPECT_EQ(config.output(0).name(), "y");

  inference::ModelConfig wrong_dims;
  wrong_dims.set_max_batch_size(4);
  auto* input = wrong_dims.add_input();
  input->set_name("x");
  for (int d : {3, 5, 5}) input->add_dims(d);
  absl::Status status = CompleteConfigFromModel(**model, &wrong_dims);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("input 'x': dims [3,5,5]"), std::string::npos) << status;

  inference::ModelConfig wrong_name;
  wrong_name.set_max_batch_size(4);
  wrong_name.add_input()->set_name("image");
  status = CompleteConfigFromModel(**model, &wrong_name);
  EXPECT_NE(status.message().find("'image' is not in the model"), std::string::npos) << status;

  auto fixed = engine::CompiledModel::FromBytes(testing::ScaleModelBytes(2.f, 3, false));
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  inference::ModelConfig batched;
  batched.set_max_batch_size(8);
  status = CompleteConfigFromModel(**fixed, &batched);
  EXPECT_NE(status.message().find("cannot batch"), std::string::npos) << status;
}

}  // namespace
}  // namespace rectifier::repository
