// rectifier-perf's targets: the prepared requests of a run and the calls
// that send them, over gRPC (KServe ModelInfer, the vision API) or HTTP/REST.
#include "tools/perf/perf_targets.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "grpc_service.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "rectifier/v1/vision.grpc.pb.h"
#include "server/common/status_macros.h"
#include "server/engine/tensor.h"
#include "tools/client/tensor_file.h"
#include "tools/perf/http_client.h"
#include "tools/perf/input_data.h"

namespace rectifier::tools {

using inference::GRPCInferenceService;

namespace {

// The model's metadata. Fails with the fix when TLS or the token is the
// problem (the first call of a run finds it), else with the server's message.
absl::StatusOr<inference::ModelMetadataResponse> FetchMetadata(const Connection& connection,
                                                               GRPCInferenceService::Stub& stub,
                                                               const Options& o) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  inference::ModelMetadataRequest meta_request;
  meta_request.set_name(o.model);
  meta_request.set_version(o.version);
  inference::ModelMetadataResponse meta;
  const grpc::Status status = stub.ModelMetadata(&context, meta_request, &meta);
  if (!status.ok()) {
    std::optional<std::string> hint = connection.Hint(status);
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        hint ? *hint : absl::StrCat("ModelMetadata: ", connection.Format(status)));
  }
  return meta;
}

// One input's item shape (without the batch for a batching model) from
// the metadata and --shape; -1 where neither says.
absl::StatusOr<std::vector<int64_t>> ItemShapeFor(
    const inference::ModelMetadataResponse::TensorMetadata& input,
    const std::map<std::string, std::string>& shapes, bool* batched) {
  std::vector<int64_t> shape(input.shape().begin(), input.shape().end());
  *batched = !shape.empty() && shape[0] == -1;
  if (*batched) shape.erase(shape.begin());
  const auto given = shapes.find(input.name());
  if (given == shapes.end()) return shape;
  std::vector<int64_t> dims;
  for (absl::string_view d : absl::StrSplit(given->second, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(d, &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shape ", input.name(), ": '", given->second, "' is not d1,d2,..."));
    }
    dims.push_back(v);
  }
  return dims;
}

// Fills `raw` with `count` values of `datatype`: random (seeded) or zeros.
absl::Status SyntheticData(const std::string& name, const std::string& datatype, int64_t count,
                           bool zero, std::mt19937& rng, std::string* raw) {
  if (zero && ElementSize(datatype) > 0) {
    raw->assign(static_cast<size_t>(count * ElementSize(datatype)), '\0');
    return absl::OkStatus();
  }
  if (datatype == "FP32") {
    std::uniform_real_distribution<float> dist(0.f, 1.f);
    std::vector<float> values(count);
    for (float& v : values) v = dist(rng);
    raw->assign(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  } else if (datatype == "UINT8") {
    raw->resize(count);
    for (char& c : *raw) c = static_cast<char>(rng() & 0xff);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("input '", name, "' is ", datatype,
                                                   "; give its data with --input or --input-data"));
  }
  return absl::OkStatus();
}

// Request `r`'s tensor for one input from --input-data entries: batch items
// r * batch, r * batch + 1, ... (round robin), which must agree in shape.
absl::Status EntryData(const InputDataEntries& entries, const std::string& name, size_t r,
                       int batch, bool batched,
                       inference::ModelInferRequest::InferInputTensor* tensor, std::string* raw) {
  const std::vector<int64_t>* shape = nullptr;
  for (int j = 0; j < batch; ++j) {
    const ItemData& item = entries[(r * batch + j) % entries.size()].at(name);
    if (shape != nullptr && item.shape != *shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--input-data: input '", name, "' has entries of different shapes in one batch of ",
          batch, "; give entries of one shape or -b 1"));
    }
    shape = &item.shape;
    raw->append(item.bytes);
  }
  if (batched) tensor->add_shape(batch);
  for (const int64_t d : *shape) tensor->add_shape(d);
  return absl::OkStatus();
}

