// Reference kernels and shape inference for element-wise ops: unary math and
// activations, numpy-broadcast binary/comparison/logic ops, Where, Clip, Cast.
#include "server/engine/ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"
#include "onnx/onnx_pb.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/kernel_util.h"

namespace rectifier::engine {
namespace {

// ---- unary ----------------------------------------------------------------

using UnaryFn = std::function<float(float)>;

absl::StatusOr<UnaryFn> UnaryFunction(const Node& n) {
  const std::string& op = n.op_type;
  // NaN propagates (ONNX defines these as max/where over IEEE values).
  if (op == "Relu") return UnaryFn([](float x) { return x < 0 ? 0.0f : x; });
  if (op == "LeakyRelu") {
    float a = n.GetFloat("alpha", 0.01f);
    return UnaryFn([a](float x) { return x >= 0 ? x : a * x; });
  }
  if (op == "Swish") {
    // ONNX Swish (opset 24; SiLU when alpha = 1): x * sigmoid(alpha * x).
    float a = n.GetFloat("alpha", 1.0f);
    return UnaryFn([a](float x) { return x / (1.0f + std::exp(-a * x)); });
  }
  if (op == "Sigmoid") return UnaryFn([](float x) { return 1.0f / (1.0f + std::exp(-x)); });
  if (op == "Tanh") return UnaryFn([](float x) { return std::tanh(x); });
  if (op == "HardSigmoid") {
    float a = n.GetFloat("alpha", 0.2f), b = n.GetFloat("beta", 0.5f);
    return UnaryFn([a, b](float x) {
      const float v = a * x + b;
      return std::isnan(v) ? v : std::max(0.0f, std::min(1.0f, v));
    });
  }
  if (op == "HardSwish") {
    return UnaryFn([](float x) {
      return std::isnan(x) ? x : x * std::max(0.0f, std::min(1.0f, x / 6.0f + 0.5f));
    });
  }
  if (op == "Elu") {
    float a = n.GetFloat("alpha", 1.0f);
    return UnaryFn([a](float x) { return x > 0 ? x : a * (std::exp(x) - 1.0f); });
  }
  if (op == "Selu") {
    float a = n.GetFloat("alpha", 1.67326319217681884765625f);
    float g = n.GetFloat("gamma", 1.05070102214813232421875f);
    return UnaryFn([a, g](float x) { return x > 0 ? g * x : g * (a * std::exp(x) - a); });
  }
  if (op == "Celu") {
    float a = n.GetFloat("alpha", 1.0f);
    return UnaryFn(
        [a](float x) { return std::max(0.0f, x) + std::min(0.0f, a * (std::exp(x / a) - 1.0f)); });
  }
  if (op == "ThresholdedRelu") {
    float a = n.GetFloat("alpha", 1.0f);
    return UnaryFn([a](float x) { return x > a ? x : 0.0f; });
  }
  if (op == "Softplus") {
    return UnaryFn([](float x) { return x > 20 ? x : std::log1p(std::exp(x)); });
  }
  if (op == "Softsign") return UnaryFn([](float x) { return x / (1.0f + std::fabs(x)); });
  if (op == "Mish") {
    return UnaryFn([](float x) {
      float sp = x > 20 ? x : std::log1p(std::exp(x));
      return x * std::tanh(sp);
    });
  }
  if (op == "Gelu") {
    std::string approx = n.GetString("approximate", "none");
    if (approx == "tanh") {
      return UnaryFn([](float x) {
        return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
      });
    }
    if (approx != "none") {
      return absl::UnimplementedError(
          absl::StrCat("Gelu approximate '", approx, "' is not supported (node '", n.name, "')"));
    }
    return UnaryFn([](float x) { return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f)); });
  }
  if (op == "Exp") return UnaryFn([](float x) { return std::exp(x); });
  if (op == "Log") return UnaryFn([](float x) { return std::log(x); });
  if (op == "Sqrt") return UnaryFn([](float x) { return std::sqrt(x); });
  if (op == "Erf") return UnaryFn([](float x) { return std::erf(x); });
  if (op == "Reciprocal") return UnaryFn([](float x) { return 1.0f / x; });
  if (op == "Floor") return UnaryFn([](float x) { return std::floor(x); });
  if (op == "Ceil") return UnaryFn([](float x) { return std::ceil(x); });
  if (op == "Round") return UnaryFn([](float x) { return std::nearbyint(x); });
  if (op == "Sin") return UnaryFn([](float x) { return std::sin(x); });
  if (op == "Cos") return UnaryFn([](float x) { return std::cos(x); });
  return absl::InternalError(absl::StrCat("no unary function for ", n.Describe()));
}

