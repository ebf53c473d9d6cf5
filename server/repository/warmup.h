// Warmup runs before a model version takes traffic: compiles the per-batch
// plans and touches every buffer, so the first real request is not slow.
#ifndef RECTIFIER_SERVER_REPOSITORY_WARMUP_H_
#define RECTIFIER_SERVER_REPOSITORY_WARMUP_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model_config.pb.h"
#include "server/engine/compiled_model.h"

namespace rectifier::repository {

// One warmup execution: batch size and its inputs.
struct WarmupSample {
  std::string name;
  std::vector<engine::Tensor> inputs;
  int count = 1;
};

// Up to this max_batch_size the default warmup runs every batch size.
inline constexpr int kWarmEveryBatchUpTo = 16;

// The samples for `config`: its model_warmup entries (zero_data,
// random_data, input_data_file relative to <model_dir>/warmup/), or, if none,
// zeros at every batch size 1..max_batch_size when that is at most
// kWarmEveryBatchUpTo, else at 1, each preferred batch size and
// max_batch_size. Inputs with variable non-batch dims are skipped by the
// default rule (nothing sensible to invent) and are an error in an explicit
// entry.
absl::StatusOr<std::vector<WarmupSample>> WarmupSamples(const inference::ModelConfig& config,
                                                        const engine::CompiledModel& model,
                                                        const std::string& model_dir);

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_WARMUP_H_
