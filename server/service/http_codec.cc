#include "server/service/http_codec.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/service/infer_codec.h"

namespace rectifier::service {
namespace {

using nlohmann::json;
using Kind = HttpRoute::Kind;

constexpr size_t kMaxSegmentBytes = 1024;

absl::Status NoRoute(absl::string_view path) {
  return absl::NotFoundError(absl::StrCat("no route for '", path.substr(0, kMaxSegmentBytes),
                                          "' (the KServe v2 routes are under /v2)"));
}

bool ValidSegment(absl::string_view segment) {
  return !segment.empty() && segment.size() <= kMaxSegmentBytes;
}

// The part of a model route after /v2/models/{m}[/versions/{v}].
absl::StatusOr<HttpRoute> ParseModelRoute(absl::string_view path,
                                          const std::vector<absl::string_view>& parts) {
  // parts: "v2", "models", m, [ "versions", v ], [ action ]
  HttpRoute route;
  route.model = std::string(parts[2]);
  size_t next = 3;
  if (parts.size() >= 5 && parts[3] == "versions") {
    if (!ValidSegment(parts[4])) return NoRoute(path);
    route.version = std::string(parts[4]);
    next = 5;
  }
  if (next == parts.size()) {
    route.kind = Kind::kModelMetadata;
    return route;
  }
  if (next + 1 != parts.size()) return NoRoute(path);
  const absl::string_view action = parts[next];
  if (action == "ready") {
    route.kind = Kind::kModelReady;
  } else if (action == "config") {
    route.kind = Kind::kModelConfig;
  } else if (action == "stats") {
    route.kind = Kind::kModelStats;
  } else if (action == "infer") {
    route.kind = Kind::kInfer;
    route.method = "POST";
  } else {
    return NoRoute(path);
  }
  return route;
}

// /v1/models/{m}[/versions/{v}]/classify|detect|segment
absl::StatusOr<HttpRoute> ParseImageRoute(absl::string_view path,
                                          const std::vector<absl::string_view>& parts) {
  HttpRoute route;
  route.method = "POST";
  if (parts.size() < 4 || parts[1] != "models" || !ValidSegment(parts[2])) return NoRoute(path);
  route.model = std::string(parts[2]);
  size_t next = 3;
  if (parts.size() == 6 && parts[3] == "versions") {
    if (!ValidSegment(parts[4])) return NoRoute(path);
    route.version = std::string(parts[4]);
    next = 5;
  }
  if (next + 1 != parts.size()) return NoRoute(path);
  if (parts[next] == "classify") {
    route.kind = Kind::kClassify;
  } else if (parts[next] == "detect") {
    route.kind = Kind::kDetect;
  } else if (parts[next] == "segment") {
    route.kind = Kind::kSegment;
  } else {
    return NoRoute(path);
  }
  return route;
}

// Little-endian element writers (the binary extension's byte order; this
// server runs on little-endian hosts only, as x86-64 and AArch64 Linux are).
template <typename T>
void Append(std::string* out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out->append(bytes, sizeof(T));
}

// Appends one JSON element of `datatype` to `out`, or says why it cannot.
absl::Status AppendElement(const json& element, const std::string& datatype, std::string* out) {
  const auto integer = [&](auto tag) -> absl::Status {
    using T = decltype(tag);
    if (element.is_number_unsigned()) {
      const auto v = element.get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
        return absl::InvalidArgumentError(absl::StrCat(v, " is out of range for ", datatype));
      }
      Append(out, static_cast<T>(v));
      return absl::OkStatus();
    }
    if (element.is_number_integer()) {
      const auto v = element.get<int64_t>();
      if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
          (v > 0 &&
           static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max()))) {
        return absl::InvalidArgumentError(absl::StrCat(v, " is out of range for ", datatype));
      }
      Append(out, static_cast<T>(v));
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat("expected an integer for ", datatype, ", got ", element.type_name()));
  };
  const auto floating = [&](auto tag) -> absl::Status {
    using T = decltype(tag);
    if (!element.is_number()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a number for ", datatype, ", got ", element.type_name()));
    }
    const auto v = element.get<double>();
    if (std::abs(v) > static_cast<double>(std::numeric_limits<T>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(v, " is out of range for ", datatype));
    }
    Append(out, static_cast<T>(v));
    return absl::OkStatus();
  };
  if (datatype == "BOOL") {
    if (!element.is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected true or false for BOOL, got ", element.type_name()));
    }
    Append(out, static_cast<uint8_t>(element.get<bool>() ? 1 : 0));
    return absl::OkStatus();
  }
  if (datatype == "UINT8") return integer(uint8_t{});
  if (datatype == "UINT16") return integer(uint16_t{});
  if (datatype == "UINT32") return integer(uint32_t{});
  if (datatype == "UINT64") return integer(uint64_t{});
  if (datatype == "INT8") return integer(int8_t{});
  if (datatype == "INT16") return integer(int16_t{});
  if (datatype == "INT32") return integer(int32_t{});
  if (datatype == "INT64") return integer(int64_t{});
  if (datatype == "FP32") return floating(float{});
  if (datatype == "FP64") return floating(double{});
  if (datatype == "BYTES") {
    if (!element.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected a string for BYTES, got ", element.type_name()));
    }
    const auto& s = element.get_ref<const std::string&>();
    if (s.size() > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError("a BYTES element is longer than 4 GiB");
    }
    Append(out, static_cast<uint32_t>(s.size()));
    out->append(s);
    return absl::OkStatus();
  }
  if (datatype == "FP16" || datatype == "BF16") {
    return absl::InvalidArgumentError(
        absl::StrCat(datatype,
                     " tensors cannot be sent as JSON data; send them as binary data "
                     "(the binary_data_size parameter)"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown datatype '", datatype, "'"));
}

// The product of `shape`, or nullopt past int64.
std::optional<int64_t> ElementCount(const google::protobuf::RepeatedField<int64_t>& shape) {
  int64_t count = 1;
  for (const int64_t d : shape) {
    if (d != 0 && count > std::numeric_limits<int64_t>::max() / d) return std::nullopt;
    count *= d;
  }
  return count;
}

// Packs "data" (flat or nested arrays, row-major; a scalar for a
// one-element tensor) into raw bytes.
absl::Status PackData(const json& data, const std::string& datatype, int max_depth,
                      std::string* out, int64_t* elements) {
  // Iterative depth-first walk: each entry is an array and the next index.
  struct Frame {
    const json* array;
    size_t next;
  };
  if (!data.is_array()) {
    *elements = 1;
    return AppendElement(data, datatype, out);
  }
  std::vector<Frame> stack = {{&data, 0}};
  while (!stack.empty()) {
    Frame& top = stack.back();
    if (top.next == top.array->size()) {
      stack.pop_back();
      continue;
    }
    const json& element = (*top.array)[top.next++];
    if (element.is_array()) {
      if (static_cast<int>(stack.size()) >= max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("data is nested more than ", max_depth, " arrays deep"));
      }
      stack.push_back({&element, 0});
      continue;
    }
    if (absl::Status s = AppendElement(element, datatype, out); !s.ok()) return s;
    ++*elements;
  }
  return absl::OkStatus();
}

absl::Status ParseParameters(const json& parameters, const std::string& where,
                             google::protobuf::Map<std::string, inference::InferParameter>* out) {
  if (!parameters.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, "'parameters' must be an object"));
  }
  for (const auto& [key, value] : parameters.items()) {
    inference::InferParameter& p = (*out)[key];
    if (value.is_boolean()) {
      p.set_bool_param(value.get<bool>());
    } else if (value.is_number_unsigned()) {
      const auto v = value.get<uint64_t>();
      if (v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        p.set_int64_param(static_cast<int64_t>(v));
      } else {
        p.set_uint64_param(v);
      }
    } else if (value.is_number_integer()) {
      p.set_int64_param(value.get<int64_t>());
    } else if (value.is_number_float()) {
      p.set_double_param(value.get<double>());
    } else if (value.is_string()) {
      p.set_string_param(value.get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(where, "parameter '", key,
                                                     "' must be a boolean, number or string, not ",
                                                     value.type_name()));
    }
  }
  return absl::OkStatus();
}

