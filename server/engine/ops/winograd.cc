// Winograd F(2x2, 3x3) for nChw8c (winograd.h). With B, G and A the
// transforms of F(2, 3), a 2x2 output tile is Y = A^T [U (.) V] A, where
// U = G g G^T is the 4x4 transformed filter of a channel pair, V = B^T d B
// the transformed 4x4 input tile, and (.) the element-wise product summed
// over input channels. Summed over channels, each of the 16 positions e of
// the 4x4 tile is a matrix product M_e = V_e U_e: [tiles x IC] x [IC x OC].
//
// The tiles are processed in blocks of kTileBlock, one block at a time per
// thread: the block's input transform (V, [16][IC/8][tiles][8]), its 16
// matrix products (M, [16][OC/8][tiles][8]) and its output transform with
// bias and activation, so that V and M stay close to the thread (in its
// L2 cache up to a few hundred channels: V is 1920 bytes per input
// channel). The
// products run on a 6-tile x 16-channel register block (12 accumulators),
// broadcasting one transformed input value per FMA pair, like oneDNN's
// direct kernels do with input pixels.
#include "server/engine/ops/winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "server/engine/ops/silu_avx2.h"

namespace rectifier::engine {
namespace {

constexpr int kLanes = 8;
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
// output channels in `parts` parts (pairs of 8-channel blocks), one
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
  const int64_t filter_bytes = int64_t{36} * p.in_channels * p.out_channels * 4;
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

// Output channel blocks [first, last) of part `part` of `parts`: pairs of
// 8-channel blocks, the last part taking an odd one.
void PartRange(const Shape& s, int part, int* first, int* last) {
  const int64_t pairs = s.ocb / 2;
  *first = static_cast<int>(pairs * part / s.parts * 2);
  *last = part + 1 == s.parts ? static_cast<int>(s.ocb)
                              : static_cast<int>(pairs * (part + 1) / s.parts * 2);
}

Shape ShapeOf(const WinogradParams& p) {
  Shape s{};
  s.icb = p.in_channels / kLanes;
  s.ocb = p.out_channels / kLanes;
  s.tiles_h = (p.height + p.tile - 1) / p.tile;
  s.tiles_w = (p.width + p.tile - 1) / p.tile;
  s.tiles = p.batch * s.tiles_h * s.tiles_w;
  return s;
}

// r[k * stride] = (B^T d)[k], d[k * stride] for k < 4: F(2, 3).
RECTIFIER_AVX2 inline void InputTransform1d(const __m256* d, int stride, __m256* r) {
  const __m256 d0 = d[0], d1 = d[stride], d2 = d[2 * stride], d3 = d[3 * stride];
  r[0] = _mm256_sub_ps(d0, d2);
  r[stride] = _mm256_add_ps(d1, d2);
  r[2 * stride] = _mm256_sub_ps(d2, d1);
  r[3 * stride] = _mm256_sub_ps(d1, d3);
}

// The same for F(4, 3) (interpolation points 0, +-1, +-2), k < 6:
//   4 d0 - 5 d2 + d4,  (d3 + d4) - 4 (d1 + d2),  (d4 - d3) + 4 (d1 - d2),
//   (d4 - d2) +- 2 (d3 - d1),  4 d1 - 5 d3 + d5.
RECTIFIER_AVX2 inline void InputTransform1d6(const __m256* d, int stride, __m256* r) {
  const __m256 d0 = d[0], d1 = d[stride], d2 = d[2 * stride], d3 = d[3 * stride],
               d4 = d[4 * stride], d5 = d[5 * stride];
  const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f);
  r[0] = _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4));
  r[stride] = _mm256_fnmadd_ps(four, _mm256_add_ps(d1, d2), _mm256_add_ps(d3, d4));
  r[2 * stride] = _mm256_fmadd_ps(four, _mm256_sub_ps(d1, d2), _mm256_sub_ps(d4, d3));
  const __m256 u = _mm256_sub_ps(d3, d1), w = _mm256_sub_ps(d4, d2);
  r[3 * stride] = _mm256_fmadd_ps(two, u, w);
  r[4 * stride] = _mm256_fnmadd_ps(two, u, w);
  r[5 * stride] = _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5));
}

