// Hostile-client tests against the real rectifier-server binary: stream
// cancellation storms, clients that never read, and inputs built to crash
// or exhaust the server. docs/DEPLOYMENT.md, "Limits and hardening".
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>
#include <thread>
#include <vector>

#include "grpc_service.grpc.pb.h"
#include "gtest/gtest.h"
#include "rectifier/v1/vision.grpc.pb.h"
#include "tests/imaging/test_images.h"
#include "tests/integration/scale_request.h"
#include "tests/integration/server_process.h"
#include "tests/integration/vision_models.h"
#include "tests/repository/test_models.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;
using inference::GRPCInferenceService;
using rectifier::v1::Vision;

std::string Png(const cv::Mat& image) {
  std::vector<unsigned char> bytes;
  EXPECT_TRUE(cv::imencode(".png", image, bytes));
  return std::string(bytes.begin(), bytes.end());
}

class HardeningTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() /
                         ("rectifier-hardening-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    WriteFile(*root_ / "scale" / "1" / "model.onnx", ScaleModelBytes(2.f));
    WriteFile(*root_ / "scale" / "config.pbtxt",
              "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [2, 4] }\n");
    // 4096 x 2 x 2 floats: 64 KiB in and out per request.
    WriteFile(*root_ / "wide" / "1" / "model.onnx", ScaleModelBytes(3.f, 4096));
    WriteFile(*root_ / "wide" / "config.pbtxt", "max_batch_size: 4\n");
    // No batching: every dimension comes from the client ([-1, 3, 2, 2]).
    WriteFile(*root_ / "unbatched" / "1" / "model.onnx", ScaleModelBytes(2.f));
    WriteFile(*root_ / "unbatched" / "config.pbtxt", "max_batch_size: 0\n");
    WriteVisionModels(*root_);
    WriteFile(*root_ / "brightness64" / "1" / "model.onnx", BrightnessClassifierBytes());
    WriteFile(*root_ / "brightness64" / "config.pbtxt",
              "max_batch_size: 64\n"
              "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_STRETCH }\n"
              "postprocessing { task: TASK_CLASSIFICATION labels: [\"bright\", \"dark\"] }\n");
    // One image worker and a 64 MiB image budget, so that the tests below
    // see both limits.
    std::vector<std::string> args = {"--model-repository", root_->string(),
                                     "--grpc-address",     "127.0.0.1:0",
                                     "--metrics-address",  "127.0.0.1:0",
                                     "--exit-timeout",     "5",
                                     "--image-threads",    "1",
                                     "--image-memory-mb",  "64"};
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
    channel_ = grpc::CreateChannel(server_->grpc_target(), grpc::InsecureChannelCredentials());
    vision_ = Vision::NewStub(channel_);
    kserve_ = GRPCInferenceService::NewStub(channel_);
  }
  void TearDown() override { ExpectServing(); }

  // The server is alive and answers a plain request correctly.
  void ExpectServing() {
    ASSERT_FALSE(server_->WaitForExit(absl::ZeroDuration()).has_value()) << "the server exited:\n"
                                                                         << server_->ReadOutput();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    inference::ModelInferResponse response;
    const grpc::Status status = kserve_->ModelInfer(&context, ScaleRequest(1, 1.f), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    float first = 0;
    ASSERT_EQ(response.raw_output_contents_size(), 1);
    std::memcpy(&first, response.raw_output_contents(0).data(), 4);
    EXPECT_FLOAT_EQ(first, 2.f);
  }

  static fs::path* root_;
  static ServerProcess* server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Vision::Stub> vision_;
  std::unique_ptr<GRPCInferenceService::Stub> kserve_;
};

fs::path* HardeningTest::root_ = nullptr;
ServerProcess* HardeningTest::server_ = nullptr;

// Runs `body(i)` for i in [0, total) on `threads` threads; each thread has
// its own channel, as separate clients would.
template <typename Body>
void RunClients(int threads, int total, const Body& body) {
  std::atomic<int> next{0};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      for (int i = next++; i < total; i = next++) body(i);
    });
  }
  for (std::thread& worker : workers) worker.join();
}

