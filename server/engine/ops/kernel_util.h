// Helpers shared by the reference kernels: broadcasting, axis handling,
// reading shape-like constants, and element-type dispatch.
#ifndef RECTIFIER_SERVER_ENGINE_OPS_KERNEL_UTIL_H_
#define RECTIFIER_SERVER_ENGINE_OPS_KERNEL_UTIL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {

// memcpy that accepts null pointers when n == 0 (empty tensors).
inline void CopyBytes(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

// Numpy broadcasting of two shapes; INVALID_ARGUMENT naming the node.
absl::StatusOr<std::vector<int64_t>> BroadcastShapes(const std::vector<int64_t>& a,
                                                     const std::vector<int64_t>& b,
                                                     const Node& node);
// Shape of binary input B as numpy broadcasting should see it: opset < 7
// ops with broadcast=1 and `axis` align B at that axis of A (trailing 1s).
std::vector<int64_t> LegacyBroadcastShape(const Node& node, size_t a_rank,
                                          const std::vector<int64_t>& b);
// Strides of `in` viewed in the index space of `out` (0 on broadcast dims).
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in,
                                      const std::vector<int64_t>& out);
std::vector<int64_t> ContiguousStrides(const std::vector<int64_t>& shape);
// Negative axes count from the back; INVALID_ARGUMENT if outside [-rank, rank).
absl::StatusOr<int> NormalizeAxis(int64_t axis, size_t rank, const Node& node);
// Integer contents of an int64/int32 constant.
std::vector<int64_t> ReadInts(const Tensor& t);
std::vector<float> ReadFloats(const Tensor& t);
// Value of optional input `i`, requiring it to be constant (shape-defining
// inputs such as Reshape's shape). nullptr when absent; UNIMPLEMENTED when
// present but computed at run time.
absl::StatusOr<const Tensor*> ConstInput(const Node& node, const std::vector<ValueInfo>& in,
                                         size_t i);
// Calls fn(count, out_offset, in_offsets...) over the innermost dimension of
// `out_shape` for N broadcast inputs given their strides.
template <typename Fn>
void ForEachRow(const std::vector<int64_t>& out_shape,
                const std::vector<std::vector<int64_t>>& strides, Fn&& fn) {
  const size_t rank = out_shape.size();
  const size_t n = strides.size();
  if (NumElements(out_shape) == 0) return;
  if (rank == 0) {
    std::vector<int64_t> offs(n, 0);
    std::vector<int64_t> inner(n, 0);
    fn(1, 0, offs, inner);
    return;
  }
  const int64_t inner_count = out_shape[rank - 1];
  std::vector<int64_t> inner(n);
  for (size_t k = 0; k < n; ++k) inner[k] = strides[k][rank - 1];
  std::vector<int64_t> idx(rank, 0);
  std::vector<int64_t> offs(n, 0);
  int64_t out_off = 0;
  const int64_t rows = NumElements(out_shape) / inner_count;
  for (int64_t r = 0; r < rows; ++r) {
    for (size_t k = 0; k < n; ++k) {
      int64_t o = 0;
      for (size_t d = 0; d + 1 < rank; ++d) o += idx[d] * strides[k][d];
      offs[k] = o;
    }
    fn(inner_count, out_off, offs, inner);
    out_off += inner_count;
    for (int d = static_cast<int>(rank) - 2; d >= 0; --d) {
      if (++idx[d] < out_shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_KERNEL_UTIL_H_
