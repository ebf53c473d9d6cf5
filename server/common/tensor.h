// Host tensors as every layer sees them: a shape, an element type and an
// owned, contiguous, row-major buffer; and the one table of element types
// with each type's name in every vocabulary the server speaks (engine,
// ONNX, model config, KServe v2) and its size.
#ifndef RECTIFIER_SERVER_COMMON_TENSOR_H_
#define RECTIFIER_SERVER_COMMON_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rectifier::common {

enum class DataType { kFloat32, kInt64, kInt32, kUint8, kInt8, kBool, kFloat64 };

// One row of the data-type table.
struct DataTypeTraits {
  DataType type;
  const char* kserve;  // KServe v2 / Triton datatype ("FP32", "INT64", ...)
  int onnx;            // onnx::TensorProto::DataType value
  int config;          // inference::DataType value (proto/model_config.proto)
  size_t size;         // bytes per element
};

// Every supported type, in enum order. The ONNX and config codes are
// checked against the generated enums where those are compiled
// (onnx_tensor.cc, model_config.cc).
const std::vector<DataTypeTraits>& AllDataTypes();
const DataTypeTraits& Traits(DataType type);

// Name as in the KServe v2 protocol ("FP32", "INT64", ...).
inline const char* DataTypeName(DataType type) { return Traits(type).kserve; }
inline size_t DataTypeSize(DataType type) { return Traits(type).size; }

// Inverses; nullopt for types outside the table.
std::optional<DataType> DataTypeFromKServe(std::string_view name);
std::optional<DataType> DataTypeFromOnnxCode(int onnx);
std::optional<DataType> DataTypeFromConfigCode(int config);

// Product of dims; 1 for a scalar (empty shape), 0 when any dim is 0, and
// INT64_MAX instead of overflowing.
int64_t NumElements(const std::vector<int64_t>& shape);

// A dense row-major tensor that owns its bytes. Cheap to move.
struct Tensor {
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // NumElements(shape) * DataTypeSize(type)

  static Tensor Zeros(DataType type, std::vector<int64_t> shape);
  // A copy of `data`, which must hold NumElements(shape) elements of `type`:
  // one pass over the bytes (Zeros then a copy would write them twice).
  static Tensor CopyOf(DataType type, std::vector<int64_t> shape, const void* data);
  template <typename T>
  T* data() {
    return reinterpret_cast<T*>(bytes.data());
  }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
  int64_t num_elements() const { return NumElements(shape); }
};

// Metadata of a model input or output. A dimension of -1 is variable
// (in practice: the batch dimension of a batchable model).
struct TensorInfo {
  std::string name;
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
};

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_TENSOR_H_
