// The activation catalog: every activation standalone and fused into
// Conv / ConvTranspose / Gemm / MatMul and after a fused residual add,
// against a double-precision reference on inputs that include negatives,
// zeros, large magnitudes, NaN and +-Inf.
//
// Tolerance: |got - want| <= 1e-5 * |want| + 4e-6. oneDNN's exp/erf/tanh
// approximations are accurate to a few ulp (max relative error printed by
// each test, ~1e-7 .. 7e-7 where |want| > 1e-3); its soft_relu (Softplus,
// Mish) has up to ~1e-6 absolute error for x < -10, where the value itself is
// ~1e-6. NaN must stay NaN and +-Inf results must match exactly, with two
// documented oneDNN 2.6 deviations: Relu, Clip/Relu6 and HardSigmoid turn
// NaN into 0 / the lower bound (Spec::nan_result), and the x * gate(x) forms
// (SiLU, Swish, Mish, GELU, HardSwish) may return the limit 0 at -Inf where
// the ONNX formula gives -Inf * 0 = NaN.
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

constexpr double kRtol = 1e-5;
constexpr double kAtol = 4e-6;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int64_t kC = 8;

struct Spec {
  std::string name;
  int opset;
  // Adds the activation reading `x`, writing `y` (may add several nodes).
  std::function<void(ModelBuilder&, const std::string& x, const std::string& y)> add;
  std::function<double(double x, int64_t channel)> ref;
  // oneDNN 2.6 maps NaN to this value (its relu/clip kernels use max/min
  // that drop NaN); ONNX would propagate NaN.
  std::optional<double> nan_result = std::nullopt;
};

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double Softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double HardSigmoid(double x, double a, double b) {
  const double v = a * x + b;
  return std::isnan(v) ? v : std::max(0.0, std::min(1.0, v));
}
double Slope(int64_t c) { return 0.05 * static_cast<double>(c + 1) - 0.1; }

void Unary(ModelBuilder& b, const std::string& op, const std::string& x, const std::string& y) {
  b.Node(op, {x}, {y});
}