// B^T d B of an alpha x alpha tile of 8 channels (row-major d[i][j]) into r.
template <int M>
RECTIFIER_AVX2 inline void InputTransform(const __m256* d, __m256* r) {
  constexpr int kA = Algo<M>::kAlpha;
  __m256 t[kA * kA];
  for (int j = 0; j < kA; ++j) {  // columns: B^T d
    if constexpr (M == 2) {
      InputTransform1d(d + j, kA, t + j);
    } else {
      InputTransform1d6(d + j, kA, t + j);
    }
  }
  for (int i = 0; i < kA; ++i) {  // rows: (B^T d) B
    if constexpr (M == 2) {
      InputTransform1d(t + kA * i, 1, r + kA * i);
    } else {
      InputTransform1d6(t + kA * i, 1, r + kA * i);
    }
  }
}

// The transformed input of tiles [t0, t0 + count) into v
// ([positions][icb][block][8]); slots past `count` repeat the last tile
// (computed, never stored).
template <int M>
RECTIFIER_AVX2 void TransformInputs(const WinogradParams& p, const Shape& s, const float* x,
                                    int64_t t0, int count, float* v) {
  constexpr int kA = Algo<M>::kAlpha;
  const int block = s.block;
  const int64_t plane = p.height * p.width * kLanes;
  for (int t = 0; t < block; ++t) {
    const int64_t tile = t0 + std::min(t, count - 1);
    const int64_t n = tile / (s.tiles_h * s.tiles_w);
    const int64_t rest = tile % (s.tiles_h * s.tiles_w);
    const int64_t y0 = M * (rest / s.tiles_w) - 1, x0 = M * (rest % s.tiles_w) - 1;
    const bool interior = y0 >= 0 && x0 >= 0 && y0 + kA <= p.height && x0 + kA <= p.width;
    for (int64_t c = 0; c < s.icb; ++c) {
      const float* src = x + (n * s.icb + c) * plane;
      __m256 d[kA * kA], r[kA * kA];
      if (interior) {
        for (int i = 0; i < kA; ++i)
          for (int j = 0; j < kA; ++j)
            d[kA * i + j] = _mm256_loadu_ps(src + ((y0 + i) * p.width + x0 + j) * kLanes);
      } else {
        for (int i = 0; i < kA; ++i)
          for (int j = 0; j < kA; ++j) {
            const int64_t yy = y0 + i, xx = x0 + j;
            d[kA * i + j] = yy >= 0 && yy < p.height && xx >= 0 && xx < p.width
                                ? _mm256_loadu_ps(src + (yy * p.width + xx) * kLanes)
                                : _mm256_setzero_ps();
          }
      }
      InputTransform<M>(d, r);
      for (int e = 0; e < kA * kA; ++e)
        _mm256_storeu_ps(v + ((e * s.icb + c) * block + t) * kLanes, r[e]);
    }
  }
}

// m[b][t] = sum over input channels of v[t][ic] * u[ic][b * 8 ..], for
// kTileRegs tiles and OB output channel blocks; v and m hold `block`
// tiles per channel block.
template <int OB>  // 1 or 2
RECTIFIER_AVX2 inline void Product(const float* v, const float* u, int64_t icb, int64_t oc,
                                   int block, float* m) {
  static_assert(OB == 1 || OB == 2, "one or two 8-channel output blocks");
  __m256 acc[kTileRegs][OB];
#pragma GCC unroll 6
  for (int t = 0; t < kTileRegs; ++t)
#pragma GCC unroll 2
    for (int b = 0; b < OB; ++b) acc[t][b] = _mm256_setzero_ps();
  for (int64_t c = 0; c < icb; ++c) {
    const float* vc = v + c * block * kLanes;
    const float* uc = u + c * kLanes * oc;
#pragma GCC unroll 8
    for (int i = 0; i < kLanes; ++i) {
      const __m256 w0 = _mm256_loadu_ps(uc + i * oc);
      const __m256 w1 = OB > 1 ? _mm256_loadu_ps(uc + i * oc + kLanes) : w0;
#pragma GCC unroll 6
      for (int t = 0; t < kTileRegs; ++t) {
        const __m256 xv = _mm256_broadcast_ss(vc + t * kLanes + i);
        acc[t][0] = _mm256_fmadd_ps(xv, w0, acc[t][0]);
        if (OB > 1) acc[t][OB - 1] = _mm256_fmadd_ps(xv, w1, acc[t][OB - 1]);
      }
    }
  }
#pragma GCC unroll 6
  for (int t = 0; t < kTileRegs; ++t)
#pragma GCC unroll 2
    for (int b = 0; b < OB; ++b) _mm256_storeu_ps(m + (b * block + t) * kLanes, acc[t][b]);
}

