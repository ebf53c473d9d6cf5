// The op table: every op's definition (arity per opset, kernels, lowering,
// view and fusion flags) is read from its one registration.
#include "server/engine/ops/op_registry.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/engine/lower/plan_builder.h"

namespace rectifier::engine {
namespace {

Node MakeNode(const std::string& op, int opset, std::vector<std::string> inputs,
              std::vector<std::string> outputs = {"y"}) {
  Node n;
  n.op_type = op;
  n.name = "n";
  n.opset = opset;
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

TEST(OpRegistryTest, EveryOpHasInferenceAndAKernelOrALowering) {
  for (const char* op : {"Conv", "Relu", "Add", "Concat", "Reshape", "Resize", "Dropout", "Cast",
                         "MatMul", "BatchNormalization", "Split", "Shape"}) {
    const OpDef* def = FindOp(op);
    ASSERT_NE(def, nullptr) << op;
    EXPECT_NE(def->infer, nullptr) << op;
    EXPECT_TRUE(def->compute != nullptr || def->lower != nullptr) << op;
  }
  EXPECT_EQ(FindOp("NoSuchOp"), nullptr);
}

TEST(OpRegistryTest, LoweringAndFlagsComeFromTheTable) {
  EXPECT_EQ(FindOp("Conv")->lower, &LowerConvolution);
  EXPECT_EQ(FindOp("ConvTranspose")->lower, &LowerConvolution);
  EXPECT_EQ(FindOp("Gemm")->lower, &LowerMatMul);
  EXPECT_EQ(FindOp("Relu")->lower, &LowerEltwise);
  EXPECT_EQ(FindOp("PRelu")->lower, &LowerEltwise);
  EXPECT_EQ(FindOp("Mul")->lower, &LowerBinary);
  EXPECT_EQ(FindOp("Transpose")->lower, nullptr);  // reference kernel only
  EXPECT_TRUE(FindOp("Conv")->fuses_activation);
  EXPECT_TRUE(FindOp("Conv")->fuses_sum);
  EXPECT_TRUE(FindOp("MatMul")->fuses_activation);
  EXPECT_FALSE(FindOp("MatMul")->fuses_sum);
  EXPECT_FALSE(FindOp("Add")->fuses_activation);
}

TEST(OpRegistryTest, ViewsAreDecidedPerNode) {
  Graph g;
  g.value_info["x"].type = DataType::kFloat32;
  g.value_info["y"].type = DataType::kFloat32;
  g.value_info["i"].type = DataType::kInt64;
  EXPECT_TRUE(FindOp("Reshape")->view(g, MakeNode("Reshape", 13, {"x", "s"})));
  EXPECT_TRUE(FindOp("Cast")->view(g, MakeNode("Cast", 13, {"x"}, {"y"})));
  EXPECT_FALSE(FindOp("Cast")->view(g, MakeNode("Cast", 13, {"x"}, {"i"})));
  EXPECT_TRUE(FindOp("Dropout")->view(g, MakeNode("Dropout", 13, {"x"}, {"y", ""})));
  EXPECT_FALSE(FindOp("Dropout")->view(g, MakeNode("Dropout", 13, {"x"}, {"y", "mask"})));
  EXPECT_EQ(FindOp("Relu")->view, nullptr);
}

TEST(OpRegistryTest, ArityDependsOnOpset) {
  // Reshape takes its shape as an attribute before opset 5, as input 1 after.
  EXPECT_TRUE(CheckArity(MakeNode("Reshape", 1, {"x"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("Reshape", 5, {"x"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("Slice", 10, {"x", "s"})).ok());
  EXPECT_TRUE(CheckArity(MakeNode("Slice", 9, {"x"})).ok());
  // Resize 11: roi, scales and sizes may be omitted, but two inputs are listed.
  EXPECT_TRUE(CheckArity(MakeNode("Resize", 11, {"x", "", "", "sizes"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("Resize", 11, {"x"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("Resize", 10, {"x", ""})).ok());
}

TEST(OpRegistryTest, ArityNamesWhatIsMissing) {
  auto missing = CheckArity(MakeNode("Concat", 13, {"a", "", "c"}));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.message(), "required input 1")) << missing;
  EXPECT_FALSE(CheckArity(MakeNode("Add", 13, {"a"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("Relu", 13, {"x"}, {"y", "z"})).ok());
  EXPECT_TRUE(CheckArity(MakeNode("MaxPool", 13, {"x"}, {"y", "indices"})).ok());
  EXPECT_TRUE(CheckArity(MakeNode("Split", 13, {"x"}, {"a", "b", "c", "d"})).ok());
  EXPECT_FALSE(CheckArity(MakeNode("BatchNormalization", 13, {"x", "s", "b", "m"})).ok());
}

}  // namespace
}  // namespace rectifier::engine