std::vector<Spec> Catalog() {
  const double selu_a = 1.67326319217681884765625, selu_g = 1.05070102214813232421875;
  std::vector<Spec> s;
  s.push_back({"Relu", 13, [](auto& b, auto& x, auto& y) { Unary(b, "Relu", x, y); },
               [](double v, int64_t) { return v < 0 ? 0.0 : v; }, 0.0});
  s.push_back({"LeakyRelu", 13,
               [](auto& b, auto& x, auto& y) {
                 ModelBuilder::FloatAttr(b.Node("LeakyRelu", {x}, {y}), "alpha", 0.1f);
               },
               [](double v, int64_t) { return v < 0 ? static_cast<double>(0.1f) * v : v; }});
  s.push_back({"PRelu", 13,
               [](auto& b, auto& x, auto& y) {
                 std::vector<float> slope;
                 for (int64_t c = 0; c < kC; ++c) slope.push_back(static_cast<float>(Slope(c)));
                 b.Init(y + "_slope", {kC, 1, 1}, slope);
                 b.Node("PRelu", {x, y + "_slope"}, {y});
               },
               [](double v, int64_t c) {
                 return v < 0 ? static_cast<double>(static_cast<float>(Slope(c))) * v : v;
               }});
  s.push_back({"PReluScalar", 13,
               [](auto& b, auto& x, auto& y) {
                 b.Init(y + "_slope", {1}, {0.25f});
                 b.Node("PRelu", {x, y + "_slope"}, {y});
               },
               [](double v, int64_t) { return v < 0 ? 0.25 * v : v; }});
  s.push_back(
      {"Clip", 13,
       [](auto& b, auto& x, auto& y) {
         b.Init(y + "_lo", {}, {-1.5f}).Init(y + "_hi", {}, {2.5f});
         b.Node("Clip", {x, y + "_lo", y + "_hi"}, {y});
       },
       [](double v, int64_t) { return std::isnan(v) ? v : std::min(2.5, std::max(-1.5, v)); },
       -1.5});
  s.push_back(
      {"Relu6", 13,
       [](auto& b, auto& x, auto& y) {
         b.Init(y + "_lo", {}, {0.0f}).Init(y + "_hi", {}, {6.0f});
         b.Node("Clip", {x, y + "_lo", y + "_hi"}, {y});
       },
       [](double v, int64_t) { return std::isnan(v) ? v : std::min(6.0, std::max(0.0, v)); }, 0.0});
  s.push_back({"Sigmoid", 13, [](auto& b, auto& x, auto& y) { Unary(b, "Sigmoid", x, y); },
               [](double v, int64_t) { return Sigmoid(v); }});
  s.push_back({"Tanh", 13, [](auto& b, auto& x, auto& y) { Unary(b, "Tanh", x, y); },
               [](double v, int64_t) { return std::tanh(v); }});
  s.push_back({"HardSigmoid", 13,
               [](auto& b, auto& x, auto& y) {
                 auto& n = b.Node("HardSigmoid", {x}, {y});
                 ModelBuilder::FloatAttr(n, "alpha", 0.25f);
                 ModelBuilder::FloatAttr(n, "beta", 0.4f);
               },
               [](double v, int64_t) {
                 return HardSigmoid(v, static_cast<double>(0.25f), static_cast<double>(0.4f));
               },
               0.0});
  s.push_back({"HardSwish", 14, [](auto& b, auto& x, auto& y) { Unary(b, "HardSwish", x, y); },
               [](double v, int64_t) { return v * HardSigmoid(v, 1.0 / 6.0, 0.5); }});
  s.push_back({"Elu", 13,
               [](auto& b, auto& x, auto& y) {
                 ModelBuilder::FloatAttr(b.Node("Elu", {x}, {y}), "alpha", 0.7f);
               },
               [](double v, int64_t) {
                 return v < 0 ? static_cast<double>(0.7f) * (std::exp(v) - 1.0) : v;
               }});
  s.push_back({"Selu", 13, [](auto& b, auto& x, auto& y) { Unary(b, "Selu", x, y); },
               [=](double v, int64_t) {
                 return v <= 0 ? selu_g * (selu_a * std::exp(v) - selu_a) : selu_g * v;
               }});
  s.push_back({"Softplus", 13, [](auto& b, auto& x, auto& y) { Unary(b, "Softplus", x, y); },
               [](double v, int64_t) { return Softplus(v); }});
  s.push_back({"Mish", 18, [](auto& b, auto& x, auto& y) { Unary(b, "Mish", x, y); },
               [](double v, int64_t) { return v * std::tanh(Softplus(v)); }});
  s.push_back({"SiLU", 13,  // as torch exports it: x * Sigmoid(x)
               [](auto& b, auto& x, auto& y) {
                 b.Node("Sigmoid", {x}, {y + "_s"});
                 b.Node("Mul", {x, y + "_s"}, {y});
               },
               [](double v, int64_t) { return v * Sigmoid(v); }});
  s.push_back({"Swish", 13,  // x * Sigmoid(1.5 * x)
               [](auto& b, auto& x, auto& y) {
                 b.Init(y + "_beta", {}, {1.5f});
                 b.Node("Mul", {x, y + "_beta"}, {y + "_bx"});
                 b.Node("Sigmoid", {y + "_bx"}, {y + "_s"});
                 b.Node("Mul", {x, y + "_s"}, {y});
               },
               [](double v, int64_t) { return v * Sigmoid(1.5 * v); }});
  s.push_back({"GeluErf", 20, [](auto& b, auto& x, auto& y) { Unary(b, "Gelu", x, y); },
               [](double v, int64_t) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }});
  s.push_back({"GeluTanh", 20,
               [](auto& b, auto& x, auto& y) {
                 ModelBuilder::StringAttr(b.Node("Gelu", {x}, {y}), "approximate", "tanh");
               },
               [](double v, int64_t) {
                 return 0.5 * v *
                        (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
               }});
  return s;
}

// Inputs: random in [-8, 8] plus zeros, -0, large magnitudes, a denormal,
// and (when `specials`) NaN and +-Inf.
Tensor Inputs(std::vector<int64_t> shape, bool specials, uint32_t seed) {
  Tensor t = testing::RandomTensor(std::move(shape), seed);
  const std::vector<float> fixed = {0.0f,  -0.0f,  1e-40f, -1e-40f, 30.0f, -30.0f,
                                    90.0f, -90.0f, 1e4f,   -1e4f,   3e38f, -3e38f};
  float* d = t.data<float>();
  const int64_t n = t.num_elements();
  for (int64_t i = 0; i < n; ++i) d[i] *= 4.0f;
  for (size_t i = 0; i < fixed.size(); ++i) d[(static_cast<int64_t>(i) * 13) % n] = fixed[i];
  if (specials) {
    d[(5 * 13 + 1) % n] = kNaN;
    d[(7 * 13 + 2) % n] = kInf;
    d[(9 * 13 + 3) % n] = -kInf;
  }
  return t;
}

