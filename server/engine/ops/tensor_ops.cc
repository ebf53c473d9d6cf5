// Reference kernels and shape inference for data-movement and shape ops:
// Shape, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Concat, Split,
// Slice, Gather, Expand, Tile, Pad, ConstantOfShape, Range, Dropout.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/kernel_util.h"

namespace rectifier::engine {
namespace {

absl::Status Invalid(const Node& n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": ", what));
}

// Copies out[idx] = src[base + sum(idx * strides)] element-wise (bytes).
void StridedGather(const std::vector<int64_t>& out_shape, int64_t base,
                   const std::vector<int64_t>& strides, size_t es, const char* src, char* dst) {
  ForEachRow(out_shape, {strides},
             [&](int64_t count, int64_t out_off, const std::vector<int64_t>& offs,
                 const std::vector<int64_t>& inner) {
               const char* s = src + (base + offs[0]) * static_cast<int64_t>(es);
               char* d = dst + out_off * static_cast<int64_t>(es);
               if (inner[0] == 1) {
                 CopyBytes(d, s, count * es);
               } else {
                 for (int64_t i = 0; i < count; ++i)
                   CopyBytes(d + i * es, s + i * inner[0] * static_cast<int64_t>(es), es);
               }
             });
}

absl::Status CopyInput(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  CopyBytes(out[0].data, in[0].data, out[0].size() * DataTypeSize(out[0].type));
  return absl::OkStatus();
}

// ---- Shape / Size ---------------------------------------------------------------

absl::Status InferShape(const Node& n, const std::vector<ValueInfo>& in,
                        std::vector<ValueInfo>& out) {
  const int64_t rank = static_cast<int64_t>(in[0].shape.size());
  int64_t start = n.GetInt("start", 0), end = n.GetInt("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, 0, rank);
  out[0].type = DataType::kInt64;
  out[0].shape = {std::max<int64_t>(0, end - start)};
  return absl::OkStatus();
}

absl::Status ComputeShape(const Node& n, const std::vector<View>& in,
                          const std::vector<View>& out) {
  const int64_t rank = static_cast<int64_t>(in[0].shape.size());
  int64_t start = n.GetInt("start", 0);
  if (start < 0) start += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  for (int64_t i = 0; i < out[0].size(); ++i) out[0].as<int64_t>()[i] = in[0].shape[start + i];
  return absl::OkStatus();
}

absl::Status InferSize(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  out[0].type = DataType::kInt64;
  out[0].shape = {};
  return absl::OkStatus();
}

absl::Status ComputeSize(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  *out[0].as<int64_t>() = in[0].size();
  return absl::OkStatus();
}

// ---- Reshape family (outputs alias inputs at run time) --------------------------

absl::Status InferReshape(const Node& n, const std::vector<ValueInfo>& in,
                          std::vector<ValueInfo>& out) {
  std::vector<int64_t> target;
  if (n.opset < 5) {
    target = n.GetInts("shape");
  } else {
    ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
    if (!t) return Invalid(n, "missing shape input");
    target = ReadInts(*t);
  }
  const bool allow_zero = n.GetInt("allowzero", 0) != 0;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allow_zero) {
      if (i >= in[0].shape.size()) return Invalid(n, "shape 0 refers past the input rank");
      target[i] = in[0].shape[i];
    }
    if (target[i] == -1) {
      if (infer >= 0) return Invalid(n, "more than one -1 in shape");
      infer = static_cast<int>(i);
    } else if (target[i] < 0) {
      return Invalid(n, "negative dimension in shape");
    } else if (__builtin_mul_overflow(known, target[i], &known)) {
      return Invalid(n, "shape overflows");
    }
  }
  const int64_t total = NumElements(in[0].shape);
  if (infer >= 0) {
    if (known == 0 || total % known != 0) return Invalid(n, "cannot infer -1 dimension");
    target[infer] = total / known;
  } else if (known != total) {
    return Invalid(n, absl::StrCat("cannot reshape ", total, " elements to ", known));
  }
  out[0].type = in[0].type;
  out[0].shape = target;
  return absl::OkStatus();
}

