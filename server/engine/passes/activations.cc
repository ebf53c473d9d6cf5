// Activation catalog, exporter-pattern rewrites, per-model replacement and
// the effective-activation count.
#include "server/engine/passes/activations.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/engine/ir/rewriter.h"

namespace rectifier::engine {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kSeluAlpha = 1.67326319217681884765625f;
constexpr float kSeluGamma = 1.05070102214813232421875f;

struct KindInfo {
  ActivationKind kind;
  const char* name;
};

constexpr KindInfo kKinds[] = {
    {ActivationKind::kRelu, "Relu"},           {ActivationKind::kLeakyRelu, "LeakyRelu"},
    {ActivationKind::kPRelu, "PRelu"},         {ActivationKind::kRelu6, "Relu6"},
    {ActivationKind::kClip, "Clip"},           {ActivationKind::kSigmoid, "Sigmoid"},
    {ActivationKind::kTanh, "Tanh"},           {ActivationKind::kHardSigmoid, "HardSigmoid"},
    {ActivationKind::kHardSwish, "HardSwish"}, {ActivationKind::kElu, "Elu"},
    {ActivationKind::kSelu, "Selu"},           {ActivationKind::kSoftplus, "Softplus"},
    {ActivationKind::kMish, "Mish"},           {ActivationKind::kSilu, "SiLU"},
    {ActivationKind::kSwish, "Swish"},         {ActivationKind::kGelu, "Gelu"},
};

Attribute FloatAttr(float v) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = v;
  return a;
}

// Value of a one-element float constant (any rank <= 1), if `name` is one.
std::optional<float> ScalarConstant(const Graph& g, const std::string& name) {
  auto it = g.constants.find(name);
  if (it == g.constants.end() || it->second.type != DataType::kFloat32 ||
      it->second.num_elements() != 1 || it->second.shape.size() > 1)
    return std::nullopt;
  return it->second.data<float>()[0];
}

bool Near(std::optional<float> v, double want, double tol) {
  return v.has_value() && std::fabs(static_cast<double>(*v) - want) <= tol;
}

// Clip bounds when constant (attributes before opset 11, inputs after).
bool ClipBounds(const Node& n, const Graph& g, float& lo, float& hi) {
  lo = -kInf;
  hi = kInf;
  if (n.opset < 11) {
    lo = n.GetFloat("min", lo);
    hi = n.GetFloat("max", hi);
    return true;
  }
  for (int i = 1; i <= 2; ++i) {
    const std::string& in = n.Input(static_cast<size_t>(i));
    if (in.empty()) continue;
    auto it = g.constants.find(in);
    if (it == g.constants.end() || it->second.type != DataType::kFloat32 ||
        it->second.num_elements() != 1)
      return false;
    (i == 1 ? lo : hi) = it->second.data<float>()[0];
  }
  return true;
}

// Node `i` becomes `act` reading `x`; nodes in `erase` disappear.
void RewriteAs(GraphRewriter& r, int i, const std::string& x, const Activation& act,
               const std::vector<int>& erase, const std::string& note) {
  r.SetInputs(i, {x});
  Node& n = r.node(i);
  SetNodeActivation(n, act);
  n.fused.push_back(note);
  r.Touch(i);
  for (int e : erase) r.Erase(e);
  r.Count();
}

// For a two-input Mul/Max node: the operand other than `v`, or "".
std::string OtherOperand(const Node& n, const std::string& v) {
  if (n.inputs.size() != 2) return "";
  if (n.inputs[0] == v && n.inputs[1] != v) return n.inputs[1];
  if (n.inputs[1] == v && n.inputs[0] != v) return n.inputs[0];
  return "";
}

bool IsMul(const Node& n) { return n.op_type == "Mul" && n.inputs.size() == 2; }

// Shared by SiLU, HardSwish and Mish: `gate` = f(x) with private output,
// consumed by Mul(x, gate) -> the Mul becomes `act`.
template <typename Match>
int GateTimesInput(Graph& g, const std::string& gate_op, const Activation& act,
                   const std::string& label, Match match) {
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int gi = static_cast<int>(i);
    if (r.Touched(gi) || g.nodes[i].op_type != gate_op || g.nodes[i].inputs.empty()) continue;
    std::string x;
    std::vector<int> chain;
    if (!match(r, gi, x, chain)) continue;
    const int m = r.SoleUser(g.nodes[i].outputs[0]);
    if (m < 0 || !IsMul(r.node(m)) || OtherOperand(r.node(m), g.nodes[i].outputs[0]) != x) continue;
    chain.push_back(gi);
    RewriteAs(r, m, x, act, chain, absl::StrCat(label, " pattern '", r.node(m).name, "'"));
  }
  return r.Finish();
}

