#include "server/service/http_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "model_config.pb.h"
#include "server/service/http_image_request.h"

namespace rectifier::service {
namespace {

using Kind = HttpRoute::Kind;
using nlohmann::json;

TEST(HttpRouteTest, RoutesEveryKServePath) {
  struct Case {
    const char* path;
    Kind kind;
    const char* model;
    const char* version;
    const char* method;
  };
  const Case cases[] = {
      {"/v2", Kind::kServerMetadata, "", "", "GET"},
      {"/v2/", Kind::kServerMetadata, "", "", "GET"},
      {"/v2/health/live", Kind::kLive, "", "", "GET"},
      {"/v2/health/ready", Kind::kReady, "", "", "GET"},
      {"/v2/models/m", Kind::kModelMetadata, "m", "", "GET"},
      {"/v2/models/m/versions/3", Kind::kModelMetadata, "m", "3", "GET"},
      {"/v2/models/m/ready", Kind::kModelReady, "m", "", "GET"},
      {"/v2/models/m/versions/2/ready", Kind::kModelReady, "m", "2", "GET"},
      {"/v2/models/m/config", Kind::kModelConfig, "m", "", "GET"},
      {"/v2/models/m/stats", Kind::kModelStats, "m", "", "GET"},
      {"/v2/models/stats", Kind::kModelStats, "", "", "GET"},
      {"/v2/models/m/infer", Kind::kInfer, "m", "", "POST"},
      {"/v2/models/m/versions/7/infer", Kind::kInfer, "m", "7", "POST"},
      {"/v2/repository/index", Kind::kRepositoryIndex, "", "", "POST"},
      {"/v2/repository/models/m/load", Kind::kLoad, "m", "", "POST"},
      {"/v2/repository/models/m/unload", Kind::kUnload, "m", "", "POST"},
      {"/v1/models/m/classify", Kind::kClassify, "m", "", "POST"},
      {"/v1/models/m/versions/4/detect", Kind::kDetect, "m", "4", "POST"},
      {"/v1/models/m/segment", Kind::kSegment, "m", "", "POST"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    const absl::StatusOr<HttpRoute> route = ParseHttpRoute(c.path);
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_EQ(route->kind, c.kind);
    EXPECT_EQ(route->model, c.model);
    EXPECT_EQ(route->version, c.version);
    EXPECT_STREQ(route->method, c.method);
  }
}

TEST(HttpRouteTest, RoutesSystemSharedMemory) {
  struct Case {
    const char* path;
    Kind kind;
    const char* region;
    const char* method;
  };
  const Case cases[] = {
      {"/v2/systemsharedmemory/status", Kind::kShmStatus, "", "GET"},
      {"/v2/systemsharedmemory/region/in0/status", Kind::kShmStatus, "in0", "GET"},
      {"/v2/systemsharedmemory/region/in0/register", Kind::kShmRegister, "in0", "POST"},
      {"/v2/systemsharedmemory/unregister", Kind::kShmUnregister, "", "POST"},
      {"/v2/systemsharedmemory/region/in0/unregister", Kind::kShmUnregister, "in0", "POST"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.path);
    const absl::StatusOr<HttpRoute> route = ParseHttpRoute(c.path);
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_EQ(route->kind, c.kind);
    EXPECT_EQ(route->region, c.region);
    EXPECT_STREQ(route->method, c.method);
  }
  for (const char* path :
       {"/v2/systemsharedmemory", "/v2/systemsharedmemory/register",
        "/v2/systemsharedmemory/region//status", "/v2/systemsharedmemory/region/r",
        "/v2/systemsharedmemory/region/r/delete", "/v2/systemsharedmemory/x/r/status"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(ParseHttpRoute(path).status().code(), absl::StatusCode::kNotFound);
  }
}

TEST(HttpRouteTest, UnknownPathsAreNotFound) {
  for (const char* path : {"",
                           "/",
                           "/v1",
                           "/v2x",
                           "/v2/health",
                           "/v2/health/dead",
                           "/v2/models",
                           "/v2/models//ready",
                           "/v2/models/m/versions",
                           "/v2/models/m/versions//infer",
                           "/v2/models/m/explain",
                           "/v2/models/m/infer/more",
                           "/v2/repository",
                           "/v2/repository/models/m",
                           "/v2/repository/models/m/reload",
                           "/metrics",
                           "/v1",
                           "/v1/models/m",
                           "/v1/models/m/segmentation",
                           "/v1/models/m/versions/classify",
                           "/v1/models//classify"}) {
    SCOPED_TRACE(path);
    const absl::StatusOr<HttpRoute> route = ParseHttpRoute(path);
    ASSERT_FALSE(route.ok());
    EXPECT_EQ(route.status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_FALSE(ParseHttpRoute("/v2/models/" + std::string(2000, 'm')).ok());
}

TEST(HttpStatusTest, MapsCanonicalCodes) {
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kOk), 200);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kFailedPrecondition), 400);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnimplemented), 501);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kDeadlineExceeded), 504);
  EXPECT_EQ(HttpStatusFor(absl::StatusCode::kInternal), 500);
  EXPECT_EQ(HttpErrorBody(absl::NotFoundError("no \"m\"")), R"({"error":"no \"m\""})");
}

