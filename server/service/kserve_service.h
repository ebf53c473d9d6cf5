// inference.GRPCInferenceService (KServe v2 / Triton protocol) on gRPC's
// callback API: every method of the service (docs/KSERVE.md).
#ifndef RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
#define RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpc_service.grpc.pb.h"
#include "server/common/clock.h"
#include "server/engine/tensor.h"
#include "server/metrics/model_metrics.h"
#include "server/security/tokens.h"
#include "server/service/server_state.h"
#include "server/service/shared_memory.h"
#include "server/service/work_pool.h"

namespace rectifier::repository {
class ModelRepository;
}  // namespace rectifier::repository

namespace rectifier::service {

class ImageMemoryBudget;
class WorkPool;

// Handlers never block: metadata calls answer at once; load/unload run on a
// control thread and finish their reactor from there.
class KServeService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // REQUIRES: `state`, `repository`, `image_pool` and `clock` outlive this
  // service. `repository` may be null (no models: model calls answer
  // UNAVAILABLE). `image_pool` decodes BYTES image inputs within
  // `image_budget` and encodes every response. `tokens` null: no token is
  // required. Otherwise ServerLive and ServerReady stay open, the repository
  // calls (index, load, unload) need the admin role and every other call the
  // infer role. `clock` times requests and their deadlines.
  KServeService(const ServerState* state, repository::ModelRepository* repository,
                WorkPool* image_pool, ImageMemoryBudget* image_budget,
                const security::TokenStore* tokens = nullptr,
                const common::Clock* clock = common::Clock::Real())
      : state_(state),
        repository_(repository),
        image_pool_(image_pool),
        image_budget_(image_budget),
        tokens_(tokens),
        clock_(clock),
        // One thread, in order; Post never refuses (a queued load is answered).
        control_(*WorkPool::Create(/*threads=*/1, /*max_queue=*/1)) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest* request,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest* request,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelReady(grpc::CallbackServerContext* context,
                                       const inference::ModelReadyRequest* request,
                                       inference::ModelReadyResponse* response) override;
  grpc::ServerUnaryReactor* ModelMetadata(grpc::CallbackServerContext* context,
                                          const inference::ModelMetadataRequest* request,
                                          inference::ModelMetadataResponse* response) override;
  grpc::ServerUnaryReactor* ModelConfig(grpc::CallbackServerContext* context,
                                        const inference::ModelConfigRequest* request,
                                        inference::ModelConfigResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfer(grpc::CallbackServerContext* context,
                                       const inference::ModelInferRequest* request,
                                       inference::ModelInferResponse* response) override;
  grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
  ModelStreamInfer(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* ModelStatistics(grpc::CallbackServerContext* context,
                                            const inference::ModelStatisticsRequest* request,
                                            inference::ModelStatisticsResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryIndex(grpc::CallbackServerContext* context,
                                            const inference::RepositoryIndexRequest* request,
                                            inference::RepositoryIndexResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryModelLoad(
      grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
      inference::RepositoryModelLoadResponse* response) override;
  grpc::ServerUnaryReactor* RepositoryModelUnload(
      grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
      inference::RepositoryModelUnloadResponse* response) override;
  // Triton's system shared memory extension; FAILED_PRECONDITION while
  // client shared memory is off (no registry set).
  grpc::ServerUnaryReactor* SystemSharedMemoryStatus(
      grpc::CallbackServerContext* context,
      const inference::SystemSharedMemoryStatusRequest* request,
      inference::SystemSharedMemoryStatusResponse* response) override;
  grpc::ServerUnaryReactor* SystemSharedMemoryRegister(
      grpc::CallbackServerContext* context,
      const inference::SystemSharedMemoryRegisterRequest* request,
      inference::SystemSharedMemoryRegisterResponse* response) override;
  grpc::ServerUnaryReactor* SystemSharedMemoryUnregister(
      grpc::CallbackServerContext* context,
      const inference::SystemSharedMemoryUnregisterRequest* request,
      inference::SystemSharedMemoryUnregisterResponse* response) override;

  // Client shared memory: inputs and outputs may name regions of
  // `registry` (null: off). Set before the service takes calls; `registry`
  // must outlive it.
  void set_shared_memory(SharedMemoryRegistry* registry) { shared_memory_ = registry; }
  SharedMemoryRegistry* shared_memory() const { return shared_memory_; }

  // Server readiness: started, not draining, and (strict) every model ready.
  bool Ready() const;

  // The calls above without their transport, shared with the HTTP endpoint
  // (http_endpoint.cc). The caller has authorized the call: the repository
  // calls need security::Role::kAdmin, the others kInfer (tokens()).
  void GetServerMetadata(inference::ServerMetadataResponse* response) const;
  // INVALID_ARGUMENT for an empty name; an unknown model is not ready.
  absl::StatusOr<bool> IsModelReady(const std::string& name, const std::string& version) const;
  absl::Status GetModelMetadata(const inference::ModelMetadataRequest& request,
                                inference::ModelMetadataResponse* response) const;
  absl::Status GetModelConfig(const inference::ModelConfigRequest& request,
                              inference::ModelConfigResponse* response) const;
  absl::Status GetModelStatistics(const inference::ModelStatisticsRequest& request,
                                  inference::ModelStatisticsResponse* response) const;
  absl::Status GetRepositoryIndex(const inference::RepositoryIndexRequest& request,
                                  inference::RepositoryIndexResponse* response) const;
  // Load (or unload) `model_name` on the control thread, then `done` there;
  // `done` runs on this thread for a refusal (explicit mode only, one
  // repository, no parameters).
  void ChangeModel(bool load, const std::string& repository_name, const std::string& model_name,
                   bool has_parameters, std::function<void(const absl::Status&)> done);
  const security::TokenStore* tokens() const { return tokens_; }

  // Resolves the model version, decodes `request` against it (tensors on
  // this thread, images on the image pool), hands it to the repository, and
  // calls `finish` exactly once after filling `response`: from the image
  // pool, which encodes every response, or from this call on an early
  // error. `request` and `response` must stay valid until then (inference
  // reads the request's raw input bytes in place). The request is counted
  // in the metrics under `api`.
  void StartInfer(const inference::ModelInferRequest* request,
                  inference::ModelInferResponse* response, absl::Time call_deadline,
                  std::function<bool()> is_cancelled,
                  std::function<void(const absl::Status&)> finish,
                  metrics::Api api = metrics::Api::kKServe);

 private:
  // One ModelInfer from its arrival to its answer (kserve_service.cc).
  struct Call;
  // BYTES image inputs: decoded and preprocessed on the image pool, then submitted.
  void StartImageInfer(const std::shared_ptr<Call>& call);
  // Selects the outputs and hands `inputs` to the repository.
  void SubmitInfer(std::shared_ptr<Call> call, std::vector<common::InputTensor> inputs);
  // On the image pool: encodes the response, accounts the request, answers.
  void CompleteInfer(const std::shared_ptr<Call>& call);
  // Accounts a call that failed before it ran on its resolved version, then answers.
  void Fail(const std::shared_ptr<Call>& call, const absl::Status& status);

  const ServerState* state_;
  SharedMemoryRegistry* shared_memory_ = nullptr;
  repository::ModelRepository* repository_;
  WorkPool* image_pool_;
  ImageMemoryBudget* image_budget_;
  const security::TokenStore* tokens_;
  const common::Clock* clock_;
  // Load and unload run here, not on gRPC threads (a compile takes seconds).
  // Last member: destroyed first, answering what is queued while the rest
  // still exists.
  std::unique_ptr<WorkPool> control_;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
