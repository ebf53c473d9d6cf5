// A small CNN with odd channel counts checked end to end against the
// reference kernels, and the execution API around it: dynamic batch sizes,
// RunInto vs Run, thread counts, and several contexts sharing one model.
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"
#include "tests/engine/conformance/engine_runner.h"
#include "tests/engine/conformance/onnx_test_util.h"
#include "tests/engine/conformance/reference_kernels.h"

namespace rectifier::engine {
namespace {

using testing::AttrInt;
using testing::AttrInts;
using testing::BinaryOp;
using testing::CompareTensors;
using testing::ConvParams;
using testing::ExpectEngineMatches;
using testing::FloatTensor;
using testing::kRefTolerance;
using testing::ModelBuilder;
using testing::PoolParams;
using testing::RandomFloatTensor;

Tensor ConcatChannels(const Tensor& a, const Tensor& b) {
  const int64_t n = a.shape[0], ca = a.shape[1], cb = b.shape[1];
  const int64_t inner = a.shape[2] * a.shape[3];
  std::vector<float> values;
  for (int64_t i = 0; i < n; ++i) {
    values.insert(values.end(), a.data<float>() + i * ca * inner,
                  a.data<float>() + (i + 1) * ca * inner);
    values.insert(values.end(), b.data<float>() + i * cb * inner,
                  b.data<float>() + (i + 1) * cb * inner);
  }
  return FloatTensor({n, ca + cb, a.shape[2], a.shape[3]}, values);
}

// x [N, 17, 11, 9] -> two convolutions concatenated (19 + 13 channels) ->
// Relu -> ceil-mode MaxPool (11x9 -> 6x5) -> 1x1 conv (21) + a strided 1x1
// projection of x -> GlobalAveragePool -> y [N, 21, 1, 1]. No channel count
// is a multiple of oneDNN's 8/16-channel blocks, so blocked layouts with
// padded channels have to propagate through Concat, pooling and the Add.
class OddChannelCnn {
 public:
  explicit OddChannelCnn(bool dynamic_batch) {
    ModelBuilder builder;
    builder.Input("x", {dynamic_batch ? -1 : 2, 17, 11, 9});
    for (const auto& [name, tensor] : std::vector<std::pair<std::string, Tensor>>{{"wa", wa_},
                                                                                  {"ba", ba_},
                                                                                  {"wb", wb_},
                                                                                  {"bb", bb_},
                                                                                  {"wc", wc_},
                                                                                  {"bc", bc_},
                                                                                  {"wp", wp_},
                                                                                  {"bp", bp_}}) {
      builder.Initializer(name, tensor);
    }
    AttrInts(builder.Node("Conv", {"x", "wa", "ba"}, {"a"}), "pads", {1, 1, 1, 1});
    builder.Node("Conv", {"x", "wb", "bb"}, {"b"});
    AttrInt(builder.Node("Concat", {"a", "b"}, {"cat"}), "axis", 1);
    builder.Node("Relu", {"cat"}, {"r"});
    onnx::NodeProto* pool = builder.Node("MaxPool", {"r"}, {"p"});
    AttrInts(pool, "kernel_shape", {2, 2});
    AttrInts(pool, "strides", {2, 2});
    AttrInt(pool, "ceil_mode", 1);
    builder.Node("Conv", {"p", "wc", "bc"}, {"c"});
    AttrInts(builder.Node("Conv", {"x", "wp", "bp"}, {"proj"}), "strides", {2, 2});
    builder.Node("Add", {"c", "proj"}, {"sum"});
    builder.Node("GlobalAveragePool", {"sum"}, {"y"});
    builder.Output("y", {dynamic_batch ? -1 : 2, 21, 1, 1});
    bytes_ = builder.Bytes();
  }

  const std::string& bytes() const { return bytes_; }

  static Tensor Input(int64_t batch, uint32_t seed) {
    return RandomFloatTensor({batch, 17, 11, 9}, seed);
  }

  Tensor Reference(const Tensor& x) const {
    ConvParams pad1;
    pad1.pads = {1, 1, 1, 1};
    const Tensor cat = ConcatChannels(testing::ReferenceConv(x, wa_, &ba_, pad1),
                                      testing::ReferenceConv(x, wb_, &bb_, ConvParams{}));
    PoolParams pool;
    pool.kernel = {2, 2};
    pool.strides = {2, 2};
    pool.ceil_mode = true;
    const Tensor pooled = testing::ReferenceMaxPool(
        testing::ReferenceUnary(cat, [](double v) { return v > 0 ? v : 0; }), pool);
    ConvParams stride2;
    stride2.strides = {2, 2};
    const Tensor sum =
        testing::ReferenceBinary(testing::ReferenceConv(pooled, wc_, &bc_, ConvParams{}),
                                 testing::ReferenceConv(x, wp_, &bp_, stride2), BinaryOp::kAdd);
    PoolParams global;
    global.kernel = {sum.shape[2], sum.shape[3]};
    return testing::ReferenceAveragePool(sum, global);
  }

