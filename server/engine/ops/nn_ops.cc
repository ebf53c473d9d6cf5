// Reference kernels and shape inference for NN ops without (or besides) a
// oneDNN lowering: Softmax/LogSoftmax, Reduce*, Gemm, MatMul,
// BatchNormalization, Resize/Upsample.
#include "server/engine/ops/nn_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/kernel_util.h"

namespace rectifier::engine {
namespace {

absl::Status Invalid(const Node& n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": ", what));
}

absl::Status RequireFloat(const Node& n, const std::vector<ValueInfo>& in) {
  if (in.empty() || in[0].type != DataType::kFloat32)
    return absl::UnimplementedError(absl::StrCat(n.Describe(), ": only float32 is supported"));
  return absl::OkStatus();
}

// ---- Softmax --------------------------------------------------------------------

absl::Status InferSoftmax(const Node& n, const std::vector<ValueInfo>& in,
                          std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  RETURN_IF_ERROR(
      NormalizeAxis(n.GetInt("axis", n.opset < 13 ? 1 : -1), in[0].shape.size(), n).status());
  out[0] = in[0];
  out[0].value = nullptr;
  return absl::OkStatus();
}

absl::Status ComputeSoftmax(const Node& n, const std::vector<View>& in,
                            const std::vector<View>& out) {
  SoftmaxGeometry g = ResolveSoftmax(n, in[0].shape);
  const bool log = n.op_type == "LogSoftmax";
  const float* x = in[0].as<float>();
  float* y = out[0].as<float>();
  for (int64_t o = 0; o < g.outer; ++o) {
    for (int64_t i = 0; i < g.inner; ++i) {
      const int64_t base = o * g.axis * g.inner + i;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t a = 0; a < g.axis; ++a) m = std::max(m, x[base + a * g.inner]);
      double sum = 0;
      for (int64_t a = 0; a < g.axis; ++a) sum += std::exp(x[base + a * g.inner] - m);
      for (int64_t a = 0; a < g.axis; ++a) {
        float v = x[base + a * g.inner] - m;
        y[base + a * g.inner] =
            log ? v - static_cast<float>(std::log(sum)) : static_cast<float>(std::exp(v) / sum);
      }
    }
  }
  return absl::OkStatus();
}

// ---- Reduce ---------------------------------------------------------------------

}  // namespace

absl::StatusOr<std::vector<bool>> ReduceMask(const Node& n, const std::vector<ValueInfo>& in) {
  const size_t rank = in[0].shape.size();
  std::vector<int64_t> axes;
  const bool axes_input = n.opset >= 18 || (n.op_type == "ReduceSum" && n.opset >= 13);
  if (axes_input) {
    ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
    if (t) axes = ReadInts(*t);
  } else {
    axes = n.GetInts("axes");
  }
  std::vector<bool> mask(rank, false);
  if (axes.empty()) {
    if (n.GetInt("noop_with_empty_axes", 0) == 0) mask.assign(rank, true);
  } else {
    for (int64_t a : axes) {
      ASSIGN_OR_RETURN(int ax, NormalizeAxis(a, rank, n));
      mask[ax] = true;
    }
  }
  return mask;
}