absl::Status InferFlatten(const Node& n, const std::vector<ValueInfo>& in,
                          std::vector<ValueInfo>& out) {
  const auto& s = in[0].shape;
  int64_t axis = n.GetInt("axis", 1);
  if (axis < 0) axis += static_cast<int64_t>(s.size());
  if (axis < 0 || axis > static_cast<int64_t>(s.size())) return Invalid(n, "axis out of range");
  // Each side's product, checked: a 0 anywhere makes it 0 (an empty tensor
  // may list huge dimensions), and a product beyond int64 is refused.
  auto product = [&](int64_t from, int64_t to) -> std::optional<int64_t> {
    for (int64_t i = from; i < to; ++i)
      if (s[i] == 0) return 0;
    int64_t p = 1;
    for (int64_t i = from; i < to; ++i)
      if (s[i] < 0 || __builtin_mul_overflow(p, s[i], &p)) return std::nullopt;
    return p;
  };
  const std::optional<int64_t> a = product(0, axis);
  const std::optional<int64_t> b = product(axis, static_cast<int64_t>(s.size()));
  if (!a || !b) return Invalid(n, "flattened dimensions overflow int64");
  out[0].type = in[0].type;
  out[0].shape = {*a, *b};
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> AxesOf(const Node& n, const std::vector<ValueInfo>& in) {
  if (n.opset < 13) return n.GetInts("axes");
  ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
  if (!t) return std::vector<int64_t>{};
  return ReadInts(*t);
}

absl::Status InferSqueeze(const Node& n, const std::vector<ValueInfo>& in,
                          std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(auto axes, AxesOf(n, in));
  const auto& s = in[0].shape;
  std::vector<bool> drop(s.size(), false);
  if (axes.empty()) {
    for (size_t i = 0; i < s.size(); ++i) drop[i] = s[i] == 1;
  } else {
    for (int64_t a : axes) {
      ASSIGN_OR_RETURN(int ax, NormalizeAxis(a, s.size(), n));
      if (s[ax] != 1)
        return Invalid(n, absl::StrCat("cannot squeeze dim ", ax, " of size ", s[ax]));
      drop[ax] = true;
    }
  }
  out[0].type = in[0].type;
  out[0].shape.clear();
  for (size_t i = 0; i < s.size(); ++i)
    if (!drop[i]) out[0].shape.push_back(s[i]);
  return absl::OkStatus();
}

absl::Status InferUnsqueeze(const Node& n, const std::vector<ValueInfo>& in,
                            std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(auto axes, AxesOf(n, in));
  const size_t rank = in[0].shape.size() + axes.size();
  std::vector<bool> ins(rank, false);
  for (int64_t a : axes) {
    ASSIGN_OR_RETURN(int ax, NormalizeAxis(a, rank, n));
    if (ins[ax]) return Invalid(n, "duplicate axis");
    ins[ax] = true;
  }
  out[0].type = in[0].type;
  out[0].shape.clear();
  size_t j = 0;
  for (size_t i = 0; i < rank; ++i) out[0].shape.push_back(ins[i] ? 1 : in[0].shape[j++]);
  return absl::OkStatus();
}

// ---- Transpose --------------------------------------------------------------------

std::vector<int64_t> PermOf(const Node& n, size_t rank) {
  std::vector<int64_t> perm = n.GetInts("perm");
  if (perm.empty()) {
    for (size_t i = 0; i < rank; ++i) perm.push_back(static_cast<int64_t>(rank - 1 - i));
  }
  return perm;
}

absl::Status InferTranspose(const Node& n, const std::vector<ValueInfo>& in,
                            std::vector<ValueInfo>& out) {
  const auto& s = in[0].shape;
  auto perm = PermOf(n, s.size());
  if (perm.size() != s.size()) return Invalid(n, "perm length differs from rank");
  std::vector<bool> seen(s.size(), false);
  out[0].shape.clear();
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(s.size()) || seen[p]) return Invalid(n, "bad perm");
    seen[p] = true;
    out[0].shape.push_back(s[p]);
  }
  out[0].type = in[0].type;
  return absl::OkStatus();
}

