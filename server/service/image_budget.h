// ImageMemoryBudget: a server-wide bound on the memory that decoding and
// preprocessing images may hold at once. Each image is charged its
// worst-case bytes (from its header, before any pixel is decoded) and
// refused with RESOURCE_EXHAUSTED when the budget is spent.
#ifndef RECTIFIER_SERVER_SERVICE_IMAGE_BUDGET_H_
#define RECTIFIER_SERVER_SERVICE_IMAGE_BUDGET_H_

#include <atomic>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rectifier::service {

class ImageMemoryBudget {
 public:
  // Releases its bytes when destroyed. Move-only.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation() { Release(); }
    void Release();
    int64_t bytes() const { return bytes_; }

   private:
    friend class ImageMemoryBudget;
    Reservation(ImageMemoryBudget* budget, int64_t bytes) : budget_(budget), bytes_(bytes) {}
    ImageMemoryBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  // limit_bytes <= 0: unlimited (every reservation succeeds).
  explicit ImageMemoryBudget(int64_t limit_bytes) : limit_(limit_bytes) {}
  ImageMemoryBudget(const ImageMemoryBudget&) = delete;
  ImageMemoryBudget& operator=(const ImageMemoryBudget&) = delete;

  // RESOURCE_EXHAUSTED naming `what`, its bytes and the budget when they do
  // not fit now (or ever, when bytes > limit). Never blocks.
  absl::StatusOr<Reservation> Reserve(int64_t bytes, absl::string_view what);

  int64_t limit() const { return limit_; }
  int64_t in_use() const { return in_use_.load(std::memory_order_relaxed); }

 private:
  const int64_t limit_;
  std::atomic<int64_t> in_use_{0};
};

}  // namespace rectifier::service

#endif  // RECTIFIER_SERVER_SERVICE_IMAGE_BUDGET_H_
