#include "server/service/image_input.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rectifier::service {
namespace {

absl::Status InputError(const std::string& name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("input '", name, "': ", why));
}

}  // namespace

bool HasImageInput(const inference::ModelInferRequest& request) {
  for (const auto& input : request.inputs()) {
    if (input.datatype() == "BYTES") return true;
  }
  return false;
}

absl::StatusOr<std::vector<std::string_view>> SplitImageInput(
    const inference::ModelInferRequest& request, const inference::ModelConfig& config) {
  if (request.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a request with a BYTES (encoded image) input must have exactly one input, got ",
        request.inputs_size()));
  }
  const auto& input = request.inputs(0);
  const std::string& name = input.name();
  if (config.input_size() != 1 || config.input(0).name() != name) {
    return InputError(
        name, absl::StrCat("unknown input; model '", config.name(), "' takes its images as input '",
                           config.input_size() > 0 ? config.input(0).name() : "", "'"));
  }
  const auto& shape = input.shape();
  if (!(shape.size() == 1 || (shape.size() == 2 && shape[1] == 1))) {
    return InputError(name, absl::StrCat("a BYTES image input has shape [N] or [N, 1], got [",
                                         absl::StrJoin(shape, ", "), "]"));
  }
  if (input.parameters().count("shared_memory_region")) {
    return InputError(name,
                      "encoded images cannot come through shared memory; send them in "
                      "bytes_contents or raw_input_contents (tensors can)");
  }
  const int64_t n = shape[0];
  const int64_t max_batch = std::max(1, config.max_batch_size());
  if (n < 1 || n > max_batch) {
    return InputError(
        name, absl::StrCat(n, " images; this model takes 1 to ", max_batch, " per request"));
  }
  std::vector<std::string_view> images;
  if (request.raw_input_contents_size() > 0) {
    if (input.has_contents() && input.contents().bytes_contents_size() > 0) {
      return InputError(name, "both raw_input_contents and bytes_contents are set");
    }
    if (request.raw_input_contents_size() != 1) {
      return InputError(name, absl::StrCat("expected 1 raw_input_contents entry, got ",
                                           request.raw_input_contents_size()));
    }
    std::string_view raw = request.raw_input_contents(0);
    while (!raw.empty()) {
      if (raw.size() < 4) {
        return InputError(
            name, absl::StrCat("raw contents truncated in the length of element ", images.size()));
      }
      const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
      const uint64_t length = p[0] | (p[1] << 8) | (p[2] << 16) | (uint64_t{p[3]} << 24);
      raw.remove_prefix(4);
      if (length > raw.size()) {
        return InputError(name, absl::StrCat("raw contents truncated: element ", images.size(),
                                             " claims ", length, " bytes, ", raw.size(), " left"));
      }
      images.push_back(raw.substr(0, length));
      raw.remove_prefix(length);
    }
  } else if (input.has_contents()) {
    for (const std::string& b : input.contents().bytes_contents()) images.emplace_back(b);
  }
  if (static_cast<int64_t>(images.size()) != n) {
    return InputError(name,
                      absl::StrCat("shape says ", n, " images, contents hold ", images.size()));
  }
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].empty()) return InputError(name, absl::StrCat("image ", i, " is empty"));
  }
  return images;
}

absl::StatusOr<engine::Tensor> PrepareImageBatch(const std::vector<std::string_view>& images,
                                                 const ModelImaging& imaging,
                                                 ImageMemoryBudget* budget, absl::Time deadline,
                                                 const std::function<bool()>& is_cancelled,
                                                 const common::Clock* clock) {
  engine::Tensor batch;
  batch.type = engine::DataType::kFloat32;
  batch.shape = {static_cast<int64_t>(images.size())};
  batch.shape.insert(batch.shape.end(), imaging.input_item_shape.begin(),
                     imaging.input_item_shape.end());
  batch.bytes.resize(engine::NumElements(batch.shape) * sizeof(float));
  const size_t item_bytes = batch.bytes.size() / images.size();
  for (size_t i = 0; i < images.size(); ++i) {
    if (is_cancelled && is_cancelled()) {
      return absl::CancelledError(absl::StrCat("the call was cancelled before image ", i));
    }
    if (clock->Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("deadline passed after ", i, " of ", images.size(), " images"));
    }
    auto prepared = PrepareImage(images[i], imaging, nullptr, budget, clock);
    if (!prepared.ok()) {
      return absl::Status(prepared.status().code(),
                          absl::StrCat("image ", i, ": ", prepared.status().message()));
    }
    std::memcpy(batch.bytes.data() + i * item_bytes, prepared->tensor.bytes.data(), item_bytes);
  }
  return batch;
}

}  // namespace rectifier::service