absl::Status ComputeTranspose(const Node& n, const std::vector<View>& in,
                              const std::vector<View>& out) {
  auto perm = PermOf(n, in[0].shape.size());
  auto cs = ContiguousStrides(in[0].shape);
  std::vector<int64_t> strides;
  strides.reserve(perm.size());
  for (int64_t p : perm) strides.push_back(cs[p]);
  StridedGather(out[0].shape, 0, strides, DataTypeSize(in[0].type), in[0].as<char>(),
                out[0].as<char>());
  return absl::OkStatus();
}

// ---- Concat / Split ---------------------------------------------------------------

absl::Status InferConcat(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  if (in.empty()) return Invalid(n, "no inputs");
  const auto& s0 = in[0].shape;
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(n.GetInt("axis", 1), s0.size(), n));
  std::vector<int64_t> s = s0;
  s[axis] = 0;
  for (const auto& v : in) {
    if (v.shape.size() != s0.size()) return Invalid(n, "inputs differ in rank");
    for (size_t d = 0; d < s0.size(); ++d) {
      if (static_cast<int>(d) != axis && v.shape[d] != s0[d])
        return Invalid(n, absl::StrCat("inputs differ in dim ", d));
    }
    if (v.type != in[0].type) return Invalid(n, "inputs differ in type");
    s[axis] += v.shape[axis];
  }
  out[0].type = in[0].type;
  out[0].shape = s;
  return absl::OkStatus();
}

// Concat and Split copy along `axis` as `outer` rows of (extent x `inner`)
// elements: the element counts before and after the axis.
std::pair<int64_t, int64_t> RowsAround(const std::vector<int64_t>& s, int axis) {
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  return {outer, inner};
}

absl::Status ComputeConcat(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  const auto& s = out[0].shape;
  int axis = static_cast<int>(n.GetInt("axis", 1));
  if (axis < 0) axis += static_cast<int>(s.size());
  const size_t es = DataTypeSize(out[0].type);
  const auto [outer, inner] = RowsAround(s, axis);
  const int64_t out_row = s[axis] * inner * static_cast<int64_t>(es);
  int64_t col = 0;
  for (const auto& v : in) {
    const int64_t row = v.shape[axis] * inner * static_cast<int64_t>(es);
    for (int64_t o = 0; o < outer; ++o) {
      CopyBytes(out[0].as<char>() + o * out_row + col, v.as<char>() + o * row, row);
    }
    col += row;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> SplitSizes(const Node& n, const std::vector<ValueInfo>& in,
                                                size_t outputs) {
  const auto& s = in[0].shape;
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(n.GetInt("axis", 0), s.size(), n));
  std::vector<int64_t> split;
  if (n.opset < 13) {
    split = n.GetInts("split");
  } else {
    ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
    if (t) split = ReadInts(*t);
  }
  if (split.empty()) {
    int64_t parts = n.GetInt("num_outputs", static_cast<int64_t>(outputs));
    if (parts <= 0) return Invalid(n, "no outputs");
    int64_t chunk = (s[axis] + parts - 1) / parts;
    int64_t left = s[axis];
    for (int64_t i = 0; i < parts; ++i) {
      split.push_back(std::min(chunk, left));
      left -= split.back();
    }
  }
  int64_t total = 0;
  for (int64_t v : split) total += v;
  if (total != s[axis] || split.size() != outputs)
    return Invalid(n, "split sizes do not match the input");
  return split;
}

absl::Status InferSplit(const Node& n, const std::vector<ValueInfo>& in,
                        std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(auto split, SplitSizes(n, in, out.size()));
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(n.GetInt("axis", 0), in[0].shape.size(), n));
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].type = in[0].type;
    out[i].shape = in[0].shape;
    out[i].shape[axis] = split[i];
  }
  return absl::OkStatus();
}

