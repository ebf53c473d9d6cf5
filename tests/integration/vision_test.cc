// End-to-end tests of rectifier.v1.Vision and of KServe BYTES image inputs
// against the real rectifier-server and models written by the test.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>
#include <string>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "rectifier/v1/vision.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/vision_models.h"
#include "tests/repository/test_models.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;
using rectifier::v1::Vision;

std::string Png(const cv::Mat& image) {
  std::vector<unsigned char> bytes;
  EXPECT_TRUE(cv::imencode(".png", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

std::string Gray(int rows, int cols, int value) {
  return Png(cv::Mat(rows, cols, CV_8UC1, cv::Scalar(value)));
}

class VisionTest : public ::testing::Test {
 protected:
  // One server for the suite: start-up dominates each test's time otherwise.
  static void SetUpTestSuite() {
    root_ =
        new fs::path(fs::temp_directory_path() / ("rectifier-vision-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    WriteVisionModels(*root_);
    WriteFile(*root_ / "tensor" / "1" / "model.onnx", ScaleModelBytes(2.f));
    std::vector<std::string> args = {
        "--model-repository", root_->string(), "--grpc-address", "127.0.0.1:0",
        "--metrics-address",  "127.0.0.1:0",   "--exit-timeout", "5"};
    auto process = ServerProcess::Spawn(RECTIFIER_SERVER_BINARY, args);
    ASSERT_TRUE(process.ok()) << process.status();
    server_ = std::move(process).value().release();
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(60)).ok()) << server_->ReadOutput();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    fs::remove_all(*root_);
    delete root_;
  }
  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    auto channel = grpc::CreateChannel(server_->grpc_target(), grpc::InsecureChannelCredentials());
    vision_ = Vision::NewStub(channel);
    kserve_ = inference::GRPCInferenceService::NewStub(channel);
  }

  grpc::Status Classify(const std::vector<std::string>& images, v1::ClassifyResponse* response,
                        const std::string& model = "brightness") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ClassifyRequest request;
    request.set_model_name(model);
    request.set_id("call-1");
    for (const std::string& image : images) request.add_images()->set_data(image);
    return vision_->Classify(&context, request, response);
  }
  grpc::Status Detect(const std::vector<std::string>& images, v1::DetectResponse* response,
                      const std::string& model = "fixed_box") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::DetectRequest request;
    request.set_model_name(model);
    for (const std::string& image : images) request.add_images()->set_data(image);
    return vision_->Detect(&context, request, response);
  }

  grpc::Status Segment(const v1::SegmentRequest& request, v1::SegmentResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return vision_->Segment(&context, request, response);
  }

  static fs::path* root_;
  static ServerProcess* server_;
  std::unique_ptr<Vision::Stub> vision_;
  std::unique_ptr<inference::GRPCInferenceService::Stub> kserve_;
};

fs::path* VisionTest::root_ = nullptr;
ServerProcess* VisionTest::server_ = nullptr;

TEST_F(VisionTest, ClassifyLabelsEachImageAndReportsTiming) {
  v1::ClassifyResponse response;
  const grpc::Status status = Classify({Gray(40, 30, 230), Gray(16, 16, 20)}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.model_name(), "brightness");
  EXPECT_EQ(response.model_version(), "1");
  EXPECT_EQ(response.id(), "call-1");
  ASSERT_EQ(response.results_size(), 2);
  const v1::ClassifyResult& bright = response.results(0);
  ASSERT_EQ(bright.classes_size(), 2);
  EXPECT_EQ(bright.classes(0).label(), "bright");
  EXPECT_EQ(bright.classes(0).class_id(), 0);
  // softmax([m - 0.5, 0.5 - m]) with m = 230/255.
  const double m = 230.0 / 255.0;
  EXPECT_NEAR(bright.classes(0).score(), 1.0 / (1.0 + std::exp(-2.0 * (m - 0.5))), 1e-5);
  EXPECT_EQ(bright.image().width(), 30u);
  EXPECT_EQ(bright.image().height(), 40u);
  EXPECT_EQ(bright.image().format(), "png");
  EXPECT_GT(bright.timing().total_us(), 0u);
  EXPECT_GE(bright.timing().total_us(),
            bright.timing().decode_us() + bright.timing().preprocess_us());
  EXPECT_EQ(response.results(1).classes(0).label(), "dark");
}

