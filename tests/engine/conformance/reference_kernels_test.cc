// The naive reference kernels checked against the ONNX backend test data, so
// that a disagreement in the engine reference tests points at the engine.
#include "tests/engine/conformance/reference_kernels.h"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine {
namespace {

namespace fs = std::filesystem;
using testing::BinaryOp;
using testing::CompareTensors;
using testing::ConvParams;
using testing::ConvTransposeParams;
using testing::PoolParams;
using testing::ResizeParams;
using testing::Tolerance;

// Both sides are exact up to float32 rounding.
constexpr Tolerance kDataTolerance{/*rtol=*/1e-5, /*atol=*/1e-6};
constexpr char kDataRoot[] = "/usr/share/libonnx-testdata/data/node";

struct NodeTestData {
  onnx::NodeProto node;
  std::vector<Tensor> inputs;  // graph inputs, in order
  Tensor output;
};

absl::StatusOr<NodeTestData> LoadNodeTest(const std::string& name) {
  const fs::path dir = fs::path(kDataRoot) / name;
  absl::StatusOr<std::string> bytes = testing::ReadFileBytes((dir / "model.onnx").string());
  if (!bytes.ok()) return bytes.status();
  onnx::ModelProto model;
  if (!model.ParseFromString(*bytes) || model.graph().node_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a single-node model"));
  }
  NodeTestData data;
  data.node = model.graph().node(0);
  for (int k = 0; k < model.graph().input_size(); ++k) {
    absl::StatusOr<onnx::TensorProto> proto = testing::ReadTensorProtoFile(
        (dir / "test_data_set_0" / absl::StrCat("input_", k, ".pb")).string());
    if (!proto.ok()) return proto.status();
    absl::StatusOr<Tensor> tensor = testing::TensorFromProto(*proto);
    if (!tensor.ok()) return tensor.status();
    data.inputs.push_back(*std::move(tensor));
  }
  absl::StatusOr<onnx::TensorProto> proto =
      testing::ReadTensorProtoFile((dir / "test_data_set_0/output_0.pb").string());
  if (!proto.ok()) return proto.status();
  absl::StatusOr<Tensor> output = testing::TensorFromProto(*proto);
  if (!output.ok()) return output.status();
  data.output = *std::move(output);
  return data;
}

std::vector<int64_t> IntsAttr(const onnx::NodeProto& node, const std::string& name,
                              std::vector<int64_t> fallback) {
  for (const onnx::AttributeProto& attr : node.attribute()) {
    if (attr.name() == name) return {attr.ints().begin(), attr.ints().end()};
  }
  return fallback;
}

int64_t IntAttr(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  for (const onnx::AttributeProto& attr : node.attribute()) {
    if (attr.name() == name) return attr.i();
  }
  return fallback;
}

std::string StringAttr(const onnx::NodeProto& node, const std::string& name,
                       const std::string& fallback) {
  for (const onnx::AttributeProto& attr : node.attribute()) {
    if (attr.name() == name) return attr.s();
  }
  return fallback;
}

class ReferenceKernelsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory(kDataRoot)) {
      GTEST_SKIP() << kDataRoot << " missing: run scripts/install-deps.sh";
    }
  }
};

