// Activation pattern recognition: each pattern built node for node the way
// torch 1.13's exporter writes it (checked with torch.onnx.export at opsets
// 11/13/17: F.silu, x * torch.sigmoid(2 * x), F.mish, F.gelu, F.hardswish
// (opset < 14), F.relu6, torch.maximum(x, 0)), after a Conv. Each test
// asserts the rewrite happened (pass-level counts and the nodes left) and
// that the compiled model matches the raw graph (no patterns, no fusion).
// Negative tests: an intermediate with another consumer, or that is a graph
// output, or constants that do not match, leave the graph alone.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/ir/onnx_import.h"
#include "server/engine/passes/activations.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

constexpr int64_t kC = 4;

// x [2, 4, 5, 5] -> Conv 3x3 "c" -> body(c) -> "y".
ModelBuilder Model(const std::function<void(ModelBuilder&)>& body, int opset = 13) {
  ModelBuilder b(opset);
  b.Input("x", {2, kC, 5, 5}).Output("y");
  b.RandomInit("w", {kC, kC, 3, 3}, -0.5f, 0.5f).RandomInit("bias", {kC}, -1.0f, 1.0f);
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w", "bias"}, {"c"}, "conv"), "pads", {1, 1, 1, 1});
  body(b);
  return b;
}

Graph Import(const ModelBuilder& b) {
  auto g = ImportOnnx(b.Bytes(), {}, int64_t{1} << 30);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : Graph{};
}

std::vector<std::string> Ops(const Graph& g) {
  std::vector<std::string> ops;
  for (const auto& n : g.nodes) ops.push_back(n.op_type);
  return ops;
}

// Compiled with patterns (and fusion) vs the raw graph: same outputs.
void ExpectSameAsRaw(const ModelBuilder& b, const std::string& expect_label) {
  const Tensor x = testing::RandomTensor({2, kC, 5, 5}, 99);
  auto fast = CompiledModel::FromBytes(b.Bytes(), {});
  ASSERT_TRUE(fast.ok()) << fast.status();
  CompileOptions raw_options;
  raw_options.fuse = false;
  raw_options.activation_patterns = false;
  auto raw = CompiledModel::FromBytes(b.Bytes(), raw_options);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ((*fast)->activation_summary().counts.count(expect_label), 1u)
      << (*fast)->activation_summary().ToString();
  auto plan = (*fast)->DescribePlan(2);
  ASSERT_TRUE(plan.ok());
  EXPECT_NE(plan->find("pattern"), std::string::npos) << *plan;
  auto c1 = ExecutionContext::Create(*fast, {1});
  auto c2 = ExecutionContext::Create(*raw, {1});
  auto y1 = (*c1)->Run({x});
  auto y2 = (*c2)->Run({x});
  ASSERT_TRUE(y1.ok()) << y1.status();
  ASSERT_TRUE(y2.ok()) << y2.status();
  testing::ExpectNear((*y1)[0], (*y2)[0], 2e-5f);
}

