// Rectifier's AVX2 activation kernels (fast_activations.h): accuracy against
// a long-double reference over a dense sweep of floats and random values,
// NaN/Inf/signed-zero behaviour, tails, in-place and threaded use; and the
// engine's tanh_kernel option against the oneDNN path.
#include "server/engine/ops/fast_activations.h"

#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

constexpr FastActivation kAll[] = {FastActivation::kTanh, FastActivation::kGeluTanh,
                                   FastActivation::kSigmoid, FastActivation::kSilu};

// The exact functions, in the forms without cancellation, in long double.
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
      // 0.5 x (1 + tanh(u)) = x sigmoid(2u).
      return x *
             sigmoid(2.0L * 0.797884560802865355879892119868763737L * (x + 0.044715L * x * x * x));
  }
  return 0;
}

struct ErrorStats {
  double max_rel = 0;            // over exact results >= FLT_MIN in magnitude
  double max_abs_subnormal = 0;  // over smaller exact results
  float worst_x = 0;
};

ErrorStats Measure(FastActivation f, const std::vector<float>& x, const std::vector<float>& y) {
  ErrorStats s;
  for (size_t i = 0; i < x.size(); ++i) {
    const long double want = Exact(f, x[i]);
    const long double err = std::fabs(static_cast<long double>(y[i]) - want);
    if (std::fabs(want) >= FLT_MIN) {
      const double rel = static_cast<double>(err / std::fabs(want));
      if (!(rel <= s.max_rel)) {  // also catches NaN
        s.max_rel = rel;
        s.worst_x = x[i];
      }
    } else {
      s.max_abs_subnormal = std::max(s.max_abs_subnormal, static_cast<double>(err));
    }
  }
  return s;
}

// Every 8191st bit pattern of the finite floats, both signs (~520K values:
// tiny, subnormal, around every break point of the kernels, huge), plus
// uniform random values in [-12, 12] where all four functions change most.
std::vector<float> Sweep() {
  std::vector<float> v;
  for (uint32_t bits = 0; bits < 0x7f800000u; bits += 8191) {
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    v.push_back(x);
    v.push_back(-x);
  }
  std::mt19937 rng(42);
  std::uniform_real_distribution<float> dist(-12.0f, 12.0f);
  for (int i = 0; i < 50000; ++i) v.push_back(dist(rng));
  for (float x : {0.625f, -0.625f, std::nextafter(0.625f, 0.0f), 20.0f, -20.0f, 104.0f, -104.0f,
                  FLT_MIN, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN})
    v.push_back(x);
  return v;
}

using Impl = void (*)(FastActivation, const float*, float*, int64_t);

void CheckAccuracy(Impl impl) {
  const std::vector<float> x = Sweep();
  std::vector<float> y(x.size());
  for (FastActivation f : kAll) {
    impl(f, x.data(), y.data(), static_cast<int64_t>(x.size()));
    const ErrorStats s = Measure(f, x, y);
    EXPECT_LE(s.max_rel, 1e-6) << FastActivationName(f) << " worst at x=" << s.worst_x;
    EXPECT_LE(s.max_abs_subnormal, FLT_MIN) << FastActivationName(f);
  }
}

TEST(FastActivationsTest, Avx2WithinOneMillionthRelative) {
  if (!FastActivationsVectorized()) GTEST_SKIP() << "CPU without AVX2+FMA";
  CheckAccuracy(ApplyFastActivationAvx2);
}

TEST(FastActivationsTest, Avx512WithinOneMillionthRelative) {
  if (!FastActivationsAvx512()) GTEST_SKIP() << "CPU without AVX-512";
  CheckAccuracy(ApplyFastActivationAvx512);
}

TEST(FastActivationsTest, ScalarFallbackWithinOneMillionthRelative) {
  CheckAccuracy(ApplyFastActivationScalar);
}