absl::Status ComputeSplit(const Node& n, const std::vector<View>& in,
                          const std::vector<View>& out) {
  const auto& s = in[0].shape;
  int axis = static_cast<int>(n.GetInt("axis", 0));
  if (axis < 0) axis += static_cast<int>(s.size());
  const size_t es = DataTypeSize(in[0].type);
  const auto [outer, inner] = RowsAround(s, axis);
  const int64_t in_row = s[axis] * inner * static_cast<int64_t>(es);
  int64_t col = 0;
  for (const auto& v : out) {
    if (!v.data) continue;
    const int64_t row = v.shape[axis] * inner * static_cast<int64_t>(es);
    for (int64_t o = 0; o < outer; ++o)
      CopyBytes(v.as<char>() + o * row, in[0].as<char>() + o * in_row + col, row);
    col += row;
  }
  return absl::OkStatus();
}

// ---- Slice ----------------------------------------------------------------------------

struct SliceSpec {
  std::vector<int64_t> start, step, count;
};

absl::StatusOr<SliceSpec> ResolveSlice(const Node& n, const std::vector<ValueInfo>& in) {
  const auto& s = in[0].shape;
  std::vector<int64_t> starts, ends, axes, steps;
  if (n.opset < 10) {
    starts = n.GetInts("starts");
    ends = n.GetInts("ends");
    axes = n.GetInts("axes");
  } else {
    ASSIGN_OR_RETURN(const Tensor* ts, ConstInput(n, in, 1));
    ASSIGN_OR_RETURN(const Tensor* te, ConstInput(n, in, 2));
    ASSIGN_OR_RETURN(const Tensor* ta, ConstInput(n, in, 3));
    ASSIGN_OR_RETURN(const Tensor* tp, ConstInput(n, in, 4));
    if (!ts || !te) return Invalid(n, "missing starts/ends");
    starts = ReadInts(*ts);
    ends = ReadInts(*te);
    if (ta) axes = ReadInts(*ta);
    if (tp) steps = ReadInts(*tp);
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return Invalid(n, "starts/ends/axes/steps lengths differ");
  SliceSpec spec;
  spec.start.assign(s.size(), 0);
  spec.step.assign(s.size(), 1);
  spec.count = s;
  for (size_t i = 0; i < starts.size(); ++i) {
    ASSIGN_OR_RETURN(int ax, NormalizeAxis(axes[i], s.size(), n));
    const int64_t dim = s[ax];
    if (steps[i] == 0) return Invalid(n, "step 0");
    // Steps beyond any dimension behave alike; clamping keeps the math in range.
    const int64_t step = std::clamp<int64_t>(steps[i], -(int64_t{1} << 40), int64_t{1} << 40);
    int64_t b = starts[i], e = ends[i];
    if (b < 0) b += dim;
    if (e < 0 && e > std::numeric_limits<int64_t>::min() / 2) e += dim;
    if (step > 0) {
      b = std::clamp<int64_t>(b, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      spec.count[ax] = e > b ? (e - b + step - 1) / step : 0;
    } else {
      b = std::clamp<int64_t>(b, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      spec.count[ax] = b > e ? (b - e + (-step) - 1) / (-step) : 0;
    }
    spec.start[ax] = b;
    spec.step[ax] = step;
  }
  return spec;
}

absl::Status InferSlice(const Node& n, const std::vector<ValueInfo>& in,
                        std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(SliceSpec spec, ResolveSlice(n, in));
  out[0].type = in[0].type;
  out[0].shape = spec.count;
  return absl::OkStatus();
}

absl::Status ComputeSliceWith(const SliceSpec& spec, const View& x, const View& y) {
  auto cs = ContiguousStrides(x.shape);
  int64_t base = 0;
  std::vector<int64_t> strides(x.shape.size());
  for (size_t d = 0; d < x.shape.size(); ++d) {
    base += spec.start[d] * cs[d];
    strides[d] = spec.step[d] * cs[d];
  }
  StridedGather(y.shape, base, strides, DataTypeSize(x.type), x.as<char>(), y.as<char>());
  return absl::OkStatus();
}

// Wraps views as constant ValueInfos (owning copies of the small index
// inputs) so Compute can reuse the inference-time resolution.
struct ViewInfos {
  std::vector<Tensor> storage;
  std::vector<ValueInfo> infos;
  explicit ViewInfos(const std::vector<View>& in) {
    storage.resize(in.size());
    infos.resize(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
      infos[i].present = in[i].data != nullptr;
      infos[i].type = in[i].type;
      infos[i].shape = in[i].shape;
      if (i > 0 && in[i].data) {
        storage[i] = Tensor::Zeros(in[i].type, in[i].shape);
        CopyBytes(storage[i].bytes.data(), in[i].data, storage[i].bytes.size());
        infos[i].value = &storage[i];
      }
    }
  }
};

absl::Status ComputeSlice(const Node& n, const std::vector<View>& in,
                          const std::vector<View>& out) {
  ViewInfos vi(in);
  ASSIGN_OR_RETURN(SliceSpec spec, ResolveSlice(n, vi.infos));
  return ComputeSliceWith(spec, in[0], out[0]);
}

absl::Status ComputeSplitOp(const Node& n, const std::vector<View>& in,
                            const std::vector<View>& out) {
  return ComputeSplit(n, in, out);
}

// ---- Gather -----------------------------------------------------------------------------

absl::Status InferGather(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  const auto& s = in[0].shape;
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(n.GetInt("axis", 0), s.size(), n));
  if (in[1].type != DataType::kInt64 && in[1].type != DataType::kInt32)
    return Invalid(n, "indices must be int32/int64");
  out[0].type = in[0].type;
  out[0].shape.assign(s.begin(), s.begin() + axis);
  out[0].shape.insert(out[0].shape.end(), in[1].shape.begin(), in[1].shape.end());
  out[0].shape.insert(out[0].shape.end(), s.begin() + axis + 1, s.end());
  return absl::OkStatus();
}

absl::Status ComputeGather(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  const auto& s = in[0].shape;
  int axis = static_cast<int>(n.GetInt("axis", 0));
  if (axis < 0) axis += static_cast<int>(s.size());
  const size_t es = DataTypeSize(in[0].type);
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  const int64_t nidx = in[1].size();
  const int64_t block = inner * static_cast<int64_t>(es);
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < nidx; ++j) {
      int64_t k = in[1].type == DataType::kInt64 ? in[1].as<int64_t>()[j] : in[1].as<int32_t>()[j];
      if (k < 0) k += s[axis];
      if (k < 0 || k >= s[axis]) return Invalid(n, absl::StrCat("index ", k, " out of range"));
      CopyBytes(out[0].as<char>() + (o * nidx + j) * block,
                in[0].as<char>() + (o * s[axis] + k) * block, block);
    }
  }
  return absl::OkStatus();
}

