// Tests for KServe ModelInfer decoding/encoding against a model config.
#include "server/service/infer_codec.h"

#include <cstring>

#include "gtest/gtest.h"

namespace rectifier::service {
namespace {

inference::ModelConfig Config() {
  inference::ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(4);
  auto* image = config.add_input();
  image->set_name("image");
  image->set_data_type(inference::TYPE_FP32);
  for (int d : {3, 2, 2}) image->add_dims(d);
  auto* scale = config.add_input();
  scale->set_name("scale");
  scale->set_data_type(inference::TYPE_FP32);
  scale->add_dims(1);
  auto* logits = config.add_output();
  logits->set_name("logits");
  logits->set_data_type(inference::TYPE_FP32);
  logits->add_dims(5);
  auto* boxes = config.add_output();
  boxes->set_name("boxes");
  boxes->set_data_type(inference::TYPE_FP32);
  boxes->add_dims(-1);
  return config;
}

template <typename T>
std::string Raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

void AddInput(inference::ModelInferRequest* request, const std::string& name,
              const std::string& datatype, const std::vector<int64_t>& shape) {
  auto* input = request->add_inputs();
  input->set_name(name);
  input->set_datatype(datatype);
  for (int64_t d : shape) input->add_shape(d);
}

// A valid raw request with batch 2: image values 0..23, scale 7, 8.
inference::ModelInferRequest ValidRaw() {
  inference::ModelInferRequest request;
  request.set_model_name("m");
  request.set_id("req-1");
  // Inputs deliberately in the opposite order to the config.
  AddInput(&request, "scale", "FP32", {2, 1});
  AddInput(&request, "image", "FP32", {2, 3, 2, 2});
  request.add_raw_input_contents(Raw(std::vector<float>{7, 8}));
  std::vector<float> image(24);
  for (int i = 0; i < 24; ++i) image[i] = static_cast<float>(i);
  request.add_raw_input_contents(Raw(image));
  return request;
}

TEST(InferCodecTest, DecodesRawInputsInConfigOrder) {
  const inference::ModelInferRequest request = ValidRaw();
  auto tensors = DecodeInferInputs(request, Config());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), 2u);
  EXPECT_EQ((*tensors)[0].shape, (std::vector<int64_t>{2, 3, 2, 2}));
  EXPECT_FLOAT_EQ((*tensors)[0].data<float>()[23], 23.f);
  EXPECT_EQ((*tensors)[1].shape, (std::vector<int64_t>{2, 1}));
  EXPECT_FLOAT_EQ((*tensors)[1].data<float>()[1], 8.f);
  // Raw contents in the model's type are read in place, not copied.
  EXPECT_TRUE((*tensors)[0].borrowed());
  EXPECT_EQ((*tensors)[0].bytes.data(),
            reinterpret_cast<const std::byte*>(request.raw_input_contents(1).data()));
  EXPECT_EQ((*tensors)[1].bytes.data(),
            reinterpret_cast<const std::byte*>(request.raw_input_contents(0).data()));
}

TEST(InferCodecTest, DecodesTypedContentsAndConvertsLosslessTypes) {
  inference::ModelInferRequest request;
  AddInput(&request, "image", "UINT8", {1, 3, 2, 2});
  for (int i = 0; i < 12; ++i)
    request.mutable_inputs(0)->mutable_contents()->add_uint_contents(250 + i % 6);
  AddInput(&request, "scale", "FP16", {1, 1});
  // FP16 has no typed field: a typed request cannot carry it.
  auto tensors = DecodeInferInputs(request, Config());
  ASSERT_FALSE(tensors.ok());
  EXPECT_NE(tensors.status().message().find("'scale'"), std::string::npos) << tensors.status();

  // Raw FP16 (-2.5 = 0xC100) and raw INT16 convert to FP32.
  inference::ModelInferRequest raw;
  AddInput(&raw, "image", "INT16", {1, 3, 2, 2});
  AddInput(&raw, "scale", "FP16", {1, 1});
  std::vector<int16_t> image(12);
  for (int i = 0; i < 12; ++i) image[i] = static_cast<int16_t>(-1000 * i);
  raw.add_raw_input_contents(Raw(image));
  raw.add_raw_input_contents(Raw(std::vector<uint16_t>{0xC100}));
  tensors = DecodeInferInputs(raw, Config());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_EQ((*tensors)[0].type, engine::DataType::kFloat32);
  EXPECT_FLOAT_EQ((*tensors)[0].data<float>()[11], -11000.f);
  EXPECT_FLOAT_EQ((*tensors)[1].data<float>()[0], -2.5f);
  // Converted inputs own their bytes.
  EXPECT_FALSE((*tensors)[0].borrowed());
  EXPECT_FALSE((*tensors)[1].borrowed());

  inference::ModelInferRequest typed;
  AddInput(&typed, "image", "UINT8", {1, 3, 2, 2});
  for (int i = 0; i < 12; ++i)
    typed.mutable_inputs(0)->mutable_contents()->add_uint_contents(200 + i);
  AddInput(&typed, "scale", "FP32", {1, 1});
  typed.mutable_inputs(1)->mutable_contents()->add_fp32_contents(0.5f);
  tensors = DecodeInferInputs(typed, Config());
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_FLOAT_EQ((*tensors)[0].data<float>()[11], 211.f);
  EXPECT_FLOAT_EQ((*tensors)[1].data<float>()[0], 0.5f);
  // So do typed contents, even in the model's type.
  EXPECT_FALSE((*tensors)[1].borrowed());
}

