// Engine vs naive reference kernels on random odd shapes (Conv, ConvTranspose,
// MaxPool, AveragePool, Resize, broadcasting binary ops), and fused vs
// unfused chains. The reference kernels are first checked against the ONNX
// backend test data, so a disagreement points at the engine.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/onnx_test_util.h"
#include "tests/engine/conformance/reference_kernels.h"

namespace rectifier::engine {
namespace {

namespace fs = std::filesystem;
using testing::AttrFloat;
using testing::AttrInt;
using testing::AttrInts;
using testing::AttrString;
using testing::BinaryOp;
using testing::CompareTensors;
using testing::ConvParams;
using testing::ConvTransposeParams;
using testing::FloatTensor;
using testing::Int64Tensor;
using testing::ModelBuilder;
using testing::PoolParams;
using testing::RandomFloatTensor;
using testing::ResizeParams;
using testing::ShapeString;
using testing::Tolerance;

// Engine vs reference: |got - want| <= 1e-4 + 1e-4 * |want| (float32 sums of
// at most a few hundred products of values in [-1, 1]).
constexpr Tolerance kRefTolerance{/*rtol=*/1e-4, /*atol=*/1e-4};
// The reference vs the ONNX test data (both exact up to float32 rounding).
constexpr Tolerance kDataTolerance{/*rtol=*/1e-5, /*atol=*/1e-6};
constexpr char kDataRoot[] = "/usr/share/libonnx-testdata/data/node";

std::string Join(const std::vector<int64_t>& values) { return absl::StrJoin(values, ","); }

absl::StatusOr<std::vector<Tensor>> CompileAndRun(const std::string& bytes,
                                                  const std::vector<Tensor>& inputs,
                                                  bool fuse = true) {
  CompileOptions options;
  options.fuse = fuse;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(bytes, options);
  if (!model.ok()) return model.status();
  ContextOptions context_options;
  context_options.threads = 1;
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create(*model, context_options);
  if (!context.ok()) return context.status();
  return (*context)->Run(inputs);
}

// Runs the model and expects its single output to match `want`.
void ExpectEngineMatches(const std::string& bytes, const std::vector<Tensor>& inputs,
                         const Tensor& want, bool fuse = true) {
  absl::StatusOr<std::vector<Tensor>> got = CompileAndRun(bytes, inputs, fuse);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(CompareTensors(want, (*got)[0], kRefTolerance), "");
}

int64_t Pick(std::mt19937& rng, const std::vector<int64_t>& values) {
  return values[rng() % values.size()];
}

// ---------------------------------------------------------------------------
// The reference kernels against the ONNX backend test data.

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

// ---------------------------------------------------------------------------
// Conv

struct ConvCase {
  std::vector<int64_t> x_shape;
  std::vector<int64_t> w_shape;
  ConvParams params;
  bool bias = false;
  bool dynamic_batch = false;
  std::string Describe() const {
    return absl::StrCat("x", ShapeString(x_shape), " w", ShapeString(w_shape), " group ",
                        params.group, " strides ", Join(params.strides), " dilations ",
                        Join(params.dilations), " pads ", Join(params.pads), bias ? " bias" : "",
                        dynamic_batch ? " dynamic batch" : "");
  }
};

ConvCase RandomConvCase(uint32_t seed) {
  std::mt19937 rng(seed);
  while (true) {
    ConvCase c;
    const int64_t channels = Pick(rng, {3, 5, 7, 9});
    const int64_t h = Pick(rng, {7, 9, 11, 13}), w = Pick(rng, {7, 8, 9, 11, 13});
    c.x_shape = {Pick(rng, {2, 3}), channels, h, w};
    const int64_t kind = rng() % 3;  // 0 plain, 1 depthwise, 2 grouped
    int64_t out_c;
    if (kind == 1) {
      c.params.group = channels;
      out_c = channels * Pick(rng, {1, 2});
    } else if (kind == 2 && channels == 9) {
      c.params.group = 3;
      out_c = 3 * Pick(rng, {1, 2, 3});
    } else {
      out_c = Pick(rng, {3, 5, 7, 8});
    }
    const int64_t kh = Pick(rng, {1, 3, 5}), kw = Pick(rng, {1, 3, 5});
    c.w_shape = {out_c, channels / c.params.group, kh, kw};
    c.params.strides = {Pick(rng, {1, 2, 3}), Pick(rng, {1, 2, 3})};
    c.params.dilations = {Pick(rng, {1, 1, 2}), Pick(rng, {1, 1, 2})};
    const int64_t max_pad_h = std::min<int64_t>(2, (kh - 1) * c.params.dilations[0]);
    const int64_t max_pad_w = std::min<int64_t>(2, (kw - 1) * c.params.dilations[1]);
    c.params.pads = {static_cast<int64_t>(rng() % (max_pad_h + 1)),
                     static_cast<int64_t>(rng() % (max_pad_w + 1)),
                     static_cast<int64_t>(rng() % (max_pad_h + 1)),
                     static_cast<int64_t>(rng() % (max_pad_w + 1))};
    c.bias = rng() % 2 == 0;
    c.dynamic_batch = rng() % 2 == 0;
    const int64_t out_h = testing::WindowOutputSize(h, kh, c.params.strides[0], c.params.pads[0],
                                                    c.params.pads[2], c.params.dilations[0], false);
    const int64_t out_w = testing::WindowOutputSize(w, kw, c.params.strides[1], c.params.pads[1],
                                                    c.params.pads[3], c.params.dilations[1], false);
    if (out_h >= 1 && out_w >= 1) return c;
  }
}

TEST(EngineReferenceTest, ConvMatchesReferenceOnRandomShapes) {
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    const ConvCase c = RandomConvCase(seed);
    SCOPED_TRACE(absl::StrCat("seed ", seed, ": ", c.Describe()));
    const Tensor x = RandomFloatTensor(c.x_shape, seed * 3 + 0);
    const Tensor w = RandomFloatTensor(c.w_shape, seed * 3 + 1);
    const Tensor b = RandomFloatTensor({c.w_shape[0]}, seed * 3 + 2);
    const Tensor want = testing::ReferenceConv(x, w, c.bias ? &b : nullptr, c.params);

    ModelBuilder builder;
    std::vector<int64_t> in_shape = c.x_shape, out_shape = want.shape;
    if (c.dynamic_batch) in_shape[0] = out_shape[0] = -1;
    builder.Input("x", in_shape).Initializer("w", w).Output("y", out_shape);
    std::vector<std::string> inputs = {"x", "w"};
    if (c.bias) {
      builder.Initializer("b", b);
      inputs.push_back("b");
    }
    onnx::NodeProto* node = builder.Node("Conv", inputs, {"y"});
    AttrInts(node, "kernel_shape", {c.w_shape[2], c.w_shape[3]});
    AttrInts(node, "strides", c.params.strides);
    AttrInts(node, "dilations", c.params.dilations);
    AttrInts(node, "pads", c.params.pads);
    AttrInt(node, "group", c.params.group);
    ExpectEngineMatches(builder.Bytes(), {x}, want);
  }
}

// Channel counts that are not multiples of oneDNN's 8/16-channel blocks, so
// blocked layouts with padded channels are chosen and reordered.
TEST(EngineReferenceTest, ConvMatchesReferenceOnWideOddChannels) {
  struct Case {
    int64_t channels, out_c, group, kernel, stride;
  };
  const Case cases[] = {{17, 19, 1, 3, 1},  {24, 48, 1, 3, 2},  {33, 16, 1, 1, 1},
                        {33, 33, 33, 3, 1}, {17, 34, 17, 5, 2}, {48, 21, 3, 3, 1}};
  uint32_t seed = 300;
  for (const Case& c : cases) {
    ++seed;
    SCOPED_TRACE(absl::StrCat("C ", c.channels, " M ", c.out_c, " group ", c.group, " k ", c.kernel,
                              " stride ", c.stride));
    const Tensor x = RandomFloatTensor({2, c.channels, 11, 9}, seed);
    const Tensor w =
        RandomFloatTensor({c.out_c, c.channels / c.group, c.kernel, c.kernel}, seed + 1000);
    const Tensor b = RandomFloatTensor({c.out_c}, seed + 2000);
    ConvParams params;
    params.group = c.group;
    params.strides = {c.stride, c.stride};
    const int64_t pad = c.kernel / 2;
    params.pads = {pad, pad, pad, pad};
    const Tensor want = testing::ReferenceConv(x, w, &b, params);
    ModelBuilder builder;
    builder.Input("x", x.shape).Initializer("w", w).Initializer("b", b).Output("y", want.shape);
    onnx::NodeProto* node = builder.Node("Conv", {"x", "w", "b"}, {"y"});
    AttrInts(node, "kernel_shape", {c.kernel, c.kernel});
    AttrInts(node, "strides", params.strides);
    AttrInts(node, "pads", params.pads);
    AttrInt(node, "group", c.group);
    ExpectEngineMatches(builder.Bytes(), {x}, want);
  }
}

Tensor ConcatChannels(const Tensor& a, const Tensor& b) {
  const int64_t n = a.shape[0], ca = a.shape[1], cb = b.shape[1];
  const int64_t inner = a.shape[2] * a.shape[3];
  std::vector<float> values;
  for (int64_t i = 0; i < n; ++i) {
    values.insert(values.end(), a.data<float>() + i * ca * inner,
                  a.data<float>() + (i + 1) * ca * inner);
    values.insert(values.end(), b.data<float>() + i * cb * inner,
                  b.data<float>() + (i + 1) * cb * inner);
  }
  return FloatTensor({n, ca + cb, a.shape[2], a.shape[3]}, values);
}

// A small CNN with odd channel counts: two convolutions concatenated (19 + 13
// channels), Relu, ceil-mode MaxPool (11x9 -> 6x5), a 1x1 convolution with a residual Add
// of a strided projection, global average pooling. Blocked layouts have to be
// propagated through Concat, pooling and the residual Add.
TEST(EngineReferenceTest, OddChannelCnnChainMatchesReference) {
  const Tensor x = RandomFloatTensor({2, 17, 11, 9}, 401);
  const Tensor wa = RandomFloatTensor({19, 17, 3, 3}, 402), ba = RandomFloatTensor({19}, 403);
  const Tensor wb = RandomFloatTensor({13, 17, 1, 1}, 404), bb = RandomFloatTensor({13}, 405);
  const Tensor wc = RandomFloatTensor({21, 32, 1, 1}, 406), bc = RandomFloatTensor({21}, 407);
  const Tensor wp = RandomFloatTensor({21, 17, 1, 1}, 408), bp = RandomFloatTensor({21}, 409);

  ModelBuilder builder;
  builder.Input("x", x.shape);
  for (const auto& [name, tensor] : std::vector<std::pair<std::string, Tensor>>{{"wa", wa},
                                                                                {"ba", ba},
                                                                                {"wb", wb},
                                                                                {"bb", bb},
                                                                                {"wc", wc},
                                                                                {"bc", bc},
                                                                                {"wp", wp},
                                                                                {"bp", bp}}) {
    builder.Initializer(name, tensor);
  }
  AttrInts(builder.Node("Conv", {"x", "wa", "ba"}, {"a"}), "pads", {1, 1, 1, 1});
  builder.Node("Conv", {"x", "wb", "bb"}, {"b"});
  AttrInt(builder.Node("Concat", {"a", "b"}, {"cat"}), "axis", 1);
  builder.Node("Relu", {"cat"}, {"r"});
  onnx::NodeProto* pool = builder.Node("MaxPool", {"r"}, {"p"});
  AttrInts(pool, "kernel_shape", {2, 2});
  AttrInts(pool, "strides", {2, 2});
  AttrInt(pool, "ceil_mode", 1);
  builder.Node("Conv", {"p", "wc", "bc"}, {"c"});
  AttrInts(builder.Node("Conv", {"x", "wp", "bp"}, {"proj"}), "strides", {2, 2});
  builder.Node("Add", {"c", "proj"}, {"sum"});
  builder.Node("GlobalAveragePool", {"sum"}, {"y"});
  builder.Output("y", {2, 21, 1, 1});

  ConvParams pad1;
  pad1.pads = {1, 1, 1, 1};
  const Tensor cat = ConcatChannels(testing::ReferenceConv(x, wa, &ba, pad1),
                                    testing::ReferenceConv(x, wb, &bb, ConvParams{}));
  PoolParams pool_params;
  pool_params.kernel = {2, 2};
  pool_params.strides = {2, 2};
  pool_params.ceil_mode = true;
  const Tensor pooled = testing::ReferenceMaxPool(
      testing::ReferenceUnary(cat, [](double v) { return v > 0 ? v : 0; }), pool_params);
  ConvParams stride2;
  stride2.strides = {2, 2};
  const Tensor sum =
      testing::ReferenceBinary(testing::ReferenceConv(pooled, wc, &bc, ConvParams{}),
                               testing::ReferenceConv(x, wp, &bp, stride2), BinaryOp::kAdd);
  ASSERT_EQ(sum.shape, (std::vector<int64_t>{2, 21, 6, 5}));
  PoolParams global;
  global.kernel = {6, 5};
  const Tensor want = testing::ReferenceAveragePool(sum, global);
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse" : "no fuse");
    ExpectEngineMatches(builder.Bytes(), {x}, want, fuse);
  }
}

