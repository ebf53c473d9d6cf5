// Concat, Slice and Split as Rectifier row-copy steps. In a plain row-major
// layout, along the channels of a channel-blocked layout (aBcd8b,
// aBcd16b, ...) at block-aligned offsets, and along the channels of a
// channels-last one (acdb: a row per pixel), every one of these ops is the
// same thing: the tensor is `outer` rows, an index of the axis is `unit`
// contiguous floats of a row, and the op copies contiguous pieces of rows.
// oneDNN 2.6 runs them with its generic `simple:any` concat and reorder
// (16 ms of a 640x640 YOLOv8n frame on AVX2); the pieces here are memcpys
// split over the OpenMP team.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"

namespace rectifier::engine {
namespace {

// Views need 64-byte aligned starts (oneDNN's preferred alignment; every
// channel block of a blocked layout is a multiple of it).
constexpr size_t kViewAlign = 64;

// Row geometry of `axis` in a value's layout; offsets and extents along the
// axis must be multiples of `align` (the channel block).
struct Rows {
  int64_t outer = 1;  // rows
  int64_t unit = 1;   // floats of a row per index of the axis
  int64_t align = 1;
};

std::optional<Rows> RowsOf(const PlanValue& v, int axis) {
  const auto& s = v.shape;
  if (v.type != DataType::kFloat32 || axis < 0 || axis >= static_cast<int>(s.size())) {
    return std::nullopt;
  }
  Rows r;
  if (v.plain) {
    for (int d = 0; d < axis; ++d) r.outer *= s[d];
    for (size_t d = axis + 1; d < s.size(); ++d) r.unit *= s[d];
    return r;
  }
  const std::string layout = LayoutName(v.md);
  // Channels last (acb, acdb, acdeb: what oneDNN's AVX-512 convolutions
  // pick): one row per pixel, its channels contiguous.
  if (axis == 1 && s.size() >= 3 && s.size() <= 5 &&
      layout == std::string("ac") + std::string("de").substr(0, s.size() - 3) + "b" &&
      v.md.get_size() == static_cast<size_t>(NumElements(s)) * sizeof(float)) {
    r.outer = s[0];
    for (size_t d = 2; d < s.size(); ++d) r.outer *= s[d];
    return r;
  }
  // Channel-blocked (a, B, c, ...) with no padding: channels [c0, c0 + e)
  // of one image, c0 and e multiples of the block, are contiguous.
  for (int64_t block : {8, 16}) {
    const std::string want = std::string("aB") + std::string("cde").substr(0, s.size() - 2) +
                             std::to_string(block) + "b";
    if (s.size() < 3 || s.size() > 5 || layout != want || axis != 1 || s[1] % block != 0) continue;
    if (v.md.get_size() != static_cast<size_t>(NumElements(s)) * sizeof(float)) continue;
    r.outer = s[0];
    for (size_t d = 2; d < s.size(); ++d) r.unit *= s[d];
    r.align = block;
    return r;
  }
  return std::nullopt;
}

// One piece: `len` floats from input `src` at `src_off` of each of its rows
// to output `dst` at `dst_off` of each of its rows.
struct Piece {
  int64_t src, src_off, dst, dst_off, len;
};

absl::Status ComputeRowCopy(const Node& node, const std::vector<View>& in,
                            const std::vector<View>& out) {
  const int64_t outer = node.GetInt("outer", 1);
  const auto in_rows = node.GetInts("in_rows");
  const auto out_rows = node.GetInts("out_rows");
  const auto p = node.GetInts("pieces");  // 5 ints per piece
  const size_t pieces = p.size() / 5;
  // Pieces are cut into chunks of at most 64 KiB so that a single large
  // piece (batch 1) is still shared by the team.
  constexpr int64_t kChunk = 16 * 1024;
  int64_t per_row = 0;
  for (size_t k = 0; k < pieces; ++k) per_row += (p[5 * k + 4] + kChunk - 1) / kChunk;
  const int64_t tasks = outer * per_row;
  const int threads = tasks >= 4 ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t o = t / per_row;
    int64_t c = t % per_row;
    size_t k = 0;
    for (; k < pieces; ++k) {
      const int64_t n = (p[5 * k + 4] + kChunk - 1) / kChunk;
      if (c < n) break;
      c -= n;
    }
    const Piece pc{p[5 * k], p[5 * k + 1], p[5 * k + 2], p[5 * k + 3], p[5 * k + 4]};
    const int64_t begin = c * kChunk;
    const int64_t len = std::min(kChunk, pc.len - begin);
    const float* src = in[pc.src].as<float>() + o * in_rows[pc.src] + pc.src_off + begin;
    float* dst = out[pc.dst].as<float>() + o * out_rows[pc.dst] + pc.dst_off + begin;
    std::memcpy(dst, src, static_cast<size_t>(len) * sizeof(float));
  }
  return absl::OkStatus();
}

void AddRowCopy(PlanBuilder& b, const std::string& name, int64_t outer, const std::vector<int>& ins,
                const std::vector<int>& outs, const std::vector<Piece>& pieces,
                const std::string& label) {
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node.op_type = "RowCopy";
  step.node.name = name;
  std::vector<int64_t> in_rows, out_rows, p;
  for (int v : ins) in_rows.push_back(NumElements(b.values()[v].shape) / outer);
  for (int v : outs) out_rows.push_back(NumElements(b.values()[v].shape) / outer);
  for (const Piece& pc : pieces)
    p.insert(p.end(), {pc.src, pc.src_off, pc.dst, pc.dst_off, pc.len});
  step.node.attrs["outer"].i = outer;
  step.node.attrs["in_rows"] = Attribute::OfInts(std::move(in_rows));
  step.node.attrs["out_rows"] = Attribute::OfInts(std::move(out_rows));
  step.node.attrs["pieces"] = Attribute::OfInts(std::move(p));
  step.compute = ComputeRowCopy;
  step.inputs = ins;
  step.outputs = outs;
  step.reads = ins;
  step.writes = outs;
  step.label = absl::StrCat(label, "  [rectifier:copy]");
  b.plan().steps.push_back(std::move(step));
}

// One Slice/Split output: its index among the node's outputs, shape and
// layout (the source's layout family).
struct SliceOutput {
  size_t k;
  std::vector<int64_t> shape;
  dnnl::memory::desc md;
};

// The outputs `node` names (unnamed ones are skipped); nullopt when one has
// no layout in the source's family.
std::optional<std::vector<SliceOutput>> SliceOutputs(
    const PlanValue& src, const Node& node, int axis,
    const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  std::vector<SliceOutput> outs;
  for (size_t k = 0; k < ranges.size(); ++k) {
    if (node.outputs[k].empty()) continue;
    std::vector<int64_t> shape = src.shape;
    shape[axis] = ranges[k].second;
    auto md = SameLayout(src.md, PlanBuilder::Dims(shape));
    if (!md.ok()) return std::nullopt;
    outs.push_back({k, std::move(shape), *md});
  }
  return outs;
}

// Slice/Split of one row (outer == 1): each range of `axis` is contiguous
// bytes of `x`, so each output is a view of them. False (nothing defined)
// when a range would start off the view alignment.
bool SliceAsViews(PlanBuilder& b, const Node& node, int x, int axis, const Rows& rows,
                  const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  const PlanValue src = b.values()[x];
  const size_t base = b.plan().ByteOffset(x);
  auto at = [&](int64_t off) { return static_cast<size_t>(off * rows.unit) * sizeof(float); };
  const auto outs = SliceOutputs(src, node, axis, ranges);
  if (!outs.has_value() || outs->empty()) return false;
  for (const SliceOutput& out : *outs)
    if ((base + at(ranges[out.k].first)) % kViewAlign != 0) return false;
  std::vector<std::string> parts;
  for (const SliceOutput& out : *outs) {
    const int view = b.NewValue(node.outputs[out.k], DataType::kFloat32, out.shape, out.md);
    b.values()[view].alias_of = x;
    b.values()[view].alias_offset = at(ranges[out.k].first);
    b.Define(node.outputs[out.k], view);
    parts.push_back(absl::StrCat("#", out.k, " [", absl::StrJoin(out.shape, ","), "] at ",
                                 ranges[out.k].first));
  }
  b.plan().views.push_back(absl::StrCat(node.op_type, " '", node.name, "' ",
                                        absl::StrJoin(parts, " "), " ", LayoutName(src.md),
                                        ": views of '", src.name, "'"));
  return true;
}

// True when every input has row geometry along `axis` in one layout with the
// same rows and unit (so that the concat is a row copy).
bool ConcatRows(PlanBuilder& b, const std::vector<int>& ins, int axis) {
  const PlanValue& first = b.values()[ins[0]];
  const auto rows = RowsOf(first, axis);
  if (!rows) return false;
  const std::string layout = LayoutName(first.md);
  for (int v : ins) {
    const auto r = RowsOf(b.values()[v], axis);
    if (!r || r->outer != rows->outer || r->unit != rows->unit ||
        LayoutName(b.values()[v].md) != layout) {
      return false;
    }
  }
  return true;
}

// Concat in place: the output is one row (outer == 1), so input i is bytes
// [k_i, k_i + size_i) of it, and each input's buffer (its root value) can
// move there: its producer then writes straight into the output. A root
// moves whole, so it must be exactly the bytes its inputs bring: one input
// that is its whole buffer, or consecutive inputs that are consecutive views
// of one buffer (C2f's halves of a Split, concatenated back in order).
// Buffers outside the arena (graph inputs, constants) are copied. True when
// every input moved; nothing changes otherwise.
bool ConcatInPlace(PlanBuilder& b, const std::vector<int>& ins, const std::vector<Piece>& pieces,
                   int out) {
  CompiledPlan& p = b.plan();
  struct Span {
    size_t end = 0;     // bytes of the root covered so far
    int64_t delta = 0;  // offset in the output minus offset in the root
  };
  std::map<int, Span> roots;
  for (size_t i = 0; i < ins.size(); ++i) {
    const int v = ins[i];
    const int r = p.Root(v);
    if (r == out || p.values[r].storage != PlanValue::Storage::kArena) return false;
    const size_t begin = p.ByteOffset(v);
    const size_t size = p.values[v].md.get_size();
    const int64_t delta =
        pieces[i].dst_off * static_cast<int64_t>(sizeof(float)) - static_cast<int64_t>(begin);
    if (delta < 0 || delta % kViewAlign != 0) return false;
    auto [it, fresh] = roots.try_emplace(r, Span{0, delta});
    if (it->second.delta != delta || it->second.end != begin) return false;
    it->second.end = begin + size;
  }
  for (const auto& [r, span] : roots)
    if (span.end != p.values[r].md.get_size() || p.values[r].alias_of >= 0) return false;
  for (const auto& [r, span] : roots) {
    p.values[r].alias_of = out;
    p.values[r].alias_offset = static_cast<size_t>(span.delta);
  }
  return true;
}

}  // namespace

