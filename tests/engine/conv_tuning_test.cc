// Convolution layouts (CompileOptions::conv_layout): every explicit layout
// computes what oneDNN's own choice computes, asks for the layout it names,
// and a tuned plan picks one of the candidates, remembers it in the tuning
// file and reads it back, surviving a damaged or unwritable file.
#include "server/engine/runtime/conv_tuning.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/execution_context.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

namespace fs = std::filesystem;
using testing::ModelBuilder;

// An inverted-residual block as in MobileNetV2: a 3x3 stem (3 -> 32,
// stride 2), a 1x1 expansion with ReLU6, a depthwise 3x3, a 1x1 projection
// with the residual add, and a 7-channel head (not a block multiple).
std::string BlockModel(bool dynamic_hw = false) {
  ModelBuilder b;
  b.Input("x", {-1, 3, dynamic_hw ? -1 : 32, dynamic_hw ? -1 : 32});
  b.RandomInit("w0", {32, 3, 3, 3}, -0.3f, 0.3f).RandomInit("b0", {32});
  auto& c0 = b.Node("Conv", {"x", "w0", "b0"}, {"c0"});
  ModelBuilder::IntsAttr(c0, "pads", {1, 1, 1, 1});
  ModelBuilder::IntsAttr(c0, "strides", {2, 2});
  b.Node("Relu", {"c0"}, {"r0"});
  b.RandomInit("w1", {64, 32, 1, 1}, -0.2f, 0.2f).RandomInit("b1", {64});
  b.Node("Conv", {"r0", "w1", "b1"}, {"c1"});
  b.Init("lo", {}, {0.0f}).Init("hi", {}, {6.0f});
  b.Node("Clip", {"c1", "lo", "hi"}, {"r1"});
  b.RandomInit("w2", {64, 1, 3, 3}, -0.3f, 0.3f).RandomInit("b2", {64});
  auto& c2 = b.Node("Conv", {"r1", "w2", "b2"}, {"c2"});
  ModelBuilder::IntsAttr(c2, "pads", {1, 1, 1, 1});
  ModelBuilder::IntAttr(c2, "group", 64);
  b.Node("Clip", {"c2", "lo", "hi"}, {"r2"});
  b.RandomInit("w3", {32, 64, 1, 1}, -0.2f, 0.2f).RandomInit("b3", {32});
  b.Node("Conv", {"r2", "w3", "b3"}, {"c3"});
  // As in a YOLO C2f bottleneck: SiLU, then the residual add.
  b.Node("Sigmoid", {"c3"}, {"s3"});
  b.Node("Mul", {"c3", "s3"}, {"m3"});
  b.Node("Add", {"m3", "r0"}, {"a3"});
  b.RandomInit("w4", {7, 32, 1, 1}, -0.2f, 0.2f).RandomInit("b4", {7});
  b.Node("Conv", {"a3", "w4", "b4"}, {"y"});
  b.Output("y");
  return b.Bytes();
}

struct Compiled {
  std::shared_ptr<const CompiledModel> model;
  std::string plan;  // description of the batch-`batch` plan
  Tensor y;
};

