// Engine vs naive reference kernels on random odd shapes: Conv,
// ConvTranspose, MaxPool, AveragePool, Resize/Upsample and broadcasting
// binary ops. Seeds are fixed; every case names its configuration on failure.
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/engine_runner.h"
#include "tests/engine/conformance/onnx_test_util.h"
#include "tests/engine/conformance/reference_kernels.h"

namespace rectifier::engine {
namespace {

using testing::AttrInt;
using testing::AttrInts;
using testing::AttrString;
using testing::BinaryOp;
using testing::CompareTensors;
using testing::ConvParams;
using testing::ConvTransposeParams;
using testing::ExpectEngineMatches;
using testing::FloatTensor;
using testing::Int64Tensor;
using testing::Join;
using testing::kRefTolerance;
using testing::ModelBuilder;
using testing::Pick;
using testing::PoolParams;
using testing::RandomFloatTensor;
using testing::ResizeParams;
using testing::ShapeString;

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

}  // namespace
}  // namespace rectifier::engine
