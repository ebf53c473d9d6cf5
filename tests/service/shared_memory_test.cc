// Triton's system shared memory extension: the region registry against real
// POSIX shared memory objects, and ModelInfer inputs and outputs passed
// through regions (infer_codec.h).
#include "server/service/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/service/image_input.h"
#include "server/service/infer_codec.h"

namespace rectifier::service {
namespace {

// A shared memory object of `bytes` bytes, unlinked at the end of the test.
class ShmObject {
 public:
  explicit ShmObject(size_t bytes)
      : key_(absl::StrCat("/rectifier_test_", ::getpid(), "_", counter_++)) {
    fd_ = ::shm_open(key_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    EXPECT_GE(fd_, 0) << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(bytes)), 0);
  }
  ~ShmObject() {
    ::close(fd_);
    ::shm_unlink(key_.c_str());
  }
  const std::string& key() const { return key_; }
  void Write(size_t offset, const void* data, size_t size) {
    ASSERT_EQ(::pwrite(fd_, data, size, static_cast<off_t>(offset)), static_cast<ssize_t>(size));
  }
  void ReadBack(size_t offset, void* data, size_t size) {
    ASSERT_EQ(::pread(fd_, data, size, static_cast<off_t>(offset)), static_cast<ssize_t>(size));
  }
  void Resize(size_t bytes) { ASSERT_EQ(::ftruncate(fd_, static_cast<off_t>(bytes)), 0); }

 private:
  static inline int counter_ = 0;
  std::string key_;
  int fd_ = -1;
};

TEST(SharedMemoryRegistryTest, RegisterStatusUnregister) {
  ShmObject object(4096);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("in", object.key(), 1024, 2048).ok());
  inference::SystemSharedMemoryStatusResponse status;
  ASSERT_TRUE(registry.Status("", &status).ok());
  ASSERT_EQ(status.regions().size(), 1u);
  const auto& region = status.regions().at("in");
  EXPECT_EQ(region.name(), "in");
  EXPECT_EQ(region.key(), object.key());
  EXPECT_EQ(region.offset(), 1024u);
  EXPECT_EQ(region.byte_size(), 2048u);
  EXPECT_EQ(registry.Register("in", object.key(), 0, 16).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Status("other", &status).code(), absl::StatusCode::kNotFound);
  registry.Unregister("in");
  registry.Unregister("in");  // a no-op, as in Triton
  EXPECT_FALSE(registry.Find("in").ok());
  ASSERT_TRUE(registry.Register("a", object.key(), 0, 16).ok());
  ASSERT_TRUE(registry.Register("b", object.key(), 16, 16).ok());
  registry.Unregister("");
  inference::SystemSharedMemoryStatusResponse none;
  ASSERT_TRUE(registry.Status("", &none).ok());
  EXPECT_TRUE(none.regions().empty());
}

TEST(SharedMemoryRegistryTest, RefusesBadRegistrationsNamingTheProblem) {
  ShmObject object(1024);
  SharedMemoryRegistry registry(/*max_regions=*/2);
  auto expect = [&](const std::string& name, const std::string& key, uint64_t offset, uint64_t size,
                    absl::StatusCode code, const std::string& says) {
    const absl::Status s = registry.Register(name, key, offset, size);
    EXPECT_EQ(s.code(), code) << name << " " << key << ": " << s;
    EXPECT_TRUE(absl::StrContains(s.message(), says)) << s;
  };
  expect("", object.key(), 0, 8, absl::StatusCode::kInvalidArgument, "name");
  expect("r", "dir/file", 0, 8, absl::StatusCode::kInvalidArgument, "is not '/'");
  expect("r", "/../etc/passwd", 0, 8, absl::StatusCode::kInvalidArgument, "is not '/'");
  expect("r", "/..", 0, 8, absl::StatusCode::kInvalidArgument, "is not '/'");
  expect("r", "/rectifier_test_missing_object", 0, 8, absl::StatusCode::kNotFound,
         "rectifier_test_missing_object");
  expect("r", object.key(), 0, 0, absl::StatusCode::kInvalidArgument, "byte_size is 0");
  expect("r", object.key(), 1000, 100, absl::StatusCode::kInvalidArgument, "of 1024 bytes");
  expect("r", object.key(), ~uint64_t{0}, 2, absl::StatusCode::kInvalidArgument, "overflows");
  ASSERT_TRUE(registry.Register("r1", object.key(), 0, 8).ok());
  ASSERT_TRUE(registry.Register("r2", object.key(), 0, 8).ok());
  expect("r3", object.key(), 0, 8, absl::StatusCode::kResourceExhausted, "2 shared memory");
}

