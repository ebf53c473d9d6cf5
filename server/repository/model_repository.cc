#include "server/repository/model_repository.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "server/common/clock.h"
#include "server/common/status_macros.h"
#include "server/repository/model_config.h"
#include "server/repository/model_files.h"
#include "server/scheduling/dynamic_batch_scheduler.h"
#include "spdlog/spdlog.h"

namespace rectifier::repository {
namespace {

namespace fs = std::filesystem;

// The ways a path under the repository root can be spelt in a message: the
// root as configured, absolute and canonical, each with its trailing
// separator (paths are built as root / model / ...). Longest first.
std::vector<std::string> RootPrefixes(const std::string& root) {
  std::vector<std::string> prefixes;
  std::error_code ec;
  const fs::path given(root);
  prefixes.push_back((given / "").string());
  const fs::path absolute = fs::absolute(given, ec);
  if (!ec) prefixes.push_back((absolute / "").string());
  const fs::path canonical = fs::weakly_canonical(given, ec);
  if (!ec) prefixes.push_back((canonical / "").string());
  std::sort(prefixes.begin(), prefixes.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() > b.size() : a < b;
  });
  prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());
  return prefixes;
}

bool IsPathChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
         c == '/';
}

// Load errors go to clients (RepositoryModelLoad, RepositoryIndex reasons,
// ModelReady / metadata / inference on a model that is not ready), which must
// not learn the server's file system layout: every path under the repository
// root is cut to its repository-relative form (`<model>/config.pbtxt`,
// `<model>/<version>/model.onnx`). A prefix counts only where a path starts
// (not inside a longer path, e.g. "./" in "../").
std::string RelativeToRoot(const std::string& message, const std::vector<std::string>& prefixes) {
  std::string out;
  out.reserve(message.size());
  size_t i = 0;
  while (i < message.size()) {
    size_t cut = 0;
    if (i == 0 || !IsPathChar(message[i - 1])) {
      for (const std::string& prefix : prefixes) {
        if (message.compare(i, prefix.size(), prefix) == 0) {
          cut = prefix.size();
          break;
        }
      }
    }
    if (cut > 0) {
      i += cut;
    } else {
      out.push_back(message[i++]);
    }
  }
  return out;
}

// Numeric subdirectories of `dir` that contain `file`, newest first.
std::vector<int64_t> AvailableVersions(const fs::path& dir, const std::string& file) {
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t version = 0;
    if (entry.is_directory(ec) && absl::SimpleAtoi(entry.path().filename().string(), &version) &&
        version > 0 && fs::is_regular_file(entry.path() / file, ec)) {
      versions.push_back(version);
    }
  }
  std::sort(versions.rbegin(), versions.rend());
  return versions;
}

absl::StatusOr<std::vector<int64_t>> SelectVersions(const inference::ModelVersionPolicy& policy,
                                                    const std::vector<int64_t>& available) {
  if (policy.has_all()) return available;
  if (policy.has_specific()) {
    std::vector<int64_t> selected;
    for (const int64_t v : policy.specific().versions()) {
      if (std::find(available.begin(), available.end(), v) == available.end()) {
        return absl::NotFoundError(
            absl::StrCat("version_policy.specific names version ", v, ", which has no model file"));
      }
      selected.push_back(v);
    }
    std::sort(selected.rbegin(), selected.rend());
    return selected;
  }
  const size_t n = policy.has_latest() ? policy.latest().num_versions() : 1;
  return std::vector<int64_t>(available.begin(), available.begin() + std::min(n, available.size()));
}

}  // namespace

absl::StatusOr<ControlMode> ParseControlMode(const std::string& text) {
  if (text == "none") return ControlMode::kNone;
  if (text == "poll") return ControlMode::kPoll;
  if (text == "explicit") return ControlMode::kExplicit;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model control mode '", text, "' (expected none, poll or explicit)"));
}