absl::Status InferSame(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  if (in.empty() || !in[0].present) {
    return absl::InvalidArgumentError(absl::StrCat(n.Describe(), " needs an input"));
  }
  out[0].type = in[0].type;
  out[0].shape = in[0].shape;
  return absl::OkStatus();
}

absl::Status InferUnaryFloat(const Node& n, const std::vector<ValueInfo>& in,
                             std::vector<ValueInfo>& out) {
  RETURN_IF_ERROR(InferSame(n, in, out));
  if (in[0].type != DataType::kFloat32) {
    return absl::UnimplementedError(absl::StrCat(n.Describe(), ": only float32 is supported"));
  }
  return absl::OkStatus();
}

absl::Status ComputeUnaryFloat(const Node& n, const std::vector<View>& in,
                               const std::vector<View>& out) {
  ASSIGN_OR_RETURN(UnaryFn fn, UnaryFunction(n));
  const float* x = in[0].as<float>();
  float* y = out[0].as<float>();
  const int64_t count = in[0].size();
  for (int64_t i = 0; i < count; ++i) y[i] = fn(x[i]);
  return absl::OkStatus();
}

// Unary ops defined for every numeric type (Abs, Neg, Sign, Identity).
template <typename T>
void SignedUnary(const std::string& op, const T* x, T* y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (op == "Abs") {
      y[i] = x[i] < 0 ? static_cast<T>(-x[i]) : x[i];
    } else if (op == "Neg") {
      y[i] = static_cast<T>(-x[i]);
    } else if (op == "Sign") {
      y[i] = static_cast<T>(x[i] > 0 ? 1 : (x[i] < 0 ? -1 : 0));
    } else {
      y[i] = x[i];
    }
  }
}

absl::Status ComputeNumericUnary(const Node& n, const std::vector<View>& in,
                                 const std::vector<View>& out) {
  const int64_t c = in[0].size();
  switch (in[0].type) {
    case DataType::kFloat32:
      SignedUnary(n.op_type, in[0].as<float>(), out[0].as<float>(), c);
      break;
    case DataType::kFloat64:
      SignedUnary(n.op_type, in[0].as<double>(), out[0].as<double>(), c);
      break;
    case DataType::kInt64:
      SignedUnary(n.op_type, in[0].as<int64_t>(), out[0].as<int64_t>(), c);
      break;
    case DataType::kInt32:
      SignedUnary(n.op_type, in[0].as<int32_t>(), out[0].as<int32_t>(), c);
      break;
    case DataType::kInt8:
      SignedUnary(n.op_type, in[0].as<int8_t>(), out[0].as<int8_t>(), c);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      SignedUnary(n.op_type, in[0].as<uint8_t>(), out[0].as<uint8_t>(), c);
      break;
  }
  return absl::OkStatus();
}

absl::Status ComputeNot(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  const int64_t c = in[0].size();
  for (int64_t i = 0; i < c; ++i) out[0].as<uint8_t>()[i] = in[0].as<uint8_t>()[i] ? 0 : 1;
  return absl::OkStatus();
}

// ---- binary ---------------------------------------------------------------

bool IsComparison(const std::string& op) {
  return op == "Equal" || op == "Less" || op == "Greater" || op == "LessOrEqual" ||
         op == "GreaterOrEqual" || op == "And" || op == "Or" || op == "Xor";
}

bool IsVariadic(const std::string& op) {
  return op == "Max" || op == "Min" || op == "Sum" || op == "Mean";
}

