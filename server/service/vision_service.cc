#include "server/service/vision_service.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/repository/model_repository.h"
#include "server/service/call_auth.h"
#include "server/service/status_mapping.h"
#include "server/service/vision_stream.h"

namespace rectifier::service {
namespace {

uint64_t Micros(absl::Duration d) {
  return d < absl::ZeroDuration() ? 0 : static_cast<uint64_t>(absl::ToInt64Microseconds(d));
}

const char* TaskName(ImageTask task) {
  switch (task) {
    case ImageTask::kClassification:
      return "a classification";
    case ImageTask::kDetection:
      return "a detection";
    case ImageTask::kSegmentation:
      return "a segmentation";
    case ImageTask::kNone:
      break;
  }
  return "a raw-tensor";
}

const char* CallFor(ImageTask task) {
  switch (task) {
    case ImageTask::kClassification:
      return "Classify";
    case ImageTask::kDetection:
      return "Detect or DetectStream";
    case ImageTask::kSegmentation:
      return "Segment";
    case ImageTask::kNone:
      break;
  }
  return "ModelInfer with tensors";
}

absl::Status CheckImages(int count) {
  if (count == 0) return absl::InvalidArgumentError("the request has no images");
  if (count > kMaxImagesPerCall) {
    return absl::InvalidArgumentError(absl::StrCat("the request has ", count, " images; at most ",
                                                   kMaxImagesPerCall, " per call"));
  }
  return absl::OkStatus();
}

// One Classify/Detect call: collects every image's outcome and finishes the
// call when the last one arrives.
class UnaryCall {
 public:
  using Fill = std::function<void(std::vector<ImageOutcome>&)>;
  using Finish = std::function<void(const absl::Status&)>;
  UnaryCall(Finish finish, int images, Fill fill)
      : finish_(std::move(finish)), outcomes_(images), remaining_(images), fill_(std::move(fill)) {}

  void Done(int index, ImageOutcome outcome) {
    {
      absl::MutexLock lock(&mu_);
      outcomes_[index] = std::move(outcome);
      if (--remaining_ > 0) return;
    }
    // The last image: nobody else touches outcomes_ now.
    const bool single = outcomes_.size() == 1;
    for (size_t i = 0; i < outcomes_.size(); ++i) {
      const absl::Status& s = outcomes_[i].status;
      if (s.ok()) continue;
      finish_(single ? s : absl::Status(s.code(), absl::StrCat("image ", i, ": ", s.message())));
      return;
    }
    fill_(outcomes_);
    finish_(absl::OkStatus());
  }

