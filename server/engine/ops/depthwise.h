// Rectifier's depthwise 2-D convolution (one filter per channel, groups ==
// channels), for channel-innermost layouts: nChw8c, nChw16c and NHWC, with a
// fused output activation (clip/ReLU or SiLU) and optionally SiLU applied
// to its input rows as they are staged. Plans use it where it measured
// faster than oneDNN 2.6's jit_dw (lower_depthwise.cc): few channel blocks
// at batch 1, and SiLU where the alternative is oneDNN's swish post-op.
// The input activation is measured but used by no plan (docs/
// PERFORMANCE.md, "Rectifier's depthwise kernel").
//
// SiluFast, its SiLU, is also Rectifier's SiLU step (CompileOptions::
// silu_kernel). AVX2+FMA when the CPU has them, else a scalar loop (same
// results up to rounding).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_DEPTHWISE_H_
#define RECTIFIER_SERVER_ENGINE_OPS_DEPTHWISE_H_

#include <cstdint>
#include <limits>

namespace rectifier::engine {

enum class DepthwiseAct {
  kNone,
  kClip,  // min(max(x, lo), hi): ReLU is lo = 0, hi = +inf; ReLU6 hi = 6
  kSilu,  // x * sigmoid(x), SiluFast
};

struct DepthwiseParams {
  int64_t batch = 1;
  int64_t channels = 0;  // a multiple of 8 (and of `block`, when blocked)
  // Channel block of the layout: 8 (nChw8c), 16 (nChw16c), or `channels`
  // (NHWC). Element (n, c, y, x) sits at
  // ((n * channels / block + c / block) * H * W + y * W + x) * block + c % block.
  int64_t block = 8;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int kernel_h = 3, kernel_w = 3;
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0;  // the bottom/right padding follows from out_h/out_w
  DepthwiseAct input_act = DepthwiseAct::kNone;  // kNone or kSilu
  DepthwiseAct output_act = DepthwiseAct::kNone;
  float clip_lo = -std::numeric_limits<float>::infinity();
  float clip_hi = std::numeric_limits<float>::infinity();
};

// The conditions DepthwiseConv2d needs; false when it cannot take `p`.
bool DepthwiseSupported(const DepthwiseParams& p);

// Weights [channels, 1, kernel_h, kernel_w] (ONNX order) packed as
// [channels / 8][kernel_h][kernel_w][8], the order the kernel reads
// (oneDNN's Goihw8g for these dims). `packed` holds channels * kh * kw floats.
void PackDepthwiseWeights(const float* oihw, int64_t channels, int kernel_h, int kernel_w,
                          float* packed);

// dst = out_act(conv(in_act(src), weights) + bias), split across the current
// OpenMP team. `bias` may be null. src and dst must not overlap.
void DepthwiseConv2d(const DepthwiseParams& p, const float* src, const float* packed_weights,
                     const float* bias, float* dst);
// The scalar version (same order of operations per output), for tests.
void DepthwiseConv2dScalar(const DepthwiseParams& p, const float* src, const float* packed_weights,
                           const float* bias, float* dst);

// SiLU as the kernel computes it: x / (1 + exp(-x)) with exp from a degree-5
// polynomial and the reciprocal from an estimate refined by one Newton step.
// Relative error below 1e-6 (4.6e-7 measured) where the result is at least
// 1e-30 in magnitude; x below -87.34 and -Inf give -0 (the exact result
// is below 1.1e-36 in magnitude; -Inf's limit); +Inf gives +Inf, NaN gives NaN. n
// floats, with AVX-512 where oneDNN runs AVX-512 (UseAvx512Silu in
// silu_avx512.h: 16 lanes, the same function with a finer reciprocal
// estimate; +0 instead of -0 below -87.34), else AVX2 when available;
// also Rectifier's SiLU step (CompileOptions::silu_kernel).
void SiluFast(const float* x, float* y, int64_t n);

// SiluFast on a chosen instruction set, to compare and test them: kAvx2
// requires CpuHasAvx2Fma(), kAvx512 UseAvx512Silu().
enum class SiluIsa { kScalar, kAvx2, kAvx512 };
void SiluFastOn(SiluIsa isa, const float* x, float* y, int64_t n);

// Same, in chunks split over the current OpenMP team (one chunk: on the
// calling thread). Rectifier's SiLU step.
void SiluFastParallel(const float* x, float* y, int64_t n);

// True when the AVX2 version runs here.
bool DepthwiseVectorized();

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_DEPTHWISE_H_
