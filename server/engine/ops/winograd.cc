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
constexpr int kTileRegs = 6;               // tiles per register block
constexpr int kTileBlock = 5 * kTileRegs;  // tiles per thread-private block
constexpr int kPositions = 16;             // 4x4 transformed tile

struct Shape {
  int64_t icb, ocb, tiles_h, tiles_w, tiles;
};

Shape ShapeOf(const WinogradParams& p) {
  Shape s;
  s.icb = p.in_channels / kLanes;
  s.ocb = p.out_channels / kLanes;
  s.tiles_h = (p.height + 1) / 2;
  s.tiles_w = (p.width + 1) / 2;
  s.tiles = p.batch * s.tiles_h * s.tiles_w;
  return s;
}

// B^T d B of a 4x4 tile of 8 channels, in place (row-major d[i][j]).
RECTIFIER_AVX2 inline void InputTransform(__m256 d[16]) {
  for (int j = 0; j < 4; ++j) {
    const __m256 d0 = d[j], d1 = d[4 + j], d2 = d[8 + j], d3 = d[12 + j];
    d[j] = _mm256_sub_ps(d0, d2);
    d[4 + j] = _mm256_add_ps(d1, d2);
    d[8 + j] = _mm256_sub_ps(d2, d1);
    d[12 + j] = _mm256_sub_ps(d1, d3);
  }
  for (int i = 0; i < 4; ++i) {
    __m256* r = d + 4 * i;
    const __m256 r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
    r[0] = _mm256_sub_ps(r0, r2);
    r[1] = _mm256_add_ps(r1, r2);
    r[2] = _mm256_sub_ps(r2, r1);
    r[3] = _mm256_sub_ps(r1, r3);
  }
}

// The transformed input of tiles [t0, t0 + count) into v ([16][icb][kTileBlock][8]);
// slots past `count` repeat the last tile (computed, never stored).
RECTIFIER_AVX2 void TransformInputs(const WinogradParams& p, const Shape& s, const float* x,
                                    int64_t t0, int count, float* v) {
  const int64_t plane = p.height * p.width * kLanes;
  for (int t = 0; t < kTileBlock; ++t) {
    const int64_t tile = t0 + std::min(t, count - 1);
    const int64_t n = tile / (s.tiles_h * s.tiles_w);
    const int64_t rest = tile % (s.tiles_h * s.tiles_w);
    const int64_t y0 = 2 * (rest / s.tiles_w) - 1, x0 = 2 * (rest % s.tiles_w) - 1;
    const bool interior = y0 >= 0 && x0 >= 0 && y0 + 4 <= p.height && x0 + 4 <= p.width;
    for (int64_t c = 0; c < s.icb; ++c) {
      const float* src = x + (n * s.icb + c) * plane;
      __m256 d[16];
      if (interior) {
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j)
            d[4 * i + j] = _mm256_loadu_ps(src + ((y0 + i) * p.width + x0 + j) * kLanes);
      } else {
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) {
            const int64_t yy = y0 + i, xx = x0 + j;
            d[4 * i + j] = yy >= 0 && yy < p.height && xx >= 0 && xx < p.width
                               ? _mm256_loadu_ps(src + (yy * p.width + xx) * kLanes)
                               : _mm256_setzero_ps();
          }
      }
      InputTransform(d);
      for (int e = 0; e < kPositions; ++e)
        _mm256_storeu_ps(v + ((e * s.icb + c) * kTileBlock + t) * kLanes, d[e]);
    }
  }
}

