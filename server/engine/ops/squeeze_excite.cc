#include "server/engine/ops/squeeze_excite.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "server/engine/ops/silu_avx2.h"

namespace rectifier::engine {
namespace {

RECTIFIER_AVX2 float HorizontalSum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

// The mean of channel block t (image t / blocks) into mean[t * 8, + 8):
// of SiLU(x), written back, where p.silu_input.
RECTIFIER_AVX2 void Squeeze(const SqueezeExciteParams& p, float* x, int64_t t, float* mean) {
  const int64_t hw = p.spatial;
  float* src = x + t * hw * 8;
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
  int64_t i = 0;
  if (p.silu_input) {
    for (; i + 1 < hw; i += 2) {
      const __m256 v0 = Silu8(_mm256_loadu_ps(src + i * 8));
      const __m256 v1 = Silu8(_mm256_loadu_ps(src + i * 8 + 8));
      _mm256_storeu_ps(src + i * 8, v0);
      _mm256_storeu_ps(src + i * 8 + 8, v1);
      a0 = _mm256_add_ps(a0, v0);
      a1 = _mm256_add_ps(a1, v1);
    }
    if (i < hw) {
      const __m256 v = Silu8(_mm256_loadu_ps(src + i * 8));
      _mm256_storeu_ps(src + i * 8, v);
      a0 = _mm256_add_ps(a0, v);
    }
  } else {
    for (; i + 1 < hw; i += 2) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(src + i * 8));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(src + i * 8 + 8));
    }
    if (i < hw) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(src + i * 8));
  }
  const __m256 inv = _mm256_set1_ps(1.0f / static_cast<float>(hw));
  _mm256_storeu_ps(mean + t * 8, _mm256_mul_ps(_mm256_add_ps(a0, a1), inv));
}

// The first layer's output t (image t / reduced): a dot product over the
// channels, then the activation.
RECTIFIER_AVX2 float Hidden(const SqueezeExciteParams& p, const float* w1, const float* b1,
                            const float* mean, int64_t t) {
  const int64_t channels = p.channels, r = t % p.reduced;
  const float* w = w1 + r * channels;
  const float* m = mean + t / p.reduced * channels;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t c = 0; c < channels; c += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(m + c), acc);
  }
  float h = HorizontalSum(acc) + b1[r];
  if (p.act == SqueezeExciteParams::Act::kRelu) {
    h = std::max(h, 0.0f);
  } else if (p.act == SqueezeExciteParams::Act::kSilu) {
    h = _mm256_cvtss_f32(Silu8(_mm256_set1_ps(h)));
  }
  return h;
}

// Channel block t (image t / blocks): the second layer for its 8 channels,
// their sigmoid, and x's block scaled by them into y.
RECTIFIER_AVX2 void Excite(const SqueezeExciteParams& p, const float* x, const float* w2t,
                           const float* b2, const float* hidden, int64_t t, float* y) {
  const int64_t blocks = p.channels / 8, n = t / blocks, cb = t % blocks;
  __m256 acc = _mm256_loadu_ps(b2 + cb * 8);
  for (int64_t r = 0; r < p.reduced; ++r) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(w2t + r * p.channels + cb * 8),
                          _mm256_set1_ps(hidden[n * p.reduced + r]), acc);
  }
  const __m256 s = Sigmoid8(acc);
  const float* src = x + t * p.spatial * 8;
  float* dst = y + t * p.spatial * 8;
  for (int64_t i = 0; i < p.spatial; ++i) {
    _mm256_storeu_ps(dst + i * 8, _mm256_mul_ps(_mm256_loadu_ps(src + i * 8), s));
  }
}

}  // namespace

bool SqueezeExciteSupported(const SqueezeExciteParams& p) {
  return CpuHasAvx2Fma() && p.batch >= 1 && p.channels >= 8 && p.channels % 8 == 0 &&
         p.reduced >= 1 && p.spatial >= 1;
}

void SqueezeExcite(const SqueezeExciteParams& p, float* x, const float* w1, const float* b1,
                   const float* w2t, const float* b2, float* y) {
  // The means and the first layer's outputs: a few KB per image.
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>(p.batch * (p.channels + p.reduced)));
  float* mean = scratch.data();
  float* hidden = mean + p.batch * p.channels;
  const int64_t blocks = p.batch * p.channels / 8, units = p.batch * p.reduced;
  // One team; the three phases separated by the loops' barriers.
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < blocks; ++t) Squeeze(p, x, t, mean);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < units; ++t) hidden[t] = Hidden(p, w1, b1, mean, t);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < blocks; ++t) Excite(p, x, w2t, b2, hidden, t, y);
  }
}

}  // namespace rectifier::engine
