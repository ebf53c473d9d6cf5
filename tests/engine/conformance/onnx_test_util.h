// Helpers shared by the engine conformance, reference and bad-model tests:
// TensorProto <-> engine::Tensor conversion, tolerance comparison and a small
// builder for ONNX graphs written in code.
#ifndef RECTIFIER_TESTS_ENGINE_CONFORMANCE_ONNX_TEST_UTIL_H_
#define RECTIFIER_TESTS_ENGINE_CONFORMANCE_ONNX_TEST_UTIL_H_

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"

namespace rectifier::engine::testing {

// ONNX element type (TensorProto::DataType) <-> engine DataType. UNIMPLEMENTED
// for types engine::Tensor cannot hold (FLOAT16, STRING, UINT16, ...).
absl::StatusOr<DataType> DataTypeFromOnnx(int32_t elem_type);
int32_t OnnxFromDataType(DataType type);
// "FLOAT", "INT64", ... (TensorProto::DataType_Name), or "type#N".
std::string OnnxTypeName(int32_t elem_type);

// Decodes typed fields or raw_data (little-endian, as ONNX stores it).
// UNIMPLEMENTED for unsupported element types and external data;
// INVALID_ARGUMENT when the amount of data does not match the dims.
absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto);
// Encodes `tensor` as raw_data.
onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name);

// Reads a whole file; NOT_FOUND / INTERNAL on I/O errors.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);
// Reads a serialized onnx.TensorProto (an input_N.pb / output_N.pb file).
absl::StatusOr<onnx::TensorProto> ReadTensorProtoFile(const std::string& path);

// "[2,3,5]"; "[]" for a scalar.
std::string ShapeString(const std::vector<int64_t>& shape);

// Element-wise agreement: floating types pass when
// |got - want| <= atol + rtol * |want|, NaN matches only NaN and infinities
// must be equal; integer and bool types must be equal. Type and shape must
// match exactly.
struct Tolerance {
  double rtol = 1e-4;
  double atol = 1e-5;
};
// Empty when `got` agrees with `want`; otherwise a one-line description
// (mismatch count, worst element with its index and both values).
std::string CompareTensors(const Tensor& want, const Tensor& got, const Tolerance& tolerance);

// Element i of a tensor of any type, as double (bool as 0/1).
double ElementAsDouble(const Tensor& tensor, int64_t index);

Tensor FloatTensor(std::vector<int64_t> shape, const std::vector<float>& values);
Tensor Int64Tensor(std::vector<int64_t> shape, const std::vector<int64_t>& values);
// Uniform in [lo, hi), deterministic for a seed.
std::vector<float> RandomFloats(int64_t count, uint32_t seed, float lo = -1.0f, float hi = 1.0f);
Tensor RandomFloatTensor(std::vector<int64_t> shape, uint32_t seed, float lo = -1.0f,
                         float hi = 1.0f);

// Builds a single-graph ONNX model in the default domain. Dimensions of -1
// in Input/Output shapes become the symbolic dimension "N".
class ModelBuilder {
 public:
  explicit ModelBuilder(int64_t opset = 13);

  ModelBuilder& Input(const std::string& name, const std::vector<int64_t>& shape,
                      int32_t elem_type = onnx::TensorProto::FLOAT);
  // An output without a declared shape when `shape` is empty and `has_shape`
  // is false (the engine computes it).
  ModelBuilder& Output(const std::string& name, const std::vector<int64_t>& shape = {},
                       int32_t elem_type = onnx::TensorProto::FLOAT, bool has_shape = true);
  ModelBuilder& Initializer(const std::string& name, const Tensor& value);
  // Returns the node so attributes can be added with the Attr* helpers.
  onnx::NodeProto* Node(const std::string& op_type, const std::vector<std::string>& inputs,
                        const std::vector<std::string>& outputs, const std::string& name = "");

  onnx::ModelProto& model() { return model_; }
  onnx::GraphProto* graph() { return model_.mutable_graph(); }
  std::string Bytes() const;

 private:
  onnx::ModelProto model_;
  int node_count_ = 0;
};

void AttrInt(onnx::NodeProto* node, const std::string& name, int64_t value);
void AttrFloat(onnx::NodeProto* node, const std::string& name, float value);
void AttrInts(onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& values);
void AttrFloats(onnx::NodeProto* node, const std::string& name, const std::vector<float>& values);
void AttrString(onnx::NodeProto* node, const std::string& name, const std::string& value);

}  // namespace rectifier::engine::testing

#endif  // RECTIFIER_TESTS_ENGINE_CONFORMANCE_ONNX_TEST_UTIL_H_
