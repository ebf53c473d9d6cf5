// Activation memory planner: buffers share arena bytes exactly when their
// lifetimes do not overlap.
#include "gtest/gtest.h"
#include "server/engine/lower/plan.h"

namespace rectifier::engine {
namespace {

int AddValue(CompiledPlan& plan, size_t bytes, int alias_of = -1) {
  PlanValue v;
  v.bytes = bytes;
  v.alias_of = alias_of;
  plan.values.push_back(v);
  return static_cast<int>(plan.values.size()) - 1;
}

void AddStep(CompiledPlan& plan, std::vector<int> reads, std::vector<int> writes) {
  PlanStep s;
  s.reads = std::move(reads);
  s.writes = std::move(writes);
  plan.steps.push_back(std::move(s));
}

bool Overlap(const PlanValue& a, const PlanValue& b) {
  return a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
}

TEST(MemoryPlannerTest, ChainReusesDeadBuffers) {
  // a -> b -> c -> d: a dies when c is written, so c can take a's bytes.
  CompiledPlan plan;
  const int a = AddValue(plan, 1000), b = AddValue(plan, 1000), c = AddValue(plan, 1000),
            d = AddValue(plan, 1000);
  AddStep(plan, {}, {a});
  AddStep(plan, {a}, {b});
  AddStep(plan, {b}, {c});
  AddStep(plan, {c}, {d});
  PlanMemory(plan);
  EXPECT_FALSE(Overlap(plan.values[a], plan.values[b]));
  EXPECT_FALSE(Overlap(plan.values[b], plan.values[c]));
  EXPECT_FALSE(Overlap(plan.values[c], plan.values[d]));
  EXPECT_EQ(plan.values[a].offset, plan.values[c].offset);
  EXPECT_EQ(plan.arena_bytes, 2 * 1024u);  // two 64-byte-rounded buffers
}

TEST(MemoryPlannerTest, LongLivedValuesAndAliasesKeepTheirBytes) {
  // s (a skip connection) lives across the whole chain; r aliases t and is
  // read last, so t must stay alive until then.
  CompiledPlan plan;
  const int s = AddValue(plan, 512), t = AddValue(plan, 256), u = AddValue(plan, 256),
            r = AddValue(plan, 256, t), w = AddValue(plan, 256);
  AddStep(plan, {}, {s});
  AddStep(plan, {s}, {t});
  AddStep(plan, {t}, {u});
  AddStep(plan, {u}, {w});
  AddStep(plan, {r, s, w}, {});
  PlanMemory(plan);
  for (int x : {t, u, w}) EXPECT_FALSE(Overlap(plan.values[s], plan.values[x])) << x;
  EXPECT_FALSE(Overlap(plan.values[t], plan.values[u]));
  EXPECT_FALSE(Overlap(plan.values[t], plan.values[w]));
  EXPECT_FALSE(Overlap(plan.values[u], plan.values[w]));
  EXPECT_EQ(plan.Root(r), t);
}

}  // namespace
}  // namespace rectifier::engine