// One compiled model with a dynamic batch dimension, run at several batch
// sizes (one plan per batch size) and again at an earlier size.
TEST(EngineReferenceTest, DynamicBatchPlansMatchReference) {
  const Tensor w = RandomFloatTensor({6, 5, 3, 3}, 201);
  const Tensor b = RandomFloatTensor({6}, 202);
  ConvParams params;
  params.strides = {2, 1};
  params.pads = {1, 0, 2, 1};
  ModelBuilder builder;
  builder.Input("x", {-1, 5, 11, 9}).Initializer("w", w).Initializer("b", b);
  onnx::NodeProto* node = builder.Node("Conv", {"x", "w", "b"}, {"y"});
  AttrInts(node, "kernel_shape", {3, 3});
  AttrInts(node, "strides", params.strides);
  AttrInts(node, "pads", params.pads);
  builder.Output("y", {-1, 6, 6, 8});
  CompileOptions options;
  options.max_batch_size = 8;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(builder.Bytes(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE((*model)->batchable());
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context = ExecutionContext::Create(*model);
  ASSERT_TRUE(context.ok()) << context.status();
  for (int64_t batch : {1, 3, 8, 2, 3, 1}) {
    SCOPED_TRACE(absl::StrCat("batch ", batch));
    const Tensor x = RandomFloatTensor({batch, 5, 11, 9}, 203 + static_cast<uint32_t>(batch));
    absl::StatusOr<std::vector<Tensor>> got = (*context)->Run({x});
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ(CompareTensors(testing::ReferenceConv(x, w, &b, params), (*got)[0], kRefTolerance),
              "");
  }
}

TEST(EngineReferenceTest, ConvAutoPadSameMatchesExplicitPads) {
  for (const char* auto_pad : {"SAME_UPPER", "SAME_LOWER"}) {
    for (int64_t stride : {1, 2}) {
      SCOPED_TRACE(absl::StrCat(auto_pad, " stride ", stride));
      const std::vector<int64_t> x_shape = {2, 5, 11, 9};
      const Tensor x = RandomFloatTensor(x_shape, 101);
      const Tensor w = RandomFloatTensor({7, 5, 4, 3}, 102);
      ConvParams params;
      params.strides = {stride, stride};
      for (int axis = 0; axis < 2; ++axis) {
        const int64_t in = x_shape[2 + axis], k = w.shape[2 + axis];
        const int64_t out = (in + stride - 1) / stride;
        const int64_t total = std::max<int64_t>(0, (out - 1) * stride + k - in);
        const int64_t small = total / 2, large = total - total / 2;
        const bool upper = std::string(auto_pad) == "SAME_UPPER";
        params.pads[axis] = upper ? small : large;
        params.pads[axis + 2] = upper ? large : small;
      }
      const Tensor want = testing::ReferenceConv(x, w, nullptr, params);
      ModelBuilder builder;
      builder.Input("x", x_shape).Initializer("w", w).Output("y", want.shape);
      onnx::NodeProto* node = builder.Node("Conv", {"x", "w"}, {"y"});
      AttrString(node, "auto_pad", auto_pad);
      AttrInts(node, "kernel_shape", {4, 3});
      AttrInts(node, "strides", params.strides);
      ExpectEngineMatches(builder.Bytes(), {x}, want);
    }
  }
}

// ---------------------------------------------------------------------------
// ConvTranspose

TEST(EngineReferenceTest, ConvTransposeMatchesReferenceOnRandomShapes) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed + 1000);
    const int64_t channels = Pick(rng, {3, 5, 7});
    const bool depthwise = rng() % 3 == 0;
    ConvTransposeParams params;
    params.group = depthwise ? channels : 1;
    const int64_t out_per_group = depthwise ? Pick(rng, {1, 2}) : Pick(rng, {3, 5, 7});
    const int64_t kh = Pick(rng, {2, 3, 4}), kw = Pick(rng, {2, 3, 4});
    params.strides = {Pick(rng, {1, 2, 3}), Pick(rng, {1, 2, 3})};
    params.dilations = {Pick(rng, {1, 1, 2}), Pick(rng, {1, 1, 2})};
    params.pads = {static_cast<int64_t>(rng() % 2), static_cast<int64_t>(rng() % 2),
                   static_cast<int64_t>(rng() % 2), static_cast<int64_t>(rng() % 2)};
    params.output_padding = {static_cast<int64_t>(rng() % params.strides[0]),
                             static_cast<int64_t>(rng() % params.strides[1])};
    const std::vector<int64_t> x_shape = {Pick(rng, {2, 3}), channels, Pick(rng, {7, 9, 11}),
                                          Pick(rng, {7, 8, 13})};
    const std::vector<int64_t> w_shape = {channels, out_per_group, kh, kw};
    const bool bias = rng() % 2 == 0;
    SCOPED_TRACE(absl::StrCat("seed ", seed, ": x", ShapeString(x_shape), " w",
                              ShapeString(w_shape), " group ", params.group, " strides ",
                              Join(params.strides), " dilations ", Join(params.dilations), " pads ",
                              Join(params.pads), " output_padding ", Join(params.output_padding),
                              bias ? " bias" : ""));
    const Tensor x = RandomFloatTensor(x_shape, seed * 3 + 500);
    const Tensor w = RandomFloatTensor(w_shape, seed * 3 + 501);
    const Tensor b = RandomFloatTensor({out_per_group * params.group}, seed * 3 + 502);
    const Tensor want = testing::ReferenceConvTranspose(x, w, bias ? &b : nullptr, params);

    ModelBuilder builder;
    builder.Input("x", x_shape).Initializer("w", w).Output("y", want.shape);
    std::vector<std::string> inputs = {"x", "w"};
    if (bias) {
      builder.Initializer("b", b);
      inputs.push_back("b");
    }
    onnx::NodeProto* node = builder.Node("ConvTranspose", inputs, {"y"});
    AttrInts(node, "kernel_shape", {kh, kw});
    AttrInts(node, "strides", params.strides);
    AttrInts(node, "dilations", params.dilations);
    AttrInts(node, "pads", params.pads);
    AttrInts(node, "output_padding", params.output_padding);
    AttrInt(node, "group", params.group);
    ExpectEngineMatches(builder.Bytes(), {x}, want);
  }
}

