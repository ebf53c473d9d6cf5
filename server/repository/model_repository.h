// ModelRepository: the models on disk (Triton layout), their loaded
// versions, load/unload/reload without losing requests, and polling.
#ifndef RECTIFIER_SERVER_REPOSITORY_MODEL_REPOSITORY_H_
#define RECTIFIER_SERVER_REPOSITORY_MODEL_REPOSITORY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model_config.pb.h"
#include "server/common/clock.h"
#include "server/engine/compiled_model.h"
#include "server/metrics/model_metrics.h"
#include "server/repository/model_imaging.h"
#include "server/repository/model_stats.h"
#include "server/repository/request_observer.h"
#include "server/scheduling/scheduler.h"

namespace rectifier::repository {

enum class ControlMode { kNone, kPoll, kExplicit };

// Parses "none", "poll" or "explicit".
absl::StatusOr<ControlMode> ParseControlMode(const std::string& text);

// Name rules: a single path component of [A-Za-z0-9_.-], not starting with
// '.', at most 128 characters. Keeps requests from escaping the repository.
absl::Status ValidateModelName(const std::string& name);

// One loaded, ready version of a model. Immutable once published; shared by
// in-flight requests, so a request finishes on the version it started on.
struct ServedModel {
  // Stops the scrape-time reads before the scheduler and the model go.
  ~ServedModel() {
    queue_depth_source.Reset();
    activation_source.Reset();
  }

  std::string name;
  int64_t version = 0;
  inference::ModelConfig config;  // completed from the model
  std::shared_ptr<const engine::CompiledModel> model;
  std::vector<std::string> labels;  // from labels.txt, may be empty
  // The imaging view, built once at load (BuildModelImaging): what the vision
  // API and KServe BYTES inputs use, or why this model takes no images.
  ImagingView imaging = absl::FailedPreconditionError("no imaging view");
  // Null without a metrics registry. Declared before the scheduler so it
  // outlives the workers that observe into it. Shared with another copy of
  // the same version while one replaces the other (same series).
  std::shared_ptr<metrics::ModelMetrics> metrics;
  metrics::ScrapeSourceHandle queue_depth_source;
  // The engine's plan cache counts, read at scrape time.
  metrics::ScrapeSourceHandle plan_cache_source;
  // Activation statistics (when the config samples them) read at scrape time.
  metrics::ScrapeSourceHandle activation_source;
  // ModelStatistics counters; never null once published.
  std::unique_ptr<ModelStats> stats;
  // Accounts every finished request and executed batch into `stats` and
  // `metrics`; never null once published. Declared after both (it points to
  // them) and before the scheduler (whose workers report to it).
  std::unique_ptr<RequestObserver> observer;
  std::unique_ptr<scheduling::Scheduler> scheduler;
};

// Whether a request prepared for version `a` may run on `b` (a reload of
// it): the same inputs (names, types, shapes), outputs (names, types, dims),
// max_batch_size and imaging task.
bool SameInterface(const ServedModel& a, const ServedModel& b);

// A row of the repository index (RepositoryIndex RPC).
struct ModelIndexEntry {
  std::string name;
  std::string version;  // empty when no version is loaded
  std::string state;    // READY, UNAVAILABLE, LOADING, UNLOADING
  std::string reason;   // why UNAVAILABLE
};

struct RepositoryOptions {
  std::string root = "models";
  ControlMode mode = ControlMode::kNone;
  absl::Duration poll_interval = absl::Seconds(5);
  // Models to load at start in explicit mode.
  std::vector<std::string> startup_models;
  // CPUs one model's instances share (0 = what the process may use, cgroup-aware).
  int cpus = 0;
  // OpenMP threads per instance; 0 = cpus / instances, so instances never
  // oversubscribe the CPUs by default. A model's config parameter
  // "intra_op_threads" overrides both.
  int intra_op_threads = 0;
  // Convolution activation layout (a config's parameters { key:
  // "conv_layout" } wins) and where tuned choices are kept ("": in memory).
  engine::ConvLayout conv_layout = engine::ConvLayout::kTuned;
  std::string tuning_cache_dir;
  // max_batch_size for batchable models whose config does not set one.
  int default_max_batch_size = 32;
  // Bound on draining a replaced or unloaded version.
  absl::Duration drain_timeout = absl::Seconds(30);
  // Where per-model metrics go; null = none. Must outlive the repository.
  metrics::ServerMetrics* metrics = nullptr;
  // Time for drains, statistics and the schedulers' batching and deadlines
  // (tests pass a fake one). Must outlive the repository.
  common::Clock* clock = common::Clock::Real();
};

// The engine's compile options for a model: the config's activation and
// engine blocks, max_batch_size, warm-up shapes and parameters.conv_layout
// / conv3x3_kernel / batch_split, over `options`' defaults.
// INVALID_ARGUMENT names a parameter whose value is not one it takes.
absl::StatusOr<engine::CompileOptions> CompileOptionsFromConfig(
    const inference::ModelConfig& config, const RepositoryOptions& options);

// Thread-safe.
class ModelRepository {
 public:
  // Scans `root` and loads every model (mode none/poll) or the startup models
  // (explicit). A model that fails to load is reported (Index(), logs) and
  // does not stop the others. Fails only if `root` is not a directory.
  static absl::StatusOr<std::unique_ptr<ModelRepository>> Create(const RepositoryOptions& options);
  // Stops polling and drains every model (bounded by drain_timeout).
  ~ModelRepository();

