#include "tools/client/vision_commands.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "rectifier/v1/vision.grpc.pb.h"
#include "server/service/vision_json.h"
#include "tools/perf/load_stats.h"

namespace rectifier::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Reads every file whole. A missing or unreadable file is a local error
// naming it.
absl::StatusOr<std::vector<std::string>> ReadFiles(const std::vector<std::string>& paths) {
  std::vector<std::string> contents;
  contents.reserve(paths.size());
  for (const std::string& path : paths) {
    std::error_code error;
    if (!fs::is_regular_file(path, error)) {
      return absl::NotFoundError(absl::StrCat("cannot read '", path, "': no such file"));
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (!in) return absl::DataLossError(absl::StrCat("cannot read '", path, "'"));
    contents.push_back(std::move(bytes).str());
  }
  return contents;
}

std::string TimingText(const v1::Timing& t) {
  return absl::StrFormat(
      "total %d us (decode %d, preprocess %d, queue %d, inference %d, postprocess %d)",
      t.total_us(), t.decode_us(), t.preprocess_us(), t.queue_us(), t.inference_us(),
      t.postprocess_us());
}

std::string ImageText(const v1::ImageInfo& image) {
  std::string text = absl::StrCat(image.width(), "x", image.height(), " ", image.format());
  if (image.decode_reduction() > 1)
    absl::StrAppend(&text, " decoded at 1/", image.decode_reduction());
  if (image.has_dicom()) {
    const v1::DicomInfo& d = image.dicom();
    absl::StrAppend(&text, absl::StrFormat(" %s %s, window %s center %g width %g", d.modality(),
                                           d.photometric_interpretation(), d.window_source(),
                                           d.window_center(), d.window_width()));
  }
  return text;
}

std::string BoxText(const v1::Detection& d) {
  return absl::StrFormat("%-16s %3d  %.4f  [%.1f, %.1f, %.1f, %.1f]", d.label(), d.class_id(),
                         d.score(), d.box().x1(), d.box().y1(), d.box().x2(), d.box().y2());
}

// BGR colour of a class's boxes: class 0 green, 1 red, 2 blue, then
// yellow, magenta, cyan, orange, purple, repeating.
cv::Scalar ClassColour(int class_id) {
  static const cv::Scalar kPalette[] = {{0, 255, 0},   {0, 0, 255},   {255, 0, 0},   {0, 255, 255},
                                        {255, 0, 255}, {255, 255, 0}, {0, 128, 255}, {255, 0, 128}};
  constexpr int kColours = sizeof(kPalette) / sizeof(kPalette[0]);
  return kPalette[((class_id % kColours) + kColours) % kColours];
}

// Draws each box with a "label score" tag above it (inside when the box
// touches the top edge), in the box's class colour.
void DrawDetections(const v1::DetectResult& result, cv::Mat& image) {
  const int thickness =
      std::max(1, static_cast<int>(std::lround(std::max(image.cols, image.rows) / 400.0)));
  const double font_scale = std::max(0.35, 0.4 * thickness);
  // Lowest score first, so the best boxes end up on top.
  for (int i = result.detections_size() - 1; i >= 0; --i) {
    const v1::Detection& d = result.detections(i);
    const cv::Scalar colour = ClassColour(d.class_id());
    const cv::Point top_left(static_cast<int>(std::lround(d.box().x1())),
                             static_cast<int>(std::lround(d.box().y1())));
    const cv::Point bottom_right(static_cast<int>(std::lround(d.box().x2())),
                                 static_cast<int>(std::lround(d.box().y2())));
    cv::rectangle(image, top_left, bottom_right, colour, thickness, cv::LINE_8);
    const std::string tag = absl::StrFormat(
        "%s %.2f", d.label().empty() ? absl::StrCat(d.class_id()) : d.label(), d.score());
    int baseline = 0;
    const cv::Size size =
        cv::getTextSize(tag, cv::FONT_HERSHEY_SIMPLEX, font_scale, thickness, &baseline);
    const int tag_height = size.height + baseline + 2;
    const int tag_top = top_left.y - thickness - tag_height >= 0
                            ? top_left.y - thickness - tag_height
                            : top_left.y + thickness;
    cv::rectangle(image, cv::Rect(top_left.x, tag_top, size.width + 2, tag_height), colour,
                  cv::FILLED);
    cv::putText(image, tag, cv::Point(top_left.x + 1, tag_top + size.height + 1),
                cv::FONT_HERSHEY_SIMPLEX, font_scale, cv::Scalar(0, 0, 0), thickness, cv::LINE_AA);
  }
}

// The file as an 8-bit BGR image to draw on (EXIF orientation applied, as
// the server does); deeper images (16-bit PNG/TIFF, DICOM where OpenCV's
// GDAL reader takes it) are stretched min..max. Empty if OpenCV cannot read it.
cv::Mat ReadForDrawing(const std::string& path) {
  cv::Mat image;
  try {
    image = cv::imread(path, cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
  } catch (const cv::Exception&) {
    return {};
  }
  if (image.empty()) return image;
  if (image.depth() != CV_8U) {
    cv::Mat scaled;
    cv::normalize(image, scaled, 0, 255, cv::NORM_MINMAX, CV_8U);
    image = scaled;
  }
  if (image.channels() == 1) {
    cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
  } else if (image.channels() == 4) {
    cv::cvtColor(image, image, cv::COLOR_BGRA2BGR);
  } else if (image.channels() != 3) {
    return {};
  }
  return image;
}

// OUT_DIR/<stem>.png, with "-2", "-3", ... when two inputs share a stem.
std::string DrawPath(const std::string& out_dir, const std::string& file,
                     std::set<std::string>& used) {
  const std::string stem = fs::path(file).stem().string();
  std::string name = stem;
  for (int n = 2; !used.insert(name).second; ++n) name = absl::StrCat(stem, "-", n);
  return (fs::path(out_dir) / (name + ".png")).string();
}

// stream --draw: the frames sent, kept until their answer comes, then
// written as OUT_DIR/frame_NNNNNN.png with the boxes drawn. Frames the
// server skipped (drop-stale) or failed are dropped. Thread-safe.
class FrameDrawer {
 public:
  explicit FrameDrawer(std::string out_dir) : out_dir_(std::move(out_dir)) {}
  bool enabled() const { return !out_dir_.empty(); }
  void Keep(uint64_t id, const cv::Mat& frame) {
    if (!enabled()) return;
    std::lock_guard<std::mutex> lock(mu_);
    frames_[id] = frame.clone();
  }
  void Forget(const std::vector<uint64_t>& ids) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const uint64_t id : ids) frames_.erase(id);
  }
  // Draws and writes the frame of `id`; false when it cannot be written.
  bool Answered(uint64_t id, const v1::DetectResult& result) {
    cv::Mat frame;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = frames_.find(id);
      if (it == frames_.end()) return true;
      frame = std::move(it->second);
      frames_.erase(it);
    }
    DrawDetections(result, frame);
    const std::string path =
        (fs::path(out_dir_) / absl::StrFormat("frame_%06d.png", static_cast<int>(id))).string();
    try {
      return cv::imwrite(path, frame);
    } catch (const cv::Exception&) {
      return false;
    }
  }

 private:
  const std::string out_dir_;
  std::mutex mu_;
  std::map<uint64_t, cv::Mat> frames_;
};

