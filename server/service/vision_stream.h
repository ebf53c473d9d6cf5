// DetectStreamReactor: one DetectStream call; frames in, per-frame results
// out in frame order, with bounded in-flight frames and optional drop-stale.
#ifndef RECTIFIER_SERVER_SERVICE_VISION_STREAM_H_
#define RECTIFIER_SERVER_SERVICE_VISION_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "rectifier/v1/vision.pb.h"

namespace rectifier::service {

class VisionService;
struct ImageOutcome;

// Lifetime: created per call, deletes itself in OnDone. Finishes the call
// only once the client half-closed (or the call broke) and every started
// frame has completed, so no pool or scheduler callback outlives it.
//
// Flow control: at most max_in_flight frames are started and not yet
// written. At the limit the reactor stops reading (gRPC flow control then
// slows the client), or with drop_stale keeps reading and holds only the
// newest waiting frame, skipping older ones (listed in the next response).
class DetectStreamReactor final
    : public grpc::ServerBidiReactor<rectifier::v1::DetectStreamRequest,
                                     rectifier::v1::DetectStreamResponse> {
 public:
  static constexpr uint32_t kDefaultMaxInFlight = 4;
  static constexpr uint32_t kMaxInFlightLimit = 64;

  DetectStreamReactor(VisionService* service, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override { delete this; }

 private:
  struct Frame {
    rectifier::v1::DetectStreamRequest request;
    rectifier::v1::DetectStreamResponse response;
    std::string model_name;  // The frame's, else the stream's.
    std::string model_version;
    bool done = false;
  };

  // REQUIRES: mu_ held. Counts `frame` in flight and queues it for Launch.
  void StartFrame(std::unique_ptr<Frame> frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without mu_ (a refused frame completes inline): runs the frames.
  void Launch(const std::vector<Frame*>& frames);
  void FrameDone(Frame* frame, const ImageOutcome& outcome);
  // REQUIRES: mu_ held. Starts, reads and writes as the state allows; returns
  // the status to Finish() with once everything is done. The caller calls
  // Finish() only after releasing mu_ (OnDone may delete this right away).
  std::optional<grpc::Status> Advance() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartNextRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  VisionService* const service_;
  grpc::CallbackServerContext* const context_;
  std::unique_ptr<Frame> reading_;  // Target of the outstanding read.
  absl::Mutex mu_;
  bool configured_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t max_in_flight_ ABSL_GUARDED_BY(mu_) = kDefaultMaxInFlight;
  bool drop_stale_ ABSL_GUARDED_BY(mu_) = false;
  std::string model_name_ ABSL_GUARDED_BY(mu_);
  std::string model_version_ ABSL_GUARDED_BY(mu_);
  // Started frames in arrival order, until written.
  std::deque<std::unique_ptr<Frame>> in_flight_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Frame> waiting_ ABSL_GUARDED_BY(mu_);  // Read, not started.
  std::vector<uint64_t> skipped_ ABSL_GUARDED_BY(mu_);
  std::vector<Frame*> to_launch_ ABSL_GUARDED_BY(mu_);
  bool read_outstanding_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_VISION_STREAM_H_