// ---- Expand / Tile ------------------------------------------------------------------------

absl::Status InferExpand(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
  if (!t) return Invalid(n, "missing shape");
  ASSIGN_OR_RETURN(out[0].shape, BroadcastShapes(in[0].shape, ReadInts(*t), n));
  out[0].type = in[0].type;
  return absl::OkStatus();
}

absl::Status ComputeExpand(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  StridedGather(out[0].shape, 0, BroadcastStrides(in[0].shape, out[0].shape),
                DataTypeSize(in[0].type), in[0].as<char>(), out[0].as<char>());
  return absl::OkStatus();
}

absl::Status InferTile(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
  if (!t) return Invalid(n, "missing repeats");
  auto reps = ReadInts(*t);
  if (reps.size() != in[0].shape.size()) return Invalid(n, "repeats length differs from rank");
  out[0].type = in[0].type;
  out[0].shape = in[0].shape;
  for (size_t i = 0; i < reps.size(); ++i) {
    if (reps[i] < 0 || __builtin_mul_overflow(out[0].shape[i], reps[i], &out[0].shape[i]))
      return Invalid(n, "bad repeats");
  }
  return absl::OkStatus();
}

absl::Status ComputeTile(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  const auto& os = out[0].shape;
  const auto& is = in[0].shape;
  auto ics = ContiguousStrides(is);
  const size_t es = DataTypeSize(in[0].type);
  std::vector<int64_t> idx(os.size(), 0);
  for (int64_t i = 0; i < out[0].size(); ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < os.size(); ++d) off += (idx[d] % is[d]) * ics[d];
    CopyBytes(out[0].as<char>() + i * es, in[0].as<char>() + off * es, es);
    for (int d = static_cast<int>(os.size()) - 1; d >= 0; --d) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
  return absl::OkStatus();
}