namespace {

absl::Status InferReduce(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  ASSIGN_OR_RETURN(auto mask, ReduceMask(n, in));
  const bool keep = n.GetInt("keepdims", 1) != 0;
  out[0].type = DataType::kFloat32;
  out[0].shape.clear();
  for (size_t d = 0; d < mask.size(); ++d) {
    if (!mask[d]) {
      out[0].shape.push_back(in[0].shape[d]);
    } else if (keep) {
      out[0].shape.push_back(1);
    }
  }
  return absl::OkStatus();
}

absl::Status ComputeReduce(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  std::vector<ValueInfo> infos(in.size());
  std::vector<Tensor> keep(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    infos[i].present = in[i].data != nullptr;
    infos[i].type = in[i].type;
    infos[i].shape = in[i].shape;
    if (i > 0 && in[i].data) {
      keep[i] = Tensor::Zeros(in[i].type, in[i].shape);
      CopyBytes(keep[i].bytes.data(), in[i].data, keep[i].bytes.size());
      infos[i].value = &keep[i];
    }
  }
  ASSIGN_OR_RETURN(auto mask, ReduceMask(n, infos));
  const auto& s = in[0].shape;
  // Output index space = input shape with reduced dims collapsed to 1.
  std::vector<int64_t> red_shape = s;
  int64_t count = 1;
  for (size_t d = 0; d < s.size(); ++d) {
    if (mask[d]) {
      red_shape[d] = 1;
      count *= s[d];
    }
  }
  const std::string& op = n.op_type;
  const int64_t nout = NumElements(red_shape);
  std::vector<double> acc(static_cast<size_t>(nout),
                          op == "ReduceMax"    ? -std::numeric_limits<double>::infinity()
                          : op == "ReduceMin"  ? std::numeric_limits<double>::infinity()
                          : op == "ReduceProd" ? 1.0
                                               : 0.0);
  auto ocs = ContiguousStrides(red_shape);
  std::vector<int64_t> idx(s.size(), 0);
  const float* x = in[0].as<float>();
  for (int64_t i = 0; i < in[0].size(); ++i) {
    int64_t o = 0;
    for (size_t d = 0; d < s.size(); ++d)
      if (!mask[d]) o += idx[d] * ocs[d];
    double v = x[i];
    double& a = acc[o];
    if (op == "ReduceMax") {
      a = std::max(a, v);
    } else if (op == "ReduceMin") {
      a = std::min(a, v);
    } else if (op == "ReduceProd") {
      a *= v;
    } else if (op == "ReduceSumSquare" || op == "ReduceL2") {
      a += v * v;
    } else if (op == "ReduceL1") {
      a += std::fabs(v);
    } else {
      a += v;
    }
    for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
  float* y = out[0].as<float>();
  for (int64_t o = 0; o < nout; ++o) {
    double v = acc[o];
    if (op == "ReduceMean") v /= static_cast<double>(count);
    if (op == "ReduceL2") v = std::sqrt(v);
    y[o] = static_cast<float>(v);
  }
  return absl::OkStatus();
}

// ---- Gemm / MatMul --------------------------------------------------------------

absl::Status InferGemm(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  if (in.size() < 2 || in[0].shape.size() != 2 || in[1].shape.size() != 2)
    return Invalid(n, "A and B must be 2-D");
  const bool ta = n.GetInt("transA", 0) != 0, tb = n.GetInt("transB", 0) != 0;
  const int64_t m = ta ? in[0].shape[1] : in[0].shape[0];
  const int64_t k = ta ? in[0].shape[0] : in[0].shape[1];
  const int64_t kb = tb ? in[1].shape[1] : in[1].shape[0];
  const int64_t nn = tb ? in[1].shape[0] : in[1].shape[1];
  if (k != kb) return Invalid(n, absl::StrCat("inner dimensions differ (", k, " vs ", kb, ")"));
  out[0].type = DataType::kFloat32;
  out[0].shape = {m, nn};
  if (in.size() > 2 && in[2].present) {
    ASSIGN_OR_RETURN(auto bs, BroadcastShapes(in[2].shape, out[0].shape, n));
    if (bs != out[0].shape) return Invalid(n, "C does not broadcast to [M, N]");
  }
  return absl::OkStatus();
}

absl::Status ComputeGemm(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  const bool ta = n.GetInt("transA", 0) != 0, tb = n.GetInt("transB", 0) != 0;
  const float alpha = n.GetFloat("alpha", 1.0f), beta = n.GetFloat("beta", 1.0f);
  const int64_t m = out[0].shape[0], nn = out[0].shape[1];
  const int64_t k = ta ? in[0].shape[0] : in[0].shape[1];
  const float* a = in[0].as<float>();
  const float* b = in[1].as<float>();
  float* y = out[0].as<float>();
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < nn; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) {
        s += static_cast<double>(ta ? a[p * m + i] : a[i * k + p]) *
             (tb ? b[j * k + p] : b[p * nn + j]);
      }
      y[i * nn + j] = static_cast<float>(alpha * s);
    }
  }
  if (in.size() > 2 && in[2].data) {
    auto sc = BroadcastStrides(in[2].shape, out[0].shape);
    const float* c = in[2].as<float>();
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < nn; ++j) y[i * nn + j] += beta * c[i * sc[0] + j * sc[1]];
  }
  return absl::OkStatus();
}

