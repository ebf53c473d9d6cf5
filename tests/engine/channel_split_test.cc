// Channel split (CompileOptions::channel_split): a 1x1 convolution at
// batch 1 with at most 100 output pixels, on a plan for T >= 2 threads, runs
// as T one-thread primitives over slices of its output channels. Its
// outputs must be those of the single primitive on the whole team, bit for
// bit, the split must happen exactly where the rule says, and a tuned plan
// times its candidates without the split as well and keeps what it chose.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "server/engine/runtime/conv_tuning.h"
#include "server/engine/runtime/omp_threads.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

constexpr char kSplit[] = "parts by output channels";

// x [N, 32, S, S]: a 1x1 expansion to 64 channels with ReLU, a 1x1
// projection back to 32 added to x (a fused sum, written in place), and a
// 1x1 to 24 channels (3 blocks of 8: no whole blocks per thread on 2
// threads, never split).
// Outputs: the residual sum and the 24-channel map.
std::string Model(int64_t size) {
  ModelBuilder b;
  b.Input("x", {-1, 32, size, size});
  b.RandomInit("w1", {64, 32, 1, 1}, -0.3f, 0.3f).RandomInit("b1", {64});
  b.RandomInit("w2", {32, 64, 1, 1}, -0.3f, 0.3f).RandomInit("b2", {32});
  b.RandomInit("w3", {24, 32, 1, 1}, -0.3f, 0.3f);
  b.Node("Conv", {"x", "w1", "b1"}, {"c1"});
  b.Node("Relu", {"c1"}, {"a1"});
  b.Node("Conv", {"a1", "w2", "b2"}, {"c2"});
  b.Node("Add", {"c2", "x"}, {"r"});
  b.Node("Conv", {"r", "w3"}, {"y"});
  b.Output("r").Output("y");
  return b.Bytes();
}

// Compiled with its plans for `threads` threads, convolutions in nChw8c
// (the split's layout; with format_tag::any AVX-512 takes channels-last
// here).
std::shared_ptr<const CompiledModelImpl> Compile(const std::string& bytes, bool split,
                                                 int threads = 2,
                                                 ConvLayout layout = ConvLayout::kBlocked8,
                                                 const std::string& tuning_dir = "") {
  const ScopedOmpThreads team(threads);
  CompileOptions options;
  options.channel_split = split;
  options.conv_layout = layout;
  options.tuning_cache_dir = tuning_dir;
  auto model = CompiledModel::FromBytes(bytes, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::dynamic_pointer_cast<const CompiledModelImpl>(*model) : nullptr;
}

std::vector<Tensor> RunModel(const std::shared_ptr<const CompiledModelImpl>& model, const Tensor& x,
                             int threads) {
  auto ctx = ExecutionContext::Create(model, {threads});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  if (!ctx.ok()) return {};
  auto out = (*ctx)->Run({x});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *std::move(out) : std::vector<Tensor>{};
}

// Occurrences of `what` in `text`.
int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The plan for `batch` (compiled, if not yet, for `threads` threads).
std::string PlanAt(const CompiledModelImpl& model, int batch, int threads) {
  const ScopedOmpThreads team(threads);
  auto plan = model.DescribePlan(batch);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : "";
}

void ExpectSame(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(got[i].shape, want[i].shape);
    ASSERT_EQ(got[i].bytes.size(), want[i].bytes.size());
    const float* g = got[i].data<float>();
    const float* w = want[i].data<float>();
    int differing = 0;
    for (int64_t k = 0; k < NumElements(got[i].shape); ++k) differing += g[k] != w[k] ? 1 : 0;
    EXPECT_EQ(differing, 0);
  }
}

TEST(ChannelSplitTest, SmallMapsSplitAndMatchTheWholeTeam) {
  const std::string bytes = Model(7);
  auto split = Compile(bytes, true);
  auto whole = Compile(bytes, false);
  ASSERT_NE(split, nullptr);
  ASSERT_NE(whole, nullptr);
  // The expansion and the projection (with its sum) split; 24 channels and
  // the plan without the option do not.
  const std::string plan = PlanAt(*split, 1, 2);
  EXPECT_EQ(Count(plan, kSplit), 2) << plan;
  EXPECT_EQ(Count(PlanAt(*whole, 1, 2), kSplit), 0);
  const Tensor x = testing::RandomTensor({1, 32, 7, 7}, 3);
  const std::vector<Tensor> want = RunModel(whole, x, 2);
  ASSERT_EQ(want.size(), 2u);
  EXPECT_EQ(want[0].shape, (std::vector<int64_t>{1, 32, 7, 7}));
  ExpectSame(RunModel(split, x, 2), want);
  // Again on the same context's state: the parts' bindings are reused.
  auto ctx = ExecutionContext::Create(split, {2});
  ASSERT_TRUE(ctx.ok());
  for (int round = 0; round < 3; ++round) {
    auto out = (*ctx)->Run({x});
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectSame(*out, want);
  }
}

