// Vectorized tanh / GELU-tanh / sigmoid / SiLU (see fast_activations.h),
// AVX2 (8 lanes) and AVX-512 (16 lanes) versions of one method.
//
// Method (explicit FMAs; this file is compiled
// with -ffp-contract=off so that the compensated sums below stay exact):
//  * exp(-a), a >= 0: n = round(-a / ln 2), r = -a - n ln2 (Cody-Waite, ln 2
//    in two parts), exp(r) = 1 + r + r^2 Q(r) with a degree-4 minimax Q on
//    |r| <= ln2/2 (relative error 3e-9), and the 2^n scale applied as two
//    exponent-field multiplications so that it reaches the subnormal range.
//  * tanh: |x| < 0.625: x + x^3 P(x^2), degree-5 minimax P (relative error
//    1.5e-10); else sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.29,
//    which has no cancellation.
//  * x * sigmoid(s) (SiLU: s = x; GELU-tanh: s = 2 sqrt(2/pi)(x + 0.044715
//    x^3), because 0.5 (1 + tanh(u)) = sigmoid(2u)): with e = exp(-|s|),
//    sigmoid(s) = 1 / (1 + e) for s >= 0 and e / (1 + e) for s < 0, so
//    neither tail cancels. For GELU the argument s is computed as a
//    double-float (hi + lo) with error-free products: GELU's relative
//    condition number grows like |x s'(x)| for negative x (about 35 at
//    x = -5), so a plain float s would cost several 1e-6 there.
#include "server/engine/ops/fast_activations.h"

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_ps(), which its
// -Wmaybe-uninitialized reports from inside the header (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace rectifier::engine {
namespace {

// ---- scalar reference-quality fallback --------------------------------------

float ScalarOne(FastActivation f, float xf) {
  const double x = xf;
  switch (f) {
    case FastActivation::kTanh:
      return static_cast<float>(std::tanh(x));
    case FastActivation::kSigmoid:
      return static_cast<float>(x >= 0 ? 1.0 / (1.0 + std::exp(-x))
                                       : std::exp(x) / (1.0 + std::exp(x)));
    case FastActivation::kSilu:
      if (std::isinf(x)) return x > 0 ? xf : -0.0f;
      return static_cast<float>(x >= 0 ? x / (1.0 + std::exp(-x))
                                       : x * std::exp(x) / (1.0 + std::exp(x)));
    case FastActivation::kGeluTanh: {
      if (std::isinf(x)) return x > 0 ? xf : -0.0f;
      // x * sigmoid(2u): the form without cancellation for negative x.
      const long double lx = x;
      const long double s =
          2.0L * 0.797884560802865355879892119868763737L * (lx + 0.044715L * lx * lx * lx);
      const long double y =
          s >= 0 ? lx / (1.0L + std::exp(-s)) : lx * std::exp(s) / (1.0L + std::exp(s));
      return static_cast<float>(y);
    }
  }
  return xf;
}

// ---- AVX2 + FMA ------------------------------------------------------------

#define RECTIFIER_AVX2 __attribute__((target("avx2,fma")))

struct ExpParts {
  __m256 p;   // in [0.70, 1.42]
  __m256i n;  // exponent, in [-151, 0]
};

// exp(-(a + a_lo)) = p * 2^n for a in [0, 104], |a_lo| << ulp(a).
RECTIFIER_AVX2 inline ExpParts ExpNeg(__m256 a, __m256 a_lo) {
  const __m256 v = _mm256_sub_ps(_mm256_setzero_ps(), a);
  const __m256 nf = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693145751953125f), v);
  r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(1.428606765330187e-06f), r);
  r = _mm256_sub_ps(r, a_lo);
  __m256 q = _mm256_set1_ps(1.381460461e-03f);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(8.368710987e-03f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.166838899e-02f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.666652113e-01f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.999999404e-01f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 p = _mm256_add_ps(_mm256_fmadd_ps(r2, q, r), _mm256_set1_ps(1.0f));
  return {p, _mm256_cvtps_epi32(nf)};
}

