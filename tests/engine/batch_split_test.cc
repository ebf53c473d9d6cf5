// Batch split (CompileOptions::batch_split): a batch that is a multiple of
// the context's threads runs as one part per thread, each part a smaller
// batch of the same model on a one-thread plan; the outputs must be those
// of the whole batch on the whole team, and models whose ops work across
// the batch must never be split.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

namespace fs = std::filesystem;
using testing::ModelBuilder;

// A small classifier: 3x3 convolutions on 16 channels (Winograd's shapes
// in nChw8c), SiLU, a residual add, global pooling, Flatten and Gemm.
std::string Classifier() {
  ModelBuilder b;
  b.Input("x", {-1, 16, 24, 24});
  b.RandomInit("w1", {16, 16, 3, 3}, -0.2f, 0.2f).RandomInit("b1", {16});
  b.RandomInit("w2", {16, 16, 3, 3}, -0.2f, 0.2f).RandomInit("b2", {16});
  b.RandomInit("fc", {10, 16}).RandomInit("fcb", {10});
  ModelBuilder::IntsAttr(b.Node("Conv", {"x", "w1", "b1"}, {"c1"}), "pads", {1, 1, 1, 1});
  b.Node("Sigmoid", {"c1"}, {"s1"});
  b.Node("Mul", {"c1", "s1"}, {"a1"});
  ModelBuilder::IntsAttr(b.Node("Conv", {"a1", "w2", "b2"}, {"c2"}), "pads", {1, 1, 1, 1});
  b.Node("Add", {"c2", "x"}, {"r"});
  b.Node("Relu", {"r"}, {"a2"});
  b.Node("GlobalAveragePool", {"a2"}, {"g"});
  b.Node("Flatten", {"g"}, {"f"});
  ModelBuilder::IntAttr(b.Node("Gemm", {"f", "fc", "fcb"}, {"y"}), "transB", 1);
  b.Output("y").Output("a2");
  return b.Bytes();
}

std::shared_ptr<const CompiledModelImpl> Compile(const std::string& bytes, bool split = true,
                                                 int sample_every = 0) {
  CompileOptions options;
  options.batch_split = split;
  options.activation_stats_sample_every = sample_every;
  auto model = CompiledModel::FromBytes(bytes, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::dynamic_pointer_cast<const CompiledModelImpl>(*model) : nullptr;
}

struct Result {
  std::vector<Tensor> outputs;
  int parts = 0;
};

Result RunModel(const std::shared_ptr<const CompiledModelImpl>& model, const Tensor& x,
                int threads) {
  Result r;
  auto ctx = ExecutionContext::Create(model, {threads});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  if (!ctx.ok()) return r;
  auto out = (*ctx)->Run({x});
  EXPECT_TRUE(out.ok()) << out.status();
  if (out.ok()) r.outputs = *std::move(out);
  r.parts = (*ctx)->last_batch_parts();
  return r;
}

TEST(BatchSplitTest, SplitBatchMatchesTheWholeTeam) {
  const std::string bytes = Classifier();
  auto split = Compile(bytes);
  auto whole = Compile(bytes, /*split=*/false);
  ASSERT_NE(split, nullptr);
  ASSERT_NE(whole, nullptr);
  EXPECT_TRUE(split->batch_separable());
  for (int batch : {2, 4, 6}) {
    SCOPED_TRACE(batch);
    const Tensor x = testing::RandomTensor({batch, 16, 24, 24}, 5);
    const Result got = RunModel(split, x, 2);
    const Result want = RunModel(whole, x, 2);
    EXPECT_EQ(got.parts, 2);
    EXPECT_EQ(want.parts, 1);
    ASSERT_EQ(got.outputs.size(), 2u);
    ASSERT_EQ(want.outputs.size(), 2u);
    EXPECT_EQ(got.outputs[0].shape, (std::vector<int64_t>{batch, 10}));
    EXPECT_EQ(got.outputs[1].shape, (std::vector<int64_t>{batch, 16, 24, 24}));
    for (size_t i = 0; i < 2; ++i) testing::ExpectNear(got.outputs[i], want.outputs[i], 1e-5f);
  }
}

// RunInto writes the parts straight into the caller's buffers, and checks
// them against the whole batch's shapes.
TEST(BatchSplitTest, RunIntoSplitsIntoTheCallersBuffers) {
  auto model = Compile(Classifier());
  ASSERT_NE(model, nullptr);
  const Tensor x = testing::RandomTensor({4, 16, 24, 24}, 9);
  const Result want = RunModel(Compile(Classifier(), false), x, 2);
  ASSERT_EQ(want.outputs.size(), 2u);
  auto ctx = ExecutionContext::Create(model, {2});
  ASSERT_TRUE(ctx.ok());
  Tensor y = Tensor::Zeros(DataType::kFloat32, {4, 10});
  Tensor a = Tensor::Zeros(DataType::kFloat32, {4, 16, 24, 24});
  ASSERT_TRUE((*ctx)->RunInto({&x}, {&y, &a}).ok());
  EXPECT_EQ((*ctx)->last_batch_parts(), 2);
  testing::ExpectNear(y, want.outputs[0], 1e-5f);
  testing::ExpectNear(a, want.outputs[1], 1e-5f);
  Tensor wrong = Tensor::Zeros(DataType::kFloat32, {2, 10});
  const absl::Status bad = (*ctx)->RunInto({&x}, {&wrong, &a});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("[4,10]"), std::string::npos) << bad;
}