// Builds the requests from the model's metadata: random FP32/UINT8 data with
// a fixed seed (or zeros), tensors from files, or --input-data entries (one
// request per entry, the load rotating through them).
absl::StatusOr<std::vector<inference::ModelInferRequest>> BuildRequests(
    const inference::ModelMetadataResponse& meta, const Options& o) {
  std::map<std::string, std::string> files, shapes;
  for (const auto* list : {&o.inputs, &o.shapes}) {
    for (const std::string& spec : *list) {
      // perf_analyzer writes --shape NAME:d1,d2; NAME=d1,d2 works too.
      size_t eq = spec.find('=');
      if (eq == std::string::npos && list == &o.shapes) eq = spec.rfind(':');
      if (eq == std::string::npos)
        return absl::InvalidArgumentError(absl::StrCat("'", spec, "' is not NAME=VALUE"));
      (list == &o.inputs ? files : shapes)[spec.substr(0, eq)] = spec.substr(eq + 1);
    }
  }
  const bool zero = o.input_data == "zero";
  const bool real = !o.input_data.empty() && o.input_data != "random" && !zero;
  std::vector<InputDataSpec> specs;
  std::vector<bool> batched(meta.inputs_size());
  for (int i = 0; i < meta.inputs_size(); ++i) {
    const auto& input = meta.inputs(i);
    bool b = false;
    ASSIGN_OR_RETURN(std::vector<int64_t> item, ItemShapeFor(input, shapes, &b));
    batched[i] = b;
    if (!files.count(input.name())) specs.push_back({input.name(), input.datatype(), item});
  }
  InputDataEntries entries;
  if (real) {
    ASSIGN_OR_RETURN(entries, LoadInputData(o.input_data, specs));
  }
  std::vector<inference::ModelInferRequest> requests(real ? entries.size() : 1);
  for (size_t r = 0; r < requests.size(); ++r) {
    inference::ModelInferRequest& request = requests[r];
    request.set_model_name(o.model);
    request.set_model_version(o.version);
    std::mt19937 rng(42);
    size_t spec = 0;
    for (int i = 0; i < meta.inputs_size(); ++i) {
      const auto& input = meta.inputs(i);
      auto* tensor = request.add_inputs();
      tensor->set_name(input.name());
      tensor->set_datatype(input.datatype());
      if (files.count(input.name())) {
        auto data = ReadTensorFile(files[input.name()]);
        if (!data.ok()) return data.status();
        tensor->set_datatype(engine::DataTypeName(data->type));
        for (const int64_t d : data->shape) tensor->add_shape(d);
        request.add_raw_input_contents(reinterpret_cast<const char*>(data->bytes.data()),
                                       data->bytes.size());
        continue;
      }
      std::string* raw = request.add_raw_input_contents();
      if (real) {
        RETURN_IF_ERROR(EntryData(entries, input.name(), r, o.batch, batched[i], tensor, raw));
        ++spec;
        continue;
      }
      int64_t count = batched[i] ? o.batch : 1;
      if (batched[i]) tensor->add_shape(o.batch);
      for (const int64_t d : specs[spec].item_shape) {
        if (d < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("input '", input.name(), "' has a variable dimension; give --shape ",
                           input.name(), ":d1,d2,... (without the batch)"));
        }
        count *= d;
        tensor->add_shape(d);
      }
      ++spec;
      RETURN_IF_ERROR(SyntheticData(input.name(), input.datatype(), count, zero, rng, raw));
    }
  }
  return requests;
}

