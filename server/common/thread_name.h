// Names that `top -H`, `ps -L`, `perf` and /proc show for the server's
// threads. Linux keeps 15 bytes of a thread's name; a thread starts with
// the name of the thread that created it, so OpenMP workers spawned from a
// model's worker thread carry that model's name too.
#ifndef RECTIFIER_SERVER_COMMON_THREAD_NAME_H_
#define RECTIFIER_SERVER_COMMON_THREAD_NAME_H_

#include <string>
#include <string_view>

namespace rectifier::common {

// The longest name the kernel keeps (TASK_COMM_LEN less the terminator).
inline constexpr size_t kMaxThreadNameLength = 15;

// Sets the calling thread's name to `name`, cut to kMaxThreadNameLength
// bytes. Best effort: a failure leaves the old name.
void SetCurrentThreadName(std::string_view name);

// The calling thread's name ("" if it cannot be read).
std::string CurrentThreadName();

// Names the calling thread after the executable's file (what the kernel
// does at exec), for a process that re-executed itself through
// /proc/self/exe and would otherwise be called "exe" by ps, top and pkill.
// Call in main before any thread starts, so that every thread inherits it.
void NameThreadAfterExecutable();

}  // namespace rectifier::common

#endif  // RECTIFIER_SERVER_COMMON_THREAD_NAME_H_
