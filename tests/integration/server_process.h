// Starts a real rectifier-server binary for integration tests, captures its
// stderr and reads the ports it bound from its start-up log line.
#ifndef RECTIFIER_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define RECTIFIER_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rectifier::testing {

// Result of a process that ran to completion.
struct ExitResult {
  int exit_code = -1;   // -1 if killed by a signal
  int term_signal = 0;  // the signal, if killed
  std::string stderr_text;
};

class ServerProcess {
 public:
  // Spawns `binary` with `args`; stdout and stderr go to a temp file.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Spawn(const std::string& binary,
                                                              const std::vector<std::string>& args);
  // Kills the process if it is still running.
  ~ServerProcess();

  // Waits (bounded) until the server logged its ports; fills grpc_port(),
  // http_port() and metrics_port(). Fails if the process exits first or the time runs out.
  absl::Status WaitUntilServing(absl::Duration timeout);
  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  int http_port() const { return http_port_; }  // 0 when HTTP is off
  pid_t pid() const { return pid_; }
  std::string grpc_target() const { return "127.0.0.1:" + std::to_string(grpc_port_); }

  void Signal(int signal_number);
  // Waits for exit; nullopt if still running after `timeout`.
  std::optional<ExitResult> WaitForExit(absl::Duration timeout);
  std::string ReadOutput() const;

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  bool exited_ = false;
  std::string output_path_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
  int http_port_ = 0;
};

// Resident set size of `pid` in bytes (VmRSS in /proc/PID/status); -1 when unreadable.
int64_t ResidentBytes(pid_t pid);

// Runs `binary args...` to completion (bounded by `timeout`, killed after).
ExitResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                     absl::Duration timeout);

// Plain HTTP/1.0 GET against 127.0.0.1:port; returns the whole response
// (status line, headers, body).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

}  // namespace rectifier::testing

#endif  // RECTIFIER_TESTS_INTEGRATION_SERVER_PROCESS_H_