// The requests' inputs in one POSIX shared memory object, registered with
// the server as one region; each input then names its bytes in it instead
// of carrying them. Its name leaves /dev/shm once the server has it open;
// the region is unregistered when this is destroyed.
class SharedInputs {
 public:
  static absl::StatusOr<std::unique_ptr<SharedInputs>> Create(
      std::shared_ptr<GRPCInferenceService::Stub> kserve, const Connection& connection,
      std::vector<inference::ModelInferRequest>* requests) {
    size_t total = 0;
    for (const auto& r : *requests)
      for (const auto& raw : r.raw_input_contents()) total += (raw.size() + 63) / 64 * 64;
    if (total == 0) return absl::InvalidArgumentError("--shared-memory: the inputs are empty");
    std::unique_ptr<SharedInputs> shm(new SharedInputs(std::move(kserve)));
    // A random suffix: a stale object of an earlier run with the same pid
    // (containers) must not be in the way.
    const std::string id = absl::StrCat(::getpid(), "_", std::random_device()() % 1000000);
    shm->key_ = absl::StrCat("/rectifier_perf_", id);
    shm->region_ = absl::StrCat("rectifier_perf_", id, "_inputs");
    const int fd = ::shm_open(shm->key_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("--shared-memory: shm_open ", shm->key_, ": ", std::strerror(errno)));
    }
    shm->created_ = true;
    const auto close_fd = absl::MakeCleanup([fd] { ::close(fd); });
    if (::ftruncate(fd, static_cast<off_t>(total)) != 0) {
      return absl::UnavailableError(
          absl::StrCat("--shared-memory: ftruncate ", shm->key_, ": ", std::strerror(errno)));
    }
    size_t offset = 0;
    for (auto& r : *requests) {
      for (int k = 0; k < r.raw_input_contents_size(); ++k) {
        const std::string& raw = r.raw_input_contents(k);
        if (::pwrite(fd, raw.data(), raw.size(), static_cast<off_t>(offset)) !=
            static_cast<ssize_t>(raw.size())) {
          return absl::UnavailableError(
              absl::StrCat("--shared-memory: writing ", shm->key_, ": ", std::strerror(errno)));
        }
        auto& params = *r.mutable_inputs(k)->mutable_parameters();
        params["shared_memory_region"].set_string_param(shm->region_);
        params["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
        params["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(raw.size()));
        offset += (raw.size() + 63) / 64 * 64;
      }
      r.clear_raw_input_contents();
    }
    inference::SystemSharedMemoryRegisterRequest reg;
    reg.set_name(shm->region_);
    reg.set_key(shm->key_);
    reg.set_byte_size(total);
    inference::SystemSharedMemoryRegisterResponse unused;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = shm->kserve_->SystemSharedMemoryRegister(&context, reg, &unused);
    if (!status.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                          absl::StrCat("--shared-memory: registering ", shm->key_, ": ",
                                       connection.Describe(status)));
    }
    shm->registered_ = true;
    // The server reads through its own descriptor: the name can go now, so
    // that nothing stays in /dev/shm even if this process is killed.
    ::shm_unlink(shm->key_.c_str());
    shm->created_ = false;
    return shm;
  }

  ~SharedInputs() {
    if (registered_) {
      inference::SystemSharedMemoryUnregisterRequest request;
      request.set_name(region_);
      inference::SystemSharedMemoryUnregisterResponse unused;
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      (void)kserve_->SystemSharedMemoryUnregister(&context, request, &unused);
    }
    if (created_) ::shm_unlink(key_.c_str());
  }

 private:
  explicit SharedInputs(std::shared_ptr<GRPCInferenceService::Stub> kserve)
      : kserve_(std::move(kserve)) {}

  std::shared_ptr<GRPCInferenceService::Stub> kserve_;
  std::string key_, region_;
  bool created_ = false, registered_ = false;
};

template <typename Request, typename Response>
class RpcTarget final : public Target {
 public:
  using SyncCall = std::function<grpc::Status(grpc::ClientContext*, const Request&, Response*)>;
  using AsyncCall = std::function<void(grpc::ClientContext*, const Request*, Response*,
                                       std::function<void(grpc::Status)>)>;
  RpcTarget(std::vector<Request> requests, SyncCall sync, AsyncCall async,
            std::unique_ptr<SharedInputs> shared = nullptr)
      : requests_(std::move(requests)),
        sync_(std::move(sync)),
        async_(std::move(async)),
        shared_(std::move(shared)) {}

  grpc::Status Call(int64_t i, grpc::ClientContext* context) override {
    Response response;
    return sync_(context, Pick(i), &response);
  }
  void CallAsync(int64_t i, grpc::ClientContext* context,
                 std::function<void(const grpc::Status&)> done) override {
    // The response lives until the callback has run.
    auto response = std::make_shared<Response>();
    Response* out = response.get();
    async_(context, &Pick(i), out,
           [response, done = std::move(done)](const grpc::Status& status) { done(status); });
  }

 private:
  const Request& Pick(int64_t i) const {
    return requests_[static_cast<size_t>(i) % requests_.size()];
  }

