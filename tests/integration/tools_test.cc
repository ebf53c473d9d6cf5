// End-to-end tests of rectifier-client and rectifier-perf against the real
// server: exit codes, JSON output, tensor files, a short load run.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/engine/tensor.h"
#include "tests/integration/server_process.h"
#include "tests/repository/test_models.h"
#include "tools/client/tensor_file.h"
#include "tools/perf/async_loop.h"
#include "tools/perf/input_data.h"
#include "tools/perf/load_stats.h"

namespace rectifier::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class ToolsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ =
        new fs::path(fs::temp_directory_path() / ("rectifier-tools-" + std::to_string(getpid())));
    fs::remove_all(*root_);
    WriteFile(*root_ / "repo" / "scale" / "1" / "model.onnx", ScaleModelBytes(2.f));
    WriteFile(*root_ / "repo" / "scale" / "config.pbtxt", "max_batch_size: 4\n");
    WriteFile(*root_ / "repo" / "spare" / "1" / "model.onnx", ScaleModelBytes(3.f));
    auto server = ServerProcess::Spawn(
        RECTIFIER_SERVER_BINARY,
        {"--model-repository", (*root_ / "repo").string(), "--grpc-address", "127.0.0.1:0",
         "--metrics-address", "127.0.0.1:0", "--model-control-mode", "explicit", "--load-model",
         "scale", "--allow-client-shm"});
    ASSERT_TRUE(server.ok());
    server_ = server->release();
    ASSERT_TRUE(server_->WaitUntilServing(absl::Seconds(60)).ok()) << server_->ReadOutput();
  }
  static void TearDownTestSuite() {
    delete server_;
    fs::remove_all(*root_);
    delete root_;
  }

  static ExitResult Client(std::vector<std::string> args) {
    args.insert(args.begin(), {"--url", server_->grpc_target()});
    return RunToExit(RECTIFIER_CLIENT_BINARY, args, absl::Seconds(60));
  }

  // A short closed-loop sweep of rectifier-perf over gRPC, its rows in `csv`.
  static ExitResult PerfSweep(const std::string& levels, const std::string& csv,
                              const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"-m",
                                     "scale",
                                     "--url",
                                     server_->grpc_target(),
                                     "--concurrency",
                                     levels,
                                     "--window-s",
                                     "0.3",
                                     "--max-windows",
                                     "3",
                                     "--csv",
                                     csv,
                                     "--fail-on-error"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunToExit(RECTIFIER_PERF_BINARY, args, absl::Seconds(120));
  }

  // RunToExit captures stdout and stderr together; JSON is the last line.
  static json LastJsonLine(const std::string& text) {
    const size_t end = text.find_last_not_of('\n');
    const size_t start = text.rfind('\n', end);
    return json::parse(text.substr(start == std::string::npos ? 0 : start + 1,
                                   end - (start == std::string::npos ? 0 : start + 1) + 1));
  }

  static fs::path* root_;
  static ServerProcess* server_;
};

fs::path* ToolsTest::root_ = nullptr;
ServerProcess* ToolsTest::server_ = nullptr;

TEST_F(ToolsTest, ClientHealthModelsMetadata) {
  ExitResult health = Client({"health", "--json"});
  EXPECT_EQ(health.exit_code, 0) << health.stderr_text;
  EXPECT_EQ(LastJsonLine(health.stderr_text)["status"], "SERVING");

  ExitResult models = Client({"--json", "models"});
  ASSERT_EQ(models.exit_code, 0) << models.stderr_text;
  const json index = LastJsonLine(models.stderr_text);
  ASSERT_EQ(index.size(), 2u);
  EXPECT_EQ(index[0]["name"], "scale");
  EXPECT_EQ(index[0]["state"], "READY");
  EXPECT_EQ(index[1]["name"], "spare");
  EXPECT_EQ(index[1]["reason"], "not loaded");

  ExitResult metadata = Client({"metadata", "scale", "--json"});
  ASSERT_EQ(metadata.exit_code, 0) << metadata.stderr_text;
  EXPECT_EQ(LastJsonLine(metadata.stderr_text)["inputs"][0]["shape"], json::array({-1, 3, 2, 2}));

  ExitResult missing = Client({"metadata", "nope"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.stderr_text.find("NOT_FOUND"), std::string::npos) << missing.stderr_text;
  ExitResult usage = Client({"frobnicate"});
  EXPECT_EQ(usage.exit_code, 2);

  // Nothing listens on port 1: the message says what to check.
  ExitResult down =
      RunToExit(RECTIFIER_CLIENT_BINARY, {"--url", "127.0.0.1:1", "ready"}, absl::Seconds(60));
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.stderr_text.find("cannot reach rectifier-server at 127.0.0.1:1: is it running?"),
            std::string::npos)
      << down.stderr_text;
}

