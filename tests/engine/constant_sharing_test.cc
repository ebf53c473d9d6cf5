// Constants shared by many nodes are held once per layout: a weight read by
// 160 Conv or MatMul nodes must not cost 160 reordered copies, and results
// must not change when copies are shared.
#include <cmath>
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "tests/engine/model_builder.h"

namespace rectifier::engine {
namespace {

using testing::ModelBuilder;

constexpr int64_t kChannels = 1024;  // 1024 x 1024 floats: a 4 MiB weight
constexpr size_t kWeightBytes = kChannels * kChannels * sizeof(float);
constexpr int kConsumers = 160;

// Uniform weights with variance 1/n, so that a long chain neither explodes
// nor vanishes.
std::vector<float> ChainWeights(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const float a = std::sqrt(3.0f / static_cast<float>(n));
  std::uniform_real_distribution<float> dist(-a, a);
  std::vector<float> w(static_cast<size_t>(n * n));
  for (auto& v : w) v = dist(rng);
  return w;
}

CompiledModelImpl::ConstantBytes BytesOf(const std::shared_ptr<const CompiledModel>& model) {
  auto impl = std::dynamic_pointer_cast<const CompiledModelImpl>(model);
  EXPECT_NE(impl, nullptr);
  return impl ? impl->constant_bytes() : CompiledModelImpl::ConstantBytes{};
}

absl::StatusOr<Tensor> RunOnce(const std::shared_ptr<const CompiledModel>& model, const Tensor& x) {
  auto ctx = ExecutionContext::Create(model, {1});
  if (!ctx.ok()) return ctx.status();
  auto out = (*ctx)->Run({x});
  if (!out.ok()) return out.status();
  return std::move((*out)[0]);
}

// Max |got - want| relative to max |want|.
double RelativeError(const Tensor& got, const std::vector<double>& want) {
  double err = 0.0, scale = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    err = std::max(err, std::fabs(got.data<float>()[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return err / scale;
}

// y = W x applied `layers` times, with W[out][in] (Conv) or W[in][out]
// (MatMul), in double precision.
std::vector<double> ChainReference(const std::vector<float>& w, const Tensor& x, int layers,
                                   bool out_major) {
  const int64_t n = x.num_elements();
  std::vector<double> v(x.data<float>(), x.data<float>() + n), next(static_cast<size_t>(n));
  for (int l = 0; l < layers; ++l) {
    for (int64_t o = 0; o < n; ++o) {
      double acc = 0.0;
      for (int64_t i = 0; i < n; ++i)
        acc += static_cast<double>(w[static_cast<size_t>(out_major ? o * n + i : i * n + o)]) *
               v[static_cast<size_t>(i)];
      next[static_cast<size_t>(o)] = acc;
    }
    v.swap(next);
  }
  return v;
}

// `layers` 1x1 convolutions in a chain, all reading initializer "W" (or,
// with `distinct`, each its own initializer holding the same values).
std::string ConvChain(const std::vector<float>& w, int64_t c, int layers, bool distinct = false) {
  ModelBuilder b;
  b.Input("x", {-1, c, 1, 1});
  std::string prev = "x";
  for (int l = 0; l < layers; ++l) {
    const std::string wname = distinct ? absl::StrCat("W", l) : "W";
    if (l == 0 || distinct) b.Init(wname, {c, c, 1, 1}, w);
    const std::string out = absl::StrCat("y", l);
    b.Node("Conv", {prev, wname}, {out});
    prev = out;
  }
  b.Output(prev);
  return b.Bytes();
}

TEST(ConstantSharingTest, WeightOfManyConvsIsReorderedOnce) {
  const std::vector<float> w = ChainWeights(kChannels, 11);
  auto model = CompiledModel::FromBytes(ConvChain(w, kChannels, kConsumers));
  ASSERT_TRUE(model.ok()) << model.status();
  const auto bytes = BytesOf(*model);
  EXPECT_EQ(bytes.graph, kWeightBytes);
  // One copy in the convolutions' layout (the old key per node held 160).
  EXPECT_GE(bytes.compiled, kWeightBytes);
  EXPECT_LT(bytes.compiled, 2 * kWeightBytes) << "compiled constants: " << bytes.compiled;
  // A second batch size reuses the same reordered copy.
  ASSERT_TRUE((*model)->DescribePlan(3).ok());
  EXPECT_EQ(BytesOf(*model).compiled, bytes.compiled);

  Tensor x = testing::RandomTensor({1, kChannels, 1, 1}, 5);
  auto y = RunOnce(*model, x);
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_LT(RelativeError(*y, ChainReference(w, x, kConsumers, /*out_major=*/true)), 1e-4);
}

TEST(ConstantSharingTest, SharedWeightGivesTheSameBitsAsSeparateCopies) {
  const int64_t c = 256;
  const int layers = 8;
  const std::vector<float> w = ChainWeights(c, 12);
  auto shared = CompiledModel::FromBytes(ConvChain(w, c, layers));
  auto separate = CompiledModel::FromBytes(ConvChain(w, c, layers, /*distinct=*/true));
  ASSERT_TRUE(shared.ok()) << shared.status();
  ASSERT_TRUE(separate.ok()) << separate.status();
  EXPECT_EQ(BytesOf(*separate).compiled, layers * BytesOf(*shared).compiled);
  Tensor x = testing::RandomTensor({2, c, 1, 1}, 6);
  auto a = RunOnce(*shared, x);
  auto b = RunOnce(*separate, x);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(a->bytes.size(), b->bytes.size());
  EXPECT_EQ(std::memcmp(a->bytes.data(), b->bytes.data(), a->bytes.size()), 0);
}

TEST(ConstantSharingTest, WeightOfManyMatMulsIsReorderedOnceAndGemmAlphaGetsItsOwn) {
  const std::vector<float> w = ChainWeights(kChannels, 13);
  ModelBuilder b;
  b.Input("x", {-1, kChannels});
  b.Init("W", {kChannels, kChannels}, w);
  b.Init("B", {kChannels}, std::vector<float>(kChannels, 0.25f));
  std::string prev = "x";
  for (int l = 0; l < kConsumers; ++l) {
    const std::string out = absl::StrCat("m", l);
    b.Node("MatMul", {prev, "W"}, {out});
    prev = out;
  }
  // Gemm scales its weights by alpha: that consumer, and only that one,
  // needs a copy of its own.
  auto& gemm = b.Node("Gemm", {prev, "W", "B"}, {"y"});
  ModelBuilder::FloatAttr(gemm, "alpha", 0.5f);
  b.Output("y");
  auto model = CompiledModel::FromBytes(b.Bytes());
  ASSERT_TRUE(model.ok()) << model.status();
  const auto bytes = BytesOf(*model);
  EXPECT_GE(bytes.compiled, 2 * kWeightBytes);
  EXPECT_LT(bytes.compiled, 3 * kWeightBytes) << "compiled constants: " << bytes.compiled;

  Tensor x = testing::RandomTensor({1, kChannels}, 7);
  auto y = RunOnce(*model, x);
  ASSERT_TRUE(y.ok()) << y.status();
  std::vector<double> want = ChainReference(w, x, kConsumers + 1, /*out_major=*/false);
  for (auto& v : want) v = 0.5 * v + 0.25;
  EXPECT_LT(RelativeError(*y, want), 1e-4);
}

TEST(ConstantSharingTest, WeightsReplacedByBatchNormFoldingAreDropped) {
  // Two convolutions share W; each folds its own BatchNormalization, so each
  // needs its own rescaled weights, and W itself is no longer read.
  const int64_t c = 128;
  const size_t w_bytes = c * c * sizeof(float);
  const std::vector<float> w = ChainWeights(c, 14);
  ModelBuilder b;
  b.Input("x", {1, c, 1, 1});
  b.Init("W", {c, c, 1, 1}, w);
  std::string prev = "x";
  for (int l = 0; l < 2; ++l) {
    const std::string s = absl::StrCat(l);
    b.RandomInit("gamma" + s, {c}, 0.5f, 1.5f);
    b.RandomInit("beta" + s, {c}, -0.5f, 0.5f);
    b.RandomInit("mean" + s, {c}, -0.5f, 0.5f);
    b.RandomInit("var" + s, {c}, 0.5f, 2.0f);
    b.Node("Conv", {prev, "W"}, {"c" + s});
    b.Node("BatchNormalization", {"c" + s, "gamma" + s, "beta" + s, "mean" + s, "var" + s},
           {"bn" + s});
    prev = "bn" + s;
  }
  b.Output(prev);
  CompileOptions unfused;
  unfused.fuse = false;
  auto folded = CompiledModel::FromBytes(b.Bytes());
  auto plain = CompiledModel::FromBytes(b.Bytes(), unfused);
  ASSERT_TRUE(folded.ok()) << folded.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  // Two rescaled weights and two biases; no longer W and the BN vectors.
  EXPECT_EQ(BytesOf(*folded).graph, 2 * w_bytes + 2 * c * sizeof(float));
  Tensor x = testing::RandomTensor({1, c, 1, 1}, 8);
  auto got = RunOnce(*folded, x);
  auto want = RunOnce(*plain, x);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(want.ok()) << want.status();
  testing::ExpectNear(*got, *want, 1e-4f);
}

}  // namespace
}  // namespace rectifier::engine
