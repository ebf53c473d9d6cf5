// Graph passes: support check, identity/dead-node elimination, constant
// folding, BatchNorm folding, activation and residual-add fusion.
#include "server/engine/passes/passes.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/engine/ir/rewriter.h"
#include "server/engine/ops/elementwise.h"
#include "server/engine/ops/op_registry.h"
#include "server/engine/passes/activations.h"

namespace rectifier::engine {
namespace {

// Replaces every read of `from` by `to`.
void RenameUses(Graph& g, const std::string& from, const std::string& to) {
  for (auto& n : g.nodes)
    for (auto& in : n.inputs)
      if (in == from) in = to;
}

bool SingleInternalUse(const Graph& g, const std::string& value) {
  return g.ConsumerCount(value) == 1 && !g.IsGraphOutput(value);
}

const Tensor* FloatConstant(const Graph& g, const std::string& name) {
  auto it = g.constants.find(name);
  if (it == g.constants.end() || it->second.type != DataType::kFloat32) return nullptr;
  return &it->second;
}

// A fresh constant name derived from `base`.
std::string FreshName(const Graph& g, const std::string& base) {
  std::string name = base;
  for (int i = 1; g.constants.count(name) || g.ProducerIndex(name) >= 0; ++i)
    name = absl::StrCat(base, "_", i);
  return name;
}

void EraseNodes(Graph& g, const std::set<int>& dead) {
  std::vector<Node> kept;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (!dead.count(static_cast<int>(i))) kept.push_back(std::move(g.nodes[i]));
  g.nodes = std::move(kept);
}

}  // namespace

absl::Status CheckSupportedOps(const Graph& graph) {
  for (const auto& n : graph.nodes) {
    if (FindOp(n.op_type) == nullptr) {
      return absl::UnimplementedError(absl::StrCat("unsupported op '", n.op_type, "' (node '",
                                                   n.name, "', opset ", n.opset, ")"));
    }
  }
  return absl::OkStatus();
}

int EliminateIdentities(Graph& g) {
  int removed = 0;
  std::set<int> dead;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    bool identity = n.op_type == "Identity";
    if (n.op_type == "Dropout") {
      identity = n.outputs.size() < 2 || n.outputs[1].empty() || g.ConsumerCount(n.outputs[1]) == 0;
      identity = identity && !(n.outputs.size() > 1 && g.IsGraphOutput(n.outputs[1]));
      // Training-mode dropout is rejected later by shape inference.
      if (n.opset < 7 && n.GetInt("is_test", 1) == 0) identity = false;
      if (!n.Input(2).empty()) {
        auto c = g.constants.find(n.Input(2));
        identity = identity && c != g.constants.end() && c->second.num_elements() == 1 &&
                   c->second.bytes[0] == std::byte{0};
      }
    }
    if (n.op_type == "Cast") {
      auto it = g.value_info.find(n.Input(0));
      auto c = g.constants.find(n.Input(0));
      int to = static_cast<int>(n.GetInt("to", 0));
      const bool f32 = to == 1;
      if (c != g.constants.end()) {
        identity = f32 && c->second.type == DataType::kFloat32;
      } else if (it != g.value_info.end()) {
        identity = f32 && it->second.type == DataType::kFloat32;
      } else {
        for (const auto& gi : g.inputs)
          if (gi.name == n.Input(0)) identity = f32 && gi.type == DataType::kFloat32;
      }
    }
    if (!identity || n.inputs.empty() || n.outputs.empty()) continue;
    if (g.IsGraphOutput(n.outputs[0])) continue;
    RenameUses(g, n.outputs[0], n.inputs[0]);
    dead.insert(static_cast<int>(i));
    ++removed;
  }
  EraseNodes(g, dead);
  return removed;
}