// v * 2^n for n in [-151, 0]: two exponent-field factors, each a normal
// float, so only the last multiplication rounds (also into subnormals).
RECTIFIER_AVX2 inline __m256 Scale(__m256 v, __m256i n) {
  const __m256i n1 = _mm256_srai_epi32(n, 1);
  const __m256i n2 = _mm256_sub_epi32(n, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 f1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 f2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(v, f1), f2);
}

RECTIFIER_AVX2 inline __m256 SignBit() { return _mm256_set1_ps(-0.0f); }

RECTIFIER_AVX2 inline __m256 KeepNan(__m256 y, __m256 x) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

RECTIFIER_AVX2 inline __m256 Tanh8(__m256 x) {
  const __m256 sign = _mm256_and_ps(x, SignBit());
  const __m256 ax = _mm256_andnot_ps(SignBit(), x);
  // |x| < 0.625: x + x^3 P(x^2).
  const __m256 t = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(2.147527644e-03f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-8.182662539e-03f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(2.170296200e-02f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-5.394720286e-02f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.333321035e-01f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-3.333333135e-01f));
  // (The sign is or-ed in again so that tanh(-0) = -0.)
  const __m256 small = _mm256_or_ps(_mm256_fmadd_ps(_mm256_mul_ps(x, t), p, x), sign);
  // Otherwise (1 - e) / (1 + e), e = exp(-2|x|); 2|x| clamped to 104 where
  // e is far below the rounding of 1.
  const __m256 a = _mm256_min_ps(_mm256_add_ps(ax, ax), _mm256_set1_ps(104.0f));
  const ExpParts ep = ExpNeg(a, _mm256_setzero_ps());
  const __m256 e = Scale(ep.p, ep.n);
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 big =
      _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)), sign);
  const __m256 y =
      _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
  return KeepNan(y, x);
}

// sigmoid(s) (x == nullptr semantics: `with_x` false) or x * sigmoid(s), s
// given as hi + lo.
template <bool kWithX>
RECTIFIER_AVX2 inline __m256 TimesSigmoid(__m256 x, __m256 s, __m256 s_lo) {
  const __m256 neg = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 s_sign = _mm256_and_ps(s, SignBit());
  const __m256 abs_s = _mm256_andnot_ps(SignBit(), s);
  const __m256 a = _mm256_min_ps(abs_s, _mm256_set1_ps(104.0f));
  // |s| = a + (lo with the sign flipped when s < 0).
  const ExpParts ep = ExpNeg(a, _mm256_xor_ps(s_lo, s_sign));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 den = _mm256_add_ps(one, Scale(ep.p, ep.n));
  const __m256 num_hi = kWithX ? x : one;
  const __m256 num = _mm256_blendv_ps(num_hi, _mm256_mul_ps(num_hi, ep.p), neg);
  const __m256i n = _mm256_and_si256(ep.n, _mm256_castps_si256(neg));
  __m256 y = Scale(_mm256_div_ps(num, den), n);
  // s < -104: the result is below the smallest subnormal; +-0 (the sign of
  // x for x * sigmoid, which also makes -Inf * sigmoid(-Inf) = -0).
  const __m256 under = _mm256_cmp_ps(s, _mm256_set1_ps(-104.0f), _CMP_LT_OQ);
  const __m256 zero = kWithX ? _mm256_and_ps(x, SignBit()) : _mm256_setzero_ps();
  y = _mm256_blendv_ps(y, zero, under);
  return KeepNan(y, x);
}

RECTIFIER_AVX2 inline __m256 Sigmoid8(__m256 x) {
  return TimesSigmoid<false>(x, x, _mm256_setzero_ps());
}

RECTIFIER_AVX2 inline __m256 Silu8(__m256 x) {
  const __m256 s = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(200.0f)), _mm256_set1_ps(-200.0f));
  return TimesSigmoid<true>(x, s, _mm256_setzero_ps());
}