TEST(ProtoToJsonTest, Int64AsNumbersDefaultsAndMaps) {
  inference::ModelMetadataResponse metadata;
  metadata.set_name("m");
  auto* input = metadata.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  input->add_shape(-1);
  input->add_shape(int64_t{1} << 40);
  const json j = ProtoToJson(metadata);
  EXPECT_EQ(j["inputs"][0]["shape"], json::array({-1, int64_t{1} << 40}));
  EXPECT_EQ(j["versions"], json::array());
  EXPECT_EQ(j["platform"], "");

  inference::ModelStatisticsResponse stats;
  auto* model = stats.add_model_stats();
  model->set_name("m");
  model->set_inference_count(5);
  model->mutable_inference_stats()->mutable_success()->set_count(5);
  const json s = ProtoToJson(stats);
  EXPECT_EQ(s["model_stats"][0]["inference_count"], 5);
  EXPECT_EQ(s["model_stats"][0]["execution_count"], 0);  // defaults printed
  EXPECT_EQ(s["model_stats"][0]["inference_stats"]["success"]["ns"], 0);
  EXPECT_FALSE(s["model_stats"][0]["inference_stats"].contains("fail"));  // unset message

  inference::ModelConfig config;
  config.set_name("c");
  (*config.mutable_parameters())["k"].set_string_value("v");
  config.add_input()->set_data_type(inference::TYPE_FP16);
  const json c = ProtoToJson(config);
  EXPECT_EQ(c["parameters"]["k"]["string_value"], "v");
  EXPECT_EQ(c["input"][0]["data_type"], "TYPE_FP16");
}

inference::ModelInferRequest Parse(const std::string& body,
                                   std::optional<std::string> header_length = std::nullopt) {
  inference::ModelInferRequest request;
  const absl::Status s = ParseHttpInferRequest(
      body,
      header_length.has_value() ? std::optional<absl::string_view>(*header_length) : std::nullopt,
      HttpInferLimits{}, &request);
  EXPECT_TRUE(s.ok()) << s;
  return request;
}

