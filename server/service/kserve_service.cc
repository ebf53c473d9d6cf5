#include "server/service/kserve_service.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/status_macros.h"
#include "server/repository/model_config.h"
#include "server/repository/model_repository.h"
#include "server/service/call_auth.h"
#include "server/service/image_input.h"
#include "server/service/infer_codec.h"
#include "server/service/infer_stream.h"
#include "server/service/status_mapping.h"
#include "server/service/work_pool.h"

namespace rectifier::service {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context, const absl::Status& status) {
  return Finish(context, ToGrpcStatus(status));
}

const absl::Status kNoRepository = absl::UnavailableError("this server has no model repository");

// Load and unload are for explicit mode only, as in Triton: in `none` the
// set of models is fixed at start, in `poll` the repository's contents
// decide it.
absl::Status CheckExplicitMode(const repository::ModelRepository& repository, const char* call) {
  const repository::ControlMode mode = repository.mode();
  if (mode == repository::ControlMode::kExplicit) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      call, " is not allowed: the server runs with --model-control-mode ",
      mode == repository::ControlMode::kPoll ? "poll" : "none",
      "; start it with --model-control-mode explicit to load and unload models through the API"));
}

// A server has one repository; clients address it with an empty name.
absl::Status CheckRepositoryName(const std::string& name) {
  if (name.empty()) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("unknown repository '", name,
                                          "' (this server has one; leave repository_name empty)"));
}

// Accounts a request of `model` that failed before it ran: its outcome and
// time in the server.
void CountFailure(const repository::ServedModel& model, const absl::Status& status,
                  absl::Time start) {
  repository::RequestPhases phases;
  phases.total = absl::Now() - start;
  model.observer->Finished(metrics::Api::kKServe, status, phases);
}

}  // namespace

bool KServeService::Ready() const {
  return state_->ready() && (repository_ == nullptr || repository_->AllReady());
}