// stream --realtime: waits until frame `id` is due at `fps` from `start`.
void PaceFrame(SteadyClock::time_point start, uint64_t id, double fps) {
  if (fps <= 0) return;
  std::this_thread::sleep_until(start +
                                std::chrono::duration_cast<SteadyClock::duration>(
                                    std::chrono::duration<double>(static_cast<double>(id) / fps)));
}

}  // namespace

VisionCommands::VisionCommands(CLI::App& app) {
  classify_ = app.add_subcommand("classify", "Vision Classify: top classes for each image file");
  classify_->add_option("model", model_, "Model name")->required();
  classify_->add_option("files", files_, "Image files (JPEG, PNG, TIFF, DICOM, ...)")->required();
  classify_->add_option("--model-version", version_, "Version ('' = newest)");
  classify_->add_option("--top-k", top_k_, "Classes per image (0 = the model's)");
  threshold_option_ =
      classify_->add_option("--threshold", threshold_, "Lowest score reported (default: model's)");

  detect_ = app.add_subcommand("detect", "Vision Detect: boxes for each image file");
  detect_->add_option("model", model_, "Model name")->required();
  detect_->add_option("files", files_, "Image files (JPEG, PNG, TIFF, DICOM, ...)")->required();
  detect_->add_option("--model-version", version_, "Version ('' = newest)");
  detect_->add_option("--draw", draw_dir_, "Write OUT_DIR/<stem>.png with the boxes drawn");

  stream_ = app.add_subcommand(
      "stream", "Vision DetectStream: a video's frames as JPEG, per-frame latency and fps");
  stream_->add_option("model", model_, "Model name")->required();
  stream_->add_option("video", video_, "Video file OpenCV can read (e.g. MJPG .avi)")->required();
  stream_->add_option("--model-version", version_, "Version ('' = newest)");
  stream_->add_option("--max-in-flight", max_in_flight_, "Frames in flight (0 = server's 4)");
  stream_->add_flag("--drop-stale", drop_stale_, "Let the server skip frames that would be late");
  stream_->add_option("--max-frames", max_frames_, "Stop after N frames (0 = whole video)");
  stream_->add_flag("--realtime,!--no-realtime", realtime_,
                    "Send at the video's own frame rate (default), or as fast as the server "
                    "takes them (--no-realtime)");
  stream_->add_option("--draw", draw_dir_,
                      "Write OUT_DIR/frame_NNNNNN.png for every answered frame, boxes drawn");
  stream_->add_option("--jpeg-quality", jpeg_quality_, "JPEG quality of the frames sent")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));

  segment_ = app.add_subcommand("segment", "Vision Segment: a class mask for each image file");
  segment_->add_option("model", model_, "Model name")->required();
  segment_->add_option("files", files_, "Image files (JPEG, PNG, TIFF, DICOM, ...)")->required();
  segment_->add_option("--model-version", version_, "Version ('' = newest)");
  segment_->add_option("--draw", draw_dir_,
                       "Write OUT_DIR/<stem>.png (the classes overlaid) and <stem>_mask.png");
  segment_->add_option("--probabilities", probabilities_,
                       "Also ask for probability maps: 'all' or class ids '1,2' (with --draw: "
                       "<stem>_prob_<class>.png)");
  min_score_option_ = segment_->add_option(
      "--min-score", min_score_, "Pixels whose best class scores lower get the background class");

  for (CLI::App* command : {detect_, stream_}) {
    score_options_.push_back(command->add_option("--score-threshold", score_threshold_,
                                                 "Lowest box score (default: model's)"));
    iou_options_.push_back(
        command->add_option("--iou-threshold", iou_threshold_, "NMS IoU (default: model's)"));
  }
}

