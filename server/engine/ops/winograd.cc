// Winograd F(2x2, 3x3) and F(4x4, 3x3) for nChw8c (AVX2) and nChw16c
// (AVX-512) (winograd.h). With B, G and A the transforms of F(m, 3), an
// m x m output tile is Y = A^T [U (.) V] A, where U = G g G^T is the
// transformed filter of a channel pair (alpha x alpha, alpha = m + 2),
// V = B^T d B the transformed alpha x alpha input tile, and (.) the
// element-wise product summed over input channels. Summed over channels,
// each of the alpha^2 positions e of the tile is a matrix product
// M_e = V_e U_e: [tiles x IC] x [IC x OC].
//
// The tiles are processed in blocks, one (block, output channel part) item
// at a time per thread (Partition): the block's input transform (V,
// [positions][IC/L][tiles][L] for L-channel vectors), its matrix products
// (M, [positions][OC/L][tiles][L]) and its output transform with bias and
// activation, so that V and M stay close to the thread. The products run
// on a 6-tile x 2-vector register block (12 accumulators), broadcasting
// one transformed input value per FMA pair, like oneDNN's direct kernels
// do with input pixels. The vector code is in winograd_kernel.inc,
// compiled once per instruction set.
#include "server/engine/ops/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "server/engine/ops/silu_avx2.h"
#include "server/engine/ops/silu_avx512.h"

