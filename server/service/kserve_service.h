// inference.GRPCInferenceService (KServe v2 / Triton protocol) on gRPC's
// callback API: every method of the service (docs/KSERVE.md).
#ifndef RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
#define RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpc_service.grpc.pb.h"
#include "server/service/control_worker.h"
#include "server/service/server_state.h"

namespace rectifier::repository {
class ModelRepository;
}  // namespace rectifier::repository

namespace rectifier::service {

// Handlers never block: metadata calls answer at once; load/unload run on a
// control thread and finish their reactor from there.
class KServeService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // REQUIRES: `state` and `repository` outlive this service. `repository`
  // may be null (no models: model calls answer UNAVAILABLE).
  KServeService(const ServerState* state, repository::ModelRepository* repository)
      : state_(state), repository_(repository) {}

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
  const ServerState* state_;
  repository::ModelRepository* repository_;
  ControlWorker control_;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