template <int M>
RECTIFIER_AVX2 void Products(const Shape& s, int64_t oc, const float* v, const float* u, int first,
                             int last, float* m) {
  const int block = s.block;
  for (int e = 0; e < Algo<M>::kPositions; ++e) {
    const float* ve = v + e * s.icb * block * kLanes;
    const float* ue = u + e * s.icb * kLanes * oc;
    float* me = m + e * s.ocb * block * kLanes;
    int64_t b = first;
    for (; b + 2 <= last; b += 2)
      for (int t = 0; t < block; t += kTileRegs)
        Product<2>(ve + t * kLanes, ue + b * kLanes, s.icb, oc, block,
                   me + (b * block + t) * kLanes);
    for (; b < last; ++b)
      for (int t = 0; t < block; t += kTileRegs)
        Product<1>(ve + t * kLanes, ue + b * kLanes, s.icb, oc, block,
                   me + (b * block + t) * kLanes);
  }
}

RECTIFIER_AVX2 inline __m256 Activate(const WinogradParams& p, __m256 v, __m256 lo, __m256 hi) {
  switch (p.act) {
    case DepthwiseAct::kNone:
      return v;
    case DepthwiseAct::kClip:
      return _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    case DepthwiseAct::kSilu:
      return Silu8(v);
  }
  return v;
}

// r[k * stride] = (A^T q)[k], q[k * stride] for k < alpha: F(2, 3) gives 2
// values, F(4, 3) 4:
//   q0 + (q1 + q2) + (q3 + q4),  (q1 - q2) + 2 (q3 - q4),
//   (q1 + q2) + 4 (q3 + q4),     (q1 - q2) + 8 (q3 - q4) + q5.
template <int M>
RECTIFIER_AVX2 inline void OutputTransform1d(const __m256* q, int stride, __m256* r) {
  if constexpr (M == 2) {
    const __m256 q1 = q[stride], q2 = q[2 * stride];
    r[0] = _mm256_add_ps(_mm256_add_ps(q[0], q1), q2);
    r[stride] = _mm256_sub_ps(_mm256_sub_ps(q1, q2), q[3 * stride]);
  } else {
    const __m256 q1 = q[stride], q2 = q[2 * stride], q3 = q[3 * stride], q4 = q[4 * stride];
    const __m256 sum12 = _mm256_add_ps(q1, q2), diff12 = _mm256_sub_ps(q1, q2);
    const __m256 sum34 = _mm256_add_ps(q3, q4), diff34 = _mm256_sub_ps(q3, q4);
    r[0] = _mm256_add_ps(_mm256_add_ps(q[0], sum12), sum34);
    r[stride] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), diff34, diff12);
    r[2 * stride] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), sum34, sum12);
    r[3 * stride] =
        _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), diff34, diff12), q[5 * stride]);
  }
}

