#include "tools/perf/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace rectifier::tools {
namespace {

// The most an answer's Content-Length reserves before its bytes arrive.
constexpr size_t kMaxBodyReserve = size_t{256} << 20;

// Milliseconds left until `deadline` for poll(), at least 0.
int MillisLeft(absl::Time deadline) {
  return static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
}

// Waits until `fd` is readable (or writable); false past the deadline.
bool Wait(int fd, short events, absl::Time deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    const int n = poll(&p, 1, MillisLeft(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

HttpClient::~HttpClient() { Close(); }

void HttpClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status HttpClient::Connect(absl::Duration timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  if (const int gai = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &results); gai != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve '", host_, "': ", gai_strerror(gai)));
  }
  std::string error = "no address";
  const absl::Time deadline = absl::Now() + timeout;
  for (addrinfo* ai = results; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    const int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      error = std::strerror(errno);
      close(fd);
      continue;
    }
    int so_error = 0;
    socklen_t length = sizeof(so_error);
    if (!Wait(fd, POLLOUT, deadline) ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length) != 0 || so_error != 0) {
      error = so_error != 0 ? std::strerror(so_error) : "timed out";
      close(fd);
      continue;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fd_ = fd;
  }
  freeaddrinfo(results);
  if (fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", host_, ":", port_, " (", error, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<HttpResponse> HttpClient::Send(
    absl::string_view method, absl::string_view path,
    const std::vector<std::pair<std::string, std::string>>& headers, absl::string_view body,
    absl::Duration timeout) {
  std::string head = absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: ", host_, ":", port_,
                                  "\r\nContent-Length: ", body.size(), "\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&head, name, ": ", value, "\r\n");
  head += "\r\n";
  const absl::Time deadline = absl::Now() + timeout;
  // A kept-alive connection may have been closed by the server since the
  // last answer (its keep-alive timeout): then nothing comes back, and the
  // request is sent once more on a new connection.
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused) {
      if (absl::Status s = Connect(deadline - absl::Now()); !s.ok()) return s;
    }
    bool nothing_read = false;
    absl::StatusOr<HttpResponse> response = SendOnce(head, body, deadline, &nothing_read);
    if (response.ok()) return response;
    Close();
    if (!(reused && nothing_read && absl::IsUnavailable(response.status()))) return response;
  }
  return absl::UnavailableError("the connection broke twice");
}

absl::StatusOr<HttpResponse> HttpClient::SendOnce(const std::string& head, absl::string_view body,
                                                  absl::Time deadline, bool* nothing_read) {
  *nothing_read = true;
  for (absl::string_view part : {absl::string_view(head), body}) {
    while (!part.empty()) {
      const ssize_t n = ::send(fd_, part.data(), part.size(), MSG_NOSIGNAL);
      if (n > 0) {
        part.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!Wait(fd_, POLLOUT, deadline)) {
          return absl::DeadlineExceededError("timed out sending the request");
        }
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("send failed: ", std::strerror(errno)));
    }
  }
  // The head, read until its blank line; then the body, read straight into
  // response.body, reserved at its Content-Length (a 39 MB body grown by
  // doubling would end in a 64 MiB block, a fresh mapping every time).
  std::string data;
  bool head_done = false;
  size_t content_length = 0;
  bool until_close = false;
  HttpResponse response;
  char buffer[64 << 10];
  for (;;) {
    if (head_done && !until_close && response.body.size() >= content_length) break;
    if (!Wait(fd_, POLLIN, deadline)) {
      return absl::DeadlineExceededError("timed out waiting for the answer");
    }
    const ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    if (n <= 0) {
      if (until_close && n == 0) break;
      return absl::UnavailableError(n == 0 ? "the server closed the connection"
                                           : absl::StrCat("recv failed: ", std::strerror(errno)));
    }
    *nothing_read = false;
    if (head_done) {
      response.body.append(buffer, static_cast<size_t>(n));
      continue;
    }
    data.append(buffer, static_cast<size_t>(n));
    const size_t header_end = data.find("\r\n\r\n");
    if (header_end == std::string::npos) {
      if (data.size() > (64 << 10)) return absl::InternalError("answer headers over 64 KiB");
      continue;
    }
    head_done = true;
    std::vector<absl::string_view> lines =
        absl::StrSplit(absl::string_view(data).substr(0, header_end), "\r\n");
    const std::vector<absl::string_view> status_line = absl::StrSplit(lines[0], ' ');
    if (status_line.size() < 2 || !absl::StartsWith(status_line[0], "HTTP/1.") ||
        !absl::SimpleAtoi(status_line[1], &response.status)) {
      return absl::InternalError(
          absl::StrCat("not an HTTP answer: '", lines[0].substr(0, 80), "'"));
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == absl::string_view::npos) continue;
      response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
    }
    const auto length = response.headers.find("content-length");
    if (length == response.headers.end()) {
      until_close = true;
    } else if (!absl::SimpleAtoi(length->second, &content_length)) {
      return absl::InternalError("a Content-Length that is not a number");
    } else {
      response.body.reserve(std::min(content_length, kMaxBodyReserve));
    }
    response.body.append(data, header_end + 4);
  }
  if (!until_close && response.body.size() > content_length) response.body.resize(content_length);
  const auto connection = response.headers.find("connection");
  if (until_close || (connection != response.headers.end() &&
                      absl::AsciiStrToLower(connection->second) == "close")) {
    Close();
  }
  return response;
}

}  // namespace rectifier::tools
