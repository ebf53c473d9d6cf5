// Window-op geometry and shape inference for Conv, ConvTranspose and pools.
#include "server/engine/ops/conv_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/kernel_util.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {
namespace {

absl::Status Invalid(const Node& n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": ", what));
}

// Fills strides/dilations/pads for `spatial` dims from attributes.
absl::Status CommonAttrs(const Node& n, size_t spatial, WindowGeometry& g) {
  g.strides = n.GetInts("strides", std::vector<int64_t>(spatial, 1));
  g.dilations = n.GetInts("dilations", std::vector<int64_t>(spatial, 1));
  std::vector<int64_t> pads = n.GetInts("pads", std::vector<int64_t>(2 * spatial, 0));
  if (g.strides.size() != spatial || g.dilations.size() != spatial || pads.size() != 2 * spatial ||
      g.kernel.size() != spatial) {
    return Invalid(n, "strides/dilations/pads/kernel_shape do not match the spatial rank");
  }
  // Bounds keep every extent computation below far from int64 overflow.
  constexpr int64_t kMaxAttr = int64_t{1} << 24;
  for (size_t i = 0; i < spatial; ++i) {
    if (g.strides[i] <= 0 || g.dilations[i] <= 0 || g.kernel[i] <= 0)
      return Invalid(n, "non-positive stride, dilation or kernel");
    if (pads[i] < 0 || pads[i + spatial] < 0) return Invalid(n, "negative pads");
    if (g.strides[i] > kMaxAttr || g.dilations[i] > kMaxAttr || g.kernel[i] > kMaxAttr ||
        pads[i] > kMaxAttr || pads[i + spatial] > kMaxAttr)
      return Invalid(n, "stride, dilation, kernel or pad out of range");
  }
  g.pad_begin.assign(pads.begin(), pads.begin() + spatial);
  g.pad_end.assign(pads.begin() + spatial, pads.end());
  return absl::OkStatus();
}

// Forward window ops (conv, pool): output extents and auto_pad.
absl::Status ForwardExtents(const Node& n, const std::vector<int64_t>& x, bool ceil_mode,
                            WindowGeometry& g) {
  const size_t spatial = x.size() - 2;
  const std::string auto_pad = n.GetString("auto_pad", "NOTSET");
  for (int64_t d : x)
    if (d > (int64_t{1} << 32)) return Invalid(n, "input dimension out of range");
  g.out_shape.resize(2);
  for (size_t i = 0; i < spatial; ++i) {
    const int64_t in = x[i + 2];
    const int64_t ext = (g.kernel[i] - 1) * g.dilations[i] + 1;
    int64_t out;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out = (in + g.strides[i] - 1) / g.strides[i];
      const int64_t total = std::max<int64_t>(0, (out - 1) * g.strides[i] + ext - in);
      const int64_t small = total / 2;
      g.pad_begin[i] = auto_pad == "SAME_UPPER" ? small : total - small;
      g.pad_end[i] = total - g.pad_begin[i];
    } else {
      if (auto_pad == "VALID")
        g.pad_begin[i] = g.pad_end[i] = 0;
      else if (auto_pad != "NOTSET")
        return absl::UnimplementedError(absl::StrCat(n.op_type, " auto_pad '", auto_pad,
                                                     "' is not supported (node '", n.name, "')"));
      const int64_t span = in + g.pad_begin[i] + g.pad_end[i] - ext;
      if (span < 0) return Invalid(n, "kernel larger than padded input");
      if (ceil_mode) {
        out = (span + g.strides[i] - 1) / g.strides[i] + 1;
        // The last window must start inside the input or the left padding.
        if ((out - 1) * g.strides[i] >= in + g.pad_begin[i]) --out;
      } else {
        out = span / g.strides[i] + 1;
      }
      // Extend the right padding so that oneDNN's extent formula matches.
      g.pad_end[i] =
          std::max<int64_t>(g.pad_end[i], (out - 1) * g.strides[i] + ext - in - g.pad_begin[i]);
    }
    g.out_shape.push_back(out);
  }
  return absl::OkStatus();
}

absl::Status InferConv(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  if (in.size() < 2) return Invalid(n, "needs X and W");
  if (in[0].type != DataType::kFloat32)
    return absl::UnimplementedError(absl::StrCat(n.Describe(), ": only float32 is supported"));
  ASSIGN_OR_RETURN(WindowGeometry g, n.op_type == "Conv"
                                         ? ResolveConv(n, in[0].shape, in[1].shape)
                                         : ResolveConvTranspose(n, in[0].shape, in[1].shape));
  out[0].type = DataType::kFloat32;
  out[0].shape = g.out_shape;
  const int64_t oc = g.out_shape[1];
  if (in.size() > 2 && in[2].present && NumElements(in[2].shape) != oc)
    return Invalid(n, "bias size differs from output channels");
  return absl::OkStatus();
}

