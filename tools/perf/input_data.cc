#include "tools/perf/input_data.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace rectifier::tools {
namespace {

using Json = nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read '", path, "'"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Appends every number or boolean of `value` (nested arrays flattened).
absl::Status Flatten(const Json& value, std::vector<double>& out) {
  if (value.is_array()) {
    for (const Json& v : value) {
      if (absl::Status s = Flatten(v, out); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (value.is_boolean()) {
    out.push_back(value.get<bool>() ? 1.0 : 0.0);
    return absl::OkStatus();
  }
  if (value.is_number()) {
    out.push_back(value.get<double>());
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("holds ", value.type_name(), ", not a number"));
}

template <typename T>
absl::Status Append(double v, std::string& bytes) {
  if constexpr (std::is_integral_v<T>) {
    if (!(v >= static_cast<double>(std::numeric_limits<T>::lowest()) &&
          v <= static_cast<double>(std::numeric_limits<T>::max())) ||
        v != std::floor(v)) {
      return absl::InvalidArgumentError(absl::StrCat("value ", v, " does not fit the datatype"));
    }
  }
  const T t = static_cast<T>(v);
  bytes.append(reinterpret_cast<const char*>(&t), sizeof(T));
  return absl::OkStatus();
}

absl::Status Encode(const std::vector<double>& values, const std::string& datatype,
                    std::string& bytes) {
  for (const double v : values) {
    absl::Status s;
    if (datatype == "FP32") {
      s = Append<float>(v, bytes);
    } else if (datatype == "FP64") {
      s = Append<double>(v, bytes);
    } else if (datatype == "INT64") {
      s = Append<int64_t>(v, bytes);
    } else if (datatype == "INT32") {
      s = Append<int32_t>(v, bytes);
    } else if (datatype == "INT16") {
      s = Append<int16_t>(v, bytes);
    } else if (datatype == "INT8") {
      s = Append<int8_t>(v, bytes);
    } else if (datatype == "UINT64") {
      s = Append<uint64_t>(v, bytes);
    } else if (datatype == "UINT32") {
      s = Append<uint32_t>(v, bytes);
    } else if (datatype == "UINT16") {
      s = Append<uint16_t>(v, bytes);
    } else if (datatype == "UINT8" || datatype == "BOOL") {
      s = Append<uint8_t>(v, bytes);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("datatype ", datatype, " is not supported"));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// The item shape for `spec` and a JSON value's optional "shape".
absl::StatusOr<std::vector<int64_t>> ItemShape(const InputDataSpec& spec, const Json& value) {
  if (value.is_object() && value.contains("shape")) {
    std::vector<int64_t> shape;
    for (const Json& d : value["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        return absl::InvalidArgumentError("\"shape\" must hold non-negative integers");
      }
      shape.push_back(d.get<int64_t>());
    }
    bool fits = shape.size() == spec.item_shape.size();
    for (size_t i = 0; fits && i < shape.size(); ++i) {
      fits = spec.item_shape[i] < 0 || spec.item_shape[i] == shape[i];
    }
    if (!fits) {
      return absl::InvalidArgumentError(absl::StrCat("\"shape\" ", ShapeString(shape),
                                                     " does not fit the input's ",
                                                     ShapeString(spec.item_shape)));
    }
    return shape;
  }
  for (const int64_t d : spec.item_shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("the input has a dynamic dimension ", ShapeString(spec.item_shape),
                       ": give {\"content\": [...], \"shape\": [...]} or --shape"));
    }
  }
  return spec.item_shape;
}

absl::StatusOr<ItemData> ReadItem(const InputDataSpec& spec, const Json& value) {
  ItemData item;
  auto shape = ItemShape(spec, value);
  if (!shape.ok()) return shape.status();
  item.shape = *std::move(shape);
  int64_t count = 1;
  for (const int64_t d : item.shape) count *= d;
  const int64_t size = ElementSize(spec.datatype);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("datatype ", spec.datatype, " is not supported by --input-data"));
  }
  if (value.is_object() && value.contains("b64")) {
    if (!value["b64"].is_string() ||
        !absl::Base64Unescape(value["b64"].get<std::string>(), &item.bytes)) {
      return absl::InvalidArgumentError("\"b64\" is not base64");
    }
    if (static_cast<int64_t>(item.bytes.size()) != count * size) {
      return absl::InvalidArgumentError(absl::StrCat("\"b64\" holds ", item.bytes.size(),
                                                     " bytes; ", ShapeString(item.shape), " of ",
                                                     spec.datatype, " needs ", count * size));
    }
    return item;
  }
  const Json& content = value.is_object() ? value.value("content", Json()) : value;
  std::vector<double> values;
  if (absl::Status s = Flatten(content, values); !s.ok()) return s;
  if (static_cast<int64_t>(values.size()) != count) {
    return absl::InvalidArgumentError(absl::StrCat(values.size(), " values for shape ",
                                                   ShapeString(item.shape), " (", count, ")"));
  }
  if (absl::Status s = Encode(values, spec.datatype, item.bytes); !s.ok()) return s;
  return item;
}

absl::StatusOr<InputDataEntries> LoadJson(const std::string& path,
                                          const std::vector<InputDataSpec>& inputs) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  const Json doc = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("data") || !doc["data"].is_array() ||
      doc["data"].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path,
        ": expected JSON {\"data\": [{\"INPUT\": [values...]}, ...]} with one entry or more"));
  }
  InputDataEntries entries;
  for (size_t e = 0; e < doc["data"].size(); ++e) {
    const Json& entry = doc["data"][e];
    if (!entry.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": data[", e, "] is not an object"));
    }
    std::map<std::string, ItemData>& items = entries.emplace_back();
    for (const InputDataSpec& spec : inputs) {
      if (!entry.contains(spec.name)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": data[", e, "] has no input '", spec.name, "'"));
      }
      auto item = ReadItem(spec, entry[spec.name]);
      if (!item.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": data[", e, "] input '", spec.name,
                                                       "': ", item.status().message()));
      }
      items[spec.name] = *std::move(item);
    }
  }
  return entries;
}