absl::Status FoldConstants(Graph& g, int64_t max_tensor_bytes) {
  std::set<int> dead;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    const OpDef* op = FindOp(n.op_type);
    if (op == nullptr || op->compute == nullptr) continue;
    RETURN_IF_ERROR(CheckArity(n));
    bool all_const = true;
    for (const auto& in : n.inputs) all_const = all_const && (in.empty() || g.IsConstant(in));
    if (!all_const) continue;
    std::vector<ValueInfo> in(n.inputs.size());
    std::vector<View> views(n.inputs.size());
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (n.inputs[k].empty()) {
        in[k].present = false;
        continue;
      }
      Tensor& t = g.constants.at(n.inputs[k]);
      in[k].type = t.type;
      in[k].shape = t.shape;
      in[k].value = &t;
      views[k] = View{t.type, t.shape, t.bytes.data()};
    }
    std::vector<ValueInfo> out(n.outputs.size());
    RETURN_IF_ERROR(op->infer(n, in, out));
    std::vector<Tensor> results(n.outputs.size());
    std::vector<View> out_views(n.outputs.size());
    for (size_t k = 0; k < out.size(); ++k) {
      const int64_t bytes =
          NumElements(out[k].shape) * static_cast<int64_t>(DataTypeSize(out[k].type));
      if (bytes > max_tensor_bytes) {
        return absl::ResourceExhaustedError(absl::StrCat("output '", n.outputs[k], "' of ",
                                                         n.Describe(), " needs ", bytes,
                                                         " bytes, over max_tensor_bytes"));
      }
      results[k] = Tensor::Zeros(out[k].type, out[k].shape);
      out_views[k] = View{out[k].type, out[k].shape, results[k].bytes.data()};
      if (n.outputs[k].empty()) out_views[k].data = nullptr;
    }
    RETURN_IF_ERROR(op->compute(n, views, out_views));
    for (size_t k = 0; k < out.size(); ++k)
      if (!n.outputs[k].empty()) g.constants[n.outputs[k]] = std::move(results[k]);
    dead.insert(static_cast<int>(i));
  }
  EraseNodes(g, dead);
  return absl::OkStatus();
}

int EliminateDeadNodes(Graph& g) {
  std::set<std::string> needed;
  for (const auto& o : g.outputs) needed.insert(o.name);
  std::set<int> dead;
  for (int i = static_cast<int>(g.nodes.size()) - 1; i >= 0; --i) {
    const Node& n = g.nodes[i];
    bool used = false;
    for (const auto& o : n.outputs) used = used || (!o.empty() && needed.count(o));
    if (!used) {
      dead.insert(i);
      continue;
    }
    for (const auto& in : n.inputs)
      if (!in.empty()) needed.insert(in);
    for (const auto& op : n.post_ops)
      if (!op.slope.empty()) needed.insert(op.slope);
  }
  EraseNodes(g, dead);
  for (auto it = g.constants.begin(); it != g.constants.end();) {
    if (!needed.count(it->first)) {
      it = g.constants.erase(it);
    } else {
      ++it;
    }
  }
  return static_cast<int>(dead.size());
}