absl::Status InferBinary(const Node& n, const std::vector<ValueInfo>& in,
                         std::vector<ValueInfo>& out) {
  if (in.empty()) return absl::InvalidArgumentError(absl::StrCat(n.Describe(), " has no inputs"));
  std::vector<int64_t> shape = in[0].shape;
  for (size_t i = 1; i < in.size(); ++i) {
    if (!in[i].present) continue;
    if (n.op_type == "PRelu" && n.opset < 7) continue;
    ASSIGN_OR_RETURN(
        shape, BroadcastShapes(shape, LegacyBroadcastShape(n, in[0].shape.size(), in[i].shape), n));
    if (in[i].type != in[0].type && n.op_type != "Pow") {
      return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": input element types differ"));
    }
  }
  out[0].shape = shape;
  out[0].type = IsComparison(n.op_type) ? DataType::kBool : in[0].type;
  return absl::OkStatus();
}

// Integer arithmetic wraps around (two's complement), as the hardware and
// ONNX Runtime do, instead of overflowing (undefined in C++).
template <typename T>
T WrapInt(T a, T b, char op) {
  using U = std::make_unsigned_t<T>;
  const U ua = static_cast<U>(a), ub = static_cast<U>(b);
  const U r = op == '+'   ? static_cast<U>(ua + ub)
              : op == '-' ? static_cast<U>(ua - ub)
                          : static_cast<U>(ua * ub);
  return static_cast<T>(r);
}

// A double result stored in integer type T: NaN -> 0, out of range ->
// the nearest bound.
template <typename T>
T SaturateToInt(double v) {
  if (std::isnan(v)) return 0;
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) {
    return std::numeric_limits<T>::lowest();
  }
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

