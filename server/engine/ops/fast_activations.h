// Rectifier's own vectorized activation kernels, for the functions where
// oneDNN 2.6's eltwise kernel is far from the memory-bandwidth limit (tanh,
// GELU-tanh). AVX-512 or AVX2+FMA when the CPU has them (checked at run
// time), otherwise a scalar double-precision fallback, so the build stays
// portable.
//
// Accuracy (docs/ACTIVATIONS.md has the measured figures): within 1e-6
// relative of the exact function evaluated in double/long double, for every
// float input whose exact result is a normal float (|y| >= FLT_MIN); results
// below FLT_MIN in magnitude may be flushed towards zero (absolute error <
// FLT_MIN). NaN inputs give NaN; +-Inf give the limits (tanh: +-1, sigmoid:
// 1 / +0, SiLU and GELU: +Inf / -0).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_FAST_ACTIVATIONS_H_
#define RECTIFIER_SERVER_ENGINE_OPS_FAST_ACTIVATIONS_H_

#include <cstdint>

namespace rectifier::engine {

enum class FastActivation {
  kTanh,      // tanh(x)
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  kSigmoid,   // 1 / (1 + exp(-x))
  kSilu,      // x * sigmoid(x)
};

const char* FastActivationName(FastActivation f);

// y[i] = f(x[i]) for 0 <= i < n; x == y (in place) is allowed. Uses the
// AVX-512 kernel when the CPU has AVX-512F+DQ, else the AVX2 one when it has
// AVX2 and FMA, else the scalar fallback. Runs on the calling thread.
void ApplyFastActivation(FastActivation f, const float* x, float* y, int64_t n);

// Same, split into chunks across the current OpenMP team size
// (omp_get_max_threads); small arrays stay on the calling thread.
void ApplyFastActivationParallel(FastActivation f, const float* x, float* y, int64_t n);

// True when the CPU has AVX2 and FMA (the AVX2 kernel can run).
bool FastActivationsVectorized();

// True when the CPU also has AVX-512 (F + DQ): ApplyFastActivation then
// uses the 16-wide version of the same kernel.
bool FastActivationsAvx512();
// "avx512", "avx2" or "scalar": what ApplyFastActivation runs here.
const char* FastActivationsIsa();

// The implementations, for tests and benchmarks. The AVX2 one must only be
// called when FastActivationsVectorized() is true, the AVX-512 one when
// FastActivationsAvx512() is.
void ApplyFastActivationScalar(FastActivation f, const float* x, float* y, int64_t n);
void ApplyFastActivationAvx2(FastActivation f, const float* x, float* y, int64_t n);
void ApplyFastActivationAvx512(FastActivation f, const float* x, float* y, int64_t n);

// Softmax over the middle axis of a dense row-major [outer, axis, inner]
// tensor with inner > 1 (a channel softmax such as a detector's DFL head),
// vectorised along `inner` and split over the OpenMP team:
//   y = exp(x - max) / sum(exp(x - max))           (log = false)
//   y = x - max - log(sum(exp(x - max)))           (log = true)
// with max and sum over the axis. oneDNN 2.6 has only its reference kernel
// for this case on AVX2. Same exp as the activations above (relative error
// about 1e-7 per term); NaN in a column makes that column NaN. x == y is
// allowed.
void SoftmaxMiddleAxis(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner,
                       bool log);
// The scalar version (std::exp in float), for tests.
void SoftmaxMiddleAxisScalar(const float* x, float* y, int64_t outer, int64_t axis, int64_t inner,
                             bool log);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_FAST_ACTIVATIONS_H_