std::optional<int> VisionCommands::Run(const Globals& globals, const Connection& connection) {
  if (classify_->parsed()) return Classify(globals, connection);
  if (detect_->parsed()) return Detect(globals, connection);
  if (stream_->parsed()) return Stream(globals, connection);
  if (segment_->parsed()) return Segment(globals, connection);
  return std::nullopt;
}

// What Classify, Detect and Segment share before their call: the file
// count, the files read into `request`'s images, the --draw folder made,
// model, version and id. 0, or the exit code of a usage error.
template <typename Request>
int VisionCommands::FillImageRequest(Request& request) {
  if (files_.size() > static_cast<size_t>(kMaxFilesPerCall)) {
    return UsageError(
        absl::StrCat("at most ", kMaxFilesPerCall, " files per call (got ", files_.size(), ")"));
  }
  auto images = ReadFiles(files_);
  if (!images.ok()) return UsageError(std::string(images.status().message()));
  if (!draw_dir_.empty()) {
    std::error_code error;
    fs::create_directories(draw_dir_, error);
    if (error || !fs::is_directory(draw_dir_)) {
      return UsageError(
          absl::StrCat("cannot create --draw directory '", draw_dir_, "': ", error.message()));
    }
  }
  request.set_model_name(model_);
  request.set_model_version(version_);
  request.set_id("rectifier-client");
  for (std::string& image : *images) request.add_images()->set_data(std::move(image));
  return 0;
}