// ---------------------------------------------------------------------------
// Pooling

// A random pooling configuration. ceil_mode configurations whose last window
// would start inside the end padding are redrawn: ONNX 1.12's reference keeps
// that window while PyTorch (and later ONNX) drop it.
PoolParams RandomPoolParams(std::mt19937& rng, const std::vector<int64_t>& x_shape, bool max_pool) {
  while (true) {
    PoolParams p;
    p.kernel = {Pick(rng, {2, 3, 4}), Pick(rng, {2, 3, 4})};
    p.strides = {Pick(rng, {1, 2, 3}), Pick(rng, {1, 2, 3})};
    p.dilations = max_pool ? std::vector<int64_t>{Pick(rng, {1, 1, 2}), Pick(rng, {1, 1, 2})}
                           : std::vector<int64_t>{1, 1};
    p.pads = {static_cast<int64_t>(rng() % (p.kernel[0] / 2 + 1)),
              static_cast<int64_t>(rng() % (p.kernel[1] / 2 + 1)),
              static_cast<int64_t>(rng() % (p.kernel[0] / 2 + 1)),
              static_cast<int64_t>(rng() % (p.kernel[1] / 2 + 1))};
    p.ceil_mode = rng() % 2 == 0;
    p.count_include_pad = rng() % 2 == 0;
    bool ok = true;
    for (int axis = 0; axis < 2; ++axis) {
      const int64_t in = x_shape[2 + axis];
      const int64_t out =
          testing::WindowOutputSize(in, p.kernel[axis], p.strides[axis], p.pads[axis],
                                    p.pads[axis + 2], p.dilations[axis], p.ceil_mode);
      if (out < 1 || (out - 1) * p.strides[axis] >= in + p.pads[axis]) ok = false;
    }
    if (ok) return p;
  }
}

