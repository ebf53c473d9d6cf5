// Naive reference kernels for the engine tests; see reference_kernels.h.
#include "tests/engine/conformance/reference_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tests/engine/conformance/onnx_test_util.h"

namespace rectifier::engine::testing {
namespace {

int64_t Count(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

// Zero-filled float tensor.
Tensor Floats(std::vector<int64_t> shape) {
  const int64_t count = Count(shape);
  return FloatTensor(std::move(shape), std::vector<float>(static_cast<size_t>(count), 0.0f));
}

// Row-major offset of (n, c, h, w) in an NCHW tensor.
int64_t Offset(const std::vector<int64_t>& shape, int64_t n, int64_t c, int64_t h, int64_t w) {
  return ((n * shape[1] + c) * shape[2] + h) * shape[3] + w;
}

double Pixel(const Tensor& x, int64_t n, int64_t c, int64_t h, int64_t w) {
  return x.data<float>()[Offset(x.shape, n, c, h, w)];
}

// Source coordinate of output index `x_out` per the ONNX Resize spec.
double SourceCoordinate(const std::string& mode, int64_t x_out, double scale, int64_t in,
                        int64_t out, double length_resized) {
  const double x = static_cast<double>(x_out);
  if (mode == "asymmetric") return x / scale;
  if (mode == "align_corners") {
    const double length = length_resized > 0.0 ? length_resized : static_cast<double>(out);
    return length == 1.0 ? 0.0 : x * static_cast<double>(in - 1) / (length - 1.0);
  }
  if (mode == "pytorch_half_pixel") return out > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
  if (mode == "tf_half_pixel_for_nearest") return (x + 0.5) / scale;
  return (x + 0.5) / scale - 0.5;  // half_pixel
}

int64_t NearestIndex(const std::string& nearest_mode, double x, int64_t in) {
  const double floor_x = std::floor(x);
  const double fraction = x - floor_x;
  double rounded;
  if (nearest_mode == "floor") {
    rounded = floor_x;
  } else if (nearest_mode == "ceil") {
    rounded = std::ceil(x);
  } else if (nearest_mode == "round_prefer_ceil") {
    rounded = fraction < 0.5 ? floor_x : floor_x + 1.0;
  } else {  // round_prefer_floor
    rounded = fraction <= 0.5 ? floor_x : floor_x + 1.0;
  }
  return std::clamp<int64_t>(static_cast<int64_t>(rounded), 0, in - 1);
}

}  // namespace

int64_t WindowOutputSize(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin,
                         int64_t pad_end, int64_t dilation, bool ceil_mode) {
  const int64_t span = in + pad_begin + pad_end - ((kernel - 1) * dilation + 1);
  if (span < 0) return 0;
  return (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
}

Tensor ReferenceConv(const Tensor& x, const Tensor& w, const Tensor* bias, const ConvParams& p) {
  const int64_t n_batch = x.shape[0], channels = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
  const int64_t out_c = w.shape[0], group_c = w.shape[1], kh = w.shape[2], kw = w.shape[3];
  const int64_t out_per_group = out_c / p.group;
  const int64_t out_h =
      WindowOutputSize(in_h, kh, p.strides[0], p.pads[0], p.pads[2], p.dilations[0], false);
  const int64_t out_w =
      WindowOutputSize(in_w, kw, p.strides[1], p.pads[1], p.pads[3], p.dilations[1], false);
  (void)channels;
  Tensor y = Floats({n_batch, out_c, out_h, out_w});
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t m = 0; m < out_c; ++m) {
      const int64_t g = m / out_per_group;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          double sum = bias != nullptr ? bias->data<float>()[m] : 0.0;
          for (int64_t c = 0; c < group_c; ++c) {
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t ih = oh * p.strides[0] - p.pads[0] + i * p.dilations[0];
              if (ih < 0 || ih >= in_h) continue;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t iw = ow * p.strides[1] - p.pads[1] + j * p.dilations[1];
                if (iw < 0 || iw >= in_w) continue;
                sum += Pixel(x, n, g * group_c + c, ih, iw) * Pixel(w, m, c, i, j);
              }
            }
          }
          y.data<float>()[Offset(y.shape, n, m, oh, ow)] = static_cast<float>(sum);
        }
      }
    }
  }
  return y;
}