Activation Act(ActivationKind kind, float alpha = 0.0f, float beta = 0.0f) {
  Activation a;
  a.kind = kind;
  a.alpha = alpha;
  a.beta = beta;
  return a;
}

std::string KnownKinds() {
  std::vector<std::string> names;
  for (const auto& k : kKinds) names.emplace_back(k.name);
  return absl::StrJoin(names, ", ");
}

}  // namespace

const std::vector<ActivationKind>& AllActivationKinds() {
  static const std::vector<ActivationKind> kAll = [] {
    std::vector<ActivationKind> v;
    for (const auto& k : kKinds) v.push_back(k.kind);
    return v;
  }();
  return kAll;
}

std::string_view ActivationKindName(ActivationKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

std::optional<ActivationKind> ParseActivationKind(std::string_view name) {
  for (const auto& k : kKinds)
    if (absl::EqualsIgnoreCase(absl::string_view(name.data(), name.size()), k.name)) return k.kind;
  return std::nullopt;
}

std::string ActivationLabel(const Activation& act) {
  if (act.kind == ActivationKind::kGelu) return act.gelu_tanh ? "Gelu(tanh)" : "Gelu(erf)";
  return std::string(ActivationKindName(act.kind));
}

std::optional<Activation> ActivationOfNode(const Node& n, const Graph& g) {
  const std::string& op = n.op_type;
  if (n.inputs.empty() || n.outputs.empty()) return std::nullopt;
  if (op == "Relu") return Act(ActivationKind::kRelu);
  if (op == "LeakyRelu") return Act(ActivationKind::kLeakyRelu, n.GetFloat("alpha", 0.01f));
  if (op == "PRelu") {
    if (n.inputs.size() < 2 || !g.IsConstant(n.inputs[1])) return std::nullopt;
    return Act(ActivationKind::kPRelu);
  }
  if (op == "Clip") {
    float lo, hi;
    if (!ClipBounds(n, g, lo, hi)) return std::nullopt;
    if (lo == 0.0f && hi == 6.0f) return Act(ActivationKind::kRelu6);
    return Act(ActivationKind::kClip, lo, hi);
  }
  if (op == "Sigmoid") return Act(ActivationKind::kSigmoid);
  if (op == "Tanh") return Act(ActivationKind::kTanh);
  if (op == "HardSigmoid") {
    return Act(ActivationKind::kHardSigmoid, n.GetFloat("alpha", 0.2f), n.GetFloat("beta", 0.5f));
  }
  if (op == "HardSwish") return Act(ActivationKind::kHardSwish);
  if (op == "Elu") return Act(ActivationKind::kElu, n.GetFloat("alpha", 1.0f));
  if (op == "Selu") {
    return Act(ActivationKind::kSelu, n.GetFloat("alpha", kSeluAlpha),
               n.GetFloat("gamma", kSeluGamma));
  }
  if (op == "Softplus") return Act(ActivationKind::kSoftplus);
  if (op == "Mish") return Act(ActivationKind::kMish);
  if (op == "Swish") {
    const float beta = n.GetFloat("alpha", 1.0f);
    return beta == 1.0f ? Act(ActivationKind::kSilu, 1.0f) : Act(ActivationKind::kSwish, beta);
  }
  if (op == "Gelu") {
    const std::string approx = n.GetString("approximate", "none");
    if (approx != "none" && approx != "tanh") return std::nullopt;
    Activation a = Act(ActivationKind::kGelu);
    a.gelu_tanh = approx == "tanh";
    return a;
  }
  return std::nullopt;
}

void SetNodeActivation(Node& n, const Activation& act) {
  n.inputs.resize(1);
  n.outputs.resize(1);
  n.attrs.clear();
  switch (act.kind) {
    case ActivationKind::kRelu:
      n.op_type = "Relu";
      break;
    case ActivationKind::kLeakyRelu:
      n.op_type = "LeakyRelu";
      n.attrs["alpha"] = FloatAttr(act.alpha);
      break;
    case ActivationKind::kPRelu:  // not a valid target (ValidateActivationOptions)
    case ActivationKind::kRelu6:
    case ActivationKind::kClip:
      // The attribute form of Clip (opset 6), so no constant inputs are needed.
      n.op_type = "Clip";
      n.opset = 6;
      if (act.kind == ActivationKind::kRelu6) {
        n.attrs["min"] = FloatAttr(0.0f);
        n.attrs["max"] = FloatAttr(6.0f);
      } else {
        n.attrs["min"] = FloatAttr(act.alpha);
        n.attrs["max"] = FloatAttr(act.beta);
      }
      break;
    case ActivationKind::kSigmoid:
      n.op_type = "Sigmoid";
      break;
    case ActivationKind::kTanh:
      n.op_type = "Tanh";
      break;
    case ActivationKind::kHardSigmoid:
      n.op_type = "HardSigmoid";
      n.attrs["alpha"] = FloatAttr(act.alpha);
      n.attrs["beta"] = FloatAttr(act.beta);
      break;
    case ActivationKind::kHardSwish:
      n.op_type = "HardSwish";
      break;
    case ActivationKind::kElu:
      n.op_type = "Elu";
      n.attrs["alpha"] = FloatAttr(act.alpha);
      break;
    case ActivationKind::kSelu:
      n.op_type = "Selu";
      n.attrs["alpha"] = FloatAttr(act.alpha);
      n.attrs["gamma"] = FloatAttr(act.beta);
      break;
    case ActivationKind::kSoftplus:
      n.op_type = "Softplus";
      break;
    case ActivationKind::kMish:
      n.op_type = "Mish";
      break;
    case ActivationKind::kSilu:
    case ActivationKind::kSwish:
      // ONNX Swish (opset 24): x * sigmoid(alpha * x).
      n.op_type = "Swish";
      n.attrs["alpha"] = FloatAttr(act.kind == ActivationKind::kSilu ? 1.0f : act.alpha);
      break;
    case ActivationKind::kGelu: {
      n.op_type = "Gelu";
      Attribute a;
      a.kind = Attribute::Kind::kString;
      a.s = act.gelu_tanh ? "tanh" : "none";
      n.attrs["approximate"] = a;
      break;
    }
  }
}

std::optional<Activation> GateActivation(const Node& gate) {
  if (gate.inputs.empty()) return std::nullopt;
  if (gate.op_type == "Sigmoid") return Act(ActivationKind::kSilu, 1.0f);
  if (gate.op_type == "HardSigmoid" &&
      std::fabs(gate.GetFloat("alpha", 0.2f) - 1.0f / 6.0f) <= 1e-6f &&
      gate.GetFloat("beta", 0.5f) == 0.5f) {
    return Act(ActivationKind::kHardSwish);
  }
  return std::nullopt;
}

int FuseSiluPattern(Graph& g) {
  return GateTimesInput(g, "Sigmoid", Act(ActivationKind::kSilu, 1.0f), "SiLU",
                        [](GraphRewriter& r, int s, std::string& x, std::vector<int>&) {
                          x = r.node(s).inputs[0];
                          return GateActivation(r.node(s)).has_value();
                        });
}

int FuseSwishPattern(Graph& g) {
  // Sigmoid(Mul(x, b)) * x; the beta differs per match, so rewrite here.
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int si = static_cast<int>(i);
    if (r.Touched(si) || g.nodes[i].op_type != "Sigmoid" || g.nodes[i].inputs.empty()) continue;
    const std::string& t = g.nodes[i].inputs[0];
    const int mi = r.Producer(t);
    if (mi < 0 || r.Touched(mi) || !IsMul(r.node(mi)) || r.SoleUser(t) != si) continue;
    const Node& scale = r.node(mi);
    std::string x;
    std::optional<float> beta;
    for (int k = 0; k < 2; ++k) {
      auto c = ScalarConstant(g, scale.inputs[static_cast<size_t>(k)]);
      if (c && !g.IsConstant(scale.inputs[static_cast<size_t>(1 - k)])) {
        beta = c;
        x = scale.inputs[static_cast<size_t>(1 - k)];
      }
    }
    if (!beta) continue;
    const int m = r.SoleUser(g.nodes[i].outputs[0]);
    if (m < 0 || !IsMul(r.node(m)) || OtherOperand(r.node(m), g.nodes[i].outputs[0]) != x) continue;
    const Activation act =
        *beta == 1.0f ? Act(ActivationKind::kSilu, 1.0f) : Act(ActivationKind::kSwish, *beta);
    RewriteAs(r, m, x, act, {mi, si}, absl::StrCat("Swish pattern '", r.node(m).name, "'"));
  }
  return r.Finish();
}