void CheckSpecialValues(Impl impl) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> x = {nan, -nan, inf, -inf, 0.0f, -0.0f};
  std::vector<float> y(x.size());
  struct Want {
    float pos_inf, neg_inf, pos_zero, neg_zero;
  };
  const Want want[] = {{1.0f, -1.0f, 0.0f, -0.0f},  // tanh
                       {inf, -0.0f, 0.0f, -0.0f},   // gelu_tanh
                       {1.0f, 0.0f, 0.5f, 0.5f},    // sigmoid
                       {inf, -0.0f, 0.0f, -0.0f}};  // silu
  for (FastActivation f : kAll) {
    impl(f, x.data(), y.data(), static_cast<int64_t>(x.size()));
    const Want& w = want[static_cast<int>(f)];
    const char* name = FastActivationName(f);
    EXPECT_TRUE(std::isnan(y[0])) << name;
    EXPECT_TRUE(std::isnan(y[1])) << name;
    EXPECT_EQ(y[2], w.pos_inf) << name;
    EXPECT_EQ(y[3], w.neg_inf) << name;
    EXPECT_EQ(std::signbit(y[3]), std::signbit(w.neg_inf)) << name;
    EXPECT_EQ(y[4], w.pos_zero) << name;
    EXPECT_FALSE(std::signbit(y[4])) << name;
    EXPECT_EQ(y[5], w.neg_zero) << name;
    EXPECT_EQ(std::signbit(y[5]), std::signbit(w.neg_zero)) << name;
  }
}

TEST(FastActivationsTest, Avx2NanInfAndSignedZero) {
  if (!FastActivationsVectorized()) GTEST_SKIP() << "CPU without AVX2+FMA";
  CheckSpecialValues(ApplyFastActivationAvx2);
}

TEST(FastActivationsTest, Avx512NanInfAndSignedZero) {
  if (!FastActivationsAvx512()) GTEST_SKIP() << "CPU without AVX-512";
  CheckSpecialValues(ApplyFastActivationAvx512);
}

TEST(FastActivationsTest, ScalarNanInfAndSignedZero) {
  CheckSpecialValues(ApplyFastActivationScalar);
}

// Every length 0..40 (full vectors, pairs of vectors and masked tails), for
// each implementation this CPU runs: each element matches the same element
// computed alone, nothing past the end is written, and in-place gives the
// same result.
void CheckTails(Impl impl);

TEST(FastActivationsTest, TailsAndInPlace) {
  std::vector<Impl> impls = {ApplyFastActivationScalar};
  if (FastActivationsVectorized()) impls.push_back(ApplyFastActivationAvx2);
  if (FastActivationsAvx512()) impls.push_back(ApplyFastActivationAvx512);
  for (Impl impl : impls) CheckTails(impl);
}

void CheckTails(Impl impl) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-6.0f, 6.0f);
  for (FastActivation f : kAll) {
    for (int n = 0; n <= 40; ++n) {
      std::vector<float> x(n);
      for (float& v : x) v = dist(rng);
      std::vector<float> y(n + 8, 12345.0f);
      impl(f, x.data(), y.data(), n);
      for (int i = 0; i < n; ++i) {
        float one;
        impl(f, &x[i], &one, 1);
        ASSERT_EQ(y[i], one) << FastActivationName(f) << " n=" << n << " i=" << i;
      }
      for (int i = n; i < n + 8; ++i) ASSERT_EQ(y[i], 12345.0f) << "wrote past the end, n=" << n;
      std::vector<float> inplace = x;
      impl(f, inplace.data(), inplace.data(), n);
      for (int i = 0; i < n; ++i) ASSERT_EQ(inplace[i], y[i]);
    }
  }
}

TEST(FastActivationsTest, ParallelMatchesSerial) {
  const int64_t n = 1 << 20 | 13;  // many chunks and a ragged end
  std::vector<float> x(n);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-8.0f, 8.0f);
  for (float& v : x) v = dist(rng);
  std::vector<float> serial(n), parallel(n);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  for (FastActivation f : kAll) {
    ApplyFastActivation(f, x.data(), serial.data(), n);
    ApplyFastActivationParallel(f, x.data(), parallel.data(), n);
    ASSERT_EQ(serial, parallel) << FastActivationName(f);
  }
  omp_set_num_threads(saved);
}

