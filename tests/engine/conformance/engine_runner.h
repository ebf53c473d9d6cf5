// Helpers for tests that compile a graph built in code, run it once and
// compare the result with a reference kernel.
#ifndef RECTIFIER_TESTS_ENGINE_CONFORMANCE_ENGINE_RUNNER_H_
#define RECTIFIER_TESTS_ENGINE_CONFORMANCE_ENGINE_RUNNER_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"
#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine::testing {

// Engine vs reference: |got - want| <= 1e-4 + 1e-4 * |want| (float32 sums of
// at most a few hundred products of values in [-1, 1]).
inline constexpr Tolerance kRefTolerance{/*rtol=*/1e-4, /*atol=*/1e-4};

// Compiles `bytes` (CompileOptions::fuse = `fuse`) and runs it once on a
// single-threaded context.
absl::StatusOr<std::vector<Tensor>> CompileAndRun(const std::string& bytes,
                                                  const std::vector<Tensor>& inputs,
                                                  bool fuse = true);

// Runs the model and expects (gtest) its single output to match `want`
// within kRefTolerance.
void ExpectEngineMatches(const std::string& bytes, const std::vector<Tensor>& inputs,
                         const Tensor& want, bool fuse = true);

// One of `values`, drawn with `rng`.
int64_t Pick(std::mt19937& rng, const std::vector<int64_t>& values);

// "1,2,3".
std::string Join(const std::vector<int64_t>& values);

}  // namespace rectifier::engine::testing

#endif  // RECTIFIER_TESTS_ENGINE_CONFORMANCE_ENGINE_RUNNER_H_
