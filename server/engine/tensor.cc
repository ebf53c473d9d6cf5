// Host tensor helpers declared in tensor.h.
#include "server/engine/tensor.h"

#include <limits>

namespace rectifier::engine {

const char* DataTypeName(DataType type) {
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
  return "UNKNOWN";
}

size_t DataTypeSize(DataType type) {
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
  return 0;
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  // An empty tensor may list huge dimensions next to its 0 (a model file can
  // declare them): it has no elements, whatever the product of the others.
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  int64_t n = 1;
  for (int64_t d : shape) {
    // Callers bound sizes before allocating; never overflow on the way.
    if (__builtin_mul_overflow(n, d, &n)) return std::numeric_limits<int64_t>::max();
  }
  return n;
}

Tensor Tensor::Zeros(DataType type, std::vector<int64_t> shape) {
  Tensor t;
  t.type = type;
  t.bytes.resize(static_cast<size_t>(NumElements(shape)) * DataTypeSize(type));
  t.shape = std::move(shape);
  return t;
}

}  // namespace rectifier::engine