TEST_F(VisionTest, ErrorsNameTheProblem) {
  v1::ClassifyResponse response;
  grpc::Status status = Classify({Gray(8, 8, 200), "not an image at all"}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("image 1:"), std::string::npos) << status.error_message();

  std::string truncated = Gray(64, 64, 100);
  truncated.resize(truncated.size() / 2);
  status = Classify({truncated}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();

  status = Classify({}, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("no images"), std::string::npos);

  status = Classify({Gray(8, 8, 1)}, &response, "no_such_model");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();

  // Wrong task for the model, and a model without an imaging pipeline.
  status = Classify({Gray(8, 8, 1)}, &response, "fixed_box");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("use Detect"), std::string::npos) << status.error_message();
  v1::DetectResponse detect;
  status = Detect({Gray(8, 8, 1)}, &detect, "brightness");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  status = Detect({Gray(8, 8, 1)}, &detect, "tensor");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  // A bad per-call option.
  grpc::ClientContext context;
  v1::DetectRequest request;
  request.set_model_name("fixed_box");
  request.add_images()->set_data(Gray(8, 8, 1));
  request.add_class_filter(3);
  status = vision_->Detect(&context, request, &detect);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("class_filter"), std::string::npos);

  // The server is still fine.
  ASSERT_TRUE(Classify({Gray(8, 8, 200)}, &response).ok());
}

// Unsigned fields are checked as sent: 2^32 - 1 used to become -1 (top_k:
// silently every class; max_detections: "must be > 0"), and a timeout_us of
// 2^64 - 1 a timeout that had expired before the request was queued.
TEST_F(VisionTest, UnsignedFieldsAreCheckedAsSent) {
  v1::ClassifyRequest classify;
  classify.set_model_name("brightness");
  classify.add_images()->set_data(Gray(8, 8, 200));
  classify.set_top_k(4294967295u);
  v1::ClassifyResponse classified;
  {
    grpc::ClientContext context;
    const grpc::Status status = vision_->Classify(&context, classify, &classified);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(),
              "top_k is 4294967295; it must be in [0, 1048576] (0: the model's)");
  }
  classify.set_top_k(1);
  classify.set_timeout_us(18446744073709551615u);
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = vision_->Classify(&context, classify, &classified);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(classified.results_size(), 1);
    EXPECT_EQ(classified.results(0).classes_size(), 1);
  }

  v1::DetectRequest detect;
  detect.set_model_name("fixed_box");
  detect.add_images()->set_data(Gray(8, 8, 1));
  detect.set_max_detections(4294967295u);
  v1::DetectResponse detected;
  grpc::ClientContext context;
  const grpc::Status status = vision_->Detect(&context, detect, &detected);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(),
            "max_detections is 4294967295; it must be in [0, 1048576] (0: the model's)");
}

TEST_F(VisionTest, DetectMapsBoxesBackThroughTheLetterbox) {
  // 64x32 (w x h) -> 32x16 in a 32x32 input, 8 px padding top and bottom.
  // The model's box (12..20, 12..20) in input pixels is (24..40, 8..24) here.
  v1::DetectResponse response;
  const grpc::Status status =
      Detect({Png(cv::Mat(32, 64, CV_8UC3, cv::Scalar(90, 90, 90)))}, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results_size(), 1);
  ASSERT_EQ(response.results(0).detections_size(), 1);
  const v1::Detection& d = response.results(0).detections(0);
  EXPECT_EQ(d.label(), "thing");
  EXPECT_NEAR(d.box().x1(), 24, 1e-3);
  EXPECT_NEAR(d.box().y1(), 8, 1e-3);
  EXPECT_NEAR(d.box().x2(), 40, 1e-3);
  EXPECT_NEAR(d.box().y2(), 24, 1e-3);
  // Mean over the 32x32 input: 16 rows of 90 and 16 rows of padding 114.
  EXPECT_NEAR(d.score(), (90.0 + 114.0) / 2 / 255.0, 1e-4);
}