int FuseMishPattern(Graph& g) {
  return GateTimesInput(
      g, "Tanh", Act(ActivationKind::kMish), "Mish",
      [](GraphRewriter& r, int t, std::string& x, std::vector<int>& chain) {
        const std::string& sp_out = r.node(t).inputs[0];
        const int sp = r.Producer(sp_out);
        if (sp < 0 || r.Touched(sp) || r.node(sp).op_type != "Softplus" || r.SoleUser(sp_out) != t)
          return false;
        x = r.node(sp).inputs[0];
        chain.push_back(sp);
        return true;
      });
}

int FuseHardSwishPattern(Graph& g) {
  return GateTimesInput(g, "HardSigmoid", Act(ActivationKind::kHardSwish), "HardSwish",
                        [](GraphRewriter& r, int h, std::string& x, std::vector<int>&) {
                          x = r.node(h).inputs[0];
                          return GateActivation(r.node(h)).has_value();
                        });
}

namespace {

// The GELU tail shared by both forms: `gate` (the Erf or Tanh node) feeds
// Add(., 1) -> p, then p is multiplied by x and 0.5 in any order: (x * p) *
// 0.5, (p * 0.5) * x, 0.5 * (p * x) or (x * 0.5) * p. Appends the tail's
// nodes (except the last) to `erase`; returns the last Mul, or -1.
int MatchGeluTail(GraphRewriter& r, const Graph& g, int gate, const std::string& x,
                  std::vector<int>& erase) {
  const std::string& out = r.node(gate).outputs[0];
  const int ai = r.SoleUser(out);
  if (ai < 0 || r.node(ai).op_type != "Add" ||
      !Near(ScalarConstant(g, OtherOperand(r.node(ai), out)), 1.0, 1e-6))
    return -1;
  const std::string p = r.node(ai).outputs[0];
  const int m1 = r.SoleUser(p);
  if (m1 < 0 || !IsMul(r.node(m1))) return -1;
  const std::string o1 = OtherOperand(r.node(m1), p);
  erase.push_back(ai);
  if (o1 == x || Near(ScalarConstant(g, o1), 0.5, 1e-6)) {
    const std::string q = r.node(m1).outputs[0];
    const int m2 = r.SoleUser(q);
    if (m2 < 0 || !IsMul(r.node(m2))) return -1;
    const std::string o2 = OtherOperand(r.node(m2), q);
    const bool ok = o1 == x ? Near(ScalarConstant(g, o2), 0.5, 1e-6) : o2 == x;
    if (!ok) return -1;
    erase.push_back(m1);
    return m2;
  }
  const int hi = r.Producer(o1);
  if (hi < 0 || r.Touched(hi) || !IsMul(r.node(hi)) || r.SoleUser(o1) != m1) return -1;
  const Node& h = r.node(hi);
  const bool half = (h.inputs[0] == x && Near(ScalarConstant(g, h.inputs[1]), 0.5, 1e-6)) ||
                    (h.inputs[1] == x && Near(ScalarConstant(g, h.inputs[0]), 0.5, 1e-6));
  if (!half) return -1;
  erase.push_back(hi);
  return m1;
}

// Mul(v, c) or Mul(c, v) with a scalar constant c near `want`: returns v.
std::string ScaledBy(const Graph& g, const Node& n, double want, double tol) {
  if (!IsMul(n)) return "";
  for (int k = 0; k < 2; ++k) {
    if (Near(ScalarConstant(g, n.inputs[static_cast<size_t>(k)]), want, tol))
      return n.inputs[static_cast<size_t>(1 - k)];
  }
  return "";
}

}  // namespace