RECTIFIER_AVX2 inline __m256 GeluTanh8(__m256 x) {
  // s = A x + B x^3 = x (A + B x^2) as a double-float, A = 2 sqrt(2/pi),
  // B = 0.044715 A, each split into hi + lo floats. |x| clamped to 20,
  // beyond which the result is x (x > 0) or -0 (x < 0) in float.
  const __m256 xc = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(20.0f)), _mm256_set1_ps(-20.0f));
  const __m256 ah = _mm256_set1_ps(1.595769167e+00f), al = _mm256_set1_ps(-4.534068054e-08f);
  const __m256 bh = _mm256_set1_ps(7.135481387e-02f), bl = _mm256_set1_ps(2.398832466e-09f);
  const __m256 x2 = _mm256_mul_ps(xc, xc);
  const __m256 x2l = _mm256_fmsub_ps(xc, xc, x2);
  const __m256 q = _mm256_mul_ps(bh, x2);
  const __m256 ql =
      _mm256_add_ps(_mm256_fmsub_ps(bh, x2, q), _mm256_fmadd_ps(bh, x2l, _mm256_mul_ps(bl, x2)));
  // TwoSum(ah, q).
  const __m256 w = _mm256_add_ps(ah, q);
  const __m256 bb = _mm256_sub_ps(w, ah);
  __m256 wl = _mm256_add_ps(_mm256_sub_ps(ah, _mm256_sub_ps(w, bb)), _mm256_sub_ps(q, bb));
  wl = _mm256_add_ps(wl, _mm256_add_ps(al, ql));
  const __m256 s = _mm256_mul_ps(xc, w);
  const __m256 sl = _mm256_fmadd_ps(xc, wl, _mm256_fmsub_ps(xc, w, s));
  return TimesSigmoid<true>(x, s, sl);
}

template <__m256 (*kFn)(__m256)>
RECTIFIER_AVX2 void Loop(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i);
    const __m256 b = _mm256_loadu_ps(x + i + 8);
    _mm256_storeu_ps(y + i, kFn(a));
    _mm256_storeu_ps(y + i + 8, kFn(b));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, kFn(_mm256_loadu_ps(x + i)));
  if (i < n) {
    // Tail: masked load/store, so the last elements go through the same
    // vector code as the rest.
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), idx);
    _mm256_maskstore_ps(y + i, mask, kFn(_mm256_maskload_ps(x + i, mask)));
  }
}

// Softmax over the axis of columns [j, j + 8 * kVecs) of one [axis, inner]
// slab: max, then exp and sum (exp stored in y unless log), then the scale.
template <int kVecs>
RECTIFIER_AVX2 void SoftmaxColumns(const float* x, float* y, int64_t axis, int64_t inner,
                                   bool log) {
  __m256 m[kVecs], sum[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    m[v] = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    sum[v] = _mm256_setzero_ps();
  }
  for (int64_t a = 0; a < axis; ++a)
    for (int v = 0; v < kVecs; ++v)
      m[v] = _mm256_max_ps(_mm256_loadu_ps(x + a * inner + 8 * v), m[v]);
  const __m256 limit = _mm256_set1_ps(104.0f);
  for (int64_t a = 0; a < axis; ++a) {
    for (int v = 0; v < kVecs; ++v) {
      // max - x in [0, inf]; clamped at 104 (exp(-104) is below every float
      // that can matter next to the column's largest term, which is 1). A
      // NaN stays NaN: min_ps returns its second operand when either is NaN.
      const __m256 d =
          _mm256_min_ps(limit, _mm256_sub_ps(m[v], _mm256_loadu_ps(x + a * inner + 8 * v)));
      const ExpParts e = ExpNeg(d, _mm256_setzero_ps());
      const __m256 ev = Scale(e.p, e.n);
      sum[v] = _mm256_add_ps(sum[v], ev);
      if (!log) _mm256_storeu_ps(y + a * inner + 8 * v, ev);
    }
  }
  if (!log) {
    __m256 r[kVecs];
    for (int v = 0; v < kVecs; ++v) r[v] = _mm256_div_ps(_mm256_set1_ps(1.0f), sum[v]);
    for (int64_t a = 0; a < axis; ++a)
      for (int v = 0; v < kVecs; ++v) {
        float* p = y + a * inner + 8 * v;
        _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), r[v]));
      }
    return;
  }
  __m256 shift[kVecs];
  for (int v = 0; v < kVecs; ++v) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum[v]);
    for (float& l : lanes) l = std::log(l);
    shift[v] = _mm256_add_ps(m[v], _mm256_load_ps(lanes));
  }
  for (int64_t a = 0; a < axis; ++a)
    for (int v = 0; v < kVecs; ++v)
      _mm256_storeu_ps(y + a * inner + 8 * v,
                       _mm256_sub_ps(_mm256_loadu_ps(x + a * inner + 8 * v), shift[v]));
}

