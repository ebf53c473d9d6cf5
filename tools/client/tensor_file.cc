#include "tools/client/tensor_file.h"

#include <onnx/onnx_pb.h>

#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rectifier::tools {
namespace {

using engine::DataType;

absl::StatusOr<std::string> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const std::map<std::string, DataType>& NpyTypes() {
  static const auto* kTypes = new std::map<std::string, DataType>{
      {"<f4", DataType::kFloat32}, {"<f8", DataType::kFloat64}, {"|u1", DataType::kUint8},
      {"|i1", DataType::kInt8},    {"<i4", DataType::kInt32},   {"<i8", DataType::kInt64},
      {"|b1", DataType::kBool}};
  return *kTypes;
}

absl::StatusOr<engine::Tensor> ParseNpy(const std::string& bytes, const std::string& path) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a .npy file"));
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    offset = 10;
  } else {
    if (bytes.size() < 12) return absl::InvalidArgumentError(absl::StrCat(path, ": truncated"));
    uint32_t len = 0;
    std::memcpy(&len, bytes.data() + 8, 4);
    header_len = len;
    offset = 12;
  }
  if (offset + header_len > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated header"));
  }
  const std::string header = bytes.substr(offset, header_len);
  std::smatch descr, order, shape;
  static const std::regex kDescr("'descr':\\s*'([^']+)'");
  static const std::regex kOrder("'fortran_order':\\s*(True|False)");
  static const std::regex kShape("'shape':\\s*\\(([^)]*)\\)");
  if (!std::regex_search(header, descr, kDescr) || !std::regex_search(header, order, kOrder) ||
      !std::regex_search(header, shape, kShape)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unreadable .npy header"));
  }
  if (order[1] == "True") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": Fortran-order arrays are not supported"));
  }
  const auto type = NpyTypes().find(descr[1]);
  if (type == NpyTypes().end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": dtype ", std::string(descr[1]), " is not supported"));
  }
  engine::Tensor tensor;
  tensor.type = type->second;
  for (absl::string_view dim : absl::StrSplit(std::string(shape[1]), ',', absl::SkipWhitespace())) {
    tensor.shape.push_back(std::stoll(std::string(dim)));
  }
  const size_t need = engine::NumElements(tensor.shape) * engine::DataTypeSize(tensor.type);
  if (bytes.size() - offset - header_len != need) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", bytes.size() - offset - header_len,
                                                   " data bytes, shape needs ", need));
  }
  tensor.bytes.resize(need);
  std::memcpy(tensor.bytes.data(), bytes.data() + offset + header_len, need);
  return tensor;
}

absl::StatusOr<engine::Tensor> ParseTensorProto(const std::string& bytes, const std::string& path) {
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a serialized onnx.TensorProto"));
  }
  engine::Tensor tensor;
  switch (proto.data_type()) {
    case onnx::TensorProto::FLOAT:
      tensor.type = DataType::kFloat32;
      break;
    case onnx::TensorProto::DOUBLE:
      tensor.type = DataType::kFloat64;
      break;
    case onnx::TensorProto::INT64:
      tensor.type = DataType::kInt64;
      break;
    case onnx::TensorProto::INT32:
      tensor.type = DataType::kInt32;
      break;
    case onnx::TensorProto::UINT8:
      tensor.type = DataType::kUint8;
      break;
    case onnx::TensorProto::INT8:
      tensor.type = DataType::kInt8;
      break;
    case onnx::TensorProto::BOOL:
      tensor.type = DataType::kBool;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": TensorProto data_type ", proto.data_type(), " is not supported"));
  }
  tensor.shape.assign(proto.dims().begin(), proto.dims().end());
  const int64_t count = engine::NumElements(tensor.shape);
  const size_t need = count * engine::DataTypeSize(tensor.type);
  tensor.bytes.resize(need);
  if (!proto.raw_data().empty()) {
    if (proto.raw_data().size() != need) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": raw_data holds ", proto.raw_data().size(), " bytes, needs ", need));
    }
    std::memcpy(tensor.bytes.data(), proto.raw_data().data(), need);
    return tensor;
  }
  auto copy = [&](const auto& field, auto tag) -> absl::Status {
    using T = decltype(tag);
    if (field.size() != count) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", field.size(), " values for ", count, " elements"));
    }
    for (int64_t i = 0; i < count; ++i) {
      const T v = static_cast<T>(field.Get(static_cast<int>(i)));
      std::memcpy(tensor.bytes.data() + i * sizeof(T), &v, sizeof(T));
    }
    return absl::OkStatus();
  };
  absl::Status status;
  switch (tensor.type) {
    case DataType::kFloat32:
      status = copy(proto.float_data(), float{});
      break;
    case DataType::kFloat64:
      status = copy(proto.double_data(), double{});
      break;
    case DataType::kInt64:
      status = copy(proto.int64_data(), int64_t{});
      break;
    case DataType::kInt32:
      status = copy(proto.int32_data(), int32_t{});
      break;
    case DataType::kUint8:
      status = copy(proto.int32_data(), uint8_t{});
      break;
    case DataType::kInt8:
      status = copy(proto.int32_data(), int8_t{});
      break;
    case DataType::kBool:
      status = copy(proto.int32_data(), uint8_t{});
      break;
  }
  if (!status.ok()) return status;
  return tensor;
}

}  // namespace

absl::StatusOr<engine::Tensor> ReadTensorFile(const std::string& path) {
  auto bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  if (absl::EndsWith(path, ".npy")) return ParseNpy(*bytes, path);
  if (absl::EndsWith(path, ".pb")) return ParseTensorProto(*bytes, path);
  return absl::InvalidArgumentError(absl::StrCat(path, ": expected a .npy or .pb file"));
}

absl::Status WriteNpy(const std::string& path, const engine::Tensor& tensor) {
  std::string descr;
  for (const auto& [name, type] : NpyTypes()) {
    if (type == tensor.type) descr = name;
  }
  std::string shape = absl::StrJoin(tensor.shape, ", ");
  if (tensor.shape.size() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (", shape, "), }");
  // Pad so that the data starts at a multiple of 64 bytes, newline-terminated.
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.put(static_cast<char>(len & 0xff));
  out.put(static_cast<char>(len >> 8));
  out << header;
  out.write(reinterpret_cast<const char*>(tensor.bytes.data()),
            static_cast<std::streamsize>(tensor.bytes.size()));
  return out ? absl::OkStatus() : absl::DataLossError(absl::StrCat("short write to ", path));
}

}  // namespace rectifier::tools