  std::vector<Request> requests_;
  SyncCall sync_;
  AsyncCall async_;
  std::unique_ptr<SharedInputs> shared_;  // --shared-memory: where the inputs are
};

// --- HTTP/REST (-i http) ------------------------------------------------------

// The gRPC status an HTTP answer stands for (the server's mapping, inverted),
// with the {"error": ...} message.
grpc::Status HttpStatusToGrpc(const absl::StatusOr<HttpResponse>& response) {
  if (!response.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(response.status().code()),
                        std::string(response.status().message()));
  }
  if (response->status == 200) return grpc::Status::OK;
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (response->status) {
    case 400:
      code = grpc::StatusCode::INVALID_ARGUMENT;
      break;
    case 401:
      code = grpc::StatusCode::UNAUTHENTICATED;
      break;
    case 403:
      code = grpc::StatusCode::PERMISSION_DENIED;
      break;
    case 404:
      code = grpc::StatusCode::NOT_FOUND;
      break;
    case 413:
    case 429:
      code = grpc::StatusCode::RESOURCE_EXHAUSTED;
      break;
    case 499:
      code = grpc::StatusCode::CANCELLED;
      break;
    case 501:
      code = grpc::StatusCode::UNIMPLEMENTED;
      break;
    case 503:
      code = grpc::StatusCode::UNAVAILABLE;
      break;
    case 504:
      code = grpc::StatusCode::DEADLINE_EXCEEDED;
      break;
    default:
      code = response->status >= 500 ? grpc::StatusCode::INTERNAL : code;
  }
  std::string message = absl::StrCat("HTTP ", response->status);
  const nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_string()) {
    message = body["error"].get<std::string>();
  }
  return grpc::Status(code, message);
}

// One prepared HTTP request.
struct HttpRequest {
  std::string path;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Sends prepared requests round-robin over a pool of kept-alive
// connections: a closed-loop worker takes one per call; the open loop's
// calls run on up to kAsyncThreads threads (a rate beyond what they keep up
// with shows as late sends, measured from their scheduled time).
class HttpTarget final : public Target {
 public:
  static constexpr int kAsyncThreads = 64;
  HttpTarget(std::string host, std::string port, std::vector<HttpRequest> requests)
      : host_(std::move(host)), port_(std::move(port)), requests_(std::move(requests)) {}
  ~HttpTarget() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }

  grpc::Status Call(int64_t i, grpc::ClientContext* context) override {
    std::unique_ptr<HttpClient> client = Take();
    const HttpRequest& r = requests_[static_cast<size_t>(i) % requests_.size()];
    const absl::Duration timeout = absl::FromChrono(context->deadline()) - absl::Now();
    const absl::StatusOr<HttpResponse> response =
        client->Send("POST", r.path, r.headers, r.body, std::max(timeout, absl::Milliseconds(1)));
    Give(std::move(client));
    return HttpStatusToGrpc(response);
  }

  void CallAsync(int64_t i, grpc::ClientContext* context,
                 std::function<void(const grpc::Status&)> done) override {
    absl::MutexLock lock(&mu_);
    queue_.push_back({i, context, std::move(done)});
    if (static_cast<int>(threads_.size()) < kAsyncThreads && queue_.size() > idle_threads_) {
      threads_.emplace_back([this] { Worker(); });
    }
  }

 private:
  struct Job {
    int64_t i;
    grpc::ClientContext* context;
    std::function<void(const grpc::Status&)> done;
  };

  void Worker() {
    for (;;) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        ++idle_threads_;
        mu_.Await(absl::Condition(
            +[](HttpTarget* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
              return t->stopping_ || !t->queue_.empty();
            },
            this));
        --idle_threads_;
        if (queue_.empty()) return;  // stopping
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job.done(Call(job.i, job.context));
    }
  }

  std::unique_ptr<HttpClient> Take() {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) return std::make_unique<HttpClient>(host_, port_);
    std::unique_ptr<HttpClient> client = std::move(free_.back());
    free_.pop_back();
    return client;
  }
  void Give(std::unique_ptr<HttpClient> client) {
    absl::MutexLock lock(&mu_);
    free_.push_back(std::move(client));
  }

  const std::string host_;
  const std::string port_;
  const std::vector<HttpRequest> requests_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<HttpClient>> free_ ABSL_GUARDED_BY(mu_);
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  size_t idle_threads_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // started under mu_, joined in the destructor
};

}  // namespace