// The value of a string field, or INVALID_ARGUMENT naming it.
absl::StatusOr<std::string> StringField(const json& object, const char* field,
                                        const std::string& where, bool required) {
  const auto it = object.find(field);
  if (it == object.end()) {
    if (!required) return std::string();
    return absl::InvalidArgumentError(absl::StrCat(where, "'", field, "' is missing"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "'", field, "' must be a string, not ", it->type_name()));
  }
  return it->get<std::string>();
}

bool BoolParameter(const google::protobuf::Map<std::string, inference::InferParameter>& parameters,
                   const char* key) {
  const auto it = parameters.find(key);
  return it != parameters.end() && it->second.has_bool_param() && it->second.bool_param();
}

// Element size of a fixed-size wire datatype; 0 for BYTES or unknown.
size_t ElementBytes(const std::string& datatype) {
  if (datatype == "BOOL" || datatype == "UINT8" || datatype == "INT8") return 1;
  if (datatype == "UINT16" || datatype == "INT16" || datatype == "FP16" || datatype == "BF16") {
    return 2;
  }
  if (datatype == "UINT32" || datatype == "INT32" || datatype == "FP32") return 4;
  if (datatype == "UINT64" || datatype == "INT64" || datatype == "FP64") return 8;
  return 0;
}

template <typename T>
T Load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// A finite number, or null for NaN and infinities (JSON has neither).
json Number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// Raw little-endian contents of one output as a flat JSON array.
json UnpackData(const std::string& raw, const std::string& datatype) {
  json data = json::array();
  if (datatype == "BYTES") {
    size_t at = 0;
    while (at + 4 <= raw.size()) {
      const auto n = Load<uint32_t>(raw.data() + at);
      at += 4;
      const size_t take = std::min<size_t>(n, raw.size() - at);
      data.push_back(raw.substr(at, take));
      at += take;
    }
    return data;
  }
  const size_t size = ElementBytes(datatype);
  if (size == 0) return data;
  const size_t count = raw.size() / size;
  for (size_t i = 0; i < count; ++i) {
    const char* p = raw.data() + i * size;
    if (datatype == "BOOL") {
      data.push_back(Load<uint8_t>(p) != 0);
    } else if (datatype == "UINT8") {
      data.push_back(Load<uint8_t>(p));
    } else if (datatype == "UINT16") {
      data.push_back(Load<uint16_t>(p));
    } else if (datatype == "UINT32") {
      data.push_back(Load<uint32_t>(p));
    } else if (datatype == "UINT64") {
      data.push_back(Load<uint64_t>(p));
    } else if (datatype == "INT8") {
      data.push_back(Load<int8_t>(p));
    } else if (datatype == "INT16") {
      data.push_back(Load<int16_t>(p));
    } else if (datatype == "INT32") {
      data.push_back(Load<int32_t>(p));
    } else if (datatype == "INT64") {
      data.push_back(Load<int64_t>(p));
    } else if (datatype == "FP16") {
      data.push_back(Number(HalfToFloat(Load<uint16_t>(p))));
    } else if (datatype == "BF16") {
      const uint32_t bits = uint32_t{Load<uint16_t>(p)} << 16;
      float v;
      std::memcpy(&v, &bits, sizeof(v));
      data.push_back(Number(v));
    } else if (datatype == "FP32") {
      data.push_back(Number(Load<float>(p)));
    } else {
      data.push_back(Number(Load<double>(p)));
    }
  }
  return data;
}

