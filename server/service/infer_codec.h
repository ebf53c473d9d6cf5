// KServe v2 ModelInferRequest/Response <-> engine tensors: datatype and
// shape validation, raw and typed contents, lossless conversion to the
// model's input type, requested outputs.
#ifndef RECTIFIER_SERVER_SERVICE_INFER_CODEC_H_
#define RECTIFIER_SERVER_SERVICE_INFER_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc_service.pb.h"
#include "model_config.pb.h"
#include "server/engine/tensor.h"
#include "server/service/shared_memory.h"

namespace rectifier::service {

// The request's inputs as engine tensors in the config's input order, each
// converted to the config's data type. INVALID_ARGUMENT with a message naming
// the input for: unknown, missing or repeated inputs, an unknown datatype or
// one that cannot be converted losslessly, a shape that does not match the
// config's dims (with the batch dimension within [1, max_batch_size] for a
// batching model, equal across inputs), contents whose size does not match
// the shape, and raw and typed contents mixed in one request. An input
// whose parameters name a shared memory region (Triton's system shared
// memory extension) is read from it: INVALID_ARGUMENT when `shm` is null
// (client shared memory off), the region is unknown, the input also has
// contents, or its byte size is not the shape's; FAILED_PRECONDITION when
// the client shrank the object.
// Raw contents already in the config's data type are not copied: those
// inputs view `request`'s bytes, so `request` must outlive them (and, in
// the scheduler, the request's `done`); the others own theirs.
absl::StatusOr<std::vector<common::InputTensor>> DecodeInferInputs(
    const inference::ModelInferRequest& request, const inference::ModelConfig& config,
    const SharedMemoryRegistry* shm = nullptr);
// A temporary request would leave the inputs viewing freed bytes.
absl::StatusOr<std::vector<common::InputTensor>> DecodeInferInputs(
    inference::ModelInferRequest&& request, const inference::ModelConfig& config,
    const SharedMemoryRegistry* shm = nullptr) = delete;

// Indices (into config.output()) of the outputs to return: the requested
// ones in request order, or all. INVALID_ARGUMENT for an unknown name.
absl::StatusOr<std::vector<int>> SelectOutputs(const inference::ModelInferRequest& request,
                                               const inference::ModelConfig& config);

// Before compute: every requested output that names a shared memory
// region names a registered one, and its range fits in it.
// INVALID_ARGUMENT naming the output otherwise (also when `shm` is null).
absl::Status CheckOutputSharedMemory(const inference::ModelInferRequest& request,
                                     const SharedMemoryRegistry* shm);

// Writes the selected outputs as raw contents (the encoding Triton's gRPC
// endpoint returns), echoing model name, version and id. A requested output
// naming a shared memory region (checked by CheckOutputSharedMemory) is
// written there instead, its parameters say where and how many bytes, and
// its raw entry is empty. INVALID_ARGUMENT when the output is larger than
// its shared_memory_byte_size; FAILED_PRECONDITION when the client shrank
// the object.
absl::Status EncodeInferResponse(const inference::ModelInferRequest& request,
                                 const inference::ModelConfig& config, const std::string& version,
                                 const std::vector<int>& selected,
                                 std::vector<engine::Tensor> outputs,
                                 inference::ModelInferResponse* response,
                                 const SharedMemoryRegistry* shm = nullptr);

// An IEEE binary16 value (FP16 on the wire) as float; exact.
float HalfToFloat(uint16_t h);

// Well-known request parameters.
struct InferParameters {
  uint64_t priority = 0;                              // 0 = model default
  absl::Duration timeout = absl::InfiniteDuration();  // from "timeout" (µs)
};
absl::StatusOr<InferParameters> ParseInferParameters(const inference::ModelInferRequest& request);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_INFER_CODEC_H_