// host and port of --url ("host:port").
absl::StatusOr<std::pair<std::string, std::string>> SplitUrl(const std::string& url) {
  const size_t colon = url.rfind(':');
  if (colon == std::string::npos || colon + 1 == url.size()) {
    return absl::InvalidArgumentError(absl::StrCat("--url '", url, "' is not host:port"));
  }
  std::string host = url.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, url.substr(colon + 1));
}

std::string ModelPath(const Options& o, const std::string& prefix) {
  return absl::StrCat(prefix, "/models/", o.model,
                      o.version.empty() ? "" : absl::StrCat("/versions/", o.version));
}

std::vector<std::pair<std::string, std::string>> TokenHeader(const Options& o) {
  if (o.connection.token.empty()) return {};
  return {{"Authorization", "Bearer " + o.connection.token}};
}

namespace {

// GET /v2/models/M over HTTP, as the gRPC ModelMetadata message.
absl::StatusOr<inference::ModelMetadataResponse> FetchHttpMetadata(HttpClient& client,
                                                                   const Options& o) {
  const absl::StatusOr<HttpResponse> response =
      client.Send("GET", ModelPath(o, "/v2"), TokenHeader(o), "", absl::Seconds(30));
  const grpc::Status status = HttpStatusToGrpc(response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("GET ", ModelPath(o, "/v2"), ": ", status.error_message()));
  }
  const nlohmann::json j = nlohmann::json::parse(response->body, nullptr, false);
  inference::ModelMetadataResponse meta;
  if (!j.is_object() || !j.contains("inputs") || !j["inputs"].is_array()) {
    return absl::InternalError("the model metadata is not KServe v2 JSON");
  }
  for (const nlohmann::json& in : j["inputs"]) {
    auto* tensor = meta.add_inputs();
    tensor->set_name(in.value("name", ""));
    tensor->set_datatype(in.value("datatype", ""));
    for (const nlohmann::json& d : in.value("shape", nlohmann::json::array())) {
      if (d.is_number_integer()) tensor->add_shape(d.get<int64_t>());
    }
  }
  return meta;
}

// A ModelInferRequest (raw contents) as an HTTP body with the binary tensor
// data extension; outputs come back binary too, as perf_analyzer asks.
HttpRequest HttpInferRequest(const inference::ModelInferRequest& request, const Options& o) {
  nlohmann::json inputs = nlohmann::json::array();
  std::string binary;
  for (int k = 0; k < request.inputs_size(); ++k) {
    const auto& input = request.inputs(k);
    std::string raw;
    if (k < request.raw_input_contents_size()) {
      raw = request.raw_input_contents(k);
    } else {  // BYTES as bytes_contents: length-prefixed
      for (const std::string& item : input.contents().bytes_contents()) {
        const auto n = static_cast<uint32_t>(item.size());
        raw.append(reinterpret_cast<const char*>(&n), 4);
        raw += item;
      }
    }
    inputs.push_back({{"name", input.name()},
                      {"datatype", input.datatype()},
                      {"shape", std::vector<int64_t>(input.shape().begin(), input.shape().end())},
                      {"parameters", {{"binary_data_size", raw.size()}}}});
    binary += raw;
  }
  const std::string header =
      nlohmann::json{{"inputs", inputs}, {"parameters", {{"binary_data_output", true}}}}.dump();
  HttpRequest out;
  out.path = ModelPath(o, "/v2") + "/infer";
  out.headers = TokenHeader(o);
  out.headers.emplace_back("Inference-Header-Content-Length", std::to_string(header.size()));
  out.headers.emplace_back("Content-Type", "application/octet-stream");
  out.body = header + binary;
  return out;
}

// Image files, read whole.
absl::StatusOr<std::vector<std::string>> ReadImages(const std::vector<std::string>& paths) {
  std::vector<std::string> images;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read image '", path, "'"));
    std::ostringstream bytes;
    bytes << in.rdbuf();
    images.push_back(std::move(bytes).str());
    if (images.back().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("image '", path, "' is empty"));
    }
  }
  return images;
}