TEST_F(ToolsTest, ClientReadyConfigStats) {
  ExitResult server_ready = Client({"ready"});
  EXPECT_EQ(server_ready.exit_code, 0) << server_ready.stderr_text;
  EXPECT_NE(server_ready.stderr_text.find("READY"), std::string::npos);
  ExitResult model_ready = Client({"ready", "scale", "--json"});
  ASSERT_EQ(model_ready.exit_code, 0) << model_ready.stderr_text;
  EXPECT_EQ(LastJsonLine(model_ready.stderr_text)["ready"], true);
  // Known but not loaded (explicit mode): NOT_READY, exit 1.
  ExitResult spare = Client({"ready", "spare"});
  EXPECT_EQ(spare.exit_code, 1) << spare.stderr_text;
  EXPECT_NE(spare.stderr_text.find("NOT_READY"), std::string::npos) << spare.stderr_text;

  ExitResult config = Client({"config", "scale", "--json"});
  ASSERT_EQ(config.exit_code, 0) << config.stderr_text;
  const json cfg = LastJsonLine(config.stderr_text);
  EXPECT_EQ(cfg["name"], "scale");
  EXPECT_EQ(cfg["max_batch_size"], 4);
  ExitResult no_config = Client({"config", "nope"});
  EXPECT_EQ(no_config.exit_code, 1);
  EXPECT_NE(no_config.stderr_text.find("NOT_FOUND"), std::string::npos) << no_config.stderr_text;

  engine::Tensor x = engine::Tensor::Zeros(engine::DataType::kFloat32, {1, 3, 2, 2});
  const std::string in = (*root_ / "stats_x.npy").string();
  ASSERT_TRUE(tools::WriteNpy(in, x).ok());
  ExitResult before = Client({"stats", "scale", "--json"});
  ASSERT_EQ(before.exit_code, 0) << before.stderr_text;
  auto successes = [](const json& j) -> int64_t {
    const auto& s = j["model_stats"][0]["inference_stats"]["success"]["count"];
    // The JSON mapping prints 64-bit integers as strings.
    return s.is_string() ? std::stoll(s.get<std::string>()) : s.get<int64_t>();
  };
  const json b = LastJsonLine(before.stderr_text);
  const int64_t count = b["model_stats"][0]["inference_stats"].contains("success") &&
                                b["model_stats"][0]["inference_stats"]["success"].contains("count")
                            ? successes(b)
                            : 0;
  ASSERT_EQ(Client({"infer", "scale", "--input", "x=" + in}).exit_code, 0);
  ExitResult after = Client({"stats", "scale", "--json"});
  ASSERT_EQ(after.exit_code, 0) << after.stderr_text;
  const json a = LastJsonLine(after.stderr_text);
  EXPECT_EQ(a["model_stats"][0]["name"], "scale");
  EXPECT_EQ(successes(a), count + 1) << a.dump();
  ExitResult all = Client({"stats"});
  EXPECT_EQ(all.exit_code, 0) << all.stderr_text;
  EXPECT_NE(all.stderr_text.find("\"scale\""), std::string::npos) << all.stderr_text;
}