// ---- Pad (constant mode) ------------------------------------------------------------------

struct PadSpec {
  std::vector<int64_t> begin, end;
  double value = 0;
  std::string mode = "constant";
};

absl::StatusOr<PadSpec> ResolvePad(const Node& n, const std::vector<ValueInfo>& in) {
  const std::string mode = n.GetString("mode", "constant");
  if (mode != "constant" && mode != "edge" && mode != "reflect") {
    return absl::UnimplementedError(
        absl::StrCat("Pad mode '", mode, "' is not supported (node '", n.name, "')"));
  }
  const size_t rank = in[0].shape.size();
  std::vector<int64_t> pads;
  PadSpec spec;
  spec.mode = mode;
  if (n.opset < 11) {
    pads = n.GetInts(n.opset < 2 ? "paddings" : "pads");
    spec.value = n.GetFloat("value", 0.0f);
  } else {
    ASSIGN_OR_RETURN(const Tensor* tp, ConstInput(n, in, 1));
    ASSIGN_OR_RETURN(const Tensor* tv, ConstInput(n, in, 2));
    ASSIGN_OR_RETURN(const Tensor* ta, ConstInput(n, in, 3));
    if (!tp) return Invalid(n, "missing pads");
    pads = ReadInts(*tp);
    if (tv && tv->num_elements() > 0) spec.value = ReadFloats(*tv)[0];
    if (ta) {
      auto axes = ReadInts(*ta);
      std::vector<int64_t> full(2 * rank, 0);
      if (pads.size() != 2 * axes.size()) return Invalid(n, "pads length differs from axes");
      for (size_t i = 0; i < axes.size(); ++i) {
        ASSIGN_OR_RETURN(int ax, NormalizeAxis(axes[i], rank, n));
        full[ax] = pads[i];
        full[ax + rank] = pads[i + axes.size()];
      }
      pads = full;
    }
  }
  if (pads.size() != 2 * rank) return Invalid(n, "pads length must be 2 * rank");
  spec.begin.assign(pads.begin(), pads.begin() + rank);
  spec.end.assign(pads.begin() + rank, pads.end());
  return spec;
}

absl::Status InferPad(const Node& n, const std::vector<ValueInfo>& in,
                      std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(PadSpec spec, ResolvePad(n, in));
  out[0].type = in[0].type;
  out[0].shape = in[0].shape;
  for (size_t d = 0; d < out[0].shape.size(); ++d) {
    constexpr int64_t kMaxPad = int64_t{1} << 40;
    if (spec.begin[d] < -kMaxPad || spec.begin[d] > kMaxPad || spec.end[d] < -kMaxPad ||
        spec.end[d] > kMaxPad)
      return Invalid(n, "pads out of range");
    out[0].shape[d] += spec.begin[d] + spec.end[d];
    if (out[0].shape[d] < 0) return Invalid(n, "negative padded size");
  }
  return absl::OkStatus();
}

template <typename T>
void PadLoop(const PadSpec& spec, const View& x, const View& y) {
  const auto& os = y.shape;
  auto ics = ContiguousStrides(x.shape);
  std::vector<int64_t> idx(os.size(), 0);
  const T fill = static_cast<T>(spec.value);
  for (int64_t i = 0; i < y.size(); ++i) {
    int64_t off = 0;
    bool inside = true;
    for (size_t d = 0; d < os.size(); ++d) {
      int64_t s = idx[d] - spec.begin[d];
      const int64_t dim = x.shape[d];
      if (s < 0 || s >= dim) {
        if (spec.mode == "constant" || dim == 0) {
          inside = false;
          break;
        }
        if (spec.mode == "edge" || dim == 1) {
          s = std::clamp<int64_t>(s, 0, dim - 1);
        } else {  // reflect (mirror without repeating the edge)
          const int64_t period = 2 * (dim - 1);
          s = ((s % period) + period) % period;
          if (s >= dim) s = period - s;
        }
      }
      off += s * ics[d];
    }
    y.as<T>()[i] = inside ? x.as<T>()[off] : fill;
    for (int d = static_cast<int>(os.size()) - 1; d >= 0; --d) {
      if (++idx[d] < os[d]) break;
      idx[d] = 0;
    }
  }
}