int FuseGeluErfPattern(Graph& g) {
  // Erf(x / sqrt(2)) or Erf(x * (1 / sqrt(2))), then the GELU tail.
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int ei = static_cast<int>(i);
    if (r.Touched(ei) || g.nodes[i].op_type != "Erf" || g.nodes[i].inputs.empty()) continue;
    const std::string& d = g.nodes[i].inputs[0];
    const int di = r.Producer(d);
    if (di < 0 || r.Touched(di) || r.SoleUser(d) != ei) continue;
    const Node& dn = r.node(di);
    if (dn.inputs.size() != 2) continue;
    std::string x;
    if (dn.op_type == "Div" && Near(ScalarConstant(g, dn.inputs[1]), std::sqrt(2.0), 1e-4)) {
      x = dn.inputs[0];
    } else {
      x = ScaledBy(g, dn, std::sqrt(0.5), 1e-4);
    }
    if (x.empty() || g.IsConstant(x)) continue;
    std::vector<int> erase = {di, ei};
    const int final_mul = MatchGeluTail(r, g, ei, x, erase);
    if (final_mul < 0) continue;
    RewriteAs(r, final_mul, x, Act(ActivationKind::kGelu), erase,
              absl::StrCat("Gelu(erf) pattern '", r.node(final_mul).name, "'"));
  }
  return r.Finish();
}

