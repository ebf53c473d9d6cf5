#include "server/repository/model_config.h"

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/tensor.h"

namespace rectifier::repository {
namespace {

// Collects the first parse error with its position (lines and columns are
// 0-based in protobuf; we report them 1-based like compilers do).
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_.empty()) return;
    error_ = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

// Platforms and backends meaning "an ONNX model": ours, and Triton's
// spellings, so Triton configs load unchanged.
bool IsOnnxPlatform(const std::string& platform) {
  static const std::set<std::string> kNames = {
      "", "onnx", "onnxruntime_onnx", "onnxruntime", "rectifier", "rectifier_onnx"};
  return kNames.count(platform) > 0;
}

std::string DimsString(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

template <typename Tensor>
absl::Status CheckDims(const Tensor& tensor, const char* kind) {
  for (const int64_t d : tensor.dims()) {
    if (d < -1 || d == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          kind, " '", tensor.name(), "': dims ",
          DimsString({tensor.dims().begin(), tensor.dims().end()}), " must be positive or -1"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckQueuePolicy(const inference::ModelQueuePolicy& policy, const std::string& where) {
  if (policy.timeout_action() != inference::ModelQueuePolicy::REJECT &&
      policy.timeout_action() != inference::ModelQueuePolicy::DELAY) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".timeout_action is not REJECT or DELAY"));
  }
  return absl::OkStatus();
}

// Model shape without the batch dimension when the model batches.
std::vector<int64_t> ConfigDims(const engine::TensorInfo& info, bool batched) {
  std::vector<int64_t> dims(info.shape.begin() + (batched && !info.shape.empty() ? 1 : 0),
                            info.shape.end());
  return dims;
}

template <typename ConfigTensor>
absl::Status ReconcileTensors(const std::vector<engine::TensorInfo>& model_tensors, bool batched,
                              const char* kind,
                              google::protobuf::RepeatedPtrField<ConfigTensor>* config_tensors) {
  if (config_tensors->empty()) {
    for (const engine::TensorInfo& info : model_tensors) {
      ConfigTensor* tensor = config_tensors->Add();
      tensor->set_name(info.name);
      tensor->set_data_type(ConfigDataType(info.type));
      for (const int64_t d : ConfigDims(info, batched)) tensor->add_dims(d);
    }
    return absl::OkStatus();
  }
  for (ConfigTensor& tensor : *config_tensors) {
    const auto it =
        std::find_if(model_tensors.begin(), model_tensors.end(),
                     [&](const engine::TensorInfo& t) { return t.name == tensor.name(); });
    if (it == model_tensors.end()) {
      std::vector<std::string> names;
      names.reserve(model_tensors.size());
      for (const engine::TensorInfo& t : model_tensors) names.push_back(t.name);
      return absl::InvalidArgumentError(absl::StrCat(kind, " '", tensor.name(),
                                                     "' is not in the model (it has ",
                                                     absl::StrJoin(names, ", "), ")"));
    }
    const inference::DataType model_type = ConfigDataType(it->type);
    if (tensor.data_type() == inference::TYPE_INVALID) {
      tensor.set_data_type(model_type);
    } else if (tensor.data_type() != model_type) {
      return absl::InvalidArgumentError(absl::StrCat(
          kind, " '", tensor.name(), "': data_type ", inference::DataType_Name(tensor.data_type()),
          " but the model has ", inference::DataType_Name(model_type)));
    }
    const std::vector<int64_t> model_dims = ConfigDims(*it, batched);
    if (tensor.dims().empty()) {
      for (const int64_t d : model_dims) tensor.add_dims(d);
      continue;
    }
    const std::vector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
    bool match = !tensor.has_reshape() ? dims.size() == model_dims.size() : true;
    for (size_t i = 0; match && !tensor.has_reshape() && i < dims.size(); ++i) {
      match = dims[i] == model_dims[i] || model_dims[i] == -1 || dims[i] == -1;
    }
    if (!match) {
      return absl::InvalidArgumentError(absl::StrCat(kind, " '", tensor.name(), "': dims ",
                                                     DimsString(dims), " do not match the model's ",
                                                     DimsString(model_dims)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<inference::ModelConfig> ParseModelConfig(const std::string& text,
                                                        const std::string& filename) {
  inference::ModelConfig config;
  google::protobuf::TextFormat::Parser parser;
  FirstErrorCollector errors;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ":", errors.error()));
  }
  return config;
}

// Plans are per batch size today; more than this many would only hold memory.
constexpr uint32_t kMaxCachedPlans = 4096;

absl::Status ValidateModelConfig(const inference::ModelConfig& config) {
  if (!IsOnnxPlatform(config.platform())) {
    return absl::InvalidArgumentError(
        absl::StrCat("platform '", config.platform(),
                     "' is not supported (Rectifier serves ONNX models: use onnxruntime_onnx, "
                     "rectifier_onnx or leave it out)"));
  }
  if (!IsOnnxPlatform(config.backend())) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", config.backend(),
                                                   "' is not supported (use onnxruntime or "
                                                   "rectifier, or leave it out)"));
  }
  if (config.max_batch_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size is ", config.max_batch_size(), "; it must be >= 0"));
  }
  if (config.engine().max_cached_plans() > kMaxCachedPlans) {
    return absl::InvalidArgumentError(
        absl::StrCat("engine.max_cached_plans is ", config.engine().max_cached_plans(),
                     "; it must be in [0, ", kMaxCachedPlans, "] (0: the default, 64)"));
  }
  for (const auto& input : config.input()) {
    if (input.name().empty()) return absl::InvalidArgumentError("an input has no name");
    if (absl::Status s = CheckDims(input, "input"); !s.ok()) return s;
  }
  for (const auto& output : config.output()) {
    if (output.name().empty()) return absl::InvalidArgumentError("an output has no name");
    if (absl::Status s = CheckDims(output, "output"); !s.ok()) return s;
  }
  for (const auto& group : config.instance_group()) {
    if (group.count() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance_group.count is ", group.count(), "; it must be >= 0"));
    }
  }
  if (config.has_version_policy() && config.version_policy().has_latest() &&
      config.version_policy().latest().num_versions() == 0) {
    return absl::InvalidArgumentError("version_policy.latest.num_versions must be >= 1");
  }
  if (config.has_dynamic_batching()) {
    const auto& batching = config.dynamic_batching();
    for (const int size : batching.preferred_batch_size()) {
      if (size < 1 || size > std::max(config.max_batch_size(), 1)) {
        return absl::InvalidArgumentError(absl::StrCat("dynamic_batching.preferred_batch_size ",
                                                       size, " is outside [1, max_batch_size ",
                                                       config.max_batch_size(), "]"));
      }
    }
    if (batching.priority_levels() > 0 &&
        (batching.default_priority_level() < 1 ||
         batching.default_priority_level() > batching.priority_levels())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dynamic_batching.default_priority_level ", batching.default_priority_level(),
          " must be in [1, priority_levels ", batching.priority_levels(), "]"));
    }
    if (absl::Status s = CheckQueuePolicy(batching.default_queue_policy(),
                                          "dynamic_batching.default_queue_policy");
        !s.ok()) {
      return s;
    }
    for (const auto& [level, policy] : batching.priority_queue_policy()) {
      if (level < 1 || level > batching.priority_levels()) {
        return absl::InvalidArgumentError(
            absl::StrCat("dynamic_batching.priority_queue_policy level ", level, " is outside [1, ",
                         batching.priority_levels(), "]"));
      }
      if (absl::Status s = CheckQueuePolicy(
              policy, absl::StrCat("dynamic_batching.priority_queue_policy[", level, "]"));
          !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CompleteConfigFromModel(const engine::CompiledModel& model,
                                     inference::ModelConfig* config) {
  if (config->max_batch_size() > 0 && !model.batchable()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_batch_size is ", config->max_batch_size(),
                     " but the model's first dimension is not dynamic, so it cannot batch; set 0"));
  }
  // Triton's rule: a config without max_batch_size on a model whose batch
  // dimension is dynamic gets one derived from the model.
  if (config->max_batch_size() == 0 && model.batchable() && config->input().empty()) {
    config->set_max_batch_size(model.max_batch_size());
  }
  const bool batched = config->max_batch_size() > 0;
  if (absl::Status s = ReconcileTensors(model.inputs(), batched, "input", config->mutable_input());
      !s.ok()) {
    return s;
  }
  return ReconcileTensors(model.outputs(), batched, "output", config->mutable_output());
}

scheduling::SchedulerOptions SchedulerOptionsFromConfig(const inference::ModelConfig& config,
                                                        const std::string& version) {
  scheduling::SchedulerOptions options;
  options.model_name = config.name();
  options.model_version = version;
  options.batchable = config.max_batch_size() > 0;
  options.max_batch_size = std::max(config.max_batch_size(), 1);
  options.dynamic_batching = config.has_dynamic_batching();
  if (!config.has_dynamic_batching()) return options;
  const auto& batching = config.dynamic_batching();
  options.preferred_batch_sizes.assign(batching.preferred_batch_size().begin(),
                                       batching.preferred_batch_size().end());
  options.max_queue_delay = absl::Microseconds(batching.max_queue_delay_microseconds());
  options.preserve_ordering = batching.preserve_ordering();
  options.priority_levels = batching.priority_levels();
  options.default_priority_level = batching.default_priority_level();
  const auto convert = [](const inference::ModelQueuePolicy& p) {
    scheduling::QueuePolicy policy;
    policy.timeout_action = p.timeout_action() == inference::ModelQueuePolicy::DELAY
                                ? scheduling::QueuePolicy::TimeoutAction::kDelay
                                : scheduling::QueuePolicy::TimeoutAction::kReject;
    policy.default_timeout = absl::Microseconds(p.default_timeout_microseconds());
    policy.allow_timeout_override = p.allow_timeout_override();
    policy.max_queue_size = p.max_queue_size();
    return policy;
  };
  options.default_queue_policy = convert(batching.default_queue_policy());
  for (const auto& [level, policy] : batching.priority_queue_policy()) {
    options.priority_queue_policy[level] = convert(policy);
  }
  return options;
}

const char* KServeDataType(inference::DataType type) {
  switch (type) {
    case inference::TYPE_BOOL:
      return "BOOL";
    case inference::TYPE_UINT8:
      return "UINT8";
    case inference::TYPE_UINT16:
      return "UINT16";
    case inference::TYPE_UINT32:
      return "UINT32";
    case inference::TYPE_UINT64:
      return "UINT64";
    case inference::TYPE_INT8:
      return "INT8";
    case inference::TYPE_INT16:
      return "INT16";
    case inference::TYPE_INT32:
      return "INT32";
    case inference::TYPE_INT64:
      return "INT64";
    case inference::TYPE_FP16:
      return "FP16";
    case inference::TYPE_FP32:
      return "FP32";
    case inference::TYPE_FP64:
      return "FP64";
    case inference::TYPE_STRING:
      return "BYTES";
    case inference::TYPE_BF16:
      return "BF16";
    default:
      return "";
  }
}

// The data-type table (server/common/tensor.h) spells the config codes as
// numbers; they must be the generated enum's.
static_assert(inference::TYPE_BOOL == 1 && inference::TYPE_UINT8 == 2 &&
                  inference::TYPE_INT8 == 6 && inference::TYPE_INT32 == 8 &&
                  inference::TYPE_INT64 == 9 && inference::TYPE_FP32 == 11 &&
                  inference::TYPE_FP64 == 12,
              "model_config.proto DataType codes differ from server/common/tensor.cc");

inference::DataType ConfigDataType(engine::DataType type) {
  return static_cast<inference::DataType>(common::Traits(type).config);
}

}  // namespace rectifier::repository