absl::Status InferMatMul(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  auto a = in[0].shape, b = in[1].shape;
  if (a.empty() || b.empty()) return Invalid(n, "scalar operand");
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) a.insert(a.begin(), 1);
  if (b1) b.push_back(1);
  if (a.back() != b[b.size() - 2])
    return Invalid(
        n, absl::StrCat("inner dimensions differ (", a.back(), " vs ", b[b.size() - 2], ")"));
  std::vector<int64_t> ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  ASSIGN_OR_RETURN(auto batch, BroadcastShapes(ba, bb, n));
  out[0].type = DataType::kFloat32;
  out[0].shape = batch;
  if (!a1) out[0].shape.push_back(a[a.size() - 2]);
  if (!b1) out[0].shape.push_back(b.back());
  return absl::OkStatus();
}

absl::Status ComputeMatMul(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  auto a = in[0].shape, b = in[1].shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const int64_t m = a[a.size() - 2], k = a.back(), nn = b.back();
  std::vector<int64_t> ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  auto batch = BroadcastShapes(ba, bb, n).value();
  auto sa = BroadcastStrides(ba, batch), sb = BroadcastStrides(bb, batch);
  const float* pa = in[0].as<float>();
  const float* pb = in[1].as<float>();
  float* y = out[0].as<float>();
  const int64_t nb = NumElements(batch);
  std::vector<int64_t> idx(batch.size(), 0);
  std::vector<double> row(static_cast<size_t>(nn));
  for (int64_t t = 0; t < nb; ++t) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < batch.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    const float* a_mat = pa + oa * m * k;
    const float* b_mat = pb + ob * k * nn;
    float* y_mat = y + t * m * nn;
    for (int64_t i = 0; i < m; ++i) {
      std::fill(row.begin(), row.end(), 0.0);
      for (int64_t p = 0; p < k; ++p) {
        const double av = a_mat[i * k + p];
        const float* brow = b_mat + p * nn;
        for (int64_t j = 0; j < nn; ++j) row[j] += av * brow[j];
      }
      for (int64_t j = 0; j < nn; ++j) y_mat[i * nn + j] = static_cast<float>(row[j]);
    }
    for (int d = static_cast<int>(batch.size()) - 1; d >= 0; --d) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  return absl::OkStatus();
}

// ---- BatchNormalization -----------------------------------------------------------

absl::Status InferBatchNorm(const Node& n, const std::vector<ValueInfo>& in,
                            std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  if (in.size() < 5) return Invalid(n, "needs 5 inputs");
  if (n.GetInt("training_mode", 0) != 0 || (out.size() > 1 && n.opset >= 14))
    return absl::UnimplementedError(
        absl::StrCat("BatchNormalization training_mode is not supported (node '", n.name, "')"));
  if (in[0].shape.size() < 2) return Invalid(n, "input rank < 2");
  const int64_t c = in[0].shape[1];
  for (int i = 1; i < 5; ++i)
    if (NumElements(in[i].shape) != c) return Invalid(n, "parameter size differs from channels");
  out[0] = in[0];
  out[0].value = nullptr;
  for (size_t i = 1; i < out.size(); ++i) {
    out[i].type = DataType::kFloat32;
    out[i].shape = {c};
  }
  return absl::OkStatus();
}