TEST_F(ToolsTest, ClientInferWithNpyAndLoadUnload) {
  engine::Tensor x = engine::Tensor::Zeros(engine::DataType::kFloat32, {2, 3, 2, 2});
  for (int i = 0; i < 24; ++i) x.data<float>()[i] = static_cast<float>(i);
  const std::string in = (*root_ / "x.npy").string();
  ASSERT_TRUE(tools::WriteNpy(in, x).ok());
  const fs::path out_dir = *root_ / "out";
  fs::create_directories(out_dir);
  ExitResult infer =
      Client({"infer", "scale", "--input", "x=" + in, "--output-dir", out_dir.string(), "--json"});
  ASSERT_EQ(infer.exit_code, 0) << infer.stderr_text;
  const json reply = LastJsonLine(infer.stderr_text);
  EXPECT_EQ(reply["outputs"][0]["shape"], json::array({2, 3, 2, 2}));
  auto y = tools::ReadTensorFile((out_dir / "y.npy").string());
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->shape, x.shape);
  for (int i = 0; i < 24; ++i) EXPECT_FLOAT_EQ(y->data<float>()[i], 2.f * i);

  ExitResult bad = Client({"infer", "scale", "--input", "wrong=" + in});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.stderr_text.find("INVALID_ARGUMENT"), std::string::npos) << bad.stderr_text;

  EXPECT_EQ(Client({"load", "spare"}).exit_code, 0);
  EXPECT_EQ(Client({"unload", "spare"}).exit_code, 0);
  EXPECT_EQ(Client({"unload", "spare"}).exit_code, 1);
}

// The header and the first two rows of a rectifier-perf CSV.
std::tuple<std::string, std::string, std::string> FirstCsvLines(const std::string& path) {
  std::ifstream rows(path);
  std::string header, first, second;
  std::getline(rows, header);
  std::getline(rows, first);
  std::getline(rows, second);
  return {header, first, second};
}

TEST_F(ToolsTest, PerfShortClosedAndOpenLoopRuns) {
  const std::string csv = (*root_ / "perf.csv").string();
  ExitResult closed = PerfSweep("1:2:x2", csv);
  EXPECT_EQ(closed.exit_code, 0) << closed.stderr_text;
  const auto [header, first, second] = FirstCsvLines(csv);
  EXPECT_EQ(header.rfind("mode,level,batch,throughput", 0), 0u) << header;
  EXPECT_EQ(first.rfind("concurrency,1,1,", 0), 0u) << first;
  EXPECT_EQ(second.rfind("concurrency,2,1,", 0), 0u) << second;

  ExitResult open =
      RunToExit(RECTIFIER_PERF_BINARY,
                {"-m", "scale", "--url", server_->grpc_target(), "--request-rate", "200",
                 "--poisson", "--window-s", "0.3", "--max-windows", "3", "--fail-on-error"},
                absl::Seconds(120));
  EXPECT_EQ(open.exit_code, 0) << open.stderr_text;
  EXPECT_NE(open.stderr_text.find("rate"), std::string::npos);

  // --max-requests ends the level long before the 5 s window: throughput is
  // 40 requests over the time they took, not over the window (8/s).
  const std::string capped_csv = (*root_ / "capped.csv").string();
  ExitResult capped =
      RunToExit(RECTIFIER_PERF_BINARY,
                {"-m", "scale", "--url", server_->grpc_target(), "--concurrency", "2", "--window-s",
                 "5", "--max-requests", "40", "--csv", capped_csv, "--fail-on-error"},
                absl::Seconds(120));
  EXPECT_EQ(capped.exit_code, 0) << capped.stderr_text;
  std::ifstream capped_rows(capped_csv);
  std::string capped_header, capped_row;
  std::getline(capped_rows, capped_header);
  std::getline(capped_rows, capped_row);
  const std::vector<std::string> fields = absl::StrSplit(capped_row, ',');
  ASSERT_GT(fields.size(), 3u) << capped_row;
  EXPECT_GT(std::stod(fields[3]), 40.0) << capped_header << "\n" << capped_row;

  // --input-data: real values from perf_analyzer's JSON (two batch items per
  // request, rotating), and zeros; a bad file is a usage error naming it.
  const std::string data = (*root_ / "input-data.json").string();
  {
    std::ofstream out(data);
    out << R"({"data": [{"x": [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[9, 10], [11, 12]]]},)"
        << R"( {"x": {"content": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "shape": [3, 2, 2]}}]})";
  }
  for (const std::string& source : {data, std::string("zero")}) {
    ExitResult real =
        RunToExit(RECTIFIER_PERF_BINARY,
                  {"-m", "scale", "--url", server_->grpc_target(), "-b", "2", "--input-data",
                   source, "--window-s", "0.3", "--max-windows", "2", "--fail-on-error"},
                  absl::Seconds(120));
    EXPECT_EQ(real.exit_code, 0) << source << ": " << real.stderr_text;
  }
  { std::ofstream(*root_ / "short.json") << R"({"data": [{"x": [1, 2]}]})"; }
  ExitResult short_data = RunToExit(RECTIFIER_PERF_BINARY,
                                    {"-m", "scale", "--url", server_->grpc_target(), "--input-data",
                                     (*root_ / "short.json").string()},
                                    absl::Seconds(60));
  EXPECT_EQ(short_data.exit_code, 2);
  EXPECT_NE(short_data.stderr_text.find("data[0] input 'x': 2 values for shape [3,2,2] (12)"),
            std::string::npos)
      << short_data.stderr_text;

  ExitResult unknown = RunToExit(
      RECTIFIER_PERF_BINARY, {"-m", "nope", "--url", server_->grpc_target()}, absl::Seconds(60));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.stderr_text.find("nope"), std::string::npos);
}

