// libFuzzer target: a tuning file (CompileOptions::tuning_cache_dir) as the
// engine reads it back. The server writes these files itself, but they sit
// in a directory an operator mounts and may outlive versions, truncation or
// tampering: whatever they hold, a lookup never crashes, a line that does
// not parse is never taken for a choice, and storing a choice rewrites the
// file with well-formed lines only.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "fuzz/fuzz_models.h"
#include "server/engine/runtime/conv_tuning.h"

namespace {

namespace fs = std::filesystem;
using rectifier::engine::ConvLayout;
using rectifier::engine::TunedVariant;
using rectifier::engine::TuningCache;

const std::string& Dir() {
  static const std::string* dir = [] {
    auto* d = new std::string(
        (fs::temp_directory_path() / ("rectifier-tuning-fuzz-" + std::to_string(getpid())))
            .string());
    fs::create_directories(*d);
    return d;
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  TuningCache cache(Dir(), /*model_fingerprint=*/42);
  const std::string path = cache.PathFor(1);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  // A key found must come from a line that parses to that same choice.
  std::istringstream lines(bytes);
  std::string line, first_key;
  bool have_first = false;
  while (std::getline(lines, line)) {
    std::string key;
    TunedVariant variant;
    if (TuningCache::ParseLine(line, &key, &variant)) {
      RECTIFIER_FUZZ_CHECK(variant.layout != ConvLayout::kTuned);
      if (!have_first) {
        first_key = key;
        have_first = true;
      }
    }
  }
  RECTIFIER_FUZZ_CHECK(!cache.Find("[no such plan]", 1).has_value() ||
                       bytes.find("[no such plan]") != std::string::npos);
  if (have_first) RECTIFIER_FUZZ_CHECK(cache.Find(first_key, 1).has_value());
  rectifier::engine::TuningChoice choice;
  choice.variant = {ConvLayout::kBlocked8, /*channel_split=*/false};
  choice.timings = {{{ConvLayout::kAny}, 2.0}, {choice.variant, 1.0}};
  RECTIFIER_FUZZ_CHECK(cache.Store("[1,3,8,8]", 1, choice).empty());
  TuningCache again(Dir(), 42);
  const auto stored = again.Find("[1,3,8,8]", 1);
  RECTIFIER_FUZZ_CHECK(stored.has_value() && *stored == choice.variant);
  std::ifstream in(path);
  while (std::getline(in, line)) {
    std::string key;
    TunedVariant variant;
    RECTIFIER_FUZZ_CHECK(TuningCache::ParseLine(line, &key, &variant));
  }
  return 0;
}