json ParametersToJson(
    const google::protobuf::Map<std::string, inference::InferParameter>& parameters) {
  json out = json::object();
  for (const auto& [key, p] : parameters) {
    switch (p.parameter_choice_case()) {
      case inference::InferParameter::kBoolParam:
        out[key] = p.bool_param();
        break;
      case inference::InferParameter::kInt64Param:
        out[key] = p.int64_param();
        break;
      case inference::InferParameter::kStringParam:
        out[key] = p.string_param();
        break;
      case inference::InferParameter::kDoubleParam:
        out[key] = Number(p.double_param());
        break;
      case inference::InferParameter::kUint64Param:
        out[key] = p.uint64_param();
        break;
      case inference::InferParameter::PARAMETER_CHOICE_NOT_SET:
        break;
    }
  }
  return out;
}

json ScalarValue(const google::protobuf::Message& message,
                 const google::protobuf::FieldDescriptor* field, int index) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = message.GetReflection();
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FD::CPPTYPE_INT32:
      return repeated ? r->GetRepeatedInt32(message, field, index) : r->GetInt32(message, field);
    case FD::CPPTYPE_INT64:
      return repeated ? r->GetRepeatedInt64(message, field, index) : r->GetInt64(message, field);
    case FD::CPPTYPE_UINT32:
      return repeated ? r->GetRepeatedUInt32(message, field, index) : r->GetUInt32(message, field);
    case FD::CPPTYPE_UINT64:
      return repeated ? r->GetRepeatedUInt64(message, field, index) : r->GetUInt64(message, field);
    case FD::CPPTYPE_DOUBLE:
      return Number(repeated ? r->GetRepeatedDouble(message, field, index)
                             : r->GetDouble(message, field));
    case FD::CPPTYPE_FLOAT:
      return Number(repeated ? r->GetRepeatedFloat(message, field, index)
                             : r->GetFloat(message, field));
    case FD::CPPTYPE_BOOL:
      return repeated ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field);
    case FD::CPPTYPE_ENUM:
      return (repeated ? r->GetRepeatedEnum(message, field, index) : r->GetEnum(message, field))
          ->name();
    case FD::CPPTYPE_STRING:
      return repeated ? r->GetRepeatedString(message, field, index) : r->GetString(message, field);
    case FD::CPPTYPE_MESSAGE:
      return ProtoToJson(repeated ? r->GetRepeatedMessage(message, field, index)
                                  : r->GetMessage(message, field));
  }
  return nullptr;
}

