#include "server/service/kserve_service.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/imaging/preprocess.h"
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

void KServeService::GetServerMetadata(inference::ServerMetadataResponse* response) const {
  response->set_name("rectifier");
  response->set_version(RECTIFIER_VERSION);
  // Only what is implemented end to end is listed.
  if (repository_ != nullptr) {
    response->add_extensions("model_configuration");
    response->add_extensions("model_repository");
    response->add_extensions("statistics");
  }
  if (shared_memory_ != nullptr) response->add_extensions("system_shared_memory");
}

grpc::ServerUnaryReactor* KServeService::ServerMetadata(
    grpc::CallbackServerContext* context, const inference::ServerMetadataRequest* /*request*/,
    inference::ServerMetadataResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  GetServerMetadata(response);
  return Finish(context, grpc::Status::OK);
}

absl::StatusOr<bool> KServeService::IsModelReady(const std::string& name,
                                                 const std::string& version) const {
  if (name.empty()) return absl::InvalidArgumentError("model name is empty");
  // Unknown or not-ready models are simply not ready (Triton's answer).
  return repository_ != nullptr && state_->ready() && repository_->Get(name, version).ok();
}

grpc::ServerUnaryReactor* KServeService::ModelReady(grpc::CallbackServerContext* context,
                                                    const inference::ModelReadyRequest* request,
                                                    inference::ModelReadyResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  const absl::StatusOr<bool> ready = IsModelReady(request->name(), request->version());
  if (!ready.ok()) return Finish(context, ready.status());
  response->set_ready(*ready);
  return Finish(context, grpc::Status::OK);
}

absl::Status KServeService::GetModelMetadata(const inference::ModelMetadataRequest& request,
                                             inference::ModelMetadataResponse* response) const {
  if (repository_ == nullptr) return kNoRepository;
  auto served = repository_->Get(request.name(), request.version());
  if (!served.ok()) return served.status();
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
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KServeService::ModelMetadata(
    grpc::CallbackServerContext* context, const inference::ModelMetadataRequest* request,
    inference::ModelMetadataResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, GetModelMetadata(*request, response));
}