void RunPoolCases(const std::string& op) {
  const bool max_pool = op == "MaxPool";
  for (uint32_t seed = 1; seed <= 24; ++seed) {
    std::mt19937 rng(seed + (max_pool ? 2000 : 3000));
    const std::vector<int64_t> x_shape = {Pick(rng, {2, 3}), Pick(rng, {3, 5, 7}),
                                          Pick(rng, {7, 9, 10, 11, 13}), Pick(rng, {7, 9, 12, 13})};
    const PoolParams p = RandomPoolParams(rng, x_shape, max_pool);
    SCOPED_TRACE(absl::StrCat(op, " seed ", seed, ": x", ShapeString(x_shape), " kernel ",
                              Join(p.kernel), " strides ", Join(p.strides), " dilations ",
                              Join(p.dilations), " pads ", Join(p.pads), " ceil_mode ", p.ceil_mode,
                              max_pool ? "" : " count_include_pad ",
                              max_pool ? "" : absl::StrCat(p.count_include_pad)));
    const Tensor x = RandomFloatTensor(x_shape, seed + 7);
    const Tensor want =
        max_pool ? testing::ReferenceMaxPool(x, p) : testing::ReferenceAveragePool(x, p);
    ModelBuilder builder;
    builder.Input("x", x_shape).Output("y", want.shape);
    onnx::NodeProto* node = builder.Node(op, {"x"}, {"y"});
    AttrInts(node, "kernel_shape", p.kernel);
    AttrInts(node, "strides", p.strides);
    AttrInts(node, "pads", p.pads);
    AttrInt(node, "ceil_mode", p.ceil_mode ? 1 : 0);
    if (max_pool) {
      AttrInts(node, "dilations", p.dilations);
    } else {
      AttrInt(node, "count_include_pad", p.count_include_pad ? 1 : 0);
    }
    ExpectEngineMatches(builder.Bytes(), {x}, want);
  }
}

