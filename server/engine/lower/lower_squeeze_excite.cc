// Squeeze and excitation as one step (ops/squeeze_excite.h), lowered at
// the global average pooling that starts it: GlobalAveragePool(x) -> Conv
// 1x1 (+ ReLU or SiLU) -> Conv 1x1 + Sigmoid -> Mul with x, each value read
// only by the next op, x in nChw8c (oneDNN's AVX2 layout) with a multiple
// of 8 channels, weights and biases constant. The pooling's step then
// computes the Mul's output and the three later ops are absorbed.
#include <algorithm>
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
  if (xv.type != DataType::kFloat32 || xs.size() != 4) return false;
  const int64_t channels = xs[1];
  if (xv.md !=
      memory::desc(PlanBuilder::Dims(xs), memory::data_type::f32, memory::format_tag::nChw8c)) {
    return false;
  }
  // The chain, each value read only by the next op.
  const size_t at = b.current_node();
  const int i1 = SoleReader(g, pool.outputs[0], at);
  if (i1 < 0) return false;
  const Node& fc1 = g.nodes[i1];
  const std::vector<int64_t>& hs = g.constants.count(fc1.Input(1)) != 0
                                       ? g.constants.at(fc1.Input(1)).shape
                                       : std::vector<int64_t>{};
  if (hs.size() != 4 || !IsPixelFc(g, fc1, channels, hs[0]) || fc1.inputs[0] != pool.outputs[0]) {
    return false;
  }
  const int64_t reduced = hs[0];
  SqueezeExciteParams p;
  p.batch = xs[0];
  p.channels = channels;
  p.reduced = reduced;
  p.spatial = xs[2] * xs[3];
  if (fc1.post_ops.size() > 1) return false;
  if (fc1.post_ops.size() == 1) {
    const PostOp& op = fc1.post_ops[0];
    if (op.kind != PostOp::Kind::kEltwise) return false;
    if (op.fn == EltwiseFn::kRelu && op.alpha == 0.0f) {
      p.act = SqueezeExciteParams::Act::kRelu;
    } else if (op.fn == EltwiseFn::kSwish && op.alpha == 1.0f) {
      p.act = SqueezeExciteParams::Act::kSilu;
    } else {
      return false;
    }
  }
  const int i2 = SoleReader(g, fc1.outputs[0], static_cast<size_t>(i1));
  if (i2 < 0) return false;
  const Node& fc2 = g.nodes[i2];
  if (!IsPixelFc(g, fc2, reduced, channels) || fc2.inputs[0] != fc1.outputs[0] ||
      fc2.post_ops.size() != 1 || fc2.post_ops[0].kind != PostOp::Kind::kEltwise ||
      fc2.post_ops[0].fn != EltwiseFn::kLogistic) {
    return false;
  }
  const int i3 = SoleReader(g, fc2.outputs[0], static_cast<size_t>(i2));
  if (i3 < 0) return false;
  const Node& mul = g.nodes[i3];
  if (mul.op_type != "Mul" || mul.inputs.size() != 2 || !mul.post_ops.empty() ||
      !((mul.inputs[0] == x_name && mul.inputs[1] == fc2.outputs[0]) ||
        (mul.inputs[1] == x_name && mul.inputs[0] == fc2.outputs[0]))) {
    return false;
  }
  if (!SqueezeExciteSupported(p)) return false;

  const float* w1 = g.constants.at(fc1.inputs[1]).data<float>();
  const float* w2 = g.constants.at(fc2.inputs[1]).data<float>();
  ASSIGN_OR_RETURN(const int w1v, b.ComputedConstant(absl::StrCat(fc1.inputs[1], "@se"),
                                                     reduced * channels, [&](float* dst) {
                                                       std::copy(w1, w1 + reduced * channels, dst);
                                                     }));
  // [C][reduced] as ONNX stores it, transposed: the kernel reads 8
  // channels' weights for one hidden value at a time.
  ASSIGN_OR_RETURN(const int w2v, b.ComputedConstant(absl::StrCat(fc2.inputs[1], "@se-transposed"),
                                                     reduced * channels, [&](float* dst) {
                                                       for (int64_t c = 0; c < channels; ++c) {
                                                         for (int64_t r = 0; r < reduced; ++r)
                                                           dst[r * channels + c] =
                                                               w2[c * reduced + r];
                                                       }
                                                     }));
  // The biases (zeros for a convolution without one).
  auto bias = [&](const Node& fc, int64_t n) {
    const Tensor* t = fc.Input(2).empty() ? nullptr : &g.constants.at(fc.Input(2));
    return b.ComputedConstant(
        absl::StrCat(t != nullptr ? fc.Input(2) : fc.name + "#no-bias", "@se"), n, [&](float* dst) {
          for (int64_t i = 0; i < n; ++i) dst[i] = t != nullptr ? t->data<float>()[i] : 0.0f;
        });
  };
  ASSIGN_OR_RETURN(const int b1v, bias(fc1, reduced));
  ASSIGN_OR_RETURN(const int b2v, bias(fc2, channels));

  // In place when only the pooling and the multiply read x and nothing
  // read later shares its buffer: the excitation then rewrites the lines it
  // has just read instead of filling another buffer.
  const bool in_place = b.values()[b.plan().Root(x)].storage == PlanValue::Storage::kArena &&
                        g.ConsumerCount(x_name) == 2 && !g.IsGraphOutput(x_name) &&
                        !g.IsGraphOutput(mul.outputs[0]) && !b.StorageReadLater(x, -1, i3);
  // x's producer ran its SiLU as an in-place pass that is the plan's last
  // step: the block's squeeze applies it instead, one pass over x fewer.
  std::vector<PlanStep>& steps = b.plan().steps;
  const int root = b.plan().Root(x);
  if (!steps.empty()) {
    const PlanStep& last = steps.back();
    p.silu_input = last.kind == PlanStep::Kind::kReference && last.node.op_type == "silu" &&
                   last.inputs.size() == 1 && last.outputs.size() == 1 &&
                   b.plan().Root(last.inputs[0]) == root &&
                   b.plan().Root(last.outputs[0]) == root &&
                   b.values()[last.outputs[0]].bytes == xv.bytes;
  }
  if (p.silu_input) {
    // Its activation site (statistics are off whenever this step fuses)
    // would name a step that no longer exists.
    const int k = static_cast<int>(steps.size()) - 1;
    auto& sites = b.plan().activation_sites;
    sites.erase(std::remove_if(sites.begin(), sites.end(),
                               [&](const ActivationSite& s) { return s.step == k; }),
                sites.end());
    steps.pop_back();
  }
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
  step.inputs = {x, w1v, b1v, w2v, b2v};
  step.outputs = {y};
  step.reads = {x, w1v, b1v, w2v, b2v};
  step.writes = {y};
  if (p.silu_input) step.writes.push_back(x);
  const char* act = p.act == SqueezeExciteParams::Act::kSilu   ? "SiLU"
                    : p.act == SqueezeExciteParams::Act::kRelu ? "Relu"
                                                               : "none";
  step.label = absl::StrCat(
      "SqueezeExcite '", pool.name, "' [", absl::StrJoin(xs, ","), "] ",
      p.silu_input ? "SiLU(input), " : "", channels, " -> ", reduced, " (", act, ") -> ", channels,
      " (Sigmoid) x input", in_place ? " (in place), " : ", ", LayoutName(xv.md), " {fused: Conv '",
      fc1.name, "', Conv '", fc2.name, "', Mul '", mul.name, "'}  [rectifier_se:avx2]");
  b.plan().steps.push_back(std::move(step));
  b.Absorb(static_cast<size_t>(i1));
  b.Absorb(static_cast<size_t>(i2));
  b.Absorb(static_cast<size_t>(i3));
  b.Define(mul.outputs[0], y);
  return true;
}

}  // namespace rectifier::engine