absl::Status ParseError(const std::string& body, std::optional<std::string> header_length = {},
                        HttpInferLimits limits = {}) {
  inference::ModelInferRequest request;
  return ParseHttpInferRequest(
      body,
      header_length.has_value() ? std::optional<absl::string_view>(*header_length) : std::nullopt,
      limits, &request);
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (const T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

TEST(HttpInferRequestTest, JsonDataPackedLittleEndianPerDatatype) {
  const inference::ModelInferRequest r = Parse(R"({
    "id": "a1", "parameters": {"priority": 2, "timeout": 5000, "tag": "x", "f": 0.5, "b": true},
    "inputs": [
      {"name": "f", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2.5], [-3, 4]]},
      {"name": "d", "datatype": "FP64", "shape": [1], "data": [0.25]},
      {"name": "i8", "datatype": "INT8", "shape": [2], "data": [-128, 127]},
      {"name": "u16", "datatype": "UINT16", "shape": [1], "data": [65535]},
      {"name": "i64", "datatype": "INT64", "shape": [2], "data": [-9223372036854775808, 9223372036854775807]},
      {"name": "u64", "datatype": "UINT64", "shape": [1], "data": [18446744073709551615]},
      {"name": "b", "datatype": "BOOL", "shape": [3], "data": [true, false, true]},
      {"name": "s", "datatype": "BYTES", "shape": [2], "data": ["ab", ""]},
      {"name": "scalar", "datatype": "INT32", "shape": [], "data": 7}
    ],
    "outputs": [{"name": "y", "parameters": {"binary_data": true}}]})");
  EXPECT_EQ(r.id(), "a1");
  EXPECT_EQ(r.parameters().at("priority").int64_param(), 2);
  EXPECT_EQ(r.parameters().at("timeout").int64_param(), 5000);
  EXPECT_EQ(r.parameters().at("tag").string_param(), "x");
  EXPECT_EQ(r.parameters().at("f").double_param(), 0.5);
  EXPECT_TRUE(r.parameters().at("b").bool_param());
  ASSERT_EQ(r.inputs_size(), 9);
  ASSERT_EQ(r.raw_input_contents_size(), 9);
  EXPECT_EQ(r.inputs(0).shape(1), 2);
  EXPECT_EQ(r.raw_input_contents(0), Bytes<float>({1.0f, 2.5f, -3.0f, 4.0f}));
  EXPECT_EQ(r.raw_input_contents(1), Bytes<double>({0.25}));
  EXPECT_EQ(r.raw_input_contents(2), Bytes<int8_t>({-128, 127}));
  EXPECT_EQ(r.raw_input_contents(3), Bytes<uint16_t>({65535}));
  EXPECT_EQ(r.raw_input_contents(4), Bytes<int64_t>({INT64_MIN, INT64_MAX}));
  EXPECT_EQ(r.raw_input_contents(5), Bytes<uint64_t>({UINT64_MAX}));
  EXPECT_EQ(r.raw_input_contents(6), std::string("\1\0\1", 3));
  EXPECT_EQ(r.raw_input_contents(7), Bytes<uint32_t>({2}) + "ab" + Bytes<uint32_t>({0}));
  EXPECT_EQ(r.raw_input_contents(8), Bytes<int32_t>({7}));
  ASSERT_EQ(r.outputs_size(), 1);
  EXPECT_TRUE(r.outputs(0).parameters().at("binary_data").bool_param());
}

TEST(HttpInferRequestTest, BinaryPartsSliceInInputOrderAndMixWithJson) {
  const std::string a = Bytes<float>({1, 2, 3});
  const std::string c = Bytes<int32_t>({9});
  const std::string header = R"({"inputs": [
    {"name": "a", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 12}},
    {"name": "b", "datatype": "FP32", "shape": [1], "data": [5]},
    {"name": "c", "datatype": "INT32", "shape": [1], "parameters": {"binary_data_size": 4}}]})";
  const inference::ModelInferRequest r = Parse(header + a + c, std::to_string(header.size()));
  ASSERT_EQ(r.raw_input_contents_size(), 3);
  EXPECT_EQ(r.raw_input_contents(0), a);
  EXPECT_EQ(r.raw_input_contents(1), Bytes<float>({5}));
  EXPECT_EQ(r.raw_input_contents(2), c);
  // binary_data_size is consumed, not passed on as a tensor parameter.
  EXPECT_EQ(r.inputs(0).parameters().count("binary_data_size"), 0u);
}

