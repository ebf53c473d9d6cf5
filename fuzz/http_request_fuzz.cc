// libFuzzer target: an untrusted KServe v2 HTTP/REST request as the HTTP
// endpoint reads it. The input is "PATH[?QUERY]\nHEADER\nBODY": PATH goes
// to the router (ParseHttpRoute), QUERY to the image routes' parameters
// (ParseQuery, ApplyClassifyQuery, ApplyDetectQuery, ApplySegmentQuery), HEADER is both the
// Content-Type of an image body (ParseImageBody: raw or multipart) and the
// Inference-Header-Content-Length header ("-" for none), and BODY is parsed
// as an inference request (ParseHttpInferRequest, JSON plus binary tensor
// data). A request
// that parses is decoded against a tensor-only config as KServeService
// would (DecodeInferInputs, SelectOutputs), and its inputs are echoed back
// as outputs through the response encoder (EncodeHttpInferResponse), which
// must produce JSON that parses.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "fuzz/fuzz_models.h"
#include "grpc_service.pb.h"
#include "server/repository/model_config.h"
#include "server/service/http_codec.h"
#include "server/service/http_image_request.h"
#include "server/service/infer_codec.h"

namespace {

const inference::ModelConfig& Config() {
  static const auto* config = [] {
    auto parsed = rectifier::repository::ParseModelConfig(rectifier::fuzz::kTensorsConfig, "fuzz");
    RECTIFIER_FUZZ_CHECK(parsed.ok());
    return new inference::ModelConfig(*parsed);
  }();
  return *config;
}

// The next line of `rest` (without its newline), consumed.
absl::string_view Line(absl::string_view* rest) {
  const size_t end = rest->find('\n');
  const absl::string_view line = rest->substr(0, end);
  rest->remove_prefix(end == absl::string_view::npos ? rest->size() : end + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view rest(reinterpret_cast<const char*>(data), size);
  const absl::string_view target = Line(&rest);
  const absl::string_view header = Line(&rest);
  const size_t question = target.find('?');
  const absl::string_view path = target.substr(0, question);
  if (question != absl::string_view::npos) {
    const auto query = rectifier::service::ParseQuery(target.substr(question + 1));
    rectifier::fuzz::Report("ParseQuery", query.status());
    if (query.ok()) {
      rectifier::v1::ClassifyRequest classify;
      rectifier::fuzz::Report("ApplyClassifyQuery",
                              rectifier::service::ApplyClassifyQuery(*query, &classify));
      rectifier::v1::DetectRequest detect;
      rectifier::fuzz::Report("ApplyDetectQuery",
                              rectifier::service::ApplyDetectQuery(*query, &detect));
      rectifier::v1::SegmentRequest segment;
      rectifier::fuzz::Report("ApplySegmentQuery",
                              rectifier::service::ApplySegmentQuery(*query, &segment));
      RECTIFIER_FUZZ_CHECK(detect.class_filter_size() <= 4096);
    }
  }
  const auto parts = rectifier::service::ParseImageBody(header, rest);
  rectifier::fuzz::Report("ParseImageBody", parts.status());
  if (parts.ok()) {
    RECTIFIER_FUZZ_CHECK(!parts->empty());
    for (const auto& part : *parts) {
      // Every part is a slice of the body.
      RECTIFIER_FUZZ_CHECK(part.data.data() >= rest.data() &&
                           part.data.data() + part.data.size() <= rest.data() + rest.size());
    }
  }
  const auto route = rectifier::service::ParseHttpRoute(path);
  rectifier::fuzz::Report("ParseHttpRoute", route.status());
  if (route.ok() && !route->model.empty()) {
    RECTIFIER_FUZZ_CHECK(route->model.size() <= 1024 && route->version.size() <= 1024);
  }
  inference::ModelInferRequest request;
  const std::optional<absl::string_view> header_length =
      header == "-" ? std::nullopt : std::optional<absl::string_view>(header);
  const absl::Status parsed = rectifier::service::ParseHttpInferRequest(
      rest, header_length, rectifier::service::HttpInferLimits{}, &request);
  rectifier::fuzz::Report("ParseHttpInferRequest", parsed);
  if (!parsed.ok()) return 0;
  RECTIFIER_FUZZ_CHECK(request.inputs_size() > 0 &&
                       request.raw_input_contents_size() == request.inputs_size());
  const auto inputs = rectifier::service::DecodeInferInputs(request, Config());
  rectifier::fuzz::Report("DecodeInferInputs", inputs.status());
  rectifier::fuzz::Report("SelectOutputs",
                          rectifier::service::SelectOutputs(request, Config()).status());

  // The inputs echoed back as outputs: any bytes under any datatype.
  inference::ModelInferResponse response;
  for (int i = 0; i < request.inputs_size(); ++i) {
    auto* out = response.add_outputs();
    out->set_name(request.inputs(i).name());
    out->set_datatype(request.inputs(i).datatype());
    *out->mutable_shape() = request.inputs(i).shape();
    response.add_raw_output_contents(request.raw_input_contents(i));
  }
  const rectifier::service::HttpInferBody encoded =
      rectifier::service::EncodeHttpInferResponse(request, response);
  RECTIFIER_FUZZ_CHECK(encoded.json_size <= encoded.body.size());
  const auto reparsed =
      nlohmann::json::parse(encoded.body.substr(0, encoded.json_size), nullptr, false);
  RECTIFIER_FUZZ_CHECK(!reparsed.is_discarded());
  return 0;
}