// m[b][t] = sum over input channels of v[t][ic] * u[ic][b * 8 ..], for
// kTileRegs tiles and OB output channel blocks.
template <int OB>  // 1 or 2
RECTIFIER_AVX2 inline void Product(const float* v, const float* u, int64_t icb, int64_t oc,
                                   float* m) {
  static_assert(OB == 1 || OB == 2, "one or two 8-channel output blocks");
  __m256 acc[kTileRegs][OB];
#pragma GCC unroll 6
  for (int t = 0; t < kTileRegs; ++t)
#pragma GCC unroll 2
    for (int b = 0; b < OB; ++b) acc[t][b] = _mm256_setzero_ps();
  for (int64_t c = 0; c < icb; ++c) {
    const float* vc = v + c * kTileBlock * kLanes;
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
    for (int b = 0; b < OB; ++b) _mm256_storeu_ps(m + (b * kTileBlock + t) * kLanes, acc[t][b]);
}

RECTIFIER_AVX2 void Products(const Shape& s, int64_t oc, const float* v, const float* u, float* m) {
  for (int e = 0; e < kPositions; ++e) {
    const float* ve = v + e * s.icb * kTileBlock * kLanes;
    const float* ue = u + e * s.icb * kLanes * oc;
    float* me = m + e * s.ocb * kTileBlock * kLanes;
    int64_t b = 0;
    for (; b + 2 <= s.ocb; b += 2)
      for (int t = 0; t < kTileBlock; t += kTileRegs)
        Product<2>(ve + t * kLanes, ue + b * kLanes, s.icb, oc, me + (b * kTileBlock + t) * kLanes);
    for (; b < s.ocb; ++b)
      for (int t = 0; t < kTileBlock; t += kTileRegs)
        Product<1>(ve + t * kLanes, ue + b * kLanes, s.icb, oc, me + (b * kTileBlock + t) * kLanes);
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

// A^T M A plus bias, activated, into the output pixels of tiles
// [t0, t0 + count).
RECTIFIER_AVX2 void TransformOutputs(const WinogradParams& p, const Shape& s, const float* m,
                                     const float* bias, int64_t t0, int count, float* y) {
  const int64_t plane = p.height * p.width * kLanes;
  const __m256 lo = _mm256_set1_ps(p.clip_lo), hi = _mm256_set1_ps(p.clip_hi);
  for (int t = 0; t < count; ++t) {
    const int64_t tile = t0 + t;
    const int64_t n = tile / (s.tiles_h * s.tiles_w);
    const int64_t rest = tile % (s.tiles_h * s.tiles_w);
    const int64_t oy = 2 * (rest / s.tiles_w), ox = 2 * (rest % s.tiles_w);
    for (int64_t b = 0; b < s.ocb; ++b) {
      __m256 q[16];
      for (int e = 0; e < kPositions; ++e)
        q[e] = _mm256_loadu_ps(m + ((e * s.ocb + b) * kTileBlock + t) * kLanes);
      __m256 a[2][4];  // A^T q
      for (int j = 0; j < 4; ++j) {
        a[0][j] = _mm256_add_ps(_mm256_add_ps(q[j], q[4 + j]), q[8 + j]);
        a[1][j] = _mm256_sub_ps(_mm256_sub_ps(q[4 + j], q[8 + j]), q[12 + j]);
      }
      const __m256 bv = bias != nullptr ? _mm256_loadu_ps(bias + b * kLanes) : _mm256_setzero_ps();
      float* dst = y + (n * s.ocb + b) * plane;
      for (int i = 0; i < 2 && oy + i < p.height; ++i) {
        const __m256 left =
            _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a[i][0], a[i][1]), a[i][2]), bv);
        _mm256_storeu_ps(dst + ((oy + i) * p.width + ox) * kLanes, Activate(p, left, lo, hi));
        if (ox + 1 < p.width) {
          const __m256 right =
              _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(a[i][1], a[i][2]), a[i][3]), bv);
          _mm256_storeu_ps(dst + ((oy + i) * p.width + ox + 1) * kLanes,
                           Activate(p, right, lo, hi));
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

}  // namespace

bool WinogradSupported(const WinogradParams& p) {
  return p.batch > 0 && p.in_channels > 0 && p.in_channels % kLanes == 0 && p.out_channels > 0 &&
         p.out_channels % kLanes == 0 && p.height > 0 && p.width > 0 &&
         (p.act == DepthwiseAct::kNone || p.act == DepthwiseAct::kClip ||
          p.act == DepthwiseAct::kSilu);
}

bool WinogradVectorized() { return CpuHasAvx2Fma(); }

int64_t WinogradTiles(const WinogradParams& p) { return ShapeOf(p).tiles; }

int64_t WinogradFilterSize(const WinogradParams& p) {
  return kPositions * p.in_channels * p.out_channels;
}

void WinogradTransformFilter(const WinogradParams& p, const float* oihw, float* u) {
  const int64_t ic_n = p.in_channels, oc_n = p.out_channels;
  for (int64_t o = 0; o < oc_n; ++o) {
    for (int64_t c = 0; c < ic_n; ++c) {
      const float* k = oihw + (o * ic_n + c) * 9;
      float gk[4][3];  // G k
      for (int j = 0; j < 3; ++j) {
        gk[0][j] = k[j];
        gk[1][j] = 0.5f * (k[j] + k[3 + j] + k[6 + j]);
        gk[2][j] = 0.5f * (k[j] - k[3 + j] + k[6 + j]);
        gk[3][j] = k[6 + j];
      }
      for (int i = 0; i < 4; ++i) {
        const float row[4] = {gk[i][0], 0.5f * (gk[i][0] + gk[i][1] + gk[i][2]),
                              0.5f * (gk[i][0] - gk[i][1] + gk[i][2]), gk[i][2]};
        for (int j = 0; j < 4; ++j) u[((4 * i + j) * ic_n + c) * oc_n + o] = row[j];
      }
    }
  }
}

void WinogradConv3x3(const WinogradParams& p, const float* x, const float* u, const float* bias,
                     float* y) {
  const Shape s = ShapeOf(p);
  const int64_t blocks = (s.tiles + kTileBlock - 1) / kTileBlock;
  const int64_t v_size = kPositions * s.icb * kTileBlock * kLanes;
  const int64_t m_size = kPositions * s.ocb * kTileBlock * kLanes;
#pragma omp parallel
  {
    std::vector<float>& scratch = Scratch();
    if (scratch.size() < static_cast<size_t>(v_size + m_size)) scratch.resize(v_size + m_size);
    float* v = scratch.data();
    float* m = v + v_size;
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      const int64_t t0 = blk * kTileBlock;
      const int count = static_cast<int>(std::min<int64_t>(kTileBlock, s.tiles - t0));
      TransformInputs(p, s, x, t0, count, v);
      Products(s, p.out_channels, v, u, m);
      TransformOutputs(p, s, m, bias, t0, count, y);
    }
  }
}

}  // namespace rectifier::engine
