// rectifier-client: command-line client for a Rectifier (or any KServe v2 /
// Triton gRPC) server: health, ready, models, metadata, config, stats,
// infer, load, unload, and
// the vision API's classify, detect and stream (tools/client/vision_commands.h).
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc_service.grpc.pb.h"
#include "server/common/process_env.h"
#include "server/engine/tensor.h"
#include "tools/client/client_common.h"
#include "tools/client/tensor_file.h"
#include "tools/client/vision_commands.h"

namespace rectifier::tools {
namespace {

using inference::GRPCInferenceService;
using nlohmann::json;

class Client {
 public:
  // `connection` must outlive the client.
  Client(const Globals& g, const Connection& connection)
      : globals_(g),
        connection_(connection),
        stub_(GRPCInferenceService::NewStub(connection.channel())) {}

  void Prepare(grpc::ClientContext* context) const { SetDeadline(globals_, context); }

  int Health(const std::string& service) {
    auto health = grpc::health::v1::Health::NewStub(connection_.channel());
    grpc::ClientContext context;
    Prepare(&context);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = health->Check(&context, request, &response);
    if (!status.ok()) return CallError(connection_, status);
    const std::string state =
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
    if (globals_.json) {
      std::cout << json{{"service", service}, {"status", state}}.dump() << "\n";
    } else {
      std::cout << state << "\n";
    }
    return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : kExitRpcError;
  }

  int Models() {
    grpc::ClientContext context;
    Prepare(&context);
    inference::RepositoryIndexResponse response;
    const grpc::Status status = stub_->RepositoryIndex(&context, {}, &response);
    if (!status.ok()) return CallError(connection_, status);
    json rows = json::array();
    for (const auto& m : response.models()) {
      rows.push_back({{"name", m.name()},
                      {"version", m.version()},
                      {"state", m.state()},
                      {"reason", m.reason()}});
    }
    if (globals_.json) {
      std::cout << rows.dump() << "\n";
      return 0;
    }
    std::printf("%-24s %-8s %-12s %s\n", "MODEL", "VERSION", "STATE", "REASON");
    for (const auto& m : response.models()) {
      std::printf("%-24s %-8s %-12s %s\n", m.name().c_str(), m.version().c_str(), m.state().c_str(),
                  m.reason().c_str());
    }
    return 0;
  }

  // ServerReady, or ModelReady when `model` is given: prints READY or
  // NOT_READY; exit 0 only when ready (a script's readiness probe).
  int Ready(const std::string& model, const std::string& version) {
    grpc::ClientContext context;
    Prepare(&context);
    bool ready = false;
    grpc::Status status;
    if (model.empty()) {
      inference::ServerReadyResponse response;
      status = stub_->ServerReady(&context, {}, &response);
      ready = response.ready();
    } else {
      inference::ModelReadyRequest request;
      request.set_name(model);
      request.set_version(version);
      inference::ModelReadyResponse response;
      status = stub_->ModelReady(&context, request, &response);
      ready = response.ready();
    }
    if (!status.ok()) return CallError(connection_, status);
    if (globals_.json) {
      json out = {{"ready", ready}};
      if (!model.empty()) out["model"] = model;
      std::cout << out.dump() << "\n";
    } else {
      std::cout << (ready ? "READY" : "NOT_READY") << "\n";
    }
    return ready ? 0 : kExitRpcError;
  }

  // ModelConfig (Triton's extension): the effective configuration, printed as
  // the protobuf JSON mapping, as Triton's clients print it.
  int Config(const std::string& model, const std::string& version) {
    grpc::ClientContext context;
    Prepare(&context);
    inference::ModelConfigRequest request;
    request.set_name(model);
    request.set_version(version);
    inference::ModelConfigResponse response;
    const grpc::Status status = stub_->ModelConfig(&context, request, &response);
    if (!status.ok()) return CallError(connection_, status);
    return PrintMessage(response.config());
  }

  // ModelStatistics (Triton's extension) for one model, or every model when
  // `model` is empty: counts and cumulative durations per model version.
  int Stats(const std::string& model, const std::string& version) {
    grpc::ClientContext context;
    Prepare(&context);
    inference::ModelStatisticsRequest request;
    request.set_name(model);
    request.set_version(version);
    inference::ModelStatisticsResponse response;
    const grpc::Status status = stub_->ModelStatistics(&context, request, &response);
    if (!status.ok()) return CallError(connection_, status);
    return PrintMessage(response);
  }