TEST(EngineReferenceTest, MaxPoolMatchesReferenceOnRandomShapes) { RunPoolCases("MaxPool"); }

TEST(EngineReferenceTest, AveragePoolMatchesReferenceOnRandomShapes) {
  RunPoolCases("AveragePool");
}

// ---------------------------------------------------------------------------
// Resize (opset 13)

// True when a nearest-mode source coordinate of some output index is exactly
// where float32 and exact arithmetic may round differently: a half-integer
// for the round_prefer_* modes, an integer for floor/ceil. Only for the modes
// that divide by scale = out / in, which is inexact in float32; align_corners
// computes x * (in - 1) / (out - 1), exact at those points.
bool HasRoundingKnifeEdge(const std::string& ctm, const std::string& nearest_mode, int64_t in,
                          int64_t out) {
  if (ctm == "align_corners") return false;
  for (int64_t x = 1; x < out; ++x) {
    int64_t num, den;  // coordinate = num / den
    if (ctm == "asymmetric") {
      num = x * in;
      den = out;
    } else {  // half_pixel, pytorch_half_pixel
      num = (2 * x + 1) * in - out;
      den = 2 * out;
    }
    if (num <= 0 || num >= (in - 1) * den) continue;  // clamped either way
    const bool round_modes =
        nearest_mode == "round_prefer_floor" || nearest_mode == "round_prefer_ceil";
    if (round_modes ? (2 * num) % (2 * den) == den : num % den == 0) return true;
  }
  return false;
}

