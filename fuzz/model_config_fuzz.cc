// libFuzzer target: untrusted config.pbtxt text through the repository's load
// steps: ParseModelConfig, ValidateModelConfig, the scheduler options, and
// (against the default models' input/output shapes) CompleteConfigFromModel
// and the imaging blocks (BuildModelImaging).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_models.h"
#include "server/repository/model_imaging.h"
#include "server/repository/model_repository.h"

namespace {

using rectifier::fuzz::LoadModelConfig;
using rectifier::fuzz::ShapeOnlyModelFor;

// An NHWC detector ([N, 64, 64, 3] -> [N, 4 + 2, 100]), the layout the
// default models do not cover.
constexpr char kNhwcDetector[] = R"config(
  max_batch_size: 4
  input { name: "images" data_type: TYPE_FP32 dims: [ 64, 64, 3 ] }
  output { name: "boxes" data_type: TYPE_FP32 dims: [ 6, 100 ] }
)config";

struct Fixtures {
  // The models a fuzzed config is completed against: their shapes, as the
  // compiled models report them, not their configs.
  std::vector<std::shared_ptr<const rectifier::engine::CompiledModel>> models;
};

const Fixtures& GetFixtures() {
  static const Fixtures* fixtures = [] {
    auto* f = new Fixtures;
    for (const char* name : {"scan_classifier", "road_detector"}) {
      f->models.push_back(ShapeOnlyModelFor(LoadModelConfig(name)));
    }
    auto nhwc = rectifier::repository::ParseModelConfig(kNhwcDetector, "nhwc");
    RECTIFIER_FUZZ_CHECK(nhwc.ok());
    f->models.push_back(ShapeOnlyModelFor(*nhwc));
    return f;
  }();
  return *fixtures;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Fixtures& fixtures = GetFixtures();
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto config = rectifier::repository::ParseModelConfig(text, "config.pbtxt");
  rectifier::fuzz::Report("ParseModelConfig", config.status());
  if (!config.ok()) return 0;
  const absl::Status valid = rectifier::repository::ValidateModelConfig(*config);
  rectifier::fuzz::Report("ValidateModelConfig", valid);
  if (!valid.ok()) return 0;
  config->set_name("fuzz_model");
  const auto scheduler = rectifier::repository::SchedulerOptionsFromConfig(*config, "1");
  RECTIFIER_FUZZ_CHECK(scheduler.max_batch_size >= 1);
  // The engine's options from the config's parameters (conv_layout,
  // conv3x3_kernel, batch_split, ...) and activation block.
  const auto compile = rectifier::repository::CompileOptionsFromConfig(
      *config, rectifier::repository::RepositoryOptions{});
  rectifier::fuzz::Report("CompileOptionsFromConfig", compile.status());
  for (const auto& model : fixtures.models) {
    inference::ModelConfig completed = *config;
    const absl::Status complete =
        rectifier::repository::CompleteConfigFromModel(*model, &completed);
    rectifier::fuzz::Report("CompleteConfigFromModel", complete);
    if (!complete.ok()) continue;
    // The load-time imaging check and the vision API's view of the model.
    const auto imaging =
        rectifier::repository::BuildModelImaging(completed.name(), completed, *model, {});
    rectifier::fuzz::Report("BuildModelImaging (load)", imaging.status());
    if (imaging.ok()) rectifier::fuzz::Report("BuildModelImaging", imaging->status());
  }
  return 0;
}