grpc::ServerUnaryReactor* KServeService::ServerLive(grpc::CallbackServerContext* context,
                                                    const inference::ServerLiveRequest* /*request*/,
                                                    inference::ServerLiveResponse* response) {
  response->set_live(true);  // answering is being live
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::ServerReady(
    grpc::CallbackServerContext* context, const inference::ServerReadyRequest* /*request*/,
    inference::ServerReadyResponse* response) {
  response->set_ready(Ready());
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest* /*request*/,
    inference::ServerMetadataResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  response->set_name("rectifier");
  response->set_version(RECTIFIER_VERSION);
  // Only what is implemented end to end is listed.
  if (repository_ != nullptr) {
    response->add_extensions("model_configuration");
    response->add_extensions("model_repository");
    response->add_extensions("statistics");
  }
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::ModelReady(grpc::CallbackServerContext* context,
                                                    const inference::ModelReadyRequest* request,
                                                    inference::ModelReadyResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (request->name().empty()) {
    return Finish(context, absl::InvalidArgumentError("model name is empty"));
  }
  // Unknown or not-ready models are simply not ready (Triton's answer).
  response->set_ready(repository_ != nullptr && state_->ready() &&
                      repository_->Get(request->name(), request->version()).ok());
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::ModelMetadata(
    grpc::CallbackServerContext* context, const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  auto served = repository_->Get(request->name(), request->version());
  if (!served.ok()) return Finish(context, served.status());
  const inference::ModelConfig& config = (*served)->config;
  response->set_name(config.name());
  for (const int64_t v : repository_->ReadyVersions(config.name())) {
    response->add_versions(std::to_string(v));
  }
  response->set_platform(config.platform().empty() ? "rectifier_onnx" : config.platform());
  const bool batched = config.max_batch_size() > 0;
  const auto describe = [batched](const auto& tensor, auto* out) {
    out->set_name(tensor.name());
    out->set_datatype(repository::KServeDataType(tensor.data_type()));
    if (batched) out->add_shape(-1);
    for (const int64_t d : tensor.dims()) out->add_shape(d);
  };
  for (const auto& input : config.input()) describe(input, response->add_inputs());
  for (const auto& output : config.output()) describe(output, response->add_outputs());
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::ModelConfig(grpc::CallbackServerContext* context,
                                                     const inference::ModelConfigRequest* request,
                                                     inference::ModelConfigResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  auto served = repository_->Get(request->name(), request->version());
  if (!served.ok()) return Finish(context, served.status());
  *response->mutable_config() = (*served)->config;
  // The effective activations after pattern recognition and `replace`
  // (docs/ACTIVATIONS.md), so a client can see what actually runs.
  const engine::ActivationSummary& activations = (*served)->model->activation_summary();
  auto& parameters = *response->mutable_config()->mutable_parameters();
  parameters["rectifier.activations"].set_string_value(activations.ToString());
  if (!activations.warning.empty()) {
    parameters["rectifier.activation_warning"].set_string_value(activations.warning);
  }
  return Finish(context, grpc::Status::OK);
}

void KServeService::StartInfer(const inference::ModelInferRequest* request,
                               inference::ModelInferResponse* response, absl::Time call_deadline,
                               std::function<bool()> is_cancelled,
                               std::function<void(const absl::Status&)> finish) {
  const absl::Time start = absl::Now();
  if (repository_ == nullptr) return finish(kNoRepository);
  const auto params = ParseInferParameters(*request);
  if (!params.ok()) return finish(params.status());
  // The earlier of the call's deadline and the request's own timeout.
  absl::Time deadline = call_deadline;
  if (params->timeout != absl::InfiniteDuration()) {
    deadline = std::min(deadline, start + params->timeout);
  }
  Infer infer{request,          response,         start,
              deadline,         params->priority, std::move(is_cancelled),
              std::move(finish)};
  if (HasImageInput(*request)) return StartImageInfer(std::move(infer));
  SubmitInfer(std::move(infer), std::nullopt, absl::ZeroDuration());
}

void KServeService::StartImageInfer(Infer infer) {
  const inference::ModelInferRequest& request = *infer.request;
  // Image inputs need the model's imaging pipeline: resolve it first.
  auto served = repository_->Get(request.model_name(), request.model_version());
  if (!served.ok()) return infer.finish(served.status());
  const repository::ImagingView& imaging = (*served)->imaging;
  if (!imaging.ok()) {
    return infer.finish(absl::InvalidArgumentError(
        absl::StrCat("BYTES inputs carry encoded images, which this model cannot take: ",
                     imaging.status().message())));
  }
  auto images = SplitImageInput(request, (*served)->config);
  if (!images.ok()) return infer.finish(images.status());
  auto job = std::make_shared<Infer>(std::move(infer));
  const absl::Status admitted = image_pool_->TrySubmit(
      [this, job, served = *served, imaging = *imaging, images = *std::move(images)]() mutable {
        // From here every outcome is accounted, as the vision API does.
        const auto fail = [&](const absl::Status& status) {
          CountFailure(*served, status, job->start);
          job->finish(status);
        };
        const absl::Time begin = absl::Now();
        if (job->is_cancelled && job->is_cancelled()) {
          return fail(absl::CancelledError("the call was cancelled"));
        }
        if (begin >= job->deadline) {
          return fail(absl::DeadlineExceededError(
              "deadline passed while the images waited for an image worker"));
        }
        auto batch =
            PrepareImageBatch(images, *imaging, image_budget_, job->deadline, job->is_cancelled);
        if (!batch.ok()) {
          return fail(absl::Status(batch.status().code(),
                                   absl::StrCat("input '", job->request->inputs(0).name(),
                                                "': ", batch.status().message())));
        }
        // Released here, on a pool thread (see VisionService's Complete).
        served.reset();
        const absl::Duration input_time = absl::Now() - job->start;
        std::vector<engine::Tensor> inputs;
        inputs.push_back(*std::move(batch));
        SubmitInfer(std::move(*job), std::move(inputs), input_time);
      });
  if (!admitted.ok()) {
    // Refused by the image worker pool (full queue, shutting down): counted
    // for the model as the vision API counts it.
    CountFailure(**served, admitted, job->start);
    job->finish(admitted);
  }
}

void KServeService::SubmitInfer(Infer infer, std::optional<std::vector<engine::Tensor>> prepared,
                                absl::Duration input_time) {
  const inference::ModelInferRequest* request = infer.request;
  inference::ModelInferResponse* response = infer.response;
  const absl::Time start = infer.start;
  auto finish = infer.finish;
  const absl::Status submitted = repository_->Submit(
      request->model_name(), request->model_version(),
      [&](const std::shared_ptr<const repository::ServedModel>& served)
          -> absl::StatusOr<std::unique_ptr<scheduling::InferenceRequest>> {
        // Raw pointer in `done`: the version's scheduler, whose threads call
        // it, is destroyed before the rest of ServedModel.
        const repository::ServedModel* model = served.get();
        const bool from_images = prepared.has_value();
        absl::StatusOr<std::vector<engine::Tensor>> inputs =
            from_images ? CheckPreparedInputs(*std::move(prepared), *model)
                        : DecodeInferInputs(*request, model->config);
        auto selected = SelectOutputs(*request, model->config);
        const absl::Status invalid = !inputs.ok() ? inputs.status() : selected.status();
        if (!invalid.ok()) {
          CountFailure(*model, invalid, start);
          return invalid;
        }
        const absl::Duration decode = from_images ? input_time : absl::Now() - start;
        auto job = std::make_unique<scheduling::InferenceRequest>();
        job->id = request->id();
        job->inputs = std::move(inputs).value();
        job->priority = infer.priority;
        job->deadline = infer.deadline;
        job->is_cancelled = std::move(infer.is_cancelled);
        job->done = [request, response, model, start, decode, finish,
                     selected = std::move(selected).value()](
                        absl::StatusOr<std::vector<engine::Tensor>> result,
                        const scheduling::RequestTimes& times) {
          const absl::Status status = result.status();
          repository::RequestPhases phases;
          if (status.ok()) {
            const absl::Time encode_start = absl::Now();
            EncodeInferResponse(*request, model->config, std::to_string(model->version), selected,
                                std::move(result).value(), response);
            phases.input = decode;
            phases.queue = times.batch_start - times.enqueued;
            phases.infer = times.compute_end - times.batch_start;
            phases.output = absl::Now() - encode_start;
          }
          phases.total = absl::Now() - start;
          model->observer->Finished(metrics::Api::kKServe, status, phases);
          finish(status);
        };
        return job;
      });
  if (!submitted.ok()) finish(submitted);
}

grpc::ServerUnaryReactor* KServeService::ModelInfer(grpc::CallbackServerContext* context,
                                                    const inference::ModelInferRequest* request,
                                                    inference::ModelInferResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  StartInfer(
      request, response, absl::FromChrono(context->deadline()),
      [context] { return context->IsCancelled(); },
      [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerBidiReactor<inference::ModelInferRequest, inference::ModelStreamInferResponse>*
KServeService::ModelStreamInfer(grpc::CallbackServerContext* context) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return new RefusedStream<inference::ModelInferRequest, inference::ModelStreamInferResponse>(
        ToGrpcStatus(s));
  }
  return new InferStream(this, context);
}

grpc::ServerUnaryReactor* KServeService::ModelStatistics(
    grpc::CallbackServerContext* context, const inference::ModelStatisticsRequest* request,
    inference::ModelStatisticsResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  // A named model (and version) must exist; "" lists every served version.
  if (!request->name().empty()) {
    auto served = repository_->Get(request->name(), request->version());
    if (!served.ok()) return Finish(context, served.status());
  }
  for (const auto& served : repository_->Served(request->name())) {
    if (!request->version().empty() && std::to_string(served->version) != request->version()) {
      continue;
    }
    auto* stats = response->add_model_stats();
    stats->set_name(served->name);
    stats->set_version(std::to_string(served->version));
    served->stats->Fill(stats);
  }
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::RepositoryIndex(
    grpc::CallbackServerContext* context, const inference::RepositoryIndexRequest* request,
    inference::RepositoryIndexResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  if (absl::Status s = CheckRepositoryName(request->repository_name()); !s.ok()) {
    return Finish(context, s);
  }
  for (const repository::ModelIndexEntry& entry : repository_->Index()) {
    if (request->ready() && entry.state != "READY") continue;
    auto* model = response->add_models();
    model->set_name(entry.name);
    model->set_version(entry.version);
    model->set_state(entry.state);
    model->set_reason(entry.reason);
  }
  return Finish(context, grpc::Status::OK);
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelLoad(
    grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
    inference::RepositoryModelLoadResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  if (absl::Status s = CheckRepositoryName(request->repository_name()); !s.ok()) {
    return Finish(context, s);
  }
  if (absl::Status s = CheckExplicitMode(*repository_, "RepositoryModelLoad"); !s.ok()) {
    return Finish(context, s);
  }
  if (!request->parameters().empty()) {
    return Finish(context, absl::UnimplementedError(
                               "RepositoryModelLoad parameters (config or file overrides) are not "
                               "supported; edit the repository and load again"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  control_->Post([this, reactor, name = request->model_name()] {
    reactor->Finish(ToGrpcStatus(repository_->Load(name)));
  });
  return reactor;
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelUnload(
    grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
    inference::RepositoryModelUnloadResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  if (repository_ == nullptr) return Finish(context, kNoRepository);
  if (absl::Status s = CheckRepositoryName(request->repository_name()); !s.ok()) {
    return Finish(context, s);
  }
  if (absl::Status s = CheckExplicitMode(*repository_, "RepositoryModelUnload"); !s.ok()) {
    return Finish(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  control_->Post([this, reactor, name = request->model_name()] {
    reactor->Finish(ToGrpcStatus(repository_->Unload(name)));
  });
  return reactor;
}

}  // namespace rectifier::service