int FoldBatchNorm(Graph& g) {
  int folded = 0;
  std::set<int> dead;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& bn = g.nodes[i];
    if (bn.op_type != "BatchNormalization" || bn.inputs.size() < 5) continue;
    if (bn.outputs.size() > 1 && !bn.outputs[1].empty()) continue;
    const int p = g.ProducerIndex(bn.inputs[0]);
    if (p < 0 || dead.count(p)) continue;
    Node& prod = g.nodes[p];
    if ((prod.op_type != "Conv" && prod.op_type != "ConvTranspose" && prod.op_type != "Gemm") ||
        !prod.post_ops.empty() || !SingleInternalUse(g, bn.inputs[0]))
      continue;
    const Tensor* gamma = FloatConstant(g, bn.inputs[1]);
    const Tensor* beta = FloatConstant(g, bn.inputs[2]);
    const Tensor* mean = FloatConstant(g, bn.inputs[3]);
    const Tensor* var = FloatConstant(g, bn.inputs[4]);
    const Tensor* w = FloatConstant(g, prod.Input(1));
    if (!gamma || !beta || !mean || !var || !w) continue;
    const int64_t c = gamma->num_elements();
    if (beta->num_elements() != c || mean->num_elements() != c || var->num_elements() != c)
      continue;
    const float eps = bn.GetFloat("epsilon", 1e-5f);
    std::vector<float> scale(c), shift(c);
    for (int64_t k = 0; k < c; ++k) {
      scale[k] = gamma->data<float>()[k] / std::sqrt(var->data<float>()[k] + eps);
      shift[k] = beta->data<float>()[k] - mean->data<float>()[k] * scale[k];
    }
    Tensor nw = *w;
    float* wd = nw.data<float>();
    std::vector<float> old_bias(c, 0.0f);
    const std::string bias_name = prod.Input(2);
    if (prod.op_type == "Gemm") {
      if (nw.shape.size() != 2) continue;
      const bool tb = prod.GetInt("transB", 0) != 0;
      const int64_t n_out = tb ? nw.shape[0] : nw.shape[1];
      const int64_t k_in = tb ? nw.shape[1] : nw.shape[0];
      if (n_out != c) continue;
      const float gbeta = prod.GetFloat("beta", 1.0f);
      if (!bias_name.empty()) {
        const Tensor* b = FloatConstant(g, bias_name);
        if (!b || (b->num_elements() != c && b->num_elements() != 1)) continue;
        for (int64_t k = 0; k < c; ++k)
          old_bias[k] = gbeta * b->data<float>()[b->num_elements() == 1 ? 0 : k];
      }
      for (int64_t r = 0; r < k_in; ++r)
        for (int64_t j = 0; j < c; ++j) (tb ? wd[j * k_in + r] : wd[r * c + j]) *= scale[j];
      prod.attrs["beta"].kind = Attribute::Kind::kFloat;
      prod.attrs["beta"].f = 1.0f;
    } else {
      if (!bias_name.empty()) {
        const Tensor* b = FloatConstant(g, bias_name);
        if (!b || b->num_elements() != c) continue;
        for (int64_t k = 0; k < c; ++k) old_bias[k] = b->data<float>()[k];
      }
      if (nw.shape.size() < 2) continue;
      int64_t inner = 1;
      for (size_t d = 2; d < nw.shape.size(); ++d) inner *= nw.shape[d];
      if (prod.op_type == "Conv") {
        if (nw.shape[0] != c) continue;
        for (int64_t m = 0; m < c; ++m)
          for (int64_t r = 0; r < nw.shape[1] * inner; ++r)
            wd[m * nw.shape[1] * inner + r] *= scale[m];
      } else {
        const int64_t groups = prod.GetInt("group", 1);
        if (groups <= 0 || nw.shape[0] % groups != 0) continue;
        const int64_t ocg = nw.shape[1], icg = nw.shape[0] / groups;
        if (ocg * groups != c) continue;
        for (int64_t ci = 0; ci < nw.shape[0]; ++ci)
          for (int64_t j = 0; j < ocg; ++j)
            for (int64_t r = 0; r < inner; ++r)
              wd[(ci * ocg + j) * inner + r] *= scale[(ci / icg) * ocg + j];
      }
    }
    Tensor nb = Tensor::Zeros(DataType::kFloat32, {c});
    for (int64_t k = 0; k < c; ++k) nb.data<float>()[k] = old_bias[k] * scale[k] + shift[k];
    const std::string wname = FreshName(g, prod.name + "/weight_bn");
    const std::string bname = FreshName(g, prod.name + "/bias_bn");
    g.constants[wname] = std::move(nw);
    g.constants[bname] = std::move(nb);
    prod.inputs.resize(std::max<size_t>(prod.inputs.size(), 3));
    prod.inputs[1] = wname;
    prod.inputs[2] = bname;
    prod.outputs[0] = bn.outputs[0];
    prod.fused.push_back(absl::StrCat("BatchNormalization '", bn.name, "' (folded)"));
    dead.insert(static_cast<int>(i));
    ++folded;
  }
  EraseNodes(g, dead);
  return folded;
}

