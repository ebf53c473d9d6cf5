// Host tensors as every layer sees them: a shape, an element type and an
// owned, contiguous, row-major buffer (or, for a request's inputs, a view of
// the bytes the request arrived in); and the one table of element types
// with each type's name in every vocabulary the server speaks (engine,
// ONNX, model config, KServe v2) and its size.
#ifndef RECTIFIER_SERVER_COMMON_TENSOR_H_
#define RECTIFIER_SERVER_COMMON_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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

struct TensorView;

// A dense row-major tensor that owns its bytes. Cheap to move.
struct Tensor {
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // NumElements(shape) * DataTypeSize(type)

  static Tensor Zeros(DataType type, std::vector<int64_t> shape);
  // A copy of `data`, which must hold NumElements(shape) elements of `type`:
  // one pass over the bytes (Zeros then a copy would write them twice).
  static Tensor CopyOf(DataType type, std::vector<int64_t> shape, const void* data);
  static Tensor CopyOf(const TensorView& view);
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

// Read-only bytes that belong to someone else; the `bytes` of a
// TensorView.
struct ConstBytes {
  const std::byte* ptr = nullptr;
  size_t count = 0;

  const std::byte* data() const { return ptr; }
  size_t size() const { return count; }
  bool empty() const { return count == 0; }
};

// A tensor whose bytes belong to something else (a Tensor, the request
// message they arrived in), valid while that owner is. Its fields are
// Tensor's, so code over either reads `type`, `shape` and `bytes`.
struct TensorView {
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  ConstBytes bytes;

  static TensorView Of(const Tensor& tensor) {
    return {tensor.type, tensor.shape, {tensor.bytes.data(), tensor.bytes.size()}};
  }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
  int64_t num_elements() const { return NumElements(shape); }
};

// A request's input on its way through the scheduler: a view whose bytes
// the input owns (a decoded image, a converted or copied tensor) or borrows
// from the message the request arrived in. Whoever borrows keeps those bytes
// alive and unchanged until the request's `done` has been called.
// Move-only: a move keeps the owned buffer where it is, so the view stays
// valid.
class InputTensor : public TensorView {
 public:
  InputTensor() = default;
  // Takes the tensor's bytes (no copy). Implicit: owning is the common case.
  InputTensor(Tensor tensor)  // NOLINT(google-explicit-constructor)
      : TensorView{tensor.type, std::move(tensor.shape), {}}, owned_(std::move(tensor.bytes)) {
    bytes = {owned_.data(), owned_.size()};
  }
  // Views `size` bytes at `data`, which the caller keeps alive (above).
  static InputTensor Borrow(DataType type, std::vector<int64_t> shape, const void* data,
                            size_t size) {
    InputTensor input;
    input.type = type;
    input.shape = std::move(shape);
    input.bytes = {static_cast<const std::byte*>(data), size};
    return input;
  }
  InputTensor(InputTensor&&) = default;
  InputTensor& operator=(InputTensor&&) = default;
  InputTensor(const InputTensor&) = delete;
  InputTensor& operator=(const InputTensor&) = delete;
  ~InputTensor() = default;

  // Whether the bytes are someone else's (a view of the request).
  bool borrowed() const { return !bytes.empty() && owned_.empty(); }
  // The view alone (for executors, which never own the request's inputs).
  TensorView view() const { return {type, shape, bytes}; }

 private:
  std::vector<std::byte> owned_;
};

// Views of every tensor, in order; valid while the tensors are.
std::vector<TensorView> ViewsOf(const std::vector<Tensor>& tensors);
std::vector<TensorView> ViewsOf(const std::vector<InputTensor>& inputs);

// Metadata of a model input or output. A dimension of -1 is variable
// (in practice: the batch dimension of a batchable model).
struct TensorInfo {
  std::string name;
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
};

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_TENSOR_H_
