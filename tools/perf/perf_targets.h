// rectifier-perf's options and targets: what one run sends, prepared once
// (perf_targets.cc), and how each request is called.
#ifndef RECTIFIER_TOOLS_PERF_PERF_TARGETS_H_
#define RECTIFIER_TOOLS_PERF_PERF_TARGETS_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/client/connection.h"

namespace rectifier::tools {

// The command line of one rectifier-perf run.
struct Options {
  ConnectionFlags connection;  // --url, TLS flags, token
  std::string model;
  std::string version;
  int batch = 1;
  std::string concurrency = "1";  // "a:b:xF" or "a:b:+S" or "a"
  bool async = false;             // -a: the closed loop through asynchronous calls
  std::string request_rate;       // same syntax; open loop when set
  bool poisson = false;
  double window_s = 2;
  int stable_windows = 3;
  double tolerance = 0.1;
  int max_windows = 10;
  int64_t max_requests = 1000000;
  int max_outstanding = 1024;
  double timeout_s = 30;
  std::vector<std::string> inputs;  // NAME=FILE
  std::vector<std::string> shapes;  // NAME=d1,d2,... or NAME:d1,d2,... (without batch)
  std::string csv;                  // --csv: Rectifier's columns
  std::string pa_csv;               // -f: perf_analyzer's columns
  double percentile = 0;            // --percentile: stabilise on (and report) this latency
  std::string input_data;           // --input-data: random | zero | JSON file | directory
  bool verbose = false;             // -v: every window
  bool fail_on_error = false;
  std::string api = "kserve";       // kserve | classify | detect
  std::vector<std::string> images;  // encoded image files, rotated through
  std::string protocol = "grpc";    // grpc | http (-i, as perf_analyzer)
  // --shared-memory system: the inputs travel in one POSIX shared memory
  // object registered with the server (Triton's system shared memory
  // extension) instead of the request; outputs still come back in it.
  std::string shared_memory = "none";
};

// What the load sends: request number i's call, synchronous (the threaded
// closed loop) or asynchronous (the open loop, and --async over gRPC):
// gRPC's callback API, or the HTTP target's call threads. Prepared requests
// are used round-robin by i.
class Target {
 public:
  virtual ~Target() = default;
  virtual grpc::Status Call(int64_t i, grpc::ClientContext* context) = 0;
  virtual void CallAsync(int64_t i, grpc::ClientContext* context,
                         std::function<void(const grpc::Status&)> done) = 0;
};

// The HTTP/REST path of --model (and --model-version) under `prefix` ("/v2").
std::string ModelPath(const Options& o, const std::string& prefix);
// The Authorization header of --token (none without one).
std::vector<std::pair<std::string, std::string>> TokenHeader(const Options& o);

// "host:port" -> (host, port).
absl::StatusOr<std::pair<std::string, std::string>> SplitUrl(const std::string& url);

// The HTTP/REST target (-i http) for --api and --image.
absl::StatusOr<std::unique_ptr<Target>> BuildHttpTarget(const Options& o);

// Builds what --api and --image ask for. Checks the model exists (metadata)
// first, so a typo is reported once instead of as a table of errors.
absl::StatusOr<std::unique_ptr<Target>> BuildTarget(const Connection& connection, const Options& o);

}  // namespace rectifier::tools

#endif  // RECTIFIER_TOOLS_PERF_PERF_TARGETS_H_