Tensor ReferenceConvTranspose(const Tensor& x, const Tensor& w, const Tensor* bias,
                              const ConvTransposeParams& p) {
  const int64_t n_batch = x.shape[0], channels = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
  const int64_t out_per_group = w.shape[1], kh = w.shape[2], kw = w.shape[3];
  const int64_t in_per_group = channels / p.group;
  const int64_t out_c = out_per_group * p.group;
  const int64_t out_h = p.strides[0] * (in_h - 1) + p.output_padding[0] +
                        (kh - 1) * p.dilations[0] + 1 - p.pads[0] - p.pads[2];
  const int64_t out_w = p.strides[1] * (in_w - 1) + p.output_padding[1] +
                        (kw - 1) * p.dilations[1] + 1 - p.pads[1] - p.pads[3];
  std::vector<double> acc(static_cast<size_t>(n_batch * out_c * out_h * out_w), 0.0);
  const std::vector<int64_t> out_shape = {n_batch, out_c, out_h, out_w};
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t g = c / in_per_group;
      for (int64_t h = 0; h < in_h; ++h) {
        for (int64_t v = 0; v < in_w; ++v) {
          const double value = Pixel(x, n, c, h, v);
          for (int64_t m = 0; m < out_per_group; ++m) {
            for (int64_t i = 0; i < kh; ++i) {
              const int64_t oh = h * p.strides[0] - p.pads[0] + i * p.dilations[0];
              if (oh < 0 || oh >= out_h) continue;
              for (int64_t j = 0; j < kw; ++j) {
                const int64_t ow = v * p.strides[1] - p.pads[1] + j * p.dilations[1];
                if (ow < 0 || ow >= out_w) continue;
                acc[Offset(out_shape, n, g * out_per_group + m, oh, ow)] +=
                    value * Pixel(w, c, m, i, j);
              }
            }
          }
        }
      }
    }
  }
  Tensor y = Floats(out_shape);
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t m = 0; m < out_c; ++m) {
      const double b = bias != nullptr ? bias->data<float>()[m] : 0.0;
      for (int64_t i = 0; i < out_h * out_w; ++i) {
        const int64_t offset = (n * out_c + m) * out_h * out_w + i;
        y.data<float>()[offset] = static_cast<float>(acc[offset] + b);
      }
    }
  }
  return y;
}

namespace {

template <typename Reduce>
Tensor Pool(const Tensor& x, const PoolParams& p, Reduce reduce) {
  const int64_t n_batch = x.shape[0], channels = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
  const int64_t out_h = WindowOutputSize(in_h, p.kernel[0], p.strides[0], p.pads[0], p.pads[2],
                                         p.dilations[0], p.ceil_mode);
  const int64_t out_w = WindowOutputSize(in_w, p.kernel[1], p.strides[1], p.pads[1], p.pads[3],
                                         p.dilations[1], p.ceil_mode);
  Tensor y = Floats({n_batch, channels, out_h, out_w});
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t oh = 0; oh < out_h; ++oh) {
        for (int64_t ow = 0; ow < out_w; ++ow) {
          y.data<float>()[Offset(y.shape, n, c, oh, ow)] = static_cast<float>(
              reduce(n, c, oh * p.strides[0] - p.pads[0], ow * p.strides[1] - p.pads[1]));
        }
      }
    }
  }
  return y;
}

}  // namespace

Tensor ReferenceMaxPool(const Tensor& x, const PoolParams& p) {
  const int64_t in_h = x.shape[2], in_w = x.shape[3];
  return Pool(x, p, [&](int64_t n, int64_t c, int64_t h0, int64_t w0) {
    double best = -std::numeric_limits<double>::infinity();
    for (int64_t i = 0; i < p.kernel[0]; ++i) {
      const int64_t h = h0 + i * p.dilations[0];
      if (h < 0 || h >= in_h) continue;
      for (int64_t j = 0; j < p.kernel[1]; ++j) {
        const int64_t w = w0 + j * p.dilations[1];
        if (w < 0 || w >= in_w) continue;
        best = std::max(best, Pixel(x, n, c, h, w));
      }
    }
    return best;
  });
}

Tensor ReferenceAveragePool(const Tensor& x, const PoolParams& p) {
  const int64_t in_h = x.shape[2], in_w = x.shape[3];
  return Pool(x, p, [&](int64_t n, int64_t c, int64_t h0, int64_t w0) {
    double sum = 0.0;
    int64_t inside = 0;
    int64_t inside_padded = 0;
    for (int64_t i = 0; i < p.kernel[0]; ++i) {
      const int64_t h = h0 + i;
      for (int64_t j = 0; j < p.kernel[1]; ++j) {
        const int64_t w = w0 + j;
        if (h >= -p.pads[0] && h < in_h + p.pads[2] && w >= -p.pads[1] && w < in_w + p.pads[3]) {
          ++inside_padded;
        }
        if (h < 0 || h >= in_h || w < 0 || w >= in_w) continue;
        sum += Pixel(x, n, c, h, w);
        ++inside;
      }
    }
    const int64_t divisor = p.count_include_pad ? inside_padded : inside;
    return divisor > 0 ? sum / static_cast<double>(divisor) : 0.0;
  });
}

