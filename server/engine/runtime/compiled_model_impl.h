// The concrete CompiledModel: the optimized graph, its I/O metadata, and a
// lazily filled cache of plans per input-shape signature, compiled outside
// its lock.
#ifndef RECTIFIER_SERVER_ENGINE_RUNTIME_COMPILED_MODEL_IMPL_H_
#define RECTIFIER_SERVER_ENGINE_RUNTIME_COMPILED_MODEL_IMPL_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/compiled_model.h"
#include "server/engine/ir/ir.h"
#include "server/engine/lower/plan.h"
#include "server/engine/runtime/activation_stats.h"

namespace rectifier::engine {

class TuningCache;
struct TunedVariant;

// What selects a plan: the input shapes, and the bytes of the inputs whose
// values the plan depends on (CompiledModelImpl::value_inputs()), in order.
struct PlanKey {
  InputShapes shapes;
  std::vector<std::string> values;
  // A plan whose primitives were created for one OpenMP thread (oneDNN
  // fixes a primitive's team size then), for the parts of a split batch
  // (CompileOptions::batch_split), in the conv layout `layout` (the one
  // the whole team's plan of the same shapes uses, so that an image gets
  // the same kernels, and the same results, whether its batch was split or
  // not); other plans are created for the compiling thread's team.
  bool one_thread = false;
  ConvLayout layout = ConvLayout::kAny;
  bool operator<(const PlanKey& o) const {
    if (one_thread != o.one_thread) return one_thread < o.one_thread;
    if (layout != o.layout) return layout < o.layout;
    return shapes != o.shapes ? shapes < o.shapes : values < o.values;
  }
  bool operator==(const PlanKey& o) const {
    return one_thread == o.one_thread && layout == o.layout && shapes == o.shapes &&
           values == o.values;
  }
  bool operator!=(const PlanKey& o) const { return !(*this == o); }
};

// Graph inputs whose values a plan depends on: those that reach an input an
// op needs at compile time (OpDef::value_inputs: Resize scales, a Reshape's
// shape, Pad's pads, ...) through anything but a shape-only op. Their
// values are bound as constants per plan.
std::vector<size_t> FindValueInputs(const Graph& graph);

// True when running a model on a batch gives the same outputs as running
// it on any split of that batch into parts and joining the parts' outputs
// along dim 0. `shaped` is the model's graph (after its load passes) with
// shapes inferred at batch kSeparabilityProbeBatch (odd, so that no other
// dimension is mistaken for the batch) in dim 0 of every input: that size
// must stay in dim 0 of every value a node reads or writes and of every
// graph output, and no node may work across dim 0 (an axis or axes
// attribute naming it, a Transpose moving it, a MatMul or Gemm whose
// second operand is not a weight, or an op that indexes or scans freely:
// Einsum, CumSum, GatherND, ...).
bool FindBatchSeparable(const Graph& shaped);
inline constexpr int64_t kSeparabilityProbeBatch = 7;

class CompiledModelImpl final : public CompiledModel {
 public:
  // `fingerprint` names the model in the tuning cache (0: no model bytes).
  static absl::StatusOr<std::shared_ptr<CompiledModelImpl>> Create(Graph graph,
                                                                   const CompileOptions& options,
                                                                   uint64_t fingerprint = 0);
  ~CompiledModelImpl() override;