// An output size for `in` from a fixed candidate list, in a seeded order,
// avoiding rounding knife edges for nearest; 0 when every candidate has one.
int64_t PickResizeSize(std::mt19937& rng, const std::string& mode, const std::string& ctm,
                       const std::string& nearest_mode, int64_t in) {
  std::vector<int64_t> candidates = {4, 5, 10, 13, 17};
  std::shuffle(candidates.begin(), candidates.end(), rng);
  for (int64_t out : candidates) {
    if (mode != "nearest" || !HasRoundingKnifeEdge(ctm, nearest_mode, in, out)) return out;
  }
  return 0;
}

void RunResizeCase(const std::string& mode, const std::string& ctm, const std::string& nearest_mode,
                   bool use_sizes, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<int64_t> x_shape = {Pick(rng, {1, 2}), Pick(rng, {3, 5}), Pick(rng, {7, 9, 11}),
                                        Pick(rng, {7, 9, 11})};
  ResizeParams p;
  p.mode = mode;
  p.coordinate_transformation_mode = ctm;
  p.nearest_mode = nearest_mode;
  if (use_sizes) {
    p.out_h = PickResizeSize(rng, mode, ctm, nearest_mode, x_shape[2]);
    p.out_w = PickResizeSize(rng, mode, ctm, nearest_mode, x_shape[3]);
    ASSERT_GT(p.out_h * p.out_w, 0)
        << "no output size without a rounding knife edge for " << ShapeString(x_shape);
    p.scale_h = static_cast<double>(p.out_h) / static_cast<double>(x_shape[2]);
    p.scale_w = static_cast<double>(p.out_w) / static_cast<double>(x_shape[3]);
  } else {
    p.scale_h = static_cast<double>(Pick(rng, {2, 3}));
    p.scale_w = static_cast<double>(Pick(rng, {2, 3}));
    p.out_h = x_shape[2] * static_cast<int64_t>(p.scale_h);
    p.out_w = x_shape[3] * static_cast<int64_t>(p.scale_w);
  }
  SCOPED_TRACE(absl::StrCat("Resize ", mode, " ", ctm, mode == "nearest" ? " " + nearest_mode : "",
                            " x", ShapeString(x_shape), use_sizes ? " sizes " : " scales ", p.out_h,
                            "x", p.out_w, " (scale ", p.scale_h, "x", p.scale_w, ")"));
  const Tensor x = RandomFloatTensor(x_shape, seed + 11);
  const Tensor want = testing::ReferenceResize(x, p);
  ModelBuilder builder(13);
  builder.Input("x", x_shape).Output("y", want.shape);
  onnx::NodeProto* node;
  if (use_sizes) {
    builder.Initializer("sizes", Int64Tensor({4}, {x_shape[0], x_shape[1], p.out_h, p.out_w}));
    node = builder.Node("Resize", {"x", "", "", "sizes"}, {"y"});
  } else {
    builder.Initializer("scales", FloatTensor({4}, {1.0f, 1.0f, static_cast<float>(p.scale_h),
                                                    static_cast<float>(p.scale_w)}));
    node = builder.Node("Resize", {"x", "", "scales"}, {"y"});
  }
  AttrString(node, "mode", mode);
  AttrString(node, "coordinate_transformation_mode", ctm);
  if (mode == "nearest") AttrString(node, "nearest_mode", nearest_mode);
  ExpectEngineMatches(builder.Bytes(), {x}, want);
}