// One column of one slab, in float with std::exp.
void SoftmaxColumnScalar(const float* x, float* y, int64_t axis, int64_t inner, bool log) {
  float m = -std::numeric_limits<float>::infinity();
  bool nan = false;
  for (int64_t a = 0; a < axis; ++a) {
    nan = nan || std::isnan(x[a * inner]);
    m = std::max(m, x[a * inner]);
  }
  if (nan) m = std::numeric_limits<float>::quiet_NaN();
  float sum = 0.0f;
  for (int64_t a = 0; a < axis; ++a) {
    const float e = std::exp(x[a * inner] - m);
    sum += e;
    if (!log) y[a * inner] = e;
  }
  if (!log) {
    const float r = 1.0f / sum;
    for (int64_t a = 0; a < axis; ++a) y[a * inner] *= r;
    return;
  }
  const float shift = m + std::log(sum);
  for (int64_t a = 0; a < axis; ++a) y[a * inner] = x[a * inner] - shift;
}

// ---- AVX-512 (same method, 16 floats per register, mask registers) ---------

#define RECTIFIER_AVX512 __attribute__((target("avx512f,avx512dq")))

struct ExpParts16 {
  __m512 p;
  __m512 n;  // integral, as a float (for vscalefps)
};

RECTIFIER_AVX512 inline ExpParts16 ExpNeg16(__m512 a, __m512 a_lo) {
  const __m512 v = _mm512_sub_ps(_mm512_setzero_ps(), a);
  const __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693145751953125f), v);
  r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(1.428606765330187e-06f), r);
  r = _mm512_sub_ps(r, a_lo);
  __m512 q = _mm512_set1_ps(1.381460461e-03f);
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(8.368710987e-03f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.166838899e-02f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.666652113e-01f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.999999404e-01f));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 p = _mm512_add_ps(_mm512_fmadd_ps(r2, q, r), _mm512_set1_ps(1.0f));
  return {p, nf};
}

// v * 2^n in one correctly rounded step (subnormal results included).
RECTIFIER_AVX512 inline __m512 Scale16(__m512 v, __m512 n) { return _mm512_scalef_ps(v, n); }

// a / b for b in [1, 2]: 14-bit reciprocal and one Newton step (about 1 ulp
// more error than a division, at a fraction of its cost).
RECTIFIER_AVX512 inline __m512 Div16(__m512 a, __m512 b) {
  __m512 r = _mm512_rcp14_ps(b);
  r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(b, r, _mm512_set1_ps(1.0f)), r);
  return _mm512_mul_ps(a, r);
}

RECTIFIER_AVX512 inline __m512 SignBit16() { return _mm512_set1_ps(-0.0f); }

RECTIFIER_AVX512 inline __m512 KeepNan16(__m512 y, __m512 x) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

RECTIFIER_AVX512 inline __m512 Tanh16(__m512 x) {
  const __m512 sign = _mm512_and_ps(x, SignBit16());
  const __m512 ax = _mm512_andnot_ps(SignBit16(), x);
  const __m512 t = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(2.147527644e-03f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-8.182662539e-03f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(2.170296200e-02f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-5.394720286e-02f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.333321035e-01f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-3.333333135e-01f));
  const __m512 small = _mm512_or_ps(_mm512_fmadd_ps(_mm512_mul_ps(x, t), p, x), sign);
  const __m512 a = _mm512_min_ps(_mm512_add_ps(ax, ax), _mm512_set1_ps(104.0f));
  const ExpParts16 ep = ExpNeg16(a, _mm512_setzero_ps());
  const __m512 e = Scale16(ep.p, ep.n);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 big = _mm512_or_ps(Div16(_mm512_sub_ps(one, e), _mm512_add_ps(one, e)), sign);
  const __m512 y =
      _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), big, small);
  return KeepNan16(y, x);
}