// RunViews reads inputs that belong to someone else (a request message) in
// place, whole or split, with Run's results bit for bit.
TEST(BatchSplitTest, RunViewsReadsBorrowedInputs) {
  auto model = Compile(Classifier());
  ASSERT_NE(model, nullptr);
  auto ctx = ExecutionContext::Create(model, {2});
  ASSERT_TRUE(ctx.ok());
  for (const int batch : {3, 4}) {
    SCOPED_TRACE(batch);
    const Tensor x = testing::RandomTensor({batch, 16, 24, 24}, 13);
    // The bytes inside a string 8 bytes in (a message's field on a protobuf
    // arena is only 8-byte aligned).
    std::string message(x.bytes.size() + 8, '\0');
    std::memcpy(message.data() + 8, x.bytes.data(), x.bytes.size());
    const TensorView view{
        x.type, x.shape, {reinterpret_cast<const std::byte*>(message.data() + 8), x.bytes.size()}};
    auto got = (*ctx)->RunViews({view});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ((*ctx)->last_batch_parts(), batch == 4 ? 2 : 1);
    auto want = (*ctx)->Run({x});
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_EQ(got->size(), want->size());
    for (size_t i = 0; i < got->size(); ++i) EXPECT_EQ((*got)[i].bytes, (*want)[i].bytes) << i;
    const TensorView short_view{x.type, x.shape, {view.bytes.data(), x.bytes.size() - 4}};
    EXPECT_EQ((*ctx)->RunViews({short_view}).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

// Batches that are not a multiple of the threads, one-thread contexts,
// models with dynamic dimensions besides the batch, and sampled activation
// statistics run the whole batch.
TEST(BatchSplitTest, WholeBatchWhereAPartWouldNotPay) {
  auto model = Compile(Classifier());
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(RunModel(model, testing::RandomTensor({3, 16, 24, 24}), 2).parts, 1);
  EXPECT_EQ(RunModel(model, testing::RandomTensor({1, 16, 24, 24}), 2).parts, 1);
  EXPECT_EQ(RunModel(model, testing::RandomTensor({4, 16, 24, 24}), 1).parts, 1);
  EXPECT_EQ(RunModel(model, testing::RandomTensor({4, 16, 24, 24}), 4).parts, 4);
  // Dynamic height and width besides the batch: never split.
  ModelBuilder any_size;
  any_size.Input("x", {-1, 8, -1, -1}).RandomInit("w", {8, 8, 3, 3});
  ModelBuilder::IntsAttr(any_size.Node("Conv", {"x", "w"}, {"y"}), "pads", {1, 1, 1, 1});
  auto dynamic = Compile(any_size.Output("y").Bytes());
  ASSERT_NE(dynamic, nullptr);
  EXPECT_EQ(RunModel(dynamic, testing::RandomTensor({4, 8, 12, 10}), 2).parts, 1);
  auto sampled = Compile(Classifier(), true, /*sample_every=*/1);
  ASSERT_NE(sampled, nullptr);
  EXPECT_EQ(RunModel(sampled, testing::RandomTensor({4, 16, 24, 24}), 2).parts, 1);
}

// Models whose ops mix the samples of a batch: never split, and their
// outputs are those of the whole batch.
TEST(BatchSplitTest, OpsAcrossTheBatchAreNeverSplit) {
  struct Case {
    const char* what;
    std::string bytes;
  };
  std::vector<Case> cases;
  {
    ModelBuilder b;  // softmax over the batch
    b.Input("x", {-1, 8});
    ModelBuilder::IntAttr(b.Node("Softmax", {"x"}, {"y"}), "axis", 0);
    cases.push_back({"Softmax axis 0", b.Output("y").Bytes()});
  }
  {
    ModelBuilder b;  // the same, axis given as -rank
    b.Input("x", {-1, 8});
    ModelBuilder::IntAttr(b.Node("Softmax", {"x"}, {"y"}), "axis", -2);
    cases.push_back({"Softmax axis -2", b.Output("y").Bytes()});
  }
  {
    ModelBuilder b;  // batch and channels swapped, then back
    b.Input("x", {-1, 4, 3});
    ModelBuilder::IntsAttr(b.Node("Transpose", {"x"}, {"t"}), "perm", {1, 0, 2});
    ModelBuilder::IntAttr(b.Node("Softmax", {"t"}, {"s"}), "axis", 1);
    ModelBuilder::IntsAttr(b.Node("Transpose", {"s"}, {"y"}), "perm", {1, 0, 2});
    cases.push_back({"Transpose", b.Output("y").Bytes()});
  }
  {
    ModelBuilder b;  // mean over the batch, added back to every sample
    b.Input("x", {-1, 8});
    auto& mean = b.Node("ReduceMean", {"x"}, {"m"});
    ModelBuilder::IntsAttr(mean, "axes", {0});
    ModelBuilder::IntAttr(mean, "keepdims", 1);
    b.Node("Sub", {"x", "m"}, {"y"});
    cases.push_back({"ReduceMean axes 0", b.Output("y").Bytes()});
  }
  {
    ModelBuilder b;  // x^T x: a Gram matrix over the batch
    b.Input("x", {-1, 8});
    ModelBuilder::IntAttr(b.Node("Gemm", {"x", "x"}, {"g"}), "transA", 1);
    b.Node("MatMul", {"x", "g"}, {"y"});
    cases.push_back({"Gemm transA", b.Output("y").Bytes()});
  }
  {
    ModelBuilder b;  // the batch's first sample subtracted from each
    b.Input("x", {-1, 8});
    b.InitInts("i", {1}, {0});
    b.Node("Gather", {"x", "i"}, {"first"});
    b.Node("Sub", {"x", "first"}, {"y"});
    cases.push_back({"Gather (axis 0 by default)", b.Output("y").Bytes()});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto model = Compile(c.bytes);
    auto whole = Compile(c.bytes, false);
    ASSERT_NE(model, nullptr);
    ASSERT_NE(whole, nullptr);
    EXPECT_FALSE(model->batch_separable());
    std::vector<int64_t> shape = model->inputs()[0].shape;
    shape[0] = 4;
    const Tensor x = testing::RandomTensor(shape, 3);
    const Result got = RunModel(model, x, 2);
    EXPECT_EQ(got.parts, 1);
    const Result want = RunModel(whole, x, 2);
    ASSERT_EQ(got.outputs.size(), 1u);
    ASSERT_EQ(want.outputs.size(), 1u);
    testing::ExpectNear(got.outputs[0], want.outputs[0], 1e-6f);
  }
}

// The same models with the ops along another axis are split.
TEST(BatchSplitTest, OpsAlongOtherAxesAreSplit) {
  ModelBuilder b;
  b.Input("x", {-1, 4, 3});
  ModelBuilder::IntsAttr(b.Node("Transpose", {"x"}, {"t"}), "perm", {0, 2, 1});
  ModelBuilder::IntAttr(b.Node("Softmax", {"t"}, {"s"}), "axis", -1);
  auto& mean = b.Node("ReduceMean", {"s"}, {"m"});
  ModelBuilder::IntsAttr(mean, "axes", {1});
  ModelBuilder::IntAttr(mean, "keepdims", 1);
  b.Node("Sub", {"s", "m"}, {"y"});
  const std::string bytes = b.Output("y").Bytes();
  auto model = Compile(bytes);
  ASSERT_NE(model, nullptr);
  EXPECT_TRUE(model->batch_separable());
  const Tensor x = testing::RandomTensor({4, 4, 3}, 4);
  const Result got = RunModel(model, x, 2);
  EXPECT_EQ(got.parts, 2);
  const Result want = RunModel(Compile(bytes, false), x, 2);
  ASSERT_EQ(got.outputs.size(), 1u);
  ASSERT_EQ(want.outputs.size(), 1u);
  testing::ExpectNear(got.outputs[0], want.outputs[0], 1e-6f);
}

// Profiling a split batch shows the part plan, once per part per run.
TEST(BatchSplitTest, ProfileShowsThePartPlan) {
  auto model = Compile(Classifier());
  ASSERT_NE(model, nullptr);
  auto ctx = ExecutionContext::Create(model, {2});
  ASSERT_TRUE(ctx.ok());
  (*ctx)->EnableStepProfile(true);
  const Tensor x = testing::RandomTensor({4, 16, 24, 24});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*ctx)->Run({x}).ok());
  const std::vector<StepProfile> profiles = (*ctx)->StepProfiles();
  ASSERT_EQ(profiles.size(), 1u);
  EXPECT_EQ(profiles[0].batch, 2);
  EXPECT_EQ(profiles[0].runs, 6);
  EXPECT_FALSE(profiles[0].steps.empty());
}

// Part plans take the conv layout of the whole team's plan of the same
// shapes instead of timing their own: a tuned model keeps one tuning file
// (the team's), and an image gets bit for bit the same outputs in a split
// batch as alone on the team.
TEST(BatchSplitTest, PartPlansTakeTheTeamsLayout) {
  const fs::path dir =
      fs::temp_directory_path() / ("rectifier_split_tuning_" + std::to_string(getpid()));
  fs::remove_all(dir);
  // The load plan compiles for this thread's team: two threads, whatever
  // an earlier test's context left here.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  for (const ConvLayout layout : {ConvLayout::kTuned, ConvLayout::kBlocked8, ConvLayout::kAny}) {
    SCOPED_TRACE(ConvLayoutName(layout));
    CompileOptions options;
    options.conv_layout = layout;
    options.tuning_cache_dir = dir.string();
    auto model = CompiledModel::FromBytes(Classifier(), options);
    ASSERT_TRUE(model.ok()) << model.status();
    auto ctx = ExecutionContext::Create(*model, {2});
    ASSERT_TRUE(ctx.ok());
    const Tensor x = testing::RandomTensor({2, 16, 24, 24}, 21);
    auto both = (*ctx)->Run({x});
    ASSERT_TRUE(both.ok()) << both.status();
    EXPECT_EQ((*ctx)->last_batch_parts(), 2);
    for (int64_t k = 0; k < 2; ++k) {
      Tensor one = Tensor::Zeros(DataType::kFloat32, {1, 16, 24, 24});
      const size_t bytes = one.bytes.size();
      std::copy(x.bytes.begin() + static_cast<std::ptrdiff_t>(k * bytes),
                x.bytes.begin() + static_cast<std::ptrdiff_t>((k + 1) * bytes), one.bytes.begin());
      auto alone = (*ctx)->Run({one});
      ASSERT_TRUE(alone.ok()) << alone.status();
      EXPECT_EQ((*ctx)->last_batch_parts(), 1);
      for (size_t o = 0; o < alone->size(); ++o) {
        const std::vector<std::byte>& all = (*both)[o].bytes;
        const size_t row = all.size() / 2;
        EXPECT_TRUE(std::equal(all.begin() + static_cast<std::ptrdiff_t>(k * row),
                               all.begin() + static_cast<std::ptrdiff_t>((k + 1) * row),
                               (*alone)[o].bytes.begin()))
            << "output " << o << " of image " << k;
      }
    }
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names.size(), 1u);  // the two-thread team's
  omp_set_num_threads(saved);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace rectifier::engine
