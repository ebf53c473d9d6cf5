#include "server/common/thread_name.h"

#include <limits.h>
#include <pthread.h>
#include <unistd.h>

#include <array>

namespace rectifier::common {

void SetCurrentThreadName(std::string_view name) {
  const std::string cut(name.substr(0, kMaxThreadNameLength));
  pthread_setname_np(pthread_self(), cut.c_str());
}

std::string CurrentThreadName() {
  std::array<char, kMaxThreadNameLength + 1> name{};
  if (pthread_getname_np(pthread_self(), name.data(), name.size()) != 0) return "";
  return name.data();
}

void NameThreadAfterExecutable() {
  std::array<char, PATH_MAX> path{};
  const ssize_t n = readlink("/proc/self/exe", path.data(), path.size() - 1);
  if (n <= 0) return;
  std::string_view file(path.data(), static_cast<size_t>(n));
  // A binary replaced while it runs reads "/path/name (deleted)".
  constexpr std::string_view kDeleted = " (deleted)";
  if (file.size() > kDeleted.size() && file.substr(file.size() - kDeleted.size()) == kDeleted) {
    file.remove_suffix(kDeleted.size());
  }
  if (const size_t slash = file.rfind('/'); slash != std::string_view::npos) {
    file.remove_prefix(slash + 1);
  }
  if (!file.empty()) SetCurrentThreadName(file);
}

}  // namespace rectifier::common
