// Activation statistics: scanning one output and merging samples.
#include "server/engine/runtime/activation_stats.h"

#include <algorithm>

namespace rectifier::engine {

ActivationSample ScanActivation(const float* data, const std::vector<int64_t>& shape) {
  ActivationSample s;
  const int64_t n = shape.size() >= 2 ? shape[0] : 1;
  const int64_t c = shape.size() >= 2 ? shape[1] : 1;
  int64_t inner = 1;
  if (shape.size() >= 2) {
    for (size_t i = 2; i < shape.size(); ++i) inner *= shape[i];
  } else {
    for (int64_t d : shape) inner *= d;
  }
  s.elements = n * c * inner;
  s.channel_nonzero.assign(static_cast<size_t>(c), 0);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const float* p = data + (b * c + ch) * inner;
      int64_t zeros = 0;
      for (int64_t i = 0; i < inner; ++i) zeros += p[i] == 0.0f;
      s.zeros += zeros;
      if (zeros != inner) s.channel_nonzero[static_cast<size_t>(ch)] = 1;
    }
  }
  return s;
}

ActivationSample ScanActivationNhwcOrBlocked(const float* data, const std::vector<int64_t>& shape,
                                             int block) {
  ActivationSample s;
  const int64_t n = shape[0], c = shape[1], hw = shape[2] * shape[3];
  s.elements = n * c * hw;
  s.channel_nonzero.assign(static_cast<size_t>(c), 0);
  uint8_t* nz = s.channel_nonzero.data();
  if (block == 0) {
    for (int64_t i = 0; i < n * hw; ++i) {
      const float* p = data + i * c;
      int64_t zeros = 0;
      for (int64_t ch = 0; ch < c; ++ch) {
        const bool z = p[ch] == 0.0f;
        zeros += z;
        nz[ch] |= static_cast<uint8_t>(!z);
      }
      s.zeros += zeros;
    }
    return s;
  }
  const int64_t blocks = (c + block - 1) / block;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const int64_t width = std::min<int64_t>(block, c - cb * block);
      const float* base = data + (b * blocks + cb) * hw * block;
      uint8_t* bnz = nz + cb * block;
      int64_t zeros = 0;
      for (int64_t i = 0; i < hw; ++i) {
        const float* p = base + i * block;
        for (int64_t k = 0; k < width; ++k) {
          const bool z = p[k] == 0.0f;
          zeros += z;
          bnz[k] |= static_cast<uint8_t>(!z);
        }
      }
      s.zeros += zeros;
    }
  }
  return s;
}

void ActivationStatsAccumulator::Merge(const std::string& name, const std::string& kind, int order,
                                       const ActivationSample& sample) {
  absl::MutexLock lock(&mu_);
  Layer& l = layers_[name];
  if (l.samples == 0) {
    l.kind = kind;
    l.order = order;
    l.ever_nonzero.assign(sample.channel_nonzero.size(), 0);
  }
  if (l.ever_nonzero.size() != sample.channel_nonzero.size()) return;  // cannot happen per model
  ++l.samples;
  l.zero_fraction_sum +=
      sample.elements > 0 ? static_cast<double>(sample.zeros) / static_cast<double>(sample.elements)
                          : 0.0;
  for (size_t c = 0; c < l.ever_nonzero.size(); ++c) l.ever_nonzero[c] |= sample.channel_nonzero[c];
}

std::vector<ActivationLayerStats> ActivationStatsAccumulator::Snapshot() const {
  std::vector<std::pair<int, ActivationLayerStats>> rows;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, l] : layers_) {
      ActivationLayerStats s;
      s.name = name;
      s.kind = l.kind;
      s.channels = static_cast<int64_t>(l.ever_nonzero.size());
      s.sampled_count = l.samples;
      s.zero_fraction = l.samples > 0 ? l.zero_fraction_sum / static_cast<double>(l.samples) : 0.0;
      for (size_t c = 0; c < l.ever_nonzero.size(); ++c)
        if (!l.ever_nonzero[c]) s.dead_channels.push_back(static_cast<int64_t>(c));
      rows.emplace_back(l.order, std::move(s));
    }
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ActivationLayerStats> out;
  out.reserve(rows.size());
  for (auto& r : rows) out.push_back(std::move(r.second));
  return out;
}

}  // namespace rectifier::engine
