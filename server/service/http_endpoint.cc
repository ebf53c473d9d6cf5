#include "server/service/http_endpoint.h"

#include <civetweb.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "server/metrics/https_endpoint.h"
#include "server/metrics/model_metrics.h"
#include "server/service/http_image_request.h"
#include "server/service/kserve_service.h"
#include "server/service/vision_json.h"
#include "server/service/vision_service.h"
#include "spdlog/spdlog.h"

namespace rectifier::service {
namespace {

using Kind = HttpRoute::Kind;
using nlohmann::json;

constexpr char kJson[] = "application/json";

std::optional<absl::string_view> Header(mg_connection* connection, const char* name) {
  const char* value = mg_get_header(connection, name);
  if (value == nullptr) return std::nullopt;
  return absl::string_view(value);
}

// One whole answer: status line, Content-Type, Content-Length, any extra
// headers, then the body (left out for HEAD).
void Send(mg_connection* connection, int status, const char* content_type, const std::string& body,
          const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  mg_response_header_start(connection, status);
  if (!body.empty() || content_type != nullptr) {
    mg_response_header_add(connection, "Content-Type",
                           content_type != nullptr ? content_type : kJson, -1);
  }
  const std::string length = std::to_string(body.size());
  mg_response_header_add(connection, "Content-Length", length.c_str(), -1);
  for (const auto& [name, value] : headers) {
    mg_response_header_add(connection, name.c_str(), value.c_str(), static_cast<int>(value.size()));
  }
  mg_response_header_send(connection);
  const mg_request_info* info = mg_get_request_info(connection);
  if (info != nullptr && std::strcmp(info->request_method, "HEAD") == 0) return;
  if (!body.empty()) mg_write(connection, body.data(), body.size());
}

void SendError(mg_connection* connection, const absl::Status& status,
               const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  Send(connection, HttpStatusFor(status.code()), kJson, HttpErrorBody(status), headers);
}

void SendProto(mg_connection* connection, const google::protobuf::Message& message) {
  Send(connection, 200, kJson,
       ProtoToJson(message).dump(-1, ' ', false, json::error_handler_t::replace));
}

// A request body's first reservation, and its growth factor after that (up
// to the announced length).
constexpr size_t kBodyFirstReserve = size_t{1} << 20;
constexpr size_t kBodyGrowth = 8;

// Reads the request body, at most `limit` bytes. RESOURCE_EXHAUSTED (413)
// past the limit, from Content-Length before reading; INVALID_ARGUMENT when
// the client sends less than it announced. The body grows with what
// arrives: a Content-Length alone (a client that then sends nothing) costs
// no memory.
absl::StatusOr<std::string> ReadBody(mg_connection* connection, size_t limit) {
  const mg_request_info* info = mg_get_request_info(connection);
  const bool announced = info->content_length >= 0;
  if (announced && static_cast<unsigned long long>(info->content_length) > limit) {
    return absl::ResourceExhaustedError(absl::StrCat("the request body is ", info->content_length,
                                                     " bytes, over the server's limit of ", limit,
                                                     " (--max-message-mb)"));
  }
  const size_t expected = announced ? static_cast<size_t>(info->content_length) : limit;
  std::string body;
  // Memory follows the bytes that arrive (a client announcing the limit and
  // sending nothing holds 1 MiB), 8x at a time up to the announced length:
  // a 39 MB body takes two reallocations and ends at its own size, where
  // std::string's doubling took six and ended above 64 MiB, more than a
  // thread's malloc heap holds (a fresh mapping, faulted in, per request).
  body.reserve(std::min<size_t>(expected, kBodyFirstReserve));
  char buffer[64 << 10];
  while (body.size() < expected || !announced) {
    const size_t want =
        announced ? std::min(sizeof(buffer), expected - body.size()) : sizeof(buffer);
    if (announced && body.size() + want > body.capacity()) {
      body.reserve(std::min(expected, body.capacity() * kBodyGrowth));
    }
    const int n = mg_read(connection, buffer, want);
    if (n < 0) return absl::InvalidArgumentError("the request body could not be read");
    if (n == 0) {
      if (!announced) return body;  // chunked: the end
      return absl::InvalidArgumentError(absl::StrCat("the request body ended after ", body.size(),
                                                     " of its ", expected, " announced bytes"));
    }
    if (body.size() + static_cast<size_t>(n) > limit) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request body is over the server's limit of ", limit, " bytes (--max-message-mb)"));
    }
    body.append(buffer, static_cast<size_t>(n));
  }
  return body;
}

// The body as a JSON object ({} when empty).
absl::StatusOr<json> JsonObject(const std::string& body) {
  if (body.empty()) return json::object();
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  return parsed;
}

// The Request-Timeout-Ms header as a deadline (none: infinite).
absl::StatusOr<absl::Time> HeaderDeadline(mg_connection* connection) {
  const auto timeout = Header(connection, "Request-Timeout-Ms");
  if (!timeout.has_value()) return absl::InfiniteFuture();
  int64_t ms = 0;
  if (!absl::SimpleAtoi(*timeout, &ms) || ms < 0) {
    return absl::InvalidArgumentError("Request-Timeout-Ms must be a non-negative integer");
  }
  return absl::Now() + absl::Milliseconds(ms);
}

bool NeedsAdmin(Kind kind) {
  return kind == Kind::kRepositoryIndex || kind == Kind::kLoad || kind == Kind::kUnload;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Create(
    const HttpEndpointOptions& options, KServeService* kserve, VisionService* vision) {
  if (absl::Status s = metrics::SplitHostPort(options.address).status(); !s.ok()) return s;
  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint(options, kserve, vision));
  mg_init_library(0);
  const std::string threads = std::to_string(std::max(options.threads, 1));
  const std::string io_timeout = std::to_string(std::max(options.io_timeout_ms, 1));
  const std::string keep_alive = std::to_string(std::max(options.keep_alive_timeout_ms, 1));
  const char* config[] = {"listening_ports", options.address.c_str(), "num_threads",
                          threads.c_str(), "request_timeout_ms", io_timeout.c_str(),
                          "enable_keep_alive", "yes",
                          // Headers and body go out as separate writes:
                          // without TCP_NODELAY, Nagle holds the body back
                          // for the client's delayed ACK (40 ms an answer).
                          "tcp_nodelay", "1", "keep_alive_timeout_ms", keep_alive.c_str(), nullptr};
  mg_callbacks callbacks{};
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = endpoint.get();
  init.configuration_options = config;
  char error_text[256] = {0};
  unsigned error_code = 0;
  mg_error_data error{&error_code, error_text, sizeof(error_text)};
  endpoint->context_ = mg_start2(&init, &error);
  if (endpoint->context_ == nullptr) {
    mg_exit_library();
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on '", options.address,
                     "': ", error_text[0] != 0 ? error_text : "civetweb could not start"));
  }
  mg_set_request_handler(endpoint->context_, "/", &HttpEndpoint::HandleRequest, endpoint.get());
  mg_server_port ports[4];
  const int n = mg_get_server_ports(endpoint->context_, 4, ports);
  endpoint->port_ = n > 0 ? ports[0].port : 0;
  return endpoint;
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