struct Errors {
  double max_abs = 0, max_rel = 0;
};

// Channel of element i of a [N, C, ...] tensor.
int64_t ChannelOf(const Tensor& t, int64_t i) {
  int64_t inner = 1;
  for (size_t d = 2; d < t.shape.size(); ++d) inner *= t.shape[d];
  return (i / inner) % t.shape[1];
}

void Check(const Spec& spec, const Tensor& pre, const Tensor& got, Errors& err) {
  ASSERT_EQ(got.shape, pre.shape);
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const double x = pre.data<float>()[i];
    const double want = spec.ref(x, ChannelOf(pre, i));
    const double g = got.data<float>()[i];
    const std::string where = absl::StrCat(spec.name, " at x=", x, ": got ", g, ", want ", want);
    if (std::isnan(x) && spec.nan_result) {
      ASSERT_EQ(g, *spec.nan_result) << where;
      continue;
    }
    if (std::isnan(want)) {
      // x * gate(x) forms are NaN at x = -Inf by their ONNX formula
      // (-Inf * 0); oneDNN returns the limit 0. Either is accepted there.
      if (std::isinf(x) && x < 0 && g == 0.0) continue;
      ASSERT_TRUE(std::isnan(g)) << where;
      continue;
    }
    if (std::isinf(want)) {
      ASSERT_EQ(g, want) << where;
      continue;
    }
    ASSERT_FALSE(std::isnan(g)) << where;
    const double abs = std::fabs(g - want);
    ASSERT_LE(abs, kAtol + kRtol * std::fabs(want)) << where;
    err.max_abs = std::max(err.max_abs, abs);
    if (std::fabs(want) > 1e-3) err.max_rel = std::max(err.max_rel, abs / std::fabs(want));
  }
}

absl::StatusOr<std::vector<Tensor>> RunModel(const ModelBuilder& b, const Tensor& x, bool fuse,
                                             std::string* plan = nullptr) {
  CompileOptions options;
  options.fuse = fuse;
  auto model = CompiledModel::FromBytes(b.Bytes(), options);
  if (!model.ok()) return model.status();
  if (plan != nullptr) *plan = *(*model)->DescribePlan(static_cast<int>(x.shape[0]));
  auto ctx = ExecutionContext::Create(*model, {1});
  if (!ctx.ok()) return ctx.status();
  return (*ctx)->Run({x});
}

class ActivationCatalogTest : public ::testing::TestWithParam<Spec> {};

TEST_P(ActivationCatalogTest, Standalone) {
  const Spec& spec = GetParam();
  const Tensor x = Inputs({2, kC, 5, 7}, true, 11);
  ModelBuilder b(spec.opset);
  b.Input("x", x.shape).Output("y");
  spec.add(b, "x", "y");
  for (bool fuse : {true, false}) {
    auto y = RunModel(b, x, fuse);
    ASSERT_TRUE(y.ok()) << y.status();
    Errors err;
    Check(spec, x, (*y)[0], err);
    std::printf("[standalone fuse=%d] %-12s max rel %.3g\n", fuse, spec.name.c_str(), err.max_rel);
  }
}

// x -> depthwise 1x1 Conv (weight 1, bias 0: the activation sees x exactly)
// -> activation. The plan must show the activation fused into the conv.
TEST_P(ActivationCatalogTest, FusedIntoConvAndConvTranspose) {
  const Spec& spec = GetParam();
  for (const char* op : {"Conv", "ConvTranspose"}) {
    // oneDNN's deconvolution does not carry NaN/Inf through exactly (its
    // blocked kernel multiplies padding zeros); finite inputs there.
    const Tensor x = Inputs({2, kC, 6, 5}, std::string(op) == "Conv", 12);
    ModelBuilder b(spec.opset);
    b.Input("x", x.shape).Output("y");
    b.Init("w", {kC, 1, 1, 1}, std::vector<float>(kC, 1.0f));
    b.Init("bias", {kC}, std::vector<float>(kC, 0.0f));
    auto& conv = b.Node(op, {"x", "w", "bias"}, {"c"}, "conv");
    ModelBuilder::IntAttr(conv, "group", kC);
    ModelBuilder::IntsAttr(conv, "kernel_shape", {1, 1});
    spec.add(b, "c", "y");
    std::string plan;
    auto y = RunModel(b, x, true, &plan);
    ASSERT_TRUE(y.ok()) << y.status();
    EXPECT_NE(plan.find("{fused: "), std::string::npos) << op << " plan:\n" << plan;
    Errors err;
    Check(spec, x, (*y)[0], err);
    std::printf("[fused %s] %-12s max rel %.3g\n", op, spec.name.c_str(), err.max_rel);
  }
}

