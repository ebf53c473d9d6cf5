// KServe ModelInfer with encoded images: a BYTES input of shape [N] (or
// [N, 1]) whose elements are images, run through the model's imaging pipeline
// so one protocol serves tensor and image clients (docs/KSERVE.md).
#ifndef RECTIFIER_SERVER_SERVICE_IMAGE_INPUT_H_
#define RECTIFIER_SERVER_SERVICE_IMAGE_INPUT_H_

#include <functional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc_service.pb.h"
#include "model_config.pb.h"
#include "server/common/clock.h"
#include "server/engine/tensor.h"
#include "server/service/image_pipeline.h"

namespace rectifier::service {

// True when any input of the request has datatype BYTES.
bool HasImageInput(const inference::ModelInferRequest& request);

// The encoded images of the request's single BYTES input, pointing into the
// request: from `bytes_contents`, or from one raw_input_contents entry where
// each element is a 4-byte little-endian length followed by its bytes (the
// Triton client's BYTES serialization). INVALID_ARGUMENT naming the input for:
// more than one input, a name other than the model's input, a shape other
// than [N] or [N, 1], N outside [1, max(1, max_batch_size)], an element count
// that differs from N, truncated raw contents, or an empty image.
absl::StatusOr<std::vector<std::string_view>> SplitImageInput(
    const inference::ModelInferRequest& request, const inference::ModelConfig& config);

// Decodes and preprocesses each image into item i of one [N, ...] tensor,
// each within `budget` (null: unbounded). Before each image it checks
// `deadline` against `clock` (DEADLINE_EXCEEDED) and `is_cancelled`
// (CANCELLED, when set), so a client that gave up does not keep an image
// worker busy. Errors name the image index.
absl::StatusOr<engine::Tensor> PrepareImageBatch(
    const std::vector<std::string_view>& images, const ModelImaging& imaging,
    ImageMemoryBudget* budget, absl::Time deadline, const std::function<bool()>& is_cancelled,
    const common::Clock* clock = common::Clock::Real());

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_IMAGE_INPUT_H_
