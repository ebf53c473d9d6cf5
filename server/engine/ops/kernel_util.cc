// Shared reference-kernel helpers.
#include "server/engine/ops/kernel_util.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"

namespace rectifier::engine {

absl::StatusOr<std::vector<int64_t>> BroadcastShapes(const std::vector<int64_t>& a,
                                                     const std::vector<int64_t>& b,
                                                     const Node& node) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          node.Describe(), ": shapes cannot be broadcast (dim ", i, ": ", da, " vs ", db, ")"));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> LegacyBroadcastShape(const Node& node, size_t a_rank,
                                          const std::vector<int64_t>& b) {
  if (node.opset >= 7 || node.GetInt("broadcast", 0) == 0 || !node.HasAttr("axis")) return b;
  int64_t axis = node.GetInt("axis", 0);
  if (axis < 0) axis += static_cast<int64_t>(a_rank);
  std::vector<int64_t> out = b;
  while (static_cast<int64_t>(out.size()) + axis < static_cast<int64_t>(a_rank)) out.push_back(1);
  return out;
}

std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) {
    // Only an empty tensor (a 0 among huge dimensions) can overflow here, and
    // its strides address nothing: saturate instead of overflowing.
    if (__builtin_mul_overflow(s[i + 1], shape[i + 1], &s[i])) {
      s[i] = std::numeric_limits<int64_t>::max();
    }
  }
  return s;
}

std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in,
                                      const std::vector<int64_t>& out) {
  std::vector<int64_t> s(out.size(), 0);
  std::vector<int64_t> cs = ContiguousStrides(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[i + off] = in[i] == 1 ? 0 : cs[i];
  return s;
}

absl::StatusOr<int> NormalizeAxis(int64_t axis, size_t rank, const Node& node) {
  const int64_t r = static_cast<int64_t>(rank);
  if (axis < -r || axis >= r) {
    return absl::InvalidArgumentError(
        absl::StrCat(node.Describe(), ": axis ", axis, " out of range for rank ", rank));
  }
  return static_cast<int>(axis < 0 ? axis + r : axis);
}

namespace {

// Every element of `t` converted to T (the switch runs once, not per element).
template <typename T>
std::vector<T> ReadAs(const Tensor& t) {
  std::vector<T> v(static_cast<size_t>(t.num_elements()));
  const auto convert = [&t, &v](auto tag) {
    using Source = decltype(tag);
    const Source* src = t.data<Source>();
    if constexpr (std::is_floating_point_v<Source> && std::is_integral_v<T>) {
      // A float tensor read as integers (a model that feeds shapes or
      // indices as floats): NaN and values beyond T saturate instead of
      // being undefined; NaN reads as the lowest value, which every shape
      // and index check refuses.
      constexpr auto kLowest = std::numeric_limits<T>::lowest();
      constexpr auto kMax = std::numeric_limits<T>::max();
      for (size_t i = 0; i < v.size(); ++i) {
        const double x = static_cast<double>(src[i]);
        v[i] = std::isnan(x)                       ? kLowest
               : x <= static_cast<double>(kLowest) ? kLowest
               : x >= static_cast<double>(kMax)    ? kMax
                                                   : static_cast<T>(x);
      }
    } else {
      for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(src[i]);
    }
  };
  switch (t.type) {
    case DataType::kInt64:
      convert(int64_t{});
      break;
    case DataType::kInt32:
      convert(int32_t{});
      break;
    case DataType::kFloat32:
      convert(float{});
      break;
    case DataType::kFloat64:
      convert(double{});
      break;
    case DataType::kInt8:
      convert(int8_t{});
      break;
    case DataType::kUint8:
    case DataType::kBool:
      convert(uint8_t{});
      break;
  }
  return v;
}

}  // namespace

std::vector<int64_t> ReadInts(const Tensor& t) { return ReadAs<int64_t>(t); }

std::vector<float> ReadFloats(const Tensor& t) { return ReadAs<float>(t); }

absl::StatusOr<const Tensor*> ConstInput(const Node& node, const std::vector<ValueInfo>& in,
                                         size_t i) {
  if (i >= in.size() || !in[i].present) return nullptr;
  if (in[i].value == nullptr) {
    return absl::UnimplementedError(absl::StrCat(node.Describe(), ": input ", i, " ('",
                                                 node.Input(i),
                                                 "') must be a compile-time constant"));
  }
  return in[i].value;
}

}  // namespace rectifier::engine
