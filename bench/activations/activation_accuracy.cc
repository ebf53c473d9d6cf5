// Measures the error of Rectifier's activation kernels (fast_activations.h)
// against the exact functions in long double, over every k-th float bit
// pattern (both signs; default k = 61, about 70 million inputs) for each
// implementation this CPU runs. Not a benchmark (run by hand, see
// docs/ACTIVATIONS.md): activation_accuracy [k]
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "server/engine/ops/fast_activations.h"

namespace {

using rectifier::engine::FastActivation;

long double Exact(FastActivation f, float xf) {
  const long double x = xf;
  auto sigmoid = [](long double s) {
    return s >= 0 ? 1.0L / (1.0L + std::exp(-s)) : std::exp(s) / (1.0L + std::exp(s));
  };
  switch (f) {
    case FastActivation::kTanh:
      return std::tanh(x);
    case FastActivation::kSigmoid:
      return sigmoid(x);
    case FastActivation::kSilu:
      return x * sigmoid(x);
    case FastActivation::kGeluTanh:
      return x *
             sigmoid(2.0L * 0.797884560802865355879892119868763737L * (x + 0.044715L * x * x * x));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const uint32_t step = argc > 1 ? static_cast<uint32_t>(std::atoi(argv[1])) : 61;
  if (step == 0) {
    std::fprintf(stderr, "usage: %s [k >= 1]\n", argv[0]);
    return 2;
  }
  std::vector<float> x;
  for (uint64_t bits = 0; bits < 0x7f800000u; bits += step) {
    const uint32_t b = static_cast<uint32_t>(bits);
    float v;
    std::memcpy(&v, &b, sizeof(v));
    x.push_back(v);
    x.push_back(-v);
  }
  struct Impl {
    const char* name;
    void (*fn)(FastActivation, const float*, float*, int64_t);
    bool available;
  };
  const Impl impls[] = {
      {"avx512", rectifier::engine::ApplyFastActivationAvx512,
       rectifier::engine::FastActivationsAvx512()},
      {"avx2", rectifier::engine::ApplyFastActivationAvx2,
       rectifier::engine::FastActivationsVectorized()},
      {"scalar", rectifier::engine::ApplyFastActivationScalar, true},
  };
  std::printf("%zu inputs (every %u-th finite float, both signs)\n", x.size(), step);
  std::vector<float> y(x.size());
  for (const Impl& impl : impls) {
    if (!impl.available) continue;
    for (FastActivation f : {FastActivation::kTanh, FastActivation::kGeluTanh,
                             FastActivation::kSigmoid, FastActivation::kSilu}) {
      impl.fn(f, x.data(), y.data(), static_cast<int64_t>(x.size()));
      double max_rel = 0, max_sub = 0;
      float worst = 0;
#pragma omp parallel
      {
        double rel_t = 0, sub_t = 0;
        float worst_t = 0;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < static_cast<int64_t>(x.size()); ++i) {
          const long double want = Exact(f, x[i]);
          const long double err = std::fabs(static_cast<long double>(y[i]) - want);
          if (std::fabs(want) >= FLT_MIN) {
            const double rel = static_cast<double>(err / std::fabs(want));
            if (!(rel <= rel_t)) {
              rel_t = rel;
              worst_t = x[i];
            }
          } else if (err > sub_t) {
            sub_t = static_cast<double>(err);
          }
        }
#pragma omp critical
        {
          if (!(rel_t <= max_rel)) {
            max_rel = rel_t;
            worst = worst_t;
          }
          if (sub_t > max_sub) max_sub = sub_t;
        }
      }
      std::printf(
          "%-7s %-10s max relative error %.3g (%.2f ulp of 1) at x = %.9g; "
          "max absolute error where |exact| < FLT_MIN: %.3g\n",
          impl.name, rectifier::engine::FastActivationName(f), max_rel, max_rel / FLT_EPSILON,
          worst, max_sub);
    }
  }
  return 0;
}
