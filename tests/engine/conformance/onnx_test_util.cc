// Implementation of the shared engine test helpers (tensor conversion,
// comparison, graph builder).
#include "tests/engine/conformance/onnx_test_util.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace rectifier::engine::testing {
namespace {

size_t ElementSize(DataType type) {
  switch (type) {
    case DataType::kFloat32:
    case DataType::kInt32:
      return 4;
    case DataType::kInt64:
    case DataType::kFloat64:
      return 8;
    case DataType::kUint8:
    case DataType::kInt8:
    case DataType::kBool:
      return 1;
  }
  return 1;
}

const char* TypeName(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return "FP32";
    case DataType::kInt64:
      return "INT64";
    case DataType::kInt32:
      return "INT32";
    case DataType::kUint8:
      return "UINT8";
    case DataType::kInt8:
      return "INT8";
    case DataType::kBool:
      return "BOOL";
    case DataType::kFloat64:
      return "FP64";
  }
  return "?";
}

// Product of dims with an overflow guard; -1 when negative or too large.
int64_t CheckedNumElements(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return -1;
    if (dim != 0 && count > (int64_t{1} << 40) / dim) return -1;
    count *= dim;
  }
  return count;
}

template <typename Dst, typename Field>
void CopyTyped(const Field& field, Tensor* tensor) {
  Dst* out = tensor->data<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
}

bool IsFloating(DataType type) { return type == DataType::kFloat32 || type == DataType::kFloat64; }

int64_t ElementAsInt64(const Tensor& tensor, int64_t index) {
  switch (tensor.type) {
    case DataType::kInt64:
      return tensor.data<int64_t>()[index];
    case DataType::kInt32:
      return tensor.data<int32_t>()[index];
    case DataType::kUint8:
      return tensor.data<uint8_t>()[index];
    case DataType::kInt8:
      return tensor.data<int8_t>()[index];
    case DataType::kBool:
      return tensor.data<uint8_t>()[index] != 0 ? 1 : 0;
    case DataType::kFloat32:
      return static_cast<int64_t>(tensor.data<float>()[index]);
    case DataType::kFloat64:
      return static_cast<int64_t>(tensor.data<double>()[index]);
  }
  return 0;
}

std::string IndexString(const std::vector<int64_t>& shape, int64_t flat) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] > 0) {
      index[d] = flat % shape[d];
      flat /= shape[d];
    }
  }
  return absl::StrCat("[", absl::StrJoin(index, ","), "]");
}

onnx::TypeProto MakeTensorType(const std::vector<int64_t>& shape, int32_t elem_type,
                               bool has_shape) {
  onnx::TypeProto type;
  type.mutable_tensor_type()->set_elem_type(elem_type);
  if (has_shape) {
    onnx::TensorShapeProto* proto_shape = type.mutable_tensor_type()->mutable_shape();
    for (int64_t dim : shape) {
      if (dim < 0) {
        proto_shape->add_dim()->set_dim_param("N");
      } else {
        proto_shape->add_dim()->set_dim_value(dim);
      }
    }
  }
  return type;
}

onnx::AttributeProto* AddAttr(onnx::NodeProto* node, const std::string& name,
                              onnx::AttributeProto::AttributeType type) {
  onnx::AttributeProto* attr = node->add_attribute();
  attr->set_name(name);
  attr->set_type(type);
  return attr;
}

}  // namespace

absl::StatusOr<DataType> DataTypeFromOnnx(int32_t elem_type) {
  switch (elem_type) {
    case onnx::TensorProto::FLOAT:
      return DataType::kFloat32;
    case onnx::TensorProto::DOUBLE:
      return DataType::kFloat64;
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
    default:
      return absl::UnimplementedError(
          absl::StrCat("element type ", OnnxTypeName(elem_type), " has no engine::DataType"));
  }
}

int32_t OnnxFromDataType(DataType type) {
  switch (type) {
    case DataType::kFloat32:
      return onnx::TensorProto::FLOAT;
    case DataType::kFloat64:
      return onnx::TensorProto::DOUBLE;
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
  }
  return onnx::TensorProto::UNDEFINED;
}

std::string OnnxTypeName(int32_t elem_type) {
  if (onnx::TensorProto::DataType_IsValid(elem_type)) {
    return onnx::TensorProto::DataType_Name(static_cast<onnx::TensorProto::DataType>(elem_type));
  }
  return absl::StrCat("type#", elem_type);
}

absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto) {
  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    return absl::UnimplementedError(absl::StrCat("tensor '", proto.name(), "' uses external data"));
  }
  absl::StatusOr<DataType> type = DataTypeFromOnnx(proto.data_type());
  if (!type.ok()) {
    return type.status();
  }
  Tensor tensor;
  tensor.type = *type;
  tensor.shape.assign(proto.dims().begin(), proto.dims().end());
  const int64_t count = CheckedNumElements(tensor.shape);
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", proto.name(), "' has bad dims ", ShapeString(tensor.shape)));
  }
  const size_t element_size = ElementSize(tensor.type);
  tensor.bytes.resize(static_cast<size_t>(count) * element_size);

  if (proto.has_raw_data()) {
    if (proto.raw_data().size() != tensor.bytes.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor '", proto.name(), "': raw_data has ", proto.raw_data().size(),
                       " bytes, dims ", ShapeString(tensor.shape), " need ", tensor.bytes.size()));
    }
    // ONNX raw data is little-endian, as is every machine this runs on.
    if (!tensor.bytes.empty()) {
      std::memcpy(tensor.bytes.data(), proto.raw_data().data(), tensor.bytes.size());
    }
    return tensor;
  }
  int64_t typed_count = -1;
  switch (tensor.type) {
    case DataType::kFloat32:
      typed_count = proto.float_data_size();
      if (typed_count == count) CopyTyped<float>(proto.float_data(), &tensor);
      break;
    case DataType::kFloat64:
      typed_count = proto.double_data_size();
      if (typed_count == count) CopyTyped<double>(proto.double_data(), &tensor);
      break;
    case DataType::kInt64:
      typed_count = proto.int64_data_size();
      if (typed_count == count) CopyTyped<int64_t>(proto.int64_data(), &tensor);
      break;
    case DataType::kInt32:
      typed_count = proto.int32_data_size();
      if (typed_count == count) CopyTyped<int32_t>(proto.int32_data(), &tensor);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      typed_count = proto.int32_data_size();
      if (typed_count == count) CopyTyped<uint8_t>(proto.int32_data(), &tensor);
      break;
    case DataType::kInt8:
      typed_count = proto.int32_data_size();
      if (typed_count == count) CopyTyped<int8_t>(proto.int32_data(), &tensor);
      break;
  }
  if (typed_count != count) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", proto.name(), "' has ", typed_count,
                                                   " values, dims ", ShapeString(tensor.shape),
                                                   " need ", count));
  }
  return tensor;
}

onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(OnnxFromDataType(tensor.type));
  for (int64_t dim : tensor.shape) proto.add_dims(dim);
  proto.set_raw_data(reinterpret_cast<const char*>(tensor.bytes.data()), tensor.bytes.size());
  return proto;
}

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::InternalError(absl::StrCat("cannot read ", path));
  return std::move(contents).str();
}

absl::StatusOr<onnx::TensorProto> ReadTensorProtoFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileBytes(path);
  if (!bytes.ok()) return bytes.status();
  onnx::TensorProto proto;
  if (!proto.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a TensorProto"));
  }
  return proto;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

double ElementAsDouble(const Tensor& tensor, int64_t index) {
  switch (tensor.type) {
    case DataType::kFloat32:
      return tensor.data<float>()[index];
    case DataType::kFloat64:
      return tensor.data<double>()[index];
    default:
      return static_cast<double>(ElementAsInt64(tensor, index));
  }
}

std::string CompareTensors(const Tensor& want, const Tensor& got, const Tolerance& tolerance) {
  if (want.type != got.type) {
    return absl::StrCat("type: want ", TypeName(want.type), ", got ", TypeName(got.type));
  }
  if (want.shape != got.shape) {
    return absl::StrCat("shape: want ", ShapeString(want.shape), ", got ", ShapeString(got.shape));
  }
  const int64_t count = CheckedNumElements(want.shape);
  const size_t need = static_cast<size_t>(count) * ElementSize(want.type);
  if (want.bytes.size() != need || got.bytes.size() != need) {
    return absl::StrCat("bytes: shape ", ShapeString(want.shape), " needs ", need, ", want has ",
                        want.bytes.size(), ", got has ", got.bytes.size());
  }
  int64_t mismatches = 0;
  int64_t worst = -1;
  double worst_excess = -1.0;
  for (int64_t i = 0; i < count; ++i) {
    bool ok;
    double excess = 0.0;
    if (IsFloating(want.type)) {
      const double w = ElementAsDouble(want, i);
      const double g = ElementAsDouble(got, i);
      if (std::isnan(w) || std::isnan(g)) {
        ok = std::isnan(w) && std::isnan(g);
        excess = std::numeric_limits<double>::infinity();
      } else if (std::isinf(w) || std::isinf(g)) {
        ok = w == g;
        excess = std::numeric_limits<double>::infinity();
      } else {
        const double diff = std::fabs(g - w);
        const double allowed = tolerance.atol + tolerance.rtol * std::fabs(w);
        ok = diff <= allowed;
        excess = diff - allowed;
      }
    } else {
      ok = ElementAsInt64(want, i) == ElementAsInt64(got, i);
      excess = 1.0;
    }
    if (!ok) {
      ++mismatches;
      if (excess > worst_excess) {
        worst_excess = excess;
        worst = i;
      }
    }
  }
  if (mismatches == 0) return "";
  return absl::StrFormat(
      "%d of %d elements differ (rtol %g, atol %g); worst at %s: want %.9g, got %.9g", mismatches,
      count, tolerance.rtol, tolerance.atol, IndexString(want.shape, worst),
      ElementAsDouble(want, worst), ElementAsDouble(got, worst));
}

