// NN op helpers shared between reference kernels and lowering (softmax
// geometry, Resize parameter resolution and its reference kernel).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_NN_OPS_H_
#define RECTIFIER_SERVER_ENGINE_OPS_NN_OPS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {

// Which dims a Reduce* node reduces (axes from the attribute, or from a
// constant input from opset 18 / ReduceSum 13).
absl::StatusOr<std::vector<bool>> ReduceMask(const Node& n, const std::vector<ValueInfo>& in);

// Softmax over [outer, axis, inner] (opset < 13 folds trailing dims into axis).
struct SoftmaxGeometry {
  int64_t outer = 1, axis = 1, inner = 1;
};
SoftmaxGeometry ResolveSoftmax(const Node& node, const std::vector<int64_t>& shape);

struct ResizeSpec {
  bool linear = false;
  std::string coord;    // coordinate_transformation_mode
  std::string nearest;  // nearest_mode
  std::vector<float> scales;
  std::vector<int64_t> out_shape;
  // Resized length per dim as align_corners sees it: sizes[d], or
  // in[d] * scales[d] before flooring.
  std::vector<float> resized_len;
};
// Resolves Resize (any opset) and Upsample. UNIMPLEMENTED naming the
// attribute for cubic mode, tf_crop_and_resize, antialias.
absl::StatusOr<ResizeSpec> ResolveResize(const Node& node, const std::vector<ValueInfo>& in);
void RunResize(const ResizeSpec& spec, const std::vector<int64_t>& in_shape, const float* x,
               float* y);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_NN_OPS_H_
