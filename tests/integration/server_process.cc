#include "tests/integration/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace rectifier::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Spawn(
    const std::string& binary, const std::vector<std::string>& args) {
  std::unique_ptr<ServerProcess> process(new ServerProcess());
  char path_template[] = "/tmp/rectifier-test-XXXXXX";
  const int fd = mkstemp(path_template);
  if (fd < 0) return absl::InternalError("mkstemp failed");
  process->output_path_ = path_template;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fd, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fd, STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, fd);
  // A test server never takes the fixed HTTP port (8000) unless asked to:
  // tests run in parallel. (With --tls-cert HTTP is off by default.)
  const auto has_flag = [&args](const char* flag) {
    return std::any_of(args.begin(), args.end(),
                       [flag](const std::string& a) { return a.rfind(flag, 0) == 0; });
  };
  std::vector<std::string> all_args = args;
  const bool is_server = absl::EndsWith(binary, "rectifier-server");
  if (is_server && !has_flag("--http-address") && !has_flag("--tls-cert")) {
    all_args.insert(all_args.end(), {"--http-address", "127.0.0.1:0"});
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(binary.c_str()));
  for (const std::string& arg : all_args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const int rc =
      posix_spawn(&process->pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("posix_spawn ", binary, " failed: ", rc));
  return process;
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!output_path_.empty()) unlink(output_path_.c_str());
}

std::string ServerProcess::ReadOutput() const {
  std::ifstream in(output_path_);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

absl::Status ServerProcess::WaitUntilServing(absl::Duration timeout) {
  static const std::regex kLine(
      "serving gRPC on port ([0-9]+).*HTTP on port ([0-9]+).*metrics on port ([0-9]+)");
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::smatch match;
    const std::string output = ReadOutput();
    if (std::regex_search(output, match, kLine)) {
      grpc_port_ = std::stoi(match[1]);
      http_port_ = std::stoi(match[2]);
      metrics_port_ = std::stoi(match[3]);
      return absl::OkStatus();
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exited_ = true;
      return absl::FailedPreconditionError(absl::StrCat("server exited early: ", ReadOutput()));
    }
    absl::SleepFor(kPollInterval);
  }
  return absl::DeadlineExceededError(absl::StrCat("server not serving in time: ", ReadOutput()));
}

void ServerProcess::Signal(int signal_number) {
  if (pid_ > 0 && !exited_) kill(pid_, signal_number);
}

std::optional<ExitResult> ServerProcess::WaitForExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exited_ = true;
      ExitResult result;
      if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
      result.stderr_text = ReadOutput();
      return result;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(kPollInterval);
  }
}

ExitResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                     absl::Duration timeout) {
  auto process = ServerProcess::Spawn(binary, args);
  if (!process.ok()) return ExitResult{-1, 0, std::string(process.status().message())};
  if (auto result = (*process)->WaitForExit(timeout)) return *result;
  (*process)->Signal(SIGKILL);
  ExitResult killed = (*process)->WaitForExit(absl::Seconds(5)).value_or(ExitResult{});
  killed.stderr_text = "(killed after timeout) " + killed.stderr_text;
  return killed;
}

int64_t ResidentBytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return -1;
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket failed");
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect to port ", port, " failed"));
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string response;
  char buffer[8192];
  ssize_t n = 0;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) response.append(buffer, n);
  close(fd);
  return response;
}

}  // namespace rectifier::testing
