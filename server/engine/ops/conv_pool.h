// Convolution / deconvolution / pooling geometry: resolves ONNX attributes
// (auto_pad, ceil_mode, dilations, output_shape) into explicit oneDNN-style
// parameters. Shared by shape inference and lowering.
#ifndef RECTIFIER_SERVER_ENGINE_OPS_CONV_POOL_H_
#define RECTIFIER_SERVER_ENGINE_OPS_CONV_POOL_H_

#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

struct WindowGeometry {
  int64_t groups = 1;
  std::vector<int64_t> kernel, strides, dilations;  // dilations in ONNX terms (1 = dense)
  std::vector<int64_t> pad_begin, pad_end;          // pad_end includes ceil_mode extension
  std::vector<int64_t> out_shape;                   // full output shape
};

// Conv: x [N, C, spatial...], w [M, C/group, k...].
absl::StatusOr<WindowGeometry> ResolveConv(const Node& node, const std::vector<int64_t>& x,
                                           const std::vector<int64_t>& w);
// ConvTranspose: w [C, M/group, k...].
absl::StatusOr<WindowGeometry> ResolveConvTranspose(const Node& node, const std::vector<int64_t>& x,
                                                    const std::vector<int64_t>& w);
// MaxPool / AveragePool / LpPool (kernel_shape) and the Global* pools.
absl::StatusOr<WindowGeometry> ResolvePool(const Node& node, const std::vector<int64_t>& x);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_CONV_POOL_H_