constexpr const char* kCoordinateModes[] = {"half_pixel", "asymmetric", "align_corners",
                                            "pytorch_half_pixel"};

TEST(EngineReferenceTest, ResizeNearestMatchesReference) {
  uint32_t seed = 4000;
  for (const char* ctm : kCoordinateModes) {
    for (const char* nearest_mode : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
      for (bool use_sizes : {false, true}) {
        RunResizeCase("nearest", ctm, nearest_mode, use_sizes, ++seed);
      }
    }
  }
}

TEST(EngineReferenceTest, ResizeLinearMatchesReference) {
  uint32_t seed = 5000;
  for (const char* ctm : kCoordinateModes) {
    for (bool use_sizes : {false, true}) {
      for (int repeat = 0; repeat < 2; ++repeat) {
        RunResizeCase("linear", ctm, "", use_sizes, ++seed);
      }
    }
  }
}

// Opset 11 Resize (roi and scales are required inputs, empty when unused) and
// opset 9 Upsample (nearest = asymmetric + floor): older export paths.
TEST(EngineReferenceTest, ResizeOpset11AndUpsampleOpset9MatchReference) {
  struct Case {
    int64_t opset;
    std::string op, mode, ctm, nearest_mode;
    bool use_sizes;
  };
  const Case cases[] = {
      {11, "Resize", "nearest", "asymmetric", "floor", false},
      {11, "Resize", "nearest", "half_pixel", "round_prefer_floor", true},
      {11, "Resize", "linear", "align_corners", "", true},
      {11, "Resize", "linear", "pytorch_half_pixel", "", false},
      {9, "Upsample", "nearest", "asymmetric", "floor", false},
  };
  uint32_t seed = 5500;
  for (const Case& c : cases) {
    ++seed;
    const std::vector<int64_t> x_shape = {2, 3, 7, 9};
    ResizeParams p;
    p.mode = c.mode;
    p.coordinate_transformation_mode = c.ctm;
    p.nearest_mode = c.nearest_mode.empty() ? "round_prefer_floor" : c.nearest_mode;
    if (c.use_sizes) {
      p.out_h = 13;  // no rounding knife edge for 7 -> 13 and 9 -> 5 (odd in, half_pixel)
      p.out_w = 5;
      p.scale_h = 13.0 / 7.0;
      p.scale_w = 5.0 / 9.0;
    } else {
      p.scale_h = 2.0;
      p.scale_w = 3.0;
      p.out_h = 14;
      p.out_w = 27;
    }
    SCOPED_TRACE(absl::StrCat(c.op, " opset ", c.opset, " ", c.mode, " ", c.ctm, " ",
                              c.nearest_mode, c.use_sizes ? " sizes" : " scales"));
    const Tensor x = RandomFloatTensor(x_shape, seed);
    const Tensor want = testing::ReferenceResize(x, p);
    ModelBuilder builder(c.opset);
    builder.Input("x", x_shape).Output("y", want.shape);
    const Tensor scales = FloatTensor(
        {4}, {1.0f, 1.0f, static_cast<float>(p.scale_h), static_cast<float>(p.scale_w)});
    onnx::NodeProto* node;
    if (c.op == "Upsample") {
      builder.Initializer("scales", scales);
      node = builder.Node("Upsample", {"x", "scales"}, {"y"});
    } else {
      builder.Initializer("roi", FloatTensor({0}, {}));
      if (c.use_sizes) {
        builder.Initializer("scales", FloatTensor({0}, {}));
        builder.Initializer("sizes", Int64Tensor({4}, {2, 3, p.out_h, p.out_w}));
        node = builder.Node("Resize", {"x", "roi", "scales", "sizes"}, {"y"});
      } else {
        builder.Initializer("scales", scales);
        node = builder.Node("Resize", {"x", "roi", "scales"}, {"y"});
      }
      AttrString(node, "coordinate_transformation_mode", c.ctm);
      if (c.mode == "nearest") AttrString(node, "nearest_mode", c.nearest_mode);
    }
    AttrString(node, "mode", c.mode);
    ExpectEngineMatches(builder.Bytes(), {x}, want);
  }
}