 private:
  const Tensor wa_ = RandomFloatTensor({19, 17, 3, 3}, 402), ba_ = RandomFloatTensor({19}, 403);
  const Tensor wb_ = RandomFloatTensor({13, 17, 1, 1}, 404), bb_ = RandomFloatTensor({13}, 405);
  const Tensor wc_ = RandomFloatTensor({21, 32, 1, 1}, 406), bc_ = RandomFloatTensor({21}, 407);
  const Tensor wp_ = RandomFloatTensor({21, 17, 1, 1}, 408), bp_ = RandomFloatTensor({21}, 409);
  std::string bytes_;
};

absl::StatusOr<std::unique_ptr<ExecutionContext>> MakeContext(const std::string& bytes,
                                                              int threads) {
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model = CompiledModel::FromBytes(bytes);
  if (!model.ok()) return model.status();
  ContextOptions options;
  options.threads = threads;
  return ExecutionContext::Create(*model, options);
}

TEST(EngineChainTest, OddChannelCnnMatchesReference) {
  const OddChannelCnn cnn(/*dynamic_batch=*/false);
  const Tensor x = OddChannelCnn::Input(2, 401);
  const Tensor want = cnn.Reference(x);
  ASSERT_EQ(want.shape, (std::vector<int64_t>{2, 21, 1, 1}));
  for (bool fuse : {true, false}) {
    SCOPED_TRACE(fuse ? "fuse" : "no fuse");
    ExpectEngineMatches(cnn.bytes(), {x}, want, fuse);
  }
}

TEST(EngineChainTest, DynamicBatchSizesMatchReference) {
  const OddChannelCnn cnn(/*dynamic_batch=*/true);
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context = MakeContext(cnn.bytes(), 1);
  ASSERT_TRUE(context.ok()) << context.status();
  for (int64_t batch : {1, 4, 3, 1}) {
    SCOPED_TRACE(absl::StrCat("batch ", batch));
    const Tensor x = OddChannelCnn::Input(batch, 500 + static_cast<uint32_t>(batch));
    absl::StatusOr<std::vector<Tensor>> got = (*context)->Run({x});
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ(CompareTensors(cnn.Reference(x), (*got)[0], kRefTolerance), "");
  }
}

TEST(EngineChainTest, RunIntoMatchesRun) {
  const OddChannelCnn cnn(/*dynamic_batch=*/true);
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context = MakeContext(cnn.bytes(), 1);
  ASSERT_TRUE(context.ok()) << context.status();
  const Tensor x = OddChannelCnn::Input(3, 601);
  absl::StatusOr<std::vector<Tensor>> run = (*context)->Run({x});
  ASSERT_TRUE(run.ok()) << run.status();
  Tensor into = Tensor::Zeros(DataType::kFloat32, {3, 21, 1, 1});
  ASSERT_TRUE((*context)->RunInto({&x}, {&into}).ok());
  EXPECT_EQ(CompareTensors((*run)[0], into, {/*rtol=*/0.0, /*atol=*/0.0}), "");
  EXPECT_EQ(CompareTensors(cnn.Reference(x), into, kRefTolerance), "");
}

TEST(EngineChainTest, ThreadCountsAgree) {
  const OddChannelCnn cnn(/*dynamic_batch=*/true);
  const Tensor x = OddChannelCnn::Input(4, 701);
  const Tensor want = cnn.Reference(x);
  for (int threads : {1, 2, 0}) {
    SCOPED_TRACE(absl::StrCat("threads ", threads));
    absl::StatusOr<std::unique_ptr<ExecutionContext>> context = MakeContext(cnn.bytes(), threads);
    ASSERT_TRUE(context.ok()) << context.status();
    absl::StatusOr<std::vector<Tensor>> got = (*context)->Run({x});
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(CompareTensors(want, (*got)[0], kRefTolerance), "");
  }
}

// Two workers, each with its own context, share one CompiledModel (the
// documented threading model) and run different batch sizes concurrently.
TEST(EngineChainTest, ContextsShareOneModelConcurrently) {
  const OddChannelCnn cnn(/*dynamic_batch=*/true);
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(cnn.bytes());
  ASSERT_TRUE(model.ok()) << model.status();
  constexpr int kWorkers = 2;
  constexpr int kRuns = 8;
  std::vector<std::vector<Tensor>> inputs(kWorkers), outputs(kWorkers);
  std::vector<absl::Status> errors(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    for (int r = 0; r < kRuns; ++r) {
      inputs[w].push_back(OddChannelCnn::Input(1 + (w + r) % 3, 800 + 10 * w + r));
    }
  }
  std::vector<std::thread> workers;
  workers.reserve(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      ContextOptions options;
      options.threads = 1;
      absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
          ExecutionContext::Create(*model, options);
      if (!context.ok()) {
        errors[w] = context.status();
        return;
      }
      for (const Tensor& x : inputs[w]) {
        absl::StatusOr<std::vector<Tensor>> got = (*context)->Run({x});
        if (!got.ok()) {
          errors[w] = got.status();
          return;
        }
        outputs[w].push_back(std::move((*got)[0]));
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  for (int w = 0; w < kWorkers; ++w) {
    ASSERT_TRUE(errors[w].ok()) << "worker " << w << ": " << errors[w];
    ASSERT_EQ(outputs[w].size(), static_cast<size_t>(kRuns));
    for (int r = 0; r < kRuns; ++r) {
      EXPECT_EQ(CompareTensors(cnn.Reference(inputs[w][r]), outputs[w][r], kRefTolerance), "")
          << "worker " << w << " run " << r;
    }
  }
}

}  // namespace
}  // namespace rectifier::engine
