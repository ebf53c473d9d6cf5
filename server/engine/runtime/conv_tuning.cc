#include "server/engine/runtime/conv_tuning.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace rectifier::engine {

namespace {
constexpr std::string_view kNoSplitSuffix = "/no-split";
}  // namespace

const char* ConvLayoutName(ConvLayout layout) {
  switch (layout) {
    case ConvLayout::kAny:
      return "any";
    case ConvLayout::kBlocked8:
      return "blocked8";
    case ConvLayout::kBlocked16:
      return "blocked16";
    case ConvLayout::kChannelsLast:
      return "nhwc";
    case ConvLayout::kTuned:
      return "tuned";
  }
  return "any";
}

bool ParseConvLayout(std::string_view name, ConvLayout* layout) {
  for (ConvLayout l : {ConvLayout::kAny, ConvLayout::kBlocked8, ConvLayout::kBlocked16,
                       ConvLayout::kChannelsLast, ConvLayout::kTuned}) {
    if (name == ConvLayoutName(l)) {
      *layout = l;
      return true;
    }
  }
  return false;
}

std::string TunedVariantName(const TunedVariant& v) {
  std::string name = ConvLayoutName(v.layout);
  if (!v.channel_split) name += kNoSplitSuffix;
  return name;
}

bool ParseTunedVariant(std::string_view name, TunedVariant* v) {
  TunedVariant out;
  if (name.size() > kNoSplitSuffix.size() &&
      name.substr(name.size() - kNoSplitSuffix.size()) == kNoSplitSuffix) {
    name.remove_suffix(kNoSplitSuffix.size());
    out.channel_split = false;
  }
  if (!ParseConvLayout(name, &out.layout) || out.layout == ConvLayout::kTuned) return false;
  *v = out;
  return true;
}

namespace {

bool HasAvx512Kernels() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core || isa == dnnl::cpu_isa::avx512_core_vnni ||
         isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx ||
         isa == dnnl::cpu_isa::avx512_mic || isa == dnnl::cpu_isa::avx512_mic_4ops;
}

std::string IsaName() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41:
      return "sse41";
    case dnnl::cpu_isa::avx:
      return "avx";
    case dnnl::cpu_isa::avx2:
      return "avx2";
    case dnnl::cpu_isa::avx2_vnni:
      return "avx2_vnni";
    case dnnl::cpu_isa::avx512_core:
      return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni:
      return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16:
      return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx:
      return "avx512_core_amx";
    default:
      return absl::StrCat("isa", static_cast<int>(dnnl::get_effective_cpu_isa()));
  }
}

std::string CpuModelName() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 1);
    }
  }
  return "unknown";
}

}  // namespace

std::vector<ConvLayout> TuningCandidates() {
  std::vector<ConvLayout> out = {ConvLayout::kAny};
  if (HasAvx512Kernels()) out.push_back(ConvLayout::kBlocked16);
  out.push_back(ConvLayout::kBlocked8);
  return out;
}

uint64_t Fingerprint64(std::string_view bytes, uint64_t seed) {
  uint64_t h = seed;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string TuningCpuTag(int threads) {
  static const std::string model_hash =
      absl::StrFormat("%08x", static_cast<uint32_t>(Fingerprint64(CpuModelName())));
  return absl::StrCat(IsaName(), "-t", threads, "-", model_hash);
}

TunedVariant PickFastest(const std::vector<TunedTiming>& timings, double margin) {
  if (timings.empty()) return TunedVariant{};
  const TunedTiming* best = &timings[0];
  for (const auto& t : timings) {
    if (t.ms > 0 && t.ms < best->ms) best = &t;
  }
  if (best != &timings[0] && best->ms > timings[0].ms * (1.0 - margin)) {
    return timings[0].variant;
  }
  return best->variant;
}

TuningCache::TuningCache(std::string dir, uint64_t model_fingerprint)
    : dir_(std::move(dir)), fingerprint_(model_fingerprint) {}

std::string TuningCache::PathFor(int threads) const {
  if (dir_.empty()) return "";
  return absl::StrFormat("%s/%016x-%s.tuning", dir_, fingerprint_, TuningCpuTag(threads));
}

bool TuningCache::ParseLine(const std::string& line, std::string* plan_key, TunedVariant* variant) {
  const std::vector<std::string> fields = absl::StrSplit(line, '\t');
  if (fields.size() < 2 || fields[0].empty() || fields[0].size() > 4096) return false;
  TunedVariant v;
  if (!ParseTunedVariant(fields[1], &v)) return false;
  *plan_key = fields[0];
  *variant = v;
  return true;
}

void TuningCache::ReadFileInto(const std::string& path, bool overwrite, Entries& entries) {
  std::ifstream in(path);
  std::string line;
  // A tuning file is small (a line per plan); a larger one is not ours.
  for (int n = 0; n < 100000 && std::getline(in, line); ++n) {
    std::string key;
    TunedVariant variant;
    if (!ParseLine(line, &key, &variant)) continue;
    if (overwrite) {
      entries[key] = Entry{variant, line};
    } else {
      entries.emplace(key, Entry{variant, line});
    }
  }
}

TuningCache::Entries& TuningCache::LoadLocked(int threads) {
  auto it = by_threads_.find(threads);
  if (it != by_threads_.end()) return it->second;
  Entries& entries = by_threads_[threads];
  if (dir_.empty()) return entries;
  ReadFileInto(PathFor(threads), /*overwrite=*/true, entries);
  return entries;
}

std::optional<TunedVariant> TuningCache::Find(const std::string& plan_key, int threads) {
  absl::MutexLock lock(&mu_);
  Entries& entries = LoadLocked(threads);
  auto it = entries.find(plan_key);
  if (it == entries.end()) return std::nullopt;
  return it->second.variant;
}

std::string TuningCache::Store(const std::string& plan_key, int threads,
                               const TuningChoice& choice) {
  absl::MutexLock lock(&mu_);
  Entries& entries = LoadLocked(threads);
  std::string line = absl::StrCat(plan_key, "\t", TunedVariantName(choice.variant));
  for (const auto& t : choice.timings) {
    absl::StrAppend(&line, "\t", TunedVariantName(t.variant), "=", absl::StrFormat("%.3f", t.ms));
  }
  entries[plan_key] = Entry{choice.variant, line};
  if (dir_.empty()) return "";
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string path = PathFor(threads);
  // Another model object (the same bytes under another name or version) or
  // process may have written the file since it was read: keep its choices.
  ReadFileInto(path, /*overwrite=*/false, entries);
  // A name of its own per write: model objects of one process may write at
  // the same time.
  static std::atomic<uint64_t> writes{0};
  const std::string tmp = absl::StrCat(path, ".", getpid(), ".", writes.fetch_add(1), ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [key, entry] : entries) out << entry.line << "\n";
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::StrCat("cannot write the tuning file ", tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::StrCat("cannot replace the tuning file ", path);
  }
  return "";
}

}  // namespace rectifier::engine
