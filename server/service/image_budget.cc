#include "server/service/image_budget.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rectifier::service {
namespace {

std::string Mib(int64_t bytes) { return absl::StrCat((bytes + (1 << 20) - 1) >> 20, " MiB"); }

}  // namespace

ImageMemoryBudget::Reservation& ImageMemoryBudget::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void ImageMemoryBudget::Reservation::Release() {
  if (budget_ != nullptr) budget_->in_use_.fetch_sub(bytes_, std::memory_order_relaxed);
  budget_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<ImageMemoryBudget::Reservation> ImageMemoryBudget::Reserve(int64_t bytes,
                                                                          absl::string_view what) {
  if (bytes < 0) bytes = 0;
  if (limit_ <= 0) return Reservation(this, 0);
  if (bytes > limit_) {
    return absl::ResourceExhaustedError(absl::StrCat(what, " needs up to ", Mib(bytes),
                                                     " to decode and preprocess, more than the "
                                                     "server's whole image memory budget of ",
                                                     Mib(limit_), " (--image-memory-mb)"));
  }
  int64_t used = in_use_.load(std::memory_order_relaxed);
  do {
    if (used + bytes > limit_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "image memory budget spent: ", what, " needs up to ", Mib(bytes), ", ", Mib(used), " of ",
          Mib(limit_), " are held by images being decoded; retry later"));
    }
  } while (!in_use_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return Reservation(this, bytes);
}

}  // namespace rectifier::service
