// Conversion between onnx::TensorProto and engine Tensors (initializers,
// Constant nodes, and the .pb files that rectifier-engine reads and writes).
#ifndef RECTIFIER_SERVER_ENGINE_IR_ONNX_TENSOR_H_
#define RECTIFIER_SERVER_ENGINE_IR_ONNX_TENSOR_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

// ONNX TensorProto_DataType -> DataType. UNIMPLEMENTED for types the engine
// does not carry (float16, strings, complex...).
absl::StatusOr<DataType> DataTypeFromOnnx(int onnx_type);
int DataTypeToOnnx(DataType type);

// Decodes raw_data or the typed repeated fields. INVALID_ARGUMENT (naming
// the tensor, its declared shape and the bytes present) when the payload
// size disagrees with the dims, or for a negative dim or a byte size beyond
// int64; RESOURCE_EXHAUSTED above max_bytes; UNIMPLEMENTED for external data.
// All of these are decided before anything of the declared size is
// allocated, so memory use is bounded by the size of `proto` itself.
absl::StatusOr<Tensor> TensorFromProto(const onnx::TensorProto& proto,
                                       int64_t max_bytes = int64_t{4} << 30);
onnx::TensorProto TensorToProto(const Tensor& tensor, const std::string& name);

absl::StatusOr<Tensor> ReadTensorFile(const std::string& path);
absl::Status WriteTensorFile(const Tensor& tensor, const std::string& name,
                             const std::string& path);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_IR_ONNX_TENSOR_H_