int FuseGeluTanhPattern(Graph& g) {
  // Tanh(0.79788 * (x + 0.044715 * x^3)), x^3 = x * (x * x) or Pow(x, 3),
  // then the GELU tail (torch's approximate='tanh' export).
  const double kSqrt2OverPi = std::sqrt(2.0 / 3.14159265358979323846);
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int ti = static_cast<int>(i);
    if (r.Touched(ti) || g.nodes[i].op_type != "Tanh" || g.nodes[i].inputs.empty()) continue;
    std::vector<int> erase = {ti};
    const std::string& f = g.nodes[i].inputs[0];
    const int fi = r.Producer(f);
    if (fi < 0 || r.Touched(fi) || r.SoleUser(f) != ti) continue;
    const std::string e = ScaledBy(g, r.node(fi), kSqrt2OverPi, 1e-4);
    const int addi = e.empty() ? -1 : r.Producer(e);
    if (addi < 0 || r.Touched(addi) || r.node(addi).op_type != "Add" ||
        r.node(addi).inputs.size() != 2 || r.SoleUser(e) != fi)
      continue;
    erase.push_back(fi);
    erase.push_back(addi);
    // e = x + d, d = 0.044715 * x^3 (Add operands in either order).
    std::string x;
    for (int k = 0; k < 2 && x.empty(); ++k) {
      const std::string& d = r.node(addi).inputs[static_cast<size_t>(k)];
      const std::string& cand = r.node(addi).inputs[static_cast<size_t>(1 - k)];
      const int di = r.Producer(d);
      if (di < 0 || r.Touched(di) || r.SoleUser(d) != addi) continue;
      const std::string cube = ScaledBy(g, r.node(di), 0.044715, 1e-5);
      const int ci = cube.empty() ? -1 : r.Producer(cube);
      if (ci < 0 || r.Touched(ci) || r.SoleUser(cube) != di) continue;
      const Node& cn = r.node(ci);
      std::vector<int> cube_nodes = {di, ci};
      bool ok = false;
      if (cn.op_type == "Pow" && cn.inputs.size() == 2 && cn.inputs[0] == cand) {
        ok = Near(ScalarConstant(g, cn.inputs[1]), 3.0, 0.0);
      } else if (IsMul(cn)) {
        // x * (x * x), either order.
        for (int j = 0; j < 2 && !ok; ++j) {
          const std::string& sq = cn.inputs[static_cast<size_t>(j)];
          const int si = r.Producer(sq);
          if (cn.inputs[static_cast<size_t>(1 - j)] != cand || si < 0 || r.Touched(si) ||
              r.SoleUser(sq) != ci)
            continue;
          const Node& sn = r.node(si);
          if (IsMul(sn) && sn.inputs[0] == cand && sn.inputs[1] == cand) {
            ok = true;
            cube_nodes.push_back(si);
          }
        }
      }
      if (!ok) continue;
      x = cand;
      erase.insert(erase.end(), cube_nodes.begin(), cube_nodes.end());
    }
    if (x.empty() || g.IsConstant(x)) continue;
    const int final_mul = MatchGeluTail(r, g, ti, x, erase);
    if (final_mul < 0) continue;
    Activation act = Act(ActivationKind::kGelu);
    act.gelu_tanh = true;
    RewriteAs(r, final_mul, x, act, erase,
              absl::StrCat("Gelu(tanh) pattern '", r.node(final_mul).name, "'"));
  }
  return r.Finish();
}

