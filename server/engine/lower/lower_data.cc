// oneDNN lowering of data-movement ops that would otherwise force plain
// layouts: Slice/Split (as reorders from sub-memory views) and Resize
// (resampling: nearest with integer factors, linear with half-pixel
// centres). Both keep the producer's layout.
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/kernel_util.h"
#include "server/engine/ops/nn_ops.h"

namespace rectifier::engine {
namespace {

using dnnl::memory;
using DT = memory::data_type;

// Copies rows [offset, offset + extent) of `axis` from `x` into a new value
// in the same layout family.
absl::StatusOr<int> EmitSlice(PlanBuilder& b, int x, int axis, int64_t offset, int64_t extent,
                              const std::string& name, const std::string& label) {
  const memory::desc src_md = b.values()[x].md;
  std::vector<int64_t> shape = b.values()[x].shape;
  shape[axis] = extent;
  memory::dims dims = PlanBuilder::Dims(shape);
  memory::dims offsets(dims.size(), 0);
  offsets[axis] = offset;
  ASSIGN_OR_RETURN(memory::desc dst_md, SameLayout(src_md, dims));
  const memory::desc sub = src_md.submemory_desc(dims, offsets);
  dnnl::reorder::primitive_desc pd(b.engine(), sub, b.engine(), dst_md, UserScratchpad());
  // The reorder reads through a view of `x` described by `sub`.
  int view = b.NewValue(absl::StrCat(b.values()[x].name, "[view]"), DataType::kFloat32, shape, sub);
  b.values()[view].alias_of = x;
  int out = b.NewValue(name, DataType::kFloat32, shape, dst_md);
  b.AddPrimitive(pd, dnnl::reorder(pd), {{DNNL_ARG_FROM, view}, {DNNL_ARG_TO, out}},
                 absl::StrCat(label, " [", absl::StrJoin(shape, ","), "] ", LayoutName(dst_md)));
  return out;
}

bool FloatInput(PlanBuilder& b, const Node& node) {
  auto vi = b.graph().value_info.find(node.inputs[0]);
  return vi != b.graph().value_info.end() && vi->second.type == DataType::kFloat32 &&
         NumElements(vi->second.shape) > 0 && !vi->second.shape.empty();
}

}  // namespace

absl::StatusOr<memory::desc> SameLayout(const memory::desc& ref, const memory::dims& dims) {
  const auto& d = ref.data;
  if (d.format_kind != dnnl_blocked || d.ndims != static_cast<int>(dims.size())) {
    return absl::FailedPreconditionError("not a blocked layout");
  }
  const auto& blk = d.format_desc.blocking;
  const int nd = d.ndims;
  if (blk.inner_nblks == 0) {
    std::vector<int> order(nd);
    for (int i = 0; i < nd; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int c) { return blk.strides[a] > blk.strides[c]; });
    memory::dims strides(nd);
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; --i) {
      strides[order[i]] = s;
      s *= dims[order[i]];
    }
    return memory::desc(dims, DT::f32, strides);
  }
  if (blk.inner_nblks == 1 && blk.inner_idxs[0] == 1 && (nd >= 3 && nd <= 5)) {
    using Tag = memory::format_tag;
    const int64_t bs = blk.inner_blks[0];
    Tag tag = Tag::undef;
    if (bs == 8) tag = nd == 3 ? Tag::aBc8b : nd == 4 ? Tag::aBcd8b : Tag::aBcde8b;
    if (bs == 16) tag = nd == 3 ? Tag::aBc16b : nd == 4 ? Tag::aBcd16b : Tag::aBcde16b;
    if (tag != Tag::undef) {
      memory::desc md(dims, DT::f32, tag);
      // Only when the outer dims are in the canonical (a, B, c, ...) order.
      if (LayoutName(md) == LayoutName(ref)) return md;
    }
  }
  return absl::FailedPreconditionError("unsupported blocked layout");
}