// RESIZE_KEEP_SIZE on a model with dynamic height and width: the input is
// the image's aspect (long side 64, or its own size within 128x128), padded
// to x32 and centred; boxes come back in the original image's pixels.
TEST_F(VisionTest, DetectKeepsEachImagesOwnSizeOnADynamicModel) {
  struct Case {
    std::string model;
    int width, height;
    // The input the server must have built, and the image's place in it.
    int input_w, input_h;
    double scale, left, top;
  };
  const std::vector<Case> cases = {
      // 100x60 -> x0.64 = 64x38, padded to 64x64 (13 rows above).
      {"size_box", 100, 60, 64, 64, 0.64, 0, 13},
      // Portrait: 60x100 -> 38x64 in 64x64 (13 columns left).
      {"size_box", 60, 100, 64, 64, 0.64, 13, 0},
      // Own size: 100x60 -> padded to 128x64 (14 columns left, 2 rows above).
      {"size_box_native", 100, 60, 128, 64, 1.0, 14, 2},
      // Over the bound: 300x100 -> x0.4267 = 128x43, padded to 128x64.
      {"size_box_native", 300, 100, 128, 64, 128.0 / 300, 0, 10},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.model + " " + std::to_string(c.width) + "x" + std::to_string(c.height));
    v1::DetectResponse response;
    const grpc::Status status = Detect(
        {Png(cv::Mat(c.height, c.width, CV_8UC3, cv::Scalar(90, 90, 90)))}, &response, c.model);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.results_size(), 1);
    ASSERT_EQ(response.results(0).detections_size(), 1);
    const auto& box = response.results(0).detections(0).box();
    // The model's box spans the middle half of its input.
    const double x1 = (c.input_w / 4.0 - c.left) / c.scale;
    const double x2 = (c.input_w * 3 / 4.0 - c.left) / c.scale;
    const double y1 = (c.input_h / 4.0 - c.top) / c.scale;
    const double y2 = (c.input_h * 3 / 4.0 - c.top) / c.scale;
    const double tolerance = 1.0 / c.scale;  // one input pixel of rounding
    EXPECT_NEAR(box.x1(), std::max(0.0, x1), tolerance);
    EXPECT_NEAR(box.x2(), std::min<double>(c.width, x2), tolerance);
    EXPECT_NEAR(box.y1(), std::max(0.0, y1), tolerance);
    EXPECT_NEAR(box.y2(), std::min<double>(c.height, y2), tolerance);
  }
}

// A 40x24 gray image, dark (30) with a bright (230) rectangle at x 8..23,
// y 4..11 (even edges, so the threshold segmenter's half-size output maps
// back to it exactly).
cv::Mat RectangleImage() {
  cv::Mat image(24, 40, CV_8UC1, cv::Scalar(30));
  image(cv::Rect(8, 4, 16, 8)).setTo(cv::Scalar(230));
  return image;
}

cv::Mat DecodePng(const std::string& bytes) {
  const std::vector<unsigned char> data(bytes.begin(), bytes.end());
  return cv::imdecode(data, cv::IMREAD_UNCHANGED);
}

