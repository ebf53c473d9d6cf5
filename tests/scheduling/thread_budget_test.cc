// Tests for the intra-op thread budget.
#include "server/scheduling/thread_budget.h"

#include "gtest/gtest.h"

namespace rectifier::scheduling {
namespace {

TEST(ThreadBudgetTest, SplitsCpusAcrossInstances) {
  const ThreadBudget budget = PlanThreads(8, 2);
  EXPECT_EQ(budget.instances, 2);
  EXPECT_EQ(budget.intra_op_threads, 4);
  EXPECT_FALSE(budget.oversubscribed);
}

TEST(ThreadBudgetTest, RemainderStaysIdleRatherThanOversubscribe) {
  const ThreadBudget budget = PlanThreads(5, 2);
  EXPECT_EQ(budget.intra_op_threads, 2);
  EXPECT_FALSE(budget.oversubscribed);
}

TEST(ThreadBudgetTest, NeverBelowOneThread) {
  const ThreadBudget budget = PlanThreads(2, 3);
  EXPECT_EQ(budget.intra_op_threads, 1);
  EXPECT_TRUE(budget.oversubscribed);  // 3 instances on 2 CPUs
}

TEST(ThreadBudgetTest, ExplicitThreadsAreHonouredAndFlagged) {
  const ThreadBudget budget = PlanThreads(4, 2, 4);
  EXPECT_EQ(budget.intra_op_threads, 4);
  EXPECT_TRUE(budget.oversubscribed);
  EXPECT_FALSE(PlanThreads(4, 2, 2).oversubscribed);
}

TEST(ThreadBudgetTest, NonsenseInputsAreClamped) {
  const ThreadBudget budget = PlanThreads(0, 0);
  EXPECT_EQ(budget.instances, 1);
  EXPECT_EQ(budget.intra_op_threads, 1);
  EXPECT_FALSE(budget.oversubscribed);
}

}  // namespace
}  // namespace rectifier::scheduling