// ---- engine integration ------------------------------------------------------

std::vector<Tensor> RunModel(const std::string& bytes, const Tensor& x, ActivationKernel kernel,
                             bool fuse, std::string* plan = nullptr) {
  CompileOptions options;
  options.tanh_kernel = kernel;
  options.fuse = fuse;
  auto model = CompiledModel::FromBytes(bytes, options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  if (plan != nullptr) *plan = *(*model)->DescribePlan(1);
  auto ctx = ExecutionContext::Create(*model, {2});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  auto out = (*ctx)->Run({x});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Tensor>{};
}

void ExpectClose(const Tensor& got, const Tensor& want, float rel) {
  ASSERT_EQ(got.shape, want.shape);
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const float g = got.data<float>()[i], w = want.data<float>()[i];
    ASSERT_NEAR(g, w, rel * std::fabs(w) + 1e-6f) << "element " << i;
  }
}

// Conv (channels 12: not a multiple of the 8/16 channel block, so the
// blocked layout has padding) -> Tanh -> Conv -> Gelu(tanh) -> Tanh: the
// activations follow convs (fused post-ops with oneDNN, separate in-place
// steps with the Rectifier kernel), and the last Tanh is a standalone op
// whose input is a graph output too (must not run in place).
// Input x [-1, 3, 10, 10], the weights of two 3x3 convolutions to 12
// channels, and the first of them: x -> c1.
void AddInputAndFirstConv(ModelBuilder& b) {
  b.Input("x", {-1, 3, 10, 10});
  b.RandomInit("w1", {12, 3, 3, 3}, -0.5f, 0.5f);
  b.RandomInit("b1", {12});
  b.RandomInit("w2", {12, 12, 3, 3}, -0.3f, 0.3f);
  b.RandomInit("b2", {12});
  auto& c1 = b.Node("Conv", {"x", "w1", "b1"}, {"c1"});
  ModelBuilder::IntsAttr(c1, "pads", {1, 1, 1, 1});
}

// The second convolution: `in` -> c2.
void AddSecondConv(ModelBuilder& b, const std::string& in) {
  auto& c2 = b.Node("Conv", {in, "w2", "b2"}, {"c2"});
  ModelBuilder::IntsAttr(c2, "pads", {1, 1, 1, 1});
}

std::string ConvTanhGeluModel() {
  ModelBuilder b(20);
  AddInputAndFirstConv(b);
  b.Node("Tanh", {"c1"}, {"t1"});
  AddSecondConv(b, "t1");
  auto& g = b.Node("Gelu", {"c2"}, {"g"});
  ModelBuilder::StringAttr(g, "approximate", "tanh");
  b.Node("Tanh", {"g"}, {"y"});
  b.Output("g");
  b.Output("y");
  return b.Bytes();
}

TEST(FastActivationsTest, RectifierKernelMatchesOneDnnInAModel) {
  const std::string bytes = ConvTanhGeluModel();
  Tensor x = testing::RandomTensor({2, 3, 10, 10});
  for (bool fuse : {true, false}) {
    std::string plan;
    auto want = RunModel(bytes, x, ActivationKernel::kOneDnn, fuse);
    auto got = RunModel(bytes, x, ActivationKernel::kRectifier, fuse, &plan);
    ASSERT_EQ(want.size(), 2u);
    ASSERT_EQ(got.size(), 2u);
    // oneDNN's own tanh/gelu kernels are accurate to a few ulp; ours to 1e-6.
    ExpectClose(got[0], want[0], 2e-5f);
    ExpectClose(got[1], want[1], 2e-5f);
    // Both Tanh and the Gelu run on the Rectifier kernel.
    size_t steps = 0;
    for (size_t at = plan.find("[rectifier:"); at != std::string::npos;
         at = plan.find("[rectifier:", at + 1))
      ++steps;
    EXPECT_EQ(steps, 3u) << plan;
    EXPECT_TRUE(absl::StrContains(plan, "gelu_tanh")) << plan;
    if (fuse) {
      EXPECT_TRUE(absl::StrContains(plan, "tanh (in place)")) << plan;
      EXPECT_TRUE(absl::StrContains(plan, "Rectifier activation kernel")) << plan;
    }
  }
}

