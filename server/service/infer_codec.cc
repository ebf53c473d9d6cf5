#include "server/service/infer_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/shape_math.h"
#include "server/common/tensor.h"
#include "server/repository/model_config.h"

namespace rectifier::service {
namespace {

// No request carries more than gRPC's largest message (2 GiB), so a shape
// that needs more bytes is refused before any arithmetic trusts it.
constexpr int64_t kMaxInputBytes = int64_t{1} << 31;

using common::InputTensor;
using engine::DataType;
using engine::Tensor;

// Element sizes of the wire datatypes; 0 for unknown or BYTES.
size_t WireSize(const std::string& datatype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1},   {"UINT8", 1}, {"INT8", 1},   {"UINT16", 2}, {"INT16", 2},
      {"FP16", 2},   {"BF16", 2},  {"UINT32", 4}, {"INT32", 4},  {"FP32", 4},
      {"UINT64", 8}, {"INT64", 8}, {"FP64", 8}};
  const auto it = kSizes.find(datatype);
  return it == kSizes.end() ? 0 : it->second;
}

// Converts `count` wire elements at `src` of `datatype` into float32.
// REQUIRES: the caller checked the datatype converts losslessly.
void ToFloat(const std::string& datatype, const std::byte* src, int64_t count, float* dst) {
  auto convert = [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < count; ++i) {
      T v;
      std::memcpy(&v, src + i * sizeof(T), sizeof(T));
      dst[i] = static_cast<float>(v);
    }
  };
  // An empty tensor has no buffers (null pointers); memcpy must not see them.
  if (count <= 0) return;
  if (datatype == "FP32") {
    std::memcpy(dst, src, count * sizeof(float));
  } else if (datatype == "UINT8") {
    convert(uint8_t{});
  } else if (datatype == "INT8") {
    convert(int8_t{});
  } else if (datatype == "UINT16") {
    convert(uint16_t{});
  } else if (datatype == "INT16") {
    convert(int16_t{});
  } else if (datatype == "FP64") {
    convert(double{});
  } else if (datatype == "FP16") {
    for (int64_t i = 0; i < count; ++i) {
      uint16_t h;
      std::memcpy(&h, src + i * 2, 2);
      dst[i] = HalfToFloat(h);
    }
  }
}

// Wire types accepted for an FP32 model input: every value is exactly
// representable (FP64 is narrowed, as Triton clients expect for FP32 models).
bool ConvertsToFloat(const std::string& datatype) {
  static const std::set<std::string> kOk = {"FP32", "FP16",   "FP64", "UINT8",
                                            "INT8", "UINT16", "INT16"};
  return kOk.count(datatype) > 0;
}

// The engine type of a config input type (the data-type table); types the
// engine does not compute in (FP16, ...) arrive converted to float32.
DataType EngineType(inference::DataType type) {
  return common::DataTypeFromConfigCode(type).value_or(DataType::kFloat32);
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Bytes of the typed contents field matching `datatype`, serialized in
// native (little-endian) layout; sets *count to the number of elements.
absl::StatusOr<std::string> TypedBytes(const inference::InferTensorContents& c,
                                       const std::string& datatype, int64_t* count) {
  std::string bytes;
  auto take = [&](const auto& field, auto tag) {
    using T = decltype(tag);
    *count = field.size();
    bytes.resize(field.size() * sizeof(T));
    for (int i = 0; i < field.size(); ++i) {
      const T v = static_cast<T>(field.Get(i));
      std::memcpy(bytes.data() + i * sizeof(T), &v, sizeof(T));
    }
  };
  if (datatype == "FP32")
    take(c.fp32_contents(), float{});
  else if (datatype == "FP64")
    take(c.fp64_contents(), double{});
  else if (datatype == "UINT8")
    take(c.uint_contents(), uint8_t{});
  else if (datatype == "UINT16")
    take(c.uint_contents(), uint16_t{});
  else if (datatype == "INT8")
    take(c.int_contents(), int8_t{});
  else if (datatype == "INT16")
    take(c.int_contents(), int16_t{});
  else if (datatype == "INT32")
    take(c.int_contents(), int32_t{});
  else if (datatype == "INT64")
    take(c.int64_contents(), int64_t{});
  else if (datatype == "BOOL")
    take(c.bool_contents(), uint8_t{});
  else {
    return absl::InvalidArgumentError(
        absl::StrCat("datatype ", datatype, " has no typed contents field; send raw contents"));
  }
  return bytes;
}

bool HasTypedContents(const inference::InferTensorContents& c) {
  return c.bool_contents_size() || c.int_contents_size() || c.int64_contents_size() ||
         c.uint_contents_size() || c.uint64_contents_size() || c.fp32_contents_size() ||
         c.fp64_contents_size() || c.bytes_contents_size();
}

}  // namespace

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float value;
  if (exponent == 0) {
    value = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    value = mantissa ? std::nanf("") : INFINITY;
  } else {
    value = std::ldexp(static_cast<float>(mantissa | 0x400), static_cast<int>(exponent) - 25);
  }
  return sign ? -value : value;
}

