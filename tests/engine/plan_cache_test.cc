// The per-batch plan cache: compiles run outside the model's lock, one
// compile per new batch size however many callers ask at once, and plans
// of different batch sizes share their reordered weights.
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

// A chain of `layers` 3x3 convolutions with their own weights: compiling a
// plan for a new batch size takes a noticeable time.
std::shared_ptr<const CompiledModelImpl> ConvChainModel(int layers, int max_cached_plans = 64) {
  ModelBuilder b;
  b.Input("x", {-1, 16, 32, 32});
  std::string prev = "x";
  for (int l = 0; l < layers; ++l) {
    const std::string w = absl::StrCat("w", l), out = absl::StrCat("y", l);
    b.RandomInit(w, {16, 16, 3, 3});
    ModelBuilder::IntsAttr(b.Node("Conv", {prev, w}, {out}), "pads", {1, 1, 1, 1});
    prev = out;
  }
  b.Output(prev);
  CompileOptions options;
  options.max_cached_plans = max_cached_plans;
  auto model = CompiledModel::FromBytes(b.Bytes(), options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::dynamic_pointer_cast<const CompiledModelImpl>(*model) : nullptr;
}

TEST(PlanCacheTest, ConcurrentCallersForANewBatchShareOneCompile) {
  auto model = ConvChainModel(24);
  ASSERT_NE(model, nullptr);
  const int before = model->compiles();  // batch 1, compiled at load
  std::vector<std::thread> callers;
  callers.reserve(8);
  std::vector<const CompiledPlan*> plans(8, nullptr);
  for (int i = 0; i < 8; ++i) {
    callers.emplace_back([&, i] {
      auto plan = model->GetPlan(4);
      ASSERT_TRUE(plan.ok()) << plan.status();
      plans[i] = plan->get();
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(model->compiles(), before + 1);
  for (const CompiledPlan* p : plans) EXPECT_EQ(p, plans[0]);
}

TEST(PlanCacheTest, CompiledPlansAreServedWhileANewBatchCompiles) {
  auto model = std::const_pointer_cast<CompiledModelImpl>(ConvChainModel(2));
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->GetPlan(1).ok());
  // The compile of batch 2 stops at its start until released.
  absl::Notification compiling, release;
  model->set_compile_hook_for_test([&](const InputShapes&) {
    compiling.Notify();
    release.WaitForNotification();
  });
  std::thread compiler([&] { EXPECT_TRUE(model->GetPlan(2).ok()); });
  compiling.WaitForNotification();
  // Batch 1 is answered while batch 2 compiles; with the compile under the
  // model's lock this call would wait for ever.
  absl::Notification served;
  std::thread reader([&] {
    EXPECT_TRUE(model->GetPlan(1).ok());
    served.Notify();
  });
  const bool in_time = served.WaitForNotificationWithTimeout(absl::Seconds(30));
  EXPECT_TRUE(in_time) << "GetPlan(1) waited for the compile of batch 2";
  release.Notify();
  compiler.join();
  reader.join();
  model->set_compile_hook_for_test(nullptr);
}

TEST(PlanCacheTest, PlansOfEveryBatchShareReorderedWeights) {
  auto model = ConvChainModel(4);
  ASSERT_NE(model, nullptr);
  const size_t compiled_one = model->constant_bytes().compiled;
  for (int batch : {2, 3, 8}) ASSERT_TRUE(model->GetPlan(batch).ok());
  EXPECT_EQ(model->constant_bytes().compiled, compiled_one);
}

TEST(PlanCacheTest, BatchOutsideTheBoundIsRefusedWithoutCompiling) {
  auto model = ConvChainModel(1);
  ASSERT_NE(model, nullptr);
  const int before = model->compiles();
  auto plan = model->GetPlan(model->max_batch_size() + 1);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model->compiles(), before);
}

// max_cached_plans bounds the plans held: the least recently used one goes,
// and a batch size asked for again is compiled again and still right.
TEST(PlanCacheTest, LeastRecentlyUsedPlanIsDroppedAtTheBound) {
  auto model = ConvChainModel(2, /*max_cached_plans=*/2);
  ASSERT_NE(model, nullptr);
  auto ctx = ExecutionContext::Create(model, {1});
  ASSERT_TRUE(ctx.ok());
  auto run = [&](int batch) {
    auto out = (*ctx)->Run({testing::RandomTensor({batch, 16, 32, 32}, 3)});
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? (*out)[0] : Tensor();
  };
  // Batch 1 compiled at load.
  EXPECT_EQ(model->plan_cache_stats().compiles, 1);
  const Tensor first = run(1);
  run(2);
  EXPECT_EQ(model->plan_cache_stats().cached, 2);
  EXPECT_EQ(model->plan_cache_stats().evictions, 0);
  run(2);  // batch 2 is now the most recently used
  run(3);  // drops batch 1
  auto stats = model->plan_cache_stats();
  EXPECT_EQ(stats.compiles, 3);
  EXPECT_EQ(stats.evictions, 1);
  EXPECT_EQ(stats.cached, 2);
  run(2);  // still cached: no compile
  EXPECT_EQ(model->plan_cache_stats().compiles, 3);
  const Tensor again = run(1);  // compiled again, drops batch 3
  stats = model->plan_cache_stats();
  EXPECT_EQ(stats.compiles, 4);
  EXPECT_EQ(stats.evictions, 2);
  EXPECT_EQ(stats.cached, 2);
  ASSERT_EQ(first.bytes.size(), again.bytes.size());
  EXPECT_EQ(first.bytes, again.bytes);
}

TEST(PlanCacheTest, NoBoundKeepsEveryPlan) {
  auto model = ConvChainModel(1, /*max_cached_plans=*/0);
  ASSERT_NE(model, nullptr);
  for (int batch = 1; batch <= 5; ++batch) ASSERT_TRUE(model->GetPlan(batch).ok());
  EXPECT_EQ(model->plan_cache_stats().cached, 5);
  EXPECT_EQ(model->plan_cache_stats().evictions, 0);
}

}  // namespace
}  // namespace rectifier::engine