// Request k carries images (k * batch + j) % F for j < batch; the sequence
// repeats after F / gcd(F, batch) requests, so that many are prepared.
std::vector<std::vector<const std::string*>> RotateImages(const std::vector<std::string>& images,
                                                          int batch) {
  const size_t f = images.size();
  const size_t period = f / std::gcd(f, static_cast<size_t>(batch));
  std::vector<std::vector<const std::string*>> requests(period);
  for (size_t k = 0; k < period; ++k) {
    for (size_t j = 0; j < static_cast<size_t>(batch); ++j) {
      requests[k].push_back(&images[(k * batch + j) % f]);
    }
  }
  return requests;
}

// One Classify or Detect request per rotation entry (its images, in order).
template <typename Request>
std::vector<Request> VisionRequests(const Options& o,
                                    const std::vector<std::vector<const std::string*>>& rotation) {
  std::vector<Request> requests;
  for (const auto& files : rotation) {
    Request& request = requests.emplace_back();
    request.set_model_name(o.model);
    request.set_model_version(o.version);
    for (const std::string* image : files) request.add_images()->set_data(*image);
  }
  return requests;
}

// ModelInfer requests carrying the rotation's images as one BYTES input.
absl::StatusOr<std::vector<inference::ModelInferRequest>> KServeImageRequests(
    const inference::ModelMetadataResponse& meta, const Options& o,
    const std::vector<std::vector<const std::string*>>& rotation) {
  if (meta.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("model '", o.model, "' has ", meta.inputs_size(),
                                                   " inputs; --image needs exactly one"));
  }
  std::vector<inference::ModelInferRequest> requests;
  for (const auto& files : rotation) {
    inference::ModelInferRequest& request = requests.emplace_back();
    request.set_model_name(o.model);
    request.set_model_version(o.version);
    auto* input = request.add_inputs();
    input->set_name(meta.inputs(0).name());
    input->set_datatype("BYTES");
    input->add_shape(static_cast<int64_t>(files.size()));
    for (const std::string* image : files) input->mutable_contents()->add_bytes_contents(*image);
  }
  return requests;
}

}  // namespace

// -i http: the same load over the HTTP/REST endpoint. KServe requests use
// the binary tensor data extension; classify/detect post the image (one)
// or a multipart body (several) to /v1/models/M/classify|detect.
absl::StatusOr<std::unique_ptr<Target>> BuildHttpTarget(const Options& o) {
  ASSIGN_OR_RETURN(auto host_port, SplitUrl(o.connection.url));
  HttpClient client(host_port.first, host_port.second);
  ASSIGN_OR_RETURN(inference::ModelMetadataResponse meta, FetchHttpMetadata(client, o));
  std::vector<HttpRequest> requests;
  if (o.api == "kserve" && o.images.empty()) {
    ASSIGN_OR_RETURN(std::vector<inference::ModelInferRequest> infer_requests,
                     BuildRequests(meta, o));
    for (const auto& request : infer_requests) requests.push_back(HttpInferRequest(request, o));
  } else {
    ASSIGN_OR_RETURN(std::vector<std::string> images, ReadImages(o.images));
    const std::vector<std::vector<const std::string*>> rotation = RotateImages(images, o.batch);
    if (o.api == "kserve") {
      ASSIGN_OR_RETURN(auto infer_requests, KServeImageRequests(meta, o, rotation));
      for (const auto& r : infer_requests) requests.push_back(HttpInferRequest(r, o));
    } else {
      for (const auto& files : rotation) {
        HttpRequest& r = requests.emplace_back();
        r.path = ModelPath(o, "/v1") + "/" + o.api;
        r.headers = TokenHeader(o);
        if (files.size() == 1) {
          r.headers.emplace_back("Content-Type", "application/octet-stream");
          r.body = *files[0];
          continue;
        }
        const std::string boundary = "rectifier-perf-boundary-7f3a";
        r.headers.emplace_back("Content-Type", "multipart/form-data; boundary=" + boundary);
        for (size_t j = 0; j < files.size(); ++j) {
          absl::StrAppend(&r.body, "--", boundary,
                          "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"", j,
                          "\"\r\n\r\n", *files[j], "\r\n");
        }
        absl::StrAppend(&r.body, "--", boundary, "--\r\n");
      }
    }
  }
  return std::unique_ptr<Target>(
      new HttpTarget(host_port.first, host_port.second, std::move(requests)));
}