TEST(SharedMemoryRegistryTest, ReadsAndWritesWithinTheRegionOnly) {
  ShmObject object(256);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 64, 128).ok());
  auto region = registry.Find("r");
  ASSERT_TRUE(region.ok());
  const std::string text = "rectifier";
  ASSERT_TRUE((*region)->Write(10, text.size(), text.data()).ok());
  std::string back(text.size(), '\0');
  object.ReadBack(74, back.data(), back.size());
  EXPECT_EQ(back, text);
  std::string read(text.size(), '\0');
  ASSERT_TRUE((*region)->Read(10, read.size(), read.data()).ok());
  EXPECT_EQ(read, text);
  char byte = 0;
  EXPECT_EQ((*region)->Read(128, 1, &byte).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*region)->Write(120, 9, text.data()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*region)->Read(~uint64_t{0}, 2, &byte).code(), absl::StatusCode::kInvalidArgument);
}

// A client that shrinks its object after registering it gets errors, and
// the server neither crashes nor grows the object back.
TEST(SharedMemoryRegistryTest, AShrunkObjectIsAnErrorNotACrash) {
  ShmObject object(4096);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 0, 4096).ok());
  auto region = registry.Find("r");
  ASSERT_TRUE(region.ok());
  object.Resize(100);
  std::vector<char> buffer(4096);
  const absl::Status read = (*region)->Read(0, buffer.size(), buffer.data());
  EXPECT_EQ(read.code(), absl::StatusCode::kFailedPrecondition) << read;
  EXPECT_TRUE(absl::StrContains(read.message(), "shrunk")) << read;
  const absl::Status write = (*region)->Write(0, buffer.size(), buffer.data());
  EXPECT_EQ(write.code(), absl::StatusCode::kFailedPrecondition) << write;
}

// A region in use stays readable after Unregister until its last user is done.
TEST(SharedMemoryRegistryTest, ARegionInUseOutlivesItsUnregister) {
  ShmObject object(64);
  const std::string text = "still here";
  object.Write(0, text.data(), text.size());
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 0, 64).ok());
  auto region = registry.Find("r");
  ASSERT_TRUE(region.ok());
  registry.Unregister("r");
  std::string read(text.size(), '\0');
  ASSERT_TRUE((*region)->Read(0, read.size(), read.data()).ok());
  EXPECT_EQ(read, text);
}

TEST(SharedMemoryParametersTest, ParsesAndRefusesHalfSpecifiedRegions) {
  google::protobuf::Map<std::string, inference::InferParameter> params;
  auto none = ParseSharedMemoryParameters(params, "input 'x'");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  params["shared_memory_region"].set_string_param("r");
  EXPECT_TRUE(absl::StrContains(ParseSharedMemoryParameters(params, "input 'x'").status().message(),
                                "without shared_memory_byte_size"));
  params["shared_memory_byte_size"].set_int64_param(48);
  params["shared_memory_offset"].set_uint64_param(16);
  auto ref = ParseSharedMemoryParameters(params, "input 'x'");
  ASSERT_TRUE(ref.ok() && ref->has_value());
  EXPECT_EQ((*ref)->region, "r");
  EXPECT_EQ((*ref)->byte_size, 48u);
  EXPECT_EQ((*ref)->offset, 16u);
  params["shared_memory_offset"].set_int64_param(-1);
  EXPECT_TRUE(absl::StrContains(ParseSharedMemoryParameters(params, "input 'x'").status().message(),
                                "negative"));
  params["shared_memory_offset"].set_string_param("0");
  EXPECT_TRUE(absl::StrContains(ParseSharedMemoryParameters(params, "input 'x'").status().message(),
                                "must be an integer"));
  google::protobuf::Map<std::string, inference::InferParameter> size_only;
  size_only["shared_memory_byte_size"].set_int64_param(4);
  EXPECT_FALSE(ParseSharedMemoryParameters(size_only, "input 'x'").ok());
}

inference::ModelConfig OneInputConfig() {
  inference::ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(4);
  auto* x = config.add_input();
  x->set_name("x");
  x->set_data_type(inference::TYPE_FP32);
  x->add_dims(6);
  auto* y = config.add_output();
  y->set_name("y");
  y->set_data_type(inference::TYPE_FP32);
  y->add_dims(3);
  return config;
}