absl::Status InferPool(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  if (in[0].type != DataType::kFloat32)
    return absl::UnimplementedError(absl::StrCat(n.Describe(), ": only float32 is supported"));
  if (out.size() > 1 && !n.outputs[1].empty())
    return absl::UnimplementedError(
        absl::StrCat("MaxPool Indices output is not supported (node '", n.name, "')"));
  ASSIGN_OR_RETURN(WindowGeometry g, ResolvePool(n, in[0].shape));
  out[0].type = DataType::kFloat32;
  out[0].shape = g.out_shape;
  return absl::OkStatus();
}

// Naive N-d pooling on plain NCHW data. Used where oneDNN's semantics differ
// from ONNX (AveragePool count_include_pad with a ceil_mode overhang: ONNX
// counts the explicit pads but not the overhang) and for constant folding.
absl::Status ComputePool(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  const auto& xs = in[0].shape;
  ASSIGN_OR_RETURN(WindowGeometry g, ResolvePool(n, xs));
  const size_t sp = xs.size() - 2;
  const bool is_max = n.op_type == "MaxPool" || n.op_type == "GlobalMaxPool";
  const bool include_pad = n.op_type == "AveragePool" && n.GetInt("count_include_pad", 0) != 0;
  // Explicit end pads as written (before the ceil_mode extension).
  std::vector<int64_t> pad_end_attr = g.pad_end;
  if (n.GetString("auto_pad", "NOTSET") == "NOTSET" && n.HasAttr("pads")) {
    auto pads = n.GetInts("pads");
    for (size_t i = 0; i < sp; ++i) pad_end_attr[i] = pads[i + sp];
  }
  const auto& os = g.out_shape;
  const int64_t planes = xs[0] * xs[1];
  int64_t in_plane = 1, out_plane = 1, kcount = 1;
  for (size_t i = 0; i < sp; ++i) {
    // Huge windows or dimensions (possible with an empty input, or pads
    // that make room for any kernel) must not overflow the loop bounds.
    if (__builtin_mul_overflow(in_plane, xs[i + 2], &in_plane) ||
        __builtin_mul_overflow(out_plane, os[i + 2], &out_plane) ||
        __builtin_mul_overflow(kcount, g.kernel[i], &kcount)) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.Describe(), ": the pooling window or the spatial size is too large"));
    }
  }
  const float* x = in[0].as<float>();
  float* y = out[0].as<float>();
  std::vector<int64_t> o(sp), k(sp);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t oi = 0; oi < out_plane; ++oi) {
      int64_t rem = oi;
      for (int d = static_cast<int>(sp) - 1; d >= 0; --d) {
        o[d] = rem % os[d + 2];
        rem /= os[d + 2];
      }
      float best = -std::numeric_limits<float>::infinity();
      double sum = 0;
      int64_t count = 0;
      for (int64_t ki = 0; ki < kcount; ++ki) {
        int64_t r = ki;
        for (int d = static_cast<int>(sp) - 1; d >= 0; --d) {
          k[d] = r % g.kernel[d];
          r /= g.kernel[d];
        }
        bool inside = true, in_pads = true;
        int64_t off = 0;
        for (size_t d = 0; d < sp; ++d) {
          const int64_t c = o[d] * g.strides[d] + k[d] * g.dilations[d] - g.pad_begin[d];
          if (c < -g.pad_begin[d] || c >= xs[d + 2] + pad_end_attr[d]) in_pads = false;
          if (c < 0 || c >= xs[d + 2]) inside = false;
          off = off * xs[d + 2] + c;
        }
        if (include_pad && in_pads) ++count;
        if (!inside) continue;
        const float v = x[p * in_plane + off];
        best = std::max(best, v);
        sum += v;
        if (!include_pad) ++count;
      }
      y[p * out_plane + oi] =
          is_max ? best : (count ? static_cast<float>(sum / static_cast<double>(count)) : 0.0f);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WindowGeometry> ResolveConv(const Node& n, const std::vector<int64_t>& x,
                                           const std::vector<int64_t>& w) {
  if (x.size() < 3 || x.size() > 5 || w.size() != x.size())
    return Invalid(n, "X and W must both be 3-D, 4-D or 5-D");
  WindowGeometry g;
  const size_t spatial = x.size() - 2;
  g.groups = n.GetInt("group", 1);
  g.kernel = n.GetInts("kernel_shape", std::vector<int64_t>(w.begin() + 2, w.end()));
  RETURN_IF_ERROR(CommonAttrs(n, spatial, g));
  int64_t in_channels = 0;
  if (g.groups <= 0 || g.groups > x[1] || __builtin_mul_overflow(w[1], g.groups, &in_channels) ||
      x[1] != in_channels || w[0] % g.groups != 0) {
    return Invalid(
        n, absl::StrCat("channels (", x[1], ") do not match W ", w[1], " x group ", g.groups));
  }
  for (size_t i = 0; i < spatial; ++i)
    if (g.kernel[i] != w[i + 2]) return Invalid(n, "kernel_shape differs from W");
  RETURN_IF_ERROR(ForwardExtents(n, x, false, g));
  g.out_shape[0] = x[0];
  g.out_shape[1] = w[0];
  return g;
}

absl::StatusOr<WindowGeometry> ResolveConvTranspose(const Node& n, const std::vector<int64_t>& x,
                                                    const std::vector<int64_t>& w) {
  if (x.size() < 3 || x.size() > 5 || w.size() != x.size())
    return Invalid(n, "X and W must both be 3-D, 4-D or 5-D");
  WindowGeometry g;
  const size_t spatial = x.size() - 2;
  g.groups = n.GetInt("group", 1);
  g.kernel = n.GetInts("kernel_shape", std::vector<int64_t>(w.begin() + 2, w.end()));
  RETURN_IF_ERROR(CommonAttrs(n, spatial, g));
  if (g.groups <= 0 || g.groups > x[1] || x[1] != w[0] || x[1] % g.groups != 0 ||
      w[1] > (int64_t{1} << 31) || g.groups > (int64_t{1} << 31))
    return Invalid(n, "input channels differ from W dim 0, or bad group");
  for (int64_t d : x)
    if (d > (int64_t{1} << 32)) return Invalid(n, "input dimension out of range");
  std::vector<int64_t> out_pad = n.GetInts("output_padding", std::vector<int64_t>(spatial, 0));
  std::vector<int64_t> out_shape = n.GetInts("output_shape");
  const std::string auto_pad = n.GetString("auto_pad", "NOTSET");
  if (out_pad.size() != spatial) return Invalid(n, "output_padding length differs");
  for (size_t i = 0; i < spatial; ++i) {
    if (out_pad[i] < 0 || out_pad[i] >= std::max(g.strides[i], g.dilations[i]))
      return Invalid(n, "output_padding must be smaller than stride or dilation");
  }
  for (int64_t v : out_shape)
    if (v < 0 || v > (int64_t{1} << 32)) return Invalid(n, "output_shape out of range");
  if (!out_shape.empty() && out_shape.size() == spatial + 2)
    out_shape.erase(out_shape.begin(), out_shape.begin() + 2);
  g.out_shape = {x[0], w[1] * g.groups};
  for (size_t i = 0; i < spatial; ++i) {
    const int64_t in = x[i + 2];
    const int64_t ext = (g.kernel[i] - 1) * g.dilations[i] + 1;
    const int64_t full = g.strides[i] * (in - 1) + out_pad[i] + ext;
    int64_t target = -1;
    if (!out_shape.empty()) {
      if (out_shape.size() != spatial) return Invalid(n, "output_shape length differs");
      target = out_shape[i];
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      target = in * g.strides[i];
    }
    if (target >= 0) {
      const int64_t total = full - target;
      if (total < 0) {
        // A larger output_shape than the natural size adds rows at the end
        // (an implicit output_padding).
        g.pad_begin[i] = 0;
        g.pad_end[i] = total;
      } else if (auto_pad == "SAME_UPPER") {
        g.pad_begin[i] = total / 2;
        g.pad_end[i] = total - total / 2;
      } else {
        g.pad_end[i] = total / 2;
        g.pad_begin[i] = total - total / 2;
      }
    } else if (auto_pad == "VALID") {
      g.pad_begin[i] = g.pad_end[i] = 0;
    }
    // output_padding adds rows at the end: fold it into a smaller end pad.
    g.pad_end[i] -= out_pad[i];
    g.out_shape.push_back(full - out_pad[i] - g.pad_begin[i] - g.pad_end[i]);
  }
  return g;
}

absl::StatusOr<WindowGeometry> ResolvePool(const Node& n, const std::vector<int64_t>& x) {
  if (x.size() < 3 || x.size() > 5) return Invalid(n, "input must be 3-D, 4-D or 5-D");
  WindowGeometry g;
  const size_t spatial = x.size() - 2;
  if (n.op_type == "GlobalAveragePool" || n.op_type == "GlobalMaxPool") {
    g.kernel.assign(x.begin() + 2, x.end());
    g.strides.assign(spatial, 1);
    g.dilations.assign(spatial, 1);
    g.pad_begin.assign(spatial, 0);
    g.pad_end.assign(spatial, 0);
    g.out_shape = {x[0], x[1]};
    for (size_t i = 0; i < spatial; ++i) g.out_shape.push_back(1);
    return g;
  }
  g.kernel = n.GetInts("kernel_shape");
  RETURN_IF_ERROR(CommonAttrs(n, spatial, g));
  if (n.GetInt("storage_order", 0) != 0)
    return absl::UnimplementedError(
        absl::StrCat("MaxPool storage_order 1 is not supported (node '", n.name, "')"));
  RETURN_IF_ERROR(ForwardExtents(n, x, n.GetInt("ceil_mode", 0) != 0, g));
  g.out_shape[0] = x[0];
  g.out_shape[1] = x[1];
  return g;
}

void RegisterConvPoolOps(OpTable& t) {
  for (const char* op : {"Conv", "ConvTranspose"}) {
    t[op]
        .Kernels(InferConv, nullptr)
        .Lower(LowerConvolution)
        .Inputs(2)
        .FusesActivation()
        .FusesSum();
  }
  for (const char* op : {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
    t[op].Kernels(InferPool, ComputePool).Lower(LowerPooling);
  t["MaxPool"].Outputs(2);  // Indices
}

}  // namespace rectifier::engine