TEST_F(VisionTest, SegmentReturnsTheMaskInOriginalPixels) {
  const cv::Mat image = RectangleImage();
  cv::Mat expected(image.size(), CV_8UC1, cv::Scalar(0));
  expected(cv::Rect(8, 4, 16, 8)).setTo(cv::Scalar(1));
  // Own size (padded 40x24 -> 64x32, centred) and scaled up x2 (80x48): the
  // mask comes back at 40x24 either way.
  for (const char* model : {"threshold_seg", "threshold_seg_x2"}) {
    SCOPED_TRACE(model);
    v1::SegmentRequest request;
    request.set_model_name(model);
    request.set_id("seg-1");
    request.add_images()->set_data(Png(image));
    request.add_images()->set_data(Gray(10, 14, 250));
    v1::SegmentResponse response;
    const grpc::Status status = Segment(request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.id(), "seg-1");
    ASSERT_EQ(response.results_size(), 2);
    const v1::SegmentResult& r = response.results(0);
    EXPECT_EQ(r.width(), 40u);
    EXPECT_EQ(r.height(), 24u);
    EXPECT_EQ(r.image().width(), 40u);
    const cv::Mat mask = DecodePng(r.mask_png());
    ASSERT_EQ(mask.type(), CV_8UC1);
    ASSERT_EQ(mask.size(), image.size());
    EXPECT_EQ(cv::countNonZero(mask != expected), 0);
    ASSERT_EQ(r.classes_size(), 2);
    EXPECT_EQ(r.classes(0).label(), "dark");  // most pixels first
    EXPECT_EQ(r.classes(0).pixels(), 40u * 24 - 16 * 8);
    EXPECT_EQ(r.classes(1).label(), "bright");
    EXPECT_EQ(r.classes(1).class_id(), 1);
    EXPECT_EQ(r.classes(1).pixels(), 16u * 8);
    EXPECT_NEAR(r.classes(1).fraction(), 128.0 / 960, 1e-6);
    EXPECT_GT(r.timing().postprocess_us(), 0u);
    EXPECT_EQ(r.probabilities_size(), 0);
    // An all-bright image is one class, at its own size.
    const v1::SegmentResult& bright = response.results(1);
    EXPECT_EQ(bright.width(), 14u);
    ASSERT_EQ(bright.classes_size(), 1);
    EXPECT_EQ(bright.classes(0).pixels(), 140u);
  }
}

TEST_F(VisionTest, SegmentProbabilityMapsAndMinScore) {
  v1::SegmentRequest request;
  request.set_model_name("threshold_seg");
  request.add_images()->set_data(Png(RectangleImage()));
  request.set_all_probabilities(true);
  v1::SegmentResponse response;
  grpc::Status status = Segment(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const v1::SegmentResult& r = response.results(0);
  ASSERT_EQ(r.probabilities_size(), 2);
  EXPECT_EQ(r.probabilities(1).label(), "bright");
  const cv::Mat dark = DecodePng(r.probabilities(0).png());
  const cv::Mat bright = DecodePng(r.probabilities(1).png());
  ASSERT_EQ(bright.type(), CV_16UC1);
  ASSERT_EQ(bright.size(), cv::Size(40, 24));
  // softmax of [0.5 - p, p - 0.5] inside the rectangle, p = 230 / 255.
  const double p = 230.0 / 255 - 0.5;
  const double inside = 1.0 / (1.0 + std::exp(-2 * p));
  EXPECT_NEAR(bright.at<uint16_t>(8, 16) / 65535.0, inside, 1e-4);
  for (int y = 0; y < 24; ++y) {
    for (int x = 0; x < 40; ++x) {
      ASSERT_NEAR(dark.at<uint16_t>(y, x) + bright.at<uint16_t>(y, x), 65535, 1) << x << "," << y;
    }
  }
  // Only class 1's map; then a min_score no pixel reaches: all background.
  request.set_all_probabilities(false);
  request.add_probability_classes(1);
  request.set_min_score(0.95f);
  status = Segment(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.results(0).probabilities_size(), 1);
  EXPECT_EQ(response.results(0).probabilities(0).class_id(), 1);
  ASSERT_EQ(response.results(0).classes_size(), 1);
  EXPECT_EQ(response.results(0).classes(0).label(), "dark");
}

TEST_F(VisionTest, SegmentRefusesBadRequestsByName) {
  const auto refused = [&](const v1::SegmentRequest& request) {
    v1::SegmentResponse response;
    return Segment(request, &response);
  };
  v1::SegmentRequest base;
  base.set_model_name("threshold_seg");
  base.add_images()->set_data(Png(RectangleImage()));

  v1::SegmentRequest request = base;
  request.add_probability_classes(2);
  grpc::Status status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("probability_classes: class 2 does not exist"),
            std::string::npos)
      << status.error_message();
  request = base;
  request.set_min_score(1.5f);
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("min_score"), std::string::npos) << status.error_message();
  request = base;
  request.set_model_name("brightness");
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("use Classify"), std::string::npos)
      << status.error_message();
  request = base;
  request.clear_images();
  request.add_images()->set_data("not an image");
  status = refused(request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Classify on the segmenter names the call to use.
  v1::ClassifyResponse classify;
  status = Classify({Png(RectangleImage())}, &classify, "threshold_seg");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("use Segment"), std::string::npos)
      << status.error_message();
}