// Where the rule says no: one thread, a batch of two, a 14x14 map.
TEST(ChannelSplitTest, OnlyBatchOneSmallMapsOnSeveralThreads) {
  auto one_thread = Compile(Model(7), true, 1);
  auto small = Compile(Model(7), true);
  auto large = Compile(Model(14), true);
  ASSERT_NE(one_thread, nullptr);
  ASSERT_NE(small, nullptr);
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(Count(PlanAt(*one_thread, 1, 1), kSplit), 0);
  EXPECT_EQ(Count(PlanAt(*small, 1, 2), kSplit), 2);
  EXPECT_EQ(Count(PlanAt(*small, 2, 2), kSplit), 0);
  EXPECT_EQ(Count(PlanAt(*large, 1, 2), kSplit), 0);
  // A batch of two on two threads (batch split: one-thread parts) still
  // gives the whole team's outputs.
  const Tensor x = testing::RandomTensor({2, 32, 7, 7}, 4);
  ExpectSame(RunModel(small, x, 2), RunModel(Compile(Model(7), false), x, 2));
}

// A plan split for two threads, run by a context of one thread (plans are
// cached by shape): its parts run one after the other, same outputs.
TEST(ChannelSplitTest, SplitPlanOnAOneThreadContext) {
  auto split = Compile(Model(7), true);
  ASSERT_NE(split, nullptr);
  ASSERT_EQ(Count(PlanAt(*split, 1, 2), kSplit), 2);
  const Tensor x = testing::RandomTensor({1, 32, 7, 7}, 6);
  ExpectSame(RunModel(split, x, 1), RunModel(Compile(Model(7), false), x, 2));
}

// The parts read slices of the whole convolution's reordered weights and
// bias: a model with split plans holds no more compiled constants than one
// without, whichever batch sizes it has compiled (the batch-2 plan runs
// the same convolutions whole).
TEST(ChannelSplitTest, PartsShareTheWholeWeights) {
  auto split = Compile(Model(7), true);
  auto whole = Compile(Model(7), false);
  ASSERT_NE(split, nullptr);
  ASSERT_NE(whole, nullptr);
  ASSERT_EQ(Count(PlanAt(*split, 1, 2), kSplit), 2);
  PlanAt(*split, 2, 2);
  PlanAt(*whole, 1, 2);
  PlanAt(*whole, 2, 2);
  EXPECT_GT(whole->constant_bytes().compiled, 0u);
  EXPECT_EQ(split->constant_bytes().compiled, whole->constant_bytes().compiled);
  const Tensor x = testing::RandomTensor({2, 32, 7, 7}, 9);
  ExpectSame(RunModel(split, x, 2), RunModel(whole, x, 2));
}

// A tuned plan times each candidate that splits once more without the
// split ("<layout>/no-split"), and a choice read back from the tuning file
// is honoured either way, with the same outputs.
TEST(ChannelSplitTest, TunedPlansTimeTheSplitAndKeepTheChoice) {
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("rectifier_channel_split_tuning_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const std::string bytes = Model(7);
  auto tuned = Compile(bytes, true, 2, ConvLayout::kTuned, dir.string());
  ASSERT_NE(tuned, nullptr);
  const std::string plan = PlanAt(*tuned, 1, 2);
  const std::string first_line = plan.substr(0, plan.find('\n'));
  // The candidate that split (blocked8, or oneDNN's own choice where that
  // is nChw8c), timed without the split too.
  const size_t no_split = first_line.find("/no-split ");
  ASSERT_NE(no_split, std::string::npos) << first_line;
  const size_t name_at = first_line.rfind(' ', no_split) + 1;
  const std::string layout_name = first_line.substr(name_at, no_split - name_at);
  TunedVariant split_variant;
  ASSERT_TRUE(ParseTunedVariant(layout_name, &split_variant)) << first_line;
  ASSERT_TRUE(split_variant.channel_split);
  // Without the option no such candidate exists.
  auto unsplit = Compile(bytes, false, 2, ConvLayout::kTuned);
  ASSERT_NE(unsplit, nullptr);
  const std::string plain = PlanAt(*unsplit, 1, 2);
  EXPECT_EQ(plain.substr(0, plain.find('\n')).find("/no-split"), std::string::npos) << plain;

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  const Tensor x = testing::RandomTensor({1, 32, 7, 7}, 8);
  const std::vector<Tensor> want = RunModel(Compile(bytes, false), x, 2);
  for (const bool split : {true, false}) {
    SCOPED_TRACE(split);
    const TunedVariant chosen{split_variant.layout, split};
    {
      std::ofstream out(files[0], std::ios::trunc);
      out << "[1,32,7,7]\t" << TunedVariantName(chosen) << "\n";
    }
    auto again = Compile(bytes, true, 2, ConvLayout::kTuned, dir.string());
    ASSERT_NE(again, nullptr);
    const std::string p = PlanAt(*again, 1, 2);
    EXPECT_EQ(p.rfind("conv layout: " + TunedVariantName(chosen) + " (tuned; from ", 0), 0u) << p;
    EXPECT_EQ(Count(p, kSplit), split ? 2 : 0) << p;
    ExpectSame(RunModel(again, x, 2), want);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rectifier::engine
