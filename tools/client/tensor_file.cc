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
#include "server/engine/ir/onnx_tensor.h"

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
  auto tensor = engine::TensorFromProto(proto);
  if (!tensor.ok()) {
    return absl::Status(tensor.status().code(),
                        absl::StrCat(path, ": ", tensor.status().message()));
  }
  return tensor;
}

}  // namespace

absl::StatusOr<engine::Tensor> ReadTensorFile(const std::string& path) {
  const bool npy = absl::EndsWith(path, ".npy");
  if (!npy && !absl::EndsWith(path, ".pb")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected a .npy or .pb file"));
  }
  auto bytes = ReadAll(path);
  if (!bytes.ok()) return bytes.status();
  return npy ? ParseNpy(*bytes, path) : ParseTensorProto(*bytes, path);
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
