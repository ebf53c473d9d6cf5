// Host tensors exchanged with the engine: a shape, an element type and an
// owned, contiguous, row-major buffer.
#ifndef RECTIFIER_SERVER_ENGINE_TENSOR_H_
#define RECTIFIER_SERVER_ENGINE_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rectifier::engine {

enum class DataType { kFloat32, kInt64, kInt32, kUint8, kInt8, kBool, kFloat64 };

// Name as in the KServe v2 protocol ("FP32", "INT64", ...).
const char* DataTypeName(DataType type);
size_t DataTypeSize(DataType type);

// Product of dims; 1 for a scalar (empty shape).
int64_t NumElements(const std::vector<int64_t>& shape);

// A dense row-major tensor that owns its bytes. Cheap to move.
struct Tensor {
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // NumElements(shape) * DataTypeSize(type)

  static Tensor Zeros(DataType type, std::vector<int64_t> shape);
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

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_TENSOR_H_