TEST(ActivationPatternsTest, SiluFromSigmoidMul) {
  auto b = Model([](ModelBuilder& m) {
    m.Node("Sigmoid", {"c"}, {"s"});
    m.Node("Mul", {"c", "s"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseSiluPattern(g), 1);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Swish"}));
  ExpectSameAsRaw(b, "SiLU");
}

TEST(ActivationPatternsTest, SwishFromScaledSigmoid) {
  auto b = Model([](ModelBuilder& m) {
    m.Init("two", {}, {2.0f});
    m.Node("Mul", {"c", "two"}, {"bx"});
    m.Node("Sigmoid", {"bx"}, {"s"});
    m.Node("Mul", {"c", "s"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseSwishPattern(g), 1);
  ASSERT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Swish"}));
  EXPECT_EQ(g.nodes[1].GetFloat("alpha", 0), 2.0f);
  ExpectSameAsRaw(b, "Swish");
}

TEST(ActivationPatternsTest, MishFromSoftplusTanhMul) {
  auto b = Model([](ModelBuilder& m) {
    m.Node("Softplus", {"c"}, {"sp"});
    m.Node("Tanh", {"sp"}, {"t"});
    m.Node("Mul", {"c", "t"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseMishPattern(g), 1);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Mish"}));
  ExpectSameAsRaw(b, "Mish");
}

// The erf GELU in the orders exporters emit.
TEST(ActivationPatternsTest, GeluErfAllOrders) {
  struct Variant {
    const char* name;
    std::function<void(ModelBuilder&)> body;
  };
  const std::vector<Variant> variants = {
      {"torch 1.13: ((x * (Erf(x / 1.4142) + 1)) * 0.5",
       [](ModelBuilder& m) {
         m.Init("sqrt2", {}, {1.4142135381698608f}).Init("one", {}, {1.0f});
         m.Init("half", {}, {0.5f});
         m.Node("Div", {"c", "sqrt2"}, {"d"});
         m.Node("Erf", {"d"}, {"e"});
         m.Node("Add", {"e", "one"}, {"p"});
         m.Node("Mul", {"c", "p"}, {"q"});
         m.Node("Mul", {"q", "half"}, {"y"});
       }},
      {"x * 0.7071, 1 + erf, (p * x), 0.5 * q",
       [](ModelBuilder& m) {
         m.Init("r", {}, {0.70710677f}).Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
         m.Node("Mul", {"c", "r"}, {"d"});
         m.Node("Erf", {"d"}, {"e"});
         m.Node("Add", {"one", "e"}, {"p"});
         m.Node("Mul", {"p", "c"}, {"q"});
         m.Node("Mul", {"half", "q"}, {"y"});
       }},
      {"(p * 0.5) * x",
       [](ModelBuilder& m) {
         m.Init("sqrt2", {}, {1.4142135f}).Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
         m.Node("Div", {"c", "sqrt2"}, {"d"});
         m.Node("Erf", {"d"}, {"e"});
         m.Node("Add", {"e", "one"}, {"p"});
         m.Node("Mul", {"p", "half"}, {"q"});
         m.Node("Mul", {"q", "c"}, {"y"});
       }},
      {"(x * 0.5) * p",
       [](ModelBuilder& m) {
         m.Init("sqrt2", {}, {1.4142135f}).Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
         m.Node("Mul", {"c", "half"}, {"h"});
         m.Node("Div", {"c", "sqrt2"}, {"d"});
         m.Node("Erf", {"d"}, {"e"});
         m.Node("Add", {"e", "one"}, {"p"});
         m.Node("Mul", {"h", "p"}, {"y"});
       }},
  };
  for (const auto& v : variants) {
    SCOPED_TRACE(v.name);
    auto b = Model(v.body);
    Graph g = Import(b);
    EXPECT_EQ(FuseGeluErfPattern(g), 1);
    ASSERT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Gelu"}));
    EXPECT_EQ(g.nodes[1].GetString("approximate", ""), "none");
    ExpectSameAsRaw(b, "Gelu(erf)");
  }
}

// torch 1.13, F.gelu(x, approximate='tanh'), node for node.
TEST(ActivationPatternsTest, GeluTanhAsTorchExportsIt) {
  auto b = Model([](ModelBuilder& m) {
    m.Init("k3", {}, {0.044714998453855515f}).Init("k1", {}, {0.7978845834732056f});
    m.Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
    m.Node("Mul", {"c", "c"}, {"sq"});
    m.Node("Mul", {"c", "sq"}, {"cube"});
    m.Node("Mul", {"k3", "cube"}, {"d"});
    m.Node("Add", {"c", "d"}, {"e"});
    m.Node("Mul", {"k1", "e"}, {"f"});
    m.Node("Tanh", {"f"}, {"t"});
    m.Node("Add", {"one", "t"}, {"u"});
    m.Node("Mul", {"c", "u"}, {"v"});
    m.Node("Mul", {"half", "v"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseGeluTanhPattern(g), 1);
  ASSERT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Gelu"}));
  EXPECT_EQ(g.nodes[1].GetString("approximate", ""), "tanh");
  ExpectSameAsRaw(b, "Gelu(tanh)");
  // Pow(x, 3) for the cube; a shared square is not rewritten.
  auto pow = Model([](ModelBuilder& m) {
    m.Init("three", {}, {3.0f}).Init("k3", {}, {0.044715f}).Init("k1", {}, {0.7978846f});
    m.Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
    m.Node("Pow", {"c", "three"}, {"cube"});
    m.Node("Mul", {"cube", "k3"}, {"d"});
    m.Node("Add", {"d", "c"}, {"e"});
    m.Node("Mul", {"e", "k1"}, {"f"});
    m.Node("Tanh", {"f"}, {"t"});
    m.Node("Add", {"t", "one"}, {"u"});
    m.Node("Mul", {"u", "half"}, {"v"});
    m.Node("Mul", {"v", "c"}, {"y"});
  });
  Graph gp = Import(pow);
  EXPECT_EQ(FuseGeluTanhPattern(gp), 1);
  ExpectSameAsRaw(pow, "Gelu(tanh)");
  auto shared = Model([](ModelBuilder& m) {
    m.Init("k3", {}, {0.044715f}).Init("k1", {}, {0.7978846f});
    m.Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
    m.Node("Mul", {"c", "c"}, {"sq"});
    m.Node("Mul", {"c", "sq"}, {"cube"});
    m.Node("Mul", {"k3", "cube"}, {"d"});
    m.Node("Add", {"c", "d"}, {"e"});
    m.Node("Mul", {"k1", "e"}, {"f"});
    m.Node("Tanh", {"f"}, {"t"});
    m.Node("Add", {"one", "t"}, {"u"});
    m.Node("Mul", {"c", "u"}, {"v"});
    m.Node("Mul", {"half", "v"}, {"gw"});
    m.Node("Add", {"gw", "sq"}, {"y"});
  });
  Graph gs = Import(shared);
  EXPECT_EQ(FuseGeluTanhPattern(gs), 0);
}

TEST(ActivationPatternsTest, HardSwishFromHardSigmoidMul) {
  auto b = Model([](ModelBuilder& m) {
    ModelBuilder::FloatAttr(m.Node("HardSigmoid", {"c"}, {"h"}), "alpha", 0.1666666716337204f);
    m.Node("Mul", {"c", "h"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseHardSwishPattern(g), 1);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "HardSwish"}));
  ExpectSameAsRaw(b, "HardSwish");
}

TEST(ActivationPatternsTest, Relu6FromReluClip) {
  auto b = Model([](ModelBuilder& m) {
    m.Init("zero", {}, {0.0f}).Init("six", {}, {6.0f});
    m.Node("Relu", {"c"}, {"r"});
    m.Node("Clip", {"r", "zero", "six"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseRelu6Pattern(g), 1);
  ASSERT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Clip"}));
  auto act = ActivationOfNode(g.nodes[1], g);
  ASSERT_TRUE(act.has_value());
  EXPECT_EQ(act->kind, ActivationKind::kRelu6);
  ExpectSameAsRaw(b, "Relu6");
}

TEST(ActivationPatternsTest, ReluFromMaxZero) {
  auto b = Model([](ModelBuilder& m) {
    m.Init("zero", {1}, {0.0f});
    m.Node("Max", {"c", "zero"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseReluPattern(g), 1);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Relu"}));
  ExpectSameAsRaw(b, "Relu");
}

TEST(ActivationPatternsTest, RecognizeAllReportsCounts) {
  auto b = Model([](ModelBuilder& m) {
    m.Node("Sigmoid", {"c"}, {"s"});
    m.Node("Mul", {"c", "s"}, {"a"});
    m.Init("zero", {1}, {0.0f});
    m.Node("Max", {"a", "zero"}, {"y"});
  });
  Graph g = Import(b);
  auto counts = RecognizeActivationPatterns(g);
  EXPECT_EQ(counts["SiLU"], 1);
  EXPECT_EQ(counts["Relu"], 1);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Swish", "Relu"}));
}

// ---- negative tests -------------------------------------------------------

TEST(ActivationPatternsTest, SigmoidWithAnotherConsumerIsNotRewritten) {
  auto b = Model([](ModelBuilder& m) {
    m.Node("Sigmoid", {"c"}, {"s"});
    m.Node("Mul", {"c", "s"}, {"a"});
    m.Node("Add", {"a", "s"}, {"y"});  // s is read twice
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseSiluPattern(g), 0);
  EXPECT_EQ(RecognizeActivationPatterns(g).size(), 0u);
  EXPECT_EQ(Ops(g), (std::vector<std::string>{"Conv", "Sigmoid", "Mul", "Add"}));
}

TEST(ActivationPatternsTest, IntermediateGraphOutputIsNotRewritten) {
  auto b = Model([](ModelBuilder& m) {
    m.Node("Softplus", {"c"}, {"sp"});
    m.Node("Tanh", {"sp"}, {"t"});
    m.Node("Mul", {"c", "t"}, {"y"});
  });
  b.Output("t");
  Graph g = Import(b);
  EXPECT_EQ(FuseMishPattern(g), 0);
  EXPECT_EQ(Ops(g).size(), 4u);
}

TEST(ActivationPatternsTest, GeluWithSharedErfIsNotRewritten) {
  auto b = Model([](ModelBuilder& m) {
    m.Init("sqrt2", {}, {1.4142135f}).Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
    m.Node("Div", {"c", "sqrt2"}, {"d"});
    m.Node("Erf", {"d"}, {"e"});
    m.Node("Add", {"e", "one"}, {"p"});
    m.Node("Mul", {"c", "p"}, {"q"});
    m.Node("Mul", {"q", "half"}, {"g"});
    m.Node("Add", {"g", "e"}, {"y"});  // Erf output used again
  });
  Graph g = Import(b);
  EXPECT_EQ(FuseGeluErfPattern(g), 0);
}

TEST(ActivationPatternsTest, WrongConstantsAreNotRewritten) {
  // HardSigmoid with ONNX's default alpha 0.2 is not HardSwish's gate;
  // Max(x, 0.5) is not Relu; GELU with 1.5 instead of sqrt(2) is not GELU.
  auto b = Model([](ModelBuilder& m) {
    m.Node("HardSigmoid", {"c"}, {"h"});
    m.Node("Mul", {"c", "h"}, {"a"});
    m.Init("half", {1}, {0.5f});
    m.Node("Max", {"a", "half"}, {"y"});
  });
  Graph g = Import(b);
  EXPECT_EQ(RecognizeActivationPatterns(g).size(), 0u);
  auto b2 = Model([](ModelBuilder& m) {
    m.Init("k", {}, {1.5f}).Init("one", {}, {1.0f}).Init("half", {}, {0.5f});
    m.Node("Div", {"c", "k"}, {"d"});
    m.Node("Erf", {"d"}, {"e"});
    m.Node("Add", {"e", "one"}, {"p"});
    m.Node("Mul", {"c", "p"}, {"q"});
    m.Node("Mul", {"q", "half"}, {"y"});
  });
  Graph g2 = Import(b2);
  EXPECT_EQ(FuseGeluErfPattern(g2), 0);
}

}  // namespace
}  // namespace rectifier::engine
