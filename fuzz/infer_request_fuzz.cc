// libFuzzer target: an untrusted serialized KServe ModelInferRequest, decoded
// as KServeService::ModelInfer does: parameters, then either the tensor
// codec (DecodeInferInputs, SelectOutputs, CheckOutputSharedMemory, and
// EncodeInferResponse over stand-in outputs) or, for BYTES inputs, the
// encoded images (SplitImageInput, PrepareImageBatch). model_name picks the
// model: the two default models or two tensor-only configs defined here.
// Client shared memory is on, with two regions of one real shared memory
// object: "fuzz" (4096 bytes) and "fuzz_tail" (its last 96 bytes).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "google/protobuf/stubs/logging.h"
#include "grpc_service.pb.h"
#include "server/common/tensor.h"
#include "server/service/image_input.h"
#include "server/service/image_pipeline.h"
#include "server/service/infer_codec.h"
#include "server/service/server_options.h"
#include "server/service/shared_memory.h"

namespace {

using rectifier::fuzz::LoadModelConfig;

// No batch dimension.
constexpr char kUnbatchedConfig[] = R"config(
  name: "unbatched"
  max_batch_size: 0
  input { name: "a" data_type: TYPE_INT32 dims: [ 2, 3 ] }
  input { name: "b" data_type: TYPE_INT8 dims: [ -1, 4 ] }
  output { name: "c" data_type: TYPE_FP32 dims: [ 2 ] }
)config";

struct Model {
  inference::ModelConfig config;
  std::shared_ptr<const rectifier::service::ModelImaging> imaging;  // null: tensors only
};

const std::map<std::string, Model>& Models() {
  static const auto* models = [] {
    auto* m = new std::map<std::string, Model>;
    for (const char* name : {"scan_classifier", "road_detector"}) {
      Model model;
      model.config = LoadModelConfig(name);
      const auto served = rectifier::fuzz::ServedFor(model.config);
      RECTIFIER_FUZZ_CHECK(served->imaging.ok());
      model.imaging = *served->imaging;
      (*m)[name] = std::move(model);
    }
    for (const char* text : {rectifier::fuzz::kTensorsConfig, kUnbatchedConfig}) {
      auto config = rectifier::repository::ParseModelConfig(text, "fuzz");
      RECTIFIER_FUZZ_CHECK(config.ok());
      (*m)[config->name()] = Model{*config, nullptr};
    }
    return m;
  }();
  return *models;
}

// The registry the server would have with --allow-client-shm. The object is
// unlinked at once: the registry holds its own descriptor.
const rectifier::service::SharedMemoryRegistry* SharedMemory() {
  static const auto* registry = [] {
    auto* r = new rectifier::service::SharedMemoryRegistry();
    const std::string key = "/rectifier_fuzz_" + std::to_string(::getpid());
    const int fd = ::shm_open(key.c_str(), O_CREAT | O_RDWR, 0600);
    RECTIFIER_FUZZ_CHECK(fd >= 0 && ::ftruncate(fd, 4096) == 0);
    std::string pattern(4096, '\0');
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 37);
    RECTIFIER_FUZZ_CHECK(::pwrite(fd, pattern.data(), pattern.size(), 0) == 4096);
    RECTIFIER_FUZZ_CHECK(r->Register("fuzz", key, 0, 4096).ok());
    RECTIFIER_FUZZ_CHECK(r->Register("fuzz_tail", key, 4000, 96).ok());
    ::shm_unlink(key.c_str());
    ::close(fd);
    return r;
  }();
  return registry;
}

// Each output of `config` as a small tensor of its type (what the engine
// would return), for the encoder.
std::vector<rectifier::engine::Tensor> StandInOutputs(const inference::ModelConfig& config) {
  std::vector<rectifier::engine::Tensor> outputs;
  for (const auto& output : config.output()) {
    outputs.push_back(rectifier::engine::Tensor::Zeros(
        rectifier::common::DataTypeFromConfigCode(output.data_type())
            .value_or(rectifier::engine::DataType::kFloat32),
        {1, 5}));
  }
  return outputs;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // protobuf logs every string field with invalid UTF-8 it parses: the
  // server's log would show that, the fuzzer's output only drowns in it.
  google::protobuf::SetLogHandler(
      [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  inference::ModelInferRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const auto& models = Models();
  auto it = models.find(request.model_name());
  const Model& model = it != models.end() ? it->second : models.at("tensors");
  const auto params = rectifier::service::ParseInferParameters(request);
  rectifier::fuzz::Report("ParseInferParameters", params.status());
  if (!params.ok()) return 0;
  if (rectifier::service::HasImageInput(request)) {
    if (model.imaging == nullptr) return 0;  // refused before decoding
    auto images = rectifier::service::SplitImageInput(request, model.config);
    rectifier::fuzz::Report("SplitImageInput", images.status());
    if (!images.ok()) return 0;
    RECTIFIER_FUZZ_CHECK(!images->empty());
    // The server's image memory budget at its default size.
    static auto* budget = new rectifier::service::ImageMemoryBudget(
        rectifier::service::ServerOptions{}.image_memory_mb << 20);
    auto batch = rectifier::service::PrepareImageBatch(*images, *model.imaging, budget,
                                                       absl::InfiniteFuture(), {});
    rectifier::fuzz::Report("PrepareImageBatch", batch.status());
    if (batch.ok()) {
      RECTIFIER_FUZZ_CHECK(batch->shape.size() == 4 &&
                           batch->shape[0] == static_cast<int64_t>(images->size()));
      RECTIFIER_FUZZ_CHECK(static_cast<int64_t>(batch->bytes.size()) == batch->num_elements() * 4);
    }
    return 0;
  }
  auto inputs = rectifier::service::DecodeInferInputs(request, model.config, SharedMemory());
  rectifier::fuzz::Report("DecodeInferInputs", inputs.status());
  if (inputs.ok()) {
    for (const auto& t : *inputs) {
      RECTIFIER_FUZZ_CHECK(t.bytes.size() == static_cast<size_t>(t.num_elements()) *
                                                 rectifier::engine::DataTypeSize(t.type));
    }
  }
  auto selected = rectifier::service::SelectOutputs(request, model.config);
  rectifier::fuzz::Report("SelectOutputs", selected.status());
  if (!selected.ok()) return 0;
  const absl::Status shm = rectifier::service::CheckOutputSharedMemory(request, SharedMemory());
  rectifier::fuzz::Report("CheckOutputSharedMemory", shm);
  if (!shm.ok()) return 0;
  inference::ModelInferResponse response;
  const absl::Status encoded = rectifier::service::EncodeInferResponse(
      request, model.config, "1", *selected, StandInOutputs(model.config), &response,
      SharedMemory());
  rectifier::fuzz::Report("EncodeInferResponse", encoded);
  // A failed encoding is answered with its status alone; a whole response
  // has one raw entry per output (empty for those in shared memory).
  if (encoded.ok()) {
    RECTIFIER_FUZZ_CHECK(response.outputs_size() == response.raw_output_contents_size());
  }
  return 0;
}