TEST_F(ReferenceKernelsTest, ConvMatchesOnnxTestData) {
  for (const char* name : {"test_basic_conv_with_padding", "test_basic_conv_without_padding",
                           "test_conv_with_strides_padding", "test_conv_with_strides_no_padding",
                           "test_conv_with_strides_and_asymmetric_padding"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<NodeTestData> data = LoadNodeTest(name);
    ASSERT_TRUE(data.ok()) << data.status();
    ConvParams params;
    params.strides = IntsAttr(data->node, "strides", {1, 1});
    params.dilations = IntsAttr(data->node, "dilations", {1, 1});
    params.pads = IntsAttr(data->node, "pads", {0, 0, 0, 0});
    params.group = IntAttr(data->node, "group", 1);
    const Tensor got = testing::ReferenceConv(data->inputs[0], data->inputs[1], nullptr, params);
    EXPECT_EQ(CompareTensors(data->output, got, kDataTolerance), "");
  }
}

TEST_F(ReferenceKernelsTest, ConvTransposeMatchesOnnxTestData) {
  for (const char* name : {"test_convtranspose", "test_convtranspose_dilations",
                           "test_convtranspose_pads", "test_convtranspose_pad"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<NodeTestData> data = LoadNodeTest(name);
    ASSERT_TRUE(data.ok()) << data.status();
    ConvTransposeParams params;
    params.strides = IntsAttr(data->node, "strides", {1, 1});
    params.dilations = IntsAttr(data->node, "dilations", {1, 1});
    params.pads = IntsAttr(data->node, "pads", {0, 0, 0, 0});
    params.output_padding = IntsAttr(data->node, "output_padding", {0, 0});
    params.group = IntAttr(data->node, "group", 1);
    const Tensor got =
        testing::ReferenceConvTranspose(data->inputs[0], data->inputs[1], nullptr, params);
    EXPECT_EQ(CompareTensors(data->output, got, kDataTolerance), "");
  }
}

TEST_F(ReferenceKernelsTest, PoolingMatchesOnnxTestData) {
  for (const char* name :
       {"test_maxpool_2d_default", "test_maxpool_2d_pads", "test_maxpool_2d_strides",
        "test_maxpool_2d_ceil", "test_maxpool_2d_dilations", "test_maxpool_2d_precomputed_pads",
        "test_averagepool_2d_default", "test_averagepool_2d_pads",
        "test_averagepool_2d_pads_count_include_pad", "test_averagepool_2d_ceil",
        "test_averagepool_2d_strides", "test_averagepool_2d_precomputed_pads_count_include_pad"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<NodeTestData> data = LoadNodeTest(name);
    ASSERT_TRUE(data.ok()) << data.status();
    PoolParams params;
    params.kernel = IntsAttr(data->node, "kernel_shape", {});
    params.strides = IntsAttr(data->node, "strides", {1, 1});
    params.dilations = IntsAttr(data->node, "dilations", {1, 1});
    params.pads = IntsAttr(data->node, "pads", {0, 0, 0, 0});
    params.ceil_mode = IntAttr(data->node, "ceil_mode", 0) != 0;
    params.count_include_pad = IntAttr(data->node, "count_include_pad", 0) != 0;
    const Tensor got = data->node.op_type() == "MaxPool"
                           ? testing::ReferenceMaxPool(data->inputs[0], params)
                           : testing::ReferenceAveragePool(data->inputs[0], params);
    EXPECT_EQ(CompareTensors(data->output, got, kDataTolerance), "");
  }
}

TEST_F(ReferenceKernelsTest, ResizeMatchesOnnxTestData) {
  for (const char* name :
       {"test_resize_upsample_scales_nearest", "test_resize_downsample_scales_nearest",
        "test_resize_upsample_sizes_nearest", "test_resize_downsample_sizes_nearest",
        "test_resize_upsample_sizes_nearest_ceil_half_pixel",
        "test_resize_upsample_sizes_nearest_floor_align_corners",
        "test_resize_upsample_sizes_nearest_round_prefer_ceil_asymmetric",
        "test_resize_upsample_scales_linear", "test_resize_downsample_scales_linear",
        "test_resize_upsample_scales_linear_align_corners",
        "test_resize_downsample_scales_linear_align_corners",
        "test_resize_downsample_sizes_linear_pytorch_half_pixel"}) {
    SCOPED_TRACE(name);
    absl::StatusOr<NodeTestData> data = LoadNodeTest(name);
    ASSERT_TRUE(data.ok()) << data.status();
    const Tensor& x = data->inputs[0];
    ResizeParams params;
    params.mode = StringAttr(data->node, "mode", "nearest");
    params.coordinate_transformation_mode =
        StringAttr(data->node, "coordinate_transformation_mode", "half_pixel");
    params.nearest_mode = StringAttr(data->node, "nearest_mode", "round_prefer_floor");
    params.out_h = data->output.shape[2];
    params.out_w = data->output.shape[3];
    // Graph inputs are X, then whichever of roi/scales/sizes the node names.
    const Tensor& last = data->inputs.back();
    if (last.type == DataType::kInt64) {  // sizes
      params.scale_h = static_cast<double>(params.out_h) / static_cast<double>(x.shape[2]);
      params.scale_w = static_cast<double>(params.out_w) / static_cast<double>(x.shape[3]);
    } else {  // scales
      params.scale_h = last.data<float>()[2];
      params.scale_w = last.data<float>()[3];
      params.length_resized_h = params.scale_h * static_cast<double>(x.shape[2]);
      params.length_resized_w = params.scale_w * static_cast<double>(x.shape[3]);
    }
    const Tensor got = testing::ReferenceResize(x, params);
    EXPECT_EQ(CompareTensors(data->output, got, kDataTolerance), "");
  }
}

TEST_F(ReferenceKernelsTest, BinaryMatchesOnnxTestData) {
  for (const auto& [name, op] :
       std::vector<std::pair<const char*, BinaryOp>>{{"test_add_bcast", BinaryOp::kAdd},
                                                     {"test_sub_bcast", BinaryOp::kSub},
                                                     {"test_mul_bcast", BinaryOp::kMul},
                                                     {"test_div_bcast", BinaryOp::kDiv}}) {
    SCOPED_TRACE(name);
    absl::StatusOr<NodeTestData> data = LoadNodeTest(name);
    ASSERT_TRUE(data.ok()) << data.status();
    const Tensor got = testing::ReferenceBinary(data->inputs[0], data->inputs[1], op);
    EXPECT_EQ(CompareTensors(data->output, got, kDataTolerance), "");
  }
}

}  // namespace
}  // namespace rectifier::engine
