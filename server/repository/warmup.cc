#include "server/repository/warmup.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"

namespace rectifier::repository {
namespace {

// Full shape for `batch` from a model input's shape (-1 batch dim), or an
// error if another dim is variable.
absl::StatusOr<std::vector<int64_t>> ConcreteShape(const engine::TensorInfo& info, int batch,
                                                   bool batched) {
  std::vector<int64_t> shape = info.shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i == 0 && batched) {
      shape[0] = batch;
    } else if (shape[i] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("input '", info.name, "' has variable dims [",
                                                     absl::StrJoin(info.shape, ","), "]"));
    }
  }
  return shape;
}

absl::StatusOr<engine::Tensor> SampleInput(const engine::TensorInfo& info, int batch, bool batched,
                                           const inference::ModelWarmup::Input* spec,
                                           const std::string& model_dir, uint32_t seed) {
  engine::Tensor tensor;
  tensor.type = info.type;
  if (spec != nullptr && !spec->dims().empty()) {
    tensor.shape.assign(spec->dims().begin(), spec->dims().end());
    if (batched) tensor.shape.insert(tensor.shape.begin(), batch);
  } else {
    ASSIGN_OR_RETURN(tensor.shape, ConcreteShape(info, batch, batched));
  }
  tensor.bytes.assign(engine::NumElements(tensor.shape) * engine::DataTypeSize(tensor.type),
                      std::byte{0});
  if (spec == nullptr || spec->zero_data()) return tensor;
  if (spec->random_data()) {
    std::mt19937 rng(seed);
    if (tensor.type == engine::DataType::kFloat32) {
      std::uniform_real_distribution<float> dist(-1.f, 1.f);
      float* data = tensor.data<float>();
      for (int64_t i = 0; i < tensor.num_elements(); ++i) data[i] = dist(rng);
    } else {
      for (std::byte& b : tensor.bytes) b = static_cast<std::byte>(rng() & 0x7f);
    }
    return tensor;
  }
  if (!spec->input_data_file().empty()) {
    const std::filesystem::path path =
        std::filesystem::path(model_dir) / "warmup" / spec->input_data_file();
    std::ifstream in(path, std::ios::binary);
    std::ostringstream data;
    data << in.rdbuf();
    const std::string bytes = data.str();
    if (!in || bytes.size() != tensor.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("warmup file ", path.string(), " holds ",
                                                     bytes.size(), " bytes; input '", info.name,
                                                     "' needs ", tensor.bytes.size()));
    }
    std::memcpy(tensor.bytes.data(), bytes.data(), bytes.size());
  }
  return tensor;
}

}  // namespace

absl::StatusOr<std::vector<WarmupSample>> WarmupSamples(const inference::ModelConfig& config,
                                                        const engine::CompiledModel& model,
                                                        const std::string& model_dir) {
  const bool batched = config.max_batch_size() > 0;
  std::vector<WarmupSample> samples;
  if (!config.model_warmup().empty()) {
    uint32_t seed = 1;
    for (const auto& warmup : config.model_warmup()) {
      WarmupSample sample;
      sample.name = warmup.name();
      sample.count = std::max<int>(1, warmup.count());
      const int batch = std::max<int>(1, warmup.batch_size());
      for (const engine::TensorInfo& info : model.inputs()) {
        const auto it = warmup.inputs().find(info.name);
        if (it == warmup.inputs().end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("model_warmup '", warmup.name(), "' has no input '", info.name, "'"));
        }
        ASSIGN_OR_RETURN(engine::Tensor tensor,
                         SampleInput(info, batch, batched, &it->second, model_dir, seed++));
        sample.inputs.push_back(std::move(tensor));
      }
      samples.push_back(std::move(sample));
    }
    return samples;
  }
  // Every batch size the dynamic batcher may form has its plan compiled
  // here, so no request waits for a compile: all of 1..max_batch_size up to
  // kWarmEveryBatchUpTo (a batcher without queue delay forms any size),
  // beyond that 1, the preferred sizes and the maximum.
  // Zeros are no sample for inputs whose values select the plan (a zero
  // Resize scale is an error); such a model compiles per call.
  if (model.has_value_inputs()) return samples;
  std::set<int> sizes = {1};
  const int max_batch = batched ? config.max_batch_size() : 1;
  if (max_batch <= kWarmEveryBatchUpTo) {
    for (int b = 1; b <= max_batch; ++b) sizes.insert(b);
  } else {
    sizes.insert(max_batch);
    for (const int b : config.dynamic_batching().preferred_batch_size()) {
      if (b >= 1 && b <= max_batch) sizes.insert(b);
    }
  }
  for (const int batch : sizes) {
    WarmupSample sample;
    sample.name = absl::StrCat("default batch ", batch);
    for (const engine::TensorInfo& info : model.inputs()) {
      auto tensor = SampleInput(info, batch, batched, nullptr, model_dir, 0);
      if (!tensor.ok()) return std::vector<WarmupSample>();  // variable dims: nothing to invent
      sample.inputs.push_back(std::move(tensor).value());
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace rectifier::repository
