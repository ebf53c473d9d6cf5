// Implementation choice at load (CompileOptions::conv_layout = kTuned).
// oneDNN 2.6 offers several kernels for one convolution, selected by the
// activation layout asked for: NHWC brgemm on AVX-512 (its own choice), the
// direct nChw16c / nChw8c ones. None wins everywhere, so a tuned plan is
// compiled once per candidate, each candidate timed on this CPU at this
// thread count, and the fastest kept. A candidate whose plan splits 1x1
// convolutions by output channels (CompileOptions::channel_split) is also
// timed without the split. The choice is remembered per model, CPU and
// thread count, on disk when a directory is given.
#ifndef RECTIFIER_SERVER_ENGINE_RUNTIME_CONV_TUNING_H_
#define RECTIFIER_SERVER_ENGINE_RUNTIME_CONV_TUNING_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/engine/compiled_model.h"

namespace rectifier::engine {

// The layouts a tuned plan chooses between on this CPU: kAny first (oneDNN's
// own choice, the baseline), then nChw16c where oneDNN runs AVX-512 kernels,
// then nChw8c.
std::vector<ConvLayout> TuningCandidates();

// "avx512_core-t2-3f9a0c1d": oneDNN's ISA on this CPU, the thread count and
// a hash of the CPU's model name; part of a tuning file's name.
std::string TuningCpuTag(int threads);

// FNV-1a, 64 bits: a stable fingerprint of a model's bytes.
uint64_t Fingerprint64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);

// A tuned plan's candidate: the conv layout, and whether its 1x1
// convolutions may run channel-split (where CompileOptions::channel_split
// allows it at all).
struct TunedVariant {
  ConvLayout layout = ConvLayout::kAny;
  bool channel_split = true;
  friend bool operator==(const TunedVariant& a, const TunedVariant& b) {
    return a.layout == b.layout && a.channel_split == b.channel_split;
  }
  friend bool operator!=(const TunedVariant& a, const TunedVariant& b) { return !(a == b); }
};

// "blocked8", or "blocked8/no-split" without the channel split; the token
// of a tuning file and of a plan's description.
std::string TunedVariantName(const TunedVariant& v);
// The inverse of TunedVariantName; false for anything else (`tuned`
// included: it is no choice).
bool ParseTunedVariant(std::string_view name, TunedVariant* v);

// A candidate's time, for the choice and its report.
struct TunedTiming {
  TunedVariant variant;
  double ms = 0;  // best of the timed runs
};

// The choice made for one plan, and why.
struct TuningChoice {
  TunedVariant variant;
  std::vector<TunedTiming> timings;  // empty when read back from the cache
};

// Picks the fastest of `timings` (timings[0] the baseline): another
// candidate must be faster than the baseline by at least `margin` (0.03:
// 3%), so that noise does not move a plan off oneDNN's own choice.
TunedVariant PickFastest(const std::vector<TunedTiming>& timings, double margin = 0.03);

// The choices of one model on one CPU and thread count, by plan (the input
// shapes as text). With a directory, kept in the text file
// "DIR/<fingerprint>-<cpu tag>.tuning", one line per plan:
// "<shapes>\t<variant>[\t<variant>=<ms> ...]" (TunedVariantName). The file
// is read on first use and rewritten whole (read again and merged, written
// to a temporary file, renamed) on every new choice, so model objects and
// processes sharing it keep each other's choices; lines that do not parse
// are dropped (their plans are timed again), an unreadable or unwritable
// file only costs the timing. Thread-safe.
class TuningCache {
 public:
  // `dir` empty: choices kept in memory only.
  TuningCache(std::string dir, uint64_t model_fingerprint);

  std::optional<TunedVariant> Find(const std::string& plan_key, int threads);
  // Stores and writes the file; a message when the file could not be
  // written (the choice is kept in memory all the same).
  std::string Store(const std::string& plan_key, int threads, const TuningChoice& choice);
  // The file for `threads` ("" without a directory).
  std::string PathFor(int threads) const;

  // One line of a tuning file; false when it does not parse.
  static bool ParseLine(const std::string& line, std::string* plan_key, TunedVariant* variant);

 private:
  struct Entry {
    TunedVariant variant;
    std::string line;  // as written to the file
  };
  using Entries = std::map<std::string, Entry>;
  Entries& LoadLocked(int threads) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the well-formed lines of the file at `path` (a missing file adds
  // none); `overwrite`: a line replaces an entry of the same plan, else the
  // entry already held wins.
  static void ReadFileInto(const std::string& path, bool overwrite, Entries& entries);

  const std::string dir_;
  const uint64_t fingerprint_;
  absl::Mutex mu_;
  std::map<int, Entries> by_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_RUNTIME_CONV_TUNING_H_
