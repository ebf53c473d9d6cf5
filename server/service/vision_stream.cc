#include "server/service/vision_stream.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "server/service/vision_service.h"

namespace rectifier::service {

DetectStreamReactor::DetectStreamReactor(VisionService* service,
                                         grpc::CallbackServerContext* context)
    : service_(service), context_(context) {
  absl::MutexLock lock(&mu_);
  StartNextRead();
}

void DetectStreamReactor::StartNextRead() {
  reading_ = std::make_unique<Frame>();
  read_outstanding_ = true;
  StartRead(&reading_->request);
}

void DetectStreamReactor::OnReadDone(bool ok) {
  std::vector<Frame*> launch;
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    read_outstanding_ = false;
    if (!ok) {  // Half-close or a broken call: no more frames.
      reads_done_ = true;
    } else {
      std::unique_ptr<Frame> frame = std::move(reading_);
      const rectifier::v1::DetectStreamRequest& request = frame->request;
      if (!configured_) {
        configured_ = true;
        const uint32_t asked = request.options().max_in_flight();
        max_in_flight_ = asked == 0 ? kDefaultMaxInFlight : std::min(asked, kMaxInFlightLimit);
        drop_stale_ = request.options().drop_stale();
        model_name_ = request.model_name();
        model_version_ = request.model_version();
      }
      frame->model_name = request.model_name().empty() ? model_name_ : request.model_name();
      frame->model_version =
          request.model_name().empty() ? model_version_ : request.model_version();
      if (waiting_ != nullptr) {
        // Only reachable with drop_stale: the older waiting frame is stale.
        skipped_.push_back(waiting_->request.frame_id());
      }
      waiting_ = std::move(frame);
    }
    finish = Advance();
    launch.swap(to_launch_);
  }
  if (finish.has_value()) {
    Finish(*finish);  // Nothing was left to launch; `this` may be gone now.
    return;
  }
  Launch(launch);
}

void DetectStreamReactor::StartFrame(std::unique_ptr<Frame> frame) {
  to_launch_.push_back(frame.get());
  in_flight_.push_back(std::move(frame));
}

void DetectStreamReactor::Launch(const std::vector<Frame*>& frames) {
  for (Frame* frame : frames) {
    auto job = std::make_unique<ImageJob>();
    job->start = service_->clock()->Now();
    const rectifier::v1::DetectStreamRequest& request = frame->request;
    absl::Status status =
        service_->Resolve(frame->model_name, frame->model_version, ImageTask::kDetection, *job);
    if (status.ok()) {
      status = ApplyDetectOverrides(
          request.has_score_threshold() ? std::optional<float>(request.score_threshold())
                                        : std::nullopt,
          request.has_iou_threshold() ? std::optional<float>(request.iou_threshold())
                                      : std::nullopt,
          0, {}, job->imaging->num_classes, job->detection);
    }
    if (!status.ok()) {
      ImageOutcome failed;
      failed.status = std::move(status);
      FrameDone(frame, failed);
      continue;
    }
    job->image_bytes = request.image().data();
    if (request.image().has_dicom()) job->dicom = &request.image().dicom();
    job->deadline = absl::FromChrono(context_->deadline());
    job->is_cancelled = [context = context_] { return context->IsCancelled(); };
    service_->RunImage(std::move(job),
                       [this, frame](const ImageOutcome& outcome) { FrameDone(frame, outcome); });
  }
}

void DetectStreamReactor::FrameDone(Frame* frame, const ImageOutcome& outcome) {
  std::vector<Frame*> launch;
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    rectifier::v1::DetectStreamResponse& response = frame->response;
    response.set_frame_id(frame->request.frame_id());
    response.set_model_version(outcome.version);
    if (outcome.status.ok()) {
      ToProto(outcome, response.mutable_result());
    } else {
      response.set_error_code(static_cast<int32_t>(outcome.status.code()));
      response.set_error_message(std::string(outcome.status.message()));
    }
    frame->done = true;
    finish = Advance();
    launch.swap(to_launch_);
  }
  if (finish.has_value()) {
    Finish(*finish);  // Nothing was left to launch; `this` may be gone now.
    return;
  }
  Launch(launch);
}

void DetectStreamReactor::OnWriteDone(bool ok) {
  std::vector<Frame*> launch;
  std::optional<grpc::Status> finish;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    in_flight_.pop_front();
    if (!ok) broken_ = true;
    finish = Advance();
    launch.swap(to_launch_);
  }
  if (finish.has_value()) {
    Finish(*finish);  // Nothing was left to launch; `this` may be gone now.
    return;
  }
  Launch(launch);
}

std::optional<grpc::Status> DetectStreamReactor::Advance() {
  if (finished_) return std::nullopt;
  if (broken_) {
    // The client is gone: nothing more is written; frames not started never are.
    waiting_.reset();
    while (!writing_ && !in_flight_.empty() && in_flight_.front()->done) in_flight_.pop_front();
  } else {
    if (waiting_ != nullptr && in_flight_.size() < max_in_flight_) StartFrame(std::move(waiting_));
    if (!writing_ && !in_flight_.empty() && in_flight_.front()->done) {
      Frame* front = in_flight_.front().get();
      for (const uint64_t id : skipped_) front->response.add_skipped_frame_ids(id);
      skipped_.clear();
      writing_ = true;
      StartWrite(&front->response);
    }
    // Without drop_stale a waiting frame stops reading: the client's writes
    // then block in gRPC flow control instead of piling up here.
    if (!read_outstanding_ && !reads_done_ && (waiting_ == nullptr || drop_stale_)) {
      StartNextRead();
    }
  }
  // A broken call's outstanding read fails too, so !read_outstanding_ also
  // means no callback is pending once the frames are done.
  if ((reads_done_ || broken_) && in_flight_.empty() && waiting_ == nullptr && !writing_ &&
      !read_outstanding_) {
    finished_ = true;
    return broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "client went away")
                   : grpc::Status::OK;
  }
  return std::nullopt;
}

}  // namespace rectifier::service