// Before the fix the reactor called Finish() under its own mutex and OnDone
// deleted it on another thread: the server died within a few thousand of
// these streams ("Mutex unlocked when destroyed", or a use after free).
TEST_F(HardeningTest, CancelledModelStreamsNeverCrashTheServer) {
  constexpr int kStreams = 5000;
  std::atomic<int> answered{0};
  RunClients(4, kStreams, [&](int i) {
    auto stub = GRPCInferenceService::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = stub->ModelStreamInfer(&context);
    for (int r = 0; r < 20; ++r) {
      if (!stream->Write(ScaleRequest(1, static_cast<float>(r)))) break;
    }
    inference::ModelStreamInferResponse response;
    if (i % 5 != 0) {  // Every fifth stream is cancelled before any read.
      for (int r = 0; r < 3 && stream->Read(&response); ++r) ++answered;
    }
    context.TryCancel();
    while (stream->Read(&response)) {
    }
    stream->Finish();
  });
  EXPECT_GT(answered.load(), kStreams);  // Most read streams got their 3 answers.
}

TEST_F(HardeningTest, CancelledDetectStreamsNeverCrashTheServer) {
  constexpr int kStreams = 5000;
  const std::string frame = Png(cv::Mat(32, 32, CV_8UC3, cv::Scalar::all(90)));
  std::atomic<int> answered{0};
  RunClients(4, kStreams, [&](int i) {
    auto stub = Vision::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = stub->DetectStream(&context);
    if (i % 2 == 1) {  // Cancel right after opening.
      context.TryCancel();
    } else {  // Cancel after 3 frames were answered.
      for (int f = 0; f < 8; ++f) {
        v1::DetectStreamRequest request;
        if (f == 0) request.set_model_name("fixed_box");
        request.set_frame_id(f);
        request.mutable_image()->set_data(frame);
        if (!stream->Write(request)) break;
      }
      v1::DetectStreamResponse response;
      for (int r = 0; r < 3 && stream->Read(&response); ++r) ++answered;
      context.TryCancel();
    }
    v1::DetectStreamResponse response;
    while (stream->Read(&response)) {
    }
    stream->Finish();
  });
  EXPECT_GT(answered.load(), kStreams);
}

// A client that sends without reading: before the fix ModelStreamInfer read
// and computed everything and kept each answer (and its request) until
// written, +600 MB for 6,000 requests of 64 KiB. Now at most a window is
// pending and gRPC flow control holds the client back.
TEST_F(HardeningTest, ModelStreamThatIsNeverReadStaysBounded) {
  inference::ModelInferRequest big;
  big.set_model_name("wide");
  auto* input = big.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  for (int64_t d : {1, 4096, 2, 2}) input->add_shape(d);
  big.add_raw_input_contents(std::string(64 << 10, '\0'));
  const int64_t before = ResidentBytes(server_->pid());
  ASSERT_GT(before, 0);
  grpc::ClientContext context;
  auto stream = kserve_->ModelStreamInfer(&context);
  std::atomic<int> written{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 6000 && !stop; ++i) {
      if (!stream->Write(big)) break;
      ++written;
    }
  });
  // The writer either finishes (flow control let everything through, which
  // the RSS check then judges) or blocks; give it a few seconds either way.
  for (int i = 0; i < 50 && written < 6000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const int64_t during = ResidentBytes(server_->pid());
  stop = true;
  context.TryCancel();
  writer.join();
  inference::ModelStreamInferResponse response;
  while (stream->Read(&response)) {
  }
  stream->Finish();
  EXPECT_LT(written.load(), 6000) << "nothing held the client back";
  EXPECT_LT(during - before, int64_t{150} << 20)
      << "server grew from " << before << " to " << during << " bytes after " << written
      << " unread requests";
}

