// Concatenation and splitting along dim 0 are byte copies: tensors are dense
// row-major, so one request's rows are one contiguous range of the batch.
#include "server/scheduling/batch_assembly.h"

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rectifier::scheduling {
namespace {

using common::InputTensor;
using common::Tensor;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// Product of dims, or -1 when a dim is negative or the product overflows.
int64_t CheckedNumElements(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0) return -1;
    if (dim != 0 && count > INT64_MAX / dim) return -1;
    count *= dim;
  }
  return count;
}

}  // namespace

absl::StatusOr<int64_t> ValidateRequestInputs(const std::vector<InputTensor>& inputs,
                                              bool batchable, int64_t max_batch_size) {
  if (inputs.empty()) return absl::InvalidArgumentError("request has no inputs");
  int64_t batch_size = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputTensor& input = inputs[i];
    const int64_t elements = CheckedNumElements(input.shape);
    if (elements < 0 ||
        static_cast<uint64_t>(elements) * common::DataTypeSize(input.type) != input.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("input ", i, ": shape ",
                                                     ShapeString(input.shape), " does not match ",
                                                     input.bytes.size(), " bytes of data"));
    }
    if (!batchable) continue;
    if (input.shape.empty() || input.shape[0] < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input ", i, ": shape ", ShapeString(input.shape), " has no batch dimension >= 1"));
    }
    if (i == 0) {
      batch_size = input.shape[0];
    } else if (input.shape[0] != batch_size) {
      return absl::InvalidArgumentError(absl::StrCat("input ", i, ": batch dimension ",
                                                     input.shape[0], " differs from input 0's ",
                                                     batch_size));
    }
  }
  if (batch_size > max_batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size ", batch_size, " exceeds max_batch_size ", max_batch_size));
  }
  return batch_size;
}

BatchSignature SignatureOf(const std::vector<InputTensor>& inputs, bool batchable) {
  BatchSignature signature;
  signature.inputs.reserve(inputs.size());
  for (const InputTensor& input : inputs) {
    BatchSignature::Input entry;
    entry.type = input.type;
    const auto first = input.shape.begin() + ((batchable && !input.shape.empty()) ? 1 : 0);
    entry.dims.assign(first, input.shape.end());
    signature.inputs.push_back(std::move(entry));
  }
  return signature;
}

std::vector<Tensor> ConcatenateInputs(
    const std::vector<const std::vector<InputTensor>*>& requests) {
  const std::vector<InputTensor>& first = *requests.front();
  std::vector<Tensor> batch(first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    int64_t rows = 0;
    size_t bytes = 0;
    for (const std::vector<InputTensor>* request : requests) {
      rows += (*request)[i].shape[0];
      bytes += (*request)[i].bytes.size();
    }
    Tensor& out = batch[i];
    out.type = first[i].type;
    out.shape = first[i].shape;
    out.shape[0] = rows;
    out.bytes.resize(bytes);
    size_t offset = 0;
    for (const std::vector<InputTensor>* request : requests) {
      const common::ConstBytes& src = (*request)[i].bytes;
      if (!src.empty()) std::memcpy(out.bytes.data() + offset, src.data(), src.size());
      offset += src.size();
    }
  }
  return batch;
}

absl::StatusOr<std::vector<std::vector<Tensor>>> SplitOutputs(
    std::vector<Tensor> outputs, const std::vector<int64_t>& batch_sizes) {
  int64_t total = 0;
  for (const int64_t size : batch_sizes) total += size;
  for (size_t j = 0; j < outputs.size(); ++j) {
    const Tensor& output = outputs[j];
    if (output.shape.empty() || output.shape[0] != total ||
        (total > 0 && output.bytes.size() % static_cast<size_t>(total) != 0)) {
      return absl::InternalError(absl::StrCat("output ", j, " has shape ",
                                              ShapeString(output.shape), " (", output.bytes.size(),
                                              " bytes) but the batch has ", total, " rows"));
    }
  }
  std::vector<std::vector<Tensor>> per_request(batch_sizes.size());
  if (batch_sizes.size() == 1) {  // the common unbatched case: no copy
    per_request[0] = std::move(outputs);
    return per_request;
  }
  for (auto& request_outputs : per_request) request_outputs.resize(outputs.size());
  for (size_t j = 0; j < outputs.size(); ++j) {
    const Tensor& output = outputs[j];
    const size_t row_bytes = total > 0 ? output.bytes.size() / static_cast<size_t>(total) : 0;
    size_t offset = 0;
    for (size_t r = 0; r < batch_sizes.size(); ++r) {
      Tensor& slice = per_request[r][j];
      slice.type = output.type;
      slice.shape = output.shape;
      slice.shape[0] = batch_sizes[r];
      const size_t bytes = row_bytes * static_cast<size_t>(batch_sizes[r]);
      slice.bytes.assign(output.bytes.begin() + static_cast<std::ptrdiff_t>(offset),
                         output.bytes.begin() + static_cast<std::ptrdiff_t>(offset + bytes));
      offset += bytes;
    }
  }
  return per_request;
}

}  // namespace rectifier::scheduling