int FuseRelu6Pattern(Graph& g) {
  // Relu -> Clip(0, 6) (torch's relu6) and Min(Relu(x), 6).
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int ci = static_cast<int>(i);
    const Node& n = g.nodes[i];
    if (r.Touched(ci) || n.inputs.empty()) continue;
    std::string v;
    if (n.op_type == "Clip") {
      auto act = ActivationOfNode(n, g);
      if (!act || act->kind != ActivationKind::kRelu6) continue;
      v = n.inputs[0];
    } else if (n.op_type == "Min" && n.inputs.size() == 2) {
      for (int k = 0; k < 2; ++k)
        if (Near(ScalarConstant(g, n.inputs[static_cast<size_t>(k)]), 6.0, 0.0))
          v = n.inputs[static_cast<size_t>(1 - k)];
      if (v.empty()) continue;
    } else {
      continue;
    }
    const int ri = r.Producer(v);
    if (ri < 0 || r.Touched(ri) || r.node(ri).op_type != "Relu" || r.SoleUser(v) != ci) continue;
    RewriteAs(r, ci, r.node(ri).inputs[0], Act(ActivationKind::kRelu6), {ri},
              absl::StrCat("Relu6 pattern '", n.name, "'"));
  }
  return r.Finish();
}

int FuseReluPattern(Graph& g) {
  // Max(x, 0) and Clip(x, 0) (no upper bound).
  GraphRewriter r(g);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const int mi = static_cast<int>(i);
    const Node& n = g.nodes[i];
    if (r.Touched(mi) || n.inputs.empty()) continue;
    std::string x;
    if (n.op_type == "Max" && n.inputs.size() == 2) {
      for (int k = 0; k < 2; ++k) {
        if (Near(ScalarConstant(g, n.inputs[static_cast<size_t>(k)]), 0.0, 0.0) &&
            !g.IsConstant(n.inputs[static_cast<size_t>(1 - k)]))
          x = n.inputs[static_cast<size_t>(1 - k)];
      }
    } else if (n.op_type == "Clip") {
      auto act = ActivationOfNode(n, g);
      if (act && act->kind == ActivationKind::kClip && act->alpha == 0.0f && act->beta == kInf)
        x = n.inputs[0];
    }
    if (x.empty()) continue;
    RewriteAs(r, mi, x, Act(ActivationKind::kRelu), {},
              absl::StrCat("Relu pattern (", n.op_type, " '", n.name, "')"));
  }
  return r.Finish();
}

std::map<std::string, int> RecognizeActivationPatterns(Graph& g) {
  std::map<std::string, int> counts;
  bool changed = true;
  while (changed) {
    changed = false;
    const std::pair<const char*, int (*)(Graph&)> passes[] = {
        {"Swish", FuseSwishPattern},   {"SiLU", FuseSiluPattern},
        {"Mish", FuseMishPattern},     {"Gelu", FuseGeluErfPattern},
        {"Gelu", FuseGeluTanhPattern}, {"HardSwish", FuseHardSwishPattern},
        {"Relu6", FuseRelu6Pattern},   {"Relu", FuseReluPattern}};
    for (const auto& [name, pass] : passes) {
      const int n = pass(g);
      if (n > 0) {
        counts[name] += n;
        changed = true;
      }
    }
  }
  // Swish(1) is SiLU: report by the kind actually produced.
  return counts;
}