absl::StatusOr<bool> LowerConcatAsCopies(PlanBuilder& b, const Node& node,
                                         const std::vector<int>& srcs, int axis) {
  if (!b.rectifier_kernels() || srcs.empty()) return false;
  std::vector<int> ins = srcs;
  if (!ConcatRows(b, ins, axis)) {
    // Mixed layouts or a channel count inside a block (padded blocked
    // layouts): concatenate plain copies, which is what oneDNN's ref:any
    // concat would read and write element by element.
    for (int& v : ins) {
      if (b.values()[v].type != DataType::kFloat32) return false;
      ASSIGN_OR_RETURN(v, b.Plain(v));
    }
    if (!ConcatRows(b, ins, axis)) return false;
  }
  const PlanValue& first = b.values()[ins[0]];
  const auto rows = RowsOf(first, axis);
  const std::string layout = LayoutName(first.md);
  std::vector<Piece> pieces;
  int64_t off = 0;
  for (size_t i = 0; i < ins.size(); ++i) {
    const PlanValue& v = b.values()[ins[i]];
    const int64_t len = v.shape[axis] * rows->unit;
    pieces.push_back({static_cast<int64_t>(i), 0, 0, off, len});
    off += len;
  }
  const auto& out_shape = b.graph().value_info.at(node.outputs[0]).shape;
  auto md = SameLayout(first.md, PlanBuilder::Dims(out_shape));
  if (!md.ok()) return false;
  const int out = b.NewValue(node.outputs[0], DataType::kFloat32, out_shape, *md);
  const std::string label = absl::StrCat(
      "Concat '", node.name, "' [", absl::StrJoin(out_shape, ","), "] ", ins.size(), " x ", layout);
  if (b.zero_copy() && rows->outer == 1 && ConcatInPlace(b, ins, pieces, out)) {
    b.plan().views.push_back(
        absl::StrCat(label, ": in place, each input's producer writes its part"));
  } else {
    AddRowCopy(b, node.outputs[0], rows->outer, ins, {out}, pieces, label);
  }
  b.Define(node.outputs[0], out);
  return true;
}