 private:
  const Finish finish_;
  absl::Mutex mu_;
  std::vector<ImageOutcome> outcomes_;
  int remaining_ ABSL_GUARDED_BY(mu_);
  const Fill fill_;
};

void FillInfoAndTiming(const ImageOutcome& outcome, rectifier::v1::ImageInfo* info,
                       rectifier::v1::Timing* timing) {
  *info = outcome.info;
  *timing = outcome.timing;
}

// Everything one image carries between its stages.
struct ImageRun {
  std::unique_ptr<ImageJob> job;
  std::function<void(ImageOutcome)> done;
  ImageOutcome outcome;
  PreparedImage prepared;
  // The version that ran (may differ from job->served after a reload).
  std::shared_ptr<const repository::ServedModel> ran;
  absl::StatusOr<std::vector<engine::Tensor>> result;
  scheduling::RequestTimes times;
};

// Reports the outcome to the model's observer (statistics and metrics), then
// answers.
void Complete(const std::shared_ptr<ImageRun>& run, absl::Status status,
              const common::Clock& clock) {
  const repository::ServedModel& model = run->ran ? *run->ran : *run->job->served;
  ImageOutcome& outcome = run->outcome;
  const absl::Duration total = clock.Now() - run->job->start;
  outcome.status = std::move(status);
  outcome.version = std::to_string(model.version);
  outcome.timing.set_total_us(Micros(total));
  const absl::Duration postprocess = absl::Microseconds(outcome.timing.postprocess_us());
  repository::RequestPhases phases;
  phases.total = total;
  phases.input = run->prepared.decode + run->prepared.preprocess;
  phases.queue = absl::Microseconds(outcome.timing.queue_us());
  phases.infer = absl::Microseconds(outcome.timing.inference_us());
  phases.output = postprocess;
  phases.stages =
      repository::ImageStages{run->prepared.decode, run->prepared.preprocess, postprocess};
  model.observer->Finished(run->job->api, outcome.status, phases);
  auto done = std::move(run->done);
  ImageOutcome answer = std::move(run->outcome);
  // Drop the model references here, on a pool (or gRPC) thread: the last
  // reference to a retired version must never go on its own worker thread.
  run->ran.reset();
  run->job->served.reset();
  done(std::move(answer));
}

void Postprocess(const std::shared_ptr<ImageRun>& run, const common::Clock& clock) {
  if (!run->result.ok()) return Complete(run, run->result.status(), clock);
  const absl::Time start = clock.Now();
  ImageJob& job = *run->job;
  const engine::Tensor& output = run->result->front();
  absl::Status status;
  if (job.imaging->task == ImageTask::kClassification) {
    auto classes = ClassifyOutput(output, job.classification);
    status = classes.status();
    if (classes.ok()) run->outcome.classes = *std::move(classes);
  } else if (job.imaging->task == ImageTask::kSegmentation) {
    status = SegmentOutput(output, *job.imaging, job.segmentation, job.probability_classes,
                           run->prepared, &run->outcome.segmentation);
  } else {
    auto boxes = DetectOutput(output, *job.imaging, job.detection, run->prepared.transform);
    status = boxes.status();
    if (boxes.ok()) run->outcome.detections = *std::move(boxes);
  }
  run->outcome.timing.set_postprocess_us(Micros(clock.Now() - start));
  Complete(run, std::move(status), clock);
}

}  // namespace

void ToProto(const ImageOutcome& outcome, rectifier::v1::ClassifyResult* out) {
  for (const imaging::Classification& c : outcome.classes) {
    auto* cls = out->add_classes();
    cls->set_class_id(c.class_id);
    cls->set_label(c.label);
    cls->set_score(c.score);
  }
  FillInfoAndTiming(outcome, out->mutable_image(), out->mutable_timing());
}

void ToProto(const ImageOutcome& outcome, rectifier::v1::DetectResult* out) {
  for (const imaging::Detection& d : outcome.detections) {
    auto* det = out->add_detections();
    det->mutable_box()->set_x1(d.box.x1);
    det->mutable_box()->set_y1(d.box.y1);
    det->mutable_box()->set_x2(d.box.x2);
    det->mutable_box()->set_y2(d.box.y2);
    det->set_class_id(d.class_id);
    det->set_label(d.label);
    det->set_score(d.score);
  }
  FillInfoAndTiming(outcome, out->mutable_image(), out->mutable_timing());
}

void ToProto(ImageOutcome& outcome, rectifier::v1::SegmentResult* out) {
  out->Swap(&outcome.segmentation);
  FillInfoAndTiming(outcome, out->mutable_image(), out->mutable_timing());
}

absl::Status VisionService::Resolve(const std::string& name, const std::string& version,
                                    ImageTask task, ImageJob& job) {
  if (repository_ == nullptr) return absl::UnavailableError("this server has no model repository");
  if (name.empty()) return absl::InvalidArgumentError("model_name is empty");
  if (!state_->ready()) return absl::UnavailableError("server is not ready (draining)");
  auto served = repository_->Get(name, version);
  if (!served.ok()) return served.status();
  const repository::ImagingView& imaging = (*served)->imaging;
  if (!imaging.ok()) return imaging.status();
  if ((*imaging)->task != task) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' is ",
                                                      TaskName((*imaging)->task),
                                                      " model (its config.pbtxt "
                                                      "postprocessing.task); use ",
                                                      CallFor((*imaging)->task)));
  }
  job.served = *std::move(served);
  job.imaging = *imaging;
  job.model_name = name;
  job.requested_version = version;
  job.classification = job.imaging->classification;
  job.detection = job.imaging->detection;
  job.segmentation = job.imaging->segmentation;
  return absl::OkStatus();
}

void VisionService::RunImage(std::unique_ptr<ImageJob> job,
                             std::function<void(ImageOutcome)> done) {
  auto run = std::make_shared<ImageRun>();
  run->job = std::move(job);
  run->done = std::move(done);
  const absl::Status admitted = pool_->TrySubmit([this, run] {
    ImageJob& job = *run->job;
    if (job.is_cancelled && job.is_cancelled()) {
      return Complete(run, absl::CancelledError("the call was cancelled"), *clock_);
    }
    if (clock_->Now() >= job.deadline) {
      return Complete(
          run,
          absl::DeadlineExceededError("deadline passed while the image waited for an image worker"),
          *clock_);
    }
    auto prepared = PrepareImage(job.image_bytes, *job.imaging, job.dicom, budget_, clock_);
    if (!prepared.ok()) return Complete(run, prepared.status(), *clock_);
    run->prepared = *std::move(prepared);
    run->outcome.info = run->prepared.info;
    run->outcome.timing.set_decode_us(Micros(run->prepared.decode));
    run->outcome.timing.set_preprocess_us(Micros(run->prepared.preprocess));

    auto request = std::make_unique<scheduling::InferenceRequest>();
    request->inputs.push_back(std::move(run->prepared.tensor));
    request->priority = job.priority;
    request->deadline = job.deadline;
    request->is_cancelled = job.is_cancelled;
    // Called once, on a scheduler thread (or on this one, after Submit
    // returned, for a refusal): hand over to the pool at once (moving `run`
    // out, so the scheduler keeps no reference to it).
    request->done = [this, run = run](absl::StatusOr<std::vector<engine::Tensor>> result,
                                      const scheduling::RequestTimes& times) mutable {
      run->result = std::move(result);
      run->outcome.timing.set_queue_us(Micros(times.batch_start - times.enqueued));
      run->outcome.timing.set_inference_us(Micros(times.compute_end - times.batch_start));
      pool_->Post([this, run = std::move(run)] { Postprocess(run, *clock_); });
    };
    // A reload since Resolve runs the image on the new copy when its input
    // is the same (Submit checks), else refuses it.
    const absl::Status submitted =
        repository_->Submit(job.served, job.requested_version, std::move(request), &run->ran);
    if (!submitted.ok()) Complete(run, submitted, *clock_);
  });
  if (!admitted.ok()) Complete(run, admitted, *clock_);
}

