// A small blocking HTTP/1.1 client with keep-alive, for rectifier-perf's
// HTTP/REST load (-i http): one connection per client, requests one at a
// time, Content-Length bodies (what rectifier-server and Triton send).
#ifndef RECTIFIER_TOOLS_PERF_HTTP_CLIENT_H_
#define RECTIFIER_TOOLS_PERF_HTTP_CLIENT_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace rectifier::tools {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

class HttpClient {
 public:
  HttpClient(std::string host, std::string port) : host_(std::move(host)), port_(std::move(port)) {}
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads its answer within `timeout`. A kept-alive
  // connection the server closed meanwhile is reopened once. UNAVAILABLE
  // when the server cannot be reached or the connection breaks,
  // DEADLINE_EXCEEDED past `timeout`, INTERNAL for an answer that is not
  // HTTP/1.x with a Content-Length (or ending at close).
  absl::StatusOr<HttpResponse> Send(absl::string_view method, absl::string_view path,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    absl::string_view body, absl::Duration timeout);

 private:
  absl::Status Connect(absl::Duration timeout);
  absl::StatusOr<HttpResponse> SendOnce(const std::string& head, absl::string_view body,
                                        absl::Time deadline, bool* nothing_read);
  void Close();

  const std::string host_;
  const std::string port_;
  int fd_ = -1;
};

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_PERF_HTTP_CLIENT_H_