TEST(HttpInferRequestTest, RefusesMalformedRequestsNamingTheProblem) {
  const struct {
    std::string body;
    std::optional<std::string> header_length;
    const char* message;
  } cases[] = {
      {"{", {}, "not valid JSON"},
      {"[1]", {}, "must be a JSON object"},
      {R"({"inputs": []})", {}, "'inputs' must be a non-empty array"},
      {R"({"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]})", {}, "'name' is missing"},
      {R"({"inputs": [{"name": "x", "shape": [1], "data": [1]}]})", {}, "'datatype' is missing"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]})", {}, "'shape' must be"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]})",
       {},
       "non-negative"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]})",
       {},
       "neither 'data' nor binary_data_size"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]})",
       {},
       "1 data elements for shape [2] (needs 2)"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]})",
       {},
       "expected a number for FP32, got string"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e300]}]})",
       {},
       "out of range for FP32"},
      {R"({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [256]}]})",
       {},
       "256 is out of range for UINT8"},
      {R"({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [-1]}]})",
       {},
       "-1 is out of range for UINT8"},
      {R"({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]})",
       {},
       "expected an integer for INT32"},
      {R"({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}]})",
       {},
       "expected true or false"},
      {R"({"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [1]}]})",
       {},
       "FP16 tensors cannot be sent as JSON data"},
      {R"({"inputs": [{"name": "x", "datatype": "COMPLEX", "shape": [1], "data": [1]}]})",
       {},
       "unknown datatype 'COMPLEX'"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
           "parameters": {"binary_data_size": 4}}]})",
       {},
       "both 'data' and binary_data_size"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
           "parameters": {"binary_data_size": 4}}]})",
       {},
       "more than the 0 bytes of binary data left"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
           "parameters": {"p": [1]}}]})",
       {},
       "parameter 'p' must be a boolean, number or string"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})", "999",
       "Inference-Header-Content-Length '999' is not a length within the body"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})", "abc",
       "Inference-Header-Content-Length 'abc'"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}xxxx)", "74",
       "4 bytes of binary data follow"},
      {R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
           "outputs": [{"parameters": {}}]})",
       {},
       "outputs[0]: 'name' is missing"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    const absl::Status s = ParseError(c.body, c.header_length);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(c.message), absl::string_view::npos) << s;
  }
}

TEST(HttpInferRequestTest, LimitsJsonSizeAndDataDepth) {
  HttpInferLimits limits;
  limits.max_json_bytes = 16;
  const std::string body =
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})";
  absl::Status s = ParseError(body, {}, limits);
  EXPECT_NE(s.message().find("over the limit of 16"), absl::string_view::npos) << s;

  limits = HttpInferLimits{};
  limits.max_data_depth = 3;
  s = ParseError(
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [[[[1]]]]}]})", {},
      limits);
  EXPECT_NE(s.message().find("nested more than 3 arrays deep"), absl::string_view::npos) << s;
  // 100,000 levels of nesting fail cleanly (no recursion in the walk).
  const std::string deep = std::string(100000, '[') + "1" + std::string(100000, ']');
  s = ParseError(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": )" + deep +
                 "}]}");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
}

inference::ModelInferResponse Response() {
  inference::ModelInferResponse response;
  response.set_model_name("m");
  response.set_model_version("1");
  response.set_id("q");
  auto add = [&](const char* name, const char* datatype, const std::vector<int64_t>& shape,
                 const std::string& raw) {
    auto* out = response.add_outputs();
    out->set_name(name);
    out->set_datatype(datatype);
    for (const int64_t d : shape) out->add_shape(d);
    response.add_raw_output_contents(raw);
  };
  add("f", "FP32", {2}, Bytes<float>({1.5f, NAN}));
  add("h", "FP16", {2}, Bytes<uint16_t>({0x3c00, 0xc000}));  // 1, -2
  add("bf", "BF16", {1}, Bytes<uint16_t>({0x3fc0}));         // 1.5
  add("i", "INT64", {1}, Bytes<int64_t>({-5}));
  add("b", "BOOL", {2}, std::string("\1\0", 2));
  add("s", "BYTES", {2}, Bytes<uint32_t>({2}) + "hi" + Bytes<uint32_t>({1}) + "\xff");
  return response;
}

TEST(HttpInferResponseTest, JsonDataForEveryDatatype) {
  const HttpInferBody encoded = EncodeHttpInferResponse(inference::ModelInferRequest(), Response());
  EXPECT_EQ(encoded.json_size, encoded.body.size());  // no binary part
  const json j = json::parse(encoded.body);
  EXPECT_EQ(j["model_name"], "m");
  EXPECT_EQ(j["model_version"], "1");
  EXPECT_EQ(j["id"], "q");
  const json& o = j["outputs"];
  EXPECT_EQ(o[0]["data"], json::parse("[1.5, null]"));
  EXPECT_EQ(o[0]["shape"], json::array({2}));
  EXPECT_EQ(o[1]["data"], json::parse("[1.0, -2.0]"));
  EXPECT_EQ(o[2]["data"], json::parse("[1.5]"));
  EXPECT_EQ(o[3]["data"], json::parse("[-5]"));
  EXPECT_EQ(o[4]["data"], json::parse("[true, false]"));
  EXPECT_EQ(o[5]["data"][0], "hi");
  EXPECT_EQ(o[5]["data"][1], "\xef\xbf\xbd");  // invalid UTF-8 replaced
}

