// Reading and writing tensors as NumPy .npy or ONNX TensorProto .pb files,
// the formats rectifier-client and rectifier-engine exchange with other tools.
#ifndef RECTIFIER_TOOLS_CLIENT_TENSOR_FILE_H_
#define RECTIFIER_TOOLS_CLIENT_TENSOR_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"

namespace rectifier::tools {

// By extension: ".npy" (little-endian, C order; f4, f8, u1, i1, i4, i8, b1)
// or ".pb" (serialized onnx.TensorProto, decoded by the engine's TensorFromProto).
absl::StatusOr<engine::Tensor> ReadTensorFile(const std::string& path);
absl::Status WriteNpy(const std::string& path, const engine::Tensor& tensor);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_TENSOR_FILE_H_
