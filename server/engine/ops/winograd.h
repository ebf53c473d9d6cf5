// Rectifier's 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3)
// (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
// 2016), for stride 1, padding 1 on every side, no dilation, one group, in
// oneDNN's nChw8c layout, with bias and a fused output activation (clip /
// ReLU, SiLU). Each 2x2 output tile is computed from a 4x4 input tile with
// 16 multiplications per input and output channel instead of 36: the
// convolution becomes 16 matrix products over the channels (one per
// position of the transformed tile) between an input transform and an
// output transform. Plans use it where it measured faster than oneDNN
// 2.6's direct jit:avx2 kernel (lower_winograd.cc; docs/PERFORMANCE.md,
// "Winograd F(2x2, 3x3)"). AVX2 + FMA only: without them
// WinogradVectorized() is false and plans keep oneDNN's convolution.
//
// The transforms use only 0, +-1 and +-1/2, so the result stays within a
// few units of float rounding of the direct convolution (about 2e-6
// relative to the largest output for 256 input channels).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_
#define RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_

#include <cstdint>
#include <limits>

#include "server/engine/ops/depthwise.h"

namespace rectifier::engine {

struct WinogradParams {
  int64_t batch = 1;
  int64_t in_channels = 0;                 // a multiple of 8
  int64_t out_channels = 0;                // a multiple of 8
  int64_t height = 0, width = 0;           // input and output (stride 1, padding 1)
  DepthwiseAct act = DepthwiseAct::kNone;  // kNone, kClip or kSilu
  float clip_lo = -std::numeric_limits<float>::infinity();
  float clip_hi = std::numeric_limits<float>::infinity();
};

bool WinogradSupported(const WinogradParams& p);
// True when the CPU runs the kernel (AVX2 + FMA).
bool WinogradVectorized();
// 2x2 output tiles of the convolution: batch * ceil(H / 2) * ceil(W / 2).
int64_t WinogradTiles(const WinogradParams& p);

// Floats of the transformed filter: 16 * in_channels * out_channels.
int64_t WinogradFilterSize(const WinogradParams& p);
// `oihw`: [out_channels][in_channels][3][3]; `u`: WinogradFilterSize floats,
// G g G^T per channel pair as [16][in_channels][out_channels].
void WinogradTransformFilter(const WinogradParams& p, const float* oihw, float* u);

// y = act(conv(x) + bias); x [N][IC/8][H][W][8], y [N][OC/8][H][W][8]
// (nChw8c), bias [OC] or null. Runs in a parallel region of the calling
// thread's OpenMP thread count (omp_set_num_threads). Requires
// WinogradSupported(p) and WinogradVectorized().
void WinogradConv3x3(const WinogradParams& p, const float* x, const float* u, const float* bias,
                     float* y);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_