// --async keeps the concurrency in flight through gRPC's callback API
// (tools/perf/async_loop.h, unit-tested below; -i http runs the threaded
// loop): every level is measured, and the server answers exactly the
// requests sent, none lost or sent twice.
TEST_F(ToolsTest, PerfAsyncClosedLoopSendsEachRequestOnce) {
  const auto successes = [](const ExitResult& stats) -> int64_t {
    const json j = LastJsonLine(stats.stderr_text);
    const json& s = j["model_stats"][0]["inference_stats"];
    if (!s.contains("success") || !s["success"].contains("count")) return 0;
    const json& count = s["success"]["count"];
    return count.is_string() ? std::stoll(count.get<std::string>()) : count.get<int64_t>();
  };
  const std::string csv = (*root_ / "perf-async.csv").string();
  ExitResult sweep = PerfSweep("1:4:x4", csv, {"--async"});
  EXPECT_EQ(sweep.exit_code, 0) << sweep.stderr_text;
  const auto [header, first, second] = FirstCsvLines(csv);
  EXPECT_EQ(first.rfind("concurrency,1,1,", 0), 0u) << first;
  EXPECT_EQ(second.rfind("concurrency,4,1,", 0), 0u) << second;
  const std::vector<std::string> fields = absl::StrSplit(second, ',');
  ASSERT_GT(fields.size(), 3u) << second;
  EXPECT_GT(std::stod(fields[3]), 0.0) << header << "\n" << second;

  for (const std::vector<std::string>& protocol :
       {std::vector<std::string>{"--url", server_->grpc_target()},
        std::vector<std::string>{"-i", "http", "-u",
                                 "127.0.0.1:" + std::to_string(server_->http_port())}}) {
    ExitResult before = Client({"stats", "scale", "--json"});
    ASSERT_EQ(before.exit_code, 0) << before.stderr_text;
    std::vector<std::string> args = {"-m", "scale",          "--async", "--concurrency",
                                     "8",  "--max-requests", "203",     "--window-s",
                                     "30", "--fail-on-error"};
    args.insert(args.end(), protocol.begin(), protocol.end());
    ExitResult capped = RunToExit(RECTIFIER_PERF_BINARY, args, absl::Seconds(120));
    EXPECT_EQ(capped.exit_code, 0) << protocol[1] << ": " << capped.stderr_text;
    ExitResult after = Client({"stats", "scale", "--json"});
    ASSERT_EQ(after.exit_code, 0) << after.stderr_text;
    // 203 measured, and the one request rectifier-perf sends before measuring.
    EXPECT_EQ(successes(after) - successes(before), 203 + 1)
        << protocol[1] << ": " << capped.stderr_text;
  }
}

// --shared-memory system: the inputs go through a POSIX shared memory
// region registered with the server, which the run removes when it ends.
TEST_F(ToolsTest, PerfPassesInputsThroughSharedMemory) {
  ExitResult run = RunToExit(
      RECTIFIER_PERF_BINARY,
      {"-m", "scale", "--url", server_->grpc_target(), "-b", "2", "--concurrency", "2",
       "--shared-memory", "system", "--window-s", "0.3", "--max-windows", "2", "--fail-on-error"},
      absl::Seconds(120));
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  for (const auto& entry : fs::directory_iterator("/dev/shm")) {
    EXPECT_EQ(entry.path().filename().string().rfind("rectifier_perf_", 0), std::string::npos)
        << entry.path() << " left behind";
  }
  ExitResult http =
      RunToExit(RECTIFIER_PERF_BINARY, {"-m", "scale", "-i", "http", "--shared-memory", "system"},
                absl::Seconds(60));
  EXPECT_EQ(http.exit_code, 2);
  EXPECT_NE(http.stderr_text.find("--shared-memory needs -i grpc"), std::string::npos)
      << http.stderr_text;
}

