// Squeeze and excitation as one step (ops/squeeze_excite.h), lowered at
// the global average pooling that starts it: GlobalAveragePool(x) -> Conv
// 1x1 (+ ReLU or SiLU) -> Conv 1x1 + Sigmoid -> Mul with x, each value read
// only by the next op, x in nChw8c (oneDNN's AVX2 layout) with a multiple
// of 8 channels, weights and biases constant. The pooling's step then
// computes the Mul's output and the three later ops are absorbed.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/squeeze_excite.h"

namespace rectifier::engine {
namespace {

using dnnl::memory;

constexpr char kDims[] = "dims";  // batch, channels, reduced, spatial
constexpr char kAct[] = "act";    // SqueezeExciteParams::Act
constexpr char kSiluInput[] = "silu_input";

// The index of the one node after `from` that reads `value`, when nothing
// else does (no other node, not a graph output); -1 otherwise.
int SoleReader(const Graph& g, const std::string& value, size_t from) {
  if (g.IsGraphOutput(value) || g.ConsumerCount(value) != 1) return -1;
  for (size_t i = from + 1; i < g.nodes.size(); ++i) {
    for (const std::string& in : g.nodes[i].inputs) {
      if (in == value) return static_cast<int>(i);
    }
  }
  return -1;
}

// A 1x1 convolution of `in_channels` to `out_channels` on a 1x1 image with
// constant weights (and bias, if any), one group, no padding.
bool IsPixelFc(const Graph& g, const Node& n, int64_t in_channels, int64_t out_channels) {
  if (n.op_type != "Conv" || n.inputs.size() < 2 || !g.IsConstant(n.inputs[1])) return false;
  if (n.GetInt("group", 1) != 1 || n.sum_input >= 0) return false;
  for (const int64_t p : n.GetInts("pads")) {
    if (p != 0) return false;
  }
  const Tensor& w = g.constants.at(n.inputs[1]);
  if (w.type != DataType::kFloat32 ||
      w.shape != std::vector<int64_t>{out_channels, in_channels, 1, 1}) {
    return false;
  }
  const std::string& bias = n.Input(2);
  if (bias.empty()) return true;
  if (!g.IsConstant(bias)) return false;
  const Tensor& b = g.constants.at(bias);
  return b.type == DataType::kFloat32 && b.num_elements() == out_channels;
}

absl::Status ComputeSqueezeExcite(const Node& node, const std::vector<View>& in,
                                  const std::vector<View>& out) {
  const std::vector<int64_t> d = node.GetInts(kDims, {});
  SqueezeExciteParams p;
  if (d.size() == 4) {
    p.batch = d[0];
    p.channels = d[1];
    p.reduced = d[2];
    p.spatial = d[3];
    p.act = static_cast<SqueezeExciteParams::Act>(node.GetInt(kAct, 0));
    p.silu_input = node.GetInt(kSiluInput, 0) != 0;
  }
  if (!SqueezeExciteSupported(p) || in.size() != 5 || out.size() != 1) {
    return absl::InternalError(absl::StrCat(node.Describe(), ": invalid squeeze-excite step"));
  }
  SqueezeExcite(p, const_cast<float*>(in[0].as<float>()), in[1].as<float>(), in[2].as<float>(),
                in[3].as<float>(), in[4].as<float>(), out[0].as<float>());
  return absl::OkStatus();
}

// The block that starts at `pool`, whose input is `xs` (nChw8c): its
// other three nodes and the kernel's parameters.
struct Block {
  int fc1 = -1, fc2 = -1, mul = -1;  // indices in the graph's nodes
  SqueezeExciteParams params;
};

// The first layer's activation into `p`; false for one the kernel lacks.
bool FirstActivation(const Node& fc1, SqueezeExciteParams* p) {
  if (fc1.post_ops.empty()) return true;
  if (fc1.post_ops.size() > 1) return false;
  const PostOp& op = fc1.post_ops[0];
  if (op.kind != PostOp::Kind::kEltwise) return false;
  if (op.fn == EltwiseFn::kRelu && op.alpha == 0.0f) {
    p->act = SqueezeExciteParams::Act::kRelu;
  } else if (op.fn == EltwiseFn::kSwish && op.alpha == 1.0f) {
    p->act = SqueezeExciteParams::Act::kSilu;
  } else {
    return false;
  }
  return true;
}

std::optional<Block> FindBlock(const Graph& g, const Node& pool, size_t at,
                               const std::vector<int64_t>& xs) {
  Block k;
  SqueezeExciteParams& p = k.params;
  p.batch = xs[0];
  p.channels = xs[1];
  p.spatial = xs[2] * xs[3];
  // The chain, each value read only by the next op.
  k.fc1 = SoleReader(g, pool.outputs[0], at);
  if (k.fc1 < 0) return std::nullopt;
  const Node& fc1 = g.nodes[k.fc1];
  if (g.constants.count(fc1.Input(1)) == 0) return std::nullopt;
  const std::vector<int64_t>& hs = g.constants.at(fc1.Input(1)).shape;
  if (hs.size() != 4 || !IsPixelFc(g, fc1, p.channels, hs[0]) || fc1.inputs[0] != pool.outputs[0] ||
      !FirstActivation(fc1, &p)) {
    return std::nullopt;
  }
  p.reduced = hs[0];
  k.fc2 = SoleReader(g, fc1.outputs[0], static_cast<size_t>(k.fc1));
  if (k.fc2 < 0) return std::nullopt;
  const Node& fc2 = g.nodes[k.fc2];
  if (!IsPixelFc(g, fc2, p.reduced, p.channels) || fc2.inputs[0] != fc1.outputs[0] ||
      fc2.post_ops.size() != 1 || fc2.post_ops[0].kind != PostOp::Kind::kEltwise ||
      fc2.post_ops[0].fn != EltwiseFn::kLogistic) {
    return std::nullopt;
  }
  k.mul = SoleReader(g, fc2.outputs[0], static_cast<size_t>(k.fc2));
  if (k.mul < 0) return std::nullopt;
  const Node& mul = g.nodes[k.mul];
  const std::string& x_name = pool.inputs[0];
  if (mul.op_type != "Mul" || mul.inputs.size() != 2 || !mul.post_ops.empty() ||
      !((mul.inputs[0] == x_name && mul.inputs[1] == fc2.outputs[0]) ||
        (mul.inputs[1] == x_name && mul.inputs[0] == fc2.outputs[0]))) {
    return std::nullopt;
  }
  if (!SqueezeExciteSupported(p)) return std::nullopt;
  return k;
}

// The block's weights and biases as plan constants: w1, b1, w2
// transposed, b2.
absl::StatusOr<std::vector<int>> BlockConstants(PlanBuilder& b, const Node& fc1, const Node& fc2,
                                                int64_t channels, int64_t reduced) {
  const Graph& g = b.graph();
  const float* w1 = g.constants.at(fc1.inputs[1]).data<float>();
  const float* w2 = g.constants.at(fc2.inputs[1]).data<float>();
  // The biases (zeros for a convolution without one).
  auto bias = [&](const Node& fc, int64_t n) {
    const Tensor* t = fc.Input(2).empty() ? nullptr : &g.constants.at(fc.Input(2));
    return b.ComputedConstant(
        absl::StrCat(t != nullptr ? fc.Input(2) : fc.name + "#no-bias", "@se"), n, [&](float* dst) {
          for (int64_t i = 0; i < n; ++i) dst[i] = t != nullptr ? t->data<float>()[i] : 0.0f;
        });
  };
  std::vector<int> ids(4);
  ASSIGN_OR_RETURN(
      ids[0], b.ComputedConstant(absl::StrCat(fc1.inputs[1], "@se"), reduced * channels,
                                 [&](float* dst) { std::copy(w1, w1 + reduced * channels, dst); }));
  ASSIGN_OR_RETURN(ids[1], bias(fc1, reduced));
  // [C][reduced] as ONNX stores it, transposed: the kernel reads 8
  // channels' weights for one hidden value at a time.
  ASSIGN_OR_RETURN(ids[2], b.ComputedConstant(absl::StrCat(fc2.inputs[1], "@se-transposed"),
                                              reduced * channels, [&](float* dst) {
                                                for (int64_t c = 0; c < channels; ++c) {
                                                  for (int64_t r = 0; r < reduced; ++r)
                                                    dst[r * channels + c] = w2[c * reduced + r];
                                                }
                                              }));
  ASSIGN_OR_RETURN(ids[3], bias(fc2, channels));
  return ids;
}

// True, after dropping it, when the plan's last step is Rectifier's
// in-place SiLU pass over all of x (its producer's activation): the
// block's squeeze applies it instead, one pass over x fewer.
bool TakeOverSiluPass(PlanBuilder& b, int x) {
  std::vector<PlanStep>& steps = b.plan().steps;
  if (steps.empty()) return false;
  const PlanStep& last = steps.back();
  const int root = b.plan().Root(x);
  if (last.kind != PlanStep::Kind::kReference || last.node.op_type != "silu" ||
      last.inputs.size() != 1 || last.outputs.size() != 1 ||
      b.plan().Root(last.inputs[0]) != root || b.plan().Root(last.outputs[0]) != root ||
      b.values()[last.outputs[0]].bytes != b.values()[x].bytes) {
    return false;
  }
  // Its activation site (statistics are off whenever the block fuses)
  // would name a step that no longer exists.
  const int k = static_cast<int>(steps.size()) - 1;
  auto& sites = b.plan().activation_sites;
  sites.erase(std::remove_if(sites.begin(), sites.end(),
                             [&](const ActivationSite& site) { return site.step == k; }),
              sites.end());
  steps.pop_back();
  return true;
}

}  // namespace

absl::StatusOr<bool> TryLowerSqueezeExcite(PlanBuilder& b, const Node& pool) {
  const Graph& g = b.graph();
  if (!b.fuse_squeeze_excite() || pool.op_type != "GlobalAveragePool" || pool.inputs.empty() ||
      pool.outputs.empty()) {
    return false;
  }
  const std::string& x_name = pool.inputs[0];
  if (g.IsConstant(x_name)) return false;
  ASSIGN_OR_RETURN(const int x, b.Value(x_name));
  const PlanValue xv = b.values()[x];  // a copy: values() grows below
  const std::vector<int64_t> xs = xv.shape;
  if (xv.type != DataType::kFloat32 || xs.size() != 4 ||
      xv.md !=
          memory::desc(PlanBuilder::Dims(xs), memory::data_type::f32, memory::format_tag::nChw8c)) {
    return false;
  }
  const std::optional<Block> block = FindBlock(g, pool, b.current_node(), xs);
  if (!block.has_value()) return false;
  SqueezeExciteParams p = block->params;
  const int i3 = block->mul;
  const Node& fc1 = g.nodes[block->fc1];
  const Node& fc2 = g.nodes[block->fc2];
  const Node& mul = g.nodes[i3];
  ASSIGN_OR_RETURN(const std::vector<int> constants,
                   BlockConstants(b, fc1, fc2, p.channels, p.reduced));
  // In place when only the pooling and the multiply read x and nothing
  // read later shares its buffer: the excitation then rewrites the lines it
  // has just read instead of filling another buffer.
  const bool in_place = b.values()[b.plan().Root(x)].storage == PlanValue::Storage::kArena &&
                        g.ConsumerCount(x_name) == 2 && !g.IsGraphOutput(x_name) &&
                        !g.IsGraphOutput(mul.outputs[0]) && !b.StorageReadLater(x, -1, i3);
  p.silu_input = TakeOverSiluPass(b, x);
  const int y = b.NewValue(mul.outputs[0], DataType::kFloat32, xs, xv.md);
  if (in_place) b.values()[y].alias_of = x;
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = "SqueezeExcite";
  step.node.name = pool.name;
  step.node.attrs[kDims] = Attribute::OfInts({p.batch, p.channels, p.reduced, p.spatial});
  step.node.attrs[kAct] = Attribute::OfInt(static_cast<int64_t>(p.act));
  step.node.attrs[kSiluInput] = Attribute::OfInt(p.silu_input ? 1 : 0);
  step.compute = ComputeSqueezeExcite;
  step.inputs = {x, constants[0], constants[1], constants[2], constants[3]};
  step.outputs = {y};
  step.reads = step.inputs;
  step.writes = {y};
  if (p.silu_input) step.writes.push_back(x);
  const char* act = p.act == SqueezeExciteParams::Act::kSilu   ? "SiLU"
                    : p.act == SqueezeExciteParams::Act::kRelu ? "Relu"
                                                               : "none";
  step.label =
      absl::StrCat("SqueezeExcite '", pool.name, "' [", absl::StrJoin(xs, ","), "] ",
                   p.silu_input ? "SiLU(input), " : "", p.channels, " -> ", p.reduced, " (", act,
                   ") -> ", p.channels, " (Sigmoid) x input", in_place ? " (in place), " : ", ",
                   LayoutName(xv.md), " {fused: Conv '", fc1.name, "', Conv '", fc2.name,
                   "', Mul '", mul.name, "'}  [rectifier_se:avx2]");
  b.plan().steps.push_back(std::move(step));
  b.Absorb(static_cast<size_t>(block->fc1));
  b.Absorb(static_cast<size_t>(block->fc2));
  b.Absorb(static_cast<size_t>(i3));
  b.Define(mul.outputs[0], y);
  return true;
}

}  // namespace rectifier::engine