// 0 when the server answered one result per file, else the exit code of
// that (INTERNAL) error.
int VisionCommands::CheckResultCount(int results) const {
  if (results == static_cast<int>(files_.size())) return 0;
  return RpcError(grpc::Status(
      grpc::StatusCode::INTERNAL,
      absl::StrCat("the server answered ", results, " results for ", files_.size(), " images")));
}

int VisionCommands::Classify(const Globals& globals, const Connection& connection) {
  v1::ClassifyRequest request;
  if (int code = FillImageRequest(request); code != 0) return code;
  request.set_top_k(top_k_);
  if (threshold_option_->count() > 0) request.set_threshold(threshold_);

  auto stub = v1::Vision::NewStub(connection.channel());
  grpc::ClientContext context;
  SetDeadline(globals, &context);
  v1::ClassifyResponse response;
  const grpc::Status status = stub->Classify(&context, request, &response);
  if (!status.ok()) return CallError(connection, status);
  if (int code = CheckResultCount(response.results_size()); code != 0) return code;

  if (globals.json) {
    std::cout << service::ClassifyResponseJson(response, files_).dump() << "\n";
    return 0;
  }
  std::printf("model %s version %s\n", response.model_name().c_str(),
              response.model_version().c_str());
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::ClassifyResult& r = response.results(i);
    std::printf("%s: %s, %s\n", files_[i].c_str(), ImageText(r.image()).c_str(),
                TimingText(r.timing()).c_str());
    if (r.classes_size() == 0) std::printf("  (no class above the threshold)\n");
    for (const v1::Classification& c : r.classes()) {
      std::printf("  %-16s %3d  %.4f\n", c.label().c_str(), c.class_id(), c.score());
    }
  }
  return 0;
}

int VisionCommands::Detect(const Globals& globals, const Connection& connection) {
  v1::DetectRequest request;
  if (int code = FillImageRequest(request); code != 0) return code;
  if (score_options_[0]->count() > 0) request.set_score_threshold(score_threshold_);
  if (iou_options_[0]->count() > 0) request.set_iou_threshold(iou_threshold_);

  auto stub = v1::Vision::NewStub(connection.channel());
  grpc::ClientContext context;
  SetDeadline(globals, &context);
  v1::DetectResponse response;
  const grpc::Status status = stub->Detect(&context, request, &response);
  if (!status.ok()) return CallError(connection, status);
  if (int code = CheckResultCount(response.results_size()); code != 0) return code;

  // Drawn files, by input index ("" when not drawn).
  std::vector<std::string> drawn(files_.size());
  int exit_code = 0;
  if (!draw_dir_.empty()) {
    std::set<std::string> used;
    for (size_t i = 0; i < files_.size(); ++i) {
      const std::string out = DrawPath(draw_dir_, files_[i], used);
      cv::Mat image = ReadForDrawing(files_[i]);
      if (image.empty()) {  // e.g. DICOM where OpenCV has no GDAL reader
        std::fprintf(stderr, "rectifier-client: not drawing '%s': OpenCV cannot read it\n",
                     files_[i].c_str());
        continue;
      }
      const v1::ImageInfo& info = response.results(i).image();
      if (static_cast<uint32_t>(image.cols) != info.width() ||
          static_cast<uint32_t>(image.rows) != info.height()) {
        std::fprintf(stderr,
                     "rectifier-client: warning: '%s' reads as %dx%d here but the server saw "
                     "%ux%u; boxes may be misplaced\n",
                     files_[i].c_str(), image.cols, image.rows, info.width(), info.height());
      }
      DrawDetections(response.results(i), image);
      bool written = false;
      try {
        written = cv::imwrite(out, image);
      } catch (const cv::Exception& e) {
        std::fprintf(stderr, "rectifier-client: error: writing '%s': %s\n", out.c_str(), e.what());
      }
      if (!written) {
        std::fprintf(stderr, "rectifier-client: error: cannot write '%s'\n", out.c_str());
        exit_code = kExitUsage;
        continue;
      }
      drawn[i] = out;
    }
  }

  if (globals.json) {
    json out = service::DetectResponseJson(response, files_);
    for (int i = 0; i < response.results_size(); ++i) {
      if (!drawn[i].empty()) out["results"][i]["drawn"] = drawn[i];
    }
    std::cout << out.dump() << "\n";
    return exit_code;
  }
  std::printf("model %s version %s\n", response.model_name().c_str(),
              response.model_version().c_str());
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::DetectResult& r = response.results(i);
    std::printf("%s: %s, %d detection%s, %s\n", files_[i].c_str(), ImageText(r.image()).c_str(),
                r.detections_size(), r.detections_size() == 1 ? "" : "s",
                TimingText(r.timing()).c_str());
    for (const v1::Detection& d : r.detections()) std::printf("  %s\n", BoxText(d).c_str());
    if (!drawn[i].empty()) std::printf("  drawn: %s\n", drawn[i].c_str());
  }
  return exit_code;
}

