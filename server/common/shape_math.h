// Overflow-checked shape arithmetic for shapes that come from clients.
#ifndef RECTIFIER_SERVER_COMMON_SHAPE_MATH_H_
#define RECTIFIER_SERVER_COMMON_SHAPE_MATH_H_

#include <cstdint>
#include <optional>
#include <vector>

namespace rectifier::common {

// Elements of `shape` times `element_bytes`: nullopt when a dimension is
// negative or the product leaves [0, limit] (2^62 by default, so callers can
// still add to it).
inline std::optional<int64_t> CheckedShapeBytes(const std::vector<int64_t>& shape,
                                                int64_t element_bytes,
                                                int64_t limit = int64_t{1} << 62) {
  int64_t n = element_bytes;
  if (n < 0) return std::nullopt;
  for (const int64_t d : shape) {
    if (d < 0 || __builtin_mul_overflow(n, d, &n) || n > limit) return std::nullopt;
  }
  return n;
}

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_SHAPE_MATH_H_