namespace {

// What Classify and Detect share: checks, model resolution, the call's
// overrides (`apply`), then one RunImage per image; `finish` runs when the
// last image is done (or at once on an early error).
template <typename Request, typename Response>
void StartImages(VisionService& service, const Request* request, Response* response, ImageTask task,
                 const std::function<absl::Status(ImageJob&)>& apply,
                 const ImageCallContext& context) {
  ImageJob base;
  base.start = service.clock()->Now();
  absl::Status status = CheckImages(request->images_size());
  if (status.ok()) {
    status = service.Resolve(request->model_name(), request->model_version(), task, base);
  }
  if (status.ok()) status = apply(base);
  if (!status.ok()) return context.finish(status);
  base.priority = request->priority();
  base.deadline = RequestDeadline(context.deadline, base.start, request->timeout_us());
  base.is_cancelled = context.is_cancelled;
  base.api = context.api;
  auto call = std::make_shared<UnaryCall>(context.finish, request->images_size(),
                                          [request, response](std::vector<ImageOutcome>& outcomes) {
                                            response->set_model_name(request->model_name());
                                            response->set_model_version(outcomes.front().version);
                                            response->set_id(request->id());
                                            for (ImageOutcome& o : outcomes) {
                                              ToProto(o, response->add_results());
                                            }
                                          });
  for (int i = 0; i < request->images_size(); ++i) {
    auto job = std::make_unique<ImageJob>(base);
    job->image_bytes = request->images(i).data();
    if (request->images(i).has_dicom()) job->dicom = &request->images(i).dicom();
    service.RunImage(std::move(job),
                     [call, i](ImageOutcome outcome) { call->Done(i, std::move(outcome)); });
  }
}

// The gRPC side of a unary image call: its deadline, cancellation, and the
// reactor the answer goes to.
ImageCallContext GrpcCallContext(grpc::CallbackServerContext* context,
                                 grpc::ServerUnaryReactor* reactor) {
  ImageCallContext call;
  call.deadline = absl::FromChrono(context->deadline());
  call.is_cancelled = [context] { return context->IsCancelled(); };
  call.finish = [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); };
  return call;
}

}  // namespace

void VisionService::StartClassify(const rectifier::v1::ClassifyRequest* request,
                                  rectifier::v1::ClassifyResponse* response,
                                  const ImageCallContext& context) {
  StartImages(
      *this, request, response, ImageTask::kClassification,
      [request](ImageJob& job) {
        return ApplyClassifyOverrides(
            request->top_k(),
            request->has_threshold() ? std::optional<float>(request->threshold()) : std::nullopt,
            job.classification);
      },
      context);
}

void VisionService::StartDetect(const rectifier::v1::DetectRequest* request,
                                rectifier::v1::DetectResponse* response,
                                const ImageCallContext& context) {
  StartImages(
      *this, request, response, ImageTask::kDetection,
      [request](ImageJob& job) {
        return ApplyDetectOverrides(
            request->has_score_threshold() ? std::optional<float>(request->score_threshold())
                                           : std::nullopt,
            request->has_iou_threshold() ? std::optional<float>(request->iou_threshold())
                                         : std::nullopt,
            request->max_detections(), request->class_filter(), job.imaging->num_classes,
            job.detection);
      },
      context);
}

void VisionService::StartSegment(const rectifier::v1::SegmentRequest* request,
                                 rectifier::v1::SegmentResponse* response,
                                 const ImageCallContext& context) {
  StartImages(
      *this, request, response, ImageTask::kSegmentation,
      [request](ImageJob& job) {
        return ApplySegmentOverrides(
            request->probability_classes(), request->all_probabilities(),
            request->has_min_score() ? std::optional<float>(request->min_score()) : std::nullopt,
            job.imaging->num_classes, job.segmentation, job.probability_classes);
      },
      context);
}