absl::Status ComputePad(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  ViewInfos vi(in);
  ASSIGN_OR_RETURN(PadSpec spec, ResolvePad(n, vi.infos));
  switch (in[0].type) {
    case DataType::kFloat32:
      PadLoop<float>(spec, in[0], out[0]);
      break;
    case DataType::kFloat64:
      PadLoop<double>(spec, in[0], out[0]);
      break;
    case DataType::kInt64:
      PadLoop<int64_t>(spec, in[0], out[0]);
      break;
    case DataType::kInt32:
      PadLoop<int32_t>(spec, in[0], out[0]);
      break;
    case DataType::kInt8:
      PadLoop<int8_t>(spec, in[0], out[0]);
      break;
    default:
      PadLoop<uint8_t>(spec, in[0], out[0]);
      break;
  }
  return absl::OkStatus();
}

// ---- ConstantOfShape / Range --------------------------------------------------------------

absl::Status InferConstantOfShape(const Node& n, const std::vector<ValueInfo>& in,
                                  std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 0));
  if (!t) return Invalid(n, "missing shape");
  out[0].shape = ReadInts(*t);
  out[0].type = n.HasAttr("value") ? n.attrs.at("value").t.type : DataType::kFloat32;
  return absl::OkStatus();
}

absl::Status ComputeConstantOfShape(const Node& n, const std::vector<View>& in,
                                    const std::vector<View>& out) {
  const size_t es = DataTypeSize(out[0].type);
  std::vector<char> value(es, 0);
  if (n.HasAttr("value") && !n.attrs.at("value").t.bytes.empty())
    CopyBytes(value.data(), n.attrs.at("value").t.bytes.data(), es);
  for (int64_t i = 0; i < out[0].size(); ++i)
    CopyBytes(out[0].as<char>() + i * es, value.data(), es);
  return absl::OkStatus();
}

absl::Status InferRange(const Node& n, const std::vector<ValueInfo>& in,
                        std::vector<ValueInfo>& out) {
  for (int i = 0; i < 3; ++i) {
    ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, i));
    if (!t) return Invalid(n, "missing input");
  }
  double start = ReadFloats(*in[0].value)[0], limit = ReadFloats(*in[1].value)[0],
         delta = ReadFloats(*in[2].value)[0];
  if (in[0].type != DataType::kFloat32) {
    start = static_cast<double>(ReadInts(*in[0].value)[0]);
    limit = static_cast<double>(ReadInts(*in[1].value)[0]);
    delta = static_cast<double>(ReadInts(*in[2].value)[0]);
  }
  if (delta == 0 || !std::isfinite(start) || !std::isfinite(limit) || !std::isfinite(delta) ||
      std::fabs((limit - start) / delta) > 1e15)
    return Invalid(n, "bad range");
  out[0].type = in[0].type;
  out[0].shape = {std::max<int64_t>(0, static_cast<int64_t>(std::ceil((limit - start) / delta)))};
  return absl::OkStatus();
}

absl::Status ComputeRange(const Node& n, const std::vector<View>& in,
                          const std::vector<View>& out) {
  for (int64_t i = 0; i < out[0].size(); ++i) {
    switch (out[0].type) {
      case DataType::kFloat32:
        out[0].as<float>()[i] = in[0].as<float>()[0] + static_cast<float>(i) * in[2].as<float>()[0];
        break;
      case DataType::kInt64:
        out[0].as<int64_t>()[i] = in[0].as<int64_t>()[0] + i * in[2].as<int64_t>()[0];
        break;
      case DataType::kInt32:
        out[0].as<int32_t>()[i] =
            static_cast<int32_t>(in[0].as<int32_t>()[0] + i * in[2].as<int32_t>()[0]);
        break;
      case DataType::kFloat64:
        out[0].as<double>()[i] =
            in[0].as<double>()[0] + static_cast<double>(i) * in[2].as<double>()[0];
        break;
      default:
        return Invalid(n, "unsupported type");
    }
  }
  return absl::OkStatus();
}

