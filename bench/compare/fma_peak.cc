// FP32 FMA ceiling of this machine: T threads each run independent chains of
// packed fused multiply-adds (AVX2 256-bit and, where the CPU has it, AVX-512
// 512-bit) with no memory traffic; prints the best of several repetitions as
//   {"threads": T, "avx2_gflops": X, "avx512_gflops": Y}   (Y is 0 without AVX-512)
// Built and run by bench/compare/compare.py (g++ -O2 -pthread fma_peak.cc).
//   fma_peak THREADS [SECONDS_PER_REPETITION]
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;  // > FMA latency x ports on current x86 cores

__attribute__((target("avx2,fma"))) float Avx2(long iterations) {
  __m256 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm256_set1_ps(static_cast<float>(k) * 1e-3f);
  const __m256 mul = _mm256_set1_ps(0.999999f);
  const __m256 add = _mm256_set1_ps(1e-6f);
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 16  // accumulators must live in registers
    for (int k = 0; k < kChains; ++k) acc[k] = _mm256_fmadd_ps(acc[k], mul, add);
  }
  __m256 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm256_add_ps(sum, acc[k]);
  alignas(32) float out[8];
  _mm256_store_ps(out, sum);
  return out[0] + out[7];
}

__attribute__((target("avx512f"))) float Avx512(long iterations) {
  __m512 acc[kChains];
  for (int k = 0; k < kChains; ++k) acc[k] = _mm512_set1_ps(static_cast<float>(k) * 1e-3f);
  const __m512 mul = _mm512_set1_ps(0.999999f);
  const __m512 add = _mm512_set1_ps(1e-6f);
  for (long i = 0; i < iterations; ++i) {
#pragma GCC unroll 16  // accumulators must live in registers
    for (int k = 0; k < kChains; ++k) acc[k] = _mm512_fmadd_ps(acc[k], mul, add);
  }
  __m512 sum = acc[0];
  for (int k = 1; k < kChains; ++k) sum = _mm512_add_ps(sum, acc[k]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);
  return out[0] + out[15];
}

// GFLOP/s of `threads` threads running kernel(iterations) at once.
double Measure(float (*kernel)(long), int lanes, int threads, long iterations) {
  std::atomic<float> sink{0.0f};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] { sink = sink + kernel(iterations); });
  }
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (sink.load() == 12345.0f) std::puts("");  // keep the result alive
  return 2.0 * lanes * kChains * static_cast<double>(iterations) * threads / s / 1e9;
}

double Best(float (*kernel)(long), int lanes, int threads, double seconds) {
  // Calibrate so one repetition lasts about `seconds`, then keep the best of 5.
  long iterations = 1 << 20;
  const double g = Measure(kernel, lanes, threads, iterations);
  iterations = static_cast<long>(seconds * g * 1e9 / (2.0 * lanes * kChains * threads));
  if (iterations < (1 << 20)) iterations = 1 << 20;
  double best = 0.0;
  for (int r = 0; r < 5; ++r) {
    const double v = Measure(kernel, lanes, threads, iterations);
    if (v > best) best = v;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s THREADS [SECONDS_PER_REPETITION]\n", argv[0]);
    return 2;
  }
  const int threads = std::atoi(argv[1]);
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0.2;
  if (threads < 1 || seconds <= 0) {
    std::fprintf(stderr, "fma_peak: THREADS must be >= 1 and SECONDS > 0\n");
    return 2;
  }
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "fma_peak: this CPU has no AVX2+FMA\n");
    return 1;
  }
  const double avx2 = Best(Avx2, 8, threads, seconds);
  const double avx512 = __builtin_cpu_supports("avx512f") ? Best(Avx512, 16, threads, seconds) : 0;
  std::printf("{\"threads\": %d, \"avx2_gflops\": %.1f, \"avx512_gflops\": %.1f}\n", threads, avx2,
              avx512);
  return 0;
}