template <typename T>
T ApplyBinary(const std::string& op, T a, T b) {
  constexpr bool kInt = std::is_integral_v<T>;
  if (op == "Add" || op == "Sum" || op == "Mean") {
    if constexpr (kInt) return WrapInt(a, b, '+');
    return static_cast<T>(a + b);
  }
  if (op == "Sub") {
    if constexpr (kInt) return WrapInt(a, b, '-');
    return static_cast<T>(a - b);
  }
  if (op == "Mul") {
    if constexpr (kInt) return WrapInt(a, b, '*');
    return static_cast<T>(a * b);
  }
  if (op == "Div") {
    if constexpr (kInt) {
      if (b == 0) return 0;
      // lowest / -1 does not fit: it wraps to lowest.
      if constexpr (std::is_signed_v<T>) {
        if (b == -1) return WrapInt(T{0}, a, '-');
      }
    }
    return static_cast<T>(a / b);
  }
  if (op == "Max") return a > b ? a : b;
  if (op == "Min") return a < b ? a : b;
  if (op == "PRelu") {
    if constexpr (kInt) return a >= 0 ? a : WrapInt(a, b, '*');
    return a >= 0 ? a : static_cast<T>(a * b);
  }
  if (op == "Mod") {
    if constexpr (std::is_integral_v<T>) {
      if (b == 0) return 0;
      if constexpr (std::is_signed_v<T>) {
        if (b == -1) return 0;  // lowest % -1 overflows
      }
      T r = static_cast<T>(a % b);
      if (r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
      return r;
    } else {
      return static_cast<T>(std::fmod(a, b));
    }
  }
  const double p = std::pow(static_cast<double>(a), static_cast<double>(b));  // Pow
  if constexpr (kInt) return SaturateToInt<T>(p);
  return static_cast<T>(p);
}

template <typename T>
uint8_t ApplyCompare(const std::string& op, T a, T b) {
  if (op == "Equal") return a == b;
  if (op == "Less") return a < b;
  if (op == "Greater") return a > b;
  if (op == "LessOrEqual") return a <= b;
  if (op == "GreaterOrEqual") return a >= b;
  if (op == "And") return (a != 0) && (b != 0);
  if (op == "Or") return (a != 0) || (b != 0);
  return (a != 0) != (b != 0);  // Xor
}

template <typename T>
void BinaryLoop(const Node& n, const View& a, const View& b, const View& y) {
  const auto sa = BroadcastStrides(a.shape, y.shape);
  const auto sb = BroadcastStrides(b.shape, y.shape);
  const T* pa = a.as<T>();
  const T* pb = b.as<T>();
  const std::string& op = n.op_type;
  const bool cmp = IsComparison(op);
  const bool fmod_int = op == "Mod" && n.GetInt("fmod", 0) != 0;
  ForEachRow(y.shape, {sa, sb},
             [&](int64_t count, int64_t out_off, const std::vector<int64_t>& offs,
                 const std::vector<int64_t>& inner) {
               for (int64_t i = 0; i < count; ++i) {
                 T va = pa[offs[0] + i * inner[0]];
                 T vb = pb[offs[1] + i * inner[1]];
                 if (cmp) {
                   y.as<uint8_t>()[out_off + i] = ApplyCompare<T>(op, va, vb);
                 } else if (fmod_int) {
                   if constexpr (std::is_integral_v<T>) {
                     y.as<T>()[out_off + i] = vb == 0 ? 0 : static_cast<T>(va % vb);
                   } else {
                     y.as<T>()[out_off + i] = static_cast<T>(std::fmod(va, vb));
                   }
                 } else {
                   y.as<T>()[out_off + i] = ApplyBinary<T>(op, va, vb);
                 }
               }
             });
}

// Pow with a float exponent tensor on any base type (and vice versa).
void PowMixed(const View& a, const View& b, const View& y) {
  const auto sa = BroadcastStrides(a.shape, y.shape);
  const auto sb = BroadcastStrides(b.shape, y.shape);
  auto load = [](const View& v, int64_t i) -> double {
    switch (v.type) {
      case DataType::kFloat32:
        return v.as<float>()[i];
      case DataType::kFloat64:
        return v.as<double>()[i];
      case DataType::kInt64:
        return static_cast<double>(v.as<int64_t>()[i]);
      case DataType::kInt32:
        return v.as<int32_t>()[i];
      case DataType::kInt8:
        return v.as<int8_t>()[i];
      default:
        return v.as<uint8_t>()[i];
    }
  };
  ForEachRow(y.shape, {sa, sb},
             [&](int64_t count, int64_t out_off, const std::vector<int64_t>& offs,
                 const std::vector<int64_t>& inner) {
               for (int64_t i = 0; i < count; ++i) {
                 double r =
                     std::pow(load(a, offs[0] + i * inner[0]), load(b, offs[1] + i * inner[1]));
                 switch (y.type) {
                   case DataType::kFloat32:
                     y.as<float>()[out_off + i] = static_cast<float>(r);
                     break;
                   case DataType::kFloat64:
                     y.as<double>()[out_off + i] = r;
                     break;
                   // Saturating, NaN to 0, as the integer-only Pow: an
                   // integer base with a float exponent can give NaN or
                   // values beyond the type (undefined in a plain cast).
                   case DataType::kInt64:
                     y.as<int64_t>()[out_off + i] = SaturateToInt<int64_t>(r);
                     break;
                   case DataType::kInt32:
                     y.as<int32_t>()[out_off + i] = SaturateToInt<int32_t>(r);
                     break;
                   default:
                     break;
                 }
               }
             });
}

absl::Status BinaryDispatch(const Node& n, const View& a, const View& b, const View& y) {
  if (n.op_type == "Pow" && a.type != b.type) {
    PowMixed(a, b, y);
    return absl::OkStatus();
  }
  switch (a.type) {
    case DataType::kFloat32:
      BinaryLoop<float>(n, a, b, y);
      break;
    case DataType::kFloat64:
      BinaryLoop<double>(n, a, b, y);
      break;
    case DataType::kInt64:
      BinaryLoop<int64_t>(n, a, b, y);
      break;
    case DataType::kInt32:
      BinaryLoop<int32_t>(n, a, b, y);
      break;
    case DataType::kInt8:
      BinaryLoop<int8_t>(n, a, b, y);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      BinaryLoop<uint8_t>(n, a, b, y);
      break;
  }
  return absl::OkStatus();
}

absl::Status ComputeBinary(const Node& n, const std::vector<View>& in,
                           const std::vector<View>& out) {
  if (n.op_type == "PRelu") {
    // Before opset 7 the slope broadcast unidirectionally along channels.
    View slope = in[1];
    if (slope.shape.size() == 1 && in[0].shape.size() > 2 && slope.shape[0] == in[0].shape[1] &&
        slope.shape[0] != in[0].shape.back()) {
      slope.shape = {slope.shape[0]};
      for (size_t i = 2; i < in[0].shape.size(); ++i) slope.shape.push_back(1);
    }
    return BinaryDispatch(n, in[0], slope, out[0]);
  }
  if (!IsVariadic(n.op_type) || in.size() == 2) {
    if (in.size() == 1) {
      CopyBytes(out[0].data, in[0].data, out[0].size() * DataTypeSize(out[0].type));
      return absl::OkStatus();
    }
    View b = in[1];
    b.shape = LegacyBroadcastShape(n, in[0].shape.size(), b.shape);
    RETURN_IF_ERROR(BinaryDispatch(n, in[0], b, out[0]));
  } else {
    // Variadic Max/Min/Sum/Mean: fold left through a scratch tensor so that
    // intermediate broadcast shapes stay correct.
    Tensor acc = Tensor::Zeros(in[0].type, in[0].shape);
    CopyBytes(acc.bytes.data(), in[0].data, acc.bytes.size());
    for (size_t i = 1; i < in.size(); ++i) {
      ASSIGN_OR_RETURN(auto shape, BroadcastShapes(acc.shape, in[i].shape, n));
      Tensor next = Tensor::Zeros(in[0].type, shape);
      View va{acc.type, acc.shape, acc.bytes.data()};
      View vn{next.type, next.shape, next.bytes.data()};
      RETURN_IF_ERROR(BinaryDispatch(n, va, in[i], vn));
      acc = std::move(next);
    }
    CopyBytes(out[0].data, acc.bytes.data(), acc.bytes.size());
  }
  if (n.op_type == "Mean" && in.size() > 1 && out[0].type == DataType::kFloat32) {
    float* y = out[0].as<float>();
    for (int64_t i = 0; i < out[0].size(); ++i) y[i] /= static_cast<float>(in.size());
  }
  return absl::OkStatus();
}

// ---- Where ------------------------------------------------------------------

absl::Status InferWhere(const Node& n, const std::vector<ValueInfo>& in,
                        std::vector<ValueInfo>& out) {
  if (in.size() != 3)
    return absl::InvalidArgumentError(absl::StrCat(n.Describe(), " needs 3 inputs"));
  ASSIGN_OR_RETURN(auto s, BroadcastShapes(in[0].shape, in[1].shape, n));
  ASSIGN_OR_RETURN(s, BroadcastShapes(s, in[2].shape, n));
  out[0].shape = s;
  out[0].type = in[1].type;
  return absl::OkStatus();
}

absl::Status ComputeWhere(const Node& n, const std::vector<View>& in,
                          const std::vector<View>& out) {
  const auto& y = out[0];
  const size_t es = DataTypeSize(y.type);
  auto sc = BroadcastStrides(in[0].shape, y.shape);
  auto sa = BroadcastStrides(in[1].shape, y.shape);
  auto sb = BroadcastStrides(in[2].shape, y.shape);
  const uint8_t* c = in[0].as<uint8_t>();
  const char* a = in[1].as<char>();
  const char* b = in[2].as<char>();
  char* o = y.as<char>();
  ForEachRow(y.shape, {sc, sa, sb},
             [&](int64_t count, int64_t out_off, const std::vector<int64_t>& offs,
                 const std::vector<int64_t>& inner) {
               for (int64_t i = 0; i < count; ++i) {
                 const char* src = c[offs[0] + i * inner[0]] ? a + (offs[1] + i * inner[1]) * es
                                                             : b + (offs[2] + i * inner[2]) * es;
                 CopyBytes(o + (out_off + i) * es, src, es);
               }
             });
  return absl::OkStatus();
}

// ---- Clip ---------------------------------------------------------------------

// Bounds from attributes (opset < 11) or optional inputs; must be constant.
absl::Status ClipBounds(const Node& n, const std::vector<ValueInfo>& in, float& lo, float& hi) {
  lo = -std::numeric_limits<float>::infinity();
  hi = std::numeric_limits<float>::infinity();
  if (n.opset < 11) {
    lo = n.GetFloat("min", lo);
    hi = n.GetFloat("max", hi);
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(const Tensor* tmin, ConstInput(n, in, 1));
  ASSIGN_OR_RETURN(const Tensor* tmax, ConstInput(n, in, 2));
  if (tmin) lo = ReadFloats(*tmin).at(0);
  if (tmax) hi = ReadFloats(*tmax).at(0);
  return absl::OkStatus();
}

template <typename T>
void ClipLoop(const View& x, const View& y, const View* lo, const View* hi) {
  T l = lo ? lo->as<T>()[0] : std::numeric_limits<T>::lowest();
  T h = hi ? hi->as<T>()[0] : std::numeric_limits<T>::max();
  for (int64_t i = 0; i < x.size(); ++i) y.as<T>()[i] = std::min(std::max(x.as<T>()[i], l), h);
}

absl::Status ComputeClip(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  if (n.opset < 11) {
    float lo = n.GetFloat("min", -std::numeric_limits<float>::infinity());
    float hi = n.GetFloat("max", std::numeric_limits<float>::infinity());
    for (int64_t i = 0; i < in[0].size(); ++i)
      out[0].as<float>()[i] = std::min(std::max(in[0].as<float>()[i], lo), hi);
    return absl::OkStatus();
  }
  const View* lo = in.size() > 1 && in[1].data ? &in[1] : nullptr;
  const View* hi = in.size() > 2 && in[2].data ? &in[2] : nullptr;
  switch (in[0].type) {
    case DataType::kFloat32:
      ClipLoop<float>(in[0], out[0], lo, hi);
      break;
    case DataType::kFloat64:
      ClipLoop<double>(in[0], out[0], lo, hi);
      break;
    case DataType::kInt64:
      ClipLoop<int64_t>(in[0], out[0], lo, hi);
      break;
    case DataType::kInt32:
      ClipLoop<int32_t>(in[0], out[0], lo, hi);
      break;
    case DataType::kInt8:
      ClipLoop<int8_t>(in[0], out[0], lo, hi);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      ClipLoop<uint8_t>(in[0], out[0], lo, hi);
      break;
  }
  return absl::OkStatus();
}

// ---- Cast -----------------------------------------------------------------------

absl::Status InferCast(const Node& n, const std::vector<ValueInfo>& in,
                       std::vector<ValueInfo>& out) {
  out[0].shape = in[0].shape;
  int to = static_cast<int>(n.GetInt("to", 1));
  auto attr = n.attrs.find("to");
  if (attr != n.attrs.end() && attr->second.kind == Attribute::Kind::kString) {
    // Cast-1 names the type.
    onnx::TensorProto::DataType t;
    if (!onnx::TensorProto::DataType_Parse(attr->second.s, &t))
      to = -1;
    else
      to = static_cast<int>(t);
  }
  switch (to) {
    case 1:
      out[0].type = DataType::kFloat32;
      break;
    case 7:
      out[0].type = DataType::kInt64;
      break;
    case 6:
      out[0].type = DataType::kInt32;
      break;
    case 2:
      out[0].type = DataType::kUint8;
      break;
    case 3:
      out[0].type = DataType::kInt8;
      break;
    case 9:
      out[0].type = DataType::kBool;
      break;
    case 11:
      out[0].type = DataType::kFloat64;
      break;
    default:
      return absl::UnimplementedError(
          absl::StrCat("Cast to type ", to, " is not supported (node '", n.name, "')"));
  }
  return absl::OkStatus();
}

// `v` as integer type T: floating values saturate (NaN to 0), as a plain
// cast of NaN or an out-of-range value is undefined; integers convert as
// C++ does (modulo for narrowing, as ONNX Runtime).
template <typename T, typename Src>
T ToInt(Src v) {
  if constexpr (std::is_floating_point_v<Src>) {
    return SaturateToInt<T>(static_cast<double>(v));
  } else {
    return static_cast<T>(v);
  }
}

template <typename Src>
void CastFrom(const Src* x, const View& y, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    switch (y.type) {
      case DataType::kFloat32:
        y.as<float>()[i] = static_cast<float>(x[i]);
        break;
      case DataType::kFloat64:
        y.as<double>()[i] = static_cast<double>(x[i]);
        break;
      case DataType::kInt64:
        y.as<int64_t>()[i] = ToInt<int64_t>(x[i]);
        break;
      case DataType::kInt32:
        y.as<int32_t>()[i] = ToInt<int32_t>(x[i]);
        break;
      case DataType::kInt8:
        y.as<int8_t>()[i] = ToInt<int8_t>(x[i]);
        break;
      case DataType::kUint8:
        y.as<uint8_t>()[i] = ToInt<uint8_t>(x[i]);
        break;
      case DataType::kBool:
        y.as<uint8_t>()[i] = x[i] != 0 ? 1 : 0;
        break;
    }
  }
}

absl::Status ComputeCast(const Node& n, const std::vector<View>& in, const std::vector<View>& out) {
  const int64_t c = in[0].size();
  switch (in[0].type) {
    case DataType::kFloat32:
      CastFrom(in[0].as<float>(), out[0], c);
      break;
    case DataType::kFloat64:
      CastFrom(in[0].as<double>(), out[0], c);
      break;
    case DataType::kInt64:
      CastFrom(in[0].as<int64_t>(), out[0], c);
      break;
    case DataType::kInt32:
      CastFrom(in[0].as<int32_t>(), out[0], c);
      break;
    case DataType::kInt8:
      CastFrom(in[0].as<int8_t>(), out[0], c);
      break;
    case DataType::kUint8:
    case DataType::kBool:
      CastFrom(in[0].as<uint8_t>(), out[0], c);
      break;
  }
  return absl::OkStatus();
}

}  // namespace

