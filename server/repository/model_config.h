// Model configuration (proto/model_config.proto): parsing config.pbtxt with
// errors that point at a line, validation, completion from the ONNX model,
// and conversion to scheduler options.
#ifndef RECTIFIER_SERVER_REPOSITORY_MODEL_CONFIG_H_
#define RECTIFIER_SERVER_REPOSITORY_MODEL_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "model_config.pb.h"
#include "server/engine/compiled_model.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::repository {

// Parses protobuf text format. Errors are INVALID_ARGUMENT
// "<filename>:<line>:<column>: <what>", e.g. an unknown field name.
absl::StatusOr<inference::ModelConfig> ParseModelConfig(const std::string& text,
                                                        const std::string& filename);

// Checks values the schema cannot express (negative sizes, preferred batch
// sizes above max_batch_size, unknown platform, ...). Messages name the field.
absl::Status ValidateModelConfig(const inference::ModelConfig& config);

// Fills what the config leaves out from the compiled model (inputs, outputs,
// data types, dims without the batch dimension, max_batch_size for a model
// with a dynamic batch dimension) and checks what it states against the
// model: names, types and dims must agree. `config->name()` must be set.
absl::Status CompleteConfigFromModel(const engine::CompiledModel& model,
                                     inference::ModelConfig* config);

// The scheduler's view of the dynamic_batching block.
scheduling::SchedulerOptions SchedulerOptionsFromConfig(const inference::ModelConfig& config,
                                                        const std::string& version);

// "FP32" for TYPE_FP32 (KServe datatype strings); "" for TYPE_INVALID.
const char* KServeDataType(inference::DataType type);
inference::DataType ConfigDataType(engine::DataType type);

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_MODEL_CONFIG_H_