absl::Status ComputeBatchNorm(const Node& n, const std::vector<View>& in,
                              const std::vector<View>& out) {
  const auto& s = in[0].shape;
  const int64_t c = s[1];
  int64_t inner = 1;
  for (size_t d = 2; d < s.size(); ++d) inner *= s[d];
  const float eps = n.GetFloat("epsilon", 1e-5f);
  const float* x = in[0].as<float>();
  float* y = out[0].as<float>();
  for (int64_t b = 0; b < s[0]; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const float scale = in[1].as<float>()[ch] / std::sqrt(in[4].as<float>()[ch] + eps);
      const float shift = in[2].as<float>()[ch] - in[3].as<float>()[ch] * scale;
      const int64_t base = (b * c + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) y[base + i] = x[base + i] * scale + shift;
    }
  }
  for (size_t i = 1; i < out.size(); ++i) {
    if (out[i].data) CopyBytes(out[i].data, in[i + 2 < in.size() ? i + 2 : 3].data, c * 4);
  }
  return absl::OkStatus();
}

// ---- InstanceNormalization --------------------------------------------------------

absl::Status InferInstanceNorm(const Node& n, const std::vector<ValueInfo>& in,
                               std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(RequireFloat(n, in));
  if (in.size() < 3 || in[0].shape.size() < 3) return Invalid(n, "needs X (rank >= 3), scale, B");
  const int64_t c = in[0].shape[1];
  if (NumElements(in[1].shape) != c || NumElements(in[2].shape) != c)
    return Invalid(n, "scale/B size differs from channels");
  out[0] = in[0];
  out[0].value = nullptr;
  return absl::OkStatus();
}

absl::Status ComputeInstanceNorm(const Node& n, const std::vector<View>& in,
                                 const std::vector<View>& out) {
  const auto& s = in[0].shape;
  int64_t inner = 1;
  for (size_t d = 2; d < s.size(); ++d) inner *= s[d];
  const float eps = n.GetFloat("epsilon", 1e-5f);
  const float* x = in[0].as<float>();
  float* y = out[0].as<float>();
  for (int64_t b = 0; b < s[0]; ++b) {
    for (int64_t ch = 0; ch < s[1]; ++ch) {
      const int64_t base = (b * s[1] + ch) * inner;
      double mean = 0, var = 0;
      for (int64_t i = 0; i < inner; ++i) mean += x[base + i];
      mean /= static_cast<double>(std::max<int64_t>(inner, 1));
      for (int64_t i = 0; i < inner; ++i) var += (x[base + i] - mean) * (x[base + i] - mean);
      var /= static_cast<double>(std::max<int64_t>(inner, 1));
      const double scale = in[1].as<float>()[ch] / std::sqrt(var + eps);
      for (int64_t i = 0; i < inner; ++i)
        y[base + i] = static_cast<float>((x[base + i] - mean) * scale + in[2].as<float>()[ch]);
    }
  }
  return absl::OkStatus();
}

// ---- Resize / Upsample ------------------------------------------------------------

absl::Status InferResize(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  ASSIGN_OR_RETURN(ResizeSpec spec, ResolveResize(n, in));
  out[0].type = in[0].type;
  out[0].shape = spec.out_shape;
  return absl::OkStatus();
}

absl::Status ComputeResize(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  std::vector<ValueInfo> infos(in.size());
  std::vector<Tensor> keep(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    infos[i].present = in[i].data != nullptr && (i == 0 || in[i].size() > 0);
    infos[i].type = in[i].type;
    infos[i].shape = in[i].shape;
    if (i > 0 && in[i].data) {
      keep[i] = Tensor::Zeros(in[i].type, in[i].shape);
      CopyBytes(keep[i].bytes.data(), in[i].data, keep[i].bytes.size());
      infos[i].value = &keep[i];
    }
  }
  ASSIGN_OR_RETURN(ResizeSpec spec, ResolveResize(n, infos));
  RunResize(spec, in[0].shape, in[0].as<float>(), out[0].as<float>());
  return absl::OkStatus();
}

}  // namespace