namespace rectifier::engine {
namespace {

constexpr int kTileRegs = 6;  // tiles per register block

// The two algorithms: M x M output tiles from (M + 2) x (M + 2) input
// tiles.
template <int M>
struct Algo {
  static constexpr int kAlpha = M + 2;
  static constexpr int kPositions = kAlpha * kAlpha;
};

struct Shape {
  int64_t icb, ocb, tiles_h, tiles_w, tiles;
  int block;  // tiles per block, a multiple of kTileRegs
  int parts;  // output channel parts per block (1, or the thread count)
};

// How the threads share the work: blocks of `block` tiles, each block's
// output channels in `parts` parts (pairs of vectors of channels), one
// (block, part) item at a time per thread. Each item reads its part of the
// transformed filter once; V and M of a block stay close to the thread.
//
// F(2x2, 3x3): blocks of 30 tiles, one part (V and M, 16 x 30 floats per
// channel, stay in L2 up to a few hundred channels).
//
// F(4x4, 3x3), measured in bench/engine/winograd_kernel and in ResNet-50's
// and the detector's plans:
//  * the fewest tile slots per thread win: ceil(items / threads) x block /
//    parts, the time of the last, partial round of items included (6-tile
//    blocks balance 196 tiles over two threads better than 18-tile ones,
//    and ran 10-15% faster);
//  * a filter larger than the L3 cache's share (kFilterFar, 16 MiB: 512 x
//    512 channels is 36 MiB) is read from memory by every item, worth
//    kFarFilterTiles tiles of products (18-tile blocks 1.5x faster than 6 at
//    512 channels);
//  * splitting the output channels (each thread transforms the same input
//    tiles, then takes its share of the channels) only where it saves a
//    quarter of the slots: few tiles (16 tiles of 256 channels: 12 slots on
//    one thread and 6 on the other in 6-tile blocks, 9 on each split);
//  * ties go to fewer filter reads per thread.
constexpr int64_t kFilterFar = int64_t{16} << 20;
constexpr double kFarFilterTiles = 12;

void Partition(const WinogradParams& p, int threads, Shape* s) {
  s->block = 5 * kTileRegs;
  s->parts = 1;
  if (p.tile == 2) return;
  const int64_t filter_bytes = WinogradFilterSize(p) * static_cast<int64_t>(sizeof(float));
  const double reload = filter_bytes > kFilterFar ? kFarFilterTiles : 0.0;
  struct Choice {
    int block = 0, parts = 1;
    double cost = 0, reads = 0;
  };
  auto choose = [&](int parts) {
    Choice best;
    for (int block = kTileRegs; block <= 3 * kTileRegs; block += kTileRegs) {
      const int64_t items = (s->tiles + block - 1) / block * parts;
      const int64_t per_thread = (items + threads - 1) / threads;
      Choice c{block, parts, 0, static_cast<double>(per_thread) / parts};
      c.cost = static_cast<double>(per_thread * block) / parts + c.reads * reload;
      if (best.block == 0 || c.cost < best.cost || (c.cost == best.cost && c.reads < best.reads)) {
        best = c;
      }
    }
    return best;
  };
  Choice best = choose(1);
  if (threads > 1 && s->ocb >= 2 * threads) {
    const Choice split = choose(threads);
    if (split.cost <= 0.75 * best.cost) best = split;
  }
  s->block = best.block;
  s->parts = best.parts;
}

// Output channel vectors [first, last) of part `part` of `parts`: pairs of
// vectors, the last part taking an odd one.
void PartRange(const Shape& s, int part, int* first, int* last) {
  const int64_t pairs = s.ocb / 2;
  *first = static_cast<int>(pairs * part / s.parts * 2);
  *last = part + 1 == s.parts ? static_cast<int>(s.ocb)
                              : static_cast<int>(pairs * (part + 1) / s.parts * 2);
}

Shape ShapeOf(const WinogradParams& p) {
  Shape s{};
  s.icb = p.in_channels / p.lanes;
  s.ocb = p.out_channels / p.lanes;
  s.tiles_h = (p.height + p.tile - 1) / p.tile;
  s.tiles_w = (p.width + p.tile - 1) / p.tile;
  s.tiles = p.batch * s.tiles_h * s.tiles_w;
  return s;
}

// Per-thread scratch, kept between calls (a plan runs the kernel many times).
std::vector<float>& Scratch() {
  thread_local std::vector<float> buffer;
  return buffer;
}

// AVX2: 8 floats, nChw8c.
namespace avx2 {
using Vec = __m256;
constexpr int kLanes = 8;
RECTIFIER_AVX2 inline Vec Load(const float* p) { return _mm256_loadu_ps(p); }
RECTIFIER_AVX2 inline void Store(float* p, Vec v) { _mm256_storeu_ps(p, v); }
RECTIFIER_AVX2 inline Vec Zero() { return _mm256_setzero_ps(); }
RECTIFIER_AVX2 inline Vec Set1(float f) { return _mm256_set1_ps(f); }
RECTIFIER_AVX2 inline Vec Broadcast(const float* p) { return _mm256_broadcast_ss(p); }
RECTIFIER_AVX2 inline Vec Add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
RECTIFIER_AVX2 inline Vec Sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
RECTIFIER_AVX2 inline Vec Fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
RECTIFIER_AVX2 inline Vec Fnmadd(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }
RECTIFIER_AVX2 inline Vec Min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
RECTIFIER_AVX2 inline Vec Max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
RECTIFIER_AVX2 inline Vec SiluV(Vec v) { return Silu8(v); }
#define RECTIFIER_WINOGRAD_TARGET RECTIFIER_AVX2
#include "server/engine/ops/winograd_kernel.inc"
#undef RECTIFIER_WINOGRAD_TARGET
}  // namespace avx2

// AVX-512: 16 floats, nChw16c. GCC 12 reports the AVX-512 intrinsics' own
// undefined-vector operands as maybe uninitialized once they are inlined
// here (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace avx512 {
using Vec = __m512;
constexpr int kLanes = 16;
RECTIFIER_AVX512 inline Vec Load(const float* p) { return _mm512_loadu_ps(p); }
RECTIFIER_AVX512 inline void Store(float* p, Vec v) { _mm512_storeu_ps(p, v); }
RECTIFIER_AVX512 inline Vec Zero() { return _mm512_setzero_ps(); }
RECTIFIER_AVX512 inline Vec Set1(float f) { return _mm512_set1_ps(f); }
RECTIFIER_AVX512 inline Vec Broadcast(const float* p) { return _mm512_set1_ps(*p); }
RECTIFIER_AVX512 inline Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
RECTIFIER_AVX512 inline Vec Sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
RECTIFIER_AVX512 inline Vec Fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
RECTIFIER_AVX512 inline Vec Fnmadd(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }
RECTIFIER_AVX512 inline Vec Min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
RECTIFIER_AVX512 inline Vec Max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
RECTIFIER_AVX512 inline Vec SiluV(Vec v) { return Silu16(v); }
#define RECTIFIER_WINOGRAD_TARGET RECTIFIER_AVX512
#include "server/engine/ops/winograd_kernel.inc"
#undef RECTIFIER_WINOGRAD_TARGET
}  // namespace avx512
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace

bool WinogradSupported(const WinogradParams& p) {
  return (p.tile == 2 || p.tile == 4) && (p.lanes == 8 || p.lanes == 16) && p.batch > 0 &&
         p.in_channels > 0 && p.in_channels % p.lanes == 0 && p.out_channels > 0 &&
         p.out_channels % p.lanes == 0 && p.height > 0 && p.width > 0 &&
         (p.act == DepthwiseAct::kNone || p.act == DepthwiseAct::kClip ||
          p.act == DepthwiseAct::kSilu);
}

bool WinogradVectorized(int lanes) {
  return lanes == 8 ? CpuHasAvx2Fma() : lanes == 16 && UseAvx512Silu();
}

int64_t WinogradTiles(const WinogradParams& p) { return ShapeOf(p).tiles; }

int64_t WinogradFilterSize(const WinogradParams& p) {
  const int64_t alpha = p.tile + 2;
  return alpha * alpha * p.in_channels * p.out_channels;
}

void WinogradTransformFilter(const WinogradParams& p, const float* oihw, float* u) {
  const int64_t ic_n = p.in_channels, oc_n = p.out_channels;
  const int alpha = p.tile + 2;
  // G for F(2, 3) and for F(4, 3) (points 0, +-1, +-2), computed in double.
  static constexpr double kG2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double kG4[6][3] = {{1.0 / 4, 0, 0},
                                       {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                       {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                       {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                       {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                       {0, 0, 1}};
  auto g = [&](int i, int k) { return p.tile == 2 ? kG2[i][k] : kG4[i][k]; };
  for (int64_t o = 0; o < oc_n; ++o) {
    for (int64_t c = 0; c < ic_n; ++c) {
      const float* k = oihw + (o * ic_n + c) * 9;
      double gk[6][3];  // G k
      for (int i = 0; i < alpha; ++i)
        for (int j = 0; j < 3; ++j)
          gk[i][j] = g(i, 0) * k[j] + g(i, 1) * k[3 + j] + g(i, 2) * k[6 + j];
      for (int i = 0; i < alpha; ++i)
        for (int j = 0; j < alpha; ++j) {
          const double value = gk[i][0] * g(j, 0) + gk[i][1] * g(j, 1) + gk[i][2] * g(j, 2);
          u[((alpha * i + j) * ic_n + c) * oc_n + o] = static_cast<float>(value);
        }
    }
  }
}

void WinogradConv3x3(const WinogradParams& p, const float* x, const float* u, const float* bias,
                     float* y) {
  if (p.lanes == 16) {
    if (p.tile == 4) {
      avx512::Convolve<4>(p, x, u, bias, y);
    } else {
      avx512::Convolve<2>(p, x, u, bias, y);
    }
  } else if (p.tile == 4) {
    avx2::Convolve<4>(p, x, u, bias, y);
  } else {
    avx2::Convolve<2>(p, x, u, bias, y);
  }
}

}  // namespace rectifier::engine