// -i http drives the HTTP/REST endpoint (binary tensor data) with
// perf_analyzer's spellings; the answers are counted by the server.
TEST_F(ToolsTest, PerfDrivesTheHttpEndpoint) {
  ASSERT_GT(server_->http_port(), 0);
  const std::string url = "127.0.0.1:" + std::to_string(server_->http_port());
  const std::string csv = (*root_ / "perf-http.csv").string();
  const std::string pa_csv = (*root_ / "perf-http-pa.csv").string();
  ExitResult closed = RunToExit(RECTIFIER_PERF_BINARY,
                                {"-i",
                                 "http",
                                 "-u",
                                 url,
                                 "-m",
                                 "scale",
                                 "-b",
                                 "2",
                                 "--concurrency-range",
                                 "1:2",
                                 "-p",
                                 "300",
                                 "--max-windows",
                                 "3",
                                 "--csv",
                                 csv,
                                 "-f",
                                 pa_csv,
                                 "--percentile",
                                 "75",
                                 "-v",
                                 "--fail-on-error"},
                                absl::Seconds(120));
  EXPECT_EQ(closed.exit_code, 0) << closed.stderr_text;
  // -v prints each window with the asked percentile.
  EXPECT_NE(closed.stderr_text.find("window 1: "), std::string::npos) << closed.stderr_text;
  EXPECT_NE(closed.stderr_text.find(" p75 "), std::string::npos) << closed.stderr_text;
  // -f: perf_analyzer's columns (microseconds), its extra percentile column
  // last, one row per level.
  {
    const auto [pa_header, pa_first, pa_second] = FirstCsvLines(pa_csv);
    EXPECT_EQ(pa_header,
              "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,"
              "Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,"
              "p50 latency,p90 latency,p95 latency,p99 latency,p75 latency");
    for (const std::string& row : {pa_first, pa_second}) {
      const std::vector<std::string> cells = absl::StrSplit(row, ',');
      ASSERT_EQ(cells.size(), 14u) << row;
      EXPECT_TRUE(cells[0] == "1" || cells[0] == "2") << row;
      EXPECT_GT(std::stod(cells[1]), 0.0) << row;                   // inferences/s
      EXPECT_GT(std::stod(cells[6]), 0.0) << row;                   // the server's compute, us
      EXPECT_GE(std::stod(cells[12]), std::stod(cells[9])) << row;  // p99 >= p50
    }
  }
  const auto [header, first, second] = FirstCsvLines(csv);
  EXPECT_EQ(first.rfind("concurrency,1,2,", 0), 0u) << first;
  EXPECT_EQ(second.rfind("concurrency,2,2,", 0), 0u) << second;
  EXPECT_NE(first.find(",kserve-http"), std::string::npos) << first;
  // Server-side statistics were read over HTTP too (queue and compute columns).
  const std::vector<std::string> fields = absl::StrSplit(first, ',');
  ASSERT_GT(fields.size(), 13u) << first;
  EXPECT_GE(std::stod(fields[13]), 0.0) << header << "\n" << first;

  ExitResult open = RunToExit(RECTIFIER_PERF_BINARY,
                              {"-i", "http", "-u", url, "-m", "scale", "--request-rate", "100",
                               "--window-s", "0.3", "--max-windows", "3", "--fail-on-error"},
                              absl::Seconds(120));
  EXPECT_EQ(open.exit_code, 0) << open.stderr_text;

  ExitResult unknown =
      RunToExit(RECTIFIER_PERF_BINARY, {"-i", "http", "-u", url, "-m", "nope"}, absl::Seconds(60));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.stderr_text.find("unknown model 'nope'"), std::string::npos)
      << unknown.stderr_text;
}

