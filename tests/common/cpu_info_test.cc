// Tests for the cgroup-aware CPU count.
#include "server/common/cpu_info.h"

#include <thread>

#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

TEST(CpuInfoTest, ParsesCgroupV2CpuMax) {
  EXPECT_EQ(ParseCgroupCpuMax("200000 100000"), 2);
  EXPECT_EQ(ParseCgroupCpuMax("150000 100000"), 2);  // 1.5 CPUs round up
  EXPECT_EQ(ParseCgroupCpuMax("50000 100000"), 1);
  EXPECT_EQ(ParseCgroupCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("garbage"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax("100000 0"), std::nullopt);
  EXPECT_EQ(ParseCgroupCpuMax(""), std::nullopt);
}

TEST(CpuInfoTest, AvailableCpusIsWithinHardware) {
  const int cpus = AvailableCpus();
  EXPECT_GE(cpus, 1);
  const unsigned hardware = std::thread::hardware_concurrency();
  if (hardware > 0) {
    EXPECT_LE(cpus, static_cast<int>(hardware));
  }
}

}  // namespace
}  // namespace rectifier::common
