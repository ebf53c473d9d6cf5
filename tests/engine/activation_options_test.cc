// Per-model activation configuration: every replacement target, replacing
// from pattern-recognized and parameterized kinds, the GELU approximation,
// the effective-activation summary and the validation errors.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;
using Adder = std::function<void(ModelBuilder&, const std::string& x, const std::string& y)>;

constexpr int64_t kC = 4;

// Activation adders that write the op directly, per kind (with parameters).
Adder Direct(const std::string& kind, float alpha = 0, float beta = 0) {
  return [=](ModelBuilder& b, const std::string& x, const std::string& y) {
    if (kind == "Relu6" || kind == "Clip") {
      b.Init(y + "_lo", {}, {kind == "Relu6" ? 0.0f : alpha});
      b.Init(y + "_hi", {}, {kind == "Relu6" ? 6.0f : beta});
      b.Node("Clip", {x, y + "_lo", y + "_hi"}, {y});
    } else if (kind == "SiLU" || kind == "Swish") {
      std::string in = x;
      if (kind == "Swish") {
        b.Init(y + "_b", {}, {alpha});
        b.Node("Mul", {x, y + "_b"}, {y + "_bx"});
        in = y + "_bx";
      }
      b.Node("Sigmoid", {in}, {y + "_s"});
      b.Node("Mul", {x, y + "_s"}, {y});
    } else if (kind == "PRelu") {
      b.Init(y + "_slope", {kC, 1, 1}, {0.1f, 0.2f, 0.3f, 0.4f});
      b.Node("PRelu", {x, y + "_slope"}, {y});
    } else if (kind == "GeluTanh") {
      ModelBuilder::StringAttr(b.Node("Gelu", {x}, {y}), "approximate", "tanh");
    } else {
      auto& n = b.Node(kind, {x}, {y});
      if (kind == "LeakyRelu" || kind == "Elu") ModelBuilder::FloatAttr(n, "alpha", alpha);
      if (kind == "HardSigmoid" || kind == "Selu") {
        ModelBuilder::FloatAttr(n, "alpha", alpha);
        ModelBuilder::FloatAttr(n, kind == "Selu" ? "gamma" : "beta", beta);
      }
    }
  };
}

// x -> Conv -> act -> Conv -> y (two layers so fused and standalone mix).
std::string Model(const Adder& act) {
  ModelBuilder b(20);
  b.Input("x", {2, kC, 6, 6}).Output("y");
  b.RandomInit("w1", {kC, kC, 3, 3}, -0.6f, 0.6f).RandomInit("w2", {kC, kC, 1, 1});
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w1"}, {"c1"}, "conv1"), "pads", {1, 1, 1, 1});
  act(b, "c1", "a");
  b.Node("Conv", {"a", "w2"}, {"y"}, "conv2");
  return b.Bytes();
}