TEST(HttpInferResponseTest, BinaryOutputsPerOutputOrForAll) {
  inference::ModelInferRequest request;
  auto* wanted = request.add_outputs();
  wanted->set_name("i");
  (*wanted->mutable_parameters())["binary_data"].set_bool_param(true);
  HttpInferBody encoded = EncodeHttpInferResponse(request, Response());
  ASSERT_LT(encoded.json_size, encoded.body.size());
  json j = json::parse(encoded.body.substr(0, encoded.json_size));
  EXPECT_EQ(j["outputs"][3]["parameters"]["binary_data_size"], 8);
  EXPECT_FALSE(j["outputs"][3].contains("data"));
  EXPECT_TRUE(j["outputs"][0].contains("data"));
  EXPECT_EQ(encoded.body.substr(encoded.json_size), Bytes<int64_t>({-5}));

  (*request.mutable_parameters())["binary_data_output"].set_bool_param(true);
  (*wanted->mutable_parameters())["binary_data"].set_bool_param(false);  // this one in JSON
  encoded = EncodeHttpInferResponse(request, Response());
  j = json::parse(encoded.body.substr(0, encoded.json_size));
  const inference::ModelInferResponse response = Response();
  std::string expected;
  for (int i = 0; i < response.outputs_size(); ++i) {
    if (i == 3) {
      EXPECT_TRUE(j["outputs"][i].contains("data"));
      continue;
    }
    EXPECT_EQ(j["outputs"][i]["parameters"]["binary_data_size"],
              response.raw_output_contents(i).size());
    expected += response.raw_output_contents(i);
  }
  EXPECT_EQ(encoded.body.substr(encoded.json_size), expected);
}

// Client shared memory over HTTP: an input naming a region has no data (an
// empty raw entry, read by the tensor codec), and an output written to a
// region answers with its parameters instead of data.
TEST(HttpInferRequestTest, SharedMemoryInputsCarryNoData) {
  const inference::ModelInferRequest r = Parse(R"({
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                "parameters": {"shared_memory_region": "in", "shared_memory_byte_size": 8}}],
    "outputs": [{"name": "y", "parameters": {"shared_memory_region": "out",
                                             "shared_memory_byte_size": 64}}]})");
  ASSERT_EQ(r.raw_input_contents_size(), 1);
  EXPECT_TRUE(r.raw_input_contents(0).empty());
  EXPECT_EQ(r.inputs(0).parameters().at("shared_memory_region").string_param(), "in");
  EXPECT_EQ(r.outputs(0).parameters().at("shared_memory_byte_size").int64_param(), 64);
  inference::ModelInferRequest refused;
  const absl::Status both = ParseHttpInferRequest(
      R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1],
                      "parameters": {"shared_memory_region": "in",
                                     "shared_memory_byte_size": 4}}]})",
      std::nullopt, HttpInferLimits{}, &refused);
  EXPECT_EQ(both.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(both.message().find("has a shared_memory_region and also 'data'"), std::string::npos)
      << both;
}

TEST(HttpInferResponseTest, SharedMemoryOutputsAnswerWithWhereNotData) {
  inference::ModelInferResponse response;
  response.set_model_name("m");
  auto* out = response.add_outputs();
  out->set_name("y");
  out->set_datatype("FP32");
  out->add_shape(2);
  (*out->mutable_parameters())["shared_memory_region"].set_string_param("out");
  (*out->mutable_parameters())["shared_memory_byte_size"].set_int64_param(8);
  response.add_raw_output_contents();
  const HttpInferBody encoded = EncodeHttpInferResponse(inference::ModelInferRequest(), response);
  EXPECT_EQ(encoded.json_size, encoded.body.size());
  const json j = json::parse(encoded.body);
  EXPECT_FALSE(j["outputs"][0].contains("data"));
  EXPECT_EQ(j["outputs"][0]["parameters"]["shared_memory_region"], "out");
  EXPECT_EQ(j["outputs"][0]["parameters"]["shared_memory_byte_size"], 8);
}