template <bool kWithX>
RECTIFIER_AVX512 inline __m512 TimesSigmoid16(__m512 x, __m512 s, __m512 s_lo) {
  const __mmask16 neg = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 s_sign = _mm512_and_ps(s, SignBit16());
  const __m512 abs_s = _mm512_andnot_ps(SignBit16(), s);
  const __m512 a = _mm512_min_ps(abs_s, _mm512_set1_ps(104.0f));
  const ExpParts16 ep = ExpNeg16(a, _mm512_xor_ps(s_lo, s_sign));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 den = _mm512_add_ps(one, Scale16(ep.p, ep.n));
  const __m512 num_hi = kWithX ? x : one;
  const __m512 num = _mm512_mask_blend_ps(neg, num_hi, _mm512_mul_ps(num_hi, ep.p));
  const __m512 n = _mm512_maskz_mov_ps(neg, ep.n);
  __m512 y = Scale16(Div16(num, den), n);
  const __mmask16 under = _mm512_cmp_ps_mask(s, _mm512_set1_ps(-104.0f), _CMP_LT_OQ);
  const __m512 zero = kWithX ? _mm512_and_ps(x, SignBit16()) : _mm512_setzero_ps();
  y = _mm512_mask_blend_ps(under, y, zero);
  return KeepNan16(y, x);
}

RECTIFIER_AVX512 inline __m512 Sigmoid16(__m512 x) {
  return TimesSigmoid16<false>(x, x, _mm512_setzero_ps());
}

RECTIFIER_AVX512 inline __m512 Silu16(__m512 x) {
  const __m512 s = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(200.0f)), _mm512_set1_ps(-200.0f));
  return TimesSigmoid16<true>(x, s, _mm512_setzero_ps());
}

RECTIFIER_AVX512 inline __m512 GeluTanh16(__m512 x) {
  const __m512 xc = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(20.0f)), _mm512_set1_ps(-20.0f));
  const __m512 ah = _mm512_set1_ps(1.595769167e+00f), al = _mm512_set1_ps(-4.534068054e-08f);
  const __m512 bh = _mm512_set1_ps(7.135481387e-02f), bl = _mm512_set1_ps(2.398832466e-09f);
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  const __m512 x2l = _mm512_fmsub_ps(xc, xc, x2);
  const __m512 q = _mm512_mul_ps(bh, x2);
  const __m512 ql =
      _mm512_add_ps(_mm512_fmsub_ps(bh, x2, q), _mm512_fmadd_ps(bh, x2l, _mm512_mul_ps(bl, x2)));
  const __m512 w = _mm512_add_ps(ah, q);
  const __m512 bb = _mm512_sub_ps(w, ah);
  __m512 wl = _mm512_add_ps(_mm512_sub_ps(ah, _mm512_sub_ps(w, bb)), _mm512_sub_ps(q, bb));
  wl = _mm512_add_ps(wl, _mm512_add_ps(al, ql));
  const __m512 s = _mm512_mul_ps(xc, w);
  const __m512 sl = _mm512_fmadd_ps(xc, wl, _mm512_fmsub_ps(xc, w, s));
  return TimesSigmoid16<true>(x, s, sl);
}

template <__m512 (*kFn)(__m512)>
RECTIFIER_AVX512 void Loop16(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, kFn(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, mask, kFn(_mm512_maskz_loadu_ps(mask, x + i)));
  }
}

bool DetectAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

bool DetectAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

const char* FastActivationName(FastActivation f) {
  switch (f) {
    case FastActivation::kTanh:
      return "tanh";
    case FastActivation::kGeluTanh:
      return "gelu_tanh";
    case FastActivation::kSigmoid:
      return "sigmoid";
    case FastActivation::kSilu:
      return "silu";
  }
  return "?";
}