Compiled CompileRun(ConvLayout layout, int batch, const std::string& cache_dir = "") {
  CompileOptions options;
  options.conv_layout = layout;
  options.tuning_cache_dir = cache_dir;
  // The run uses the plan DescribePlan prints, not the one-thread part
  // plans of a split batch (their tuning: batch_split_test.cc).
  options.batch_split = false;
  Compiled c;
  auto model = CompiledModel::FromBytes(BlockModel(), options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return c;
  c.model = *model;
  auto plan = c.model->DescribePlan(batch);
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (plan.ok()) c.plan = *plan;
  auto ctx = ExecutionContext::Create(c.model, {2});
  EXPECT_TRUE(ctx.ok()) << ctx.status();
  if (!ctx.ok()) return c;
  auto out = (*ctx)->Run({testing::RandomTensor({batch, 3, 32, 32}, 11)});
  EXPECT_TRUE(out.ok()) << out.status();
  if (out.ok()) c.y = std::move((*out)[0]);
  return c;
}

bool Has(const std::vector<ConvLayout>& v, ConvLayout l) {
  return std::find(v.begin(), v.end(), l) != v.end();
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("rectifier_tuning_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
    fs::remove_all(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ConvLayoutTest, NamesRoundTrip) {
  for (ConvLayout l : {ConvLayout::kAny, ConvLayout::kBlocked8, ConvLayout::kBlocked16,
                       ConvLayout::kChannelsLast, ConvLayout::kTuned}) {
    ConvLayout back = ConvLayout::kAny;
    ASSERT_TRUE(ParseConvLayout(ConvLayoutName(l), &back)) << ConvLayoutName(l);
    EXPECT_EQ(back, l);
  }
  ConvLayout l = ConvLayout::kBlocked8;
  EXPECT_FALSE(ParseConvLayout("blocked32", &l));
  EXPECT_FALSE(ParseConvLayout("", &l));
  EXPECT_EQ(l, ConvLayout::kBlocked8);
}

// Every explicit layout computes the same outputs as oneDNN's own choice
// (same math, other kernels and summation orders), and asks for the layout
// it names.
TEST(ConvLayoutTest, ExplicitLayoutsMatchTheDefault) {
  for (int batch : {1, 3}) {
    const Compiled base = CompileRun(ConvLayout::kAny, batch);
    ASSERT_FALSE(base.y.bytes.empty());
    struct Case {
      ConvLayout layout;
      const char* tag;  // a layout the plan must use
    };
    std::vector<Case> cases = {{ConvLayout::kBlocked8, "aBcd8b"},
                               {ConvLayout::kChannelsLast, "acdb"}};
    if (Has(TuningCandidates(), ConvLayout::kBlocked16)) {
      cases.push_back({ConvLayout::kBlocked16, "aBcd16b"});
    }
    for (const Case& c : cases) {
      SCOPED_TRACE(ConvLayoutName(c.layout));
      const Compiled got = CompileRun(c.layout, batch);
      ASSERT_FALSE(got.y.bytes.empty());
      testing::ExpectNear(got.y, base.y, 1e-5f);
      EXPECT_NE(got.plan.find(std::string("dst:") + c.tag), std::string::npos) << got.plan;
      // The residual add after SiLU stays in the asked-for layout (fused,
      // or an add of its own where the direct kernels do not fuse a sum
      // after an activation): no addend copy, and no reorder but the
      // image's into NHWC.
      EXPECT_EQ(got.plan.find("Copy addend"), std::string::npos) << got.plan;
      size_t reorders = 0;
      for (size_t at = got.plan.find("Reorder '"); at != std::string::npos;
           at = got.plan.find("Reorder '", at + 1)) {
        ++reorders;
      }
      EXPECT_LE(reorders, 1u) << got.plan;
    }
  }
}

TEST(ConvTuningTest, PickFastestKeepsTheBaselineWithinTheMargin) {
  using L = ConvLayout;
  using V = TunedVariant;
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kBlocked16}, 9.0}}), V{L::kBlocked16});
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kBlocked16}, 9.8}}), V{L::kAny});  // 2%: noise
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kBlocked16}, 9.0}, {{L::kBlocked8}, 8.5}}),
            V{L::kBlocked8});
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kBlocked8}, 12.0}}), V{L::kAny});
  EXPECT_EQ(PickFastest({}), V{L::kAny});
  // A candidate without the channel split is one more candidate.
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kBlocked8}, 9.5}, {{L::kBlocked8, false}, 9.0}}),
            (V{L::kBlocked8, false}));
  EXPECT_EQ(PickFastest({{{L::kAny}, 10.0}, {{L::kAny, false}, 9.9}}), V{L::kAny});
}

TEST(ConvTuningTest, VariantNamesRoundTrip) {
  for (const ConvLayout l : {ConvLayout::kAny, ConvLayout::kBlocked8, ConvLayout::kBlocked16,
                             ConvLayout::kChannelsLast}) {
    for (const bool split : {true, false}) {
      const TunedVariant v{l, split};
      TunedVariant back{ConvLayout::kTuned, !split};
      ASSERT_TRUE(ParseTunedVariant(TunedVariantName(v), &back)) << TunedVariantName(v);
      EXPECT_EQ(back, v) << TunedVariantName(v);
    }
  }
  EXPECT_EQ(TunedVariantName({ConvLayout::kBlocked8, false}), "blocked8/no-split");
  EXPECT_EQ(TunedVariantName({ConvLayout::kBlocked8, true}), "blocked8");
  TunedVariant v;
  EXPECT_FALSE(ParseTunedVariant("tuned", &v));
  EXPECT_FALSE(ParseTunedVariant("tuned/no-split", &v));
  EXPECT_FALSE(ParseTunedVariant("/no-split", &v));
  EXPECT_FALSE(ParseTunedVariant("blocked8/no-split/no-split", &v));
  EXPECT_FALSE(ParseTunedVariant("blocked8/split", &v));
  EXPECT_FALSE(ParseTunedVariant("", &v));
}