SoftmaxGeometry ResolveSoftmax(const Node& n, const std::vector<int64_t>& shape) {
  int64_t axis = n.GetInt("axis", n.opset < 13 ? 1 : -1);
  if (axis < 0) axis += static_cast<int64_t>(shape.size());
  SoftmaxGeometry g;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis) {
      g.outer *= shape[d];
    } else if (d == axis || n.opset < 13) {
      g.axis *= shape[d];  // opset < 13 coerces to 2-D at `axis`: all trailing dims
    } else {
      g.inner *= shape[d];
    }
  }
  return g;
}

absl::StatusOr<ResizeSpec> ResolveResize(const Node& n, const std::vector<ValueInfo>& in) {
  ResizeSpec spec;
  const auto& s = in[0].shape;
  const size_t rank = s.size();
  if (in[0].type != DataType::kFloat32)
    return absl::UnimplementedError(absl::StrCat(n.Describe(), ": only float32 is supported"));
  std::string mode = n.GetString("mode", "nearest");
  if (mode == "bilinear" || mode == "trilinear") mode = "linear";
  if (mode != "nearest" && mode != "linear") {
    return absl::UnimplementedError(
        absl::StrCat(n.op_type, " mode '", mode, "' is not supported (node '", n.name, "')"));
  }
  spec.linear = mode == "linear";
  std::vector<float> scales;
  std::vector<int64_t> sizes;
  if (n.op_type == "Upsample") {
    spec.coord = "asymmetric";
    spec.nearest = "floor";
    if (n.opset < 7) {
      scales = {1.0f, 1.0f, n.GetFloat("height_scale", 1.0f), n.GetFloat("width_scale", 1.0f)};
    } else if (n.opset < 9) {
      scales = n.GetFloats("scales");
    } else {
      ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
      if (!t) return Invalid(n, "missing scales");
      scales = ReadFloats(*t);
    }
  } else if (n.opset < 11) {
    spec.coord = "asymmetric";
    spec.nearest = "floor";
    ASSIGN_OR_RETURN(const Tensor* t, ConstInput(n, in, 1));
    if (!t) return Invalid(n, "missing scales");
    scales = ReadFloats(*t);
  } else {
    spec.coord = n.GetString("coordinate_transformation_mode", "half_pixel");
    spec.nearest = n.GetString("nearest_mode", "round_prefer_floor");
    if (spec.coord != "half_pixel" && spec.coord != "asymmetric" && spec.coord != "align_corners" &&
        spec.coord != "pytorch_half_pixel" && spec.coord != "tf_half_pixel_for_nn") {
      return absl::UnimplementedError(absl::StrCat("Resize coordinate_transformation_mode '",
                                                   spec.coord, "' is not supported (node '", n.name,
                                                   "')"));
    }
    if (spec.nearest != "round_prefer_floor" && spec.nearest != "round_prefer_ceil" &&
        spec.nearest != "floor" && spec.nearest != "ceil") {
      return absl::UnimplementedError(absl::StrCat("Resize nearest_mode '", spec.nearest,
                                                   "' is not supported (node '", n.name, "')"));
    }
    if (n.GetInt("antialias", 0) != 0 && spec.linear) {
      return absl::UnimplementedError(
          absl::StrCat("Resize antialias is not supported (node '", n.name, "')"));
    }
    if (n.GetString("keep_aspect_ratio_policy", "stretch") != "stretch") {
      return absl::UnimplementedError(absl::StrCat("Resize keep_aspect_ratio_policy '",
                                                   n.GetString("keep_aspect_ratio_policy", ""),
                                                   "' is not supported (node '", n.name, "')"));
    }
    const size_t scales_idx = 2;  // Resize-11 and later: X, roi, scales, sizes
    ASSIGN_OR_RETURN(const Tensor* ts, ConstInput(n, in, scales_idx));
    ASSIGN_OR_RETURN(const Tensor* tz, ConstInput(n, in, scales_idx + 1));
    if (ts && ts->num_elements() > 0) scales = ReadFloats(*ts);
    if (tz && tz->num_elements() > 0) sizes = ReadInts(*tz);
    std::vector<int64_t> axes = n.GetInts("axes");
    if (!axes.empty()) {
      std::vector<float> full_scales(rank, 1.0f);
      std::vector<int64_t> full_sizes(s);
      for (size_t i = 0; i < axes.size(); ++i) {
        ASSIGN_OR_RETURN(int ax, NormalizeAxis(axes[i], rank, n));
        if (!scales.empty()) full_scales[ax] = scales.at(i);
        if (!sizes.empty()) full_sizes[ax] = sizes.at(i);
      }
      if (!scales.empty()) scales = full_scales;
      if (!sizes.empty()) sizes = full_sizes;
    }
  }
  spec.out_shape = s;
  spec.scales.assign(rank, 1.0f);
  spec.resized_len.assign(rank, 1.0f);
  if (!sizes.empty()) {
    if (sizes.size() != rank) return Invalid(n, "sizes length differs from rank");
    for (size_t d = 0; d < rank; ++d) {
      if (sizes[d] <= 0 || s[d] <= 0) return Invalid(n, "bad sizes");
      spec.out_shape[d] = sizes[d];
      spec.resized_len[d] = static_cast<float>(sizes[d]);
      spec.scales[d] = static_cast<float>(sizes[d]) / static_cast<float>(s[d]);
    }
  } else {
    if (scales.size() != rank) return Invalid(n, "scales length differs from rank");
    for (size_t d = 0; d < rank; ++d) {
      const double out_len = std::floor(static_cast<double>(s[d]) * scales[d]);
      if (!(scales[d] > 0) || !std::isfinite(scales[d]) || out_len > 1e12)
        return Invalid(n, "bad scale");
      spec.scales[d] = scales[d];
      spec.resized_len[d] = static_cast<float>(s[d]) * scales[d];
      spec.out_shape[d] = static_cast<int64_t>(std::floor(static_cast<double>(s[d]) * scales[d]));
    }
  }
  return spec;
}