Tensor ReferenceResize(const Tensor& x, const ResizeParams& p) {
  const int64_t n_batch = x.shape[0], channels = x.shape[1], in_h = x.shape[2], in_w = x.shape[3];
  Tensor y = Floats({n_batch, channels, p.out_h, p.out_w});
  const std::string& ctm = p.coordinate_transformation_mode;
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t oh = 0; oh < p.out_h; ++oh) {
        const double sh = SourceCoordinate(ctm, oh, p.scale_h, in_h, p.out_h, p.length_resized_h);
        for (int64_t ow = 0; ow < p.out_w; ++ow) {
          const double sw = SourceCoordinate(ctm, ow, p.scale_w, in_w, p.out_w, p.length_resized_w);
          double value;
          if (p.mode == "nearest") {
            value = Pixel(x, n, c, NearestIndex(p.nearest_mode, sh, in_h),
                          NearestIndex(p.nearest_mode, sw, in_w));
          } else {
            const double h_floor = std::floor(sh), w_floor = std::floor(sw);
            const double dh = sh - h_floor, dw = sw - w_floor;
            const int64_t h0 = std::clamp<int64_t>(static_cast<int64_t>(h_floor), 0, in_h - 1);
            const int64_t h1 = std::clamp<int64_t>(static_cast<int64_t>(h_floor) + 1, 0, in_h - 1);
            const int64_t w0 = std::clamp<int64_t>(static_cast<int64_t>(w_floor), 0, in_w - 1);
            const int64_t w1 = std::clamp<int64_t>(static_cast<int64_t>(w_floor) + 1, 0, in_w - 1);
            value = (1 - dh) * ((1 - dw) * Pixel(x, n, c, h0, w0) + dw * Pixel(x, n, c, h0, w1)) +
                    dh * ((1 - dw) * Pixel(x, n, c, h1, w0) + dw * Pixel(x, n, c, h1, w1));
          }
          y.data<float>()[Offset(y.shape, n, c, oh, ow)] = static_cast<float>(value);
        }
      }
    }
  }
  return y;
}

const char* BinaryOpName(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "Add";
    case BinaryOp::kSub:
      return "Sub";
    case BinaryOp::kMul:
      return "Mul";
    case BinaryOp::kDiv:
      return "Div";
  }
  return "?";
}

std::vector<int64_t> BroadcastShape(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                                    bool* ok) {
  *ok = true;
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) *ok = false;
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor ReferenceBinary(const Tensor& a, const Tensor& b, BinaryOp op) {
  bool ok = false;
  const std::vector<int64_t> out_shape = BroadcastShape(a.shape, b.shape, &ok);
  Tensor y = Floats(out_shape);
  if (!ok) return y;
  const size_t rank = out_shape.size();
  // Maps an output index to the flat index of an operand broadcast to it.
  auto source_index = [&](const std::vector<int64_t>& shape, const std::vector<int64_t>& index) {
    int64_t flat = 0;
    const size_t offset = rank - shape.size();
    for (size_t d = 0; d < shape.size(); ++d) {
      flat = flat * shape[d] + (shape[d] == 1 ? 0 : index[d + offset]);
    }
    return flat;
  };
  std::vector<int64_t> index(rank, 0);
  const int64_t count = Count(out_shape);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i;
    for (size_t d = rank; d-- > 0;) {
      index[d] = rest % out_shape[d];
      rest /= out_shape[d];
    }
    const double va = a.data<float>()[source_index(a.shape, index)];
    const double vb = b.data<float>()[source_index(b.shape, index)];
    double v = 0.0;
    switch (op) {
      case BinaryOp::kAdd:
        v = va + vb;
        break;
      case BinaryOp::kSub:
        v = va - vb;
        break;
      case BinaryOp::kMul:
        v = va * vb;
        break;
      case BinaryOp::kDiv:
        v = va / vb;
        break;
    }
    y.data<float>()[i] = static_cast<float>(v);
  }
  return y;
}

Tensor ReferenceBatchNorm(const Tensor& x, const Tensor& scale, const Tensor& bias,
                          const Tensor& mean, const Tensor& var, double epsilon) {
  Tensor y = x;
  const int64_t channels = x.shape[1];
  const int64_t inner = Count(x.shape) / (x.shape[0] * channels);
  for (int64_t n = 0; n < x.shape[0]; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const double k = scale.data<float>()[c] / std::sqrt(var.data<float>()[c] + epsilon);
      for (int64_t i = 0; i < inner; ++i) {
        float& v = y.data<float>()[(n * channels + c) * inner + i];
        v = static_cast<float>((v - mean.data<float>()[c]) * k + bias.data<float>()[c]);
      }
    }
  }
  return y;
}

Tensor ReferenceUnary(const Tensor& x, const std::function<double(double)>& fn) {
  Tensor y = x;
  for (int64_t i = 0; i < Count(x.shape); ++i) {
    y.data<float>()[i] = static_cast<float>(fn(x.data<float>()[i]));
  }
  return y;
}

}  // namespace rectifier::engine::testing
