// Triton's system shared memory extension: a client on the same host puts
// tensors in a POSIX shared memory object (shm_open), registers a region of
// it under a name, and names that region in an input's or a requested
// output's parameters instead of sending the bytes over gRPC.
//
// Regions are read and written through the object's file descriptor
// (pread/pwrite), never mapped: a client that shrinks or removes its object
// after registering it gets an error on its next request, where a mapping
// would have taken the server down with SIGBUS.
#ifndef RECTIFIER_SERVER_SERVICE_SHARED_MEMORY_H_
#define RECTIFIER_SERVER_SERVICE_SHARED_MEMORY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpc_service.pb.h"

namespace rectifier::service {

// One registered region: bytes [offset, offset + byte_size) of the shared
// memory object `key`. Immutable; the descriptor closes with the last
// reference (a request using the region keeps it past an Unregister).
class SharedMemoryRegion {
 public:
  SharedMemoryRegion(std::string name, std::string key, uint64_t offset, uint64_t byte_size,
                     int fd);
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  const std::string& name() const { return name_; }
  const std::string& key() const { return key_; }
  uint64_t offset() const { return offset_; }
  uint64_t byte_size() const { return byte_size_; }

  // Copies `size` bytes at `offset` (within the region) to `dst`, or `src`
  // there. INVALID_ARGUMENT when the range leaves the region;
  // FAILED_PRECONDITION when the object no longer holds it (the client
  // shrank it).
  absl::Status Read(uint64_t offset, uint64_t size, void* dst) const;
  absl::Status Write(uint64_t offset, uint64_t size, const void* src) const;
  // INVALID_ARGUMENT naming the region when [offset, offset + size) leaves it.
  absl::Status CheckRange(uint64_t offset, uint64_t size) const;

 private:
  const std::string name_, key_;
  const uint64_t offset_, byte_size_;
  const int fd_;
};

// The registered regions of a server. Thread-safe.
class SharedMemoryRegistry {
 public:
  static constexpr size_t kDefaultMaxRegions = 64;
  static constexpr uint64_t kDefaultMaxInputBytes = uint64_t{256} << 20;
  // `max_input_bytes` bounds what one input may take from a region (the
  // server passes its message size limit).
  explicit SharedMemoryRegistry(size_t max_regions = kDefaultMaxRegions,
                                uint64_t max_input_bytes = kDefaultMaxInputBytes)
      : max_regions_(max_regions), max_input_bytes_(max_input_bytes) {}
  uint64_t max_input_bytes() const { return max_input_bytes_; }

  // INVALID_ARGUMENT: an empty or over-long name, a key that is not 1-250 of
  // [A-Za-z0-9._-] after an optional leading "/" (shm_open's name; "/" is
  // added when missing, as Python's shared_memory names come without it),
  // an object that is not a regular shared memory file, a zero size, a range
  // past the object's end. ALREADY_EXISTS: the name is taken. NOT_FOUND / PERMISSION_DENIED:
  // shm_open's answer for the key. RESOURCE_EXHAUSTED: max_regions reached.
  absl::Status Register(const std::string& name, const std::string& key, uint64_t offset,
                        uint64_t byte_size);
  // Removes `name` (every region when empty); unknown names are a no-op, as
  // in Triton.
  void Unregister(const std::string& name);
  // Status of `name` (every region when empty). NOT_FOUND for an unknown name.
  absl::Status Status(const std::string& name,
                      inference::SystemSharedMemoryStatusResponse* response) const;
  // INVALID_ARGUMENT naming the region when it is not registered.
  absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> Find(const std::string& name) const;

 private:
  const size_t max_regions_;
  const uint64_t max_input_bytes_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const SharedMemoryRegion>> regions_ ABSL_GUARDED_BY(mu_);
};

// FAILED_PRECONDITION for the shared memory calls of a server started
// without --allow-client-shm.
absl::Status SharedMemoryOffError();

// A tensor's shared memory parameters ("shared_memory_region",
// "shared_memory_byte_size", optional "shared_memory_offset").
struct SharedMemoryRef {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// nullopt when `params` names no region. INVALID_ARGUMENT naming `what`
// (e.g. "input 'x'") for a region without a byte size or the reverse, a
// parameter of the wrong type, or a negative number.
absl::StatusOr<std::optional<SharedMemoryRef>> ParseSharedMemoryParameters(
    const google::protobuf::Map<std::string, inference::InferParameter>& params,
    const std::string& what);

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_SHARED_MEMORY_H_