int VisionCommands::Stream(const Globals& globals, const Connection& connection) {
  std::error_code error;
  if (!fs::is_regular_file(video_, error)) {
    return UsageError(absl::StrCat("cannot read '", video_, "': no such file"));
  }
  cv::VideoCapture capture(video_);
  if (!capture.isOpened()) {
    return UsageError(absl::StrCat("OpenCV cannot open '", video_, "' as a video"));
  }
  const int video_width = static_cast<int>(capture.get(cv::CAP_PROP_FRAME_WIDTH));
  const int video_height = static_cast<int>(capture.get(cv::CAP_PROP_FRAME_HEIGHT));
  const double video_fps = capture.get(cv::CAP_PROP_FPS);
  FrameDrawer drawer(draw_dir_);
  if (drawer.enabled()) {
    fs::create_directories(draw_dir_, error);
    if (error || !fs::is_directory(draw_dir_)) {
      return UsageError(
          absl::StrCat("cannot create --draw directory '", draw_dir_, "': ", error.message()));
    }
  }
  // A frame rate OpenCV cannot tell (0) or a nonsense one is not paced.
  const double pace_fps = realtime_ && video_fps > 0 && video_fps <= 1000 ? video_fps : 0;

  auto stub = v1::Vision::NewStub(connection.channel());
  grpc::ClientContext context;
  SetDeadline(globals, &context);  // the whole stream
  std::unique_ptr<grpc::ClientReaderWriter<v1::DetectStreamRequest, v1::DetectStreamResponse>>
      stream = stub->DetectStream(&context);

  // Written by the writer thread, read by the main thread.
  std::mutex mu;
  std::vector<SteadyClock::time_point> sent_at;  // by frame id, before its Write
  bool closing = false;                          // the writer is done writing (WritesDone follows)
  std::string local_error;

  std::thread writer([&] {
    cv::Mat frame;
    std::vector<unsigned char> jpeg;
    const std::vector<int> params = {cv::IMWRITE_JPEG_QUALITY, jpeg_quality_};
    const SteadyClock::time_point start = SteadyClock::now();
    for (uint64_t id = 0; max_frames_ == 0 || id < max_frames_; ++id) {
      if (!capture.read(frame) || frame.empty()) break;
      PaceFrame(start, id, pace_fps);
      drawer.Keep(id, frame);
      if (!cv::imencode(".jpg", frame, jpeg, params)) {
        std::lock_guard<std::mutex> lock(mu);
        local_error = absl::StrCat("cannot JPEG-encode frame ", id);
        break;
      }
      v1::DetectStreamRequest request;
      if (id == 0) {
        request.set_model_name(model_);
        request.set_model_version(version_);
        request.mutable_options()->set_max_in_flight(max_in_flight_);
        request.mutable_options()->set_drop_stale(drop_stale_);
      }
      if (score_options_[1]->count() > 0) request.set_score_threshold(score_threshold_);
      if (iou_options_[1]->count() > 0) request.set_iou_threshold(iou_threshold_);
      request.set_frame_id(id);
      request.mutable_image()->set_data(jpeg.data(), jpeg.size());
      {
        std::lock_guard<std::mutex> lock(mu);
        sent_at.push_back(SteadyClock::now());
      }
      if (!stream->Write(request)) {  // the call ended (deadline, server gone)
        std::lock_guard<std::mutex> lock(mu);
        sent_at.pop_back();
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      closing = true;
    }
    stream->WritesDone();
  });

  int64_t answered = 0, errors = 0, skipped = 0;
  grpc::Status first_frame_error;
  std::vector<double> latencies_ms;
  SteadyClock::time_point first_sent{}, last_answer{};
  v1::DetectStreamResponse response;
  while (stream->Read(&response)) {
    const SteadyClock::time_point now = SteadyClock::now();
    SteadyClock::time_point sent = now;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (response.frame_id() < sent_at.size()) sent = sent_at[response.frame_id()];
      if (!sent_at.empty()) first_sent = sent_at[0];
    }
    const double latency_ms = std::chrono::duration<double, std::milli>(now - sent).count();
    skipped += response.skipped_frame_ids_size();
    const std::vector<uint64_t> skipped_ids(response.skipped_frame_ids().begin(),
                                            response.skipped_frame_ids().end());
    const bool failed = response.error_code() != 0;
    drawer.Forget(skipped_ids);
    if (failed) {
      drawer.Forget({response.frame_id()});
    } else if (drawer.enabled() && !drawer.Answered(response.frame_id(), response.result())) {
      std::lock_guard<std::mutex> lock(mu);
      if (local_error.empty()) {
        local_error =
            absl::StrCat("cannot write frame ", response.frame_id(), " to --draw ", draw_dir_);
      }
    }
    if (failed) {
      if (errors++ == 0) {
        first_frame_error = grpc::Status(
            static_cast<grpc::StatusCode>(response.error_code()),
            absl::StrCat("frame ", response.frame_id(), ": ", response.error_message()));
      }
    } else {
      ++answered;
      latencies_ms.push_back(latency_ms);
      last_answer = now;
    }
    if (globals.json) {
      json line = {{"type", "frame"},
                   {"frame_id", response.frame_id()},
                   {"latency_ms", latency_ms},
                   {"skipped_frame_ids", skipped_ids}};
      if (failed) {
        line["error_code"] = CodeName(response.error_code());
        line["error_message"] = response.error_message();
      } else {
        json detections = json::array();
        for (const v1::Detection& d : response.result().detections()) {
          detections.push_back(service::DetectionJson(d));
        }
        line["model_version"] = response.model_version();
        line["detections"] = detections;
        line["timing"] = service::TimingJson(response.result().timing());
      }
      std::cout << line.dump() << "\n";
    } else {
      std::string skipped_text;
      if (!skipped_ids.empty()) {
        skipped_text = absl::StrCat("  (skipped ", absl::StrJoin(skipped_ids, ","), ")");
      }
      if (failed) {
        std::printf("frame %6llu %9.2f ms  error %s: %s%s\n",
                    static_cast<unsigned long long>(response.frame_id()), latency_ms,
                    CodeName(response.error_code()).c_str(), response.error_message().c_str(),
                    skipped_text.c_str());
      } else {
        std::printf("frame %6llu %9.2f ms  %3d detections%s\n",
                    static_cast<unsigned long long>(response.frame_id()), latency_ms,
                    response.result().detections_size(), skipped_text.c_str());
      }
    }
  }
  {
    // The server can only end the call well after the half-close; ending it
    // before the writer finished is an error: stop the writer.
    std::lock_guard<std::mutex> lock(mu);
    if (!closing) context.TryCancel();
  }
  writer.join();
  grpc::Status status = stream->Finish();
  // Past --timeout the call ends with DEADLINE_EXCEEDED, unless our own
  // TryCancel above (the reader saw the call end first while the writer was
  // still encoding a frame) got there first and it reads CANCELLED. Either
  // way the cause is the deadline: say so.
  if (!status.ok() && status.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
      std::chrono::system_clock::now() >= context.deadline()) {
    status = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("the stream ran past --timeout (", globals.timeout_s,
                                       " s): ", status.error_message()));
  }

  const int64_t sent_count = static_cast<int64_t>(sent_at.size());
  const double seconds =
      answered > 0 ? std::chrono::duration<double>(last_answer - first_sent).count() : 0;
  const double fps = seconds > 0 ? answered / seconds : 0;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  double mean_ms = 0;
  for (const double v : latencies_ms) mean_ms += v / latencies_ms.size();
  const double p50 = Percentile(latencies_ms, 50), p90 = Percentile(latencies_ms, 90),
               p99 = Percentile(latencies_ms, 99);
  if (globals.json) {
    std::cout << json{{"type", "summary"},
                      {"model", model_},
                      {"video",
                       {{"file", video_},
                        {"width", video_width},
                        {"height", video_height},
                        {"fps", video_fps}}},
                      {"frames_sent", sent_count},
                      {"answered", answered},
                      {"skipped", skipped},
                      {"errors", errors},
                      {"seconds", seconds},
                      {"fps", fps},
                      {"latency_ms", {{"p50", p50}, {"p90", p90}, {"p99", p99}, {"mean", mean_ms}}},
                      {"status", CodeName(status.error_code())}}
                     .dump()
              << "\n";
  } else {
    std::printf("frames sent %lld, answered %lld, skipped %lld, errors %lld\n",
                static_cast<long long>(sent_count), static_cast<long long>(answered),
                static_cast<long long>(skipped), static_cast<long long>(errors));
    std::printf("achieved %.1f fps over %.2f s; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms\n",
                fps, seconds, p50, p90, p99);
  }
  std::fflush(stdout);
  if (!status.ok()) return CallError(connection, status);
  if (!local_error.empty()) return UsageError(local_error);
  if (sent_count == 0)
    return UsageError(absl::StrCat("no frame could be read from '", video_, "'"));
  // Failed frames make the run fail too; the first one names the problem.
  if (errors > 0) return RpcError(first_frame_error);
  return 0;
}