// ---------------------------------------------------------------------------
// Broadcasting binary ops

TEST(EngineReferenceTest, BinaryOpsBroadcastLikeNumpy) {
  const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{2, 3, 5, 7}, {2, 3, 5, 7}}, {{2, 3, 5, 7}, {3, 1, 1}},    {{2, 3, 5, 7}, {1, 3, 1, 7}},
      {{2, 3, 5, 7}, {7}},          {{2, 3, 5, 7}, {}},           {{2, 1, 5, 1}, {1, 3, 1, 7}},
      {{3, 1, 1}, {2, 3, 5, 7}},    {{1, 5, 9, 9}, {1, 5, 1, 1}}, {{3, 7}, {2, 5, 1, 7}},
  };
  uint32_t seed = 6000;
  for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv}) {
    for (const auto& [a_shape, b_shape] : shapes) {
      for (bool b_constant : {false, true}) {
        ++seed;
        SCOPED_TRACE(absl::StrCat(testing::BinaryOpName(op), " ", ShapeString(a_shape), " and ",
                                  ShapeString(b_shape), b_constant ? " (b initializer)" : ""));
        const Tensor a = RandomFloatTensor(a_shape, seed);
        Tensor b = RandomFloatTensor(b_shape, seed + 100000, 0.5f, 2.0f);
        // Denominators in +-[0.5, 2): no division by (nearly) zero.
        for (int64_t i = 0; i < b.num_elements(); i += 2) b.data<float>()[i] *= -1.0f;
        const Tensor want = testing::ReferenceBinary(a, b, op);
        ModelBuilder builder;
        builder.Input("a", a_shape);
        std::vector<Tensor> inputs = {a};
        if (b_constant) {
          builder.Initializer("b", b);
        } else {
          builder.Input("b", b_shape);
          inputs.push_back(b);
        }
        builder.Node(testing::BinaryOpName(op), {"a", "b"}, {"y"});
        builder.Output("y", want.shape);
        ExpectEngineMatches(builder.Bytes(), inputs, want);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Fused chains: fuse=true and fuse=false on the same input agree with each
// other and with the reference.

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
    const auto lines = [](const std::string& text) {
      return std::count(text.begin(), text.end(), '\n');
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