namespace {

// Per-output-channel values of constant `c` for a producer with `oc` output
// channels on axis 1 of a rank-`rank` output; empty if `c` is not of that form.
std::vector<float> PerChannel(const Tensor& c, int64_t oc, size_t rank) {
  if (c.type != DataType::kFloat32 || c.shape.size() > rank) return {};
  const int64_t n = c.num_elements();
  if (n == 1) return std::vector<float>(static_cast<size_t>(oc), c.data<float>()[0]);
  if (n != oc) return {};
  // Right-align c's shape with the output; only the channel axis may be > 1.
  const size_t off = rank - c.shape.size();
  for (size_t i = 0; i < c.shape.size(); ++i)
    if (c.shape[i] != 1 && i + off != 1) return {};
  return std::vector<float>(c.data<float>(), c.data<float>() + n);
}

}  // namespace

namespace {

// Output channels of a Conv/ConvTranspose/Gemm with weights `w`, and the rank
// a per-channel operand is broadcast against (`rank`); 0 when not foldable.
int64_t OutputChannels(const Node& prod, const Tensor& w, size_t& rank) {
  rank = w.shape.size();
  if (prod.op_type == "Conv") return w.shape[0];
  if (prod.op_type == "ConvTranspose") {
    const int64_t groups = prod.GetInt("group", 1);
    if (groups <= 0 || groups > (int64_t{1} << 20)) return 0;
    return w.shape[1] * groups;
  }
  if (prod.GetFloat("alpha", 1.0f) != 1.0f) return 0;
  rank = 2;
  return prod.GetInt("transB", 0) ? w.shape[0] : w.shape[1];
}

// The producer's bias per output channel (zeros without one, Gemm's beta
// applied); nullopt when it is not a per-channel constant.
std::optional<std::vector<float>> ProducerBias(const Graph& g, const Node& prod, int64_t oc) {
  std::vector<float> bias(static_cast<size_t>(oc), 0.0f);
  if (prod.Input(2).empty()) return bias;
  const Tensor* b = FloatConstant(g, prod.Input(2));
  const bool gemm = prod.op_type == "Gemm";
  if (!b || (b->num_elements() != oc && !(gemm && b->num_elements() == 1))) return std::nullopt;
  if (gemm && b->shape.size() == 2 && b->shape[0] != 1) return std::nullopt;
  const float beta = gemm ? prod.GetFloat("beta", 1.0f) : 1.0f;
  for (int64_t c = 0; c < oc; ++c)
    bias[c] = beta * b->data<float>()[b->num_elements() == 1 ? 0 : c];
  return bias;
}

// y = (W x + b) * s: scales each output channel's weights of `prod` by v[c].
// False when the weights do not split into `oc` channels.
bool ScaleOutputChannels(const Node& prod, const std::vector<float>& v, int64_t oc, Tensor& w) {
  float* wd = w.data<float>();
  const int64_t total = w.num_elements();
  if (prod.op_type == "Conv") {
    const int64_t per = total / oc;
    for (int64_t c = 0; c < oc; ++c)
      for (int64_t r = 0; r < per; ++r) wd[c * per + r] *= v[c];
  } else if (prod.op_type == "ConvTranspose") {
    const int64_t groups = prod.GetInt("group", 1);
    if (groups <= 0 || w.shape[0] % groups != 0) return false;
    const int64_t ocg = w.shape[1], icg = w.shape[0] / groups;
    const int64_t inner = total / (w.shape[0] * ocg);
    for (int64_t ci = 0; ci < w.shape[0]; ++ci)
      for (int64_t j = 0; j < ocg; ++j)
        for (int64_t r = 0; r < inner; ++r)
          wd[(ci * ocg + j) * inner + r] *= v[(ci / icg) * ocg + j];
  } else {
    const bool tb = prod.GetInt("transB", 0) != 0;
    const int64_t kin = tb ? w.shape[1] : w.shape[0];
    for (int64_t r = 0; r < kin; ++r)
      for (int64_t c = 0; c < oc; ++c) (tb ? wd[c * kin + r] : wd[r * oc + c]) *= v[c];
  }
  return true;
}

// Folds Add/Sub/Mul node `oi` into the Conv/ConvTranspose/Gemm producing
// one of its inputs, when the other input is a per-channel constant.
bool FoldIntoBias(GraphRewriter& r, int oi) {
  Graph& g = r.graph();
  const Node& op = r.node(oi);
  if ((op.op_type != "Add" && op.op_type != "Sub" && op.op_type != "Mul") || op.inputs.size() != 2)
    return false;
  int k = -1;  // which input is the producer's output
  for (int j = 0; j < 2; ++j) {
    const int p = r.Producer(op.inputs[j]);
    if (p < 0 || !g.IsConstant(op.inputs[1 - j])) continue;
    const std::string& t = r.node(p).op_type;
    if (t == "Conv" || t == "ConvTranspose" || t == "Gemm") k = j;
  }
  if (k < 0 || (op.op_type == "Sub" && k != 0)) return false;
  const int p = r.Producer(op.inputs[k]);
  Node& prod = r.node(p);
  if (!prod.post_ops.empty() || r.ReadCount(op.inputs[k]) != 1 || g.IsGraphOutput(op.inputs[k]))
    return false;
  const Tensor* w = FloatConstant(g, prod.Input(1));
  if (!w || w->shape.size() < 2) return false;
  size_t rank = 0;
  const int64_t oc = OutputChannels(prod, *w, rank);
  if (oc <= 0) return false;
  const std::vector<float> v = PerChannel(g.constants.at(op.inputs[1 - k]), oc, rank);
  if (v.empty()) return false;
  std::optional<std::vector<float>> bias = ProducerBias(g, prod, oc);
  if (!bias) return false;
  std::string wname = prod.Input(1);
  if (op.op_type == "Mul") {
    Tensor nw = *w;
    if (!ScaleOutputChannels(prod, v, oc, nw)) return false;
    wname = FreshName(g, prod.name + "/weight_scaled");
    g.constants[wname] = std::move(nw);
    for (int64_t c = 0; c < oc; ++c) (*bias)[c] *= v[c];
  } else {
    for (int64_t c = 0; c < oc; ++c) (*bias)[c] += op.op_type == "Add" ? v[c] : -v[c];
  }
  Tensor nb = Tensor::Zeros(DataType::kFloat32, {oc});
  std::copy(bias->begin(), bias->end(), nb.data<float>());
  const std::string bname = FreshName(g, prod.name + "/bias_folded");
  g.constants[bname] = std::move(nb);
  std::vector<std::string> inputs = prod.inputs;
  inputs.resize(std::max<size_t>(inputs.size(), 3));
  inputs[1] = wname;
  inputs[2] = bname;
  r.SetInputs(p, std::move(inputs));
  if (prod.op_type == "Gemm") {
    prod.attrs["beta"].kind = Attribute::Kind::kFloat;
    prod.attrs["beta"].f = 1.0f;
  }
  r.SetOutput(p, 0, op.outputs[0]);
  prod.fused.push_back(absl::StrCat(op.op_type, " '", op.name, "' (folded into bias)"));
  r.Erase(oi);
  r.Count();
  return true;
}

}  // namespace