// Builds what --api and --image ask for. Checks the model exists (metadata)
// first, so a typo is reported once instead of as a table of errors.
absl::StatusOr<std::unique_ptr<Target>> BuildTarget(const Connection& connection,
                                                    const Options& o) {
  std::shared_ptr<GRPCInferenceService::Stub> kserve =
      GRPCInferenceService::NewStub(connection.channel());
  auto meta = FetchMetadata(connection, *kserve, o);
  if (!meta.ok()) return meta.status();
  if (o.api == "kserve" && o.images.empty()) {
    auto built = BuildRequests(*meta, o);
    if (!built.ok()) return built.status();
    std::vector<inference::ModelInferRequest> requests = *std::move(built);
    std::unique_ptr<SharedInputs> shared;
    if (o.shared_memory == "system") {
      ASSIGN_OR_RETURN(shared, SharedInputs::Create(kserve, connection, &requests));
    }
    return std::unique_ptr<Target>(
        new RpcTarget<inference::ModelInferRequest, inference::ModelInferResponse>(
            std::move(requests),
            [kserve](grpc::ClientContext* c, const auto& r, auto* out) {
              return kserve->ModelInfer(c, r, out);
            },
            [kserve](grpc::ClientContext* c, const auto* r, auto* out, auto done) {
              kserve->async()->ModelInfer(c, r, out, std::move(done));
            },
            std::move(shared)));
  }
  auto images = ReadImages(o.images);
  if (!images.ok()) return images.status();
  // The requests copy the bytes they carry.
  const std::vector<std::vector<const std::string*>> rotation = RotateImages(*images, o.batch);

  if (o.api == "kserve") {
    auto requests = KServeImageRequests(*meta, o, rotation);
    if (!requests.ok()) return requests.status();
    return std::unique_ptr<Target>(
        new RpcTarget<inference::ModelInferRequest, inference::ModelInferResponse>(
            *std::move(requests),
            [kserve](grpc::ClientContext* c, const auto& r, auto* out) {
              return kserve->ModelInfer(c, r, out);
            },
            [kserve](grpc::ClientContext* c, const auto* r, auto* out, auto done) {
              kserve->async()->ModelInfer(c, r, out, std::move(done));
            }));
  }
  std::shared_ptr<v1::Vision::Stub> vision = v1::Vision::NewStub(connection.channel());
  if (o.api == "classify") {
    return std::unique_ptr<Target>(new RpcTarget<v1::ClassifyRequest, v1::ClassifyResponse>(
        VisionRequests<v1::ClassifyRequest>(o, rotation),
        [vision](grpc::ClientContext* c, const auto& r, auto* out) {
          return vision->Classify(c, r, out);
        },
        [vision](grpc::ClientContext* c, const auto* r, auto* out, auto done) {
          vision->async()->Classify(c, r, out, std::move(done));
        }));
  }
  if (o.api == "segment") {
    return std::unique_ptr<Target>(new RpcTarget<v1::SegmentRequest, v1::SegmentResponse>(
        VisionRequests<v1::SegmentRequest>(o, rotation),
        [vision](grpc::ClientContext* c, const auto& r, auto* out) {
          return vision->Segment(c, r, out);
        },
        [vision](grpc::ClientContext* c, const auto* r, auto* out, auto done) {
          vision->async()->Segment(c, r, out, std::move(done));
        }));
  }
  return std::unique_ptr<Target>(new RpcTarget<v1::DetectRequest, v1::DetectResponse>(
      VisionRequests<v1::DetectRequest>(o, rotation),
      [vision](grpc::ClientContext* c, const auto& r, auto* out) {
        return vision->Detect(c, r, out);
      },
      [vision](grpc::ClientContext* c, const auto* r, auto* out, auto done) {
        vision->async()->Detect(c, r, out, std::move(done));
      }));
}

}  // namespace rectifier::tools