namespace {

// Blends each non-zero class of `mask` over `image` in its class colour
// (class 0, by convention the background, is left as it is).
void DrawSegmentation(const cv::Mat& mask, cv::Mat& image) {
  for (int y = 0; y < image.rows; ++y) {
    auto* row = image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < image.cols; ++x) {
      const int id = mask.depth() == CV_16U ? mask.at<uint16_t>(y, x) : mask.at<uint8_t>(y, x);
      if (id == 0) continue;
      const cv::Scalar colour = ClassColour(id);
      for (int c = 0; c < 3; ++c) {
        row[x][c] = cv::saturate_cast<uint8_t>(0.45 * row[x][c] + 0.55 * colour[c]);
      }
    }
  }
}

bool WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(out);
}

// --probabilities into the request: "all" or class ids.
absl::Status ApplyProbabilities(const std::string& text, v1::SegmentRequest& request) {
  if (text.empty()) return absl::OkStatus();
  if (text == "all") {
    request.set_all_probabilities(true);
    return absl::OkStatus();
  }
  std::stringstream in(text);
  std::string id;
  while (std::getline(in, id, ',')) {
    char* end = nullptr;
    const unsigned long value = std::strtoul(id.c_str(), &end, 10);
    if (id.empty() || *end != '\0' || value > UINT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--probabilities takes 'all' or class ids like 1,2; '", id, "' is not a class id"));
    }
    request.add_probability_classes(static_cast<uint32_t>(value));
  }
  return absl::OkStatus();
}

}  // namespace

