// rectifier.v1.Vision: encoded images in, labels, boxes or masks out
// (Classify, Detect, DetectStream, Segment). Image work runs on a WorkPool, inference on the
// model's scheduler; gRPC handlers only validate and hand off.
#ifndef RECTIFIER_SERVER_SERVICE_VISION_SERVICE_H_
#define RECTIFIER_SERVER_SERVICE_VISION_SERVICE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rectifier/v1/vision.grpc.pb.h"
#include "server/common/clock.h"
#include "server/imaging/classification.h"
#include "server/imaging/detection.h"
#include "server/imaging/segmentation.h"
#include "server/metrics/model_metrics.h"
#include "server/security/tokens.h"
#include "server/service/image_pipeline.h"
#include "server/service/server_state.h"
#include "server/service/work_pool.h"

namespace rectifier::repository {
class ModelRepository;
struct ServedModel;
}  // namespace rectifier::repository

namespace rectifier::service {

// Largest number of images in one Classify/Detect/Segment call.
inline constexpr int kMaxImagesPerCall = 256;
// The largest top_k and max_detections a call may ask for (the ceiling a
// model's config.pbtxt is clamped to). Checked as the unsigned values the
// client sent, so 4294967295 is refused by name instead of wrapping to -1.
inline constexpr uint32_t kMaxRequestTopK = 1u << 20;
inline constexpr uint32_t kMaxRequestDetections = 1u << 20;

// One image to run: resolved model, its imaging view, and the call's options.
struct ImageJob {
  std::shared_ptr<const repository::ServedModel> served;
  std::shared_ptr<const ModelImaging> imaging;
  std::string model_name;
  std::string requested_version;  // as the client asked ("" = newest)
  // Owned by the caller's request message; valid until `done` is called.
  std::string_view image_bytes;
  const rectifier::v1::DicomOptions* dicom = nullptr;  // null: the model's
  imaging::ClassificationOptions classification;       // after per-call overrides
  imaging::DetectionOptions detection;
  imaging::SegmentationOptions segmentation;
  std::vector<int> probability_classes;  // Segment: the maps asked for
  uint64_t priority = 0;
  absl::Time start;
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> is_cancelled;
  metrics::Api api = metrics::Api::kVision;  // the `api` label it is counted under
};

// What a transport gives a unary image call: its deadline (the request's
// timeout_us may make it earlier), whether its client went away (null:
// never), the metrics label, and where the answer goes (called once).
struct ImageCallContext {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> is_cancelled;
  metrics::Api api = metrics::Api::kVision;
  std::function<void(const absl::Status&)> finish;
};

// What one image produced. `status` not OK: the rest is unset.
struct ImageOutcome {
  absl::Status status;
  std::string version;  // the version that ran
  rectifier::v1::ImageInfo info;
  rectifier::v1::Timing timing;
  std::vector<imaging::Classification> classes;
  std::vector<imaging::Detection> detections;
  rectifier::v1::SegmentResult segmentation;  // Segment: mask, areas, maps
};

class VisionService final : public rectifier::v1::Vision::CallbackService {
 public:
  // REQUIRES: all of them outlive the service; `repository` may be null (no
  // models: calls answer UNAVAILABLE). `tokens` null: no token is required;
  // otherwise every call needs one with the infer role. `clock` times
  // requests and their deadlines.
  VisionService(const ServerState* state, repository::ModelRepository* repository, WorkPool* pool,
                ImageMemoryBudget* budget, const security::TokenStore* tokens = nullptr,
                const common::Clock* clock = common::Clock::Real())
      : state_(state),
        repository_(repository),
        pool_(pool),
        budget_(budget),
        tokens_(tokens),
        clock_(clock) {}

  const security::TokenStore* tokens() const { return tokens_; }
  const common::Clock* clock() const { return clock_; }

