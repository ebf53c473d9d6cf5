// Files of a model folder in the repository: names, and readers with
// NOT_FOUND statuses that name the path. Shared by the repository's scan
// (model_repository.cc) and its load of one version (model_load.cc).
#ifndef RECTIFIER_SERVER_REPOSITORY_MODEL_FILES_H_
#define RECTIFIER_SERVER_REPOSITORY_MODEL_FILES_H_

#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model_config.pb.h"

namespace rectifier::repository {

inline constexpr char kConfigFile[] = "config.pbtxt";
inline constexpr char kDefaultModelFile[] = "model.onnx";
inline constexpr char kDefaultLabelsFile[] = "labels.txt";

// The whole file; NOT_FOUND naming `path` when it cannot be read.
absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path);

// One label per line (a trailing '\r' dropped). NOT_FOUND naming `path`
// when it cannot be read.
absl::StatusOr<std::vector<std::string>> ReadLabels(const std::filesystem::path& path);

// The model file of each version folder: default_model_filename, else
// model.onnx.
std::string ModelFileName(const inference::ModelConfig& config);

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_MODEL_FILES_H_
