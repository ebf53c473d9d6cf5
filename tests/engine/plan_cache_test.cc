// The per-batch plan cache: compiles run outside the model's lock, one
// compile per new batch size however many callers ask at once, and plans
// of different batch sizes share their reordered weights.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

// A chain of `layers` 3x3 convolutions with their own weights: compiling a
// plan for a new batch size takes a noticeable time.
std::shared_ptr<const CompiledModelImpl> ConvChainModel(int layers) {
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
  auto model = CompiledModel::FromBytes(b.Bytes());
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::dynamic_pointer_cast<const CompiledModelImpl>(*model) : nullptr;
}

TEST(PlanCacheTest, ConcurrentCallersForANewBatchShareOneCompile) {
  auto model = ConvChainModel(24);
  ASSERT_NE(model, nullptr);
  const int before = model->compiles();  // batch 1, compiled at load
  std::vector<std::thread> callers;
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
  auto model = ConvChainModel(48);
  ASSERT_NE(model, nullptr);
  ASSERT_TRUE(model->GetPlan(1).ok());
  // Each round compiles a new batch size on another thread and asks for
  // batch 1 while that compile runs. With the compile under the model's
  // lock, batch 1 would only be answered once the compile finished.
  bool served_during_compile = false;
  for (int batch = 2; batch <= 6 && !served_during_compile; ++batch) {
    const int before = model->compiles();
    std::atomic<bool> compiled{false};
    std::thread compiler([&] {
      EXPECT_TRUE(model->GetPlan(batch).ok());
      compiled = true;
    });
    while (model->compiles() == before) std::this_thread::yield();  // compile started
    ASSERT_TRUE(model->GetPlan(1).ok());
    served_during_compile = !compiled;
    compiler.join();
  }
  EXPECT_TRUE(served_during_compile)
      << "GetPlan(1) waited for every compile of a new batch size to finish";
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

}  // namespace
}  // namespace rectifier::engine
