// Rectifier's 3x3 convolution by Winograd's minimal filtering F(2x2, 3x3)
// or F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016), for stride 1, padding 1 on every side, no dilation, one
// group, in oneDNN's nChw8c layout with AVX2 or its nChw16c layout with
// AVX-512, with bias and a fused output activation (clip / ReLU, SiLU).
// Each 2x2 output tile is computed from a 4x4 input tile with 16
// multiplications per input and output channel instead of 36 (F(2x2,
// 3x3)), each 4x4 output tile from a 6x6 input tile with 36 instead of 144
// (F(4x4, 3x3)): the convolution becomes 16 or 36 matrix products over the
// channels (one per position of the transformed tile) between an input
// transform and an output transform. Plans use it where it measured faster
// than oneDNN 2.6's direct kernels (lower_winograd.cc; docs/PERFORMANCE.md,
// "Winograd F(4x4, 3x3)", "Winograd F(2x2, 3x3)"). Without AVX2 + FMA
// (AVX-512F where oneDNN may use AVX-512, for nChw16c)
// WinogradVectorized() is false and plans keep oneDNN's convolution.
//
// F(2x2, 3x3)'s transforms use only 0, +-1 and +-1/2, so its result stays
// within a few units of float rounding of the direct convolution (about
// 2e-6 relative to the largest output for 256 input channels). F(4x4, 3x3)
// (interpolation points 0, +-1, +-2) scales values by up to 8 in its
// transforms and loses about a decimal digit more (winograd_test.cc
// bounds it).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_
#define RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_

#include <cstdint>
#include <limits>

#include "server/engine/ops/depthwise.h"

namespace rectifier::engine {

struct WinogradParams {
  int64_t batch = 1;
  int64_t in_channels = 0;                 // a multiple of `lanes`
  int64_t out_channels = 0;                // a multiple of `lanes`
  int64_t height = 0, width = 0;           // input and output (stride 1, padding 1)
  int tile = 2;                            // output tile: 2 (F(2x2, 3x3)) or 4 (F(4x4, 3x3))
  int lanes = 8;                           // layout: 8 (nChw8c, AVX2) or 16 (nChw16c, AVX-512)
  DepthwiseAct act = DepthwiseAct::kNone;  // kNone, kClip or kSilu
  float clip_lo = -std::numeric_limits<float>::infinity();
  float clip_hi = std::numeric_limits<float>::infinity();
};

bool WinogradSupported(const WinogradParams& p);
// True when the kernel runs here for `lanes` 8 (AVX2 + FMA) or 16 (AVX-512F,
// where oneDNN may use AVX-512: UseAvx512Silu, which ONEDNN_MAX_CPU_ISA
// caps).
bool WinogradVectorized(int lanes = 8);
// Output tiles of the convolution: batch * ceil(H / tile) * ceil(W / tile).
int64_t WinogradTiles(const WinogradParams& p);

// Floats of the transformed filter: (tile + 2)^2 * in_channels * out_channels.
int64_t WinogradFilterSize(const WinogradParams& p);
// `oihw`: [out_channels][in_channels][3][3]; `u`: WinogradFilterSize floats,
// G g G^T per channel pair as [(tile + 2)^2][in_channels][out_channels].
void WinogradTransformFilter(const WinogradParams& p, const float* oihw, float* u);

// y = act(conv(x) + bias); x [N][IC/L][H][W][L], y [N][OC/L][H][W][L]
// (nChw8c or nChw16c, L = p.lanes), bias [OC] or null. Runs in a parallel
// region of the calling thread's OpenMP thread count
// (omp_set_num_threads). Requires WinogradSupported(p) and
// WinogradVectorized(p.lanes).
void WinogradConv3x3(const WinogradParams& p, const float* x, const float* u, const float* bias,
                     float* y);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_WINOGRAD_H_
