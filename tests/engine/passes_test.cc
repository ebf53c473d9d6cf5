// Graph passes: each pass's effect on the IR, and fused vs unfused execution
// of the same model on the same random input.
#include "server/engine/passes/passes.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "server/engine/ir/onnx_import.h"
#include "server/engine/passes/pipeline.h"
#include "server/engine/passes/shape_inference.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::CompileAndRun;
using testing::ExpectNear;
using testing::ModelBuilder;
using testing::RandomTensor;

int CountOps(const Graph& g, const std::string& op) {
  return static_cast<int>(std::count_if(g.nodes.begin(), g.nodes.end(),
                                        [&](const Node& n) { return n.op_type == op; }));
}

Graph Import(const ModelBuilder& b) {
  auto g = ImportOnnx(b.Bytes(), {}, int64_t{1} << 30);
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *std::move(g) : Graph{};
}

// Naive NCHW convolution (stride 1, symmetric pad) used as ground truth.
Tensor NaiveConv(const Tensor& x, const std::vector<float>& w, const std::vector<float>& bias,
                 int64_t oc, int64_t k, int64_t pad) {
  const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3];
  const int64_t oh = h + 2 * pad - k + 1, ow = wd + 2 * pad - k + 1;
  Tensor y = Tensor::Zeros(DataType::kFloat32, {n, oc, oh, ow});
  for (int64_t b = 0; b < n; ++b)
    for (int64_t o = 0; o < oc; ++o)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double s = bias.empty() ? 0.0 : bias[o];
          for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t ki = 0; ki < k; ++ki)
              for (int64_t kj = 0; kj < k; ++kj) {
                const int64_t yi = i + ki - pad, xj = j + kj - pad;
                if (yi < 0 || yi >= h || xj < 0 || xj >= wd) continue;
                s += static_cast<double>(w[((o * c + ci) * k + ki) * k + kj]) *
                     x.data<float>()[((b * c + ci) * h + yi) * wd + xj];
              }
          y.data<float>()[((b * oc + o) * oh + i) * ow + j] = static_cast<float>(s);
        }
  return y;
}

std::vector<float> Values(int64_t n, float scale, float offset = 0.0f) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = offset + scale * static_cast<float>((i * 37) % 11 - 5);
  return v;
}