// Per-dimension source coordinates: for every output index, two source
// indices and the weight of the second (nearest uses one index, weight 0).
void RunResize(const ResizeSpec& spec, const std::vector<int64_t>& in_shape, const float* x,
               float* y) {
  const size_t rank = in_shape.size();
  std::vector<std::vector<int64_t>> i0(rank), i1(rank);
  std::vector<std::vector<float>> w(rank);
  for (size_t d = 0; d < rank; ++d) {
    const int64_t in_len = in_shape[d], out_len = spec.out_shape[d];
    const float scale = spec.scales[d];
    for (int64_t o = 0; o < out_len; ++o) {
      float xo;
      if (spec.coord == "asymmetric") {
        xo = static_cast<float>(o) / scale;
      } else if (spec.coord == "align_corners") {
        xo = spec.resized_len[d] <= 1.0f ? 0.0f
                                         : static_cast<float>(o) * static_cast<float>(in_len - 1) /
                                               (spec.resized_len[d] - 1.0f);
      } else if (spec.coord == "pytorch_half_pixel") {
        xo = out_len > 1 ? (static_cast<float>(o) + 0.5f) / scale - 0.5f : 0.0f;
      } else if (spec.coord == "tf_half_pixel_for_nn") {
        xo = (static_cast<float>(o) + 0.5f) / scale;
      } else {
        xo = (static_cast<float>(o) + 0.5f) / scale - 0.5f;
      }
      int64_t a, b;
      float wt = 0.0f;
      if (!spec.linear) {
        float r;
        if (spec.nearest == "floor") {
          r = std::floor(xo);
        } else if (spec.nearest == "ceil") {
          r = std::ceil(xo);
        } else if (spec.nearest == "round_prefer_ceil") {
          r = std::floor(xo + 0.5f);
        } else {
          r = xo == std::floor(xo) + 0.5f ? std::floor(xo) : std::round(xo);
        }
        // Clamped in float first: a NaN or huge coordinate (extreme
        // scales) must not reach the integer cast (undefined). NaN -> 0.
        const float rc = r >= 0.0f ? std::min(r, static_cast<float>(in_len - 1)) : 0.0f;
        a = b = std::clamp<int64_t>(static_cast<int64_t>(rc), 0, in_len - 1);
      } else {
        float xc = std::clamp(xo, 0.0f, static_cast<float>(in_len - 1));
        a = static_cast<int64_t>(std::floor(xc));
        b = std::min<int64_t>(a + 1, in_len - 1);
        wt = xc - static_cast<float>(a);
      }
      i0[d].push_back(a);
      i1[d].push_back(b);
      w[d].push_back(wt);
    }
  }
  auto cs = ContiguousStrides(in_shape);
  const int64_t total = NumElements(spec.out_shape);
  std::vector<size_t> active;
  for (size_t d = 0; d < rank; ++d) {
    bool any = false;
    for (float v : w[d]) any = any || v != 0.0f;
    if (any) active.push_back(d);
  }
  if (total == 0 || rank == 0) return;
  // Rows of the innermost output dimension are independent: split them
  // across OpenMP threads (this kernel runs between oneDNN primitives).
  const int64_t row_len = spec.out_shape[rank - 1];
  const int64_t rows = total / row_len;
  const size_t corners = size_t{1} << active.size();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<int64_t> idx(rank, 0);
    int64_t rem = r;
    for (int d = static_cast<int>(rank) - 2; d >= 0; --d) {
      idx[d] = rem % spec.out_shape[d];
      rem /= spec.out_shape[d];
    }
    for (int64_t j = 0; j < row_len; ++j) {
      idx[rank - 1] = j;
      int64_t base = 0;
      for (size_t d = 0; d < rank; ++d) base += i0[d][idx[d]] * cs[d];
      float acc = 0.0f;
      for (size_t c = 0; c < corners; ++c) {
        float wt = 1.0f;
        int64_t off = base;
        for (size_t k = 0; k < active.size(); ++k) {
          const size_t d = active[k];
          const float wd = w[d][idx[d]];
          if (c & (size_t{1} << k)) {
            wt *= wd;
            off += (i1[d][idx[d]] - i0[d][idx[d]]) * cs[d];
          } else {
            wt *= 1.0f - wd;
          }
        }
        if (wt != 0.0f) acc += wt * x[off];
      }
      y[r * row_len + j] = acc;
    }
  }
}