  grpc::ServerUnaryReactor* Classify(grpc::CallbackServerContext* context,
                                     const rectifier::v1::ClassifyRequest* request,
                                     rectifier::v1::ClassifyResponse* response) override;
  grpc::ServerUnaryReactor* Detect(grpc::CallbackServerContext* context,
                                   const rectifier::v1::DetectRequest* request,
                                   rectifier::v1::DetectResponse* response) override;
  grpc::ServerBidiReactor<rectifier::v1::DetectStreamRequest, rectifier::v1::DetectStreamResponse>*
  DetectStream(grpc::CallbackServerContext* context) override;
  grpc::ServerUnaryReactor* Segment(grpc::CallbackServerContext* context,
                                    const rectifier::v1::SegmentRequest* request,
                                    rectifier::v1::SegmentResponse* response) override;

  // Classify and Detect without their transport, shared with the HTTP
  // image routes (http_endpoint.cc). The caller has authorized the call
  // (the infer role). `request` and `response` must stay valid until
  // context.finish is called, from an image worker or, on an early error,
  // from this call.
  void StartClassify(const rectifier::v1::ClassifyRequest* request,
                     rectifier::v1::ClassifyResponse* response, const ImageCallContext& context);
  void StartDetect(const rectifier::v1::DetectRequest* request,
                   rectifier::v1::DetectResponse* response, const ImageCallContext& context);
  void StartSegment(const rectifier::v1::SegmentRequest* request,
                    rectifier::v1::SegmentResponse* response, const ImageCallContext& context);

  // Resolves the model and checks it serves `task`: NOT_FOUND/UNAVAILABLE
  // from the repository, FAILED_PRECONDITION for the wrong task.
  absl::Status Resolve(const std::string& name, const std::string& version, ImageTask task,
                       ImageJob& job);
  // Decode + preprocess (pool), inference (scheduler), postprocess (pool);
  // calls `done` exactly once, from a pool thread, or from this call when
  // the pool refuses the work (queue full).
  void RunImage(std::unique_ptr<ImageJob> job, std::function<void(ImageOutcome)> done);

 private:
  const ServerState* state_;
  repository::ModelRepository* repository_;
  WorkPool* pool_;
  ImageMemoryBudget* budget_;  // Images being decoded.
  const security::TokenStore* tokens_;
  const common::Clock* clock_;
};

// Per-call classification overrides (0 / nullopt: keep the model's), then
// validation: INVALID_ARGUMENT naming the field and its allowed range.
absl::Status ApplyClassifyOverrides(uint32_t top_k, std::optional<float> threshold,
                                    imaging::ClassificationOptions& options);

// Per-call detection overrides (nullopt / 0 / empty: keep the model's), then
// validation: INVALID_ARGUMENT naming the field (and its allowed range).
absl::Status ApplyDetectOverrides(std::optional<float> score_threshold,
                                  std::optional<float> iou_threshold, uint32_t max_detections,
                                  const google::protobuf::RepeatedField<uint32_t>& class_filter,
                                  int num_classes, imaging::DetectionOptions& options);

// Per-call segmentation overrides: the probability maps asked for (ids
// below num_classes, each once; all_probabilities: every class) and
// min_score in [0, 1]. INVALID_ARGUMENT naming the field.
absl::Status ApplySegmentOverrides(const google::protobuf::RepeatedField<uint32_t>& classes,
                                   bool all_probabilities, std::optional<float> min_score,
                                   int num_classes, imaging::SegmentationOptions& options,
                                   std::vector<int>& probability_classes);

// The earlier of `context_deadline` and start + timeout_us (0: none). A
// timeout beyond what absl::Duration's int64 microseconds hold means none,
// never a negative (already expired) timeout.
absl::Time RequestDeadline(absl::Time context_deadline, absl::Time start, uint64_t timeout_us);

// Fills a result message from an outcome.
void ToProto(const ImageOutcome& outcome, rectifier::v1::ClassifyResult* out);
void ToProto(const ImageOutcome& outcome, rectifier::v1::DetectResult* out);
// Moves the outcome's mask and maps into `out`.
void ToProto(ImageOutcome& outcome, rectifier::v1::SegmentResult* out);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_VISION_SERVICE_H_