TEST(PassesTest, EliminateIdentitiesRewiresConsumers) {
  ModelBuilder b;
  b.Input("x", {1, 4});
  b.Node("Identity", {"x"}, {"a"});
  b.Node("Relu", {"a"}, {"r"});
  b.Node("Dropout", {"r"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  // The Dropout feeds a graph output, so it stays (as a copy); Identity goes.
  EXPECT_EQ(EliminateIdentities(g), 1);
  EXPECT_EQ(CountOps(g, "Identity"), 0);
  EXPECT_EQ(g.nodes[0].inputs[0], "x");
  auto out = CompileAndRun(b.Bytes(), {RandomTensor({1, 4})});
  ASSERT_TRUE(out.ok()) << out.status();
  Tensor in = RandomTensor({1, 4});
  for (int i = 0; i < 4; ++i)
    EXPECT_FLOAT_EQ((*out)[0].data<float>()[i], std::max(0.0f, in.data<float>()[i]));
}

TEST(PassesTest, EliminateDeadNodesDropsUnusedBranches) {
  ModelBuilder b;
  b.Input("x", {2, 3});
  b.Node("Relu", {"x"}, {"y"});
  b.Node("Sigmoid", {"x"}, {"unused"});
  b.Node("Exp", {"unused"}, {"unused2"});
  b.Output("y");
  Graph g = Import(b);
  EXPECT_EQ(EliminateDeadNodes(g), 2);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op_type, "Relu");
}

TEST(PassesTest, FoldConstantsEvaluatesConstantSubgraphs) {
  ModelBuilder b;
  b.Input("x", {2, 3});
  b.Init("c1", {3}, {1, 2, 3});
  b.Init("c2", {3}, {10, 20, 30});
  b.Node("Mul", {"c1", "c2"}, {"c3"});
  b.Node("Add", {"x", "c3"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  ASSERT_TRUE(FoldConstants(g, 1 << 20).ok());
  ASSERT_EQ(g.nodes.size(), 1u);
  ASSERT_TRUE(g.IsConstant("c3"));
  EXPECT_FLOAT_EQ(g.constants.at("c3").data<float>()[2], 90.0f);
}

TEST(PassesTest, ShapeSubgraphFoldsOnceTheBatchIsFixed) {
  // y = Reshape(x, Concat(Gather(Shape(x), 0), [-1])): a flatten written the
  // way exporters do it. With the batch fixed it must fold to a constant.
  ModelBuilder b;
  b.Input("x", {-1, 2, 3});
  b.InitInts("zero", {}, {0});
  b.InitInts("minus1", {1}, {-1});
  b.InitInts("axes0", {1}, {0});
  b.Node("Shape", {"x"}, {"s"});
  b.Node("Gather", {"s", "zero"}, {"n"});
  b.Node("Unsqueeze", {"n", "axes0"}, {"n1"});
  b.Node("Concat", {"n1", "minus1"}, {"shape"});
  ModelBuilder::IntAttr(b.model().mutable_graph()->mutable_node(3)[0], "axis", 0);
  b.Node("Reshape", {"x", "shape"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  g.inputs[0].shape[0] = 3;
  ASSERT_TRUE(InferShapes(g, 1 << 20).ok());
  EliminateDeadNodes(g);
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0].op_type, "Reshape");
  EXPECT_EQ(g.value_info.at("y").shape, (std::vector<int64_t>{3, 6}));
  auto out = CompileAndRun(b.Bytes(), {RandomTensor({4, 2, 3})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{4, 6}));
  Tensor in = RandomTensor({4, 2, 3});
  EXPECT_FLOAT_EQ((*out)[0].data<float>()[23], in.data<float>()[23]);
}

ModelBuilder ConvBnModel(bool with_bias) {
  ModelBuilder b;
  b.Input("x", {-1, 3, 7, 6});
  b.Init("w", {4, 3, 3, 3}, Values(4 * 27, 0.1f));
  if (with_bias) b.Init("b", {4}, {0.5f, -0.25f, 0.1f, 0.0f});
  b.Init("gamma", {4}, {1.5f, 0.5f, -1.0f, 2.0f});
  b.Init("beta", {4}, {0.1f, 0.2f, 0.3f, -0.4f});
  b.Init("mean", {4}, {0.05f, -0.1f, 0.2f, 0.0f});
  b.Init("var", {4}, {1.0f, 0.5f, 2.0f, 0.25f});
  auto& conv =
      with_bias ? b.Node("Conv", {"x", "w", "b"}, {"c"}) : b.Node("Conv", {"x", "w"}, {"c"});
  ModelBuilder::IntsAttr(conv, "pads", {1, 1, 1, 1});
  b.Node("BatchNormalization", {"c", "gamma", "beta", "mean", "var"}, {"y"});
  b.Output("y");
  return b;
}

TEST(PassesTest, FoldBatchNormIntoConvMatchesUnfusedAndReference) {
  for (bool with_bias : {false, true}) {
    ModelBuilder b = ConvBnModel(with_bias);
    Graph g = Import(b);
    EXPECT_EQ(FoldBatchNorm(g), 1);
    EXPECT_EQ(CountOps(g, "BatchNormalization"), 0);
    Tensor x = RandomTensor({2, 3, 7, 6});
    auto fused = CompileAndRun(b.Bytes(), {x}, true);
    auto unfused = CompileAndRun(b.Bytes(), {x}, false);
    ASSERT_TRUE(fused.ok()) << fused.status();
    ASSERT_TRUE(unfused.ok()) << unfused.status();
    ExpectNear((*fused)[0], (*unfused)[0]);
    // Ground truth: naive conv then BN by hand.
    std::vector<float> bias =
        with_bias ? std::vector<float>{0.5f, -0.25f, 0.1f, 0.0f} : std::vector<float>{0, 0, 0, 0};
    Tensor ref = NaiveConv(x, Values(4 * 27, 0.1f), bias, 4, 3, 1);
    const float gamma[] = {1.5f, 0.5f, -1.0f, 2.0f}, beta[] = {0.1f, 0.2f, 0.3f, -0.4f};
    const float mean[] = {0.05f, -0.1f, 0.2f, 0.0f}, var[] = {1.0f, 0.5f, 2.0f, 0.25f};
    for (int64_t i = 0; i < ref.num_elements(); ++i) {
      const int64_t c = (i / 42) % 4;
      float& v = ref.data<float>()[i];
      v = (v - mean[c]) / std::sqrt(var[c] + 1e-5f) * gamma[c] + beta[c];
    }
    ExpectNear((*fused)[0], ref, 1e-4f);
  }
}

TEST(PassesTest, FoldBatchNormIntoGemm) {
  ModelBuilder b;
  b.Input("x", {-1, 5});
  b.Init("w", {3, 5}, Values(15, 0.2f));
  b.Init("c", {3}, {1, 2, 3});
  b.Init("gamma", {3}, {2, 0.5f, -1});
  b.Init("beta", {3}, {0, 1, 2});
  b.Init("mean", {3}, {0.5f, 0, -0.5f});
  b.Init("var", {3}, {1, 2, 3});
  auto& gemm = b.Node("Gemm", {"x", "w", "c"}, {"g"});
  ModelBuilder::IntAttr(gemm, "transB", 1);
  b.Node("BatchNormalization", {"g", "gamma", "beta", "mean", "var"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  EXPECT_EQ(FoldBatchNorm(g), 1);
  Tensor x = RandomTensor({3, 5});
  auto fused = CompileAndRun(b.Bytes(), {x}, true);
  auto unfused = CompileAndRun(b.Bytes(), {x}, false);
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  ExpectNear((*fused)[0], (*unfused)[0]);
}

TEST(PassesTest, FoldBiasAddFoldsPerChannelConstants) {
  struct Case {
    const char* op;
    std::vector<int64_t> shape;
    bool conv;
  };
  for (const Case& c :
       {Case{"Add", {1, 4, 1, 1}, true}, Case{"Sub", {4, 1, 1}, true}, Case{"Mul", {4, 1, 1}, true},
        Case{"Mul", {}, true}, Case{"Add", {4}, false}, Case{"Mul", {1, 4}, false}}) {
    SCOPED_TRACE(std::string(c.op) + (c.conv ? " after Conv" : " after Gemm"));
    ModelBuilder b;
    if (c.conv) {
      b.Input("x", {-1, 3, 5, 5});
      b.Init("w", {4, 3, 3, 3}, Values(4 * 27, 0.1f));
      b.Init("b", {4}, {0.5f, -0.5f, 0.25f, 1.0f});
      b.Node("Conv", {"x", "w", "b"}, {"p"});
    } else {
      b.Input("x", {-1, 6});
      b.Init("w", {6, 4}, Values(24, 0.2f));
      b.Init("b", {4}, {0.5f, -0.5f, 0.25f, 1.0f});
      b.Node("Gemm", {"x", "w", "b"}, {"p"});
    }
    const int64_t n = c.shape.empty() ? 1 : 4;
    b.Init("k", c.shape, Values(n, 0.3f, 0.1f));
    b.Node(c.op, {"p", "k"}, {"y"});
    b.Output("y");
    Graph g = Import(b);
    EXPECT_EQ(FoldBiasAdd(g), 1);
    EXPECT_EQ(g.nodes.size(), 1u);
    Tensor x = RandomTensor(c.conv ? std::vector<int64_t>{2, 3, 5, 5} : std::vector<int64_t>{3, 6});
    auto fused = CompileAndRun(b.Bytes(), {x}, true);
    auto unfused = CompileAndRun(b.Bytes(), {x}, false);
    ASSERT_TRUE(fused.ok()) << fused.status();
    ASSERT_TRUE(unfused.ok()) << unfused.status();
    ExpectNear((*fused)[0], (*unfused)[0]);
  }
}

TEST(PassesTest, FoldBiasAddLeavesSpatialConstantsAndReversedSub) {
  ModelBuilder b;
  b.Input("x", {1, 3, 4, 4});
  b.Init("w", {2, 3, 1, 1}, Values(6, 0.3f));
  b.Init("spatial", {1, 1, 4, 4}, Values(16, 0.1f));
  b.Init("k", {2, 1, 1}, {1, 2});
  b.Node("Conv", {"x", "w"}, {"c1"});
  b.Node("Add", {"c1", "spatial"}, {"y1"});
  b.Node("Conv", {"x", "w"}, {"c2"});
  b.Node("Sub", {"k", "c2"}, {"y2"});
  b.Output("y1");
  b.Output("y2");
  Graph g = Import(b);
  EXPECT_EQ(FoldBiasAdd(g), 0);
  EXPECT_EQ(g.nodes.size(), 4u);
}

TEST(PassesTest, FoldBatchNormSkipsSharedIntermediate) {
  ModelBuilder b = ConvBnModel(true);
  b.Node("Relu", {"c"}, {"z"});  // second consumer of the conv output
  b.Output("z");
  Graph g = Import(b);
  EXPECT_EQ(FoldBatchNorm(g), 0);
  EXPECT_EQ(CountOps(g, "BatchNormalization"), 1);
}

// Conv followed by `act` (built by `add_act` from "c" to "y").
template <typename AddAct>
void CheckActivationFusion(AddAct add_act, int expect_fused) {
  ModelBuilder b;
  b.Input("x", {-1, 3, 5, 5});
  b.Init("w", {8, 3, 3, 3}, Values(8 * 27, 0.15f));
  b.Init("b", {8}, Values(8, 0.1f));
  auto& conv = b.Node("Conv", {"x", "w", "b"}, {"c"});
  ModelBuilder::IntsAttr(conv, "pads", {1, 1, 1, 1});
  add_act(b);
  b.Output("y");
  Graph g = Import(b);
  EXPECT_EQ(FuseActivations(g), expect_fused);
  if (expect_fused) {
    ASSERT_EQ(g.nodes.size(), 1u);
    EXPECT_FALSE(g.nodes[0].post_ops.empty());
  }
  Tensor x = RandomTensor({2, 3, 5, 5});
  auto fused = CompileAndRun(b.Bytes(), {x}, true);
  auto unfused = CompileAndRun(b.Bytes(), {x}, false);
  ASSERT_TRUE(fused.ok()) << fused.status();
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  ExpectNear((*fused)[0], (*unfused)[0]);
}

TEST(PassesTest, FuseActivationsRelu) {
  CheckActivationFusion([](ModelBuilder& b) { b.Node("Relu", {"c"}, {"y"}); }, 1);
}

TEST(PassesTest, FuseActivationsLeakyReluAndHardSigmoid) {
  CheckActivationFusion(
      [](ModelBuilder& b) {
        ModelBuilder::FloatAttr(b.Node("LeakyRelu", {"c"}, {"l"}), "alpha", 0.1f);
        b.Node("HardSigmoid", {"l"}, {"y"});
      },
      2);
}

TEST(PassesTest, FuseActivationsSiluPattern) {
  CheckActivationFusion(
      [](ModelBuilder& b) {
        b.Node("Sigmoid", {"c"}, {"s"});
        b.Node("Mul", {"c", "s"}, {"y"});
      },
      1);
}

TEST(PassesTest, FuseActivationsClipAndHardSwish) {
  CheckActivationFusion(
      [](ModelBuilder& b) {
        b.Init("lo", {}, {0.0f});
        b.Init("hi", {}, {6.0f});
        b.Node("Clip", {"c", "lo", "hi"}, {"r6"});
        b.Node("HardSwish", {"r6"}, {"y"});
      },
      2);
}

TEST(PassesTest, FuseActivationsIntoGemmAndMatMul) {
  // Gemm with a [N] bias lowers to oneDNN matmul (post-op); with an [M, N]
  // bias it runs the reference kernel and the activation follows it.
  for (bool full_bias : {false, true}) {
    SCOPED_TRACE(full_bias ? "C [M,N]" : "C [N]");
    ModelBuilder b;
    b.Input("x", {3, 6});
    b.Init("w", {6, 4}, Values(24, 0.2f));
    if (full_bias) {
      b.Init("c", {3, 4}, Values(12, 0.1f));
    } else {
      b.Init("c", {4}, Values(4, 0.1f));
    }
    b.Init("w2", {4, 5}, Values(20, 0.3f));
    b.Node("Gemm", {"x", "w", "c"}, {"g"});
    b.Node("Relu", {"g"}, {"r"});
    b.Node("MatMul", {"r", "w2"}, {"m"});
    b.Node("Sigmoid", {"m"}, {"y"});
    b.Output("y");
    Graph g = Import(b);
    EXPECT_EQ(FuseActivations(g), 2);
    EXPECT_EQ(g.nodes.size(), 2u);
    Tensor x = RandomTensor({3, 6});
    auto fused = CompileAndRun(b.Bytes(), {x}, true);
    auto unfused = CompileAndRun(b.Bytes(), {x}, false);
    ASSERT_TRUE(fused.ok()) << fused.status();
    ASSERT_TRUE(unfused.ok()) << unfused.status();
    ExpectNear((*fused)[0], (*unfused)[0]);
  }
}

TEST(PassesTest, FuseActivationsLeavesGraphOutputsAlone) {
  ModelBuilder b;
  b.Input("x", {1, 3, 4, 4});
  b.Init("w", {2, 3, 1, 1}, Values(6, 0.3f));
  b.Node("Conv", {"x", "w"}, {"c"});
  b.Node("Relu", {"c"}, {"y"});
  b.Output("c");
  b.Output("y");
  Graph g = Import(b);
  EXPECT_EQ(FuseActivations(g), 0);
  Tensor x = RandomTensor({1, 3, 4, 4});
  auto out = CompileAndRun(b.Bytes(), {x});
  ASSERT_TRUE(out.ok()) << out.status();
  for (int64_t i = 0; i < (*out)[0].num_elements(); ++i) {
    EXPECT_FLOAT_EQ((*out)[1].data<float>()[i], std::max(0.0f, (*out)[0].data<float>()[i]));
  }
}

// ResNet bottleneck tail: relu(conv(x) + shortcut).
ModelBuilder ResidualModel(bool shortcut_also_output) {
  ModelBuilder b;
  b.Input("x", {-1, 8, 6, 6});
  b.Init("w1", {8, 8, 3, 3}, Values(8 * 72, 0.05f));
  b.Init("w2", {8, 8, 1, 1}, Values(64, 0.1f, 0.01f));
  auto& c1 = b.Node("Conv", {"x", "w1"}, {"a"});
  ModelBuilder::IntsAttr(c1, "pads", {1, 1, 1, 1});
  b.Node("Relu", {"a"}, {"short"});
  b.Node("Conv", {"short", "w2"}, {"c"});
  b.Node("Add", {"c", "short"}, {"s"});
  b.Node("Relu", {"s"}, {"y"});
  b.Output("y");
  if (shortcut_also_output) b.Output("short");
  return b;
}

TEST(PassesTest, FuseResidualAddMakesSumPostOp) {
  for (bool shortcut_out : {false, true}) {
    ModelBuilder b = ResidualModel(shortcut_out);
    Graph g = Import(b);
    FuseActivations(g);
    g.inputs[0].shape[0] = 2;
    ASSERT_TRUE(InferShapes(g, 1 << 24).ok());
    auto sums = FuseResidualAdd(g);
    ASSERT_TRUE(sums.ok());
    EXPECT_EQ(*sums, 1);
    EXPECT_EQ(CountOps(g, "Add"), 0);
    FuseActivations(g);
    EXPECT_EQ(CountOps(g, "Relu"), 0);
    Tensor x = RandomTensor({2, 8, 6, 6});
    auto fused = CompileAndRun(b.Bytes(), {x}, true);
    auto unfused = CompileAndRun(b.Bytes(), {x}, false);
    ASSERT_TRUE(fused.ok()) << fused.status();
    ASSERT_TRUE(unfused.ok()) << unfused.status();
    ExpectNear((*fused)[0], (*unfused)[0]);
    if (shortcut_out) ExpectNear((*fused)[1], (*unfused)[1]);
  }
}

TEST(PassesTest, FuseResidualAddSkipsBroadcastAdd) {
  ModelBuilder b;
  b.Input("x", {1, 4, 3, 3});
  b.Init("w", {4, 4, 1, 1}, Values(16, 0.2f));
  b.Init("bias", {1, 4, 1, 1}, {1, 2, 3, 4});
  b.Node("Conv", {"x", "w"}, {"c"});
  b.Node("Add", {"c", "bias"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  ASSERT_TRUE(InferShapes(g, 1 << 20).ok());
  auto sums = FuseResidualAdd(g);
  ASSERT_TRUE(sums.ok());
  EXPECT_EQ(*sums, 0);
  Tensor x = RandomTensor({1, 4, 3, 3});
  auto out = CompileAndRun(b.Bytes(), {x});
  auto ref = CompileAndRun(b.Bytes(), {x}, false);
  ASSERT_TRUE(out.ok() && ref.ok());
  ExpectNear((*out)[0], (*ref)[0]);
}

}  // namespace
}  // namespace rectifier::engine

namespace rectifier::engine {
namespace {

// The declared pipelines: each pass reports its rewrites under its name.
TEST(PipelineTest, LoadAndShapePipelinesReportRewritesPerPass) {
  ModelBuilder b;
  b.Input("x", {1, 2, 4, 4});
  b.RandomInit("w", {4, 2, 3, 3});
  b.RandomInit("r", {1, 4, 4, 4});
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w"}, {"c"}), "pads", {1, 1, 1, 1});
  b.Node("Identity", {"c"}, {"ci"});
  b.Node("Add", {"ci", "r"}, {"a"});
  b.Node("Relu", {"a"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  CompileOptions options;
  ActivationSummary summary;
  PassContext load(options, &summary);
  ASSERT_TRUE(RunPipeline(LoadPipeline(), g, load, "load").ok());
  EXPECT_EQ(load.counts.size(), LoadPipeline().size());
  EXPECT_EQ(load.counts["EliminateIdentities"], 1);
  // The addend is not per channel, so it is no bias; the Relu reads the Add,
  // which is no fusion target: nothing fuses before shapes are known.
  EXPECT_EQ(load.counts["FoldBiasAdd"], 0);
  EXPECT_EQ(load.counts["FuseActivations"], 0);
  PassContext shape(options);
  ASSERT_TRUE(RunPipeline(ShapePipeline(), g, shape, "shape").ok());
  EXPECT_EQ(shape.counts["FuseResidualAdd"], 1);
  EXPECT_EQ(shape.counts["FuseActivations(after sums)"], 1);
  ASSERT_EQ(CountOps(g, "Conv"), 1);
  EXPECT_EQ(g.nodes.size(), 1u);
  ASSERT_EQ(g.nodes[0].post_ops.size(), 2u);
  EXPECT_EQ(g.nodes[0].post_ops[0].kind, PostOp::Kind::kSum);
  EXPECT_EQ(g.nodes[0].post_ops[1].fn, EltwiseFn::kRelu);
}

TEST(PipelineTest, FusionPassesDoNothingWithoutFuse) {
  ModelBuilder b;
  b.Input("x", {1, 2, 4, 4});
  b.RandomInit("w", {4, 2, 1, 1});
  b.Node("Conv", {"x", "w"}, {"c"});
  b.Node("Relu", {"c"}, {"y"});
  b.Output("y");
  Graph g = Import(b);
  CompileOptions options;
  options.fuse = false;
  PassContext ctx(options);
  ASSERT_TRUE(RunPipeline(LoadPipeline(), g, ctx, "load").ok());
  EXPECT_EQ(ctx.counts["FuseActivations"], 0);
  EXPECT_EQ(CountOps(g, "Relu"), 1);
}

}  // namespace
}  // namespace rectifier::engine