  int Metadata(const std::string& model, const std::string& version) {
    grpc::ClientContext context;
    Prepare(&context);
    inference::ModelMetadataRequest request;
    request.set_name(model);
    request.set_version(version);
    inference::ModelMetadataResponse response;
    const grpc::Status status = stub_->ModelMetadata(&context, request, &response);
    if (!status.ok()) return CallError(connection_, status);
    auto tensors = [](const auto& list) {
      json out = json::array();
      for (const auto& t : list) {
        out.push_back({{"name", t.name()},
                       {"datatype", t.datatype()},
                       {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())}});
      }
      return out;
    };
    const json out = {{"name", response.name()},
                      {"versions", std::vector<std::string>(response.versions().begin(),
                                                            response.versions().end())},
                      {"platform", response.platform()},
                      {"inputs", tensors(response.inputs())},
                      {"outputs", tensors(response.outputs())}};
    std::cout << (globals_.json ? out.dump() : out.dump(2)) << "\n";
    return 0;
  }

  int Infer(const std::string& model, const std::string& version,
            const std::vector<std::string>& input_specs, const std::string& output_dir) {
    inference::ModelInferRequest request;
    request.set_model_name(model);
    request.set_model_version(version);
    request.set_id("rectifier-client");
    for (const std::string& spec : input_specs) {
      const size_t eq = spec.find('=');
      if (eq == std::string::npos || eq == 0) {
        return UsageError(absl::StrCat("--input '", spec, "' is not NAME=FILE"));
      }
      auto tensor = ReadTensorFile(spec.substr(eq + 1));
      if (!tensor.ok()) return UsageError(std::string(tensor.status().message()));
      auto* input = request.add_inputs();
      input->set_name(spec.substr(0, eq));
      input->set_datatype(engine::DataTypeName(tensor->type));
      for (const int64_t d : tensor->shape) input->add_shape(d);
      request.add_raw_input_contents(reinterpret_cast<const char*>(tensor->bytes.data()),
                                     tensor->bytes.size());
    }
    grpc::ClientContext context;
    Prepare(&context);
    inference::ModelInferResponse response;
    const grpc::Status status = stub_->ModelInfer(&context, request, &response);
    if (!status.ok()) return CallError(connection_, status);
    json outputs = json::array();
    for (int i = 0; i < response.outputs_size(); ++i) {
      const auto& out = response.outputs(i);
      json row = {{"name", out.name()},
                  {"datatype", out.datatype()},
                  {"shape", std::vector<int64_t>(out.shape().begin(), out.shape().end())}};
      const std::string& raw =
          i < response.raw_output_contents_size() ? response.raw_output_contents(i) : std::string();
      if (out.datatype() == "FP32") {
        std::vector<float> head(std::min<size_t>(raw.size() / 4, 8));
        std::memcpy(head.data(), raw.data(), head.size() * 4);
        row["first_values"] = head;
      }
      if (!output_dir.empty()) {
        engine::Tensor tensor;
        tensor.type =
            out.datatype() == "INT64" ? engine::DataType::kInt64 : engine::DataType::kFloat32;
        tensor.shape.assign(out.shape().begin(), out.shape().end());
        tensor.bytes.resize(raw.size());
        std::memcpy(tensor.bytes.data(), raw.data(), raw.size());
        const std::string path =
            (std::filesystem::path(output_dir) / (out.name() + ".npy")).string();
        if (absl::Status s = WriteNpy(path, tensor); !s.ok())
          return UsageError(std::string(s.message()));
        row["file"] = path;
      }
      outputs.push_back(row);
    }
    const json result = {{"model_name", response.model_name()},
                         {"model_version", response.model_version()},
                         {"id", response.id()},
                         {"outputs", outputs}};
    std::cout << (globals_.json ? result.dump() : result.dump(2)) << "\n";
    return 0;
  }

  int LoadOrUnload(const std::string& model, bool load) {
    grpc::ClientContext context;
    Prepare(&context);
    grpc::Status status;
    if (load) {
      inference::RepositoryModelLoadRequest request;
      request.set_model_name(model);
      inference::RepositoryModelLoadResponse response;
      status = stub_->RepositoryModelLoad(&context, request, &response);
    } else {
      inference::RepositoryModelUnloadRequest request;
      request.set_model_name(model);
      inference::RepositoryModelUnloadResponse response;
      status = stub_->RepositoryModelUnload(&context, request, &response);
    }
    if (!status.ok()) return CallError(connection_, status);
    if (globals_.json) {
      std::cout << json{{"model", model}, {load ? "loaded" : "unloaded", true}}.dump() << "\n";
    } else {
      std::cout << model << (load ? " loaded" : " unloaded") << "\n";
    }
    return 0;
  }

