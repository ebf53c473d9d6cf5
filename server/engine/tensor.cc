// Host tensor helpers declared in tensor.h.
#include "server/engine/tensor.h"

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
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
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