int FoldBiasAdd(Graph& g) {
  // One forward sweep: a chain (Conv -> Add -> Mul) folds link by link,
  // since each link's producer is already rewritten when it is reached.
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!r.Erased(static_cast<int>(i))) FoldIntoBias(r, static_cast<int>(i));
  }
  return r.Finish();
}

namespace {

// Output channels and rank of a Conv/ConvTranspose/Gemm with constant
// weights, or false.
bool ProducerChannels(const Graph& g, const Node& prod, int64_t& channels, size_t& rank) {
  const Tensor* w = FloatConstant(g, prod.Input(1));
  if (w == nullptr || w->shape.size() < 2) return false;
  if (prod.op_type == "Conv") {
    channels = w->shape[0];
    rank = w->shape.size();
  } else if (prod.op_type == "ConvTranspose") {
    channels = w->shape[1] * prod.GetInt("group", 1);
    rank = w->shape.size();
  } else if (prod.op_type == "Gemm") {
    channels = prod.GetInt("transB", 0) ? w->shape[0] : w->shape[1];
    rank = 2;
  } else {
    return false;
  }
  return channels > 0;
}

// PRelu whose constant slope is per output channel of `prod` (numpy
// broadcasting: [C, 1, 1] for a conv, [C] for a Gemm) -> a prelu post-op.
bool MapPReluPostOp(const Graph& g, const Node& prod, const Node& act, PostOp& op) {
  if (act.op_type != "PRelu" || act.opset < 7 || act.inputs.size() < 2) return false;
  const Tensor* slope = FloatConstant(g, act.inputs[1]);
  int64_t channels;
  size_t rank;
  if (slope == nullptr || !ProducerChannels(g, prod, channels, rank) ||
      slope->shape.size() > rank || slope->num_elements() != channels)
    return false;
  const size_t off = rank - slope->shape.size();
  for (size_t i = 0; i < slope->shape.size(); ++i)
    if (slope->shape[i] != 1 && i + off != 1) return false;
  op.kind = PostOp::Kind::kPrelu;
  op.slope = act.inputs[1];
  return true;
}

}  // namespace