// A target for the asynchronous loop: calls complete on its own thread,
// oldest first, each after `delay`, once `gate` calls are in flight (so the
// loop's concurrency is observed, not guessed); or, with `fail_at_once`,
// each call fails inside CallAsync, on the thread that started it.
class FakeAsyncTarget final : public tools::Target {
 public:
  FakeAsyncTarget(int gate, absl::Duration delay, bool fail_at_once)
      : gate_(gate), delay_(delay), fail_at_once_(fail_at_once) {
    if (!fail_at_once_) worker_ = std::thread([this] { Complete(); });
  }
  ~FakeAsyncTarget() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    if (worker_.joinable()) worker_.join();
  }

  grpc::Status Call(int64_t, grpc::ClientContext*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "async only");
  }
  void CallAsync(int64_t i, grpc::ClientContext*,
                 std::function<void(const grpc::Status&)> done) override {
    static thread_local int nesting = 0;
    ++nesting;
    {
      absl::MutexLock lock(&mu_);
      started_.push_back(i);
      max_nesting_ = std::max(max_nesting_, nesting);
    }
    if (fail_at_once_) {
      done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
    } else {
      absl::MutexLock lock(&mu_);
      pending_.push_back(std::move(done));
      peak_ = std::max(peak_, static_cast<int>(pending_.size()));
    }
    --nesting;
  }

  std::vector<int64_t> started() {
    absl::MutexLock lock(&mu_);
    return started_;
  }
  int peak() {
    absl::MutexLock lock(&mu_);
    return peak_;
  }
  int max_nesting() {
    absl::MutexLock lock(&mu_);
    return max_nesting_;
  }

 private:
  void Complete() {
    bool opened = false;
    for (;;) {
      std::function<void(const grpc::Status&)> done;
      {
        absl::MutexLock lock(&mu_);
        const auto ready = [this, &opened]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || static_cast<int>(pending_.size()) >= (opened ? 1 : gate_);
        };
        mu_.Await(absl::Condition(&ready));
        // Calls still pending are dropped, never answered: their loop has
        // given up on them and gone.
        if (stopping_) return;
        opened = true;
        done = std::move(pending_.front());
        pending_.erase(pending_.begin());
      }
      absl::SleepFor(delay_);
      done(grpc::Status::OK);
    }
  }

  const int gate_;
  const absl::Duration delay_;
  const bool fail_at_once_;
  absl::Mutex mu_;
  std::vector<std::function<void(const grpc::Status&)>> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> started_ ABSL_GUARDED_BY(mu_);
  int peak_ ABSL_GUARDED_BY(mu_) = 0;
  int max_nesting_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

