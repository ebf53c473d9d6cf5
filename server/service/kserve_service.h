// inference.GRPCInferenceService (KServe v2 / Triton protocol) on gRPC's
// callback API: every method of the service (docs/KSERVE.md).
#ifndef RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
#define RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_

#include <functional>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpc_service.grpc.pb.h"
#include "server/engine/tensor.h"
#include "server/security/tokens.h"
#include "server/service/image_pipeline.h"
#include "server/service/server_state.h"
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
  // REQUIRES: `state`, `repository` and `image_pool` outlive this service.
  // `repository` may be null (no models: model calls answer UNAVAILABLE).
  // `image_pool` decodes BYTES image inputs within `image_budget`.
  // `tokens` null: no token is required. Otherwise ServerLive and
  // ServerReady stay open, the repository calls (index, load, unload) need
  // the admin role and every other call the infer role.
  KServeService(const ServerState* state, repository::ModelRepository* repository,
                WorkPool* image_pool, ImageMemoryBudget* image_budget,
                const security::TokenStore* tokens = nullptr)
      : state_(state),
        repository_(repository),
        image_pool_(image_pool),
        image_budget_(image_budget),
        tokens_(tokens),
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

  // Server readiness: started, not draining, and (strict) every model ready.
  bool Ready() const;

  // Validates `request`, queues it on its model and calls `finish` exactly
  // once (from a scheduler thread, or from this call on an early error) after
  // filling `response`. `request` and `response` must stay valid until then.
  void StartInfer(const inference::ModelInferRequest* request,
                  inference::ModelInferResponse* response, absl::Time call_deadline,
                  std::function<bool()> is_cancelled,
                  std::function<void(const absl::Status&)> finish);

 private:
  // One ModelInfer on its way to the scheduler.
  struct Infer {
    const inference::ModelInferRequest* request;
    inference::ModelInferResponse* response;
    absl::Time start;
    absl::Time deadline;
    uint64_t priority;
    std::function<bool()> is_cancelled;
    std::function<void(const absl::Status&)> finish;
  };
  // BYTES image inputs: decoded and preprocessed on the image pool, then submitted.
  void StartImageInfer(Infer infer);
  // Queues on the model: `prepared` inputs (from images) or the request's tensors.
  void SubmitInfer(Infer infer, std::optional<std::vector<engine::Tensor>> prepared,
                   absl::Duration input_time);

  const ServerState* state_;
  repository::ModelRepository* repository_;
  WorkPool* image_pool_;
  ImageMemoryBudget* image_budget_;
  const security::TokenStore* tokens_;
  // Load and unload run here, not on gRPC threads (a compile takes seconds).
  // Last member: destroyed first, answering what is queued while the rest
  // still exists.
  std::unique_ptr<WorkPool> control_;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