TEST(HttpImageBodyTest, RawBodyIsOneImage) {
  const auto parts = ParseImageBody("image/png", "abc");
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), 1u);
  EXPECT_EQ((*parts)[0].data, "abc");
  EXPECT_EQ((*parts)[0].filename, "");
  EXPECT_EQ(ParseImageBody("", "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(HttpImageBodyTest, MultipartPartsWithFilenames) {
  const std::string body =
      "preamble\r\n--B\r\nContent-Disposition: form-data; name=\"x\"; filename=\"a.png\"\r\n"
      "Content-Type: image/png\r\n\r\nAAA\r\n--B\r\n"
      "content-disposition: form-data; name=\"second\"\r\n\r\nB\r\nB\r\n"
      "--B\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--B--\r\n";
  const auto parts = ParseImageBody("multipart/form-data; boundary=\"B\"", body);
  ASSERT_TRUE(parts.ok()) << parts.status();
  ASSERT_EQ(parts->size(), 2u);  // the empty part is skipped
  EXPECT_EQ((*parts)[0].filename, "a.png");
  EXPECT_EQ((*parts)[0].data, "AAA");
  EXPECT_EQ((*parts)[1].filename, "second");
  EXPECT_EQ((*parts)[1].data, "B\r\nB");
}

TEST(HttpImageBodyTest, MalformedMultipartIsInvalidArgument) {
  const struct {
    const char* type;
    std::string body;
    const char* message;
  } cases[] = {
      {"multipart/form-data", "x", "without a usable boundary"},
      {"multipart/form-data; boundary=B", "no delimiter", "no '--B' line"},
      {"multipart/form-data; boundary=B", "--B", "ends inside a boundary line"},
      {"multipart/form-data; boundary=B", "--B\r\nheaders only", "no blank line"},
      {"multipart/form-data; boundary=B", "--B\r\n\r\ndata", "no closing boundary"},
      {"multipart/form-data; boundary=B", "--B--\r\n", "holds no images"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    const auto parts = ParseImageBody(c.type, c.body);
    ASSERT_FALSE(parts.ok());
    EXPECT_EQ(parts.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parts.status().message().find(c.message), absl::string_view::npos) << parts.status();
  }
}

TEST(HttpQueryTest, DecodesAndAppliesImageParameters) {
  auto query = ParseQuery("top_k=3&threshold=0.25&id=a%20b+c&priority=2&timeout_us=500&&");
  ASSERT_TRUE(query.ok()) << query.status();
  ASSERT_EQ(query->size(), 5u);
  EXPECT_EQ((*query)[2].second, "a b c");
  rectifier::v1::ClassifyRequest classify;
  ASSERT_TRUE(ApplyClassifyQuery(*query, &classify).ok());
  EXPECT_EQ(classify.top_k(), 3u);
  EXPECT_FLOAT_EQ(classify.threshold(), 0.25f);
  EXPECT_EQ(classify.id(), "a b c");
  EXPECT_EQ(classify.priority(), 2u);
  EXPECT_EQ(classify.timeout_us(), 500u);

  query =
      ParseQuery("classes=1,2&classes=7&score_threshold=0.5&iou_threshold=0.6&max_detections=9");
  ASSERT_TRUE(query.ok());
  rectifier::v1::DetectRequest detect;
  ASSERT_TRUE(ApplyDetectQuery(*query, &detect).ok());
  EXPECT_EQ(std::vector<uint32_t>(detect.class_filter().begin(), detect.class_filter().end()),
            (std::vector<uint32_t>{1, 2, 7}));
  EXPECT_FLOAT_EQ(detect.score_threshold(), 0.5f);
  EXPECT_FLOAT_EQ(detect.iou_threshold(), 0.6f);
  EXPECT_EQ(detect.max_detections(), 9u);

  EXPECT_FALSE(ParseQuery("a=%zz").ok());
  EXPECT_FALSE(ParseQuery("a=%4").ok());
  rectifier::v1::ClassifyRequest bad;
  for (const char* q : {"top_k=-1", "top_k=4294967296", "threshold=nan", "threshold=x", "k=1",
                        "score_threshold=0.5"}) {
    SCOPED_TRACE(q);
    const absl::Status s = ApplyClassifyQuery(*ParseQuery(q), &bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_NE(
      ApplyClassifyQuery(*ParseQuery("k=1"), &bad).message().find("unknown query parameter 'k'"),
      absl::string_view::npos);
}

}  // namespace
}  // namespace rectifier::service
