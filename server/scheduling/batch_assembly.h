// Batch assembly: which requests may share a batch, and concatenating their
// inputs along dim 0 / splitting the batch's outputs back per request.
#ifndef RECTIFIER_SERVER_SCHEDULING_BATCH_ASSEMBLY_H_
#define RECTIFIER_SERVER_SCHEDULING_BATCH_ASSEMBLY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/common/tensor.h"

namespace rectifier::scheduling {

// What two requests must agree on to share a batch: the number of inputs and,
// per input, the element type and every dimension except dim 0.
struct BatchSignature {
  struct Input {
    common::DataType type = common::DataType::kFloat32;
    std::vector<int64_t> dims;  // without dim 0 when batchable
    bool operator==(const Input& other) const { return type == other.type && dims == other.dims; }
  };
  std::vector<Input> inputs;

  bool operator==(const BatchSignature& other) const { return inputs == other.inputs; }
  bool operator!=(const BatchSignature& other) const { return !(*this == other); }
};

// Checks one request's inputs and returns its batch size (dim 0 when
// `batchable`, else 1). INVALID_ARGUMENT when there are no inputs, a tensor's
// byte count does not match its shape, a batchable input has rank 0 or
// dim 0 < 1, inputs disagree on dim 0, or dim 0 exceeds `max_batch_size`.
absl::StatusOr<int64_t> ValidateRequestInputs(const std::vector<common::InputTensor>& inputs,
                                              bool batchable, int64_t max_batch_size);

// REQUIRES: `inputs` passed ValidateRequestInputs with the same `batchable`.
BatchSignature SignatureOf(const std::vector<common::InputTensor>& inputs, bool batchable);

// Concatenates the requests' inputs along dim 0: input i of the result is
// input i of every request, in order. REQUIRES: `requests` is non-empty and
// all share one BatchSignature (so this is a byte copy). A single request's
// inputs are not concatenated: the scheduler runs their views as they are.
std::vector<common::Tensor> ConcatenateInputs(
    const std::vector<const std::vector<common::InputTensor>*>& requests);

// Splits a batch's outputs back per request: request r gets rows
// [sum(batch_sizes[0..r)), + batch_sizes[r]) of every output. INTERNAL when
// an output has rank 0, its dim 0 differs from sum(batch_sizes), or its byte
// count does not divide into rows.
absl::StatusOr<std::vector<std::vector<common::Tensor>>> SplitOutputs(
    std::vector<common::Tensor> outputs, const std::vector<int64_t>& batch_sizes);

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_BATCH_ASSEMBLY_H_