// Conv (12 channels: blocked padding) -> SiLU -> Conv -> SiLU -> y, both
// SiLUs as exporters write them (x * Sigmoid(x)), with SiLU on Rectifier's
// kernel (CompileOptions::silu_kernel, the default) and on oneDNN's fused
// swish post-op.
TEST(FastActivationsTest, RectifierSiluMatchesOneDnnSwishInAModel) {
  ModelBuilder b(13);
  AddInputAndFirstConv(b);
  b.Node("Sigmoid", {"c1"}, {"s1"});
  b.Node("Mul", {"c1", "s1"}, {"a1"});
  AddSecondConv(b, "a1");
  b.Node("Sigmoid", {"c2"}, {"s2"});
  b.Node("Mul", {"c2", "s2"}, {"y"});
  b.Output("y");
  const Tensor x = testing::RandomTensor({2, 3, 10, 10}, 21);
  auto run = [&](ActivationKernel silu, std::string* plan) {
    CompileOptions options;
    options.silu_kernel = silu;
    auto model = CompiledModel::FromBytes(b.Bytes(), options);
    EXPECT_TRUE(model.ok()) << model.status();
    if (!model.ok()) return std::vector<Tensor>{};
    *plan = *(*model)->DescribePlan(2);
    auto ctx = ExecutionContext::Create(*model, {2});
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    auto out = (*ctx)->Run({x});
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : std::vector<Tensor>{};
  };
  std::string ours_plan, onednn_plan;
  const auto ours = run(ActivationKernel::kRectifier, &ours_plan);
  const auto onednn = run(ActivationKernel::kOneDnn, &onednn_plan);
  ASSERT_EQ(ours.size(), 1u);
  ASSERT_EQ(onednn.size(), 1u);
  ExpectClose(ours[0], onednn[0], 2e-5f);
  EXPECT_EQ(onednn_plan.find("[rectifier:"), std::string::npos) << onednn_plan;
  EXPECT_TRUE(absl::StrContains(onednn_plan, "+swish")) << onednn_plan;
  EXPECT_FALSE(absl::StrContains(ours_plan, "+swish")) << ours_plan;
  // The first SiLU in place; the second writes the graph output itself
  // (no copy of an alias afterwards).
  EXPECT_TRUE(absl::StrContains(ours_plan, "silu (in place)")) << ours_plan;
  size_t steps = 0;
  for (size_t at = ours_plan.find("silu"); at != std::string::npos;
       at = ours_plan.find("silu", at + 1))
    ++steps;
  EXPECT_EQ(steps, 2u) << ours_plan;
}

TEST(FastActivationsTest, RectifierKernelOnGraphInputRunsOutOfPlace) {
  ModelBuilder b(13);
  b.Input("x", {4, 37});
  b.Node("Tanh", {"x"}, {"y"});
  b.Output("y");
  Tensor x = testing::RandomTensor({4, 37});
  const Tensor before = x;
  auto got = RunModel(b.Bytes(), x, ActivationKernel::kRectifier, true);
  ASSERT_EQ(got.size(), 1u);
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    ASSERT_EQ(x.data<float>()[i], before.data<float>()[i]) << "input modified";
    const double want = std::tanh(static_cast<double>(x.data<float>()[i]));
    ASSERT_NEAR(got[0].data<float>()[i], want, 1e-6 * std::fabs(want) + 1e-30);
  }
}

}  // namespace
}  // namespace rectifier::engine
