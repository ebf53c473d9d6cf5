// Plan steps for Rectifier's own activation kernels (fast_activations.h),
// used instead of oneDNN eltwise for tanh and GELU-tanh when the model was
// compiled with CompileOptions::tanh_kernel = kRectifier.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/fast_activations.h"

namespace rectifier::engine {
namespace {

constexpr char kFunctionAttr[] = "function";

// The step's views are flat aliases covering the whole buffer; for blocked
// layouts that includes the zero padding of the channel blocks, which stays
// zero (tanh and GELU-tanh map 0 to 0).
absl::Status ComputeFastActivation(const Node& node, const std::vector<View>& in,
                                   const std::vector<View>& out) {
  const auto f = static_cast<FastActivation>(node.GetInt(kFunctionAttr, 0));
  ApplyFastActivationParallel(f, in[0].as<float>(), out[0].as<float>(), in[0].size());
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
  if (b.tanh_kernel() != ActivationKernel::kRectifier || op.kind != PostOp::Kind::kEltwise) {
    return false;
  }
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
  Attribute attr;
  attr.kind = Attribute::Kind::kInt;
  attr.i = static_cast<int64_t>(f);
  step.node.attrs[kFunctionAttr] = attr;
  step.compute = ComputeFastActivation;
  step.inputs = {in_flat};
  step.outputs = {out_flat};
  step.reads = {in_flat};
  step.writes = {out_flat};
  step.label = absl::StrCat(label, " ", FastActivationName(f), in_place ? " (in place) " : " ",
                            LayoutName(src.md), "  [rectifier:", FastActivationsIsa(), "]");
  b.plan().steps.push_back(std::move(step));
  return out;
}

}  // namespace rectifier::engine