absl::StatusOr<bool> LowerSliceAsCopies(PlanBuilder& b, const Node& node, int x, int axis,
                                        const std::vector<std::pair<int64_t, int64_t>>& ranges) {
  if (!b.rectifier_kernels()) return false;
  auto aligned = [&](int v) {
    const auto rows = RowsOf(b.values()[v], axis);
    if (!rows) return false;
    for (const auto& [off, ext] : ranges)
      if (off % rows->align != 0 || ext % rows->align != 0) return false;
    return true;
  };
  if (!aligned(x)) {
    // A padded blocked layout or a range inside a channel block: slice a
    // plain copy.
    ASSIGN_OR_RETURN(x, b.Plain(x));
    if (!aligned(x)) return false;
  }
  const PlanValue src = b.values()[x];
  const auto rows = RowsOf(src, axis);
  if (b.zero_copy() && rows->outer == 1 &&
      b.values()[b.plan().Root(x)].storage == PlanValue::Storage::kArena) {
    if (SliceAsViews(b, node, x, axis, *rows, ranges)) return true;
  }
  const auto slices = SliceOutputs(src, node, axis, ranges);
  if (!slices.has_value()) return false;
  std::vector<Piece> pieces;
  std::vector<int> outs;
  std::vector<std::string> parts;
  for (const SliceOutput& slice : *slices) {
    const auto [off, ext] = ranges[slice.k];
    const int out = b.NewValue(node.outputs[slice.k], DataType::kFloat32, slice.shape, slice.md);
    pieces.push_back({0, off * rows->unit, static_cast<int64_t>(outs.size()), 0, ext * rows->unit});
    outs.push_back(out);
    parts.push_back(absl::StrCat("#", slice.k, " [", absl::StrJoin(slice.shape, ","), "]"));
  }
  if (outs.empty()) return false;
  AddRowCopy(b, node.outputs[0], rows->outer, {x}, outs, pieces,
             absl::StrCat(node.op_type, " '", node.name, "' ", absl::StrJoin(parts, " "), " ",
                          LayoutName(src.md)));
  for (size_t k = 0, o = 0; k < ranges.size(); ++k) {
    if (!node.outputs[k].empty()) b.Define(node.outputs[k], outs[o++]);
  }
  return true;
}

}  // namespace rectifier::engine