absl::StatusOr<InputDataEntries> LoadDirectory(const std::string& dir,
                                               const std::vector<InputDataSpec>& inputs) {
  InputDataEntries entries(1);
  for (const InputDataSpec& spec : inputs) {
    const std::string path = (std::filesystem::path(dir) / spec.name).string();
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return bytes.status();
    auto shape = ItemShape(spec, Json());
    if (!shape.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", shape.status().message()));
    }
    int64_t count = 1;
    for (const int64_t d : *shape) count *= d;
    if (static_cast<int64_t>(bytes->size()) != count * ElementSize(spec.datatype)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " holds ", bytes->size(), " bytes; ", ShapeString(*shape), " of ",
                       spec.datatype, " needs ", count * ElementSize(spec.datatype)));
    }
    entries[0][spec.name] = ItemData{*std::move(shape), *std::move(bytes)};
  }
  return entries;
}

}  // namespace

int64_t ElementSize(const std::string& datatype) {
  if (datatype == "FP64" || datatype == "INT64" || datatype == "UINT64") return 8;
  if (datatype == "FP32" || datatype == "INT32" || datatype == "UINT32") return 4;
  if (datatype == "FP16" || datatype == "INT16" || datatype == "UINT16") return 2;
  if (datatype == "INT8" || datatype == "UINT8" || datatype == "BOOL") return 1;
  return 0;
}

absl::StatusOr<InputDataEntries> LoadInputData(const std::string& path,
                                               const std::vector<InputDataSpec>& inputs) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) return LoadDirectory(path, inputs);
  return LoadJson(path, inputs);
}

}  // namespace rectifier::tools