absl::Status ValidateModelName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("model name is empty");
  if (name.size() > 128) return absl::InvalidArgumentError("model name is over 128 characters");
  if (name[0] == '.') {
    return absl::InvalidArgumentError(absl::StrCat("model name '", name, "' starts with '.'"));
  }
  for (const char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return absl::InvalidArgumentError(
          absl::StrCat("model name '", name, "' may only hold letters, digits, '_', '-', '.'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ModelRepository>> ModelRepository::Create(
    const RepositoryOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(options.root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository '", options.root, "' is not a directory"));
  }
  std::unique_ptr<ModelRepository> repository(new ModelRepository(options));
  const std::vector<std::string> names = options.mode == ControlMode::kExplicit
                                             ? options.startup_models
                                             : repository->ScanModelNames();
  for (const std::string& name : names) {
    // A broken model is recorded and logged by Load; the others go on.
    repository->Load(name, /*record_new_failure=*/true).IgnoreError();
  }
  if (options.mode == ControlMode::kPoll) {
    repository->poll_thread_ = std::thread([r = repository.get()] { r->PollLoop(); });
  }
  return repository;
}

ModelRepository::~ModelRepository() {
  {
    absl::MutexLock lock(&poll_mu_);
    stop_polling_ = true;
    poll_cv_.SignalAll();
  }
  if (poll_thread_.joinable()) poll_thread_.join();
  Shutdown(options_.clock->Now() + options_.drain_timeout);
}

namespace {

// A model folder holds a config.pbtxt or at least one numeric version
// folder; anything else (e.g. models/tools/ with export scripts) is not a model.
bool LooksLikeModel(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / kConfigFile, ec)) return true;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    int64_t version = 0;
    if (entry.is_directory(ec) && absl::SimpleAtoi(entry.path().filename().string(), &version)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::string> ModelRepository::ScanModelNames() const {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.root, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory(ec) && ValidateModelName(name).ok() && LooksLikeModel(entry.path())) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string ModelRepository::Fingerprint(const std::string& name) const {
  // Sizes and modification times of every file under the model's folder:
  // any edit, new version or removed version changes it.
  std::ostringstream out;
  std::error_code ec;
  std::vector<std::string> rows;
  for (auto it = fs::recursive_directory_iterator(fs::path(options_.root) / name, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const auto mtime = fs::last_write_time(it->path(), ec).time_since_epoch().count();
    rows.push_back(absl::StrCat(it->path().string(), ":", it->file_size(ec), ":", mtime));
  }
  std::sort(rows.begin(), rows.end());
  for (const std::string& row : rows) out << row << '\n';
  return out.str();
}

absl::StatusOr<std::vector<std::shared_ptr<ServedModel>>> ModelRepository::LoadVersions(
    const std::string& name) const {
  RETURN_IF_ERROR(ValidateModelName(name));
  const fs::path dir = fs::path(options_.root) / name;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("no model '", name, "' in the model repository"));
  }
  inference::ModelConfig config;
  const fs::path config_path = dir / kConfigFile;
  if (fs::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(const std::string text, ReadFile(config_path));
    ASSIGN_OR_RETURN(config, ParseModelConfig(text, config_path.string()));
    if (!config.name().empty() && config.name() != name) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path.string(), ": name '", config.name(),
                       "' differs from the folder name '", name, "'"));
    }
    if (absl::Status s = ValidateModelConfig(config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": ", s.message()));
    }
  }
  config.set_name(name);
  const std::vector<int64_t> available = AvailableVersions(dir, ModelFileName(config));
  if (available.empty()) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "' has no version folder with ", ModelFileName(config)));
  }
  ASSIGN_OR_RETURN(const std::vector<int64_t> selected,
                   SelectVersions(config.version_policy(), available));
  std::vector<std::shared_ptr<ServedModel>> versions;
  for (const int64_t version : selected) {
    auto served = LoadVersion(name, config, version);
    if (!served.ok()) {
      return absl::Status(served.status().code(),
                          absl::StrCat("version ", version, ": ", served.status().message()));
    }
    versions.push_back(std::move(served).value());
  }
  return versions;
}

