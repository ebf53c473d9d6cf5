#include "server/repository/model_files.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace rectifier::repository {

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<std::vector<std::string>> ReadLabels(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read labels file ", path.string()));
  std::vector<std::string> labels;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    labels.push_back(line);
  }
  return labels;
}

std::string ModelFileName(const inference::ModelConfig& config) {
  return config.default_model_filename().empty() ? kDefaultModelFile
                                                 : config.default_model_filename();
}

}  // namespace rectifier::repository