// Input `i` of the request ("inputs"[i]) into `request`: its tensor and its
// raw contents, from "data" or from the front of `binary`.
absl::Status ParseInput(const json& in, size_t i, const HttpInferLimits& limits,
                        absl::string_view* binary, inference::ModelInferRequest* request) {
  std::string where = absl::StrCat("inputs[", i, "]: ");
  if (!in.is_object()) return absl::InvalidArgumentError(where + "must be an object");
  auto* tensor = request->add_inputs();
  absl::StatusOr<std::string> name = StringField(in, "name", where, /*required=*/true);
  if (!name.ok()) return name.status();
  tensor->set_name(*name);
  where = absl::StrCat("input '", *name, "': ");
  absl::StatusOr<std::string> datatype = StringField(in, "datatype", where, /*required=*/true);
  if (!datatype.ok()) return datatype.status();
  tensor->set_datatype(*datatype);
  const auto shape = in.find("shape");
  if (shape == in.end() || !shape->is_array()) {
    return absl::InvalidArgumentError(where + "'shape' must be an array of integers");
  }
  for (const json& d : *shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return absl::InvalidArgumentError(where + "'shape' must hold non-negative integers");
    }
    tensor->add_shape(d.get<int64_t>());
  }
  if (const auto it = in.find("parameters"); it != in.end()) {
    if (absl::Status s = ParseParameters(*it, where, tensor->mutable_parameters()); !s.ok()) {
      return s;
    }
  }
  std::string* raw = request->add_raw_input_contents();
  const auto size_param = tensor->parameters().find("binary_data_size");
  const auto data = in.find("data");
  if (tensor->parameters().count("shared_memory_region")) {
    // Client shared memory: the bytes are in the region (infer_codec.h
    // checks it); the raw entry stays empty.
    if (data != in.end() || size_param != tensor->parameters().end()) {
      return absl::InvalidArgumentError(
          where + "has a shared_memory_region and also 'data' or binary_data_size");
    }
    return absl::OkStatus();
  }
  if (size_param != tensor->parameters().end()) {
    if (data != in.end()) {
      return absl::InvalidArgumentError(where + "has both 'data' and binary_data_size");
    }
    const inference::InferParameter& p = size_param->second;
    if (!p.has_int64_param() || p.int64_param() < 0) {
      return absl::InvalidArgumentError(where + "binary_data_size must be a non-negative integer");
    }
    const auto n = static_cast<uint64_t>(p.int64_param());
    if (n > binary->size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, "binary_data_size ", n,
                                                     " is more than the ", binary->size(),
                                                     " bytes of binary data left in the body"));
    }
    raw->assign(binary->data(), static_cast<size_t>(n));
    binary->remove_prefix(static_cast<size_t>(n));
    tensor->mutable_parameters()->erase("binary_data_size");
    return absl::OkStatus();
  }
  if (data == in.end()) {
    return absl::InvalidArgumentError(where + "has neither 'data' nor binary_data_size");
  }
  int64_t elements = 0;
  if (absl::Status s = PackData(*data, *datatype, limits.max_data_depth, raw, &elements); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(where, s.message()));
  }
  if (const std::optional<int64_t> expected = ElementCount(tensor->shape());
      expected.has_value() && *expected != elements) {
    return absl::InvalidArgumentError(absl::StrCat(where, elements, " data elements for shape [",
                                                   absl::StrJoin(tensor->shape(), ","), "] (needs ",
                                                   *expected, ")"));
  }
  return absl::OkStatus();
}