TEST(InferCodecTest, RejectsBadRequestsNamingTheProblem) {
  struct Case {
    std::string what;
    std::function<void(inference::ModelInferRequest*)> mutate;
    std::string needle;
  };
  const std::vector<Case> kCases = {
      {"wrong byte size", [](auto* r) { r->mutable_raw_input_contents(1)->resize(10); },
       "'image': 10 bytes"},
      {"wrong shape", [](auto* r) { r->mutable_inputs(1)->set_shape(1, 4); },
       "'image': shape [2,4,2,2] does not match [-1,3,2,2]"},
      {"batch over max",
       [](auto* r) {
         r->mutable_inputs(0)->set_shape(0, 5);
         r->mutable_inputs(1)->set_shape(0, 5);
       },
       "batch size 5 is outside [1, 4]"},
      {"mismatched batch", [](auto* r) { r->mutable_inputs(0)->set_shape(0, 1); }, "differs from"},
      {"unknown input",
       [](auto* r) {
         AddInput(r, "extra", "FP32", {1});
         r->add_raw_input_contents("abcd");
       },
       "'extra' is not an input of model 'm' (its inputs: 'image', 'scale')"},
      {"missing input",
       [](auto* r) {
         r->mutable_inputs()->DeleteSubrange(0, 1);
         r->mutable_raw_input_contents()->DeleteSubrange(0, 1);
       },
       "'scale' is missing"},
      {"duplicate input", [](auto* r) { r->mutable_inputs(0)->set_name("image"); },
       "appears twice"},
      {"wrong datatype", [](auto* r) { r->mutable_inputs(1)->set_datatype("INT64"); },
       "datatype INT64 but the model expects FP32"},
      {"unknown datatype", [](auto* r) { r->mutable_inputs(1)->set_datatype("FLOAT"); },
       "datatype 'FLOAT'"},
      {"mixed raw and typed",
       [](auto* r) { r->mutable_inputs(0)->mutable_contents()->add_fp32_contents(1); },
       "use one or the other"},
      {"raw count", [](auto* r) { r->add_raw_input_contents("x"); }, "one entry per input"},
  };
  for (const Case& c : kCases) {
    inference::ModelInferRequest request = ValidRaw();
    c.mutate(&request);
    auto tensors = DecodeInferInputs(request, Config());
    ASSERT_FALSE(tensors.ok()) << c.what;
    EXPECT_EQ(tensors.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(tensors.status().message().find(c.needle), std::string::npos)
        << c.what << ": " << tensors.status().message();
  }
}

TEST(InferCodecTest, SelectsAndEncodesOutputs) {
  inference::ModelInferRequest request = ValidRaw();
  auto all = SelectOutputs(request, Config());
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(*all, (std::vector<int>{0, 1}));
  request.add_outputs()->set_name("boxes");
  auto some = SelectOutputs(request, Config());
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(*some, (std::vector<int>{1}));
  request.add_outputs()->set_name("masks");
  EXPECT_NE(SelectOutputs(request, Config()).status().message().find("'masks'"), std::string::npos);

  std::vector<engine::Tensor> outputs;
  outputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 5}));
  outputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 3}));
  outputs[1].data<float>()[5] = 42.f;
  inference::ModelInferResponse response;
  ASSERT_TRUE(
      EncodeInferResponse(ValidRaw(), Config(), "3", {1}, std::move(outputs), &response).ok());
  EXPECT_EQ(response.model_name(), "m");
  EXPECT_EQ(response.model_version(), "3");
  EXPECT_EQ(response.id(), "req-1");
  ASSERT_EQ(response.outputs_size(), 1);
  EXPECT_EQ(response.outputs(0).name(), "boxes");
  EXPECT_EQ(response.outputs(0).datatype(), "FP32");
  EXPECT_EQ(response.outputs(0).shape_size(), 2);
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  ASSERT_EQ(response.raw_output_contents(0).size(), 24u);
  float last = 0;
  std::memcpy(&last, response.raw_output_contents(0).data() + 20, 4);
  EXPECT_FLOAT_EQ(last, 42.f);
}

TEST(InferCodecTest, ParsesPriorityAndTimeout) {
  inference::ModelInferRequest request;
  auto params = ParseInferParameters(request);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->priority, 0u);
  EXPECT_EQ(params->timeout, absl::InfiniteDuration());
  (*request.mutable_parameters())["priority"].set_int64_param(2);
  (*request.mutable_parameters())["timeout"].set_int64_param(1500);
  (*request.mutable_parameters())["binary_data_output"].set_bool_param(true);
  params = ParseInferParameters(request);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->priority, 2u);
  EXPECT_EQ(params->timeout, absl::Microseconds(1500));
  (*request.mutable_parameters())["timeout"].set_string_param("soon");
  EXPECT_EQ(ParseInferParameters(request).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rectifier::service