void RegisterNnOps(OpTable& t) {
  for (const char* op : {"Softmax", "LogSoftmax"})
    t[op].Kernels(InferSoftmax, ComputeSoftmax).Lower(LowerSoftmax);
  for (const char* op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                         "ReduceL1", "ReduceL2", "ReduceSumSquare"}) {
    t[op].Kernels(InferReduce, ComputeReduce).ValueInputs({1});
  }
  // Over the spatial dims these are global pooling (lower_conv.cc).
  t["ReduceMean"].Lower(LowerSpatialReduce);
  t["ReduceMax"].Lower(LowerSpatialReduce);
  t["Gemm"].Kernels(InferGemm, ComputeGemm).Lower(LowerMatMul).Inputs(2).FusesActivation();
  t["MatMul"].Kernels(InferMatMul, ComputeMatMul).Lower(LowerMatMul).Inputs(2).FusesActivation();
  t["BatchNormalization"]
      .Kernels(InferBatchNorm, ComputeBatchNorm)
      .Lower(LowerBatchNorm)
      .Inputs(5)
      .Outputs(5);
  t["InstanceNormalization"].Kernels(InferInstanceNorm, ComputeInstanceNorm).Inputs(3);
  // roi, scales and sizes (opset 11) may each be omitted.
  t["Resize"]
      .Kernels(InferResize, ComputeResize)
      .ValueInputs({1, 2, 3})
      .Lower(LowerResize)
      .InputsSince(9, 2)
      .InputsSince(11, 2, 1);
  t["Upsample"]
      .Kernels(InferResize, ComputeResize)
      .Lower(LowerResize)
      .InputsSince(9, 2)
      .ValueInputs({1});
}

}  // namespace rectifier::engine