// "outputs": the requested outputs and their parameters.
absl::Status ParseOutputs(const json& root, inference::ModelInferRequest* request) {
  const auto outputs = root.find("outputs");
  if (outputs == root.end()) return absl::OkStatus();
  if (!outputs->is_array()) return absl::InvalidArgumentError("'outputs' must be an array");
  for (size_t i = 0; i < outputs->size(); ++i) {
    const json& out = (*outputs)[i];
    const std::string where = absl::StrCat("outputs[", i, "]: ");
    if (!out.is_object()) return absl::InvalidArgumentError(where + "must be an object");
    absl::StatusOr<std::string> name = StringField(out, "name", where, /*required=*/true);
    if (!name.ok()) return name.status();
    auto* requested = request->add_outputs();
    requested->set_name(*name);
    if (const auto it = out.find("parameters"); it != out.end()) {
      if (absl::Status s = ParseParameters(*it, where, requested->mutable_parameters()); !s.ok()) {
        return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HttpRoute> ParseHttpRoute(absl::string_view path) {
  if (!absl::StartsWith(path, "/")) return NoRoute(path);
  std::vector<absl::string_view> parts = absl::StrSplit(path.substr(1), '/');
  // One trailing slash is tolerated ("/v2/" as "/v2").
  if (parts.size() > 1 && parts.back().empty()) parts.pop_back();
  if (!parts.empty() && parts[0] == "v1") return ParseImageRoute(path, parts);
  if (parts.empty() || parts[0] != "v2") return NoRoute(path);
  HttpRoute route;
  if (parts.size() == 1) return route;  // kServerMetadata
  if (parts[1] == "health" && parts.size() == 3) {
    if (parts[2] == "live") {
      route.kind = Kind::kLive;
      return route;
    }
    if (parts[2] == "ready") {
      route.kind = Kind::kReady;
      return route;
    }
    return NoRoute(path);
  }
  if (parts[1] == "models") {
    if (parts.size() == 3 && parts[2] == "stats") {
      route.kind = Kind::kModelStats;  // every model
      return route;
    }
    if (parts.size() < 3 || !ValidSegment(parts[2])) return NoRoute(path);
    return ParseModelRoute(path, parts);
  }
  if (parts[1] == "systemsharedmemory") {
    // [/region/{r}]/status|register|unregister; register needs the region.
    if (parts.size() == 5 && parts[2] == "region" && ValidSegment(parts[3])) {
      route.region = std::string(parts[3]);
    } else if (parts.size() != 3) {
      return NoRoute(path);
    }
    const absl::string_view action = parts.back();
    if (action == "status") {
      route.kind = Kind::kShmStatus;
      return route;
    }
    route.method = "POST";
    if (action == "unregister") {
      route.kind = Kind::kShmUnregister;
      return route;
    }
    if (action == "register" && !route.region.empty()) {
      route.kind = Kind::kShmRegister;
      return route;
    }
    return NoRoute(path);
  }
  if (parts[1] == "repository") {
    route.method = "POST";
    if (parts.size() == 3 && parts[2] == "index") {
      route.kind = Kind::kRepositoryIndex;
      return route;
    }
    if (parts.size() == 5 && parts[2] == "models" && ValidSegment(parts[3])) {
      route.model = std::string(parts[3]);
      if (parts[4] == "load") {
        route.kind = Kind::kLoad;
        return route;
      }
      if (parts[4] == "unload") {
        route.kind = Kind::kUnload;
        return route;
      }
    }
  }
  return NoRoute(path);
}

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string HttpErrorBody(const absl::Status& status) {
  return json{{"error", std::string(status.message())}}.dump(-1, ' ', false,
                                                             json::error_handler_t::replace);
}

json ProtoToJson(const google::protobuf::Message& message) {
  json out = json::object();
  const google::protobuf::Descriptor* descriptor = message.GetDescriptor();
  const google::protobuf::Reflection* r = message.GetReflection();
  for (int f = 0; f < descriptor->field_count(); ++f) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(f);
    if (field->is_map()) {
      json map = json::object();
      const google::protobuf::FieldDescriptor* key_field = field->message_type()->map_key();
      const google::protobuf::FieldDescriptor* value_field = field->message_type()->map_value();
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        const google::protobuf::Message& entry = r->GetRepeatedMessage(message, field, i);
        const json key = ScalarValue(entry, key_field, 0);
        map[key.is_string() ? key.get<std::string>() : key.dump()] =
            ScalarValue(entry, value_field, 0);
      }
      out[field->name()] = std::move(map);
    } else if (field->is_repeated()) {
      json list = json::array();
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        list.push_back(ScalarValue(message, field, i));
      }
      out[field->name()] = std::move(list);
    } else if (field->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE ||
               field->containing_oneof() != nullptr) {
      // Sub-messages and oneof members only when set.
      if (r->HasField(message, field)) out[field->name()] = ScalarValue(message, field, 0);
    } else {
      // Scalars always, defaults included (Triton prints them too, so
      // clients can index "count" of an empty statistic).
      out[field->name()] = ScalarValue(message, field, 0);
    }
  }
  return out;
}

absl::Status ParseHttpInferRequest(absl::string_view body,
                                   std::optional<absl::string_view> header_length,
                                   const HttpInferLimits& limits,
                                   inference::ModelInferRequest* request) {
  size_t json_size = body.size();
  if (header_length.has_value()) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(*header_length, &n) || n > body.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("Inference-Header-Content-Length '", header_length->substr(0, 32),
                       "' is not a length within the body (", body.size(), " bytes)"));
    }
    json_size = static_cast<size_t>(n);
  }
  if (json_size > limits.max_json_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the JSON part of the request is ", json_size, " bytes, over the limit of ",
        limits.max_json_bytes, "; send large tensors as binary data (binary_data_size)"));
  }
  const json root = json::parse(body.substr(0, json_size), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError("the request body is not valid JSON");
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  absl::StatusOr<std::string> id = StringField(root, "id", "", /*required=*/false);
  if (!id.ok()) return id.status();
  request->set_id(*id);
  if (const auto it = root.find("parameters"); it != root.end()) {
    if (absl::Status s = ParseParameters(*it, "", request->mutable_parameters()); !s.ok()) return s;
  }
  const auto inputs = root.find("inputs");
  if (inputs == root.end() || !inputs->is_array() || inputs->empty()) {
    return absl::InvalidArgumentError("'inputs' must be a non-empty array");
  }
  absl::string_view binary = body.substr(json_size);
  for (size_t i = 0; i < inputs->size(); ++i) {
    if (absl::Status s = ParseInput((*inputs)[i], i, limits, &binary, request); !s.ok()) return s;
  }
  if (!binary.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(binary.size(),
                     " bytes of binary data follow the last input's "
                     "binary_data_size (the sizes must add up to the binary part)"));
  }
  return ParseOutputs(root, request);
}