// Waits (at most 60 s) until `count` reaches `n`.
void WaitForCount(const std::atomic<int64_t>& count, int64_t n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (count.load() < n && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
}

TEST(AsyncClosedLoopTest, KeepsTheConcurrencyInFlightAndStartsEachCallOnce) {
  FakeAsyncTarget target(/*gate=*/6, absl::Microseconds(200), /*fail_at_once=*/false);
  tools::AsyncLoopOptions options;
  options.concurrency = 6;
  options.max_requests = 300;
  std::atomic<int64_t> sent{0}, ok{0}, failed{0};
  const absl::Status run = tools::RunAsyncClosedLoop(
      target, options, sent,
      [&](const grpc::Status& status, double latency_ms) {
        EXPECT_GE(latency_ms, 0.0);
        (status.ok() ? ok : failed).fetch_add(1);
      },
      [&] { WaitForCount(ok, 300); });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_EQ(ok.load(), 300);
  EXPECT_EQ(failed.load(), 0);
  // Six in flight, never more; calls 0..299, each once.
  EXPECT_EQ(target.peak(), 6);
  std::vector<int64_t> started = target.started();
  std::sort(started.begin(), started.end());
  std::vector<int64_t> expected(300);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(started, expected);
}

TEST(AsyncClosedLoopTest, StopsWhenTheMeasurementEndsAndWaitsForTheCallsInFlight) {
  FakeAsyncTarget target(/*gate=*/4, absl::Milliseconds(2), /*fail_at_once=*/false);
  tools::AsyncLoopOptions options;
  options.concurrency = 4;
  options.max_requests = 1000000;
  std::atomic<int64_t> sent{0}, answered{0};
  const absl::Status run = tools::RunAsyncClosedLoop(
      target, options, sent, [&](const grpc::Status&, double) { answered.fetch_add(1); },
      [&] { WaitForCount(answered, 20); });
  ASSERT_TRUE(run.ok()) << run;
  // Every started call was answered before the loop returned.
  EXPECT_EQ(static_cast<int64_t>(target.started().size()), answered.load());
  EXPECT_LT(answered.load(), 1000);
}

// Calls that fail inside CallAsync complete on the starting thread: the
// loop starts their successors there only a few levels deep, then on its
// helper thread, so 100 000 of them in a row neither overflow the stack
// nor stall.
TEST(AsyncClosedLoopTest, CallsThatFailAtOnceDoNotNestWithoutBound) {
  FakeAsyncTarget target(/*gate=*/1, absl::ZeroDuration(), /*fail_at_once=*/true);
  tools::AsyncLoopOptions options;
  options.concurrency = 2;
  options.max_requests = 100000;
  std::atomic<int64_t> sent{0}, failed{0};
  const absl::Status run = tools::RunAsyncClosedLoop(
      target, options, sent,
      [&](const grpc::Status& status, double) {
        EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
        failed.fetch_add(1);
      },
      [&] { WaitForCount(failed, 100000); });
  ASSERT_TRUE(run.ok()) << run;
  EXPECT_EQ(failed.load(), 100000);
  EXPECT_GT(target.max_nesting(), 1);   // they did complete inline
  EXPECT_LE(target.max_nesting(), 17);  // and the loop bounded it
}

// A call that never completes: the loop says so after the drain timeout
// instead of waiting for ever.
TEST(AsyncClosedLoopTest, ACallThatNeverCompletesIsReportedAfterTheDrainTimeout) {
  FakeAsyncTarget target(/*gate=*/1000, absl::ZeroDuration(), /*fail_at_once=*/false);
  tools::AsyncLoopOptions options;
  options.concurrency = 3;
  options.max_requests = 100;
  options.drain_timeout = absl::Milliseconds(200);
  std::atomic<int64_t> sent{0};
  const absl::Status run = tools::RunAsyncClosedLoop(
      target, options, sent, [](const grpc::Status&, double) {}, [] {});
  EXPECT_EQ(run.code(), absl::StatusCode::kDeadlineExceeded) << run;
  EXPECT_NE(run.message().find("3 call(s) still outstanding"), std::string::npos) << run;
}

TEST(LoadStatsTest, UnstableReasonSaysWhatVaried) {
  const auto window = [](double throughput, double p99) {
    tools::WindowSummary w;
    w.throughput = throughput;
    w.p99_ms = p99;
    return w;
  };
  std::vector<tools::WindowSummary> windows = {window(100, 10), window(101, 10.5)};
  EXPECT_EQ(tools::UnstableReason(windows, 3, 0.1), "only 2 window(s) measured, 3 must agree");
  windows.push_back(window(99, 9.8));
  EXPECT_EQ(tools::UnstableReason(windows, 3, 0.1), "");
  EXPECT_TRUE(tools::IsStable(windows, 3, 0.1));
  windows.push_back(window(150, 30));
  const std::string reason = tools::UnstableReason(windows, 3, 0.1);
  EXPECT_NE(reason.find("throughput varied 28%"), std::string::npos) << reason;
  EXPECT_NE(reason.find("p99 varied"), std::string::npos) << reason;
  EXPECT_NE(reason.find("(tolerance 10%)"), std::string::npos) << reason;
  EXPECT_FALSE(tools::IsStable(windows, 3, 0.1));
  EXPECT_EQ(tools::UnstableReason({window(0, 0), window(0, 0), window(0, 0)}, 3, 0.1),
            "no request answered");
  // --percentile 95: that latency decides, not p99.
  std::vector<tools::WindowSummary> p95 = {window(100, 10), window(100, 50), window(100, 90)};
  for (auto& w : p95) w.percentile_ms = 5;
  EXPECT_TRUE(tools::IsStable(p95, 3, 0.1, 95));
  p95[2].percentile_ms = 9;
  EXPECT_NE(tools::UnstableReason(p95, 3, 0.1, 95).find("p95 varied"), std::string::npos);
}

// A TakeWindow asked for another percentile computes it (nearest rank).
TEST(LoadStatsTest, WindowReportsTheAskedPercentile) {
  tools::LoadStats stats;
  for (int i = 1; i <= 100; ++i) stats.RecordOk(i);
  const tools::WindowSummary w = stats.TakeWindow(1.0, 75);
  EXPECT_EQ(w.ok, 100);
  EXPECT_DOUBLE_EQ(w.percentile_ms, 75);
  EXPECT_DOUBLE_EQ(w.p99_ms, 99);
}

// perf_analyzer's --input-data JSON: flat or nested values, content/shape,
// b64; errors name the entry, the input and the problem.
TEST(InputDataTest, ReadsPerfAnalyzersJsonAndNamesErrors) {
  const fs::path dir =
      fs::temp_directory_path() / ("rectifier-input-data-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  const std::vector<tools::InputDataSpec> specs = {{"x", "FP32", {2, 2}}, {"ids", "INT64", {-1}}};
  // b64 of the int64 values 1 and 2 (little-endian).
  const std::string good = write("good.json", R"({"data": [
      {"x": [[1, 2], [3, 4]], "ids": {"content": [7, 8, 9], "shape": [3]}},
      {"x": [5, 6, 7, 8], "ids": {"b64": "AQAAAAAAAAACAAAAAAAAAA==", "shape": [2]}}]})");
  auto entries = tools::LoadInputData(good, specs);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  const tools::ItemData& x0 = (*entries)[0].at("x");
  EXPECT_EQ(x0.shape, (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(x0.bytes.size(), 16u);
  float f[4];
  std::memcpy(f, x0.bytes.data(), 16);
  EXPECT_EQ(f[3], 4.0f);
  EXPECT_EQ((*entries)[0].at("ids").shape, (std::vector<int64_t>{3}));
  const tools::ItemData& ids1 = (*entries)[1].at("ids");
  ASSERT_EQ(ids1.bytes.size(), 16u);
  int64_t second = 0;
  std::memcpy(&second, ids1.bytes.data() + 8, 8);
  EXPECT_EQ(second, 2);

  struct Case {
    std::string json;
    std::string error;
  };
  const std::vector<Case> cases = {
      {R"({"data": []})", "expected JSON {\"data\""},
      {R"({"data": [{"x": [1, 2, 3, 4]}]})", "data[0] has no input 'ids'"},
      {R"({"data": [{"x": [1, 2, 3], "ids": {"content": [1], "shape": [1]}}]})",
       "data[0] input 'x': 3 values for shape [2,2] (4)"},
      {R"({"data": [{"x": [1, 2, 3, 4], "ids": [1]}]})",
       "data[0] input 'ids': the input has a dynamic dimension [-1]"},
      {R"({"data": [{"x": [1, 2, 3, 4], "ids": {"content": [1.5], "shape": [1]}}]})",
       "value 1.5 does not fit the datatype"},
      {R"({"data": [{"x": [1, 2, "a", 4], "ids": {"content": [1], "shape": [1]}}]})",
       "holds string, not a number"},
      {"not json", "expected JSON"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto bad =
        tools::LoadInputData(write("bad" + std::to_string(i) + ".json", cases[i].json), specs);
    ASSERT_FALSE(bad.ok()) << cases[i].json;
    EXPECT_NE(bad.status().message().find(cases[i].error), std::string::npos)
        << bad.status().message();
  }
  fs::remove_all(dir);
}

TEST(TensorFileTest, NpyRoundTripsAndBadFilesAreErrors) {
  const fs::path dir = fs::temp_directory_path();
  engine::Tensor t = engine::Tensor::Zeros(engine::DataType::kInt64, {5});
  for (int i = 0; i < 5; ++i) t.data<int64_t>()[i] = -i * 1000000000LL;
  const std::string path = (dir / ("rt-" + std::to_string(getpid()) + ".npy")).string();
  ASSERT_TRUE(tools::WriteNpy(path, t).ok());
  auto back = tools::ReadTensorFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->type, engine::DataType::kInt64);
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_EQ(back->bytes, t.bytes);
  WriteFile(path, "\x93NUMPY garbage");
  EXPECT_EQ(tools::ReadTensorFile(path).status().code(), absl::StatusCode::kInvalidArgument);
  fs::remove(path);
  EXPECT_EQ(tools::ReadTensorFile("/nonexistent.npy").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tools::ReadTensorFile("/tmp/x.txt").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rectifier::testing