void HttpEndpoint::Stop() {
  if (context_ == nullptr) return;
  mg_stop(context_);  // joins the worker threads
  context_ = nullptr;
  mg_exit_library();
}

int HttpEndpoint::HandleRequest(mg_connection* connection, void* self) {
  static_cast<HttpEndpoint*>(self)->Serve(connection);
  return 1;  // answered
}

absl::Status HttpEndpoint::Authorize(mg_connection* connection, HttpRoute::Kind kind) const {
  // Liveness and readiness stay open, as on gRPC, so probes need no token.
  if (kind == Kind::kLive || kind == Kind::kReady || kserve_->tokens() == nullptr) {
    return absl::OkStatus();
  }
  return kserve_->tokens()->Authorize(
      Header(connection, "Authorization"),
      NeedsAdmin(kind) ? security::Role::kAdmin : security::Role::kInfer);
}

void HttpEndpoint::Serve(mg_connection* connection) {
  const mg_request_info* info = mg_get_request_info(connection);
  const absl::string_view method = info->request_method;
  const absl::string_view path = info->local_uri != nullptr ? info->local_uri : "";
  absl::StatusOr<HttpRoute> route = ParseHttpRoute(path);
  if (!route.ok()) return SendError(connection, route.status());
  const bool is_get = std::strcmp(route->method, "GET") == 0;
  if (method != route->method && !(is_get && method == "HEAD")) {
    const std::string body = HttpErrorBody(absl::InvalidArgumentError(
        absl::StrCat(method, " is not allowed on ", path, "; use ", route->method)));
    return Send(connection, 405, kJson, body, {{"Allow", is_get ? "GET, HEAD" : "POST"}});
  }
  if (absl::Status allowed = Authorize(connection, route->kind); !allowed.ok()) {
    spdlog::debug("refused an HTTP request from {}: {}", info->remote_addr,
                  std::string(allowed.message()));
    return SendError(connection, allowed, {{"WWW-Authenticate", "Bearer"}});
  }
  std::string body;
  if (!is_get) {
    absl::StatusOr<std::string> read = ReadBody(connection, options_.max_body_bytes);
    if (!read.ok()) {
      // 413 for an oversized body, and the connection is not reused (the
      // rest of the body was not read).
      mg_disable_keep_alive(connection);
      if (absl::IsResourceExhausted(read.status())) {
        return Send(connection, 413, kJson, HttpErrorBody(read.status()));
      }
      return SendError(connection, read.status());
    }
    body = *std::move(read);
  }

  switch (route->kind) {
    case Kind::kLive:
      return Send(connection, 200, nullptr, "");
    case Kind::kReady:
      // Triton's answer: 200 when ready, 400 when not, no body.
      return Send(connection, kserve_->Ready() ? 200 : 400, nullptr, "");
    case Kind::kServerMetadata: {
      inference::ServerMetadataResponse response;
      kserve_->GetServerMetadata(&response);
      response.add_extensions("binary_tensor_data");
      return SendProto(connection, response);
    }
    case Kind::kModelReady: {
      const absl::StatusOr<bool> ready = kserve_->IsModelReady(route->model, route->version);
      if (!ready.ok()) return SendError(connection, ready.status());
      return Send(connection, *ready ? 200 : 400, nullptr, "");
    }
    case Kind::kModelMetadata: {
      inference::ModelMetadataRequest request;
      request.set_name(route->model);
      request.set_version(route->version);
      inference::ModelMetadataResponse response;
      if (absl::Status s = kserve_->GetModelMetadata(request, &response); !s.ok()) {
        return SendError(connection, s);
      }
      return SendProto(connection, response);
    }
    case Kind::kModelConfig: {
      inference::ModelConfigRequest request;
      request.set_name(route->model);
      request.set_version(route->version);
      inference::ModelConfigResponse response;
      if (absl::Status s = kserve_->GetModelConfig(request, &response); !s.ok()) {
        return SendError(connection, s);
      }
      return SendProto(connection, response.config());  // the config itself, as Triton
    }
    case Kind::kModelStats: {
      inference::ModelStatisticsRequest request;
      request.set_name(route->model);
      request.set_version(route->version);
      inference::ModelStatisticsResponse response;
      if (absl::Status s = kserve_->GetModelStatistics(request, &response); !s.ok()) {
        return SendError(connection, s);
      }
      json out = ProtoToJson(response);
      if (!out.contains("model_stats")) out["model_stats"] = json::array();
      return Send(connection, 200, kJson, out.dump(-1, ' ', false, json::error_handler_t::replace));
    }
    case Kind::kRepositoryIndex:
    case Kind::kLoad:
    case Kind::kUnload:
      return ServeRepository(connection, *route, body);
    case Kind::kInfer:
      return ServeInfer(connection, *route, std::move(body));
    case Kind::kClassify:
    case Kind::kDetect:
    case Kind::kSegment:
      return ServeImages(connection, *route, std::move(body));
    case Kind::kShmStatus:
    case Kind::kShmRegister:
    case Kind::kShmUnregister:
      return ServeSharedMemory(connection, *route, body);
  }
}