absl::Status ModelRepository::Load(const std::string& name, bool record_new_failure) {
  // A bad name or a model that is not in the repository is the caller's
  // mistake: refused without creating an index entry (which would make the
  // server report not ready).
  RETURN_IF_ERROR(ValidateModelName(name));
  std::error_code ec;
  if (!fs::is_directory(fs::path(options_.root) / name, ec)) {
    return absl::NotFoundError(absl::StrCat("no model '", name, "' in the model repository"));
  }
  absl::MutexLock load_lock(&load_mu_);
  const std::string fingerprint = Fingerprint(name);
  bool new_entry = false;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("server is shutting down");
    new_entry = models_.find(name) == models_.end();
    ModelSlot& slot = models_[name];
    if (slot.versions.empty()) {
      slot.state = "LOADING";
      if (options_.metrics != nullptr) {
        options_.metrics->SetModelState(name, metrics::ModelState::kLoading);
      }
    }
  }
  auto loaded = LoadVersions(name);
  // The log keeps the full paths; the reason and the returned status reach
  // clients, so they name files relative to the repository.
  std::string reason;
  if (!loaded.ok()) {
    spdlog::error("model={} failed to load: {}", name, std::string(loaded.status().message()));
    reason = RelativeToRoot(std::string(loaded.status().message()), RootPrefixes(options_.root));
  }
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    absl::MutexLock lock(&mu_);
    ModelSlot& slot = models_[name];
    if (!loaded.ok() && new_entry && !record_new_failure) {
      models_.erase(name);
      failed_requests_[name] = reason;
      if (options_.metrics != nullptr) options_.metrics->ClearModelState(name);
      return absl::Status(loaded.status().code(), reason);
    }
    slot.fingerprint = fingerprint;
    if (!loaded.ok()) {
      slot.reason = reason;
      if (slot.versions.empty()) {
        slot.state = "UNAVAILABLE";
        if (options_.metrics != nullptr) {
          options_.metrics->SetModelState(name, metrics::ModelState::kUnavailable);
        }
      }
      return absl::Status(loaded.status().code(), reason);
    }
    // The swap: from here new requests reach the new versions; requests
    // already queued on the old ones finish there (Retire drains them).
    failed_requests_.erase(name);
    retired = std::exchange(slot.versions, std::move(loaded).value());
    slot.state = "READY";
    slot.reason.clear();
    PublishStates(name, slot.versions, retired);
  }
  Retire(retired);
  return absl::OkStatus();
}

absl::Status ModelRepository::Unload(const std::string& name) {
  absl::MutexLock load_lock(&load_mu_);
  std::vector<std::shared_ptr<ServedModel>> retired;
  {
    absl::MutexLock lock(&mu_);
    auto it = models_.find(name);
    if (it == models_.end() || it->second.versions.empty()) {
      return absl::NotFoundError(absl::StrCat("model '", name, "' is not loaded"));
    }
    retired = std::move(it->second.versions);
    models_.erase(it);
    PublishStates(name, {}, retired);
  }
  Retire(retired);
  spdlog::info("model={} unloaded", name);
  return absl::OkStatus();
}

void ModelRepository::PublishStates(
    const std::string& name, const std::vector<std::shared_ptr<ServedModel>>& serving,
    const std::vector<std::shared_ptr<ServedModel>>& retired) const {
  if (options_.metrics == nullptr) return;
  // A retired version that is served again (reloaded in place) shares its
  // series with the new copy: it stays ready.
  for (const auto& old : retired) {
    const bool again = std::any_of(serving.begin(), serving.end(),
                                   [&old](const auto& s) { return s->version == old->version; });
    if (!again && old->metrics != nullptr) old->metrics->SetState(metrics::ModelState::kUnloading);
  }
  for (const auto& served : serving) {
    if (served->metrics != nullptr) served->metrics->SetState(metrics::ModelState::kReady);
  }
  options_.metrics->ClearModelState(name);
}