std::shared_ptr<const CompiledModel> Compile(const std::string& bytes, const CompileOptions& o) {
  auto m = CompiledModel::FromBytes(bytes, o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *m : nullptr;
}

Tensor RunOnce(const std::shared_ptr<const CompiledModel>& m) {
  auto ctx = ExecutionContext::Create(m, {1});
  auto y = (*ctx)->Run({testing::RandomTensor({2, kC, 6, 6}, 5)});
  EXPECT_TRUE(y.ok()) << y.status();
  return y.ok() ? (*y)[0] : Tensor{};
}

ActivationReplacement Rule(const std::string& from, const std::string& to,
                           std::optional<float> alpha = std::nullopt,
                           std::optional<float> beta = std::nullopt) {
  return ActivationReplacement{from, to, alpha, beta};
}

struct Target {
  std::string to;  // config kind
  std::optional<float> alpha, beta;
  Adder direct;
  std::string label;  // summary label
};

std::vector<Target> Targets() {
  return {
      {"Relu", {}, {}, Direct("Relu"), "Relu"},
      {"LeakyRelu", 0.01f, {}, Direct("LeakyRelu", 0.01f), "LeakyRelu"},
      {"leakyrelu", {}, {}, Direct("LeakyRelu", 0.01f), "LeakyRelu"},  // default alpha
      {"Relu6", {}, {}, Direct("Relu6"), "Relu6"},
      {"Clip", -0.5f, 0.75f, Direct("Clip", -0.5f, 0.75f), "Clip"},
      {"Sigmoid", {}, {}, Direct("Sigmoid"), "Sigmoid"},
      {"Tanh", {}, {}, Direct("Tanh"), "Tanh"},
      {"HardSigmoid", 0.3f, 0.4f, Direct("HardSigmoid", 0.3f, 0.4f), "HardSigmoid"},
      {"HardSwish", {}, {}, Direct("HardSwish"), "HardSwish"},
      {"Elu", 0.5f, {}, Direct("Elu", 0.5f), "Elu"},
      {"Selu", 1.5f, 1.1f, Direct("Selu", 1.5f, 1.1f), "Selu"},
      {"Softplus", {}, {}, Direct("Softplus"), "Softplus"},
      {"Mish", {}, {}, Direct("Mish"), "Mish"},
      {"SiLU", {}, {}, Direct("SiLU"), "SiLU"},
      {"Swish", 1.7f, {}, Direct("Swish", 1.7f), "Swish"},
      {"Gelu", {}, {}, Direct("Gelu"), "Gelu(erf)"},
  };
}

// Relu -> every target: the replaced model computes exactly what a model
// written with the target computes, and the summary says so.
TEST(ActivationOptionsTest, ReluReplacedByEveryTarget) {
  for (const Target& t : Targets()) {
    SCOPED_TRACE(t.to);
    CompileOptions o;
    o.replace = {Rule("Relu", t.to, t.alpha, t.beta)};
    auto replaced = Compile(Model(Direct("Relu")), o);
    auto direct = Compile(Model(t.direct), {});
    ASSERT_TRUE(replaced && direct);
    testing::ExpectNear(RunOnce(replaced), RunOnce(direct), 1e-5f);
    const ActivationSummary& s = replaced->activation_summary();
    EXPECT_EQ(s.counts, (std::map<std::string, int>{{t.label, 1}})) << s.ToString();
    ASSERT_EQ(s.replaced.size(), 1u);
    EXPECT_EQ(s.replaced[0], "Relu -> " + t.label + ": 1");
    EXPECT_NE(s.warning.find("outputs differ unless the weights were trained with " + t.to),
              std::string::npos)
        << s.warning;
  }
}

// Other sources: recognized patterns (SiLU), parameterized kinds (PRelu,
// Relu6 as Clip), GELU.
TEST(ActivationOptionsTest, ReplaceFromPatternsAndParameterizedKinds) {
  struct Case {
    std::string from_model, rule_from, to;
    std::optional<float> alpha;
    Adder want;
  };
  const std::vector<Case> cases = {
      {"SiLU", "SiLU", "Relu", {}, Direct("Relu")},
      {"SiLU", "silu", "HardSwish", {}, Direct("HardSwish")},
      {"Swish", "Swish", "SiLU", {}, Direct("SiLU")},
      {"PRelu", "PRelu", "LeakyRelu", 0.2f, Direct("LeakyRelu", 0.2f)},
      {"Relu6", "Clip", "Relu", {}, Direct("Relu")},
      {"Relu6", "Relu6", "HardSwish", {}, Direct("HardSwish")},
      {"Gelu", "Gelu", "SiLU", {}, Direct("SiLU")},
      {"Mish", "Mish", "LeakyRelu", {}, Direct("LeakyRelu", 0.01f)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.from_model + " -> " + c.to);
    CompileOptions o;
    o.replace = {Rule(c.rule_from, c.to, c.alpha)};
    auto replaced = Compile(Model(Direct(c.from_model, 1.5f)), o);
    auto direct = Compile(Model(c.want), {});
    ASSERT_TRUE(replaced && direct);
    testing::ExpectNear(RunOnce(replaced), RunOnce(direct), 1e-5f);
    EXPECT_EQ(replaced->activation_summary().replaced.size(), 1u)
        << replaced->activation_summary().ToString();
  }
}

TEST(ActivationOptionsTest, NonMatchingRuleChangesNothing) {
  CompileOptions o;
  o.replace = {Rule("SiLU", "Relu")};
  auto m = Compile(Model(Direct("Tanh")), o);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->activation_summary().replaced.empty());
  EXPECT_TRUE(m->activation_summary().warning.empty());
  EXPECT_EQ(m->activation_summary().counts, (std::map<std::string, int>{{"Tanh", 1}}));
}