TEST(ConvTuningTest, ParsesOnlyWellFormedLines) {
  std::string key;
  TunedVariant v;
  EXPECT_TRUE(TuningCache::ParseLine("[1,3,8,8]\tblocked16\tany=1.000", &key, &v));
  EXPECT_EQ(key, "[1,3,8,8]");
  EXPECT_EQ(v, TunedVariant{ConvLayout::kBlocked16});
  EXPECT_TRUE(TuningCache::ParseLine("[1,3,8,8]\tany", &key, &v));
  EXPECT_TRUE(TuningCache::ParseLine("[1,3,8,8]\tblocked8/no-split\tany=1.0", &key, &v));
  EXPECT_EQ(v, (TunedVariant{ConvLayout::kBlocked8, false}));
  EXPECT_FALSE(TuningCache::ParseLine("", &key, &v));
  EXPECT_FALSE(TuningCache::ParseLine("[1,3,8,8]", &key, &v));
  EXPECT_FALSE(TuningCache::ParseLine("[1,3,8,8]\ttuned", &key, &v));  // not a choice
  EXPECT_FALSE(TuningCache::ParseLine("[1,3,8,8]\tfast", &key, &v));
  EXPECT_FALSE(TuningCache::ParseLine("\tany", &key, &v));
}

// A tuned plan times the candidates, keeps the choice in the file, and a
// second load of the same model reads it instead of timing again; outputs
// match oneDNN's own choice whichever layout won.
TEST(ConvTuningTest, TunedPlanIsKeptAndReadBack) {
  TempDir dir;
  const Compiled base = CompileRun(ConvLayout::kAny, 2);
  const Compiled first = CompileRun(ConvLayout::kTuned, 2, dir.str());
  ASSERT_FALSE(first.y.bytes.empty());
  testing::ExpectNear(first.y, base.y, 1e-5f);
  EXPECT_EQ(first.plan.rfind("conv layout: ", 0), 0u) << first.plan;
  EXPECT_NE(first.plan.find("(tuned in "), std::string::npos) << first.plan;
  EXPECT_NE(first.plan.find("any "), std::string::npos) << first.plan;  // the baseline's time

  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir.str())) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_NE(files[0].filename().string().find(".tuning"), std::string::npos);
  const std::string text = ReadAll(files[0].string());
  // The load plan (batch 1) and the batch-2 plan, each with its choice.
  EXPECT_NE(text.find("[1,3,32,32]\t"), std::string::npos) << text;
  EXPECT_NE(text.find("[2,3,32,32]\t"), std::string::npos) << text;

  const Compiled second = CompileRun(ConvLayout::kTuned, 2, dir.str());
  ASSERT_FALSE(second.y.bytes.empty());
  EXPECT_NE(second.plan.find("(tuned; from " + files[0].string() + ")"), std::string::npos)
      << second.plan;
  // Same choice as the first load.
  const std::string chosen = first.plan.substr(0, first.plan.find(" ("));
  EXPECT_EQ(second.plan.rfind(chosen, 0), 0u) << chosen << "\n" << second.plan;
  testing::ExpectNear(second.y, base.y, 1e-5f);
}

// Lines that do not parse are dropped and their plans timed again; the file
// is rewritten with well-formed lines only.
TEST(ConvTuningTest, DamagedFileIsTunedAgain) {
  TempDir dir;
  const Compiled first = CompileRun(ConvLayout::kTuned, 1, dir.str());
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir.str())) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  {
    std::ofstream out(files[0], std::ios::trunc);
    out << "garbage\n[1,3,32,32]\tblocked99\n\x01\x02\t\n" << std::string(5000, 'x') << "\tany\n";
  }
  const Compiled again = CompileRun(ConvLayout::kTuned, 1, dir.str());
  ASSERT_FALSE(again.y.bytes.empty());
  EXPECT_NE(again.plan.find("(tuned in "), std::string::npos) << again.plan;
  const std::string text = ReadAll(files[0].string());
  EXPECT_EQ(text.find("garbage"), std::string::npos) << text;
  EXPECT_EQ(text.find("blocked99"), std::string::npos) << text;
  EXPECT_NE(text.find("[1,3,32,32]\t"), std::string::npos) << text;
}