namespace {

// Folds the activation reading producer `pi`'s output into it, when there
// is one: a single reader mapping to eltwise or prelu post-ops, or the
// written-out `y * gate(y)` of SiLU/HardSwish. True when it fused one.
bool FuseNextActivation(GraphRewriter& r, int pi) {
  Graph& g = r.graph();
  Node& prod = r.node(pi);
  const std::string y = prod.outputs[0];
  if (g.IsGraphOutput(y)) return false;
  const std::vector<int> users = r.Users(y);
  if (users.size() == 1 && r.ReadCount(y) == 1) {
    const int ai = users[0];
    Node& act = r.node(ai);
    std::vector<PostOp> ops;
    if (act.inputs.empty() || act.inputs[0] != y) return false;
    if (!MapToEltwise(act, g, ops)) {
      PostOp prelu;
      if (!MapPReluPostOp(g, prod, act, prelu)) return false;
      ops.push_back(prelu);
    }
    if (auto kind = ActivationOfNode(act, g)) ops.back().activation = ActivationLabel(*kind);
    for (const auto& op : ops) prod.post_ops.push_back(op);
    prod.fused.push_back(absl::StrCat(act.op_type, " '", act.name, "'"));
    for (const auto& note : act.fused) prod.fused.push_back(note);
    r.SetOutput(pi, 0, act.outputs[0]);
    r.Erase(ai);
    r.Count();
    return true;
  }
  if (users.size() != 2 || r.ReadCount(y) != 2) return false;
  // SiLU / HardSwish written out: Mul(y, Sigmoid(y)) or Mul(y, HardSigmoid(y)).
  for (int gi : users) {
    const Node& gate = r.node(gi);
    if (gate.inputs.empty() || gate.inputs[0] != y) continue;
    const std::optional<Activation> act = GateActivation(gate);
    if (!act) continue;
    const int mi = r.SoleUser(gate.outputs[0]);
    if (mi < 0 || mi == gi) continue;
    const Node& mul = r.node(mi);
    if (mul.op_type != "Mul" || mul.inputs.size() != 2) continue;
    const std::string& s = gate.outputs[0];
    if (!((mul.inputs[0] == y && mul.inputs[1] == s) || (mul.inputs[0] == s && mul.inputs[1] == y)))
      continue;
    PostOp op;
    const bool silu = act->kind == ActivationKind::kSilu;
    op.fn = silu ? EltwiseFn::kSwish : EltwiseFn::kHardSwish;
    op.alpha = silu ? 1.0f : 0.0f;
    op.activation = silu ? "SiLU" : "HardSwish";
    prod.post_ops.push_back(op);
    prod.fused.push_back(absl::StrCat(gate.op_type, "+Mul '", mul.name, "' (", op.activation, ")"));
    r.SetOutput(pi, 0, mul.outputs[0]);
    r.Erase(gi);
    r.Erase(mi);
    r.Count();
    return true;
  }
  return false;
}

}  // namespace

