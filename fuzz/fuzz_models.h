// Fixtures shared by the fuzz targets: the default models' configs read from
// models/, and stand-in compiled models so the imaging and KServe paths run
// without compiling an ONNX model per process.
#ifndef RECTIFIER_FUZZ_FUZZ_MODELS_H_
#define RECTIFIER_FUZZ_FUZZ_MODELS_H_

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_config.pb.h"
#include "server/engine/compiled_model.h"
#include "server/repository/model_config.h"
#include "server/repository/model_repository.h"

namespace rectifier::fuzz {

// Stops the process for a broken contract (libFuzzer saves the input as a
// crash). Not for "the input was rejected": that is the normal outcome.
#define RECTIFIER_FUZZ_CHECK(cond)                                                            \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "%s:%d: fuzz contract violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// A tensor-only model config (infer_request and http_request): every wire
// datatype the KServe codec converts, optional inputs, a dynamic dim.
inline constexpr char kTensorsConfig[] = R"config(
  name: "tensors"
  max_batch_size: 8
  input { name: "x" data_type: TYPE_FP32 dims: [ -1 ] }
  input { name: "ids" data_type: TYPE_INT64 dims: [ 4 ] optional: true }
  input { name: "mask" data_type: TYPE_BOOL dims: [ -1 ] optional: true }
  input { name: "d" data_type: TYPE_FP64 dims: [ 2 ] optional: true }
  input { name: "u" data_type: TYPE_UINT8 dims: [ 3 ] optional: true }
  output { name: "y" data_type: TYPE_FP32 dims: [ -1 ] }
  output { name: "z" data_type: TYPE_INT64 dims: [ 1 ] }
)config";

// With RECTIFIER_FUZZ_VERBOSE set, prints why an input was refused (what
// replaying a corpus file says about it); silent otherwise.
inline void Report(const char* step, const absl::Status& status) {
  static const bool verbose = std::getenv("RECTIFIER_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "%s: %s\n", step, status.ToString().c_str());
}

// A CompiledModel that only has inputs and outputs: what BuildModelImaging,
// CompleteConfigFromModel and the KServe codec read. Never executed.
class ShapeOnlyModel : public engine::CompiledModel {
 public:
  ShapeOnlyModel(std::vector<engine::TensorInfo> inputs, std::vector<engine::TensorInfo> outputs,
                 int max_batch_size)
      : inputs_(std::move(inputs)), outputs_(std::move(outputs)), max_batch_(max_batch_size) {}
  const std::vector<engine::TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<engine::TensorInfo>& outputs() const override { return outputs_; }
  bool batchable() const override { return max_batch_ > 0; }
  int max_batch_size() const override { return max_batch_ > 0 ? max_batch_ : 1; }
  bool has_dynamic_dims() const override {
    for (const auto& in : inputs_) {
      for (size_t d = batchable() ? 1 : 0; d < in.shape.size(); ++d) {
        if (in.shape[d] < 0) return true;
      }
    }
    return false;
  }
  // Rank and static dimensions only; the batch against max_batch_size.
  absl::Status CheckInputShapes(const engine::InputShapes& shapes) const override {
    if (shapes.size() != inputs_.size()) return absl::InvalidArgumentError("input count");
    for (size_t i = 0; i < shapes.size(); ++i) {
      if (shapes[i].size() != inputs_[i].shape.size()) return absl::InvalidArgumentError("rank");
      for (size_t d = 0; d < shapes[i].size(); ++d) {
        const int64_t want = inputs_[i].shape[d];
        if (want >= 0 ? shapes[i][d] != want : shapes[i][d] < 1) {
          return absl::InvalidArgumentError("shape");
        }
      }
      if (batchable() && shapes[i][0] > max_batch_size())
        return absl::InvalidArgumentError("batch");
    }
    return absl::OkStatus();
  }
  // outputs() with every dynamic dimension taken as the first input's batch.
  absl::StatusOr<engine::InputShapes> OutputShapes(
      const engine::InputShapes& shapes) const override {
    if (absl::Status st = CheckInputShapes(shapes); !st.ok()) return st;
    const int64_t batch = !shapes.empty() && !shapes[0].empty() ? shapes[0][0] : 1;
    engine::InputShapes out;
    for (const auto& o : outputs_) {
      out.push_back(o.shape);
      for (auto& d : out.back()) d = d < 0 ? batch : d;
    }
    return out;
  }
  absl::StatusOr<std::string> DescribePlan(int) const override { return std::string(); }
  absl::StatusOr<std::string> DescribePlanForShapes(const engine::InputShapes&) const override {
    return std::string();
  }
  const engine::ActivationSummary& activation_summary() const override { return summary_; }
  std::vector<engine::ActivationLayerStats> activation_statistics() const override { return {}; }
  PlanCacheStats plan_cache_stats() const override { return {}; }

 private:
  std::vector<engine::TensorInfo> inputs_;
  std::vector<engine::TensorInfo> outputs_;
  int max_batch_;
  engine::ActivationSummary summary_;
};

// models/<name>/config.pbtxt parsed as the repository parses it; aborts when
// the file is missing or invalid (the fixture itself is broken then).
inline inference::ModelConfig LoadModelConfig(const std::string& name) {
  const std::string path = std::string(RECTIFIER_SOURCE_DIR) + "/models/" + name + "/config.pbtxt";
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  auto config = repository::ParseModelConfig(text.str(), path);
  if (!in || !config.ok()) {
    std::fprintf(stderr, "fuzz fixture: cannot load %s: %s\n", path.c_str(),
                 config.ok() ? "unreadable" : std::string(config.status().message()).c_str());
    std::abort();
  }
  config->set_name(name);
  return *config;
}

// FP32 inputs and outputs shaped as the config states them ([-1] + dims for
// a batching model), as the compiled default models report them.
inline std::shared_ptr<const engine::CompiledModel> ShapeOnlyModelFor(
    const inference::ModelConfig& config) {
  auto infos = [&](const auto& list) {
    std::vector<engine::TensorInfo> out;
    for (const auto& t : list) {
      engine::TensorInfo info;
      info.name = t.name();
      if (config.max_batch_size() > 0) info.shape.push_back(-1);
      info.shape.insert(info.shape.end(), t.dims().begin(), t.dims().end());
      out.push_back(std::move(info));
    }
    return out;
  };
  return std::make_shared<ShapeOnlyModel>(infos(config.input()), infos(config.output()),
                                          config.max_batch_size());
}

// A served version of `config` backed by a ShapeOnlyModel, with its imaging
// view built as a load builds it (no scheduler, no metrics, no labels).
inline std::shared_ptr<repository::ServedModel> ServedFor(const inference::ModelConfig& config) {
  auto served = std::make_shared<repository::ServedModel>();
  served->name = config.name();
  served->version = 1;
  served->config = config;
  served->model = ShapeOnlyModelFor(config);
  auto imaging = repository::BuildModelImaging(served->name, config, *served->model, {});
  served->imaging = imaging.ok() ? *std::move(imaging) : repository::ImagingView(imaging.status());
  return served;
}

}  // namespace rectifier::fuzz

#endif  // RECTIFIER_FUZZ_FUZZ_MODELS_H_
