// TensorProto <-> Tensor conversion.
#include "server/engine/onnx_tensor.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rectifier::engine {
namespace {

template <typename Dst, typename Field>
void CopyField(const Field& field, Tensor& t) {
  Dst* out = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
}

}  // namespace

absl::StatusOr<DataType> DataTypeFromOnnx(int onnx_type) {
  switch (onnx_type) {
    case onnx::TensorProto::FLOAT:
      return DataType::kFloat32;
    case onnx::TensorProto::INT64:
      return DataType::kInt64;
    case onnx::TensorProto::INT32:
      return DataType::kInt32;
    case onnx::TensorProto::UINT8:
      return DataType::kUint8;
    case onnx::TensorProto::INT8:
      return DataType::kInt8;
    case onnx::TensorProto::BOOL:
      return DataType::kBool;
    case onnx::TensorProto::DOUBLE:
      return DataType::kFloat64;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "tensor element type ", onnx_type, " (",
          onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(onnx_type)),
          ") is not supported"));
  }
}

int DataTypeToOnnx(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DataType::kInt64:
      return onnx::TensorProto::INT64;
    case DataType::kInt32:
      return onnx::TensorProto::INT32;
    case DataType::kUint8:
      return onnx::TensorProto::UINT8;
    case DataType::kInt8:
      return onnx::TensorProto::INT8;
    case DataType::kBool:
      return onnx::TensorProto::BOOL;
    case DataType::kFloat64:
      return onnx::TensorProto::DOUBLE;
  }
  return onnx::TensorProto::UNDEFINED;
}

absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto, int64_t max_bytes) {
  if (proto.data_location() == onnx::TensorProto::EXTERNAL || proto.external_data_size() > 0) {
    return absl::UnimplementedError(
        absl::StrCat("tensor '", proto.name(), "' uses external data, which is not supported"));
  }
  auto type = DataTypeFromOnnx(proto.data_type());
  if (!type.ok()) {
    return absl::UnimplementedError(
        absl::StrCat("tensor '", proto.name(), "': ", type.status().message()));
  }
  std::vector<int64_t> shape(proto.dims().begin(), proto.dims().end());
  // Overflow-safe element count: reject before multiplying past the limit.
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", proto.name(), "' has a negative dimension"));
    }
    if (d != 0 && count > max_bytes / d) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tensor '", proto.name(), "' exceeds max_tensor_bytes (", max_bytes, ")"));
    }
    count *= d;
  }
  const size_t elem = DataTypeSize(*type);
  if (count * static_cast<int64_t>(elem) > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tensor '", proto.name(), "' exceeds max_tensor_bytes (", max_bytes, ")"));
  }
  Tensor t = Tensor::Zeros(*type, shape);
  const size_t nbytes = t.bytes.size();
  if (proto.has_raw_data()) {
    if (proto.raw_data().size() != nbytes) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "' raw_data has ",
                                                     proto.raw_data().size(), " bytes, dims need ",
                                                     nbytes));
    }
    if (nbytes) std::memcpy(t.bytes.data(), proto.raw_data().data(), nbytes);
    return t;
  }
  auto check = [&](int have) -> absl::Status {
    if (have != count) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", proto.name(), "' has ", have, " values, dims need ", count));
    }
    return absl::OkStatus();
  };
  absl::Status st;
  switch (*type) {
    case DataType::kFloat32:
      st = check(proto.float_data_size());
      if (st.ok()) CopyField<float>(proto.float_data(), t);
      break;
    case DataType::kFloat64:
      st = check(proto.double_data_size());
      if (st.ok()) CopyField<double>(proto.double_data(), t);
      break;
    case DataType::kInt64:
      st = check(proto.int64_data_size());
      if (st.ok()) CopyField<int64_t>(proto.int64_data(), t);
      break;
    case DataType::kInt32:
      st = check(proto.int32_data_size());
      if (st.ok()) CopyField<int32_t>(proto.int32_data(), t);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      st = check(proto.int32_data_size());
      if (st.ok()) CopyField<uint8_t>(proto.int32_data(), t);
      break;
    case DataType::kInt8:
      st = check(proto.int32_data_size());
      if (st.ok()) CopyField<int8_t>(proto.int32_data(), t);
      break;
  }
  if (!st.ok()) return st;
  return t;
}

onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(DataTypeToOnnx(tensor.type));
  for (int64_t d : tensor.shape) proto.add_dims(d);
  proto.set_raw_data(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
  return proto;
}

absl::StatusOr<Tensor> ReadTensorFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  onnx::TensorProto proto;
  if (!proto.ParseFromIstream(&in)) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a TensorProto"));
  }
  return TensorFromProto(proto);
}

absl::Status WriteTensorFile(const Tensor& tensor, const std::string& name,
                             const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path, "'"));
  if (!TensorToProto(tensor, name).SerializeToOstream(&out)) {
    return absl::InternalError(absl::StrCat("failed writing '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace rectifier::engine