int FuseActivations(Graph& g) {
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int pi = static_cast<int>(i);
    const OpDef* def = FindOp(g.nodes[i].op_type);
    if (r.Erased(pi) || def == nullptr || !def->fuses_activation) continue;
    // A chain of activations (Relu then Clip, ...) all fold in, in order.
    while (FuseNextActivation(r, pi)) {
    }
  }
  return r.Finish();
}

absl::StatusOr<int> FuseResidualAdd(Graph& g) {
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int ai = static_cast<int>(i);
    if (r.Erased(ai)) continue;
    const Node& add = g.nodes[i];
    if (add.op_type != "Add" || add.inputs.size() != 2 || add.inputs[0] == add.inputs[1]) continue;
    auto out_it = g.value_info.find(add.outputs[0]);
    if (out_it == g.value_info.end() || out_it->second.type != DataType::kFloat32) continue;
    int best = -1, best_in = -1;
    for (int k = 0; k < 2; ++k) {
      const std::string& v = add.inputs[k];
      const std::string& other = add.inputs[1 - k];
      const int p = r.Producer(v);
      if (p < 0) continue;
      const Node& prod = g.nodes[p];
      const OpDef* def = FindOp(prod.op_type);
      if (def == nullptr || !def->fuses_sum) continue;
      if (prod.sum_input >= 0 || r.ReadCount(v) != 1 || g.IsGraphOutput(v)) continue;
      auto vi = g.value_info.find(v);
      auto oi = g.value_info.find(other);
      if (vi == g.value_info.end() || vi->second.shape != out_it->second.shape) continue;
      const bool other_const = g.IsConstant(other);
      const std::vector<int64_t>* other_shape =
          other_const ? &g.constants.at(other).shape
                      : (oi == g.value_info.end() ? nullptr : &oi->second.shape);
      if (other_shape == nullptr || *other_shape != out_it->second.shape) continue;
      if (p > best) {
        best = p;
        best_in = k;
      }
    }
    if (best < 0) continue;
    Node& prod = g.nodes[best];
    PostOp sum;
    sum.kind = PostOp::Kind::kSum;
    prod.post_ops.push_back(sum);
    std::vector<std::string> inputs = prod.inputs;
    inputs.resize(std::max<size_t>(inputs.size(), 3));
    inputs.push_back(add.inputs[1 - best_in]);
    r.SetInputs(best, std::move(inputs));
    prod.sum_input = static_cast<int>(prod.inputs.size()) - 1;
    prod.fused.push_back(absl::StrCat("Add '", add.name, "' (sum)"));
    r.SetOutput(best, 0, add.outputs[0]);
    r.Erase(ai);
    r.Count();
  }
  const int fused = r.Finish();
  if (fused) RETURN_IF_ERROR(TopologicalSort(g));
  return fused;
}

}  // namespace rectifier::engine