grpc::ServerUnaryReactor* VisionService::Classify(grpc::CallbackServerContext* context,
                                                  const rectifier::v1::ClassifyRequest* request,
                                                  rectifier::v1::ClassifyResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  StartClassify(request, response, GrpcCallContext(context, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* VisionService::Detect(grpc::CallbackServerContext* context,
                                                const rectifier::v1::DetectRequest* request,
                                                rectifier::v1::DetectResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  StartDetect(request, response, GrpcCallContext(context, reactor));
  return reactor;
}

grpc::ServerUnaryReactor* VisionService::Segment(grpc::CallbackServerContext* context,
                                                 const rectifier::v1::SegmentRequest* request,
                                                 rectifier::v1::SegmentResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  StartSegment(request, response, GrpcCallContext(context, reactor));
  return reactor;
}

grpc::ServerBidiReactor<rectifier::v1::DetectStreamRequest, rectifier::v1::DetectStreamResponse>*
VisionService::DetectStream(grpc::CallbackServerContext* context) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return new RefusedStream<rectifier::v1::DetectStreamRequest,
                             rectifier::v1::DetectStreamResponse>(ToGrpcStatus(s));
  }
  return new DetectStreamReactor(this, context);
}

absl::Time RequestDeadline(absl::Time context_deadline, absl::Time start, uint64_t timeout_us) {
  // absl::Microseconds(uint64_t) converts to int64_t: 2^64 - 1 would be -1 us.
  if (timeout_us == 0 || timeout_us > static_cast<uint64_t>(INT64_MAX)) return context_deadline;
  return std::min(context_deadline, start + absl::Microseconds(static_cast<int64_t>(timeout_us)));
}

absl::Status ApplyClassifyOverrides(uint32_t top_k, std::optional<float> threshold,
                                    imaging::ClassificationOptions& options) {
  if (top_k > kMaxRequestTopK) {
    return absl::InvalidArgumentError(absl::StrCat("top_k is ", top_k, "; it must be in [0, ",
                                                   kMaxRequestTopK, "] (0: the model's)"));
  }
  if (top_k > 0) options.top_k = static_cast<int>(top_k);
  if (threshold.has_value()) options.threshold = *threshold;
  return imaging::ValidateClassificationOptions(options);
}

absl::Status ApplyDetectOverrides(std::optional<float> score_threshold,
                                  std::optional<float> iou_threshold, uint32_t max_detections,
                                  const google::protobuf::RepeatedField<uint32_t>& class_filter,
                                  int num_classes, imaging::DetectionOptions& options) {
  if (max_detections > kMaxRequestDetections) {
    return absl::InvalidArgumentError(absl::StrCat("max_detections is ", max_detections,
                                                   "; it must be in [0, ", kMaxRequestDetections,
                                                   "] (0: the model's)"));
  }
  for (const uint32_t id : class_filter) {
    if (id >= static_cast<uint32_t>(num_classes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "class_filter: class ", id, " does not exist (the model has ", num_classes, " classes)"));
    }
  }
  if (score_threshold.has_value()) options.score_threshold = *score_threshold;
  if (iou_threshold.has_value()) options.iou_threshold = *iou_threshold;
  if (max_detections > 0) options.max_detections = static_cast<int>(max_detections);
  if (!class_filter.empty()) options.class_filter.assign(class_filter.begin(), class_filter.end());
  return imaging::ValidateDetectionOptions(options);
}

absl::Status ApplySegmentOverrides(const google::protobuf::RepeatedField<uint32_t>& classes,
                                   bool all_probabilities, std::optional<float> min_score,
                                   int num_classes, imaging::SegmentationOptions& options,
                                   std::vector<int>& probability_classes) {
  probability_classes.clear();
  if (all_probabilities) {
    if (!classes.empty()) {
      return absl::InvalidArgumentError(
          "probability_classes and all_probabilities: set one or the other");
    }
    for (int c = 0; c < num_classes; ++c) probability_classes.push_back(c);
  }
  std::vector<bool> seen(static_cast<size_t>(num_classes), false);
  for (const uint32_t id : classes) {
    if (id >= static_cast<uint32_t>(num_classes)) {
      return absl::InvalidArgumentError(absl::StrCat("probability_classes: class ", id,
                                                     " does not exist (the model has ", num_classes,
                                                     " classes)"));
    }
    if (seen[id]) {
      return absl::InvalidArgumentError(
          absl::StrCat("probability_classes: class ", id, " is listed twice"));
    }
    seen[id] = true;
    probability_classes.push_back(static_cast<int>(id));
  }
  if (min_score.has_value()) options.min_score = *min_score;
  // Names min_score and its range when the override is out of it.
  return imaging::ValidateSegmentationOptions(options, num_classes);
}

}  // namespace rectifier::service