namespace {

bool InSharedMemory(const inference::ModelInferRequest::InferInputTensor& input) {
  return input.parameters().count("shared_memory_region") > 0;
}

// The raw_input_contents entry of each input (-1: none). One entry per
// input, or, as Triton's clients send them, one per input not in shared
// memory, in order.
absl::StatusOr<std::vector<int>> RawEntries(const inference::ModelInferRequest& request) {
  std::vector<int> entries(static_cast<size_t>(request.inputs_size()), -1);
  const int raw = request.raw_input_contents_size();
  if (raw == 0) return entries;
  int shared = 0;
  for (const auto& input : request.inputs()) shared += InSharedMemory(input) ? 1 : 0;
  if (raw == request.inputs_size()) {
    for (int i = 0; i < raw; ++i) entries[i] = i;
    return entries;
  }
  if (raw != request.inputs_size() - shared) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request has ", raw, " raw_input_contents for ", request.inputs_size(), " inputs (", shared,
        " in shared memory); raw contents need one entry per input, or one per input "
        "not in shared memory"));
  }
  for (int i = 0, next = 0; i < request.inputs_size(); ++i) {
    if (!InSharedMemory(request.inputs(i))) entries[i] = next++;
  }
  return entries;
}

// Request inputs by name (index into request.inputs()), after the checks
// that need no model input: raw contents never mixed with typed contents, no
// name twice, every name an input of the model.
absl::StatusOr<std::map<std::string, int>> IndexRequestInputs(
    const inference::ModelInferRequest& request, const inference::ModelConfig& config, bool raw) {
  std::map<std::string, int> by_name;
  for (int i = 0; i < request.inputs_size(); ++i) {
    const auto& input = request.inputs(i);
    if (raw && HasTypedContents(input.contents())) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", input.name(),
                       "' has typed contents in a request with raw_input_contents; "
                       "use one or the other"));
    }
    if (!by_name.emplace(input.name(), i).second) {
      return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "' appears twice"));
    }
    const bool known = std::any_of(config.input().begin(), config.input().end(),
                                   [&](const auto& in) { return in.name() == input.name(); });
    if (!known) {
      std::vector<std::string> names;
      for (const auto& in : config.input()) names.push_back(absl::StrCat("'", in.name(), "'"));
      return absl::InvalidArgumentError(
          absl::StrCat("input '", input.name(), "' is not an input of model '", config.name(),
                       "' (its inputs: ", absl::StrJoin(names, ", "), ")"));
    }
  }
  return by_name;
}

// Shape: [batch] + dims for a batching model, dims otherwise; -1 matches
// any. The batch must be within [1, max_batch_size] and equal to `*batch`
// (-1: the first input sets it).
absl::Status CheckInputShape(const inference::ModelInferRequest::InferInputTensor& input,
                             const std::vector<int64_t>& shape,
                             const inference::ModelInput& expected,
                             const inference::ModelConfig& config, int64_t* batch) {
  const bool batched = config.max_batch_size() > 0;
  std::vector<int64_t> dims(expected.dims().begin(), expected.dims().end());
  if (batched) dims.insert(dims.begin(), -1);
  bool match = shape.size() == dims.size();
  for (size_t d = 0; match && d < dims.size(); ++d) {
    match = shape[d] >= 0 && (dims[d] == -1 || dims[d] == shape[d]);
  }
  if (!match) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': shape ",
                                                   ShapeString(shape), " does not match ",
                                                   ShapeString(dims)));
  }
  if (!batched) return absl::OkStatus();
  if (shape[0] < 1 || shape[0] > config.max_batch_size()) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': batch size ",
                                                   shape[0], " is outside [1, ",
                                                   config.max_batch_size(), "]"));
  }
  if (*batch >= 0 && shape[0] != *batch) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': batch size ",
                                                   shape[0], " differs from ", *batch));
  }
  *batch = shape[0];
  return absl::OkStatus();
}

