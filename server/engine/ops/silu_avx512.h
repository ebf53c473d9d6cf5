// Rectifier's SiLU on one AVX-512 vector (Silu16): Silu8 (silu_avx2.h) at
// twice the width, for Rectifier's SiLU step on CPUs where oneDNN runs
// AVX-512 (SiluFast, ops/depthwise.h). Callers compile Silu16 inside
// RECTIFIER_AVX512 functions and call those only when UseAvx512Silu().
#ifndef RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX512_H_
#define RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX512_H_

#include <immintrin.h>

#define RECTIFIER_AVX512 __attribute__((target("avx512f")))

namespace rectifier::engine {

// True when the CPU has AVX-512F and oneDNN may use AVX-512 here
// (dnnl::get_effective_cpu_isa, which ONEDNN_MAX_CPU_ISA caps): an engine
// held to AVX2 for a comparison keeps Rectifier's SiLU at AVX2 too.
bool UseAvx512Silu();

// x * sigmoid(x) as Silu8 computes it (the same Cody-Waite reduction,
// polynomial and special values: NaN stays NaN, +Inf gives +Inf, 0 below
// -87.34), with two differences: the reciprocal estimate has 14 bits
// instead of 12 (after its Newton step, a relative error under 1e-7
// instead of 2.4e-7), and the results below -87.34 (where 1 + exp(-x)
// exceeds 2^126) are zeroed by a mask on the final product, where the
// AVX2 estimate returns 0 by itself.
RECTIFIER_AVX512 inline __m512 Silu16(__m512 x) {
  const __m512 mx = _mm512_max_ps(_mm512_set1_ps(-88.0f), x);  // NaN stays NaN
  const __m512 a = _mm512_min_ps(mx, _mm512_set1_ps(80.0f));   // NaN becomes 80
  const __m512 magic = _mm512_set1_ps(12582912.0f);
  const __m512 t = _mm512_fmadd_ps(a, _mm512_set1_ps(1.44269504088896341f), magic);
  const __m512 nf = _mm512_sub_ps(t, magic);
  const __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(0.693147180559945f), a);
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 lo =
      _mm512_fnmadd_ps(r, _mm512_set1_ps(1.666711420e-01f), _mm512_set1_ps(4.999923110e-01f));
  const __m512 hi =
      _mm512_fnmadd_ps(r, _mm512_set1_ps(8.312515914e-03f), _mm512_set1_ps(4.189011082e-02f));
  const __m512 q = _mm512_fmadd_ps(r2, hi, lo);
  const __m512 p = _mm512_fmadd_ps(r2, q, _mm512_sub_ps(_mm512_set1_ps(1.0f), r));
  const __m512i n_exp = _mm512_slli_epi32(_mm512_castps_si512(t), 23);
  const __m512 e = _mm512_castsi512_ps(_mm512_sub_epi32(_mm512_castps_si512(p), n_exp));
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
  const __m512 rc = _mm512_rcp14_ps(d);
  // Lanes at or below -87.336 (126 ln 2) become 0; NaN lanes are kept
  // (not-less-or-equal is true for unordered operands).
  const __mmask16 keep = _mm512_cmp_ps_mask(mx, _mm512_set1_ps(-87.336f), _CMP_NLE_UQ);
  return _mm512_maskz_mul_ps(keep, _mm512_mul_ps(mx, rc),
                             _mm512_fnmadd_ps(d, rc, _mm512_set1_ps(2.0f)));
}

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_SILU_AVX512_H_
