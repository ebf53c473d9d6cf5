// End-to-end tests of rectifier-client's vision commands (classify, detect
// --draw, stream) and of rectifier-perf over the vision API and KServe BYTES
// image inputs, against the real server with two tiny image models whose
// answers are known (tests/integration/vision_models.h).
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/vision_models.h"
#include "tests/repository/test_models.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// An 8-bit CT slice, 24 rows x 32 columns, all 200, with a file window
// (center 128, width 256) that maps it to about 0.78 of full scale.
bool WriteDicom(const std::string& path) {
  DcmFileFormat file;
  DcmDataset* ds = file.getDataset();
  ds->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  ds->putAndInsertString(DCM_SOPInstanceUID, "1.2.826.0.1.3680043.2.1143.11");
  ds->putAndInsertString(DCM_StudyInstanceUID, "1.2.826.0.1.3680043.2.1143.12");
  ds->putAndInsertString(DCM_SeriesInstanceUID, "1.2.826.0.1.3680043.2.1143.13");
  ds->putAndInsertString(DCM_Modality, "CT");
  ds->putAndInsertUint16(DCM_Rows, 24);
  ds->putAndInsertUint16(DCM_Columns, 32);
  ds->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  ds->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  ds->putAndInsertUint16(DCM_BitsAllocated, 8);
  ds->putAndInsertUint16(DCM_BitsStored, 8);
  ds->putAndInsertUint16(DCM_HighBit, 7);
  ds->putAndInsertUint16(DCM_PixelRepresentation, 0);
  ds->putAndInsertString(DCM_RescaleSlope, "1");
  ds->putAndInsertString(DCM_RescaleIntercept, "0");
  ds->putAndInsertString(DCM_WindowCenter, "128");
  ds->putAndInsertString(DCM_WindowWidth, "256");
  const std::vector<Uint8> pixels(24 * 32, 200);
  ds->putAndInsertUint8Array(DCM_PixelData, pixels.data(), pixels.size());
  return file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good();
}

class ToolsVisionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() /
                         ("rectifier-tools-vision-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    const fs::path repo = *root_ / "repo";
    WriteFile(repo / "brightness" / "1" / "model.onnx", BrightnessClassifierBytes());
    WriteFile(repo / "brightness" / "config.pbtxt",
              "max_batch_size: 8\n"
              "dynamic_batching { }\n"
              "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_STRETCH }\n"
              "postprocessing { task: TASK_CLASSIFICATION labels: [\"bright\", \"dark\"] "
              "top_k: 2 }\n");
    WriteFile(repo / "fixed_box" / "1" / "model.onnx", FixedBoxDetectorBytes());
    WriteFile(repo / "fixed_box" / "config.pbtxt",
              "max_batch_size: 4\n"
              "preprocessing { resize_mode: RESIZE_LETTERBOX }\n"
              "postprocessing { task: TASK_DETECTION score_threshold: 0.001 labels: [\"thing\"] "
              "}\n");
    WriteFile(repo / "threshold_seg" / "1" / "model.onnx", ThresholdSegmenterBytes());
    WriteFile(repo / "threshold_seg" / "config.pbtxt",
              "max_batch_size: 4\n"
              "engine { max_input_dims { name: \"x\" dims: [ 1, 128, 128 ] } }\n"
              "preprocessing { color_format: COLOR_GRAY resize_mode: RESIZE_KEEP_SIZE "
              "scale: 0.003921569 }\n"
              "postprocessing { task: TASK_SEGMENTATION labels: [\"dark\", \"bright\"] }\n");
    cv::Mat rectangle(24, 40, CV_8UC1, cv::Scalar(30));
    rectangle(cv::Rect(8, 4, 16, 8)).setTo(cv::Scalar(230));
    ASSERT_TRUE(cv::imwrite(Path("rectangle.png"), rectangle));
    ASSERT_TRUE(cv::imwrite(Path("bright.png"), cv::Mat(40, 30, CV_8UC1, cv::Scalar(230))));
    ASSERT_TRUE(cv::imwrite(Path("dark.png"), cv::Mat(16, 16, CV_8UC1, cv::Scalar(20))));
    ASSERT_TRUE(cv::imwrite(Path("road.png"), cv::Mat(128, 256, CV_8UC3, cv::Scalar::all(90))));
    WriteFile(*root_ / "garbage.png", "this is not an image");
    ASSERT_TRUE(WriteDicom(Path("slice.dcm")));

    // A short MJPG video whose frames differ in brightness (the detector's
    // score is the frame's mean).
    cv::VideoWriter video(Path("clip.avi"), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10,
                          cv::Size(64, 48));
    ASSERT_TRUE(video.isOpened());
    for (int i = 0; i < kVideoFrames; ++i) {
      video.write(cv::Mat(48, 64, CV_8UC3, cv::Scalar::all(20 + 15 * i)));
    }
    video.release();

    auto server =
        ServerProcess::Spawn(RECTIFIER_SERVER_BINARY,
                             {"--model-repository", repo.string(), "--grpc-address", "127.0.0.1:0",
                              "--metrics-address", "127.0.0.1:0", "--exit-timeout", "5"});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(60)).ok()) << server_->ReadOutput();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    fs::remove_all(*root_);
    delete root_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  static std::string Path(const std::string& name) { return (*root_ / name).string(); }

  static ExitResult Client(std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", server_->grpc_target()});
    return RunToExit(RECTIFIER_CLIENT_BINARY, args, absl::Seconds(60));
  }
  static ExitResult Perf(std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", server_->grpc_target()});
    return RunToExit(RECTIFIER_PERF_BINARY, args, absl::Seconds(120));
  }

  // RunToExit captures stdout and stderr together: the lines that are JSON
  // objects, in order.
  static std::vector<json> JsonLines(const std::string& text) {
    std::vector<json> lines;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (line.empty() || line.front() != '{') continue;
      lines.push_back(json::parse(line));
    }
    return lines;
  }

  // The CSV's rows after the header, as fields.
  static std::vector<std::vector<std::string>> CsvRows(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    std::vector<std::vector<std::string>> rows;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      rows.push_back(absl::StrSplit(line, ','));
    }
    return rows;
  }

  static constexpr int kVideoFrames = 12;
  static fs::path* root_;
  static ServerProcess* server_;
};