absl::Status ValidateActivationOptions(const CompileOptions& options) {
  for (size_t i = 0; i < options.replace.size(); ++i) {
    const ActivationReplacement& r = options.replace[i];
    const std::string field = absl::StrCat("activation.replace[", i, "]");
    auto from = ParseActivationKind(r.from);
    if (!from) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".from: unknown activation kind '",
                                                     r.from, "' (known: ", KnownKinds(), ")"));
    }
    auto to = ParseActivationKind(r.to);
    if (!to) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".to: unknown activation kind '", r.to,
                                                     "' (known: ", KnownKinds(), ")"));
    }
    if (*to == ActivationKind::kPRelu) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".to: PRelu needs a trained slope tensor and cannot be a target"));
    }
    for (const auto& [name, v] :
         {std::pair<const char*, std::optional<float>>{"alpha", r.alpha}, {"beta", r.beta}}) {
      if (v && std::isnan(*v)) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".", name, " is NaN"));
      }
    }
    if (*to == ActivationKind::kClip && r.alpha && r.beta && *r.alpha > *r.beta) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": Clip min (alpha) ", *r.alpha,
                                                     " is greater than max (beta) ", *r.beta));
    }
  }
  const std::string& ga = options.gelu_approximation;
  if (!ga.empty() && ga != "erf" && ga != "tanh") {
    return absl::InvalidArgumentError(
        absl::StrCat("activation.gelu_approximation: '", ga, "' is not one of \"erf\", \"tanh\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ApplyActivationOptions(Graph& g,
                                                                const CompileOptions& options) {
  if (absl::Status s = ValidateActivationOptions(options); !s.ok()) return s;
  std::map<std::string, int> replaced;
  for (auto& n : g.nodes) {
    auto act = ActivationOfNode(n, g);
    if (!act) continue;
    for (const ActivationReplacement& rule : options.replace) {
      const ActivationKind from = *ParseActivationKind(rule.from);
      // Clip matches every Clip (Relu6 included); the others match exactly.
      const bool match = act->kind == from ||
                         (from == ActivationKind::kClip && act->kind == ActivationKind::kRelu6);
      if (!match) continue;
      Activation to;
      to.kind = *ParseActivationKind(rule.to);
      switch (to.kind) {
        case ActivationKind::kLeakyRelu:
          to.alpha = rule.alpha.value_or(0.01f);
          break;
        case ActivationKind::kClip:
          to.alpha = rule.alpha.value_or(-kInf);
          to.beta = rule.beta.value_or(kInf);
          break;
        case ActivationKind::kHardSigmoid:
          to.alpha = rule.alpha.value_or(0.2f);
          to.beta = rule.beta.value_or(0.5f);
          break;
        case ActivationKind::kElu:
          to.alpha = rule.alpha.value_or(1.0f);
          break;
        case ActivationKind::kSelu:
          to.alpha = rule.alpha.value_or(kSeluAlpha);
          to.beta = rule.beta.value_or(kSeluGamma);
          break;
        case ActivationKind::kSwish:
          to.alpha = rule.alpha.value_or(1.0f);
          if (to.alpha == 1.0f) to.kind = ActivationKind::kSilu;
          break;
        case ActivationKind::kGelu:
          to.gelu_tanh = options.gelu_approximation == "tanh";
          break;
        default:
          break;
      }
      const std::string desc = absl::StrCat(ActivationLabel(*act), " -> ", ActivationLabel(to));
      n.fused.push_back(absl::StrCat("replaced ", desc));
      SetNodeActivation(n, to);
      ++replaced[desc];
      break;
    }
  }
  if (!options.gelu_approximation.empty()) {
    for (auto& n : g.nodes) {
      if (n.op_type != "Gelu") continue;
      Attribute a;
      a.kind = Attribute::Kind::kString;
      a.s = options.gelu_approximation == "tanh" ? "tanh" : "none";
      n.attrs["approximate"] = a;
    }
  }
  std::vector<std::string> out;
  out.reserve(replaced.size());
  for (const auto& [desc, count] : replaced) out.push_back(absl::StrCat(desc, ": ", count));
  return out;
}

std::map<std::string, int> CountActivations(const Graph& g) {
  std::map<std::string, int> counts;
  for (const auto& n : g.nodes) {
    for (const auto& op : n.post_ops)
      if (!op.activation.empty()) ++counts[op.activation];
    auto act = ActivationOfNode(n, g);
    if (act) ++counts[ActivationLabel(*act)];
  }
  return counts;
}

}  // namespace rectifier::engine
