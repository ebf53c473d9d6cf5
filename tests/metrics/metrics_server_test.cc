// Tests for the metrics registry, process collector, endpoint errors and the
// endpoint's behaviour with idle connections.
#include "server/metrics/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "server/metrics/process_collector.h"
#include "tests/security/test_certs.h"

namespace rectifier::metrics {
namespace {

TEST(ProcessCollectorTest, ParsesProcStatWithAwkwardComm) {
  // Fields: pid (comm) state ppid ... utime=14 stime=15 ... threads=20 ...
  // starttime=22 vsize=23 rss=24.
  const std::string text =
      "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
      "250 50 0 0 20 0 7 0 1000 123456789 300 18446744073709551615";
  const auto stat = ParseProcStat(text, /*ticks_per_second=*/100, /*page_size=*/4096);
  ASSERT_TRUE(stat.has_value());
  EXPECT_DOUBLE_EQ(stat->cpu_seconds, 3.0);
  EXPECT_EQ(stat->threads, 7);
  EXPECT_DOUBLE_EQ(stat->start_time_ticks, 1000);
  EXPECT_DOUBLE_EQ(stat->virtual_bytes, 123456789);
  EXPECT_DOUBLE_EQ(stat->resident_bytes, 300 * 4096.0);
  EXPECT_FALSE(ParseProcStat("1 (x) S 2 3", 100, 4096).has_value());
  EXPECT_FALSE(ParseProcStat("no parens", 100, 4096).has_value());
}

TEST(ProcessCollectorTest, CollectsThisProcess) {
  ProcessCollector collector;
  const auto families = collector.Collect();
  bool saw_rss = false;
  for (const auto& family : families) {
    if (family.name == "process_resident_memory_bytes") {
      saw_rss = true;
      ASSERT_EQ(family.metric.size(), 1u);
      EXPECT_GT(family.metric[0].gauge.value, 1 << 20);
    }
  }
  EXPECT_TRUE(saw_rss);
}

TEST(MetricsServerTest, RegistryCarriesBuildInfo) {
  MetricsServerOptions options;
  options.address = "";
  options.build_labels = {{"version", "9.9.9"}};
  auto server = MetricsServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_EQ((*server)->port(), 0);
  const std::string text = prometheus::TextSerializer().Serialize((*server)->registry().Collect());
  EXPECT_NE(text.find("rectifier_build_info{version=\"9.9.9\"} 1"), std::string::npos) << text;
}

TEST(MetricsServerTest, BadAndBusyAddressesAreErrors) {
  MetricsServerOptions options;
  options.address = "localhost";
  EXPECT_EQ(MetricsServer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.address = "127.0.0.1:0";
  auto first = MetricsServer::Create(options);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_GT((*first)->port(), 0);
  options.address = "127.0.0.1:" + std::to_string((*first)->port());
  const auto second = MetricsServer::Create(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(options.address), std::string::npos);
}

// A loopback TCP connection to `port` whose reads give up after `timeout_s`
// (so a server that never answers fails the test instead of hanging it).
class Connection {
 public:
  Connection(int port, int timeout_s) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    timeval tv{timeout_s, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Connection() { close(fd_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& data) {
    return send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
  }
  // Everything until the server closes; `closed` false when the read timed out.
  std::string ReadAll(bool* closed) {
    std::string out;
    char buffer[4096];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        *closed = n == 0;
        return out;
      }
      out.append(buffer, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Opens `count` idle connections: half send nothing, half a partial request
// line, as a stuck or malicious client would.
std::vector<std::unique_ptr<Connection>> OpenIdle(int port, int count) {
  std::vector<std::unique_ptr<Connection>> idle;
  for (int i = 0; i < count; ++i) {
    idle.push_back(std::make_unique<Connection>(port, /*timeout_s=*/5));
    EXPECT_TRUE(idle.back()->connected());
    if (i % 2 == 1) {
      EXPECT_TRUE(idle.back()->Send("GET /metr"));
    }
  }
  // Let civetweb hand them to its workers before the scrape arrives.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return idle;
}

// A scrape with a 2 s read limit: the response, or what arrived before the limit.
std::string Scrape(int port, bool* complete) {
  Connection scrape(port, /*timeout_s=*/2);
  EXPECT_TRUE(scrape.connected());
  EXPECT_TRUE(scrape.Send("GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  return scrape.ReadAll(complete);
}

// With civetweb's old settings (2 workers, 30 s request timeout) two idle
// connections held both workers and every scrape waited 30 s.
TEST(MetricsServerTest, ScrapeIsAnsweredWhileIdleConnectionsSitOpen) {
  MetricsServerOptions options;
  options.address = "127.0.0.1:0";
  auto server = MetricsServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  for (const int idle_count : {2, options.http_threads - 1}) {
    SCOPED_TRACE(idle_count);
    const auto idle = OpenIdle(port, idle_count);
    bool complete = false;
    const std::string response = Scrape(port, &complete);
    EXPECT_TRUE(complete) << "no complete answer within 2 s: " << response;
    EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
    EXPECT_NE(response.find("rectifier_build_info"), std::string::npos) << response;
  }
}

// More idle connections than workers: each is dropped after the request
// timeout, so a scrape waits at most about one timeout per http_threads of them.
TEST(MetricsServerTest, IdleConnectionsAreDroppedAfterTheRequestTimeout) {
  MetricsServerOptions options;
  options.address = "127.0.0.1:0";
  options.http_threads = 2;
  options.request_timeout_ms = 300;
  auto server = MetricsServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const auto idle = OpenIdle(port, 4);
  bool complete = false;
  const std::string response = Scrape(port, &complete);
  EXPECT_TRUE(complete) << "no complete answer within 2 s: " << response;
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0u) << response;
  for (const auto& connection : idle) {
    bool closed = false;
    connection->ReadAll(&closed);
    EXPECT_TRUE(closed) << "the server kept an idle connection open";
  }
}

// HTTPS GET through OpenSSL trusting `ca`; the whole response, or "" when
// the connection or the handshake failed.
std::string HttpsRequest(int port, const std::string& ca, const std::string& request_line) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string response;
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      SSL_connect(ssl) == 1) {
    const std::string request = request_line + "\r\nHost: 127.0.0.1\r\n\r\n";
    SSL_write(ssl, request.data(), static_cast<int>(request.size()));
    char buffer[4096];
    int n = 0;
    while ((n = SSL_read(ssl, buffer, sizeof buffer)) > 0) response.append(buffer, n);
  }
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
  return response;
}

// With TLS files /metrics is served by the HTTPS endpoint, with the same
// bounds as the plaintext one: idle connections (never starting a handshake)
// do not hold off a scrape, and are closed after the request timeout.
TEST(MetricsServerTest, HttpsEndpointAnswersRoutesAndDropsIdleConnections) {
  char pattern[] = "/tmp/rectifier-metrics-tls-XXXXXX";
  testing::TestPki pki(mkdtemp(pattern));
  ASSERT_TRUE(pki.MakeCa("ca"));
  ASSERT_TRUE(pki.MakeLeaf("server", "ca", "IP:127.0.0.1"));
  MetricsServerOptions options;
  options.address = "127.0.0.1:0";
  options.http_threads = 2;
  options.request_timeout_ms = 300;
  options.build_labels = {{"version", "9.9.9"}};
  options.tls = {pki.Cert("server"), pki.Key("server"), ""};
  auto server = MetricsServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);
  const auto idle = OpenIdle(port, 4);
  const std::string metrics = HttpsRequest(port, pki.Cert("ca"), "GET /metrics HTTP/1.1");
  EXPECT_EQ(metrics.rfind("HTTP/1.1 200 OK", 0), 0u) << metrics;
  EXPECT_NE(metrics.find("rectifier_build_info{version=\"9.9.9\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_EQ(HttpsRequest(port, pki.Cert("ca"), "GET /other HTTP/1.1").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(HttpsRequest(port, pki.Cert("ca"), "POST /metrics HTTP/1.1").rfind("HTTP/1.1 405", 0),
            0u);
  for (const auto& connection : idle) {
    // A partial plaintext request is not a TLS record: the handshake fails
    // at once and the close may arrive as a reset (data left unread).
    bool closed = false;
    errno = 0;
    connection->ReadAll(&closed);
    EXPECT_TRUE(closed || errno == ECONNRESET) << "the server kept an idle connection open";
  }
  // Plain HTTP gets no metrics.
  bool complete = false;
  EXPECT_EQ(Scrape(port, &complete).find("rectifier_build_info"), std::string::npos);
  std::system(("rm -rf '" + pki.dir() + "'").c_str());
}

}  // namespace
}  // namespace rectifier::metrics