bool MapToEltwise(const Node& n, const std::vector<ValueInfo>& in, std::vector<PostOp>& ops) {
  auto push = [&](EltwiseFn fn, float a, float b) {
    PostOp p;
    p.kind = PostOp::Kind::kEltwise;
    p.fn = fn;
    p.alpha = a;
    p.beta = b;
    ops.push_back(p);
  };
  if (!in.empty() && in[0].type != DataType::kFloat32) return false;
  const std::string& op = n.op_type;
  if (op == "Relu") {
    push(EltwiseFn::kRelu, 0, 0);
  } else if (op == "LeakyRelu") {
    push(EltwiseFn::kRelu, n.GetFloat("alpha", 0.01f), 0);
  } else if (op == "Swish") {
    push(EltwiseFn::kSwish, n.GetFloat("alpha", 1.0f), 0);
  } else if (op == "PRelu") {
    // A single slope is a LeakyRelu; per-channel slopes are a prelu
    // primitive or post-op (LowerEltwise, FuseActivations).
    if (n.opset < 7 || in.size() < 2 || in[1].value == nullptr ||
        in[1].value->type != DataType::kFloat32 || in[1].value->num_elements() != 1 ||
        in[1].value->shape.size() > std::max<size_t>(1, in[0].shape.size()))
      return false;
    push(EltwiseFn::kRelu, in[1].value->data<float>()[0], 0);
  } else if (op == "Sigmoid") {
    push(EltwiseFn::kLogistic, 0, 0);
  } else if (op == "Tanh") {
    push(EltwiseFn::kTanh, 0, 0);
  } else if (op == "HardSigmoid") {
    // oneDNN 2.6 has no hardsigmoid: linear then clip to [0, 1].
    push(EltwiseFn::kLinear, n.GetFloat("alpha", 0.2f), n.GetFloat("beta", 0.5f));
    push(EltwiseFn::kClip, 0, 1);
  } else if (op == "HardSwish") {
    push(EltwiseFn::kHardSwish, 0, 0);
  } else if (op == "Elu") {
    push(EltwiseFn::kElu, n.GetFloat("alpha", 1.0f), 0);
  } else if (op == "Selu") {
    push(EltwiseFn::kElu, n.GetFloat("alpha", 1.67326319217681884765625f), 0);
    push(EltwiseFn::kLinear, n.GetFloat("gamma", 1.05070102214813232421875f), 0);
  } else if (op == "Softplus") {
    push(EltwiseFn::kSoftplus, 0, 0);
  } else if (op == "Mish") {
    push(EltwiseFn::kMish, 0, 0);
  } else if (op == "Exp") {
    push(EltwiseFn::kExp, 0, 0);
  } else if (op == "Log") {
    push(EltwiseFn::kLog, 0, 0);
  } else if (op == "Sqrt") {
    push(EltwiseFn::kSqrt, 0, 0);
  } else if (op == "Abs") {
    push(EltwiseFn::kAbs, 0, 0);
  } else if (op == "Neg") {
    push(EltwiseFn::kLinear, -1, 0);
  } else if (op == "Gelu") {
    std::string approx = n.GetString("approximate", "none");
    if (approx != "none" && approx != "tanh") return false;
    push(approx == "tanh" ? EltwiseFn::kGeluTanh : EltwiseFn::kGeluErf, 0, 0);
  } else if (op == "Clip") {
    float lo, hi;
    if (!ClipBounds(n, in, lo, hi).ok()) return false;
    if (n.opset >= 11 && in.size() > 1 && in[1].present && in[1].value &&
        in[1].value->type != DataType::kFloat32)
      return false;
    push(EltwiseFn::kClip, lo, hi);
  } else {
    return false;
  }
  return true;
}