fs::path* ToolsVisionTest::root_ = nullptr;
ServerProcess* ToolsVisionTest::server_ = nullptr;

TEST_F(ToolsVisionTest, ClassifyPrintsTopClassesPerFile) {
  ExitResult run =
      Client({"classify", "brightness", Path("bright.png"), Path("dark.png"), "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::vector<json> lines = JsonLines(run.stderr_text);
  ASSERT_EQ(lines.size(), 1u) << run.stderr_text;
  const json& reply = lines[0];
  EXPECT_EQ(reply["model_name"], "brightness");
  EXPECT_EQ(reply["model_version"], "1");
  ASSERT_EQ(reply["results"].size(), 2u);
  const json& bright = reply["results"][0];
  EXPECT_EQ(bright["file"], Path("bright.png"));
  ASSERT_EQ(bright["classes"].size(), 2u);
  EXPECT_EQ(bright["classes"][0]["label"], "bright");
  EXPECT_EQ(bright["classes"][0]["class_id"], 0);
  // softmax([m - 0.5, 0.5 - m]) with m = 230/255.
  const double m = 230.0 / 255.0;
  EXPECT_NEAR(bright["classes"][0]["score"].get<double>(), 1.0 / (1.0 + std::exp(-2.0 * (m - 0.5))),
              1e-5);
  EXPECT_EQ(bright["image"]["width"], 30);
  EXPECT_EQ(bright["image"]["height"], 40);
  EXPECT_EQ(bright["image"]["format"], "png");
  EXPECT_GT(bright["timing"]["total_us"].get<uint64_t>(), 0u);
  EXPECT_EQ(reply["results"][1]["classes"][0]["label"], "dark");

  // --top-k and the text form.
  ExitResult top1 = Client({"classify", "brightness", Path("dark.png"), "--top-k", "1"});
  ASSERT_EQ(top1.exit_code, 0) << top1.stderr_text;
  EXPECT_NE(top1.stderr_text.find("dark.png: 16x16 png"), std::string::npos) << top1.stderr_text;
  EXPECT_NE(top1.stderr_text.find("  dark "), std::string::npos) << top1.stderr_text;
  EXPECT_EQ(top1.stderr_text.find("  bright "), std::string::npos) << top1.stderr_text;
}

// segment: class areas per file; --draw writes the overlay, the mask as
// received and the probability maps asked for.
TEST_F(ToolsVisionTest, SegmentPrintsAreasAndDrawsMasks) {
  const fs::path out_dir = *root_ / "segmented";
  ExitResult run = Client({"--json", "segment", "threshold_seg", Path("rectangle.png"), "--draw",
                           out_dir.string(), "--probabilities", "1"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::vector<json> lines = JsonLines(run.stderr_text);
  ASSERT_EQ(lines.size(), 1u) << run.stderr_text;
  const json& result = lines[0]["results"][0];
  EXPECT_EQ(result["width"], 40);
  ASSERT_EQ(result["classes"].size(), 2u);
  EXPECT_EQ(result["classes"][1]["label"], "bright");
  EXPECT_EQ(result["classes"][1]["pixels"], 16 * 8);
  EXPECT_FALSE(result.contains("mask_png"));  // the PNGs go to --draw, not the terminal
  EXPECT_EQ(result["drawn"], (out_dir / "rectangle.png").string());
  const cv::Mat mask = cv::imread((out_dir / "rectangle_mask.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(mask.size(), cv::Size(40, 24));
  EXPECT_EQ(cv::countNonZero(mask), 16 * 8);
  EXPECT_EQ(mask.at<uint8_t>(4, 8), 1);
  const cv::Mat map =
      cv::imread((out_dir / "rectangle_prob_bright.png").string(), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(map.type(), CV_16UC1);
  EXPECT_GT(map.at<uint16_t>(8, 16), 32768);  // inside: bright is likelier
  EXPECT_LT(map.at<uint16_t>(0, 0), 32768);
  const cv::Mat overlay = cv::imread((out_dir / "rectangle.png").string(), cv::IMREAD_COLOR);
  ASSERT_EQ(overlay.size(), cv::Size(40, 24));
  EXPECT_EQ(overlay.at<cv::Vec3b>(0, 0), cv::Vec3b(30, 30, 30));  // class 0: untouched
  const cv::Vec3b inside = overlay.at<cv::Vec3b>(8, 16);          // class 1: blended red
  EXPECT_GT(inside[2], inside[0]) << inside;

  ExitResult text = Client({"segment", "threshold_seg", Path("rectangle.png")});
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  EXPECT_NE(text.stderr_text.find("bright"), std::string::npos) << text.stderr_text;
  ExitResult bad =
      Client({"segment", "threshold_seg", Path("rectangle.png"), "--probabilities", "one"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.stderr_text.find("--probabilities takes 'all' or class ids"), std::string::npos)
      << bad.stderr_text;
  ExitResult wrong = Client({"segment", "brightness", Path("rectangle.png")});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_NE(wrong.stderr_text.find("FAILED_PRECONDITION"), std::string::npos) << wrong.stderr_text;
}

TEST_F(ToolsVisionTest, DetectPrintsAndDrawsBoxes) {
  // 256x128 letterboxed into 32x32 (scale 1/8, 8 px padding top and bottom):
  // the model's box (12..20, 12..20) is (96..160, 32..96) in the image.
  const fs::path out_dir = *root_ / "drawn";
  ExitResult run =
      Client({"--json", "detect", "fixed_box", Path("road.png"), "--draw", out_dir.string()});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::vector<json> lines = JsonLines(run.stderr_text);
  ASSERT_EQ(lines.size(), 1u) << run.stderr_text;
  const json& result = lines[0]["results"][0];
  ASSERT_EQ(result["detections"].size(), 1u);
  const json& d = result["detections"][0];
  EXPECT_EQ(d["label"], "thing");
  EXPECT_NEAR(d["box"][0].get<double>(), 96, 1e-3);
  EXPECT_NEAR(d["box"][1].get<double>(), 32, 1e-3);
  EXPECT_NEAR(d["box"][2].get<double>(), 160, 1e-3);
  EXPECT_NEAR(d["box"][3].get<double>(), 96, 1e-3);
  EXPECT_NEAR(d["score"].get<double>(), (90.0 + 114.0) / 2 / 255.0, 1e-4);
  EXPECT_EQ(result["drawn"], (out_dir / "road.png").string());

  const cv::Mat drawn = cv::imread((out_dir / "road.png").string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(drawn.empty());
  ASSERT_EQ(drawn.size(), cv::Size(256, 128));
  // Class 0 is green (BGR 0,255,0) on the box's edges; inside and outside
  // the image is untouched.
  EXPECT_EQ(drawn.at<cv::Vec3b>(96, 128), cv::Vec3b(0, 255, 0));    // bottom edge
  EXPECT_EQ(drawn.at<cv::Vec3b>(64, 96), cv::Vec3b(0, 255, 0));     // left edge
  EXPECT_EQ(drawn.at<cv::Vec3b>(64, 160), cv::Vec3b(0, 255, 0));    // right edge
  EXPECT_EQ(drawn.at<cv::Vec3b>(64, 128), cv::Vec3b(90, 90, 90));   // inside
  EXPECT_EQ(drawn.at<cv::Vec3b>(110, 128), cv::Vec3b(90, 90, 90));  // below
  EXPECT_EQ(drawn.at<cv::Vec3b>(64, 200), cv::Vec3b(90, 90, 90));   // right of it

  // Text form, with a threshold that removes the box.
  ExitResult none = Client({"detect", "fixed_box", Path("road.png"), "--score-threshold", "0.9"});
  ASSERT_EQ(none.exit_code, 0) << none.stderr_text;
  EXPECT_NE(none.stderr_text.find("road.png: 256x128 png, 0 detections"), std::string::npos)
      << none.stderr_text;
}

TEST_F(ToolsVisionTest, DicomIsClassifiedAndDrawn) {
  ExitResult run = Client({"classify", "brightness", Path("slice.dcm"), "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::vector<json> lines = JsonLines(run.stderr_text);
  ASSERT_EQ(lines.size(), 1u) << run.stderr_text;
  const json& result = lines[0]["results"][0];
  EXPECT_EQ(result["classes"][0]["label"], "bright");
  EXPECT_EQ(result["image"]["format"], "dicom");
  EXPECT_EQ(result["image"]["width"], 32);
  EXPECT_EQ(result["image"]["dicom"]["modality"], "CT");
  EXPECT_EQ(result["image"]["dicom"]["rows"], 24);
  EXPECT_EQ(result["image"]["dicom"]["window_source"], "file");
  EXPECT_EQ(result["image"]["dicom"]["window_center"], 128);

  // Debian's OpenCV reads DICOM through GDAL, so it is drawn too (a build
  // without it says "not drawing" and goes on). 32x24 letterboxes with 4 px
  // padding rows: the box is (12..20, 8..16).
  const fs::path out_dir = *root_ / "drawn-dicom";
  ExitResult detect = Client(
      {"detect", "fixed_box", Path("slice.dcm"), Path("road.png"), "--draw", out_dir.string()});
  ASSERT_EQ(detect.exit_code, 0) << detect.stderr_text;
  EXPECT_NE(detect.stderr_text.find("slice.dcm: 32x24 dicom CT MONOCHROME2, window file"),
            std::string::npos)
      << detect.stderr_text;
  EXPECT_NE(detect.stderr_text.find("[12.0, 8.0, 20.0, 16.0]"), std::string::npos)
      << detect.stderr_text;
  EXPECT_TRUE(fs::exists(out_dir / "road.png"));
  if (detect.stderr_text.find("not drawing '" + Path("slice.dcm") + "'") == std::string::npos) {
    const cv::Mat drawn = cv::imread((out_dir / "slice.png").string(), cv::IMREAD_COLOR);
    ASSERT_EQ(drawn.size(), cv::Size(32, 24));
    EXPECT_EQ(drawn.at<cv::Vec3b>(20, 2), cv::Vec3b(200, 200, 200));  // outside the box
    // The tag covers most of so small a box; its colour is the class's.
    EXPECT_EQ(drawn.at<cv::Vec3b>(15, 12), cv::Vec3b(0, 255, 0));
  } else {
    EXPECT_FALSE(fs::exists(out_dir / "slice.png"));
  }
}

TEST_F(ToolsVisionTest, StreamSendsEveryFrameAndSummarizes) {
  ExitResult run =
      Client({"stream", "fixed_box", Path("clip.avi"), "--max-in-flight", "2", "--json"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const std::vector<json> lines = JsonLines(run.stderr_text);
  ASSERT_EQ(lines.size(), size_t(kVideoFrames + 1)) << run.stderr_text;
  for (int i = 0; i < kVideoFrames; ++i) {
    const json& frame = lines[i];
    EXPECT_EQ(frame["type"], "frame");
    EXPECT_EQ(frame["frame_id"], i);  // in frame order
    EXPECT_GE(frame["latency_ms"].get<double>(), 0);
    ASSERT_EQ(frame["detections"].size(), 1u) << frame.dump();
    // The score is the input's mean: 64x48 letterboxes to 32x24 rows of the
    // frame's value 20 + 15 i and 8 rows of padding 114 (within JPEG error).
    EXPECT_NEAR(frame["detections"][0]["score"].get<double>(),
                (24 * (20 + 15 * i) + 8 * 114) / 32.0 / 255.0, 0.01);
  }
  const json& summary = lines.back();
  EXPECT_EQ(summary["type"], "summary");
  EXPECT_EQ(summary["frames_sent"], kVideoFrames);
  EXPECT_EQ(summary["answered"], kVideoFrames);
  EXPECT_EQ(summary["skipped"], 0);
  EXPECT_EQ(summary["errors"], 0);
  EXPECT_GT(summary["fps"].get<double>(), 0);
  EXPECT_GT(summary["latency_ms"]["p50"].get<double>(), 0);
  EXPECT_GE(summary["latency_ms"]["p99"].get<double>(), summary["latency_ms"]["p50"].get<double>());
  EXPECT_EQ(summary["video"]["width"], 64);
  EXPECT_EQ(summary["status"], "OK");

  // --max-frames, drop-stale: every frame sent is answered or reported skipped.
  ExitResult part = Client({"stream", "fixed_box", Path("clip.avi"), "--max-frames", "5",
                            "--drop-stale", "--max-in-flight", "1", "--json"});
  ASSERT_EQ(part.exit_code, 0) << part.stderr_text;
  const json part_summary = JsonLines(part.stderr_text).back();
  EXPECT_EQ(part_summary["frames_sent"], 5);
  EXPECT_EQ(part_summary["answered"].get<int>() + part_summary["skipped"].get<int>(), 5);

  // Text form.
  ExitResult text = Client({"stream", "fixed_box", Path("clip.avi"), "--max-frames", "3"});
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  EXPECT_NE(text.stderr_text.find("frames sent 3, answered 3, skipped 0, errors 0"),
            std::string::npos)
      << text.stderr_text;
  EXPECT_NE(text.stderr_text.find("fps"), std::string::npos);
}

// stream paces frames at the video's rate unless --no-realtime, and --draw
// writes every answered frame with its boxes.
TEST_F(ToolsVisionTest, StreamPacesAtTheVideoRateAndDrawsFrames) {
  const fs::path drawn = *root_ / "stream-drawn";
  ExitResult paced =
      Client({"stream", "fixed_box", Path("clip.avi"), "--json", "--draw", drawn.string()});
  ASSERT_EQ(paced.exit_code, 0) << paced.stderr_text;
  const json summary = JsonLines(paced.stderr_text).back();
  ASSERT_EQ(summary["answered"], kVideoFrames);
  // Frame i is sent no earlier than i / 10 s after frame 0 (sleep_until), so
  // the answers span at least (frames - 1) / fps.
  const double seconds = kVideoFrames / summary["fps"].get<double>();
  EXPECT_GE(seconds, (kVideoFrames - 1) / 10.0 * 0.95) << summary.dump();
  for (int i = 0; i < kVideoFrames; ++i) {
    const fs::path file = drawn / absl::StrFormat("frame_%06d.png", i);
    const cv::Mat frame = cv::imread(file.string(), cv::IMREAD_COLOR);
    ASSERT_FALSE(frame.empty()) << file;
    EXPECT_EQ(frame.size(), cv::Size(64, 48));
    // The fixed box (cx 16, cy 16, w 8 in the 32x32 input; x2 = 40 here)
    // has its right edge drawn in the class colour, not the frame's grey.
    const cv::Vec3b edge = frame.at<cv::Vec3b>(32, 40);
    EXPECT_FALSE(edge[0] == edge[1] && edge[1] == edge[2]) << file << " " << edge;
  }
  ExitResult fast = Client({"stream", "fixed_box", Path("clip.avi"), "--json", "--no-realtime"});
  ASSERT_EQ(fast.exit_code, 0) << fast.stderr_text;
  EXPECT_EQ(JsonLines(fast.stderr_text).back()["answered"], kVideoFrames);

  ExitResult bad_dir =
      Client({"stream", "fixed_box", Path("clip.avi"), "--draw", Path("bright.png") + "/sub"});
  EXPECT_EQ(bad_dir.exit_code, 2);
  EXPECT_NE(bad_dir.stderr_text.find("cannot create --draw directory"), std::string::npos)
      << bad_dir.stderr_text;
}

// models/tools/synth.py --video writes an MJPEG AVI that the client plays
// (OpenCV's own AVI reader, no FFmpeg).
TEST_F(ToolsVisionTest, SynthVideoPlaysThroughStream) {
  const fs::path out = *root_ / "synth-video";
  ExitResult made = RunToExit("/usr/bin/python3",
                              {std::string(RECTIFIER_SOURCE_DIR) + "/models/tools/synth.py", "road",
                               "--seed", "5", "--count", "4", "--width", "160", "--height", "96",
                               "--out", out.string(), "--video", "road.avi", "--fps", "25"},
                              absl::Seconds(120));
  ASSERT_EQ(made.exit_code, 0) << made.stderr_text;
  ExitResult run =
      Client({"stream", "fixed_box", (out / "road.avi").string(), "--json", "--no-realtime"});
  ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
  const json summary = JsonLines(run.stderr_text).back();
  EXPECT_EQ(summary["frames_sent"], 4);
  EXPECT_EQ(summary["answered"], 4);
  EXPECT_EQ(summary["video"]["width"], 160);
  EXPECT_EQ(summary["video"]["fps"], 25);
}

TEST_F(ToolsVisionTest, ClientErrorsExitNonZero) {
  ExitResult unknown = Client({"classify", "nope", Path("bright.png")});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.stderr_text.find("NOT_FOUND"), std::string::npos) << unknown.stderr_text;

  ExitResult missing = Client({"classify", "brightness", Path("missing.png")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.stderr_text.find("missing.png"), std::string::npos) << missing.stderr_text;

  ExitResult garbage = Client({"classify", "brightness", Path("garbage.png")});
  EXPECT_EQ(garbage.exit_code, 1);
  EXPECT_NE(garbage.stderr_text.find("INVALID_ARGUMENT"), std::string::npos) << garbage.stderr_text;

  ExitResult wrong_task = Client({"detect", "brightness", Path("bright.png")});
  EXPECT_EQ(wrong_task.exit_code, 1);
  EXPECT_NE(wrong_task.stderr_text.find("FAILED_PRECONDITION"), std::string::npos)
      << wrong_task.stderr_text;

  ExitResult no_video = Client({"stream", "fixed_box", Path("missing.avi")});
  EXPECT_EQ(no_video.exit_code, 2);
  ExitResult not_video = Client({"stream", "fixed_box", Path("garbage.png")});
  EXPECT_EQ(not_video.exit_code, 2) << not_video.stderr_text;

  // --timeout bounds the whole stream. Either the gRPC deadline ends the call
  // or the client's own reader sees it end first and cancels the writer; the
  // client reports DEADLINE_EXCEEDED both ways, so this holds whatever the
  // machine's timing (a minimal container once got CANCELLED here).
  ExitResult late = Client({"--timeout", "0.001", "stream", "fixed_box", Path("clip.avi")});
  EXPECT_EQ(late.exit_code, 1) << late.stderr_text;
  EXPECT_NE(late.stderr_text.find("DEADLINE_EXCEEDED"), std::string::npos) << late.stderr_text;

  // Frames fail in the stream's responses (the call itself ends OK); any
  // failed frame makes the run exit 1, naming the first.
  ExitResult stream_unknown = Client({"stream", "nope", Path("clip.avi"), "--json"});
  EXPECT_EQ(stream_unknown.exit_code, 1) << stream_unknown.stderr_text;
  EXPECT_NE(stream_unknown.stderr_text.find("error: NOT_FOUND: frame 0: "), std::string::npos)
      << stream_unknown.stderr_text;
  const std::vector<json> lines = JsonLines(stream_unknown.stderr_text);
  ASSERT_FALSE(lines.empty()) << stream_unknown.stderr_text;
  EXPECT_EQ(lines.front()["error_code"], "NOT_FOUND");
  EXPECT_EQ(lines.back()["errors"], kVideoFrames);
  EXPECT_EQ(lines.back()["answered"], 0);
}

TEST_F(ToolsVisionTest, PerfDrivesClassifyDetectSegmentAndKServeImages) {
  struct Case {
    std::vector<std::string> args;
    std::string api_column;
    int64_t max_requests;
  };
  const std::vector<Case> cases = {
      // Bounded by request count: the 50 requests are measured even when
      // they all finish during the ramp-up.
      {{"-m", "brightness", "--api", "classify", "--image", Path("bright.png"), "--image",
        Path("dark.png"), "--concurrency", "2", "--window-s", "0.5"},
       "classify",
       50},
      {{"-m", "fixed_box", "--api", "detect", "--image", Path("road.png"), "-b", "2",
        "--request-rate", "100", "--window-s", "0.3"},
       "detect",
       100000},
      {{"-m", "brightness", "--api", "kserve", "--image", Path("bright.png"), "-b", "3",
        "--concurrency", "2", "--window-s", "0.3"},
       "kserve-bytes",
       100000},
      {{"-m", "threshold_seg", "--api", "segment", "--image", Path("rectangle.png"),
        "--concurrency", "2", "--window-s", "0.3"},
       "segment",
       100000},
  };
  for (const Case& c : cases) {
    const std::string csv = Path("perf-" + c.api_column + ".csv");
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--max-windows", "2", "--max-requests", std::to_string(c.max_requests),
                             "--fail-on-error", "--csv", csv});
    ExitResult run = Perf(args);
    ASSERT_EQ(run.exit_code, 0) << run.stderr_text;
    const auto rows = CsvRows(csv);
    ASSERT_EQ(rows.size(), 1u) << c.api_column;
    const std::vector<std::string>& row = rows[0];
    ASSERT_EQ(row.size(), 15u);
    EXPECT_GT(std::stoll(row[9]), 0) << c.api_column;  // ok
    EXPECT_LE(std::stoll(row[9]), c.max_requests) << c.api_column;
    EXPECT_EQ(row[10], "") << c.api_column;            // errors
    EXPECT_GE(std::stod(row[12]), 0) << c.api_column;  // server queue us (from statistics)
    EXPECT_GT(std::stod(row[13]), 0) << c.api_column;  // server compute us
    EXPECT_EQ(row[14], c.api_column);
  }

  // Requests that can never succeed stop before measuring.
  ExitResult wrong_task =
      Perf({"-m", "brightness", "--api", "detect", "--image", Path("bright.png")});
  EXPECT_EQ(wrong_task.exit_code, 2);
  EXPECT_NE(wrong_task.stderr_text.find("FAILED_PRECONDITION"), std::string::npos)
      << wrong_task.stderr_text;
  ExitResult bad_image =
      Perf({"-m", "brightness", "--api", "classify", "--image", Path("garbage.png")});
  EXPECT_EQ(bad_image.exit_code, 2);
  EXPECT_NE(bad_image.stderr_text.find("INVALID_ARGUMENT"), std::string::npos)
      << bad_image.stderr_text;
  ExitResult no_image = Perf({"-m", "brightness", "--api", "classify"});
  EXPECT_EQ(no_image.exit_code, 2);
  EXPECT_NE(no_image.stderr_text.find("--image"), std::string::npos) << no_image.stderr_text;
  ExitResult missing =
      Perf({"-m", "brightness", "--api", "classify", "--image", Path("missing.png")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.stderr_text.find("missing.png"), std::string::npos) << missing.stderr_text;
}

}  // namespace
}  // namespace rectifier::testing
