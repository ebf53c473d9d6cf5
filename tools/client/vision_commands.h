// rectifier-client's commands for the vision API (rectifier.v1.Vision):
//   classify MODEL FILES...  one Classify call, top classes per file
//   detect MODEL FILES...    one Detect call, boxes per file, optionally drawn
//   stream MODEL VIDEO       video frames through DetectStream, latency and fps
//   segment MODEL FILES...   one Segment call, class areas per file, masks drawn
#ifndef RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_
#define RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rectifier/v1/vision.pb.h"
#include "tools/client/client_common.h"

namespace rectifier::tools {

// Most images one Classify, Detect or Segment call may carry (the server's limit).
inline constexpr int kMaxFilesPerCall = 256;

class VisionCommands {
 public:
  // Adds the classify, detect, stream and segment subcommands to `app`.
  explicit VisionCommands(CLI::App& app);

  // Runs the vision command `app` parsed; nullopt when it parsed another one.
  // Returns the process exit code (see client_common.h).
  std::optional<int> Run(const Globals& globals, const Connection& connection);

 private:
  int Classify(const Globals& globals, const Connection& connection);
  int Detect(const Globals& globals, const Connection& connection);
  int Stream(const Globals& globals, const Connection& connection);
  int Segment(const Globals& globals, const Connection& connection);
  // The preamble the three image calls share (see the .cc).
  template <typename Request>
  int FillImageRequest(Request& request);
  int CheckResultCount(int results) const;
  // segment --draw: writes file i's overlay, mask and probability maps.
  bool WriteSegmentFiles(const std::string& file, const std::string& out,
                         const rectifier::v1::SegmentResult& result);

  CLI::App* classify_ = nullptr;
  CLI::App* detect_ = nullptr;
  CLI::App* stream_ = nullptr;
  CLI::App* segment_ = nullptr;
  // Set by the options of whichever command was parsed.
  std::string model_, version_, video_, draw_dir_;
  std::vector<std::string> files_;
  uint32_t top_k_ = 0;
  float threshold_ = 0, score_threshold_ = 0, iou_threshold_ = 0;
  CLI::Option* threshold_option_ = nullptr;
  std::vector<CLI::Option*> score_options_, iou_options_;
  uint32_t max_in_flight_ = 0;
  bool drop_stale_ = false;
  bool realtime_ = true;  // stream: send at the video's own fps
  uint64_t max_frames_ = 0;
  int jpeg_quality_ = 90;
  std::string probabilities_;  // segment: "all" or comma-separated class ids
  float min_score_ = 0;
  CLI::Option* min_score_option_ = nullptr;
};

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_
