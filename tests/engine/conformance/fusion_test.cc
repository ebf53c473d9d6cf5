// Fused chains compiled with CompileOptions::fuse true and false agree with
// each other and with the reference kernels, and the fused plan is really
// shorter; tensors with two consumers are not fused away.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/engine_runner.h"
#include "tests/engine/conformance/onnx_test_util.h"
#include "tests/engine/conformance/reference_kernels.h"

namespace rectifier::engine {
namespace {

using testing::AttrFloat;
using testing::AttrInt;
using testing::AttrInts;
using testing::BinaryOp;
using testing::CompareTensors;
using testing::CompileAndRun;
using testing::ConvParams;
using testing::ExpectEngineMatches;
using testing::FloatTensor;
using testing::kRefTolerance;
using testing::ModelBuilder;
using testing::PoolParams;
using testing::RandomFloatTensor;

class EngineFusionTest : public ::testing::Test {
 protected:
  // Compiles `builder` with and without fusion and checks every output. When
  // `expect_fusion`, the fused plan must also have fewer lines (steps) than
  // the unfused one, so the comparison is not unfused against unfused.
  void ExpectFusedMatchesUnfused(const ModelBuilder& builder, const std::vector<Tensor>& inputs,
                                 const std::vector<Tensor>& want, bool expect_fusion = true) {
    absl::StatusOr<std::vector<Tensor>> fused = CompileAndRun(builder.Bytes(), inputs, true);
    absl::StatusOr<std::vector<Tensor>> unfused = CompileAndRun(builder.Bytes(), inputs, false);
    ASSERT_TRUE(fused.ok()) << "fuse=true: " << fused.status();
    ASSERT_TRUE(unfused.ok()) << "fuse=false: " << unfused.status();
    ASSERT_EQ(fused->size(), want.size());
    ASSERT_EQ(unfused->size(), want.size());
    for (size_t k = 0; k < want.size(); ++k) {
      SCOPED_TRACE(absl::StrCat("output ", k));
      EXPECT_EQ(CompareTensors((*unfused)[k], (*fused)[k], kRefTolerance), "")
          << "fused vs unfused";
      EXPECT_EQ(CompareTensors(want[k], (*fused)[k], kRefTolerance), "") << "fused vs reference";
      EXPECT_EQ(CompareTensors(want[k], (*unfused)[k], kRefTolerance), "")
          << "unfused vs reference";
    }
    const absl::StatusOr<std::string> fused_plan = Plan(builder, inputs, true);
    const absl::StatusOr<std::string> unfused_plan = Plan(builder, inputs, false);
    ASSERT_TRUE(fused_plan.ok()) << fused_plan.status();
    ASSERT_TRUE(unfused_plan.ok()) << unfused_plan.status();
    // Steps, not counting a copy of a residual addend the fused conv may
    // not overwrite (a graph input in another layout: AVX-512's acdb).
    const auto lines = [](const std::string& text) {
      int steps = 0;
      for (absl::string_view line : absl::StrSplit(text, '\n')) {
        const absl::string_view body = absl::StripLeadingAsciiWhitespace(line);
        const size_t colon = body.find(": ");
        if (colon == absl::string_view::npos || colon == 0 ||
            !std::all_of(body.begin(), body.begin() + colon, absl::ascii_isdigit)) {
          continue;
        }
        if (!absl::StartsWith(body.substr(colon + 2), "Copy addend")) ++steps;
      }
      return steps;
    };
    if (expect_fusion) {
      EXPECT_LT(lines(*fused_plan), lines(*unfused_plan)) << "fused plan:\n"
                                                          << *fused_plan << "unfused plan:\n"
                                                          << *unfused_plan;
    } else {
      EXPECT_LE(lines(*fused_plan), lines(*unfused_plan)) << "fused plan:\n"
                                                          << *fused_plan << "unfused plan:\n"
                                                          << *unfused_plan;
    }
  }

  static absl::StatusOr<std::string> Plan(const ModelBuilder& builder,
                                          const std::vector<Tensor>& inputs, bool fuse) {
    CompileOptions options;
    options.fuse = fuse;
    // The step count measures oneDNN post-op fusion; Rectifier's SiLU
    // (the default, whose numbers the runs above check) is a step of its
    // own either way.
    options.silu_kernel = ActivationKernel::kOneDnn;
    absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
        CompiledModel::FromBytes(builder.Bytes(), options);
    if (!model.ok()) return model.status();
    return (*model)->DescribePlan(static_cast<int>(inputs[0].shape[0]));
  }

