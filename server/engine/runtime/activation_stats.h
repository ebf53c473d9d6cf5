// Activation statistics (opt-in, sampled): the fraction of exact zeros in
// each activation layer's output and the channels that stayed zero for every
// sampled input ("dead channels"). ExecutionContext scans the activation
// outputs of a sampled execution and merges them here; CompiledModel
// returns snapshots. See docs/ENGINE.md, "Activation statistics".
#ifndef RECTIFIER_SERVER_ENGINE_RUNTIME_ACTIVATION_STATS_H_
#define RECTIFIER_SERVER_ENGINE_RUNTIME_ACTIVATION_STATS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/engine/compiled_model.h"

namespace rectifier::engine {

// One sampled output of one activation layer, as counted by ScanActivation.
struct ActivationSample {
  int64_t elements = 0;
  int64_t zeros = 0;
  std::vector<uint8_t> channel_nonzero;  // per channel: any element != 0 (NaN counts)
};

// Counts over a dense row-major float tensor of `shape`; channels are dim 1
// (one channel for rank < 2).
ActivationSample ScanActivation(const float* data, const std::vector<int64_t>& shape);
// Same for a 4-D [N, C, H, W] tensor stored channels-last (NHWC, `block` 0)
// or channel-blocked (nChw8c/16c: `block` channels innermost, channels past C
// are padding and not counted), without reordering it first.
ActivationSample ScanActivationNhwcOrBlocked(const float* data, const std::vector<int64_t>& shape,
                                             int block);

// Thread-safe per-model accumulator.
class ActivationStatsAccumulator {
 public:
  // `order` sorts snapshot entries (the plan step of the layer).
  void Merge(const std::string& name, const std::string& kind, int order,
             const ActivationSample& sample);
  std::vector<ActivationLayerStats> Snapshot() const;

 private:
  struct Layer {
    std::string kind;
    int order = 0;
    int64_t samples = 0;
    double zero_fraction_sum = 0.0;
    std::vector<uint8_t> ever_nonzero;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Layer> layers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_RUNTIME_ACTIVATION_STATS_H_
