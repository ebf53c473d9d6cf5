// ModelStreamInfer: a bidirectional stream of ModelInferRequest in and
// ModelStreamInferResponse out, each request answered once, in completion
// order (responses carry the request id, as in Triton).
#ifndef RECTIFIER_SERVER_SERVICE_INFER_STREAM_H_
#define RECTIFIER_SERVER_SERVICE_INFER_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "grpc_service.pb.h"

namespace rectifier::service {

class KServeService;

// Lifetime: created per call, deletes itself in OnDone. It finishes the call
// only once the client has half-closed (or the call broke) AND every request
// it started has answered, so no scheduler callback can outlive it.
// A request that fails is answered in-stream with error_message; the stream
// itself goes on.
class InferStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                         inference::ModelStreamInferResponse> {
 public:
  InferStream(KServeService* service, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  struct Call {
    inference::ModelInferRequest request;
    inference::ModelStreamInferResponse response;
  };

  void Completed(std::unique_ptr<Call> call, const absl::Status& status);
  // REQUIRES: mu_ held. Starts the next write or finishes the call if all is done.
  void Advance() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  KServeService* service_;
  grpc::CallbackServerContext* context_;
  std::unique_ptr<Call> reading_;
  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed: the client is gone
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::unique_ptr<Call>> to_write_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_INFER_STREAM_H_