bool VisionCommands::WriteSegmentFiles(const std::string& file, const std::string& out,
                                       const v1::SegmentResult& result) {
  const std::string stem = (fs::path(out).parent_path() / fs::path(out).stem()).string();
  bool ok = WriteBytes(stem + "_mask.png", result.mask_png());
  for (const v1::ProbabilityMap& map : result.probabilities()) {
    const std::string name = map.label().empty() ? absl::StrCat(map.class_id()) : map.label();
    ok = WriteBytes(absl::StrCat(stem, "_prob_", name, ".png"), map.png()) && ok;
  }
  const std::vector<uchar> png(result.mask_png().begin(), result.mask_png().end());
  const cv::Mat mask = cv::imdecode(png, cv::IMREAD_UNCHANGED);
  cv::Mat image = ReadForDrawing(file);
  if (image.empty() || mask.empty() || image.size() != mask.size()) {
    std::fprintf(stderr, "rectifier-client: not drawing '%s': %s\n", file.c_str(),
                 image.empty() ? "OpenCV cannot read it" : "it reads at another size here");
    return ok;
  }
  DrawSegmentation(mask, image);
  try {
    ok = cv::imwrite(out, image) && ok;
  } catch (const cv::Exception& e) {
    std::fprintf(stderr, "rectifier-client: error: writing '%s': %s\n", out.c_str(), e.what());
    ok = false;
  }
  return ok;
}