// Two model objects of the same bytes (two names or versions, or two
// processes) share one file: each write keeps the other's choices.
TEST(ConvTuningTest, WritersSharingAFileKeepEachOthersChoices) {
  TempDir dir;
  TuningCache a(dir.str(), 7), b(dir.str(), 7);
  ASSERT_FALSE(a.Find("[1,3,8,8]", 2).has_value());
  ASSERT_FALSE(b.Find("[2,3,8,8]", 2).has_value());
  TuningChoice blocked;
  blocked.variant = {ConvLayout::kBlocked8, /*channel_split=*/false};
  TuningChoice any;
  EXPECT_EQ(a.Store("[1,3,8,8]", 2, blocked), "");
  EXPECT_EQ(b.Store("[2,3,8,8]", 2, any), "");  // b read the file before a wrote
  TuningCache c(dir.str(), 7);
  EXPECT_EQ(c.Find("[1,3,8,8]", 2),
            std::optional<TunedVariant>(TunedVariant{ConvLayout::kBlocked8, false}));
  EXPECT_EQ(c.Find("[2,3,8,8]", 2), std::optional<TunedVariant>(TunedVariant{}));
  EXPECT_FALSE(c.Find("[1,3,8,8]", 1).has_value());  // another thread count, another file
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.str())) {
    EXPECT_EQ(e.path().extension(), ".tuning") << e.path();  // no temporary left
    ++files;
  }
  EXPECT_EQ(files, 1u);
}

// A directory that cannot be written costs only the timing: the model
// loads, runs, and says the choice was not kept.
TEST(ConvTuningTest, UnwritableDirectoryIsReported) {
  const Compiled c = CompileRun(ConvLayout::kTuned, 1, "/proc/rectifier-no-such-dir");
  ASSERT_FALSE(c.y.bytes.empty());
  EXPECT_NE(c.plan.find("tuning not kept"), std::string::npos) << c.plan;
}

// Without a directory the choice lives with the model and nothing is
// written or reported missing.
TEST(ConvTuningTest, InMemoryChoice) {
  const Compiled c = CompileRun(ConvLayout::kTuned, 4);
  ASSERT_FALSE(c.y.bytes.empty());
  EXPECT_NE(c.plan.find("(tuned in "), std::string::npos) << c.plan;
  EXPECT_EQ(c.plan.find("tuning not kept"), std::string::npos) << c.plan;
}

// Only the load shapes at batch <= kMaxTunedBatch are timed; a larger
// batch takes the choice of the nearest tuned batch, another height and
// width that of the load shapes.
TEST(ConvTuningTest, LargeBatchesAndOtherShapesInheritTheChoice) {
  CompileOptions options;
  options.conv_layout = ConvLayout::kTuned;
  auto model = CompiledModel::FromBytes(BlockModel(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  // Before batch 8 is tuned, batch 12 takes the load plan's (batch 1) choice.
  auto early = (*model)->DescribePlan(12);
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_NE(early->find("(as tuned for [1,3,32,32])"), std::string::npos) << *early;
  auto b8 = (*model)->DescribePlan(kMaxTunedBatch);
  ASSERT_TRUE(b8.ok()) << b8.status();
  EXPECT_NE(b8->find("(tuned in "), std::string::npos) << *b8;
  auto late = (*model)->DescribePlan(16);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_NE(late->find("(as tuned for [8,3,32,32])"), std::string::npos) << *late;
  // The same layout as batch 8's.
  EXPECT_EQ(late->substr(0, late->find(" (")), b8->substr(0, b8->find(" (")));

  auto dynamic = CompiledModel::FromBytes(BlockModel(/*dynamic_hw=*/true), options);
  ASSERT_TRUE(dynamic.ok()) << dynamic.status();
  auto other = (*dynamic)->DescribePlanForShapes({{2, 3, 24, 40}});
  ASSERT_TRUE(other.ok()) << other.status();
  const std::string load = absl::StrCat("[1,3,", kDefaultProbeDim, ",", kDefaultProbeDim, "]");
  EXPECT_NE(other->find("(as tuned for " + load + ")"), std::string::npos) << *other;
  auto ctx = ExecutionContext::Create(*dynamic, {1});
  ASSERT_TRUE(ctx.ok());
  auto out = (*ctx)->Run({testing::RandomTensor({2, 3, 24, 40}, 5)});
  ASSERT_TRUE(out.ok()) << out.status();
}

TEST(ConvTuningTest, CpuTagNamesIsaAndThreads) {
  const std::string tag = TuningCpuTag(3);
  EXPECT_NE(tag.find("-t3-"), std::string::npos) << tag;
  EXPECT_EQ(tag.find('/'), std::string::npos) << tag;
  EXPECT_NE(Fingerprint64("a"), Fingerprint64("b"));
  EXPECT_EQ(Fingerprint64("model"), Fingerprint64("model"));
}

}  // namespace
}  // namespace rectifier::engine