void ModelRepository::Retire(const std::vector<std::shared_ptr<ServedModel>>& versions) const {
  // No new request can reach these any more (they left models_ under mu_,
  // and Submit holds mu_ while handing a request over).
  const absl::Time deadline = options_.clock->Now() + options_.drain_timeout;
  for (const auto& served : versions) served->scheduler->Shutdown(deadline);
}

absl::Status ModelRepository::Poll() {
  const std::vector<std::string> on_disk = ScanModelNames();
  std::map<std::string, std::string> fingerprints;  // file system reads stay outside mu_
  for (const std::string& name : on_disk) fingerprints[name] = Fingerprint(name);
  std::vector<std::string> to_load;
  std::vector<std::string> to_unload;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const std::string& name : on_disk) {
      auto it = models_.find(name);
      if (it == models_.end() || it->second.fingerprint != fingerprints[name]) {
        to_load.push_back(name);
      }
    }
    for (const auto& [name, slot] : models_) {
      if (!std::binary_search(on_disk.begin(), on_disk.end(), name)) to_unload.push_back(name);
    }
  }
  absl::Status first_error;
  for (const std::string& name : to_load) {
    spdlog::info("model={} changed on disk, loading", name);
    absl::Status s = Load(name, /*record_new_failure=*/true);
    if (first_error.ok()) first_error = s;
  }
  for (const std::string& name : to_unload) {
    absl::Status s = Unload(name);
    if (!s.ok() && !absl::IsNotFound(s) && first_error.ok()) first_error = s;
    absl::MutexLock lock(&mu_);
    models_.erase(name);
    if (options_.metrics != nullptr) options_.metrics->ClearModelState(name);
  }
  return first_error;
}

void ModelRepository::PollLoop() {
  while (true) {
    {
      absl::MutexLock lock(&poll_mu_);
      const absl::Time wake = options_.clock->Now() + options_.poll_interval;
      for (absl::Time now = options_.clock->Now(); !stop_polling_ && now < wake;
           now = options_.clock->Now()) {
        poll_cv_.WaitWithTimeout(&poll_mu_, wake - now);
      }
      if (stop_polling_) return;
    }
    Poll().IgnoreError();  // failures are recorded per model and logged
  }
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::GetLocked(
    const std::string& name, const std::string& version) const {
  if (shutting_down_) return absl::UnavailableError("server is shutting down");
  auto it = models_.find(name);
  if (it == models_.end()) {
    // In explicit mode a model of the repository is served only once
    // loaded: say so, and how (a stat of a validated name, no scan).
    std::error_code ec;
    if (options_.mode == ControlMode::kExplicit && ValidateModelName(name).ok() &&
        fs::is_directory(fs::path(options_.root) / name, ec)) {
      return absl::NotFoundError(
          absl::StrCat("model '", name,
                       "' is in the repository but not loaded (--model-control-mode "
                       "explicit); load it with RepositoryModelLoad, e.g. `rectifier-client load ",
                       name, "`"));
    }
    return absl::NotFoundError(absl::StrCat("unknown model '", name, "'"));
  }
  const ModelSlot& slot = it->second;
  if (slot.versions.empty()) {
    return absl::UnavailableError(absl::StrCat("model '", name, "' is not ready (", slot.state,
                                               slot.reason.empty() ? "" : ": ", slot.reason, ")"));
  }
  if (version.empty()) return std::shared_ptr<const ServedModel>(slot.versions.front());
  int64_t wanted = 0;
  if (!absl::SimpleAtoi(version, &wanted)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model version '", version, "' is not a number"));
  }
  for (const auto& served : slot.versions) {
    if (served->version == wanted) return std::shared_ptr<const ServedModel>(served);
  }
  return absl::NotFoundError(absl::StrCat("model '", name, "' has no ready version ", version));
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::Get(
    const std::string& name, const std::string& version) const {
  absl::ReaderMutexLock lock(&mu_);
  return GetLocked(name, version);
}

namespace {

bool SameTensors(const std::vector<engine::TensorInfo>& a,
                 const std::vector<engine::TensorInfo>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name == y.name && x.type == y.type && x.shape == y.shape;
  });
}

template <typename ConfigTensors>
bool SameConfigTensors(const ConfigTensors& a, const ConfigTensors& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.name() == y.name() && x.data_type() == y.data_type() &&
           std::equal(x.dims().begin(), x.dims().end(), y.dims().begin(), y.dims().end());
  });
}

