// TensorProto <-> Tensor conversion.
#include "server/engine/ir/onnx_tensor.h"

#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rectifier::engine {
namespace {

template <typename Dst, typename Field>
void CopyField(const Field& field, Tensor& t) {
  Dst* out = t.data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
}

// Byte size of `shape` with elements of `elem` bytes. False for a negative
// dimension, or when the product of the non-zero dimensions times `elem`
// exceeds int64: a zero dimension makes the tensor empty, but its other
// dimensions still size its strides and layouts ([4, 0, 2^53, 2^40] holds
// nothing and has no representable strides).
bool DeclaredBytes(const std::vector<int64_t>& shape, int64_t elem, int64_t* bytes) {
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d == 0) {
      empty = true;
      continue;
    }
    if (__builtin_mul_overflow(n, d, &n)) return false;
  }
  if (__builtin_mul_overflow(n, elem, bytes)) return false;
  if (empty) *bytes = 0;
  return true;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Number of values in the typed repeated field that holds `type`, and the
// field's name.
std::pair<int64_t, const char*> TypedFieldSize(const onnx::TensorProto& proto, DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return {proto.float_data_size(), "float_data"};
    case DataType::kFloat64:
      return {proto.double_data_size(), "double_data"};
    case DataType::kInt64:
      return {proto.int64_data_size(), "int64_data"};
    case DataType::kInt32:
    case DataType::kUint8:
    case DataType::kBool:
    case DataType::kInt8:
      return {proto.int32_data_size(), "int32_data"};
  }
  return {0, "no field"};
}

}  // namespace

// The data-type table (server/common/tensor.h) spells the ONNX codes as
// numbers; they must be the generated enum's.
static_assert(onnx::TensorProto::FLOAT == 1 && onnx::TensorProto::UINT8 == 2 &&
                  onnx::TensorProto::INT8 == 3 && onnx::TensorProto::INT32 == 6 &&
                  onnx::TensorProto::INT64 == 7 && onnx::TensorProto::BOOL == 9 &&
                  onnx::TensorProto::DOUBLE == 11,
              "ONNX TensorProto codes differ from server/common/tensor.cc");

absl::StatusOr<DataType> DataTypeFromOnnx(int onnx_type) {
  if (std::optional<DataType> type = common::DataTypeFromOnnxCode(onnx_type)) return *type;
  return absl::UnimplementedError(absl::StrCat(
      "tensor element type ", onnx_type, " (",
      onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(onnx_type)),
      ") is not supported"));
}

int DataTypeToOnnx(DataType type) { return common::Traits(type).onnx; }

absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto, int64_t max_bytes) {
  // External data is never read: a model comes as bytes (FromBytes has no
  // directory to resolve `location` against), so it is refused before any
  // path or size is looked at.
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
  const int64_t elem = static_cast<int64_t>(DataTypeSize(*type));
  // The declared size is checked against the bytes the file really holds
  // before anything proportional to the declared size is allocated: a model
  // of a few dozen bytes declaring [1073741824] floats must not cost 4 GiB.
  int64_t declared = 0;
  if (!DeclaredBytes(shape, elem, &declared)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "' declares shape ", ShapeString(shape),
                     " with a negative dimension or more than 2^63 bytes (zero dimensions left "
                     "out)"));
  }
  int64_t present = 0;
  std::string field;
  if (proto.has_raw_data()) {
    present = static_cast<int64_t>(proto.raw_data().size());
    field = "raw_data";
  } else {
    const auto [values, name] = TypedFieldSize(proto, *type);
    present = values * elem;
    field = absl::StrCat(name, " (", values, " values)");
  }
  if (declared != present) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "' declares shape ", ShapeString(shape), " of ",
                     onnx::TensorProto::DataType_Name(
                         static_cast<onnx::TensorProto::DataType>(proto.data_type())),
                     " (", declared, " bytes) but ", field, " holds ", present, " bytes"));
  }
  if (declared > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("tensor '", proto.name(), "' of ", declared,
                                                     " bytes exceeds max_tensor_bytes (", max_bytes,
                                                     ")"));
  }
  Tensor t = Tensor::Zeros(*type, shape);
  const size_t nbytes = t.bytes.size();
  if (proto.has_raw_data()) {
    if (nbytes) std::memcpy(t.bytes.data(), proto.raw_data().data(), nbytes);
    return t;
  }
  switch (*type) {
    case DataType::kFloat32:
      CopyField<float>(proto.float_data(), t);
      break;
    case DataType::kFloat64:
      CopyField<double>(proto.double_data(), t);
      break;
    case DataType::kInt64:
      CopyField<int64_t>(proto.int64_data(), t);
      break;
    case DataType::kInt32:
      CopyField<int32_t>(proto.int32_data(), t);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      CopyField<uint8_t>(proto.int32_data(), t);
      break;
    case DataType::kInt8:
      CopyField<int8_t>(proto.int32_data(), t);
      break;
  }
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