// The input's contents as wire bytes: its raw entry, or its typed contents
// serialized into `*typed`; `count` elements of `wire_size` bytes each.
absl::StatusOr<const std::string*> InputBytes(const inference::ModelInferRequest& request,
                                              int index, int raw, const std::vector<int64_t>& shape,
                                              int64_t count, size_t wire_size, std::string* typed) {
  const auto& input = request.inputs(index);
  const std::string* bytes = nullptr;
  if (raw >= 0) {
    bytes = &request.raw_input_contents(raw);
  } else {
    int64_t typed_count = 0;
    auto typed_bytes = TypedBytes(input.contents(), input.datatype(), &typed_count);
    if (!typed_bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", input.name(), "': ", typed_bytes.status().message()));
    }
    if (typed_count != count) {
      return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': ", typed_count,
                                                     " elements for shape ", ShapeString(shape),
                                                     " (", count, ")"));
    }
    *typed = std::move(typed_bytes).value();
    bytes = typed;
  }
  if (static_cast<int64_t>(bytes->size()) != count * static_cast<int64_t>(wire_size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input '", input.name(), "': ", bytes->size(), " bytes of raw contents for ",
        input.datatype(), " shape ", ShapeString(shape), " (needs ", count * wire_size, ")"));
  }
  return bytes;
}

// The region input `index` names in `ref`, after every check that needs no
// bytes read: shared memory on, no contents of its own, `size` bytes (the
// shape's) within the server's limit, a registered region holding them.
absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> SharedInputRegion(
    const inference::ModelInferRequest& request, int index, int raw, const SharedMemoryRef& ref,
    int64_t size, const SharedMemoryRegistry* shm) {
  const auto& input = request.inputs(index);
  const std::string what = absl::StrCat("input '", input.name(), "'");
  if (shm == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " names shared memory region '", ref.region,
        "', but client shared memory is off on this server (rectifier-server --allow-client-shm)"));
  }
  if (HasTypedContents(input.contents()) ||
      (raw >= 0 && !request.raw_input_contents(raw).empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has contents and a shared_memory_region; send one or the other"));
  }
  if (ref.byte_size != static_cast<uint64_t>(size)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": shared_memory_byte_size ", ref.byte_size, " for ", input.datatype(), " shape ",
        ShapeString(std::vector<int64_t>(input.shape().begin(), input.shape().end())), " (needs ",
        size, ")"));
  }
  // The bound a request's own bytes have (its message size): a few bytes of
  // request must not make the server allocate and read more.
  if (ref.byte_size > shm->max_input_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", ref.byte_size,
                     " bytes in shared memory, over the server's limit "
                     "of ",
                     shm->max_input_bytes(), " per input (--max-message-mb)"));
  }
  auto region = shm->Find(ref.region);
  if (!region.ok())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", region.status().message()));
  if (absl::Status s = (*region)->CheckRange(ref.offset, ref.byte_size); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
  }
  return region;
}