// Frames of distinct brightness: the detection score says which frame a
// response was computed from.
std::string Frame(int index, int size = 32) {
  return Png(cv::Mat(size, size, CV_8UC3, cv::Scalar::all(10 + 4 * (index % 60))));
}

TEST_F(VisionTest, DetectStreamAnswersInFrameOrder) {
  grpc::ClientContext context;
  auto stream = vision_->DetectStream(&context);
  constexpr int kFrames = 24;
  for (int i = 0; i < kFrames; ++i) {
    v1::DetectStreamRequest request;
    if (i == 0) {
      request.set_model_name("fixed_box");
      request.mutable_options()->set_max_in_flight(3);
    }
    request.set_frame_id(1000 + i);
    request.mutable_image()->set_data(i == 5 ? std::string("garbage") : Frame(i));
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  v1::DetectStreamResponse response;
  int next = 0;
  while (stream->Read(&response)) {
    ASSERT_LT(next, kFrames);
    EXPECT_EQ(response.frame_id(), uint64_t(1000 + next));
    EXPECT_EQ(response.skipped_frame_ids_size(), 0);
    if (next == 5) {
      EXPECT_EQ(response.error_code(), int(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_FALSE(response.error_message().empty());
    } else {
      EXPECT_EQ(response.error_code(), 0) << response.error_message();
      EXPECT_EQ(response.model_version(), "1");
      ASSERT_EQ(response.result().detections_size(), 1);
      EXPECT_NEAR(response.result().detections(0).score(), (10 + 4 * next) / 255.0, 1e-4);
    }
    ++next;
  }
  EXPECT_EQ(next, kFrames);
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(VisionTest, DropStaleSkipsWaitingFramesAndSaysWhich) {
  grpc::ClientContext context;
  auto stream = vision_->DetectStream(&context);
  // Large noisy frames take milliseconds each to decode, far longer than
  // writing them takes: with one frame in flight most must be skipped.
  constexpr int kFrames = 40;
  cv::Mat noise(720, 720, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
  const std::string big = Png(noise);
  for (int i = 0; i < kFrames; ++i) {
    v1::DetectStreamRequest request;
    if (i == 0) {
      request.set_model_name("fixed_box");
      request.mutable_options()->set_max_in_flight(1);
      request.mutable_options()->set_drop_stale(true);
    }
    request.set_frame_id(i);
    request.mutable_image()->set_data(big);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  v1::DetectStreamResponse response;
  std::vector<uint64_t> answered;
  std::set<uint64_t> seen;
  int skipped = 0;
  while (stream->Read(&response)) {
    EXPECT_EQ(response.error_code(), 0) << response.error_message();
    if (!answered.empty()) {
      EXPECT_GT(response.frame_id(), answered.back());
    }
    answered.push_back(response.frame_id());
    EXPECT_TRUE(seen.insert(response.frame_id()).second);
    for (uint64_t id : response.skipped_frame_ids()) {
      EXPECT_TRUE(seen.insert(id).second) << "frame " << id << " reported twice";
      ++skipped;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  // Every frame is either answered or reported skipped, exactly once; the
  // newest frame is never skipped.
  EXPECT_EQ(seen.size(), size_t(kFrames));
  EXPECT_EQ(answered.back(), uint64_t(kFrames - 1));
  EXPECT_GT(skipped, 0);
  EXPECT_EQ(answered.size() + skipped, size_t(kFrames));
}

TEST_F(VisionTest, StreamWithoutDropStaleAnswersEveryFrame) {
  grpc::ClientContext context;
  auto stream = vision_->DetectStream(&context);
  constexpr int kFrames = 12;
  cv::Mat noise(400, 400, CV_8UC3);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
  const std::string big = Png(noise);
  for (int i = 0; i < kFrames; ++i) {
    v1::DetectStreamRequest request;
    request.set_model_name("fixed_box");
    request.mutable_options()->set_max_in_flight(1);
    request.set_frame_id(i);
    request.mutable_image()->set_data(big);
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  v1::DetectStreamResponse response;
  int next = 0;
  while (stream->Read(&response)) {
    EXPECT_EQ(response.frame_id(), uint64_t(next++));
    EXPECT_EQ(response.skipped_frame_ids_size(), 0);
  }
  EXPECT_EQ(next, kFrames);
  EXPECT_TRUE(stream->Finish().ok());
}

std::string LengthPrefixed(const std::vector<std::string>& images) {
  std::string raw;
  for (const std::string& image : images) {
    const uint32_t n = static_cast<uint32_t>(image.size());
    const char len[4] = {char(n & 0xff), char((n >> 8) & 0xff), char((n >> 16) & 0xff),
                         char(n >> 24)};
    raw.append(len, 4);
    raw += image;
  }
  return raw;
}

TEST_F(VisionTest, KServeBytesInputRunsTheImagingPipeline) {
  const std::vector<std::string> images = {Gray(20, 20, 230), Gray(10, 30, 51)};
  for (const bool raw : {false, true}) {
    grpc::ClientContext context;
    inference::ModelInferRequest request;
    request.set_model_name("brightness");
    auto* input = request.add_inputs();
    input->set_name("image");
    input->set_datatype("BYTES");
    input->add_shape(2);
    if (raw) {
      request.add_raw_input_contents(LengthPrefixed(images));
    } else {
      for (const std::string& image : images) input->mutable_contents()->add_bytes_contents(image);
    }
    inference::ModelInferResponse response;
    const grpc::Status status = kserve_->ModelInfer(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_EQ(response.outputs(0).shape(0), 2);
    ASSERT_EQ(response.raw_output_contents(0).size(), 4 * sizeof(float));
    float logits[4];
    std::memcpy(logits, response.raw_output_contents(0).data(), sizeof(logits));
    // Same numbers as the vision API computes before its softmax.
    EXPECT_NEAR(logits[0], 230 / 255.0 - 0.5, 1e-5);
    EXPECT_NEAR(logits[1], 0.5 - 230 / 255.0, 1e-5);
    EXPECT_NEAR(logits[2], 51 / 255.0 - 0.5, 1e-5);
  }
}

TEST_F(VisionTest, KServeBytesInputErrors) {
  const auto infer = [&](const std::function<void(inference::ModelInferRequest&)>& edit) {
    grpc::ClientContext context;
    inference::ModelInferRequest request;
    request.set_model_name("brightness");
    auto* input = request.add_inputs();
    input->set_name("image");
    input->set_datatype("BYTES");
    input->add_shape(1);
    input->mutable_contents()->add_bytes_contents(Gray(8, 8, 9));
    edit(request);
    inference::ModelInferResponse response;
    return kserve_->ModelInfer(&context, request, &response);
  };
  grpc::Status s = infer([](auto& r) { r.mutable_inputs(0)->set_shape(0, 2); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("contents hold 1"), std::string::npos) << s.error_message();
  s = infer([](auto& r) { r.mutable_inputs(0)->set_name("x"); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = infer([](auto& r) {
    r.mutable_inputs(0)->clear_contents();
    r.add_raw_input_contents(
        std::string("\x10\x00\x00\x00"
                    "abc",
                    7));
  });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("truncated"), std::string::npos) << s.error_message();
  s = infer([](auto& r) { r.mutable_inputs(0)->mutable_contents()->set_bytes_contents(0, "xx"); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("image 0"), std::string::npos) << s.error_message();
  s = infer([](auto& r) { r.set_model_name("tensor"); });
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
}

// The value of the sample `series` (name{labels}) in a /metrics page; -1 if absent.
double Sample(const std::string& page, const std::string& series) {
  const size_t at = page.find(series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(page.substr(at + series.size() + 1));
}

TEST_F(VisionTest, VisionRequestsShowInMetricsAndStatistics) {
  const std::string requests =
      "rectifier_requests_total{api=\"vision\",model=\"brightness\",outcome=\"success\","
      "version=\"1\"}";
  const std::string decodes =
      "rectifier_stage_duration_seconds_count{model=\"brightness\",stage=\"decode\","
      "version=\"1\"}";
  const auto success_count = [&] {
    grpc::ClientContext context;
    inference::ModelStatisticsRequest request;
    request.set_name("brightness");
    inference::ModelStatisticsResponse stats;
    EXPECT_TRUE(kserve_->ModelStatistics(&context, request, &stats).ok());
    return stats.model_stats_size() == 1
               ? static_cast<int64_t>(stats.model_stats(0).inference_stats().success().count())
               : -1;
  };
  auto before = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(before.ok()) << before.status();
  const int64_t stats_before = success_count();
  v1::ClassifyResponse response;
  ASSERT_TRUE(Classify({Gray(8, 8, 200), Gray(8, 8, 10), Gray(9, 9, 99)}, &response).ok());
  auto after = HttpGet(server_->metrics_port(), "/metrics");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Sample(*after, requests) - std::max(0.0, Sample(*before, requests)), 3) << *after;
  EXPECT_EQ(Sample(*after, decodes) - std::max(0.0, Sample(*before, decodes)), 3);
  EXPECT_EQ(success_count() - stats_before, 3);
}

TEST(VisionLimitsTest, MessagesOverTheLimitAreResourceExhausted) {
  const fs::path root =
      fs::temp_directory_path() / ("rectifier-vision-limit-" + std::to_string(getpid()));
  fs::remove_all(root);
  WriteFile(root / "brightness" / "1" / "model.onnx", BrightnessClassifierBytes());
  WriteFile(root / "brightness" / "config.pbtxt",
            "max_batch_size: 8\npreprocessing { color_format: COLOR_GRAY }\n"
            "postprocessing { task: TASK_CLASSIFICATION }\n");
  auto process = ServerProcess::Spawn(
      RECTIFIER_SERVER_BINARY, {"--model-repository", root.string(), "--grpc-address",
                                "127.0.0.1:0", "--metrics-address", "", "--max-message-mb", "1"});
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_TRUE((*process)->WaitUntilServing(absl::Seconds(60)).ok()) << (*process)->ReadOutput();
  auto stub = Vision::NewStub(
      grpc::CreateChannel((*process)->grpc_target(), grpc::InsecureChannelCredentials()));
  cv::Mat noise(1024, 1024, CV_8UC1);
  cv::randu(noise, cv::Scalar::all(0), cv::Scalar::all(255));
  for (const bool too_big : {true, false}) {
    grpc::ClientContext context;
    v1::ClassifyRequest request;
    request.set_model_name("brightness");
    request.add_images()->set_data(too_big ? Png(noise) : Gray(64, 64, 200));
    v1::ClassifyResponse response;
    const grpc::Status status = stub->Classify(&context, request, &response);
    if (too_big) {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << status.error_message();
    } else {
      EXPECT_TRUE(status.ok()) << status.error_message();
    }
  }
  process->reset();
  fs::remove_all(root);
}

}  // namespace
}  // namespace rectifier::testing