// GET /v2/systemsharedmemory[/region/R]/status, POST .../region/R/register
// ({"key", "offset", "byte_size"}) and POST [.../region/R]/unregister.
void HttpEndpoint::ServeSharedMemory(mg_connection* connection, const HttpRoute& route,
                                     const std::string& body) {
  SharedMemoryRegistry* shm = kserve_->shared_memory();
  if (shm == nullptr) {
    return SendError(connection, SharedMemoryOffError());
  }
  if (route.kind == Kind::kShmStatus) {
    inference::SystemSharedMemoryStatusResponse response;
    if (absl::Status s = shm->Status(route.region, &response); !s.ok()) {
      return SendError(connection, s);
    }
    json regions = json::array();  // a bare array, as Triton answers
    for (const auto& [name, region] : response.regions()) regions.push_back(ProtoToJson(region));
    return Send(connection, 200, kJson,
                regions.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  if (route.kind == Kind::kShmUnregister) {
    shm->Unregister(route.region);
    return Send(connection, 200, nullptr, "");
  }
  absl::StatusOr<json> request = JsonObject(body);
  if (!request.ok()) return SendError(connection, request.status());
  const auto key = request->find("key");
  if (key == request->end() || !key->is_string()) {
    return SendError(connection, absl::InvalidArgumentError("'key' must be a string"));
  }
  uint64_t numbers[2] = {0, 0};
  const char* names[2] = {"offset", "byte_size"};
  for (int i = 0; i < 2; ++i) {
    const auto it = request->find(names[i]);
    if (it == request->end() && i == 0) continue;  // the offset defaults to 0
    if (it == request->end() || !it->is_number_unsigned()) {
      return SendError(connection, absl::InvalidArgumentError(absl::StrCat(
                                       "'", names[i], "' must be a non-negative integer")));
    }
    numbers[i] = it->get<uint64_t>();
  }
  if (absl::Status s = shm->Register(route.region, key->get<std::string>(), numbers[0], numbers[1]);
      !s.ok()) {
    return SendError(connection, s);
  }
  Send(connection, 200, nullptr, "");
}

// POST /v2/repository/index, .../models/M/load and .../unload.
void HttpEndpoint::ServeRepository(mg_connection* connection, const HttpRoute& route,
                                   const std::string& body) {
  absl::StatusOr<json> options = JsonObject(body);
  if (!options.ok()) return SendError(connection, options.status());
  if (route.kind == Kind::kRepositoryIndex) {
    inference::RepositoryIndexRequest request;
    if (const auto it = options->find("ready"); it != options->end()) {
      if (!it->is_boolean()) {
        return SendError(connection, absl::InvalidArgumentError("'ready' must be a boolean"));
      }
      request.set_ready(it->get<bool>());
    }
    inference::RepositoryIndexResponse response;
    if (absl::Status s = kserve_->GetRepositoryIndex(request, &response); !s.ok()) {
      return SendError(connection, s);
    }
    json models = json::array();  // a bare array, as Triton answers
    for (const auto& model : response.models()) models.push_back(ProtoToJson(model));
    return Send(connection, 200, kJson,
                models.dump(-1, ' ', false, json::error_handler_t::replace));
  }
  const auto parameters = options->find("parameters");
  const bool has_parameters =
      parameters != options->end() && !(parameters->is_object() && parameters->empty());
  absl::Notification done;
  absl::Status result;
  kserve_->ChangeModel(route.kind == Kind::kLoad, /*repository_name=*/"", route.model,
                       has_parameters && route.kind == Kind::kLoad,
                       [&](const absl::Status& status) {
                         result = status;
                         done.Notify();
                       });
  done.WaitForNotification();
  if (!result.ok()) return SendError(connection, result);
  Send(connection, 200, nullptr, "");
}

// POST /v2/models/M[/versions/V]/infer.
void HttpEndpoint::ServeInfer(mg_connection* connection, const HttpRoute& route, std::string body) {
  inference::ModelInferRequest request;
  request.set_model_name(route.model);
  request.set_model_version(route.version);
  if (absl::Status s =
          ParseHttpInferRequest(body, Header(connection, "Inference-Header-Content-Length"),
                                options_.infer_limits, &request);
      !s.ok()) {
    return SendError(connection, s);
  }
  body.clear();
  body.shrink_to_fit();  // the request holds its own copy of the tensors
  const absl::StatusOr<absl::Time> deadline = HeaderDeadline(connection);
  if (!deadline.ok()) return SendError(connection, deadline.status());
  inference::ModelInferResponse response;
  absl::Notification done;
  absl::Status result;
  kserve_->StartInfer(
      &request, &response, *deadline, /*is_cancelled=*/nullptr,
      [&](const absl::Status& status) {
        result = status;
        done.Notify();
      },
      metrics::Api::kKServeHttp);
  done.WaitForNotification();
  if (!result.ok()) return SendError(connection, result);
  const HttpInferBody encoded = EncodeHttpInferResponse(request, response);
  if (encoded.json_size == encoded.body.size()) {
    return Send(connection, 200, kJson, encoded.body);
  }
  return Send(connection, 200, "application/octet-stream", encoded.body,
              {{"Inference-Header-Content-Length", std::to_string(encoded.json_size)}});
}

void HttpEndpoint::ServeImages(mg_connection* connection, const HttpRoute& route,
                               std::string body) {
  const mg_request_info* info = mg_get_request_info(connection);
  auto query = ParseQuery(info->query_string != nullptr ? info->query_string : "");
  if (!query.ok()) return SendError(connection, query.status());
  const absl::StatusOr<absl::Time> deadline = HeaderDeadline(connection);
  if (!deadline.ok()) return SendError(connection, deadline.status());
  const std::optional<absl::string_view> content_type = Header(connection, "Content-Type");
  auto parts = ParseImageBody(content_type.value_or(""), body);
  if (!parts.ok()) return SendError(connection, parts.status());
  std::vector<std::string> files;
  const auto add_images = [&](auto* request) {
    request->set_model_name(route.model);
    request->set_model_version(route.version);
    if (parts->size() == 1 && parts->front().filename.empty()) {
      request->add_images()->set_data(std::move(body));  // the whole body: no copy
    } else {
      for (const HttpImagePart& part : *parts) {
        request->add_images()->set_data(std::string(part.data));
      }
      body.clear();
      body.shrink_to_fit();
    }
    for (const HttpImagePart& part : *parts) files.push_back(part.filename);
  };
  absl::Notification done;
  absl::Status result;
  ImageCallContext context;
  context.deadline = *deadline;
  context.api = metrics::Api::kVisionHttp;
  context.finish = [&](const absl::Status& status) {
    result = status;
    done.Notify();
  };
  json answer;
  if (route.kind == Kind::kClassify) {
    rectifier::v1::ClassifyRequest request;
    if (absl::Status s = ApplyClassifyQuery(*query, &request); !s.ok()) {
      return SendError(connection, s);
    }
    add_images(&request);
    rectifier::v1::ClassifyResponse response;
    vision_->StartClassify(&request, &response, context);
    done.WaitForNotification();
    if (!result.ok()) return SendError(connection, result);
    answer = ClassifyResponseJson(response, files);
  } else if (route.kind == Kind::kSegment) {
    rectifier::v1::SegmentRequest request;
    if (absl::Status s = ApplySegmentQuery(*query, &request); !s.ok()) {
      return SendError(connection, s);
    }
    add_images(&request);
    rectifier::v1::SegmentResponse response;
    vision_->StartSegment(&request, &response, context);
    done.WaitForNotification();
    if (!result.ok()) return SendError(connection, result);
    answer = SegmentResponseJson(response, files, /*with_png=*/true);
  } else {
    rectifier::v1::DetectRequest request;
    if (absl::Status s = ApplyDetectQuery(*query, &request); !s.ok()) {
      return SendError(connection, s);
    }
    add_images(&request);
    rectifier::v1::DetectResponse response;
    vision_->StartDetect(&request, &response, context);
    done.WaitForNotification();
    if (!result.ok()) return SendError(connection, result);
    answer = DetectResponseJson(response, files);
  }
  Send(connection, 200, kJson, answer.dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace rectifier::service