// Request input `index` as the model input `expected`: datatype, shape,
// size, then the tensor in the config's data type.
absl::StatusOr<InputTensor> DecodeInput(const inference::ModelInferRequest& request, int index,
                                        int raw, const inference::ModelInput& expected,
                                        const inference::ModelConfig& config,
                                        const SharedMemoryRegistry* shm, int64_t* batch) {
  const auto& input = request.inputs(index);
  const std::string want = repository::KServeDataType(expected.data_type());
  const size_t wire_size = WireSize(input.datatype());
  if (wire_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': datatype '",
                                                   input.datatype(),
                                                   "' is not supported here (tensor types only)"));
  }
  // FP32 for an FP32 input is taken as it is (one copy), not converted.
  const bool to_float =
      want == "FP32" && input.datatype() != want && ConvertsToFloat(input.datatype());
  if (input.datatype() != want && !to_float) {
    return absl::InvalidArgumentError(absl::StrCat("input '", input.name(), "': datatype ",
                                                   input.datatype(), " but the model expects ",
                                                   want));
  }
  const std::vector<int64_t> shape(input.shape().begin(), input.shape().end());
  if (absl::Status s = CheckInputShape(input, shape, expected, config, batch); !s.ok()) return s;
  // Checked before anything is multiplied or allocated: [1, 2^61 + 1] of
  // FP64 would otherwise wrap around to 8 bytes and pass the size check.
  const auto shape_bytes = common::CheckedShapeBytes(shape, static_cast<int64_t>(wire_size));
  if (!shape_bytes.has_value() || *shape_bytes > kMaxInputBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input '", input.name(), "': shape ", ShapeString(shape), " of ", input.datatype(),
        " is larger than any request can carry (over ", kMaxInputBytes, " bytes)"));
  }
  const int64_t count = *shape_bytes / static_cast<int64_t>(wire_size);
  std::string typed;
  const std::string what = absl::StrCat("input '", input.name(), "'");
  auto ref = ParseSharedMemoryParameters(input.parameters(), what);
  if (!ref.ok()) return ref.status();
  if (ref->has_value()) {
    auto region = SharedInputRegion(request, index, raw, **ref, *shape_bytes, shm);
    if (!region.ok()) return region.status();
    // Read straight into the tensor when no conversion is needed.
    Tensor tensor = Tensor::Zeros(EngineType(expected.data_type()), shape);
    if (to_float) typed.resize(static_cast<size_t>(*shape_bytes));
    void* dst = to_float ? static_cast<void*>(typed.data()) : tensor.bytes.data();
    if (absl::Status s = (*region)->Read((*ref)->offset, (*ref)->byte_size, dst); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
    }
    if (to_float) {
      ToFloat(input.datatype(), reinterpret_cast<const std::byte*>(typed.data()), count,
              tensor.data<float>());
    }
    return tensor;
  }
  const auto bytes = InputBytes(request, index, raw, shape, count, wire_size, &typed);
  if (!bytes.ok()) return bytes.status();
  if (!to_float) {
    // Checked above to be exactly the shape's bytes. Typed contents were
    // decoded into `typed`, which is ours: copied. Raw bytes are read where
    // they are: the request outlives the inference (scheduler.h).
    const DataType type = EngineType(expected.data_type());
    if (*bytes == &typed) return Tensor::CopyOf(type, shape, typed.data());
    return InputTensor::Borrow(type, shape, (*bytes)->data(), (*bytes)->size());
  }
  Tensor tensor = Tensor::Zeros(EngineType(expected.data_type()), shape);
  ToFloat(input.datatype(), reinterpret_cast<const std::byte*>((*bytes)->data()), count,
          tensor.data<float>());
  return tensor;
}

}  // namespace

absl::StatusOr<std::vector<InputTensor>> DecodeInferInputs(
    const inference::ModelInferRequest& request, const inference::ModelConfig& config,
    const SharedMemoryRegistry* shm) {
  const bool raw = request.raw_input_contents_size() > 0;
  auto raw_entries = RawEntries(request);
  if (!raw_entries.ok()) return raw_entries.status();
  auto by_name = IndexRequestInputs(request, config, raw);
  if (!by_name.ok()) return by_name.status();
  std::vector<InputTensor> tensors;
  int64_t batch = -1;
  for (const auto& expected : config.input()) {
    const auto it = by_name->find(expected.name());
    if (it == by_name->end()) {
      if (expected.optional()) continue;
      return absl::InvalidArgumentError(absl::StrCat("input '", expected.name(), "' is missing"));
    }
    const int index = it->second;
    by_name->erase(it);
    auto tensor = DecodeInput(request, index, (*raw_entries)[index], expected, config, shm, &batch);
    if (!tensor.ok()) return tensor.status();
    tensors.push_back(*std::move(tensor));
  }
  if (!by_name->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input '", by_name->begin()->first, "' is not an input of model '", config.name(), "'"));
  }
  return tensors;
}