  // x [2, 5, 9, 11] -> Conv(7 filters, 3x3, pads 1) named "conv".
  void AddConv(ModelBuilder* builder, const std::string& x, const std::string& y, int64_t in_c,
               int64_t out_c, uint32_t seed) {
    const Tensor w = RandomFloatTensor({out_c, in_c, 3, 3}, seed);
    const Tensor b = RandomFloatTensor({out_c}, seed + 1);
    builder->Initializer(y + "_w", w).Initializer(y + "_b", b);
    onnx::NodeProto* node = builder->Node("Conv", {x, y + "_w", y + "_b"}, {y});
    AttrInts(node, "kernel_shape", {3, 3});
    AttrInts(node, "pads", {1, 1, 1, 1});
    weights_[y] = w;
    biases_[y] = b;
  }

  Tensor RefConv(const Tensor& x, const std::string& y) {
    ConvParams params;
    params.pads = {1, 1, 1, 1};
    return testing::ReferenceConv(x, weights_[y], &biases_[y], params);
  }

  std::map<std::string, Tensor> weights_;
  std::map<std::string, Tensor> biases_;
};

double Relu(double v) { return v > 0 ? v : 0; }
double Sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

TEST_F(EngineFusionTest, ConvBatchNormRelu) {
  const Tensor x = RandomFloatTensor({2, 5, 9, 11}, 7001);
  const Tensor scale = RandomFloatTensor({7}, 7002, 0.5f, 1.5f);
  const Tensor bias = RandomFloatTensor({7}, 7003);
  const Tensor mean = RandomFloatTensor({7}, 7004);
  const Tensor var = RandomFloatTensor({7}, 7005, 0.2f, 2.0f);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  AddConv(&builder, "x", "c", 5, 7, 7006);
  builder.Initializer("scale", scale).Initializer("bias", bias).Initializer("mean", mean);
  builder.Initializer("var", var);
  AttrFloat(builder.Node("BatchNormalization", {"c", "scale", "bias", "mean", "var"}, {"bn"}),
            "epsilon", 1e-3f);
  builder.Node("Relu", {"bn"}, {"y"});
  builder.Output("y", {2, 7, 9, 11});
  const Tensor want = testing::ReferenceUnary(
      testing::ReferenceBatchNorm(RefConv(x, "c"), scale, bias, mean, var, 1e-3), Relu);
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

TEST_F(EngineFusionTest, ConvResidualAddRelu) {
  for (bool conv_first : {true, false}) {
    SCOPED_TRACE(conv_first ? "Add(conv, x)" : "Add(x, conv)");
    const Tensor x = RandomFloatTensor({2, 7, 9, 9}, 7101);
    ModelBuilder builder;
    builder.Input("x", x.shape);
    AddConv(&builder, "x", "c", 7, 7, 7102);
    builder.Node(
        "Add", conv_first ? std::vector<std::string>{"c", "x"} : std::vector<std::string>{"x", "c"},
        {"sum"});
    builder.Node("Relu", {"sum"}, {"y"});
    builder.Output("y", x.shape);
    const Tensor want =
        testing::ReferenceUnary(testing::ReferenceBinary(RefConv(x, "c"), x, BinaryOp::kAdd), Relu);
    ExpectFusedMatchesUnfused(builder, {x}, {want});
  }
}

TEST_F(EngineFusionTest, ResNetBlockConvBnReluConvBnAddRelu) {
  const Tensor x = RandomFloatTensor({3, 5, 7, 9}, 7201);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  std::vector<Tensor> bn;
  bn.reserve(8);
  for (int i = 0; i < 8; ++i) {
    bn.push_back(RandomFloatTensor({5}, 7210 + i, i % 4 == 3 ? 0.2f : -1.0f, 1.5f));
  }
  AddConv(&builder, "x", "c1", 5, 5, 7202);
  builder.Initializer("s1", bn[0]).Initializer("b1", bn[1]).Initializer("m1", bn[2]);
  builder.Initializer("v1", bn[3]);
  builder.Node("BatchNormalization", {"c1", "s1", "b1", "m1", "v1"}, {"n1"});
  builder.Node("Relu", {"n1"}, {"r1"});
  AddConv(&builder, "r1", "c2", 5, 5, 7204);
  builder.Initializer("s2", bn[4]).Initializer("b2", bn[5]).Initializer("m2", bn[6]);
  builder.Initializer("v2", bn[7]);
  builder.Node("BatchNormalization", {"c2", "s2", "b2", "m2", "v2"}, {"n2"});
  builder.Node("Add", {"n2", "x"}, {"sum"});
  builder.Node("Relu", {"sum"}, {"y"});
  builder.Output("y", x.shape);
  const Tensor r1 = testing::ReferenceUnary(
      testing::ReferenceBatchNorm(RefConv(x, "c1"), bn[0], bn[1], bn[2], bn[3], 1e-5), Relu);
  const Tensor n2 =
      testing::ReferenceBatchNorm(RefConv(r1, "c2"), bn[4], bn[5], bn[6], bn[7], 1e-5);
  const Tensor want =
      testing::ReferenceUnary(testing::ReferenceBinary(n2, x, BinaryOp::kAdd), Relu);
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

TEST_F(EngineFusionTest, ConvSigmoidMulIsSilu) {
  const Tensor x = RandomFloatTensor({2, 5, 11, 9}, 7301);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  AddConv(&builder, "x", "c", 5, 7, 7302);
  builder.Node("Sigmoid", {"c"}, {"s"});
  builder.Node("Mul", {"c", "s"}, {"y"});
  builder.Output("y", {2, 7, 11, 9});
  const Tensor want =
      testing::ReferenceUnary(RefConv(x, "c"), [](double v) { return v * Sigmoid(v); });
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

TEST_F(EngineFusionTest, ConvClipIsRelu6) {
  const Tensor x = RandomFloatTensor({2, 5, 9, 9}, 7401, -3.0f, 3.0f);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  AddConv(&builder, "x", "c", 5, 7, 7402);
  builder.Initializer("lo", FloatTensor({}, {0.0f})).Initializer("hi", FloatTensor({}, {6.0f}));
  builder.Node("Clip", {"c", "lo", "hi"}, {"y"});
  builder.Output("y", {2, 7, 9, 9});
  const Tensor want = testing::ReferenceUnary(
      RefConv(x, "c"), [](double v) { return std::min(6.0, std::max(0.0, v)); });
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

// y[m, n] = alpha * sum_k a[m, k] * b'[k, n] + beta * c[n], b' = b or b^T.
Tensor ReferenceGemm(const Tensor& a, const Tensor& b, const Tensor* c, bool trans_b,
                     double alpha = 1.0, double beta = 1.0) {
  const int64_t m_size = a.shape[0], k_size = a.shape[1];
  const int64_t n_size = trans_b ? b.shape[0] : b.shape[1];
  std::vector<float> values(static_cast<size_t>(m_size * n_size));
  for (int64_t m = 0; m < m_size; ++m) {
    for (int64_t n = 0; n < n_size; ++n) {
      double sum = 0.0;
      for (int64_t k = 0; k < k_size; ++k) {
        const double bv =
            trans_b ? b.data<float>()[n * k_size + k] : b.data<float>()[k * n_size + n];
        sum += static_cast<double>(a.data<float>()[m * k_size + k]) * bv;
      }
      const double cv = c != nullptr ? c->data<float>()[n] : 0.0;
      values[m * n_size + n] = static_cast<float>(alpha * sum + beta * cv);
    }
  }
  return FloatTensor({m_size, n_size}, values);
}

TEST_F(EngineFusionTest, GemmRelu) {
  const Tensor x = RandomFloatTensor({3, 37}, 7701);
  const Tensor w = RandomFloatTensor({11, 37}, 7702);
  const Tensor b = RandomFloatTensor({11}, 7703);
  ModelBuilder builder;
  builder.Input("x", x.shape).Initializer("w", w).Initializer("b", b);
  onnx::NodeProto* gemm = builder.Node("Gemm", {"x", "w", "b"}, {"g"});
  AttrInt(gemm, "transB", 1);
  AttrFloat(gemm, "alpha", 0.5f);
  builder.Node("Relu", {"g"}, {"y"});
  builder.Output("y", {3, 11});
  const Tensor want = testing::ReferenceUnary(ReferenceGemm(x, w, &b, true, 0.5), Relu);
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

TEST_F(EngineFusionTest, MatMulSigmoid) {
  const Tensor x = RandomFloatTensor({5, 19}, 7801);
  const Tensor w = RandomFloatTensor({19, 13}, 7802);
  ModelBuilder builder;
  builder.Input("x", x.shape).Initializer("w", w);
  builder.Node("MatMul", {"x", "w"}, {"mm"});
  builder.Node("Sigmoid", {"mm"}, {"y"});
  builder.Output("y", {5, 13});
  const Tensor want = testing::ReferenceUnary(ReferenceGemm(x, w, nullptr, false), Sigmoid);
  ExpectFusedMatchesUnfused(builder, {x}, {want});
}

// A classifier head: GlobalAveragePool -> Flatten -> Gemm -> Relu -> Gemm.
TEST_F(EngineFusionTest, ClassifierHeadGemmReluGemm) {
  const Tensor x = RandomFloatTensor({2, 7, 5, 3}, 7901);
  const Tensor w1 = RandomFloatTensor({9, 7}, 7902), b1 = RandomFloatTensor({9}, 7903);
  const Tensor w2 = RandomFloatTensor({4, 9}, 7904), b2 = RandomFloatTensor({4}, 7905);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  builder.Initializer("w1", w1).Initializer("b1", b1).Initializer("w2", w2).Initializer("b2", b2);
  builder.Node("GlobalAveragePool", {"x"}, {"g"});
  builder.Node("Flatten", {"g"}, {"f"});
  AttrInt(builder.Node("Gemm", {"f", "w1", "b1"}, {"h"}), "transB", 1);
  builder.Node("Relu", {"h"}, {"r"});
  AttrInt(builder.Node("Gemm", {"r", "w2", "b2"}, {"y"}), "transB", 1);
  builder.Output("y", {2, 4});
  PoolParams global;
  global.kernel = {5, 3};
  Tensor pooled = testing::ReferenceAveragePool(x, global);
  pooled.shape = {2, 7};
  const Tensor hidden = testing::ReferenceUnary(ReferenceGemm(pooled, w1, &b1, true), Relu);
  ExpectFusedMatchesUnfused(builder, {x}, {ReferenceGemm(hidden, w2, &b2, true)});
}

// A conv output that is also a graph output, or has a second consumer, must
// not absorb the activation.
TEST_F(EngineFusionTest, ConvWithTwoConsumersIsNotFused) {
  const Tensor x = RandomFloatTensor({2, 5, 9, 7}, 7501);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  AddConv(&builder, "x", "c", 5, 7, 7502);
  builder.Node("Relu", {"c"}, {"r"});
  builder.Node("Sigmoid", {"c"}, {"s"});
  builder.Node("Add", {"r", "s"}, {"y"});
  builder.Output("y", {2, 7, 9, 7}).Output("c", {2, 7, 9, 7});
  const Tensor conv = RefConv(x, "c");
  const Tensor want = testing::ReferenceUnary(conv, [](double v) { return Relu(v) + Sigmoid(v); });
  ExpectFusedMatchesUnfused(builder, {x}, {want, conv}, /*expect_fusion=*/false);
}

TEST_F(EngineFusionTest, ConvOutputAlsoGraphOutputKeepsPreActivationValues) {
  const Tensor x = RandomFloatTensor({3, 5, 7, 9}, 7601);
  ModelBuilder builder;
  builder.Input("x", x.shape);
  AddConv(&builder, "x", "c", 5, 5, 7602);
  builder.Node("Relu", {"c"}, {"y"});
  builder.Output("c", {3, 5, 7, 9}).Output("y", {3, 5, 7, 9});
  const Tensor conv = RefConv(x, "c");
  ExpectFusedMatchesUnfused(builder, {x}, {conv, testing::ReferenceUnary(conv, Relu)},
                            /*expect_fusion=*/false);
}

}  // namespace
}  // namespace rectifier::engine
