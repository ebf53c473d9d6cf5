#include "server/common/tensor.h"

#include <limits>

namespace rectifier::common {

const std::vector<DataTypeTraits>& AllDataTypes() {
  // ONNX codes: FLOAT 1, UINT8 2, INT8 3, INT32 6, INT64 7, BOOL 9, DOUBLE 11.
  // Config codes: TYPE_BOOL 1, TYPE_UINT8 2, TYPE_INT8 6, TYPE_INT32 8,
  // TYPE_INT64 9, TYPE_FP32 11, TYPE_FP64 12.
  static const std::vector<DataTypeTraits> kTable = {
      {DataType::kFloat32, "FP32", 1, 11, 4},  {DataType::kInt64, "INT64", 7, 9, 8},
      {DataType::kInt32, "INT32", 6, 8, 4},    {DataType::kUint8, "UINT8", 2, 2, 1},
      {DataType::kInt8, "INT8", 3, 6, 1},      {DataType::kBool, "BOOL", 9, 1, 1},
      {DataType::kFloat64, "FP64", 11, 12, 8},
  };
  return kTable;
}

const DataTypeTraits& Traits(DataType type) {
  static const DataTypeTraits kUnknown = {DataType::kFloat32, "UNKNOWN", 0, 0, 0};
  const auto index = static_cast<size_t>(type);
  return index < AllDataTypes().size() ? AllDataTypes()[index] : kUnknown;
}

std::optional<DataType> DataTypeFromKServe(std::string_view name) {
  for (const auto& t : AllDataTypes())
    if (name == t.kserve) return t.type;
  return std::nullopt;
}

std::optional<DataType> DataTypeFromOnnxCode(int onnx) {
  for (const auto& t : AllDataTypes())
    if (onnx == t.onnx) return t.type;
  return std::nullopt;
}

std::optional<DataType> DataTypeFromConfigCode(int config) {
  for (const auto& t : AllDataTypes())
    if (config == t.config) return t.type;
  return std::nullopt;
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

Tensor Tensor::CopyOf(DataType type, std::vector<int64_t> shape, const void* data) {
  Tensor t;
  t.type = type;
  const size_t n = static_cast<size_t>(NumElements(shape)) * DataTypeSize(type);
  const auto* first = static_cast<const std::byte*>(data);
  if (n > 0) t.bytes.assign(first, first + n);
  t.shape = std::move(shape);
  return t;
}

Tensor Tensor::CopyOf(const TensorView& view) {
  return CopyOf(view.type, view.shape, view.bytes.data());
}

std::vector<TensorView> ViewsOf(const std::vector<Tensor>& tensors) {
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const Tensor& t : tensors) views.push_back(TensorView::Of(t));
  return views;
}

std::vector<TensorView> ViewsOf(const std::vector<InputTensor>& inputs) {
  std::vector<TensorView> views;
  views.reserve(inputs.size());
  for (const InputTensor& input : inputs) views.push_back(input.view());
  return views;
}

}  // namespace rectifier::common