absl::StatusOr<std::vector<int>> SelectOutputs(const inference::ModelInferRequest& request,
                                               const inference::ModelConfig& config) {
  std::vector<int> selected;
  if (request.outputs().empty()) {
    for (int i = 0; i < config.output_size(); ++i) selected.push_back(i);
    return selected;
  }
  for (const auto& wanted : request.outputs()) {
    int found = -1;
    for (int i = 0; i < config.output_size(); ++i) {
      if (config.output(i).name() == wanted.name()) found = i;
    }
    if (found < 0) {
      return absl::InvalidArgumentError(absl::StrCat("requested output '", wanted.name(),
                                                     "' is not an output of model '", config.name(),
                                                     "'"));
    }
    selected.push_back(found);
  }
  return selected;
}

absl::Status CheckOutputSharedMemory(const inference::ModelInferRequest& request,
                                     const SharedMemoryRegistry* shm) {
  for (const auto& wanted : request.outputs()) {
    const std::string what = absl::StrCat("requested output '", wanted.name(), "'");
    auto ref = ParseSharedMemoryParameters(wanted.parameters(), what);
    if (!ref.ok()) return ref.status();
    if (!ref->has_value()) continue;
    if (shm == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " names shared memory region '", (*ref)->region,
                       "', but client shared memory is off on this server (rectifier-server "
                       "--allow-client-shm)"));
    }
    auto region = shm->Find((*ref)->region);
    if (!region.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", region.status().message()));
    }
    if (absl::Status s = (*region)->CheckRange((*ref)->offset, (*ref)->byte_size); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status EncodeInferResponse(const inference::ModelInferRequest& request,
                                 const inference::ModelConfig& config, const std::string& version,
                                 const std::vector<int>& selected, std::vector<Tensor> outputs,
                                 inference::ModelInferResponse* response,
                                 const SharedMemoryRegistry* shm) {
  response->set_model_name(config.name());
  response->set_model_version(version);
  response->set_id(request.id());
  for (size_t k = 0; k < selected.size(); ++k) {
    const int index = selected[k];
    Tensor& tensor = outputs[index];
    auto* out = response->add_outputs();
    out->set_name(config.output(index).name());
    out->set_datatype(engine::DataTypeName(tensor.type));
    for (const int64_t d : tensor.shape) out->add_shape(d);
    std::optional<SharedMemoryRef> ref;
    if (shm != nullptr && k < static_cast<size_t>(request.outputs_size())) {
      auto parsed =
          ParseSharedMemoryParameters(request.outputs(static_cast<int>(k)).parameters(), "output");
      if (parsed.ok()) ref = *parsed;
    }
    if (!ref.has_value()) {
      response->add_raw_output_contents()->assign(
          reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
      continue;
    }
    // Into the client's region; the raw entry stays empty so that entries
    // keep lining up with outputs.
    const std::string what = absl::StrCat("output '", out->name(), "'");
    if (ref->byte_size < tensor.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " has ", tensor.bytes.size(), " bytes (shape ", ShapeString(tensor.shape),
          "), more than its shared_memory_byte_size ", ref->byte_size));
    }
    auto region = shm->Find(ref->region);
    if (!region.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": ", region.status().message()));
    }
    if (absl::Status s = (*region)->Write(ref->offset, tensor.bytes.size(), tensor.bytes.data());
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
    }
    auto& params = *out->mutable_parameters();
    params["shared_memory_region"].set_string_param(ref->region);
    params["shared_memory_offset"].set_int64_param(static_cast<int64_t>(ref->offset));
    params["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(tensor.bytes.size()));
    response->add_raw_output_contents();
  }
  return absl::OkStatus();
}

absl::StatusOr<InferParameters> ParseInferParameters(const inference::ModelInferRequest& request) {
  InferParameters params;
  for (const auto& [key, value] : request.parameters()) {
    if (key == "priority") {
      if (value.has_uint64_param()) {
        params.priority = value.uint64_param();
      } else if (value.has_int64_param() && value.int64_param() >= 0) {
        params.priority = static_cast<uint64_t>(value.int64_param());
      } else {
        return absl::InvalidArgumentError("parameter 'priority' must be a non-negative integer");
      }
    } else if (key == "timeout") {
      if (!value.has_int64_param() || value.int64_param() < 0) {
        return absl::InvalidArgumentError(
            "parameter 'timeout' must be a non-negative int64 (microseconds)");
      }
      params.timeout = absl::Microseconds(value.int64_param());
    }
    // Other parameters (e.g. sequence or binary_data flags of HTTP clients)
    // do not apply to this server and are ignored, as Triton does.
  }
  return params;
}

}  // namespace rectifier::service