HttpInferBody EncodeHttpInferResponse(const inference::ModelInferRequest& request,
                                      const inference::ModelInferResponse& response) {
  const bool all_binary = BoolParameter(request.parameters(), "binary_data_output");
  json root = json::object();
  root["model_name"] = response.model_name();
  root["model_version"] = response.model_version();
  if (!response.id().empty()) root["id"] = response.id();
  if (!response.parameters().empty()) root["parameters"] = ParametersToJson(response.parameters());
  json outputs = json::array();
  // The binary outputs, appended once after the JSON (each is copied once).
  std::vector<const std::string*> binary;
  size_t binary_size = 0;
  for (int i = 0; i < response.outputs_size(); ++i) {
    const inference::ModelInferResponse::InferOutputTensor& tensor = response.outputs(i);
    json out = {{"name", tensor.name()}, {"datatype", tensor.datatype()}};
    out["shape"] = json(std::vector<int64_t>(tensor.shape().begin(), tensor.shape().end()));
    bool as_binary = all_binary;
    for (const auto& requested : request.outputs()) {
      if (requested.name() != tensor.name()) continue;
      const auto it = requested.parameters().find("binary_data");
      if (it != requested.parameters().end() && it->second.has_bool_param()) {
        as_binary = it->second.bool_param();
      }
    }
    if (tensor.parameters().count("shared_memory_region")) {
      // Written to the client's region: where and how many bytes, no data.
      out["parameters"] = ParametersToJson(tensor.parameters());
      outputs.push_back(std::move(out));
      continue;
    }
    static const std::string kEmpty;
    const std::string& raw =
        i < response.raw_output_contents_size() ? response.raw_output_contents(i) : kEmpty;
    if (as_binary) {
      out["parameters"] = {{"binary_data_size", raw.size()}};
      binary.push_back(&raw);
      binary_size += raw.size();
    } else {
      out["data"] = UnpackData(raw, tensor.datatype());
    }
    outputs.push_back(std::move(out));
  }
  root["outputs"] = std::move(outputs);
  HttpInferBody encoded;
  encoded.body = root.dump(-1, ' ', false, json::error_handler_t::replace);
  encoded.json_size = encoded.body.size();
  encoded.body.reserve(encoded.json_size + binary_size);
  for (const std::string* raw : binary) encoded.body += *raw;
  return encoded;
}

}  // namespace rectifier::service
