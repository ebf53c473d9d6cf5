#include "server/service/infer_stream.h"

#include <utility>

#include "absl/time/time.h"
#include "server/service/kserve_service.h"

namespace rectifier::service {

InferStream::InferStream(KServeService* service, grpc::CallbackServerContext* context)
    : service_(service), context_(context) {
  absl::MutexLock lock(&mu_);
  reading_ = std::make_unique<Call>();
  read_outstanding_ = true;
  StartRead(&reading_->request);
}

void InferStream::OnReadDone(bool ok) {
  Next next;
  {
    absl::MutexLock lock(&mu_);
    read_outstanding_ = false;
    if (!ok) {  // Half-close or a broken call: no more requests.
      reads_done_ = true;
      reading_.reset();
    } else {
      read_completed_ = reading_.release();
      ++in_flight_;
    }
    next = Advance();
  }
  Carry(next);
}

void InferStream::Carry(const Next& next) {
  if (next.finish) {
    Finish(next.status);  // `this` may be gone from here on.
    return;
  }
  Call* call = next.start;
  if (call == nullptr) return;
  service_->StartInfer(
      &call->request, call->response.mutable_infer_response(),
      absl::FromChrono(context_->deadline()),
      [context = context_] { return context->IsCancelled(); },
      [this, call](const absl::Status& status) { Completed(std::unique_ptr<Call>(call), status); });
}

void InferStream::Completed(std::unique_ptr<Call> call, const absl::Status& status) {
  if (!status.ok()) {
    // Triton's stream convention: the error travels in the message and
    // names the request, the stream stays open.
    call->response.clear_infer_response();
    call->response.set_error_message(std::string(status.message()));
    call->response.mutable_infer_response()->set_id(call->request.id());
    call->response.mutable_infer_response()->set_model_name(call->request.model_name());
  }
  Next next;
  {
    absl::MutexLock lock(&mu_);
    --in_flight_;
    if (!broken_) to_write_.push_back(std::move(call));
    next = Advance();
  }
  Carry(next);
}

void InferStream::OnWriteDone(bool ok) {
  Next next;
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    to_write_.pop_front();
    if (!ok) {
      broken_ = true;
      to_write_.clear();
    }
    next = Advance();
  }
  Carry(next);
}

InferStream::Next InferStream::Advance() {
  Next next;
  if (finished_) return next;
  // A request read by the last OnReadDone is launched by that same callback
  // (outside the lock): exactly one launcher per request.
  next.start = read_completed_;
  read_completed_ = nullptr;
  if (!writing_ && !to_write_.empty() && !broken_) {
    writing_ = true;
    StartWrite(&to_write_.front()->response);
  }
  const int pending = in_flight_ + static_cast<int>(to_write_.size());
  if (!read_outstanding_ && !reads_done_ && !broken_ && pending < kMaxPending) {
    reading_ = std::make_unique<Call>();
    read_outstanding_ = true;
    StartRead(&reading_->request);
  }
  // A broken call's outstanding read fails too, so waiting for it means no
  // callback is pending once we finish.
  if ((reads_done_ || broken_) && !read_outstanding_ && in_flight_ == 0 && !writing_ &&
      next.start == nullptr) {
    to_write_.clear();
    finished_ = true;
    next.finish = true;
    next.status =
        broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "client went away") : grpc::Status::OK;
  }
  return next;
}

}  // namespace rectifier::service