// ---- Dropout (inference: identity, mask all true) -------------------------------------------

absl::Status InferDropout(const Node& n, const std::vector<ValueInfo>& in,
                          std::vector<ValueInfo>& out) {
  if (n.GetInt("is_test", 1) == 0 && n.opset < 7) {
    return absl::UnimplementedError(
        absl::StrCat("Dropout is_test=0 (training) is not supported (node '", n.name, "')"));
  }
  if (in.size() > 2 && in[2].present) {
    if (in[2].value == nullptr || ReadInts(*in[2].value).at(0) != 0) {
      return absl::UnimplementedError(
          absl::StrCat("Dropout training_mode is not supported (node '", n.name, "')"));
    }
  }
  out[0].type = in[0].type;
  out[0].shape = in[0].shape;
  if (out.size() > 1) {
    out[1].type = DataType::kBool;
    out[1].shape = in[0].shape;
  }
  return absl::OkStatus();
}

absl::Status ComputeDropout(const Node& n, const std::vector<View>& in,
                            const std::vector<View>& out) {
  RETURN_IF_ERROR(CopyInput(n, in, out));
  if (out.size() > 1 && out[1].data) std::memset(out[1].data, 1, out[1].size());
  return absl::OkStatus();
}

bool DropoutIsView(const Graph& /*graph*/, const Node& n) {
  return n.outputs.size() < 2 || n.outputs[1].empty();
}

}  // namespace

void RegisterTensorOps(OpTable& t) {
  t["Shape"].Kernels(InferShape, ComputeShape).ShapeOnly();
  t["Size"].Kernels(InferSize, ComputeSize).ShapeOnly();
  t["Reshape"].Kernels(InferReshape, CopyInput).View(AlwaysView).InputsSince(5, 2).ValueInputs({1});
  t["Flatten"].Kernels(InferFlatten, CopyInput).View(AlwaysView);
  t["Squeeze"].Kernels(InferSqueeze, CopyInput).View(AlwaysView).ValueInputs({1});
  t["Unsqueeze"].Kernels(InferUnsqueeze, CopyInput).View(AlwaysView).ValueInputs({1});
  t["Transpose"].Kernels(InferTranspose, ComputeTranspose);
  t["Concat"].Kernels(InferConcat, ComputeConcat).Lower(LowerConcat).Inputs(1, Arity::kAll);
  t["Split"]
      .Kernels(InferSplit, ComputeSplitOp)
      .Lower(LowerSliceSplit)
      .Outputs(Arity::kAll)
      .ValueInputs({1});
  t["Slice"]
      .Kernels(InferSlice, ComputeSlice)
      .Lower(LowerSliceSplit)
      .InputsSince(10, 3)
      .ValueInputs({1, 2, 3, 4});
  t["Gather"].Kernels(InferGather, ComputeGather).Inputs(2);
  t["Expand"].Kernels(InferExpand, ComputeExpand).Inputs(2).ValueInputs({1});
  t["Tile"].Kernels(InferTile, ComputeTile).Inputs(2).ValueInputs({1});
  t["Pad"].Kernels(InferPad, ComputePad).InputsSince(11, 2).ValueInputs({1, 2, 3});
  t["ConstantOfShape"].Kernels(InferConstantOfShape, ComputeConstantOfShape).ValueInputs({0});
  t["Range"].Kernels(InferRange, ComputeRange).Inputs(3).ValueInputs({0, 1, 2});
  // Without its mask output, inference-mode Dropout is its input.
  t["Dropout"].Kernels(InferDropout, ComputeDropout).View(DropoutIsView).Outputs(2);
}

}  // namespace rectifier::engine
