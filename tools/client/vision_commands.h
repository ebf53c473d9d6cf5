// rectifier-client's commands for the vision API (rectifier.v1.Vision):
//   classify MODEL FILES...  one Classify call, top classes per file
//   detect MODEL FILES...    one Detect call, boxes per file, optionally drawn
//   stream MODEL VIDEO       video frames through DetectStream, latency and fps
#ifndef RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_
#define RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/client/client_common.h"

namespace rectifier::tools {

// Most images one Classify or Detect call may carry (the server's limit).
inline constexpr int kMaxFilesPerCall = 256;

class VisionCommands {
 public:
  // Adds the classify, detect and stream subcommands to `app`.
  explicit VisionCommands(CLI::App& app);

  // Runs the vision command `app` parsed; nullopt when it parsed another one.
  // Returns the process exit code (see client_common.h).
  std::optional<int> Run(const Globals& globals, const Connection& connection);

 private:
  int Classify(const Globals& globals, const Connection& connection);
  int Detect(const Globals& globals, const Connection& connection);
  int Stream(const Globals& globals, const Connection& connection);

  CLI::App* classify_ = nullptr;
  CLI::App* detect_ = nullptr;
  CLI::App* stream_ = nullptr;
  // Set by the options of whichever command was parsed.
  std::string model_, version_, video_, draw_dir_;
  std::vector<std::string> files_;
  uint32_t top_k_ = 0;
  float threshold_ = 0, score_threshold_ = 0, iou_threshold_ = 0;
  CLI::Option* threshold_option_ = nullptr;
  std::vector<CLI::Option*> score_options_, iou_options_;
  uint32_t max_in_flight_ = 0;
  bool drop_stale_ = false;
  uint64_t max_frames_ = 0;
  int jpeg_quality_ = 90;
};

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_CLIENT_VISION_COMMANDS_H_
