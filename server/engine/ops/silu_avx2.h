// Rectifier's SiLU on one AVX2 vector (Silu8) and the CPU check for AVX2
// code (CpuHasAvx2Fma), shared by the kernels that apply SiLU in their
// epilogue (ops/depthwise.cc, ops/winograd.cc) and by the SiLU step
// (SiluFast, ops/depthwise.h). Callers compile Silu8 inside RECTIFIER_AVX2
// functions and call those only when CpuHasAvx2Fma().
#ifndef RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX2_H_
#define RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX2_H_

#include <immintrin.h>

#define RECTIFIER_AVX2 __attribute__((target("avx2,fma")))

namespace rectifier::engine {

// True when the CPU runs RECTIFIER_AVX2 code (AVX2 and FMA).
inline bool CpuHasAvx2Fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// 1 + exp(-a), a = min(mx, 80), for mx = max(x, -88): the shared part of
// Silu8 and Sigmoid8, whose error analysis follows.
RECTIFIER_AVX2 inline __m256 OnePlusExpNeg(__m256 mx) {
  // m / (1 + e), m = max(x, -88), e = exp(-a), a = min(m, 80). Written for
  // few operations and a short dependency chain, which together bound it
  // (each vector's ~18 operations wait on one another; the FP scheduler
  // keeps about five vectors in flight):
  //  * n = round(a / ln 2) by adding 1.5 * 2^23, whose low mantissa bits
  //    then hold n (shifted into the exponent field below);
  //  * r = a - n ln 2 (ln 2 as one float: its rounding error, 1.9e-9 times
  //    |n| <= 127, stays under 2.5e-7 relative in e), |r| <= ln 2 / 2;
  //  * exp(-r) = 1 - r + r^2 Q(-r), Q of degree 3 (minimax, relative error
  //    1.1e-7), evaluated in Estrin's order;
  //  * e = exp(-r) 2^-n by subtracting n from the exponent field (n in
  //    [-127, 115]: finite);
  //  * 1 / (1 + e) from the 12-bit estimate and one Newton step, folded into
  //    the final product: y = (m rc) (2 - d rc).
  // Special values without a compare: a NaN x stays NaN in m (max returns
  // its second operand when one is NaN; a becomes 80); +Inf gives +Inf; below
  // -87.34 (-Inf included) d exceeds 2^126, whose reciprocal estimate is
  // flushed to 0, so y is -0 (the exact value is at most 1.03e-36 in
  // magnitude); between -87.34 and -80 y is the tiny exact value.
  const __m256 a = _mm256_min_ps(mx, _mm256_set1_ps(80.0f));  // NaN becomes 80
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 t = _mm256_fmadd_ps(a, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 nf = _mm256_sub_ps(t, magic);
  const __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693147180559945f), a);
  // Q(-r) = c2 - c3 r + c4 r^2 - c5 r^3.
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 lo =
      _mm256_fnmadd_ps(r, _mm256_set1_ps(1.666711420e-01f), _mm256_set1_ps(4.999923110e-01f));
  const __m256 hi =
      _mm256_fnmadd_ps(r, _mm256_set1_ps(8.312515914e-03f), _mm256_set1_ps(4.189011082e-02f));
  const __m256 q = _mm256_fmadd_ps(r2, hi, lo);
  const __m256 p = _mm256_fmadd_ps(r2, q, _mm256_sub_ps(_mm256_set1_ps(1.0f), r));
  const __m256i n_exp = _mm256_slli_epi32(_mm256_castps_si256(t), 23);
  const __m256 e = _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(p), n_exp));
  return _mm256_add_ps(_mm256_set1_ps(1.0f), e);
}

// Silu8 below without the factor x: 1 / (1 + exp(-x)), the same error; 0
// below -87.34, 1 above 80, and NaN for NaN (one blend: the exponential
// alone would give 1).
RECTIFIER_AVX2 inline __m256 Sigmoid8(__m256 x) {
  const __m256 d = OnePlusExpNeg(_mm256_max_ps(_mm256_set1_ps(-88.0f), x));
  const __m256 rc = _mm256_rcp_ps(d);
  const __m256 y = _mm256_mul_ps(rc, _mm256_fnmadd_ps(d, rc, _mm256_set1_ps(2.0f)));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

RECTIFIER_AVX2 inline __m256 Silu8(__m256 x) {
  const __m256 mx = _mm256_max_ps(_mm256_set1_ps(-88.0f), x);  // NaN stays NaN
  const __m256 d = OnePlusExpNeg(mx);
  const __m256 rc = _mm256_rcp_ps(d);
  return _mm256_mul_ps(_mm256_mul_ps(mx, rc), _mm256_fnmadd_ps(d, rc, _mm256_set1_ps(2.0f)));
}

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX2_H_
