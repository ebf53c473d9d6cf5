// The transport's own cost: unary KServe calls against an in-process
// GrpcServer over loopback, the floor every inference request pays.
#include <grpcpp/grpcpp.h>

#include <string>

#include "benchmark/benchmark.h"
#include "grpc_service.grpc.pb.h"
#include "server/service/grpc_server.h"

namespace rectifier::service {
namespace {

std::unique_ptr<GrpcServer> StartServer() {
  GrpcServerOptions options;
  options.address = "127.0.0.1:0";
  auto server = GrpcServer::Create(options);
  return server.ok() ? std::move(server).value() : nullptr;
}

void BM_ServerLiveRoundTrip(benchmark::State& state) {
  auto server = StartServer();
  if (server == nullptr) {
    state.SkipWithError("cannot start server");
    return;
  }
  auto stub = inference::GRPCInferenceService::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(server->port()), grpc::InsecureChannelCredentials()));
  for (auto _ : state) {
    grpc::ClientContext context;
    inference::ServerLiveResponse response;
    const grpc::Status status = stub->ServerLive(&context, {}, &response);
    if (!status.ok()) state.SkipWithError(status.error_message().c_str());
    benchmark::DoNotOptimize(response);
  }
  state.SetItemsProcessed(state.iterations());
  server->Drain(absl::ZeroDuration());
}
BENCHMARK(BM_ServerLiveRoundTrip)->UseRealTime();

}  // namespace
}  // namespace rectifier::service

BENCHMARK_MAIN();