void SetShm(google::protobuf::Map<std::string, inference::InferParameter>* params,
            const std::string& region, int64_t offset, int64_t size) {
  (*params)["shared_memory_region"].set_string_param(region);
  (*params)["shared_memory_offset"].set_int64_param(offset);
  (*params)["shared_memory_byte_size"].set_int64_param(size);
}

// [2, 6] FP32 input at offset 64 of region "r".
inference::ModelInferRequest ShmRequest() {
  inference::ModelInferRequest request;
  request.set_model_name("m");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  input->add_shape(2);
  input->add_shape(6);
  SetShm(input->mutable_parameters(), "r", 64, 48);
  return request;
}

TEST(SharedMemoryInferTest, InputsComeFromTheRegion) {
  ShmObject object(1024);
  std::vector<float> values(12);
  for (int i = 0; i < 12; ++i) values[i] = 0.5f * static_cast<float>(i);
  object.Write(128 + 64, values.data(), 48);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 128, 512).ok());
  const inference::ModelInferRequest request = ShmRequest();
  auto tensors = DecodeInferInputs(request, OneInputConfig(), &registry);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), 1u);
  EXPECT_EQ((*tensors)[0].shape, (std::vector<int64_t>{2, 6}));
  for (int i = 0; i < 12; ++i) EXPECT_FLOAT_EQ((*tensors)[0].data<float>()[i], values[i]);
  // Copied out: the client may write the region again while the request runs.
  EXPECT_FALSE((*tensors)[0].borrowed());
}

TEST(SharedMemoryInferTest, BadInputReferencesAreInvalidArgumentNamingTheInput) {
  ShmObject object(1024);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 0, 100).ok());
  auto expect = [&](const inference::ModelInferRequest& request, const SharedMemoryRegistry* shm,
                    const std::string& says) {
    auto got = DecodeInferInputs(request, OneInputConfig(), shm);
    ASSERT_FALSE(got.ok()) << says;
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << got.status();
    EXPECT_TRUE(absl::StrContains(got.status().message(), "input 'x'")) << got.status();
    EXPECT_TRUE(absl::StrContains(got.status().message(), says)) << got.status();
  };
  expect(ShmRequest(), nullptr, "--allow-client-shm");
  expect(ShmRequest(), &registry, "leave shared memory region 'r' of 100 bytes");
  inference::ModelInferRequest unknown = ShmRequest();
  SetShm(unknown.mutable_inputs(0)->mutable_parameters(), "nope", 0, 48);
  expect(unknown, &registry, "no shared memory region 'nope'");
  inference::ModelInferRequest wrong_size = ShmRequest();
  SetShm(wrong_size.mutable_inputs(0)->mutable_parameters(), "r", 0, 40);
  expect(wrong_size, &registry, "shared_memory_byte_size 40");
  inference::ModelInferRequest both = ShmRequest();
  SetShm(both.mutable_inputs(0)->mutable_parameters(), "r", 0, 48);
  for (int i = 0; i < 12; ++i) both.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
  expect(both, &registry, "has contents and a shared_memory_region");
}

// Triton's clients send raw entries only for the inputs not in shared
// memory; one entry per input (empty for the shared one) works too.
TEST(SharedMemoryInferTest, RawEntriesPairWithTheInputsNotInSharedMemory) {
  ShmObject object(1024);
  std::vector<float> values(12, 1.5f);
  object.Write(64, values.data(), 48);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key(), 0, 1024).ok());
  inference::ModelConfig config = OneInputConfig();
  auto* z = config.add_input();
  z->set_name("z");
  z->set_data_type(inference::TYPE_FP32);
  z->add_dims(1);
  inference::ModelInferRequest request = ShmRequest();
  auto* second = request.add_inputs();
  second->set_name("z");
  second->set_datatype("FP32");
  second->add_shape(2);
  second->add_shape(1);
  const std::vector<float> zs = {7.f, 8.f};
  request.add_raw_input_contents(reinterpret_cast<const char*>(zs.data()), 8);
  auto tensors = DecodeInferInputs(request, config, &registry);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_FLOAT_EQ((*tensors)[0].data<float>()[11], 1.5f);
  EXPECT_FLOAT_EQ((*tensors)[1].data<float>()[1], 8.f);
  // One entry per input, the shared one empty.
  inference::ModelInferRequest padded = request;
  padded.clear_raw_input_contents();
  padded.add_raw_input_contents();
  padded.add_raw_input_contents(reinterpret_cast<const char*>(zs.data()), 8);
  tensors = DecodeInferInputs(padded, config, &registry);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  EXPECT_FLOAT_EQ((*tensors)[1].data<float>()[0], 7.f);
  // Three entries for two inputs: the counts are named.
  inference::ModelInferRequest extra = padded;
  extra.add_raw_input_contents("x");
  const auto refused = DecodeInferInputs(extra, config, &registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "3 raw_input_contents for 2 inputs (1 in shared memory)"))
      << refused.status();
}