bool FastActivationsVectorized() {
  static const bool avx2 = DetectAvx2();
  return avx2;
}

void ApplyFastActivationScalar(FastActivation f, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = ScalarOne(f, x[i]);
}

void ApplyFastActivationAvx2(FastActivation f, const float* x, float* y, int64_t n) {
  switch (f) {
    case FastActivation::kTanh:
      Loop<Tanh8>(x, y, n);
      break;
    case FastActivation::kGeluTanh:
      Loop<GeluTanh8>(x, y, n);
      break;
    case FastActivation::kSigmoid:
      Loop<Sigmoid8>(x, y, n);
      break;
    case FastActivation::kSilu:
      Loop<Silu8>(x, y, n);
      break;
  }
}

bool FastActivationsAvx512() {
  static const bool avx512 = DetectAvx512();
  return avx512;
}

void ApplyFastActivationAvx512(FastActivation f, const float* x, float* y, int64_t n) {
  switch (f) {
    case FastActivation::kTanh:
      Loop16<Tanh16>(x, y, n);
      break;
    case FastActivation::kGeluTanh:
      Loop16<GeluTanh16>(x, y, n);
      break;
    case FastActivation::kSigmoid:
      Loop16<Sigmoid16>(x, y, n);
      break;
    case FastActivation::kSilu:
      Loop16<Silu16>(x, y, n);
      break;
  }
}

const char* FastActivationsIsa() {
  return FastActivationsAvx512() ? "avx512" : FastActivationsVectorized() ? "avx2" : "scalar";
}

void ApplyFastActivation(FastActivation f, const float* x, float* y, int64_t n) {
  if (FastActivationsAvx512()) {
    ApplyFastActivationAvx512(f, x, y, n);
  } else if (FastActivationsVectorized()) {
    ApplyFastActivationAvx2(f, x, y, n);
  } else {
    ApplyFastActivationScalar(f, x, y, n);
  }
}

void ApplyFastActivationParallel(FastActivation f, const float* x, float* y, int64_t n) {
  // 16 Ki floats (64 KiB) per chunk: large enough to amortize scheduling,
  // small enough to balance a 1x64x56x56 tensor over many threads.
  constexpr int64_t kChunk = 16 * 1024;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1 || omp_get_max_threads() <= 1) {
    ApplyFastActivation(f, x, y, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk;
    ApplyFastActivation(f, x + begin, y + begin, std::min(kChunk, n - begin));
  }
}

void SoftmaxMiddleAxisScalar(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner,
                             bool log) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j)
      SoftmaxColumnScalar(x + o * axis * inner + j, y + o * axis * inner + j, axis, inner, log);
}

void SoftmaxMiddleAxis(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner,
                       bool log) {
  if (!FastActivationsVectorized() || inner < 8) {
    SoftmaxMiddleAxisScalar(x, y, outer, axis, inner, log);
    return;
  }
  // Work units of 32 columns (4 vectors); a unit's slab (axis x 128 bytes)
  // stays in L1 across its three passes.
  constexpr int64_t kCols = 32;
  const int64_t units_per_slab = (inner + kCols - 1) / kCols;
  const int64_t units = outer * units_per_slab;
  const int threads = units >= 8 ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t o = u / units_per_slab;
    const int64_t j0 = (u % units_per_slab) * kCols;
    const float* xs = x + o * axis * inner;
    float* ys = y + o * axis * inner;
    int64_t j = j0;
    const int64_t end = std::min(inner, j0 + kCols);
    if (end - j == kCols) {
      SoftmaxColumns<4>(xs + j, ys + j, axis, inner, log);
      continue;
    }
    for (; j + 8 <= end; j += 8) SoftmaxColumns<1>(xs + j, ys + j, axis, inner, log);
    for (; j < end; ++j) SoftmaxColumnScalar(xs + j, ys + j, axis, inner, log);
  }
}

}  // namespace rectifier::engine