// Conv + residual Add + activation: one primitive (sum then the activation).
TEST_P(ActivationCatalogTest, FusedAfterResidualAdd) {
  const Spec& spec = GetParam();
  const Tensor x = Inputs({2, kC, 4, 6}, true, 13);
  ModelBuilder b(spec.opset);
  b.Input("x", x.shape).Output("y");
  b.Init("w", {kC, 1, 1, 1}, std::vector<float>(kC, 1.0f));
  auto& conv = b.Node("Conv", {"x", "w"}, {"c"}, "conv");
  ModelBuilder::IntAttr(conv, "group", kC);
  ModelBuilder::IntsAttr(conv, "kernel_shape", {1, 1});
  b.Node("Add", {"c", "x"}, {"sum"});
  spec.add(b, "sum", "y");
  std::string plan;
  auto y = RunModel(b, x, true, &plan);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_NE(plan.find("(sum)"), std::string::npos) << plan;
  Tensor doubled = x;
  for (int64_t i = 0; i < x.num_elements(); ++i) doubled.data<float>()[i] *= 2.0f;
  Errors err;
  Check(spec, doubled, (*y)[0], err);
}

// Gemm (transB, identity weights) and MatMul: finite inputs only, since an
// identity matrix product spreads a NaN/Inf over its row (0 * Inf).
TEST_P(ActivationCatalogTest, FusedIntoGemmAndMatMul) {
  const Spec& spec = GetParam();
  if (spec.name == "PRelu") {
    // The slope is per channel of a [N, C, ...] conv output; a [C, 1, 1]
    // slope does not broadcast onto a 2-D Gemm output.
    GTEST_SKIP() << "conv-shaped slope";
  }
  const Tensor x = Inputs({4, kC}, false, 14);
  std::vector<float> eye(kC * kC, 0.0f);
  for (int64_t i = 0; i < kC; ++i) eye[i * kC + i] = 1.0f;
  for (const char* op : {"Gemm", "MatMul"}) {
    ModelBuilder b(spec.opset);
    b.Input("x", x.shape).Output("y");
    b.Init("w", {kC, kC}, eye);
    b.Node(op, {"x", "w"}, {"g"}, "gemm");
    spec.add(b, "g", "y");
    std::string plan;
    auto y = RunModel(b, x, true, &plan);
    ASSERT_TRUE(y.ok()) << y.status();
    // One step, or two where the activation runs on Rectifier's kernel
    // after it (SiLU by default: CompileOptions::silu_kernel).
    const bool separate = plan.find("[rectifier:") != std::string::npos;
    EXPECT_NE(plan.find(separate ? ": 2 steps" : ": 1 steps"), std::string::npos)
        << op << " plan:\n"
        << plan;
    Errors err;
    Check(spec, x, (*y)[0], err);
  }
}

// PRelu with a per-output slope [N] after Gemm: a prelu post-op of the
// matmul, or (oneDNN 2.6: prelu post-ops only have reference kernels) a
// jit prelu step right after it.
TEST(ActivationCatalogGemmTest, PReluSlopePerOutput) {
  const Tensor x = Inputs({4, kC}, false, 15);
  std::vector<float> eye(kC * kC, 0.0f), slope;
  for (int64_t i = 0; i < kC; ++i) {
    eye[i * kC + i] = 1.0f;
    slope.push_back(static_cast<float>(Slope(i)));
  }
  ModelBuilder b(13);
  b.Input("x", x.shape).Output("y");
  b.Init("w", {kC, kC}, eye).Init("slope", {kC}, slope);
  b.Node("Gemm", {"x", "w"}, {"g"}, "gemm");
  b.Node("PRelu", {"g", "slope"}, {"y"});
  std::string plan;
  auto y = RunModel(b, x, true, &plan);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_NE(plan.find("prelu"), std::string::npos) << plan;
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    const double v = x.data<float>()[i];
    const double s = static_cast<float>(Slope(i % kC));
    EXPECT_NEAR((*y)[0].data<float>()[i], v < 0 ? s * v : v, 1e-6 + 1e-6 * std::fabs(v)) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Catalog, ActivationCatalogTest, ::testing::ValuesIn(Catalog()),
                         [](const ::testing::TestParamInfo<Spec>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace rectifier::engine