// [2^61 + 1, 3, 2, 2] of FP64 needs 96 x 2^61 + 96 bytes, which wrapped
// around int64 to 96: the old size check passed with 96 bytes of data, the
// request then answered UNIMPLEMENTED with no message, a stream carrying it
// never ended and SIGTERM never finished.
TEST_F(HardeningTest, ShapeProductsThatOverflowAreRefused) {
  inference::ModelInferRequest request;
  request.set_model_name("unbatched");
  request.set_id("overflow");
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP64");
  for (int64_t d : {(int64_t{1} << 61) + 1, int64_t{3}, int64_t{2}, int64_t{2}}) {
    input->add_shape(d);
  }
  request.add_raw_input_contents(std::string(96, '\0'));
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    inference::ModelInferResponse response;
    const grpc::Status status = kserve_->ModelInfer(&context, request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("input 'x'"), std::string::npos)
        << status.error_message();
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = kserve_->ModelStreamInfer(&context);
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->Write(ScaleRequest(1, 1.f)));
  stream->WritesDone();
  inference::ModelStreamInferResponse response;
  int answers = 0;
  while (stream->Read(&response)) {
    ++answers;
    if (response.infer_response().id() == "overflow") {
      EXPECT_NE(response.error_message().find("input 'x'"), std::string::npos)
          << response.error_message();
    } else {
      EXPECT_TRUE(response.error_message().empty()) << response.error_message();
    }
  }
  EXPECT_EQ(answers, 2);
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();  // The stream ended.
}

// Each image is charged its worst case from its header before decoding. A
// 4096x2048 16-bit RGBA PNG may hold 4096 x 2048 x 2 bytes x (4 + 3)
// channels = 117 MiB, over this server's whole 64 MiB budget.
TEST_F(HardeningTest, ImagesBeyondTheMemoryBudgetAreRefused) {
  const std::string big = Png(cv::Mat(2048, 4096, CV_16UC4, cv::Scalar::all(30000)));
  const std::string small = Png(cv::Mat(64, 64, CV_8UC1, cv::Scalar(200)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ClassifyRequest request;
  request.set_model_name("brightness");
  request.add_images()->set_data(small);
  request.add_images()->set_data(big);
  v1::ClassifyResponse response;
  const grpc::Status status = vision_->Classify(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("4096x2048 PNG"), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("64 MiB"), std::string::npos) << status.error_message();

  grpc::ClientContext ok_context;
  ok_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ClassifyRequest ok_request;
  ok_request.set_model_name("brightness");
  ok_request.add_images()->set_data(small);
  const grpc::Status ok = vision_->Classify(&ok_context, ok_request, &response);
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

// A decompression bomb (WebpBomb: decoded, it took an image worker 2.4 s and
// 560 MB) is refused from its header, next to a good image in the request.
TEST_F(HardeningTest, DecompressionBombIsRefusedFromItsHeader) {
  const std::string bomb = imaging::WebpBomb();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ClassifyRequest request;
  request.set_model_name("brightness");
  request.add_images()->set_data(Png(cv::Mat(64, 64, CV_8UC1, cv::Scalar(200))));
  request.add_images()->set_data(bomb);
  v1::ClassifyResponse response;
  const grpc::Status status = vision_->Classify(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("15625x4096 (64000000 pixels) in 32 bytes"),
            std::string::npos)
      << status.error_message();
}

// A KServe BYTES batch checks the deadline before each image: a client that
// gave up does not keep the (single) image worker busy for the rest of its
// batch. Before, 64 large PNGs were decoded to the end after the deadline,
// and the next client waited for all of them.
TEST_F(HardeningTest, ImageBatchStopsAtTheDeadline) {
  cv::Mat gradient(3072, 4096, CV_8UC1);
  for (int y = 0; y < gradient.rows; ++y) gradient.row(y).setTo(y % 256);
  const std::string slow = Png(gradient);
  inference::ModelInferRequest request;
  request.set_model_name("brightness64");
  auto* input = request.add_inputs();
  input->set_name("image");
  input->set_datatype("BYTES");
  input->add_shape(64);
  for (int i = 0; i < 64; ++i) input->mutable_contents()->add_bytes_contents(slow);
  const absl::Time sent = absl::Now();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  inference::ModelInferResponse response;
  const grpc::Status status = kserve_->ModelInfer(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);

  // The next image client gets the worker right away.
  grpc::ClientContext next_context;
  next_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  v1::ClassifyRequest next;
  next.set_model_name("brightness");
  next.add_images()->set_data(Png(cv::Mat(16, 16, CV_8UC1, cv::Scalar(10))));
  v1::ClassifyResponse answer;
  const grpc::Status next_status = vision_->Classify(&next_context, next, &answer);
  ASSERT_TRUE(next_status.ok()) << next_status.error_message();
  // 64 of these images take seconds to decode; one takes ~50 ms here.
  EXPECT_LT(absl::Now() - sent, absl::Milliseconds(1500));
}

}  // namespace
}  // namespace rectifier::testing
