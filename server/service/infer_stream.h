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
//
// Flow control: at most kMaxPending requests are read and not yet written
// (computing, or answered and waiting for the client to read). At the limit
// the reactor stops reading, so a client that sends without reading is
// slowed by gRPC flow control instead of growing the server's memory.
//
// Locking: decisions are taken under mu_; Finish() is called only after mu_
// is released, because OnDone() (which deletes this) may run on another
// thread as soon as Finish() is called.
class InferStream final : public grpc::ServerBidiReactor<inference::ModelInferRequest,
                                                         inference::ModelStreamInferResponse> {
 public:
  static constexpr int kMaxPending = 16;

  InferStream(KServeService* service, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  struct Call {
    inference::ModelInferRequest request;
    inference::ModelStreamInferResponse response;
  };

  // What Advance() decided; carried out once mu_ is released.
  struct Next {
    Call* start = nullptr;  // A read was started into this call: launch it.
    bool finish = false;
    grpc::Status status;
  };

  void Completed(std::unique_ptr<Call> call, const absl::Status& status);
  // REQUIRES: mu_ held. Starts the next write and the next read when the
  // window allows; returns whether the call must now finish.
  Next Advance() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without mu_: launches next.start or finishes. Touches nothing of `this`
  // after Finish().
  void Carry(const Next& next);

  KServeService* service_;
  grpc::CallbackServerContext* context_;
  absl::Mutex mu_;
  std::unique_ptr<Call> reading_ ABSL_GUARDED_BY(mu_);  // Target of the outstanding read.
  bool read_outstanding_ ABSL_GUARDED_BY(mu_) = false;
  Call* read_completed_ ABSL_GUARDED_BY(mu_) = nullptr;  // Read, not yet launched.
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;               // Launched, not yet completed.
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // a write failed: the client is gone
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::unique_ptr<Call>> to_write_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_INFER_STREAM_H_