int VisionCommands::Segment(const Globals& globals, const Connection& connection) {
  v1::SegmentRequest request;
  if (absl::Status s = ApplyProbabilities(probabilities_, request); !s.ok()) {
    return UsageError(std::string(s.message()));
  }
  if (int code = FillImageRequest(request); code != 0) return code;
  if (min_score_option_->count() > 0) request.set_min_score(min_score_);

  auto stub = v1::Vision::NewStub(connection.channel());
  grpc::ClientContext context;
  SetDeadline(globals, &context);
  v1::SegmentResponse response;
  const grpc::Status status = stub->Segment(&context, request, &response);
  if (!status.ok()) return CallError(connection, status);
  if (int code = CheckResultCount(response.results_size()); code != 0) return code;
  std::vector<std::string> drawn(files_.size());
  int exit_code = 0;
  if (!draw_dir_.empty()) {
    std::set<std::string> used;
    for (size_t i = 0; i < files_.size(); ++i) {
      drawn[i] = DrawPath(draw_dir_, files_[i], used);
      if (!WriteSegmentFiles(files_[i], drawn[i], response.results(static_cast<int>(i)))) {
        std::fprintf(stderr, "rectifier-client: error: cannot write all of '%s'\n",
                     drawn[i].c_str());
        exit_code = kExitUsage;
      }
    }
  }
  if (globals.json) {
    json out = service::SegmentResponseJson(response, files_, /*with_png=*/false);
    for (int i = 0; i < response.results_size(); ++i) {
      if (!drawn[i].empty()) out["results"][i]["drawn"] = drawn[i];
    }
    std::cout << out.dump() << "\n";
    return exit_code;
  }
  std::printf("model %s version %s\n", response.model_name().c_str(),
              response.model_version().c_str());
  for (int i = 0; i < response.results_size(); ++i) {
    const v1::SegmentResult& r = response.results(i);
    std::printf("%s: %s, %s\n", files_[i].c_str(), ImageText(r.image()).c_str(),
                TimingText(r.timing()).c_str());
    for (const v1::ClassArea& a : r.classes()) {
      std::printf("  %-16s %3d  %9llu px  %6.2f%%\n", a.label().c_str(), a.class_id(),
                  static_cast<unsigned long long>(a.pixels()), 100.0 * a.fraction());
    }
    if (!drawn[i].empty()) std::printf("  drawn: %s\n", drawn[i].c_str());
  }
  return exit_code;
}

}  // namespace rectifier::tools