// An answer the scheduler gives inside Enqueue (an immediate refusal), on
// the submitting thread while it holds the repository lock: held, and
// delivered by Release() once the lock is gone. Answers from the
// scheduler's workers go straight through.
class HeldAnswer {
 public:
  using Done = std::function<void(absl::StatusOr<std::vector<engine::Tensor>>,
                                  const scheduling::RequestTimes&)>;
  explicit HeldAnswer(Done done) : done_(std::move(done)) {}

  void Answer(absl::StatusOr<std::vector<engine::Tensor>> result,
              const scheduling::RequestTimes& times) {
    if (holding_.load(std::memory_order_acquire) && std::this_thread::get_id() == submitter_) {
      held_.emplace(std::move(result), times);
      return;
    }
    done_(std::move(result), times);
  }
  // On the submitting thread, without the lock.
  void Release() {
    holding_.store(false, std::memory_order_release);
    if (held_.has_value()) done_(std::move(held_->first), held_->second);
  }

 private:
  const Done done_;
  const std::thread::id submitter_ = std::this_thread::get_id();
  std::atomic<bool> holding_{true};
  // Written and read by the submitting thread only.
  std::optional<std::pair<absl::StatusOr<std::vector<engine::Tensor>>, scheduling::RequestTimes>>
      held_;
};

}  // namespace