absl::StatusOr<bool> LowerSliceSplit(PlanBuilder& b, const Node& node) {
  if (!FloatInput(b, node)) return false;
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  const std::vector<int64_t> xs = b.values()[x].shape;
  const Graph& g = b.graph();
  int axis = -1;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // (offset, extent) per output
  if (node.op_type == "Split") {
    axis = static_cast<int>(node.GetInt("axis", 0));
    if (axis < 0) axis += static_cast<int>(xs.size());
    int64_t off = 0;
    for (const auto& out : node.outputs) {
      if (out.empty() || !g.value_info.count(out)) return false;
      const int64_t ext = g.value_info.at(out).shape[axis];
      ranges.push_back({off, ext});
      off += ext;
    }
  } else {
    const auto& ys = g.value_info.at(node.outputs[0]).shape;
    // Find the one sliced axis; its start must be recoverable (steps of 1).
    if (node.opset < 10) return false;
    for (size_t i = 1; i < node.inputs.size(); ++i)
      if (!node.Input(i).empty() && !g.IsConstant(node.Input(i))) return false;
    if (!node.Input(4).empty()) {
      for (int64_t s : ReadInts(g.constants.at(node.Input(4))))
        if (s != 1) return false;
    }
    const auto starts = ReadInts(g.constants.at(node.Input(1)));
    std::vector<int64_t> axes;
    if (!node.Input(3).empty()) {
      axes = ReadInts(g.constants.at(node.Input(3)));
    } else {
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    }
    for (size_t i = 0; i < axes.size(); ++i) {
      int64_t a = axes[i] < 0 ? axes[i] + static_cast<int64_t>(xs.size()) : axes[i];
      if (a < 0 || a >= static_cast<int64_t>(xs.size())) return false;
      if (ys[a] == xs[a]) continue;
      if (axis >= 0) return false;  // more than one sliced axis
      axis = static_cast<int>(a);
      int64_t st = starts[i] < 0 ? starts[i] + xs[a] : starts[i];
      st = std::clamp<int64_t>(st, 0, xs[a]);
      ranges.push_back({st, ys[a]});
    }
    if (axis < 0 || ranges.size() != 1) return false;
  }
  if (axis < 0 || ranges.empty()) return false;
  for (const auto& [off, ext] : ranges)
    if (ext <= 0) return false;
  ASSIGN_OR_RETURN(bool copied, LowerSliceAsCopies(b, node, x, axis, ranges));
  if (copied) return true;
  // Blocked layouts need block-aligned channel offsets; otherwise go plain.
  if (!SameLayout(b.values()[x].md, PlanBuilder::Dims(xs)).ok()) return false;
  try {
    for (size_t k = 0; k < ranges.size(); ++k) {
      if (node.outputs[k].empty()) continue;
      auto out = EmitSlice(b, x, axis, ranges[k].first, ranges[k].second, node.outputs[k],
                           absl::StrCat(node.op_type, " '", node.name, "' #", k));
      if (!out.ok()) return false;
      b.Define(node.outputs[k], *out);
    }
  } catch (const dnnl::error& e) {
    // e.g. a channel offset inside a block: use the reference kernel.
    return false;
  }
  return true;
}

absl::StatusOr<bool> LowerResize(PlanBuilder& b, const Node& node) {
  if (!FloatInput(b, node)) return false;
  std::vector<ValueInfo> in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    const std::string& name = node.inputs[i];
    in[i].present = !name.empty();
    if (name.empty()) continue;
    const auto& vi = b.graph().value_info.at(name);
    in[i].type = vi.type;
    in[i].shape = vi.shape;
    auto c = b.graph().constants.find(name);
    if (c != b.graph().constants.end()) in[i].value = &c->second;
  }
  auto spec = ResolveResize(node, in);
  if (!spec.ok()) return spec.status();
  const auto& xs = in[0].shape;
  if (xs.size() < 3 || xs.size() > 5) return false;
  if (spec->out_shape[0] != xs[0] || spec->out_shape[1] != xs[1]) return false;
  if (spec->linear) {
    // oneDNN's linear resampling samples at (o + 0.5) * in / out - 0.5,
    // clamped to the edges: ONNX half_pixel (and pytorch_half_pixel where no
    // output side is 1) when the scale is out / in, which it is when
    // `sizes` was given or the scaled size is whole.
    if (spec->coord != "half_pixel" && spec->coord != "pytorch_half_pixel") return false;
    for (size_t d = 2; d < xs.size(); ++d) {
      if (spec->out_shape[d] <= 1) return false;
      const double exact = static_cast<double>(spec->out_shape[d]) / static_cast<double>(xs[d]);
      if (std::fabs(spec->scales[d] - exact) > 1e-6 * exact) return false;
    }
  } else {
    // oneDNN's nearest resampling equals ONNX nearest for integer upscale
    // factors in asymmetric/floor and half-pixel modes (no rounding ties).
    const bool asym = spec->coord == "asymmetric" && spec->nearest == "floor";
    const bool half =
        (spec->coord == "half_pixel" || spec->coord == "pytorch_half_pixel") &&
        (spec->nearest == "round_prefer_floor" || spec->nearest == "round_prefer_ceil");
    if (!asym && !half) return false;
    for (size_t d = 2; d < xs.size(); ++d) {
      if (spec->out_shape[d] % xs[d] != 0 || spec->out_shape[d] < xs[d]) return false;
      const int64_t factor = spec->out_shape[d] / xs[d];  // exact: divisibility checked above
      if (std::fabs(spec->scales[d] - static_cast<float>(factor)) > 1e-6f) return false;
    }
  }
  const auto algorithm =
      spec->linear ? dnnl::algorithm::resampling_linear : dnnl::algorithm::resampling_nearest;
  ASSIGN_OR_RETURN(int x, b.Value(node.inputs[0]));
  try {
    const memory::desc src_md = b.values()[x].md;
    const memory::desc dst_any(PlanBuilder::Dims(spec->out_shape), DT::f32,
                               memory::format_tag::any);
    dnnl::resampling_forward::desc d(dnnl::prop_kind::forward_inference, algorithm, src_md,
                                     dst_any);
    dnnl::resampling_forward::primitive_desc pd(d, UserScratchpad(), b.engine());
    int out = b.NewValue(node.outputs[0], DataType::kFloat32, spec->out_shape, pd.dst_desc());
    b.AddPrimitive(
        pd, dnnl::resampling_forward(pd), {{DNNL_ARG_SRC, x}, {DNNL_ARG_DST, out}},
        absl::StrCat(node.op_type, " '", node.name, "' ", spec->linear ? "linear" : "nearest", " [",
                     absl::StrJoin(spec->out_shape, ","), "] ", LayoutName(src_md), " -> ",
                     LayoutName(pd.dst_desc())));
    b.Define(node.outputs[0], out);
  } catch (const dnnl::error& e) {
    return false;
  }
  return true;
}

}  // namespace rectifier::engine