TEST(ActivationOptionsTest, GeluApproximation) {
  CompileOptions tanh;
  tanh.gelu_approximation = "tanh";
  auto forced = Compile(Model(Direct("Gelu")), tanh);
  auto direct = Compile(Model(Direct("GeluTanh")), {});
  ASSERT_TRUE(forced && direct);
  testing::ExpectNear(RunOnce(forced), RunOnce(direct), 1e-6f);
  EXPECT_EQ(forced->activation_summary().counts, (std::map<std::string, int>{{"Gelu(tanh)", 1}}));
  CompileOptions erf;
  erf.gelu_approximation = "erf";
  auto back = Compile(Model(Direct("GeluTanh")), erf);
  auto plain = Compile(Model(Direct("Gelu")), {});
  testing::ExpectNear(RunOnce(back), RunOnce(plain), 1e-6f);
  // A replacement to Gelu takes the configured form.
  CompileOptions both;
  both.gelu_approximation = "tanh";
  both.replace = {Rule("Relu", "Gelu")};
  auto replaced = Compile(Model(Direct("Relu")), both);
  testing::ExpectNear(RunOnce(replaced), RunOnce(direct), 1e-6f);
}

TEST(ActivationOptionsTest, SummaryCountsPatternsAndFusedLayers) {
  auto m = Compile(Model(Direct("SiLU")), {});
  ASSERT_TRUE(m);
  const ActivationSummary& s = m->activation_summary();
  EXPECT_EQ(s.counts, (std::map<std::string, int>{{"SiLU", 1}}));
  EXPECT_EQ(s.patterns, (std::map<std::string, int>{{"SiLU", 1}}));
  EXPECT_EQ(s.ToString(), "activations: SiLU x1; patterns: SiLU x1");
}

TEST(ActivationOptionsTest, InvalidOptionsNameTheField) {
  const std::string bytes = Model(Direct("Relu"));
  struct Bad {
    CompileOptions options;
    std::string message;
  };
  std::vector<Bad> bad(5);
  bad[0].options.replace = {Rule("Relu", "Sigmoud")};
  bad[0].message = "activation.replace[0].to: unknown activation kind 'Sigmoud'";
  bad[1].options.replace = {Rule("Relu", "Tanh"), Rule("Swishy", "Relu")};
  bad[1].message = "activation.replace[1].from: unknown activation kind 'Swishy'";
  bad[2].options.replace = {Rule("Relu", "PRelu")};
  bad[2].message = "activation.replace[0].to: PRelu needs a trained slope tensor";
  bad[3].options.gelu_approximation = "fast";
  bad[3].message = "activation.gelu_approximation: 'fast' is not one of";
  bad[4].options.replace = {Rule("Relu", "Clip", 2.0f, 1.0f)};
  bad[4].message = "activation.replace[0]: Clip min (alpha) 2 is greater than max (beta) 1";
  for (const Bad& b : bad) {
    auto m = CompiledModel::FromBytes(bytes, b.options);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(b.message), std::string::npos) << m.status();
  }
}

}  // namespace
}  // namespace rectifier::engine
