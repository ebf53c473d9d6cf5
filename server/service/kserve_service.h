// inference.GRPCInferenceService (KServe v2 / Triton protocol) on gRPC's
// callback API. Methods not implemented yet answer UNIMPLEMENTED (the
// generated base class's default).
#ifndef RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
#define RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_

#include "grpc_service.grpc.pb.h"
#include "server/service/server_state.h"

namespace rectifier::service {

// Handlers never block: each returns a reactor that is already finished.
class KServeService final : public inference::GRPCInferenceService::CallbackService {
 public:
  // REQUIRES: `state` outlives this service.
  explicit KServeService(const ServerState* state) : state_(state) {}

  grpc::ServerUnaryReactor* ServerLive(grpc::CallbackServerContext* context,
                                       const inference::ServerLiveRequest* request,
                                       inference::ServerLiveResponse* response) override;
  grpc::ServerUnaryReactor* ServerReady(grpc::CallbackServerContext* context,
                                        const inference::ServerReadyRequest* request,
                                        inference::ServerReadyResponse* response) override;
  grpc::ServerUnaryReactor* ServerMetadata(grpc::CallbackServerContext* context,
                                           const inference::ServerMetadataRequest* request,
                                           inference::ServerMetadataResponse* response) override;

 private:
  const ServerState* state_;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_KSERVE_SERVICE_H_