  // The served version of `name` at `version` ("" = the newest ready
  // version): NOT_FOUND for an unknown model or version, UNAVAILABLE for a
  // model that is not ready or a repository shutting down, INVALID_ARGUMENT
  // for a version that is not a number. A request resolves its version here,
  // is prepared for it (decoded, checked) outside any repository lock, then
  // handed over with Submit.
  absl::StatusOr<std::shared_ptr<const ServedModel>> Get(const std::string& name,
                                                         const std::string& version) const;

  // Whether a request prepared for `resolved` (from Get(resolved->name,
  // `version`)) still goes to the version served now: `resolved` itself while
  // it is served; after a reload, its replacement when the request still fits
  // it (SameInterface). UNAVAILABLE ("... was reloaded ...; retry") when it
  // does not, else Get's errors (the model was unloaded meanwhile).
  absl::StatusOr<std::shared_ptr<const ServedModel>> CurrentVersionFor(
      const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const;

  // Hands `request`, prepared for `resolved`, to the scheduler of
  // CurrentVersionFor(resolved, version), and sets `*ran` (may be null) to
  // that version before the scheduler can call `done`. The check and the
  // hand-over happen under one lock, so a concurrent reload cannot retire
  // the version in between. On error (CurrentVersionFor's) `done` is never
  // called. On OK the scheduler owns the request and calls `done` once; no
  // service code runs under the lock: a refusal by the scheduler itself
  // (queue full, bad priority) reaches `done` on this thread after the lock
  // is released.
  absl::Status Submit(const std::shared_ptr<const ServedModel>& resolved,
                      const std::string& version,
                      std::unique_ptr<scheduling::InferenceRequest> request,
                      std::shared_ptr<const ServedModel>* ran = nullptr);
  // Versions currently served, newest first.
  std::vector<int64_t> ReadyVersions(const std::string& name) const;
  // Every served version of `name` ("" = of every model), by name then newest first.
  std::vector<std::shared_ptr<const ServedModel>> Served(const std::string& name) const;

  // (Re)loads a model from disk: compiles and warms every version its policy
  // selects, then swaps them in at once; the replaced versions drain. On
  // failure the previously served versions stay and the reason is recorded;
  // a model that was not loaded stays unloaded (a bad load request must not
  // turn the server not ready), and Index() shows the reason.
  absl::Status Load(const std::string& name) { return Load(name, /*record_new_failure=*/false); }
  // Stops serving `name`; queued requests finish first. NOT_FOUND if not loaded.
  absl::Status Unload(const std::string& name);
  // Rescans the repository: loads new or changed models, unloads removed ones.
  absl::Status Poll();

  std::vector<ModelIndexEntry> Index() const;
  // True when every model that should be loaded is ready (strict readiness).
  bool AllReady() const;
  ControlMode mode() const { return options_.mode; }
  // Refuses new requests from now on (UNAVAILABLE "server is shutting
  // down"); returns at once. Called before readiness turns false, so that a
  // client that sees the server not ready is refused rather than served.
  void BeginShutdown();
  // Stops accepting requests (BeginShutdown) and drains every model until
  // `deadline`.
  void Shutdown(absl::Time deadline);

 private:
  struct ModelSlot {
    // Newest first. Replaced as a whole on reload.
    std::vector<std::shared_ptr<ServedModel>> versions;
    std::string state = "UNAVAILABLE";
    std::string reason;
    std::string fingerprint;  // files' sizes and mtimes at the last load
  };

  explicit ModelRepository(const RepositoryOptions& options) : options_(options) {}

  // Load(); with `record_new_failure`, a name new to the index that fails
  // stays in it as UNAVAILABLE (start-up and polling: the model is in the
  // repository and should be served).
  absl::Status Load(const std::string& name, bool record_new_failure);
  absl::StatusOr<std::vector<std::shared_ptr<ServedModel>>> LoadVersions(
      const std::string& name) const;
  absl::StatusOr<std::shared_ptr<ServedModel>> LoadVersion(const std::string& name,
                                                           const inference::ModelConfig& config,
                                                           int64_t version) const;
  // OpenMP threads per instance of `instances`: the config's
  // intra_op_threads, else --intra-op-threads, else the CPUs split between
  // the instances (PlanThreads); warns when they oversubscribe the CPUs.
  absl::StatusOr<int> ThreadsPerInstance(const std::string& name, int64_t version,
                                         const inference::ModelConfig& config, int instances) const;
  absl::StatusOr<std::shared_ptr<const ServedModel>> GetLocked(const std::string& name,
                                                               const std::string& version) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<const ServedModel>> CurrentVersionForLocked(
      const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  std::vector<std::string> ScanModelNames() const;
  std::string Fingerprint(const std::string& name) const;
  // Model state metrics after a swap: `serving` ready, the other `retired`
  // versions unloading, no version-less series.
  void PublishStates(const std::string& name,
                     const std::vector<std::shared_ptr<ServedModel>>& serving,
                     const std::vector<std::shared_ptr<ServedModel>>& retired) const;
  void Retire(const std::vector<std::shared_ptr<ServedModel>>& versions) const;
  void PollLoop();

  const RepositoryOptions options_;
  absl::Mutex load_mu_;  // serializes Load/Unload/Poll (compiles run outside mu_)
  mutable absl::Mutex mu_;
  std::map<std::string, ModelSlot> models_ ABSL_GUARDED_BY(mu_);
  // Why the last load request of a model not in models_ failed: shown by
  // Index() (instead of "not loaded"), not counted by AllReady().
  std::map<std::string, std::string> failed_requests_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex poll_mu_;
  absl::CondVar poll_cv_;
  bool stop_polling_ ABSL_GUARDED_BY(poll_mu_) = false;
  std::thread poll_thread_;
};

}  // namespace rectifier::repository

#endif  // RECTIFIER_SERVER_REPOSITORY_MODEL_REPOSITORY_H_
