// The hostile model catalogue; see hostile_models.h.
#include "tests/engine/conformance/hostile_models.h"

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

// x [1, 3, 8, 8] float, one node built by `add_node`, output "y" (shape
// left to the engine).
std::string SingleNode(const std::function<void(ModelBuilder&)>& add_node,
                       const std::vector<int64_t>& x_shape = {1, 3, 8, 8},
                       int32_t x_type = onnx::TensorProto::FLOAT) {
  ModelBuilder builder;
  builder.Input("x", x_shape, x_type);
  add_node(builder);
  builder.Output("y", {}, x_type, /*has_shape=*/false);
  return builder.Bytes();
}

std::string ConvWith(const std::string& attr, std::vector<int64_t> values) {
  return SingleNode([&](ModelBuilder& b) {
    b.Initializer("w", RandomFloatTensor({4, 3, 3, 3}, 1));
    onnx::NodeProto* node = b.Node("Conv", {"x", "w"}, {"y"}, "extreme_conv");
    AttrInts(node, "kernel_shape", {3, 3});
    if (attr == "group") {
      AttrInt(node, "group", values[0]);
    } else {
      AttrInts(node, attr, values);
    }
  });
}

}  // namespace

std::vector<HostileModel> HostileModels() {
  std::vector<HostileModel> models;
  auto add = [&](std::string name, std::string bytes, std::string names = "",
                 bool may_succeed = false) {
    models.push_back({std::move(name), std::move(bytes), may_succeed, std::move(names)});
  };

  // Required inputs given as "" (the marker of an omitted optional input).
  const auto hollow = [](const std::string& op, int empty_inputs) {
    return [op, empty_inputs](ModelBuilder& b) {
      std::vector<std::string> inputs = {"x"};
      inputs.resize(1 + empty_inputs);
      b.Node(op, inputs, {"y"}, "hollow_node");
    };
  };
  for (const char* op : {"PRelu", "Pow", "Add", "Sub", "Mul", "Div"}) {
    add(std::string(op) + "EmptySecondInput", SingleNode(hollow(op, 1)), "hollow_node");
  }
  add("AddUint8EmptySecondInput", SingleNode(hollow("Add", 1), {3, 4, 5}, onnx::TensorProto::UINT8),
      "hollow_node");
  add("AddThreeInputsTwoEmpty", SingleNode(hollow("Add", 2)), "hollow_node");

  // Arity and wiring.
  {
    ModelBuilder b;
    b.Input("x", {1, 3, 8, 8});
    b.Node("Relu", {"x"}, {"y0", "y1", "y2"}, "three_output_relu");
    b.Output("y1", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
    add("ReluWithThreeOutputs", b.Bytes(), "three_output_relu");
  }
  {
    ModelBuilder b;
    b.Input("x", {1, 3, 8, 8});
    b.Node("Relu", {"y"}, {"y"}, "ouroboros");
    b.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
    add("NodeConsumesItsOwnOutput", b.Bytes(), "ouroboros");
  }
  add("MaxPoolWithoutInputs", SingleNode([](ModelBuilder& b) {
        AttrInts(b.Node("MaxPool", {}, {"y"}, "inputless_pool"), "kernel_shape", {2, 2});
      }),
      "inputless_pool");

  // INT64 extremes in attributes.
  add("ConvGroupInt64Max", ConvWith("group", {kMax}), "extreme_conv");
  add("ConvStrideInt64Max", ConvWith("strides", {kMax, 1}), "extreme_conv");
  add("ConvDilationInt64Max", ConvWith("dilations", {1, kMax}), "extreme_conv");
  add("ConvPadInt64Max", ConvWith("pads", {0, kMax, 0, 0}), "extreme_conv");
  add("ConvPadInt64Min", ConvWith("pads", {kMin, 0, 0, 0}), "extreme_conv");
  add("ConvTransposeStrideInt64Max", SingleNode([](ModelBuilder& b) {
        b.Initializer("w", RandomFloatTensor({3, 2, 3, 3}, 2));
        AttrInts(b.Node("ConvTranspose", {"x", "w"}, {"y"}), "strides", {2, kMax});
      }));
  add("MaxPoolKernelInt64Max", SingleNode([](ModelBuilder& b) {
        AttrInts(b.Node("MaxPool", {"x"}, {"y"}), "kernel_shape", {kMax, 2});
      }));
  add("AveragePoolStrideZero", SingleNode([](ModelBuilder& b) {
        onnx::NodeProto* node = b.Node("AveragePool", {"x"}, {"y"});
        AttrInts(node, "kernel_shape", {2, 2});
        AttrInts(node, "strides", {0, 1});
      }));

  // INT64 extremes in shape tensors.
  add("PadPadsInt64Min", SingleNode([](ModelBuilder& b) {
        b.Initializer("pads", Int64Tensor({8}, {0, 0, kMin, 0, 0, 0, 1, 1}));
        b.Node("Pad", {"x", "pads"}, {"y"});
      }));
  add("PadPadsInt64Max", SingleNode([](ModelBuilder& b) {
        b.Initializer("pads", Int64Tensor({8}, {0, 0, 1, 0, 0, 0, kMax, 1}));
        b.Node("Pad", {"x", "pads"}, {"y"});
      }));
  // Legal: from the last element with an enormous negative step, one element.
  add("SliceStepInt64Min", SingleNode([](ModelBuilder& b) {
        b.Initializer("starts", Int64Tensor({1}, {-1}))
            .Initializer("ends", Int64Tensor({1}, {kMin}));
        b.Initializer("axes", Int64Tensor({1}, {2})).Initializer("steps", Int64Tensor({1}, {kMin}));
        b.Node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
      }),
      "", /*may_succeed=*/true);
  // From the fuzz test (a mutated test_slice_neg_steps): legal, one element on
  // the last two axes.
  add("SliceStepHugeNegative",
      SingleNode(
          [](ModelBuilder& b) {
            b.Initializer("starts", Int64Tensor({3}, {20, 10, 4}));
            b.Initializer("ends", Int64Tensor({3}, {0, 0, 1}));
            b.Initializer("axes", Int64Tensor({3}, {0, 1, 2}));
            b.Initializer("steps", Int64Tensor({3}, {-1, -9151314442816847875, -16613248}));
            b.Node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
          },
          {20, 10, 5}),
      "", /*may_succeed=*/true);
  add("SliceStepZero", SingleNode([](ModelBuilder& b) {
        b.Initializer("starts", Int64Tensor({1}, {0})).Initializer("ends", Int64Tensor({1}, {4}));
        b.Initializer("axes", Int64Tensor({1}, {2})).Initializer("steps", Int64Tensor({1}, {0}));
        b.Node("Slice", {"x", "starts", "ends", "axes", "steps"}, {"y"});
      }));
  add("ReshapeToInt64Max", SingleNode([](ModelBuilder& b) {
        b.Initializer("shape", Int64Tensor({2}, {kMax, -1}));
        b.Node("Reshape", {"x", "shape"}, {"y"});
      }));
  add("ResizeScaleHuge", SingleNode([](ModelBuilder& b) {
        b.Initializer("scales", FloatTensor({4}, {1, 1, 1e30f, 1}));
        b.Node("Resize", {"x", "", "scales"}, {"y"});
      }));
  add("ResizeScaleNan", SingleNode([](ModelBuilder& b) {
        b.Initializer("scales",
                      FloatTensor({4}, {1, 1, std::numeric_limits<float>::quiet_NaN(), 1}));
        b.Node("Resize", {"x", "", "scales"}, {"y"});
      }));
  add("InputDimInt64Max",
      SingleNode([](ModelBuilder& b) { b.Node("Relu", {"x"}, {"y"}); }, {1, 3, kMax, 4}));
  // From the fuzz test: zero elements, so size limits pass, but the strides
  // of a dense layout overflow (4 * INT64_MAX).
  add("ZeroAndInt64MaxInputDims",
      SingleNode([](ModelBuilder& b) { b.Node("Relu", {"x"}, {"y"}); }, {0, kMax, 4}), "",
      /*may_succeed=*/true);
  add("UnsqueezeAxisInt64Min", SingleNode([](ModelBuilder& b) {
        b.Initializer("axes", Int64Tensor({1}, {kMin}));
        b.Node("Unsqueeze", {"x", "axes"}, {"y"});
      }));
  add("TransposePermOutOfRange", SingleNode([](ModelBuilder& b) {
        AttrInts(b.Node("Transpose", {"x"}, {"y"}), "perm", {0, 1, 2, kMax});
      }));

  // From the fuzz test (a mutated test_PixelShuffle): the Constant's
  // AttributeProto has no type (a flipped tag byte turned `type` into an
  // unknown field), and Transpose's "perm" is misspelt.
  {
    ModelBuilder b(6);
    b.Input("x", {1, 9, 4, 4});
    onnx::AttributeProto* value1 = b.Node("Constant", {}, {"shape1"})->add_attribute();
    value1->set_name("value");  // no set_type()
    *value1->mutable_t() = TensorToProto(Int64Tensor({6}, {1, 1, 3, 3, 4, 4}), "");
    b.Node("Reshape", {"x", "shape1"}, {"r1"}, "untyped_shape_reshape");
    AttrInts(b.Node("Transpose", {"r1"}, {"t"}), "peqm", {0, 1, 4, 2, 5, 3});
    onnx::AttributeProto* value2 = b.Node("Constant", {}, {"shape2"})->add_attribute();
    value2->set_name("value");
    value2->set_type(onnx::AttributeProto::TENSOR);
    *value2->mutable_t() = TensorToProto(Int64Tensor({4}, {1, 1, 12, 12}), "");
    b.Node("Reshape", {"t", "shape2"}, {"y"});
    b.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
    add("ConstantAttributeWithoutType", b.Bytes(), "", /*may_succeed=*/true);
  }

  // Odd but legal: a zero-sized tensor through Concat (found: memcpy from a
  // null pointer) and Add.
  {
    ModelBuilder b;
    b.Input("x", {1, 2, 0, 5});
    AttrInt(b.Node("Concat", {"x", "x"}, {"c"}), "axis", 1);
    b.Node("Add", {"c", "c"}, {"y"});
    b.Output("y", {}, onnx::TensorProto::FLOAT, /*has_shape=*/false);
    add("ZeroSizedConcat", b.Bytes(), "", /*may_succeed=*/true);
  }
  return models;
}

}  // namespace rectifier::engine::testing
