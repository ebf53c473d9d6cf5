// Timing helpers shared by the engine benchmark programs in this folder.
#ifndef RECTIFIER_BENCH_ENGINE_BENCH_TIMING_H_
#define RECTIFIER_BENCH_ENGINE_BENCH_TIMING_H_

#include <algorithm>
#include <chrono>
#include <vector>

namespace rectifier::bench {

// The median of `values` (by value: sorted here).
inline double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Runs `run` `warmup` times untimed, then `iters` times; the median time in
// milliseconds.
template <typename F>
double MedianMs(F&& run, int iters, int warmup = 0) {
  for (int i = 0; i < warmup; ++i) run();
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto a = std::chrono::steady_clock::now();
    run();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  return Median(std::move(t));
}

}  // namespace rectifier::bench

#endif  // RECTIFIER_BENCH_ENGINE_BENCH_TIMING_H_