// A^T M A plus bias, activated, into the output pixels of tiles
// [t0, t0 + count), output channel blocks [first, last).
template <int M>
RECTIFIER_AVX2 void TransformOutputs(const WinogradParams& p, const Shape& s, const float* m,
                                     const float* bias, int64_t t0, int count, int first, int last,
                                     float* y) {
  constexpr int kA = Algo<M>::kAlpha;
  const int block = s.block;
  const int64_t plane = p.height * p.width * kLanes;
  const __m256 lo = _mm256_set1_ps(p.clip_lo), hi = _mm256_set1_ps(p.clip_hi);
  for (int t = 0; t < count; ++t) {
    const int64_t tile = t0 + t;
    const int64_t n = tile / (s.tiles_h * s.tiles_w);
    const int64_t rest = tile % (s.tiles_h * s.tiles_w);
    const int64_t oy = M * (rest / s.tiles_w), ox = M * (rest % s.tiles_w);
    const int rows = static_cast<int>(std::min<int64_t>(M, p.height - oy));
    const int cols = static_cast<int>(std::min<int64_t>(M, p.width - ox));
    for (int64_t b = first; b < last; ++b) {
      __m256 q[kA * kA];
      for (int e = 0; e < kA * kA; ++e)
        q[e] = _mm256_loadu_ps(m + ((e * s.ocb + b) * block + t) * kLanes);
      __m256 a[M * kA];  // A^T q
      for (int j = 0; j < kA; ++j) OutputTransform1d<M>(q + j, kA, a + j);
      const __m256 bv = bias != nullptr ? _mm256_loadu_ps(bias + b * kLanes) : _mm256_setzero_ps();
      float* dst = y + (n * s.ocb + b) * plane + (oy * p.width + ox) * kLanes;
      for (int i = 0; i < rows; ++i) {
        __m256 out[M];
        OutputTransform1d<M>(a + kA * i, 1, out);
        for (int j = 0; j < cols; ++j) {
          _mm256_storeu_ps(dst + (i * p.width + j) * kLanes,
                           Activate(p, _mm256_add_ps(out[j], bv), lo, hi));
        }
      }
    }
  }
}

// Per-thread scratch, kept between calls (a plan runs the kernel many times).
std::vector<float>& Scratch() {
  thread_local std::vector<float> buffer;
  return buffer;
}

template <int M>
void Convolve(const WinogradParams& p, const float* x, const float* u, const float* bias,
              float* y) {
  constexpr int kPositions = Algo<M>::kPositions;
  Shape s = ShapeOf(p);
  Partition(p, omp_get_max_threads(), &s);
  const int64_t items = (s.tiles + s.block - 1) / s.block * s.parts;
  const int64_t v_size = kPositions * s.icb * s.block * kLanes;
  const int64_t m_size = kPositions * s.ocb * s.block * kLanes;
#pragma omp parallel
  {
    std::vector<float>& scratch = Scratch();
    if (scratch.size() < static_cast<size_t>(v_size + m_size)) scratch.resize(v_size + m_size);
    float* v = scratch.data();
    float* m = v + v_size;
    int64_t transformed = -1;  // the block whose inputs v holds
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t blk = item / s.parts;
      const int64_t t0 = blk * s.block;
      const int count = static_cast<int>(std::min<int64_t>(s.block, s.tiles - t0));
      if (blk != transformed) {
        TransformInputs<M>(p, s, x, t0, count, v);
        transformed = blk;
      }
      int first = 0, last = 0;
      PartRange(s, static_cast<int>(item % s.parts), &first, &last);
      Products<M>(s, p.out_channels, v, u, first, last, m);
      TransformOutputs<M>(p, s, m, bias, t0, count, first, last, y);
    }
  }
}

}  // namespace

bool WinogradSupported(const WinogradParams& p) {
  return (p.tile == 2 || p.tile == 4) && p.batch > 0 && p.in_channels > 0 &&
         p.in_channels % kLanes == 0 && p.out_channels > 0 && p.out_channels % kLanes == 0 &&
         p.height > 0 && p.width > 0 &&
         (p.act == DepthwiseAct::kNone || p.act == DepthwiseAct::kClip ||
          p.act == DepthwiseAct::kSilu);
}

bool WinogradVectorized() { return CpuHasAvx2Fma(); }

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
  if (p.tile == 4) {
    Convolve<4>(p, x, u, bias, y);
  } else {
    Convolve<2>(p, x, u, bias, y);
  }
}

}  // namespace rectifier::engine
