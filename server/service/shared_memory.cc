#include "server/service/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rectifier::service {
namespace {

constexpr size_t kMaxNameLength = 256;
constexpr size_t kMaxKeyLength = 251;  // "/" + 250: NAME_MAX for /dev/shm

bool ValidKey(const std::string& key) {
  if (key.size() < 2 || key.size() > kMaxKeyLength || key[0] != '/') return false;
  if (key == "/." || key == "/..") return false;
  for (size_t i = 1; i < key.size(); ++i) {
    const char c = key[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

// Non-negative integer parameter `key` of `params` (int64 or uint64), or
// nullopt when absent.
absl::StatusOr<std::optional<uint64_t>> UintParameter(
    const google::protobuf::Map<std::string, inference::InferParameter>& params,
    const std::string& key, const std::string& what) {
  auto it = params.find(key);
  if (it == params.end()) return std::nullopt;
  const inference::InferParameter& p = it->second;
  if (p.parameter_choice_case() == inference::InferParameter::kUint64Param) {
    return p.uint64_param();
  }
  if (p.parameter_choice_case() == inference::InferParameter::kInt64Param) {
    if (p.int64_param() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": parameter '", key, "' is negative (", p.int64_param(), ")"));
    }
    return static_cast<uint64_t>(p.int64_param());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": parameter '", key, "' must be an integer (int64_param)"));
}

}  // namespace

SharedMemoryRegion::SharedMemoryRegion(std::string name, std::string key, uint64_t offset,
                                       uint64_t byte_size, int fd)
    : name_(std::move(name)),
      key_(std::move(key)),
      offset_(offset),
      byte_size_(byte_size),
      fd_(fd) {}

SharedMemoryRegion::~SharedMemoryRegion() { ::close(fd_); }