  const std::vector<TensorInfo>& inputs() const override { return inputs_; }
  const std::vector<TensorInfo>& outputs() const override { return outputs_; }
  bool batchable() const override { return batchable_; }
  int max_batch_size() const override { return batchable_ ? options_.max_batch_size : 1; }
  bool has_dynamic_dims() const override { return dynamic_dims_; }
  bool has_value_inputs() const override { return !value_inputs_.empty(); }
  // True when a batch may run as parts, each part a smaller batch of the
  // same model (FindBatchSeparable): every op keeps the samples apart.
  bool batch_separable() const { return batch_separable_; }
  // Not for models with dynamic dimensions besides the batch: their
  // batches form per input size, and an image's results would then depend
  // in the last bits on which images shared its batch (a one-thread part
  // plan may block oneDNN's reductions differently from the team's).
  bool batch_split_enabled() const {
    return options_.batch_split && batch_separable_ && !dynamic_dims_;
  }
  absl::Status CheckInputShapes(const InputShapes& shapes) const override;
  absl::StatusOr<InputShapes> OutputShapes(const InputShapes& shapes) const override;
  absl::StatusOr<std::string> DescribePlan(int batch) const override;
  absl::StatusOr<std::string> DescribePlanForShapes(const InputShapes& shapes) const override;
  const ActivationSummary& activation_summary() const override { return activation_summary_; }
  std::vector<ActivationLayerStats> activation_statistics() const override {
    return activation_stats_.Snapshot();
  }
  int activation_stats_sample_every() const { return options_.activation_stats_sample_every; }
  ActivationStatsAccumulator& activation_stats() const { return activation_stats_; }

  // The plan for these input shapes (which CheckInputShapes accepts),
  // compiled on first use. Thread-safe; plans are immutable and live while
  // the cache or an execution holds them. A compile runs without the
  // model's lock: plans already compiled are served meanwhile, and
  // concurrent callers for the same new signature wait for that one compile
  // instead of compiling it again.
  // `values`: the bytes of value_inputs(), in order (empty when it is).
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> GetPlan(
      const InputShapes& shapes, const std::vector<std::string>& values = {}) const;
  // The plan for these shapes compiled for one thread, whatever the calling
  // thread's team, in conv layout `layout` (never kTuned): the parts of a
  // split batch run it.
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> GetOneThreadPlan(const InputShapes& shapes,
                                                                       ConvLayout layout) const;
  // Indices of the inputs whose values select the plan (FindValueInputs):
  // a new value compiles a new plan, as a new shape does.
  const std::vector<size_t>& value_inputs() const { return value_inputs_; }
  // The same for `batch` (ignored for non-batchable models) and the load
  // shapes' other dimensions.
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> GetPlan(int batch) const {
    return GetPlan(ShapesForBatch(batch));
  }
  // Plans compiled so far (failed compiles included).
  int compiles() const;
  PlanCacheStats plan_cache_stats() const override;
  // Tests only: runs at the start of every later compile, on the compiling
  // thread, outside the model's lock. Set it before any concurrent use.
  void set_compile_hook_for_test(std::function<void(const InputShapes& shapes)> hook) {
    compile_hook_ = std::move(hook);
  }
  const dnnl::engine& engine() const { return engine_; }
  // Shapes of the inputs for `batch`: the load shapes with dim 0 replaced.
  InputShapes ShapesForBatch(int batch) const;

  // Bytes held for constants: `graph` in the optimized graph (plain, as
  // imported or folded; plans are compiled from it), `compiled` in the
  // layouts the plans compiled so far use (shared by all of them).
  struct ConstantBytes {
    size_t graph = 0;
    size_t compiled = 0;
  };
  ConstantBytes constant_bytes() const;

