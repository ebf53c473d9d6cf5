// Tests for the metrics registry, process collector and endpoint errors.
#include "server/metrics/metrics_server.h"

#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "server/metrics/process_collector.h"

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

}  // namespace
}  // namespace rectifier::metrics