absl::Status SharedMemoryRegion::CheckRange(uint64_t offset, uint64_t size) const {
  if (offset > byte_size_ || size > byte_size_ - offset) {
    return absl::InvalidArgumentError(absl::StrCat("bytes [", offset, ", ", offset, " + ", size,
                                                   ") leave shared memory region '", name_, "' of ",
                                                   byte_size_, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegion::Read(uint64_t offset, uint64_t size, void* dst) const {
  if (absl::Status s = CheckRange(offset, size); !s.ok()) return s;
  auto* out = static_cast<char*>(dst);
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pread(fd_, out + done, size - done, static_cast<off_t>(offset_ + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shared memory region '", name_, "': object '", key_, "' no longer holds ", size,
          " bytes at offset ", offset,
          n < 0 ? absl::StrCat(" (", std::strerror(errno), ")") : std::string(" (it was shrunk)")));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegion::Write(uint64_t offset, uint64_t size, const void* src) const {
  if (absl::Status s = CheckRange(offset, size); !s.ok()) return s;
  struct stat st {};
  // pwrite past the end would grow the object again: refuse instead.
  if (::fstat(fd_, &st) != 0 || static_cast<uint64_t>(st.st_size) < offset_ + offset + size) {
    return absl::FailedPreconditionError(
        absl::StrCat("shared memory region '", name_, "': object '", key_,
                     "' no longer holds its registered bytes (it was shrunk)"));
  }
  const auto* in = static_cast<const char*>(src);
  uint64_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pwrite(fd_, in + done, size - done, static_cast<off_t>(offset_ + offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "shared memory region '", name_, "': writing ", size, " bytes at offset ", offset,
          " failed", n < 0 ? absl::StrCat(": ", std::strerror(errno)) : std::string()));
    }
    done += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegistry::Register(const std::string& name, const std::string& given_key,
                                            uint64_t offset, uint64_t byte_size) {
  const std::string key = !given_key.empty() && given_key[0] != '/' ? "/" + given_key : given_key;
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory region name must have 1 to ", kMaxNameLength, " characters"));
  }
  if (!ValidKey(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory key '", given_key.substr(0, kMaxKeyLength),
                     "' is not '/' followed by 1 to 250 of [A-Za-z0-9._-]"));
  }
  if (byte_size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory region '", name, "': byte_size is 0"));
  }
  if (offset > std::numeric_limits<uint64_t>::max() - byte_size ||
      offset + byte_size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory region '", name, "': offset + byte_size overflows"));
  }
  absl::Status taken = absl::AlreadyExistsError(
      absl::StrCat("shared memory region '", name, "' is already registered"));
  absl::Status full = absl::ResourceExhaustedError(absl::StrCat(
      "already ", max_regions_, " shared memory regions registered; unregister one first"));
  {
    // Checked before opening anything, and again when the region goes in.
    absl::MutexLock lock(&mu_);
    if (regions_.count(name)) return taken;
    if (regions_.size() >= max_regions_) return full;
  }
  const int fd = ::shm_open(key.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("shared memory key '", key, "'"));
  auto region = std::make_shared<const SharedMemoryRegion>(name, key, offset, byte_size, fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoStatus(errno, absl::StrCat("shared memory key '", key, "'"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory key '", key, "' is not a shared memory object"));
  }
  if (static_cast<uint64_t>(st.st_size) < offset + byte_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared memory region '", name, "': bytes [", offset, ", ", offset + byte_size,
                     ") leave object '", key, "' of ", st.st_size, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  if (regions_.size() >= max_regions_) return full;
  if (!regions_.emplace(name, std::move(region)).second) return taken;
  return absl::OkStatus();
}

void SharedMemoryRegistry::Unregister(const std::string& name) {
  // Regions are released outside the lock (a close may take a moment).
  std::map<std::string, std::shared_ptr<const SharedMemoryRegion>> gone;
  absl::MutexLock lock(&mu_);
  if (name.empty()) {
    gone.swap(regions_);
  } else if (auto it = regions_.find(name); it != regions_.end()) {
    gone.emplace(it->first, std::move(it->second));
    regions_.erase(it);
  }
  // `lock` goes before `gone`: the regions close after the unlock.
}

absl::Status SharedMemoryRegistry::Status(
    const std::string& name, inference::SystemSharedMemoryStatusResponse* response) const {
  absl::MutexLock lock(&mu_);
  auto add = [response](const SharedMemoryRegion& r) {
    auto& status = (*response->mutable_regions())[r.name()];
    status.set_name(r.name());
    status.set_key(r.key());
    status.set_offset(r.offset());
    status.set_byte_size(r.byte_size());
  };
  if (name.empty()) {
    for (const auto& [n, region] : regions_) add(*region);
    return absl::OkStatus();
  }
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return absl::NotFoundError(absl::StrCat("no shared memory region '", name, "' is registered"));
  }
  add(*it->second);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> SharedMemoryRegistry::Find(
    const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no shared memory region '", name, "' is registered"));
  }
  return it->second;
}

absl::Status SharedMemoryOffError() {
  return absl::FailedPreconditionError(
      "client shared memory is off on this server; start it with --allow-client-shm");
}

absl::StatusOr<std::optional<SharedMemoryRef>> ParseSharedMemoryParameters(
    const google::protobuf::Map<std::string, inference::InferParameter>& params,
    const std::string& what) {
  auto region = params.find("shared_memory_region");
  auto size = UintParameter(params, "shared_memory_byte_size", what);
  if (!size.ok()) return size.status();
  auto offset = UintParameter(params, "shared_memory_offset", what);
  if (!offset.ok()) return offset.status();
  if (region == params.end()) {
    if (size->has_value() || offset->has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": shared_memory_byte_size or shared_memory_offset without shared_memory_region"));
    }
    return std::nullopt;
  }
  if (region->second.parameter_choice_case() != inference::InferParameter::kStringParam) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": parameter 'shared_memory_region' must be a string_param"));
  }
  if (!size->has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": shared_memory_region without shared_memory_byte_size"));
  }
  SharedMemoryRef ref;
  ref.region = region->second.string_param();
  ref.byte_size = **size;
  ref.offset = offset->value_or(0);
  return ref;
}

}  // namespace rectifier::service