bool SameInterface(const ServedModel& a, const ServedModel& b) {
  return SameTensors(a.model->inputs(), b.model->inputs()) &&
         SameTensors(a.model->outputs(), b.model->outputs()) &&
         SameConfigTensors(a.config.input(), b.config.input()) &&
         SameConfigTensors(a.config.output(), b.config.output()) &&
         a.config.max_batch_size() == b.config.max_batch_size() &&
         a.config.postprocessing().task() == b.config.postprocessing().task();
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::CurrentVersionForLocked(
    const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const {
  ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> current, GetLocked(resolved->name, version));
  if (current == resolved || SameInterface(*resolved, *current)) return current;
  return absl::UnavailableError(
      absl::StrCat("model '", resolved->name,
                   "' was reloaded with different inputs or outputs while the request was "
                   "being prepared; retry"));
}

absl::StatusOr<std::shared_ptr<const ServedModel>> ModelRepository::CurrentVersionFor(
    const std::shared_ptr<const ServedModel>& resolved, const std::string& version) const {
  absl::ReaderMutexLock lock(&mu_);
  return CurrentVersionForLocked(resolved, version);
}

absl::Status ModelRepository::Submit(const std::shared_ptr<const ServedModel>& resolved,
                                     const std::string& version,
                                     std::unique_ptr<scheduling::InferenceRequest> request,
                                     std::shared_ptr<const ServedModel>* ran) {
  std::shared_ptr<HeldAnswer> held;
  {
    absl::ReaderMutexLock lock(&mu_);
    ASSIGN_OR_RETURN(std::shared_ptr<const ServedModel> served,
                     CurrentVersionForLocked(resolved, version));
    if (ran != nullptr) *ran = served;
    if (served->metrics != nullptr) {
      // Queue time is known once the batch starts; observed here so every
      // front end (KServe, vision) gets it without doing it itself.
      // Raw pointer: the metrics outlive the scheduler threads that call done.
      // (Capturing `served` would let a worker drop the last reference and
      // join itself.)
      // In flight from here until the front end's callback has answered.
      request->done = [metrics = served->metrics.get(), done = std::move(request->done)](
                          absl::StatusOr<std::vector<engine::Tensor>> result,
                          const scheduling::RequestTimes& times) {
        if (times.batch_start > times.enqueued) {
          metrics->ObserveQueue(absl::ToDoubleSeconds(times.batch_start - times.enqueued));
        }
        done(std::move(result), times);
        metrics->RequestAnswered();
      };
      served->metrics->RequestAccepted();
    }
    held = std::make_shared<HeldAnswer>(std::move(request->done));
    request->done = [held](absl::StatusOr<std::vector<engine::Tensor>> result,
                           const scheduling::RequestTimes& times) {
      held->Answer(std::move(result), times);
    };
    // Handed over under the lock, so a concurrent swap cannot retire this
    // version between the check and the enqueue.
    served->scheduler->Enqueue(std::move(request));
  }
  held->Release();
  return absl::OkStatus();
}

std::vector<int64_t> ModelRepository::ReadyVersions(const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<int64_t> versions;
  auto it = models_.find(name);
  if (it == models_.end()) return versions;
  for (const auto& served : it->second.versions) versions.push_back(served->version);
  return versions;
}

std::vector<std::shared_ptr<const ServedModel>> ModelRepository::Served(
    const std::string& name) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::shared_ptr<const ServedModel>> served;
  for (const auto& [model, slot] : models_) {
    if (!name.empty() && model != name) continue;
    served.insert(served.end(), slot.versions.begin(), slot.versions.end());
  }
  return served;
}

std::vector<ModelIndexEntry> ModelRepository::Index() const {
  std::vector<ModelIndexEntry> index;
  std::set<std::string> listed;
  std::map<std::string, std::string> failed_requests;
  {
    absl::ReaderMutexLock lock(&mu_);
    failed_requests = failed_requests_;
    for (const auto& [name, slot] : models_) {
      listed.insert(name);
      if (slot.versions.empty()) {
        index.push_back({name, "", slot.state, slot.reason});
        continue;
      }
      for (const auto& served : slot.versions) {
        index.push_back({name, std::to_string(served->version), "READY", slot.reason});
      }
    }
  }
  for (const std::string& name : ScanModelNames()) {
    if (listed.count(name)) continue;
    const auto failed = failed_requests.find(name);
    index.push_back(
        {name, "", "UNAVAILABLE", failed == failed_requests.end() ? "not loaded" : failed->second});
  }
  std::sort(index.begin(), index.end(), [](const ModelIndexEntry& a, const ModelIndexEntry& b) {
    return std::tie(a.name, a.version) < std::tie(b.name, b.version);
  });
  return index;
}

bool ModelRepository::AllReady() const {
  absl::ReaderMutexLock lock(&mu_);
  if (shutting_down_) return false;
  for (const auto& [name, slot] : models_) {
    if (slot.state != "READY") return false;
  }
  return true;
}

void ModelRepository::BeginShutdown() {
  absl::MutexLock lock(&mu_);
  shutting_down_ = true;
}

void ModelRepository::Shutdown(absl::Time deadline) {
  std::vector<std::shared_ptr<ServedModel>> all;
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (auto& [name, slot] : models_) {
      for (auto& served : slot.versions) all.push_back(served);
    }
  }
  if (options_.metrics != nullptr) {
    for (const auto& served : all) {
      if (served->metrics != nullptr) served->metrics->SetState(metrics::ModelState::kUnloading);
    }
  }
  for (const auto& served : all) served->scheduler->Shutdown(deadline);
}

}  // namespace rectifier::repository
