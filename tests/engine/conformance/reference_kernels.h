// Naive reference kernels (NCHW float, double accumulation) that the engine's
// oneDNN path is checked against. Written for clarity, not speed; each follows
// the ONNX operator specification literally.
#ifndef RECTIFIER_TESTS_ENGINE_CONFORMANCE_REFERENCE_KERNELS_H_
#define RECTIFIER_TESTS_ENGINE_CONFORMANCE_REFERENCE_KERNELS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "server/engine/tensor.h"

namespace rectifier::engine::testing {

// 2-D convolution. x: [N, C, H, W]; w: [M, C / group, KH, KW]; bias: [M] or
// null. pads: {top, left, bottom, right} (ONNX order: all begins, then ends).
struct ConvParams {
  int64_t group = 1;
  std::vector<int64_t> strides = {1, 1};
  std::vector<int64_t> dilations = {1, 1};
  std::vector<int64_t> pads = {0, 0, 0, 0};
};
Tensor ReferenceConv(const Tensor& x, const Tensor& w, const Tensor* bias,
                     const ConvParams& params);

// 2-D transposed convolution. w: [C, M / group, KH, KW]. Output size per axis:
// stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end.
struct ConvTransposeParams {
  int64_t group = 1;
  std::vector<int64_t> strides = {1, 1};
  std::vector<int64_t> dilations = {1, 1};
  std::vector<int64_t> pads = {0, 0, 0, 0};
  std::vector<int64_t> output_padding = {0, 0};
};
Tensor ReferenceConvTranspose(const Tensor& x, const Tensor& w, const Tensor* bias,
                              const ConvTransposeParams& params);

// Output length of a conv/pool window sweep:
// floor_or_ceil((in + pad_begin + pad_end - ((kernel - 1) * dilation + 1)) / stride) + 1.
int64_t WindowOutputSize(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                         int64_t pad_end, int64_t dilation, bool ceil_mode);

// 2-D pooling. Max ignores padding; Average divides by the number of window
// positions inside the input, or, with count_include_pad, inside the padded
// input [-pad_begin, in + pad_end) (the part of a ceil_mode window beyond the
// end padding never counts, as in the ONNX reference and PyTorch).
struct PoolParams {
  std::vector<int64_t> kernel = {2, 2};
  std::vector<int64_t> strides = {1, 1};
  std::vector<int64_t> dilations = {1, 1};
  std::vector<int64_t> pads = {0, 0, 0, 0};
  bool ceil_mode = false;
  bool count_include_pad = false;
};
Tensor ReferenceMaxPool(const Tensor& x, const PoolParams& params);
Tensor ReferenceAveragePool(const Tensor& x, const PoolParams& params);

// Resize of H and W (N and C kept) to out_h x out_w. `scale_h`/`scale_w` are
// the factors the coordinate transform divides by: the given scales, or
// out / in when the model gives sizes. mode: "nearest" or "linear";
// coordinate_transformation_mode: half_pixel, pytorch_half_pixel,
// align_corners, asymmetric, tf_half_pixel_for_nearest; nearest_mode:
// round_prefer_floor, round_prefer_ceil, floor, ceil. Source indices are
// clamped to the input (edge padding), as in the ONNX reference.
struct ResizeParams {
  std::string mode = "nearest";
  std::string coordinate_transformation_mode = "half_pixel";
  std::string nearest_mode = "round_prefer_floor";
  int64_t out_h = 0;
  int64_t out_w = 0;
  double scale_h = 1.0;
  double scale_w = 1.0;
  // The length_resized that align_corners divides by (minus one); 0 means
  // out_h/out_w. ONNX 1.12's reference uses in * scale, unrounded, when the
  // model gives scales.
  double length_resized_h = 0.0;
  double length_resized_w = 0.0;
};
Tensor ReferenceResize(const Tensor& x, const ResizeParams& params);

// Element-wise binary op with numpy broadcasting.
enum class BinaryOp { kAdd, kSub, kMul, kDiv };
const char* BinaryOpName(BinaryOp op);
Tensor ReferenceBinary(const Tensor& a, const Tensor& b, BinaryOp op);
// Numpy broadcast of two shapes; empty optional-like flag via `ok`.
std::vector<int64_t> BroadcastShape(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                                    bool* ok);

// y = scale * (x - mean) / sqrt(var + epsilon) + bias, per channel (dim 1).
Tensor ReferenceBatchNorm(const Tensor& x, const Tensor& scale, const Tensor& bias,
                          const Tensor& mean, const Tensor& var, double epsilon);

// Applies `fn` to every element of a float tensor.
Tensor ReferenceUnary(const Tensor& x, const std::function<double(double)>& fn);

}  // namespace rectifier::engine::testing

#endif  // RECTIFIER_TESTS_ENGINE_CONFORMANCE_REFERENCE_KERNELS_H_