 private:
  CompiledModelImpl(Graph graph, const CompileOptions& options, uint64_t fingerprint);
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> Compile(const PlanKey& key) const;
  // Builds the plan of one key with a conv layout (and, in a tuned
  // variant, without the channel split) and constant cache.
  using PlanBuildFn = std::function<absl::StatusOr<std::unique_ptr<CompiledPlan>>(
      const TunedVariant& variant, ConstantCache* cache)>;
  // CompileOptions::conv_layout = kTuned: the variant remembered for `key`,
  // or each candidate built and timed (conv_tuning.h).
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompileTuned(const PlanKey& key,
                                                                   const PlanBuildFn& build) const;
  // A plan that is not timed: the variant of the nearest tuned plan of the
  // load shapes at a batch up to min(batch, kMaxTunedBatch), else kAny.
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompileInherited(int batch,
                                                                       const PlanBuildFn& build,
                                                                       int threads) const;
  // Builds every candidate, times them (TimePlans), keeps and stores the
  // fastest.
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> TuneAndCompile(const std::string& plan_key,
                                                                     const PlanBuildFn& build,
                                                                     int threads) const;
  // Compile() with every exception turned into a status.
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompileNoThrow(const PlanKey& key) const;
  // The cached plan of `key`, or compiled now (GetPlan's cache logic).
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> GetPlanFor(const PlanKey& key) const;
  // Checks the declared inputs, sets batchable_, dynamic_dims_ and
  // load_shapes_ (from options_.load_shapes or the default probe).
  absl::Status SetInputs();
  // Learns outputs_ from the load plan, marking -1 every output dimension
  // that changes when the dynamic input dimensions do, and sets
  // batch_separable_.
  absl::Status SetOutputs(const CompiledPlan& load_plan);

  // One signature's plan: being compiled (`done` false) or done.
  struct PlanSlot {
    bool done = false;
    absl::StatusOr<std::shared_ptr<const CompiledPlan>> plan;
    uint64_t last_used = 0;  // tick_ of the last GetPlan that returned it
  };
  // Drops least recently used finished plans, never `keep`, until at most
  // max_cached_plans are held.
  void EvictLocked(const PlanKey& keep) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Graph graph_;  // after batch-independent passes
  CompileOptions options_;
  std::vector<TensorInfo> inputs_, outputs_;
  bool batchable_ = false;
  bool dynamic_dims_ = false;
  bool batch_separable_ = false;
  InputShapes load_shapes_;  // concrete; what the model was checked with at load
  ActivationSummary activation_summary_;
  mutable ActivationStatsAccumulator activation_stats_;
  dnnl::engine engine_;
  mutable absl::Mutex mu_;
  std::vector<size_t> value_inputs_;
  mutable std::map<PlanKey, std::shared_ptr<PlanSlot>> plans_ ABSL_GUARDED_BY(mu_);
  mutable int compiles_ ABSL_GUARDED_BY(mu_) = 0;
  mutable int64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
  mutable int64_t hits_ ABSL_GUARDED_BY(mu_) = 0;
  mutable int64_t misses_ ABSL_GUARDED_BY(mu_) = 0;
  mutable uint64_t tick_ ABSL_GUARDED_BY(mu_) = 0;
  mutable ConstantCache constants_;  // thread-safe itself
  // graph_'s constants: the ones plans may share through constants_ (a
  // value folded per input shape may differ between plans under one name).
  std::set<std::string> shared_constant_names_;
  std::function<void(const InputShapes& shapes)> compile_hook_;
  std::unique_ptr<TuningCache> tuning_;  // thread-safe itself
};

// Time spent running candidates when a tuned plan compiles: rounds of two
// runs per candidate (an untimed one, so that the timed one finds the
// plan's weights in the caches), until kTuningMaxRounds rounds or this
// budget (at least one round). Small models get many rounds; candidates
// are compared by their best time.
inline constexpr double kTuningBudgetMs = 1500;
inline constexpr int kTuningMaxRounds = 5;
// Largest batch whose plans are timed; larger ones take the choice made at
// this batch (their timing would stall the first request of that size).
inline constexpr int kMaxTunedBatch = 8;

// Runs `plans` (of `model`, same inputs) alternately on the calling thread
// with `threads` OpenMP threads, in rounds (above); the best time of each,
// in ms. Inputs are filled with 0.1 (integers with 0).
absl::StatusOr<std::vector<double>> TimePlans(
    const CompiledModelImpl& model, const std::vector<std::shared_ptr<const CompiledPlan>>& plans,
    int threads, double budget_ms);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_RUNTIME_COMPILED_MODEL_IMPL_H_