 private:
  // A response as JSON (one line with --json, indented otherwise).
  int PrintMessage(const google::protobuf::Message& message) const {
    std::string text;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.add_whitespace = !globals_.json;
    if (!google::protobuf::util::MessageToJsonString(message, &text, options).ok()) {
      std::cerr << "cannot print the server's answer as JSON\n";
      return kExitRpcError;
    }
    if (!text.empty() && text.back() == '\n') text.pop_back();
    std::cout << text << "\n";
    return 0;
  }

  Globals globals_;
  const Connection& connection_;
  std::unique_ptr<GRPCInferenceService::Stub> stub_;
};

int Main(int argc, char** argv) {
  Globals globals;
  CLI::App app{"Rectifier client: talks KServe v2 / Triton gRPC to a server.", "rectifier-client"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags may also follow the command
  app.add_option("--url", globals.connection.url, "Server host:port")->capture_default_str();
  app.add_option("--timeout", globals.timeout_s, "Seconds before a call gives up")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", globals.json, "Print machine-readable JSON");
  app.add_option("--max-message-mb", globals.max_message_mb, "Largest message in MiB")
      ->capture_default_str();
  AddConnectionFlags(app, &globals.connection);

  std::string service;
  auto* health = app.add_subcommand("health", "Health check; exit 0 only when SERVING");
  health->add_option("--service", service, "Service name ('' = whole server)");
  auto* models = app.add_subcommand("models", "Repository index with model states");
  std::string model, version, output_dir;
  std::vector<std::string> inputs;
  auto* ready =
      app.add_subcommand("ready", "ServerReady, or ModelReady of MODEL; exit 0 only when ready");
  ready->add_option("model", model, "Model name ('' = the server)");
  ready->add_option("--model-version", version, "Version ('' = newest)");
  auto* config = app.add_subcommand("config", "Model configuration (Triton ModelConfig), as JSON");
  config->add_option("model", model, "Model name")->required();
  config->add_option("--model-version", version, "Version ('' = newest)");
  auto* stats = app.add_subcommand(
      "stats", "Inference statistics (Triton ModelStatistics) of MODEL or of every model");
  stats->add_option("model", model, "Model name ('' = every model)");
  stats->add_option("--model-version", version, "Version ('' = all)");
  auto* metadata = app.add_subcommand("metadata", "Model metadata (inputs, outputs, versions)");
  metadata->add_option("model", model, "Model name")->required();
  metadata->add_option("--model-version", version, "Version ('' = newest)");
  auto* infer = app.add_subcommand("infer", "KServe ModelInfer with tensors from files");
  infer->add_option("model", model, "Model name")->required();
  infer->add_option("--model-version", version, "Version ('' = newest)");
  infer->add_option("--input", inputs, "NAME=FILE.npy|FILE.pb (repeatable)")->required();
  infer->add_option("--output-dir", output_dir, "Write each output as NAME.npy here");
  auto* load = app.add_subcommand("load", "Load or reload a model (explicit mode)");
  load->add_option("model", model, "Model name")->required();
  auto* unload = app.add_subcommand("unload", "Unload a model");
  unload->add_option("model", model, "Model name")->required();
  VisionCommands vision(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    return UsageError(absl::StrCat(e.what(), " (see --help)"));
  }

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(globals.max_message_mb << 20);
  args.SetMaxSendMessageSize(globals.max_message_mb << 20);
  auto connection = Connection::Create(globals.connection, args);
  if (!connection.ok()) return UsageError(std::string(connection.status().message()));
  Client client(globals, **connection);
  if (health->parsed()) return client.Health(service);
  if (models->parsed()) return client.Models();
  if (ready->parsed()) return client.Ready(model, version);
  if (config->parsed()) return client.Config(model, version);
  if (stats->parsed()) return client.Stats(model, version);
  if (metadata->parsed()) return client.Metadata(model, version);
  if (infer->parsed()) return client.Infer(model, version, inputs, output_dir);
  if (load->parsed()) return client.LoadOrUnload(model, true);
  if (unload->parsed()) return client.LoadOrUnload(model, false);
  if (const std::optional<int> code = vision.Run(globals, **connection)) return *code;
  return UsageError("no command (see --help)");
}

}  // namespace
}  // namespace rectifier::tools

int main(int argc, char** argv) {
  // Batches of large frames (39 MB at 8 x 3 x 640 x 640 FP32) would otherwise
  // be fresh, page-faulted mappings in every request and response.
  rectifier::common::ReuseLargeAllocations();
  return rectifier::tools::Main(argc, argv);
}
