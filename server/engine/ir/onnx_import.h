// ONNX import: bytes -> onnx::ModelProto -> Graph (initializers and Constant
// nodes become constants, graph inputs bound by the caller become constants).
#ifndef RECTIFIER_SERVER_ENGINE_IR_ONNX_IMPORT_H_
#define RECTIFIER_SERVER_ENGINE_IR_ONNX_IMPORT_H_

#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

// INVALID_ARGUMENT for bytes that are not a model, or a malformed graph
// (cycle, dangling input, duplicate producer); UNIMPLEMENTED for a non-default
// op domain or an opset outside 7..21; RESOURCE_EXHAUSTED for a constant over
// max_tensor_bytes.
absl::StatusOr<Graph> ImportOnnx(std::string_view bytes,
                                 const std::map<std::string, Tensor>& constant_inputs,
                                 int64_t max_tensor_bytes);
absl::StatusOr<Graph> ImportModelProto(const onnx::ModelProto& model,
                                       const std::map<std::string, Tensor>& constant_inputs,
                                       int64_t max_tensor_bytes);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_IR_ONNX_IMPORT_H_
