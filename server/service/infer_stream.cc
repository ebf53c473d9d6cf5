#include "server/service/infer_stream.h"

#include <utility>

#include "absl/time/time.h"
#include "server/service/kserve_service.h"

namespace rectifier::service {

InferStream::InferStream(KServeService* service, grpc::CallbackServerContext* context)
    : service_(service), context_(context), reading_(std::make_unique<Call>()) {
  StartRead(&reading_->request);
}

void InferStream::OnReadDone(bool ok) {
  if (!ok) {  // half-close or a broken call: no more requests
    absl::MutexLock lock(&mu_);
    reads_done_ = true;
    Advance();
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    ++in_flight_;
  }
  Call* call = reading_.release();
  reading_ = std::make_unique<Call>();
  // Read the next request before this one computes, so a client can pipeline.
  StartRead(&reading_->request);
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
  absl::MutexLock lock(&mu_);
  --in_flight_;
  if (!broken_) to_write_.push_back(std::move(call));
  Advance();
}

void InferStream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  to_write_.pop_front();
  if (!ok) {
    broken_ = true;
    to_write_.clear();
  }
  Advance();
}

void InferStream::Advance() {
  if (finished_) return;
  if (!writing_ && !to_write_.empty() && !broken_) {
    writing_ = true;
    StartWrite(&to_write_.front()->response);
    return;
  }
  if (reads_done_ && in_flight_ == 0 && !writing_ && to_write_.empty()) {
    finished_ = true;
    Finish(broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "client went away")
                   : grpc::Status::OK);
  }
}

}  // namespace rectifier::service