bool MapToEltwise(const Node& node, const Graph& graph, std::vector<PostOp>& ops) {
  std::vector<ValueInfo> in(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    in[i].present = !node.inputs[i].empty();
    auto it = graph.constants.find(node.inputs[i]);
    if (it != graph.constants.end()) {
      in[i].value = &it->second;
      in[i].type = it->second.type;
      in[i].shape = it->second.shape;
    }
  }
  return MapToEltwise(node, in, ops);
}

namespace {

// A Cast to the type its input already has.
bool CastIsView(const Graph& g, const Node& n) {
  return g.value_info.at(n.outputs[0]).type == g.value_info.at(n.inputs[0]).type;
}

}  // namespace

void RegisterElementwiseOps(OpTable& t) {
  for (const char* op : {"Swish",
                         "Relu",
                         "LeakyRelu",
                         "Sigmoid",
                         "Tanh",
                         "HardSigmoid",
                         "HardSwish",
                         "Elu",
                         "Selu",
                         "Celu",
                         "ThresholdedRelu",
                         "Softplus",
                         "Softsign",
                         "Mish",
                         "Gelu",
                         "Exp",
                         "Log",
                         "Sqrt",
                         "Erf",
                         "Reciprocal",
                         "Floor",
                         "Ceil",
                         "Round",
                         "Sin",
                         "Cos"}) {
    t[op].Kernels(InferUnaryFloat, ComputeUnaryFloat).Lower(LowerEltwise);
  }
  for (const char* op : {"Abs", "Neg", "Sign"})
    t[op].Kernels(InferSame, ComputeNumericUnary).Lower(LowerEltwise);
  t["Identity"].Kernels(InferSame, ComputeNumericUnary).View(AlwaysView);
  t["Not"].Kernels(InferSame, ComputeNot);
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Equal", "Less", "Greater",
                         "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"}) {
    t[op].Kernels(InferBinary, ComputeBinary).Lower(LowerBinary).Inputs(2);
  }
  // Variadic: every listed input must be named.
  for (const char* op : {"Max", "Min", "Sum", "Mean"}) {
    t[op].Kernels(InferBinary, ComputeBinary).Lower(LowerBinary).Inputs(1, Arity::kAll);
  }
  // A scalar slope is an eltwise op; a broadcast one oneDNN's prelu.
  t["PRelu"].Kernels(InferBinary, ComputeBinary).Lower(LowerEltwise).Inputs(2);
  t["Where"].Kernels(InferWhere, ComputeWhere).Inputs(3);
  t["Clip"].Kernels(InferSame, ComputeClip).Lower(LowerEltwise).ValueInputs({1, 2});
  t["Cast"].Kernels(InferCast, ComputeCast).View(CastIsView);
}

}  // namespace rectifier::engine