Tensor FloatTensor(std::vector<int64_t> shape, const std::vector<float>& values) {
  Tensor tensor;
  tensor.type = DataType::kFloat32;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

Tensor Int64Tensor(std::vector<int64_t> shape, const std::vector<int64_t>& values) {
  Tensor tensor;
  tensor.type = DataType::kInt64;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(values.size() * sizeof(int64_t));
  if (!values.empty()) std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

std::vector<float> RandomFloats(int64_t count, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = dist(rng);
  return values;
}

Tensor RandomFloatTensor(std::vector<int64_t> shape, uint32_t seed, float lo, float hi) {
  const int64_t count = CheckedNumElements(shape);
  return FloatTensor(std::move(shape), RandomFloats(count, seed, lo, hi));
}

ModelBuilder::ModelBuilder(int64_t opset) {
  // IR version 7 is what opset 13 shipped with; newer opsets accept it too.
  model_.set_ir_version(opset >= 14 ? 8 : 7);
  model_.set_producer_name("rectifier-tests");
  onnx::OperatorSetIdProto* import = model_.add_opset_import();
  import->set_domain("");
  import->set_version(opset);
  model_.mutable_graph()->set_name("test_graph");
}

ModelBuilder& ModelBuilder::Input(const std::string& name, const std::vector<int64_t>& shape,
                                  int32_t elem_type) {
  onnx::ValueInfoProto* input = graph()->add_input();
  input->set_name(name);
  *input->mutable_type() = MakeTensorType(shape, elem_type, /*has_shape=*/true);
  return *this;
}

ModelBuilder& ModelBuilder::Output(const std::string& name, const std::vector<int64_t>& shape,
                                   int32_t elem_type, bool has_shape) {
  onnx::ValueInfoProto* output = graph()->add_output();
  output->set_name(name);
  *output->mutable_type() = MakeTensorType(shape, elem_type, has_shape);
  return *this;
}

ModelBuilder& ModelBuilder::Initializer(const std::string& name, const Tensor& value) {
  *graph()->add_initializer() = TensorToProto(value, name);
  return *this;
}

onnx::NodeProto* ModelBuilder::Node(const std::string& op_type,
                                    const std::vector<std::string>& inputs,
                                    const std::vector<std::string>& outputs,
                                    const std::string& name) {
  onnx::NodeProto* node = graph()->add_node();
  node->set_op_type(op_type);
  node->set_name(name.empty() ? absl::StrCat(op_type, "_", node_count_) : name);
  ++node_count_;
  for (const std::string& input : inputs) node->add_input(input);
  for (const std::string& output : outputs) node->add_output(output);
  return node;
}

std::string ModelBuilder::Bytes() const { return model_.SerializeAsString(); }

void AttrInt(onnx::NodeProto* node, const std::string& name, int64_t value) {
  AddAttr(node, name, onnx::AttributeProto::INT)->set_i(value);
}

void AttrFloat(onnx::NodeProto* node, const std::string& name, float value) {
  AddAttr(node, name, onnx::AttributeProto::FLOAT)->set_f(value);
}

void AttrInts(onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values) {
  onnx::AttributeProto* attr = AddAttr(node, name, onnx::AttributeProto::INTS);
  for (int64_t v : values) attr->add_ints(v);
}

void AttrFloats(onnx::NodeProto* node, const std::string& name, const std::vector<float>& values) {
  onnx::AttributeProto* attr = AddAttr(node, name, onnx::AttributeProto::FLOATS);
  for (float v : values) attr->add_floats(v);
}

void AttrString(onnx::NodeProto* node, const std::string& name, const std::string& value) {
  AddAttr(node, name, onnx::AttributeProto::STRING)->set_s(value);
}

}  // namespace rectifier::engine::testing