absl::Status KServeService::GetModelConfig(const inference::ModelConfigRequest& request,
                                           inference::ModelConfigResponse* response) const {
  if (repository_ == nullptr) return kNoRepository;
  auto served = repository_->Get(request.name(), request.version());
  if (!served.ok()) return served.status();
  *response->mutable_config() = (*served)->config;
  // The effective activations after pattern recognition and `replace`
  // (docs/ACTIVATIONS.md), so a client can see what actually runs.
  const engine::ActivationSummary& activations = (*served)->model->activation_summary();
  auto& parameters = *response->mutable_config()->mutable_parameters();
  parameters["rectifier.activations"].set_string_value(activations.ToString());
  if (!activations.warning.empty()) {
    parameters["rectifier.activation_warning"].set_string_value(activations.warning);
  }
  // What images become before they reach the model, defaults included.
  if ((*served)->imaging.ok()) {
    const std::string described =
        imaging::DescribePreprocessing((*served)->imaging.value()->preprocess);
    parameters["rectifier.preprocessing"].set_string_value(
        (*served)->config.has_preprocessing()
            ? described
            : absl::StrCat("defaults (no preprocessing block): ", described));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KServeService::ModelConfig(grpc::CallbackServerContext* context,
                                                     const inference::ModelConfigRequest* request,
                                                     inference::ModelConfigResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, GetModelConfig(*request, response));
}

struct KServeService::Call {
  const inference::ModelInferRequest* request = nullptr;
  inference::ModelInferResponse* response = nullptr;
  absl::Time start;
  absl::Time deadline;
  uint64_t priority = 0;
  std::function<bool()> is_cancelled;
  std::function<void(const absl::Status&)> finish;
  metrics::Api api = metrics::Api::kKServe;  // the `api` label it is counted under
  // The version the inputs were decoded for, and the one they ran on (set
  // by Submit; a reload of `resolved` with the same interface).
  std::shared_ptr<const repository::ServedModel> resolved;
  std::shared_ptr<const repository::ServedModel> ran;
  std::vector<int> selected;  // indices into the config's outputs
  absl::Duration input_time;  // decoding; images: decode + preprocess
  absl::StatusOr<std::vector<engine::Tensor>> result;
  scheduling::RequestTimes times;
};

void KServeService::StartInfer(const inference::ModelInferRequest* request,
                               inference::ModelInferResponse* response, absl::Time call_deadline,
                               std::function<bool()> is_cancelled,
                               std::function<void(const absl::Status&)> finish, metrics::Api api) {
  const absl::Time start = clock_->Now();
  if (repository_ == nullptr) return finish(kNoRepository);
  const auto params = ParseInferParameters(*request);
  if (!params.ok()) return finish(params.status());
  auto served = repository_->Get(request->model_name(), request->model_version());
  if (!served.ok()) return finish(served.status());
  auto call = std::make_shared<Call>();
  call->request = request;
  call->response = response;
  call->start = start;
  // The earlier of the call's deadline and the request's own timeout.
  call->deadline = call_deadline;
  if (params->timeout != absl::InfiniteDuration()) {
    call->deadline = std::min(call->deadline, start + params->timeout);
  }
  call->priority = params->priority;
  call->is_cancelled = std::move(is_cancelled);
  call->finish = std::move(finish);
  call->api = api;
  call->resolved = *std::move(served);
  if (HasImageInput(*request)) return StartImageInfer(call);
  // Tensors are decoded here, on the gRPC thread, for the resolved version.
  auto inputs = DecodeInferInputs(*request, call->resolved->config, shared_memory_);
  if (!inputs.ok()) return Fail(call, inputs.status());
  // A model with dynamic dimensions besides the batch checks its own bounds
  // (max_input_dims) here, before the request waits in the queue.
  if (call->resolved->model->has_dynamic_dims()) {
    engine::InputShapes shapes;
    shapes.reserve(inputs->size());
    for (const common::InputTensor& t : *inputs) shapes.push_back(t.shape);
    if (absl::Status fits = call->resolved->model->CheckInputShapes(shapes); !fits.ok()) {
      return Fail(call, fits);
    }
  }
  SubmitInfer(std::move(call), *std::move(inputs));
}

void KServeService::StartImageInfer(const std::shared_ptr<Call>& call) {
  // Image inputs need the model's imaging pipeline.
  const repository::ImagingView& imaging = call->resolved->imaging;
  if (!imaging.ok()) {
    return call->finish(absl::InvalidArgumentError(
        absl::StrCat("BYTES inputs carry encoded images, which this model cannot take: ",
                     imaging.status().message())));
  }
  auto images = SplitImageInput(*call->request, call->resolved->config);
  if (!images.ok()) return call->finish(images.status());
  // From here every outcome is accounted, as the vision API does.
  const absl::Status admitted =
      image_pool_->TrySubmit([this, call, imaging = *imaging, images = *std::move(images)] {
        if (call->is_cancelled && call->is_cancelled()) {
          return Fail(call, absl::CancelledError("the call was cancelled"));
        }
        if (clock_->Now() >= call->deadline) {
          return Fail(call, absl::DeadlineExceededError(
                                "deadline passed while the images waited for an image worker"));
        }
        auto batch = PrepareImageBatch(images, *imaging, image_budget_, call->deadline,
                                       call->is_cancelled, clock_);
        if (!batch.ok()) {
          return Fail(call, absl::Status(batch.status().code(),
                                         absl::StrCat("input '", call->request->inputs(0).name(),
                                                      "': ", batch.status().message())));
        }
        std::vector<common::InputTensor> inputs;
        inputs.emplace_back(*std::move(batch));
        SubmitInfer(call, std::move(inputs));
      });
  // Refused by the image worker pool (full queue, shutting down).
  if (!admitted.ok()) Fail(call, admitted);
}

void KServeService::SubmitInfer(std::shared_ptr<Call> call,
                                std::vector<common::InputTensor> inputs) {
  auto selected = SelectOutputs(*call->request, call->resolved->config);
  if (!selected.ok()) return Fail(call, selected.status());
  if (absl::Status s = CheckOutputSharedMemory(*call->request, shared_memory_); !s.ok()) {
    return Fail(call, s);
  }
  call->selected = *std::move(selected);
  call->input_time = clock_->Now() - call->start;
  auto job = std::make_unique<scheduling::InferenceRequest>();
  job->id = call->request->id();
  job->inputs = std::move(inputs);
  job->priority = call->priority;
  job->deadline = call->deadline;
  job->is_cancelled = call->is_cancelled;
  // Called once, on a scheduler thread (or on this one, after Submit
  // returned, for a refusal): hands over to the pool at once, moving `call`
  // out so the scheduler keeps no reference to it (the last reference to a
  // retired version must never go on its own worker thread).
  job->done = [this, call](absl::StatusOr<std::vector<engine::Tensor>> result,
                           const scheduling::RequestTimes& times) mutable {
    call->result = std::move(result);
    call->times = times;
    image_pool_->Post([this, call = std::move(call)] { CompleteInfer(call); });
  };
  const std::string& version = call->request->model_version();
  const absl::Status submitted =
      repository_->Submit(call->resolved, version, std::move(job), &call->ran);
  if (!submitted.ok()) Fail(call, submitted);
}

void KServeService::CompleteInfer(const std::shared_ptr<Call>& call) {
  absl::Status status = call->result.status();
  const repository::ServedModel& model = *call->ran;
  repository::RequestPhases phases;
  if (status.ok()) {
    const absl::Time encode_start = clock_->Now();
    status = EncodeInferResponse(*call->request, model.config, std::to_string(model.version),
                                 call->selected, *std::move(call->result), call->response,
                                 shared_memory_);
    phases.input = call->input_time;
    phases.queue = call->times.batch_start - call->times.enqueued;
    phases.infer = call->times.compute_end - call->times.batch_start;
    phases.output = clock_->Now() - encode_start;
  }
  phases.total = clock_->Now() - call->start;
  model.observer->Finished(call->api, status, phases);
  call->finish(status);
}

void KServeService::Fail(const std::shared_ptr<Call>& call, const absl::Status& status) {
  repository::RequestPhases phases;
  phases.total = clock_->Now() - call->start;
  call->resolved->observer->Finished(call->api, status, phases);
  call->finish(status);
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

absl::Status KServeService::GetModelStatistics(const inference::ModelStatisticsRequest& request,
                                               inference::ModelStatisticsResponse* response) const {
  if (repository_ == nullptr) return kNoRepository;
  // A named model (and version) must exist; "" lists every served version.
  if (!request.name().empty()) {
    auto served = repository_->Get(request.name(), request.version());
    if (!served.ok()) return served.status();
  }
  for (const auto& served : repository_->Served(request.name())) {
    if (!request.version().empty() && std::to_string(served->version) != request.version()) {
      continue;
    }
    auto* stats = response->add_model_stats();
    stats->set_name(served->name);
    stats->set_version(std::to_string(served->version));
    served->stats->Fill(stats);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KServeService::ModelStatistics(
    grpc::CallbackServerContext* context, const inference::ModelStatisticsRequest* request,
    inference::ModelStatisticsResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, GetModelStatistics(*request, response));
}

absl::Status KServeService::GetRepositoryIndex(const inference::RepositoryIndexRequest& request,
                                               inference::RepositoryIndexResponse* response) const {
  if (repository_ == nullptr) return kNoRepository;
  if (absl::Status s = CheckRepositoryName(request.repository_name()); !s.ok()) {
    return s;
  }
  for (const repository::ModelIndexEntry& entry : repository_->Index()) {
    if (request.ready() && entry.state != "READY") continue;
    auto* model = response->add_models();
    model->set_name(entry.name);
    model->set_version(entry.version);
    model->set_state(entry.state);
    model->set_reason(entry.reason);
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KServeService::RepositoryIndex(
    grpc::CallbackServerContext* context, const inference::RepositoryIndexRequest* request,
    inference::RepositoryIndexResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  return Finish(context, GetRepositoryIndex(*request, response));
}

void KServeService::ChangeModel(bool load, const std::string& repository_name,
                                const std::string& model_name, bool has_parameters,
                                std::function<void(const absl::Status&)> done) {
  const char* call = load ? "RepositoryModelLoad" : "RepositoryModelUnload";
  if (repository_ == nullptr) return done(kNoRepository);
  if (absl::Status s = CheckRepositoryName(repository_name); !s.ok()) return done(s);
  if (absl::Status s = CheckExplicitMode(*repository_, call); !s.ok()) return done(s);
  if (has_parameters) {
    return done(absl::UnimplementedError(
        absl::StrCat(call,
                     " parameters (config or file overrides) are not supported; edit the "
                     "repository and load again")));
  }
  control_->Post([this, load, name = model_name, done = std::move(done)] {
    done(load ? repository_->Load(name) : repository_->Unload(name));
  });
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelLoad(
    grpc::CallbackServerContext* context, const inference::RepositoryModelLoadRequest* request,
    inference::RepositoryModelLoadResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  ChangeModel(/*load=*/true, request->repository_name(), request->model_name(),
              !request->parameters().empty(),
              [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* KServeService::RepositoryModelUnload(
    grpc::CallbackServerContext* context, const inference::RepositoryModelUnloadRequest* request,
    inference::RepositoryModelUnloadResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kAdmin); !s.ok()) {
    return Finish(context, s);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Unload takes no parameters that change what it does (Triton's
  // unload_dependents is not a concept here).
  ChangeModel(/*load=*/false, request->repository_name(), request->model_name(),
              /*has_parameters=*/false,
              [reactor](const absl::Status& status) { reactor->Finish(ToGrpcStatus(status)); });
  return reactor;
}

grpc::ServerUnaryReactor* KServeService::SystemSharedMemoryStatus(
    grpc::CallbackServerContext* context, const inference::SystemSharedMemoryStatusRequest* request,
    inference::SystemSharedMemoryStatusResponse* response) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (shared_memory_ == nullptr) return Finish(context, SharedMemoryOffError());
  return Finish(context, shared_memory_->Status(request->name(), response));
}

grpc::ServerUnaryReactor* KServeService::SystemSharedMemoryRegister(
    grpc::CallbackServerContext* context,
    const inference::SystemSharedMemoryRegisterRequest* request,
    inference::SystemSharedMemoryRegisterResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (shared_memory_ == nullptr) return Finish(context, SharedMemoryOffError());
  return Finish(context, shared_memory_->Register(request->name(), request->key(),
                                                  request->offset(), request->byte_size()));
}

grpc::ServerUnaryReactor* KServeService::SystemSharedMemoryUnregister(
    grpc::CallbackServerContext* context,
    const inference::SystemSharedMemoryUnregisterRequest* request,
    inference::SystemSharedMemoryUnregisterResponse* /*response*/) {
  if (absl::Status s = AuthorizeCall(tokens_, *context, security::Role::kInfer); !s.ok()) {
    return Finish(context, s);
  }
  if (shared_memory_ == nullptr) return Finish(context, SharedMemoryOffError());
  shared_memory_->Unregister(request->name());
  return Finish(context, grpc::Status::OK);
}

}  // namespace rectifier::service
