// Plan steps for Rectifier's own kernels (fast_activations.h): tanh and
// GELU-tanh instead of oneDNN eltwise when the model was compiled with
// CompileOptions::tanh_kernel = kRectifier, SiLU (with depthwise.h's
// SiluFast) when CompileOptions::silu_kernel = kRectifier, and softmax over a middle axis
// (CompileOptions::rectifier_kernels), which oneDNN 2.6 runs with its
// reference kernel.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/depthwise.h"
#include "server/engine/ops/fast_activations.h"
#include "server/engine/ops/silu_avx512.h"

namespace rectifier::engine {
namespace {

constexpr char kFunctionAttr[] = "function";
constexpr char kOuterAttr[] = "outer";
constexpr char kAxisAttr[] = "axis_size";
constexpr char kInnerAttr[] = "inner";
constexpr char kLogAttr[] = "log";

Attribute IntAttr(int64_t v) {
  Attribute attr;
  attr.kind = Attribute::Kind::kInt;
  attr.i = v;
  return attr;
}

absl::Status ComputeSoftmaxMiddleAxis(const Node& node, const std::vector<View>& in,
                                      const std::vector<View>& out) {
  SoftmaxMiddleAxis(in[0].as<float>(), out[0].as<float>(), node.GetInt(kOuterAttr, 1),
                    node.GetInt(kAxisAttr, 1), node.GetInt(kInnerAttr, 1),
                    node.GetInt(kLogAttr, 0) != 0);
  return absl::OkStatus();
}

// The step's views are flat aliases covering the whole buffer; for blocked
// layouts that includes the zero padding of the channel blocks, which stays
// zero (tanh and GELU-tanh map 0 to 0).
absl::Status ComputeFastActivation(const Node& node, const std::vector<View>& in,
                                   const std::vector<View>& out) {
  const auto f = static_cast<FastActivation>(node.GetInt(kFunctionAttr, 0));
  ApplyFastActivationParallel(f, in[0].as<float>(), out[0].as<float>(), in[0].size());
  return absl::OkStatus();
}

// SiLU with the depthwise kernel's short-chain SiLU (ops/depthwise.h); the
// blocked padding is 0 and stays 0.
absl::Status ComputeSiluShort(const Node& node, const std::vector<View>& in,
                              const std::vector<View>& out) {
  SiluFastParallel(in[0].as<float>(), out[0].as<float>(), in[0].size());
  return absl::OkStatus();
}

// A plain 1-D value over all bytes of `v` (padding included).
int FlatAlias(PlanBuilder& b, int v) {
  const int64_t count = static_cast<int64_t>(b.values()[v].bytes / sizeof(float));
  int id = b.NewValue(absl::StrCat(b.values()[v].name, "~flat"), DataType::kFloat32, {count},
                      PlanBuilder::PlainMd({count}));
  b.values()[id].alias_of = v;
  return id;
}

}  // namespace

bool UsesRectifierKernel(const PlanBuilder& b, const PostOp& op, FastActivation* f) {
  if (op.kind != PostOp::Kind::kEltwise) return false;
  if (b.silu_kernel() == ActivationKernel::kRectifier && op.fn == EltwiseFn::kSwish &&
      op.alpha == 1.0f) {
    if (f != nullptr) *f = FastActivation::kSilu;
    return true;
  }
  if (b.tanh_kernel() != ActivationKernel::kRectifier) return false;
  FastActivation which;
  if (op.fn == EltwiseFn::kTanh) {
    which = FastActivation::kTanh;
  } else if (op.fn == EltwiseFn::kGeluTanh) {
    which = FastActivation::kGeluTanh;
  } else {
    return false;
  }
  if (f != nullptr) *f = which;
  return true;
}

absl::StatusOr<int> EmitRectifierActivation(PlanBuilder& b, int v, FastActivation f,
                                            const std::string& name, const std::string& label,
                                            bool in_place) {
  const PlanValue src = b.values()[v];
  if (src.type != DataType::kFloat32) {
    return absl::InternalError(absl::StrCat(label, ": Rectifier activation on a non-float value"));
  }
  const int out = b.NewValue(name, DataType::kFloat32, src.shape, src.md);
  if (in_place) b.values()[out].alias_of = v;
  const int in_flat = FlatAlias(b, v);
  const int out_flat = in_place ? in_flat : FlatAlias(b, out);
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = FastActivationName(f);
  step.node.name = name;
  step.node.attrs[kFunctionAttr] = IntAttr(static_cast<int64_t>(f));
  step.compute = f == FastActivation::kSilu ? ComputeSiluShort : ComputeFastActivation;
  step.inputs = {in_flat};
  step.outputs = {out_flat};
  step.reads = {in_flat};
  step.writes = {out_flat};
  const char* isa = f != FastActivation::kSilu ? FastActivationsIsa()
                    : UseAvx512Silu()          ? "avx512"
                    : DepthwiseVectorized()    ? "avx2"
                                               : "scalar";
  step.label = absl::StrCat(label, " ", FastActivationName(f), in_place ? " (in place) " : " ",
                            LayoutName(src.md), "  [rectifier:", isa, "]");
  b.plan().steps.push_back(std::move(step));
  return out;
}

absl::StatusOr<int> EmitRectifierSoftmax(PlanBuilder& b, int x, int64_t outer, int64_t axis,
                                         int64_t inner, bool log, const std::string& name,
                                         const std::string& label) {
  const PlanValue src = b.values()[x];
  if (src.type != DataType::kFloat32 || !src.plain ||
      outer * axis * inner != NumElements(src.shape)) {
    return absl::InternalError(absl::StrCat(label, ": softmax kernel needs a plain float value"));
  }
  const int out = b.NewValue(name, DataType::kFloat32, src.shape, PlanBuilder::PlainMd(src.shape));
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = log ? "LogSoftmax" : "Softmax";
  step.node.name = name;
  step.node.attrs[kOuterAttr] = IntAttr(outer);
  step.node.attrs[kAxisAttr] = IntAttr(axis);
  step.node.attrs[kInnerAttr] = IntAttr(inner);
  step.node.attrs[kLogAttr] = IntAttr(log ? 1 : 0);
  step.compute = ComputeSoftmaxMiddleAxis;
  step.inputs = {x};
  step.outputs = {out};
  step.reads = {x};
  step.writes = {out};
  step.label = absl::StrCat(label, " [", outer, ",", axis, ",", inner, "] axis 1 of 3  [rectifier:",
                            FastActivationsVectorized() ? "avx2" : "scalar", "]");
  b.plan().steps.push_back(std::move(step));
  return out;
}

}  // namespace rectifier::engine