// A request of a few bytes may not make the server read more from shared
// memory than a request could carry itself.
TEST(SharedMemoryInferTest, InputsAreBoundedLikeRequestBytes) {
  ShmObject object(1024);
  SharedMemoryRegistry registry(SharedMemoryRegistry::kDefaultMaxRegions, /*max_input_bytes=*/40);
  ASSERT_TRUE(registry.Register("r", object.key(), 0, 1024).ok());
  const inference::ModelInferRequest request = ShmRequest();
  const auto refused = DecodeInferInputs(request, OneInputConfig(), &registry);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                "48 bytes in shared memory, over the server's limit of 40"))
      << refused.status();
}

TEST(SharedMemoryRegistryTest, KeysWithoutTheLeadingSlashAreTaken) {
  ShmObject object(64);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("r", object.key().substr(1), 0, 64).ok());
  inference::SystemSharedMemoryStatusResponse status;
  ASSERT_TRUE(registry.Status("r", &status).ok());
  EXPECT_EQ(status.regions().at("r").key(), object.key());
}

TEST(SharedMemoryInferTest, EncodedImagesCannotComeThroughSharedMemory) {
  inference::ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(2);
  auto* image = config.add_input();
  image->set_name("image");
  image->set_data_type(inference::TYPE_FP32);
  for (int d : {3, 8, 8}) image->add_dims(d);
  inference::ModelInferRequest request;
  auto* input = request.add_inputs();
  input->set_name("image");
  input->set_datatype("BYTES");
  input->add_shape(1);
  SetShm(input->mutable_parameters(), "r", 0, 100);
  const auto images = SplitImageInput(request, config);
  ASSERT_FALSE(images.ok());
  EXPECT_TRUE(absl::StrContains(images.status().message(),
                                "encoded images cannot come through shared memory"))
      << images.status();
}

TEST(SharedMemoryInferTest, OutputsGoToTheRegion) {
  ShmObject object(256);
  SharedMemoryRegistry registry;
  ASSERT_TRUE(registry.Register("out", object.key(), 32, 64).ok());
  inference::ModelInferRequest request = ShmRequest();
  auto* wanted = request.add_outputs();
  wanted->set_name("y");
  SetShm(wanted->mutable_parameters(), "out", 8, 32);
  ASSERT_TRUE(CheckOutputSharedMemory(request, &registry).ok());
  EXPECT_FALSE(CheckOutputSharedMemory(request, nullptr).ok());
  std::vector<engine::Tensor> outputs;
  outputs.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 3}));
  for (int i = 0; i < 6; ++i) outputs[0].data<float>()[i] = 10.f + static_cast<float>(i);
  inference::ModelInferResponse response;
  ASSERT_TRUE(EncodeInferResponse(request, OneInputConfig(), "1", {0}, std::move(outputs),
                                  &response, &registry)
                  .ok());
  ASSERT_EQ(response.outputs_size(), 1);
  ASSERT_EQ(response.raw_output_contents_size(), 1);
  EXPECT_TRUE(response.raw_output_contents(0).empty());
  const auto& params = response.outputs(0).parameters();
  EXPECT_EQ(params.at("shared_memory_region").string_param(), "out");
  EXPECT_EQ(params.at("shared_memory_byte_size").int64_param(), 24);
  std::vector<float> back(6);
  object.ReadBack(32 + 8, back.data(), 24);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(back[i], 10.f + static_cast<float>(i));

  // Too small for the output: refused before compute when the range leaves
  // the region, after it when the output outgrows the byte size asked for.
  SetShm(wanted->mutable_parameters(), "out", 40, 32);
  EXPECT_TRUE(absl::StrContains(CheckOutputSharedMemory(request, &registry).message(),
                                "requested output 'y'"));
  SetShm(wanted->mutable_parameters(), "out", 0, 16);
  std::vector<engine::Tensor> again;
  again.push_back(engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 3}));
  inference::ModelInferResponse small;
  const absl::Status s =
      EncodeInferResponse(request, OneInputConfig(), "1", {0}, std::move(again), &small, &registry);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "more than its shared_memory_byte_size 16")) << s;
}

}  // namespace
}  // namespace rectifier::service
