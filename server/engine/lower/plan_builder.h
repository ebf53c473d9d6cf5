// PlanBuilder: lowers a shape-inferred, fused Graph into a CompiledPlan.
// oneDNN ops keep whatever layout their producer chose (blocked layouts flow
// through eltwise/binary/pool/concat); reference kernels get plain inputs;
// reorders are added only where memory descriptors differ.
#ifndef RECTIFIER_SERVER_ENGINE_LOWER_PLAN_BUILDER_H_
#define RECTIFIER_SERVER_ENGINE_LOWER_PLAN_BUILDER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/compiled_model.h"
#include "server/engine/ir/ir.h"
#include "server/engine/lower/plan.h"
#include "server/engine/ops/fast_activations.h"

namespace rectifier::engine {

class PlanBuilder {
 public:
  // `graph` must have gone through InferShapes (and any fusion passes).
  // `cache` (optional) shares reordered constants between plans.
  PlanBuilder(const Graph& graph, int batch, dnnl::engine engine, ConstantCache* cache = nullptr);

  // Lowers every node, plans memory, writes the description.
  absl::StatusOr<std::unique_ptr<CompiledPlan>> Build();

  // ---- used by the per-family lowering functions ----
  const Graph& graph() const { return graph_; }
  dnnl::engine& engine() { return engine_; }
  CompiledPlan& plan() { return *plan_; }
  void set_tanh_kernel(ActivationKernel k) { tanh_kernel_ = k; }
  ActivationKernel tanh_kernel() const { return tanh_kernel_; }
  void set_rectifier_kernels(bool on) { rectifier_kernels_ = on; }
  // Only constants named here (or derived from one: "NAME@...") go through
  // the shared cache; others, such as values folded from the input shape,
  // differ between plans under the same name. Null: all are shared.
  void set_shared_constants(const std::set<std::string>* names) { shared_names_ = names; }
  // Names the plan by its input shapes instead of its batch (models with
  // dynamic dimensions besides the batch).
  void set_shapes_label(std::string label) { plan_->shapes_label = std::move(label); }
  bool rectifier_kernels() const { return rectifier_kernels_; }
  // Zero-copy views (CompileOptions::zero_copy): slices that are one
  // contiguous range of their source, and concats whose inputs are, become
  // views of one buffer instead of copy steps.
  void set_zero_copy(bool on) { zero_copy_ = on; }
  bool zero_copy() const { return zero_copy_; }
  // The activation layout convolutions ask for (CompileOptions::conv_layout;
  // never kTuned here: the model picks a concrete one per plan).
  void set_conv_layout(ConvLayout layout) { conv_layout_ = layout; }
  ConvLayout conv_layout() const { return conv_layout_; }
  // Depthwise fusion (CompileOptions::fuse_depthwise): a 1x1 convolution
  // computes the depthwise convolution that alone reads its output, as
  // oneDNN's depthwise post-op.
  void set_fuse_depthwise(bool on) { fuse_depthwise_ = on; }
  bool fuse_depthwise() const { return fuse_depthwise_; }
  // Squeeze-and-excitation blocks as one step (CompileOptions::fuse_squeeze_excite).
  void set_fuse_squeeze_excite(bool on) { fuse_squeeze_excite_ = on; }
  bool fuse_squeeze_excite() const { return fuse_squeeze_excite_; }
  // Kernel for SiLU (CompileOptions::silu_kernel).
  void set_silu_kernel(ActivationKernel k) { silu_kernel_ = k; }
  ActivationKernel silu_kernel() const { return silu_kernel_; }
  // Which kernel runs depthwise convolutions (CompileOptions::depthwise_kernel).
  void set_depthwise_kernel(DepthwiseKernel k) { depthwise_kernel_ = k; }
  DepthwiseKernel depthwise_kernel() const { return depthwise_kernel_; }
  // Which kernel runs 3x3 convolutions (CompileOptions::conv3x3_kernel).
  void set_conv3x3_kernel(Conv3x3Kernel k) { conv3x3_kernel_ = k; }
  Conv3x3Kernel conv3x3_kernel() const { return conv3x3_kernel_; }
  // Small 1x1 convolutions split by output channels over the threads
  // (CompileOptions::channel_split).
  void set_channel_split(bool on) { channel_split_ = on; }
  bool channel_split() const { return channel_split_; }

  // Index in graph().nodes of the node being lowered.
  size_t current_node() const { return current_node_; }
  // Node `index` (after the current one) was lowered together with the
  // current node: Build skips it and records its activation site (if any)
  // at the current node's last step.
  void Absorb(size_t index) {
    absorbed_.insert(index);
    just_absorbed_.push_back(index);
  }

  // Value id of a graph value (created for constants on first use).
  absl::StatusOr<int> Value(const std::string& name);
  // A new arena value.
  int NewValue(const std::string& name, DataType type, const std::vector<int64_t>& shape,
               const dnnl::memory::desc& md);
  // Binds graph value `name` to plan value `id` (the node's output).
  void Define(const std::string& name, int id) { ids_[name] = id; }
  // `v` in layout `md`: `v` itself if equal, else a (cached) reordered copy;
  // constants are reordered once here at compile time.
  absl::StatusOr<int> InLayout(int v, const dnnl::memory::desc& md);
  absl::StatusOr<int> Plain(int v) { return InLayout(v, PlainMd(values()[v].shape)); }
  // A new value over the same bytes as plain value `v`, read through `md`
  // (same size: other dims or strides, e.g. grouped or transposed weights).
  int ViewAs(int v, const std::string& name, const dnnl::memory::desc& md);
  // Drops `copy` from the layout cache of `v`, so that later readers of `v`
  // do not see it once it is overwritten (in-place sum).
  void ForgetLayout(int v, int copy);
  // Adds a primitive step; `args` map DNNL_ARG_* to value ids.
  void AddPrimitive(const dnnl::primitive_desc_base& pd, dnnl::primitive prim,
                    std::vector<std::pair<int, int>> args, const std::string& label,
                    const std::vector<int>& extra_reads = {});
  // Adds one step running `parts` (primitive steps, see PlanStep::parts) at
  // once; `reads` and `writes` are the whole step's values.
  void AddPrimitiveParts(std::vector<PlanStep> parts, std::vector<int> reads,
                         std::vector<int> writes, const std::string& label);
  // A new value over `v`'s bytes from `offset` on, read through `md`.
  int ViewAt(int v, const std::string& name, const dnnl::memory::desc& md, size_t offset);
  // Adds a reference kernel step over plain inputs, creating plain outputs.
  absl::Status AddReference(const Node& node);
  // A constant float tensor as a plan constant with layout `md` (reordered
  // from `src_md` describing `data`).
  absl::StatusOr<int> ConstantInLayout(const std::string& name, const void* data,
                                       const dnnl::memory::desc& src_md,
                                       const dnnl::memory::desc& md,
                                       const std::vector<int64_t>& shape);
  // `data` (described by `src_md`) reordered into `out` (`md`'s bytes), as
  // ConstantInLayout does but uncached: to compare layouts at compile time.
  absl::Status ReorderInto(const std::string& name, const void* data,
                           const dnnl::memory::desc& src_md, const dnnl::memory::desc& md,
                           void* out);
  // A constant of `floats` floats (a plain 1-D value) that `fill` computes
  // from other constants, e.g. a kernel's own weight layout; computed once
  // per name where the model shares constants between plans.
  absl::StatusOr<int> ComputedConstant(const std::string& name, int64_t floats,
                                       const std::function<void(float*)>& fill);

  // True when no node after the one being lowered reads graph value `name`,
  // no earlier node viewed it through an alias (Reshape...), and it is not a
  // graph output: its buffer may then be overwritten in place.
  bool IsLastRead(const std::string& name) const;
  // True when a node after the one being lowered, or a graph output, reads
  // a value stored in the same buffer as `v` (its root): another view of it
  // (a slice, a concat's other input or its output) or a layout copy kept
  // for a later reader (except `skip`). Writing `v` in place is then unsafe
  // even where IsLastRead(v's name) holds. Node `skip_node` (a later node
  // lowered together with the current one) is not counted.
  bool StorageReadLater(int v, int skip = -1, int skip_node = -1) const;

  std::vector<PlanValue>& values() { return plan_->values; }
  static dnnl::memory::desc PlainMd(const std::vector<int64_t>& shape);
  static dnnl::memory::dims Dims(const std::vector<int64_t>& shape);

 private:
  absl::Status LowerNode(const Node& node);
  absl::Status LowerAlias(const Node& node);
  // Notes `node`'s output as an activation layer when it is one.
  void RecordActivationSite(const Node& node, size_t steps_before);
  absl::Status FinishOutputs();
  std::string Describe() const;

  const Graph& graph_;
  dnnl::engine engine_;
  ConstantCache* cache_;
  const std::set<std::string>* shared_names_ = nullptr;
  // The cache, when constant `name` may be shared between plans.
  ConstantCache* CacheFor(const std::string& name) const;
  // A constant value of layout `md`, its bytes written by `fill` unless the
  // model's constant cache already holds them under `name` and `md`.
  absl::StatusOr<int> CachedConstant(const std::string& name, const dnnl::memory::desc& md,
                                     const std::vector<int64_t>& shape,
                                     const std::function<absl::Status(void*)>& fill);
  dnnl::stream compile_stream_;
  std::unique_ptr<CompiledPlan> plan_;
  std::map<std::string, int> ids_;
  size_t current_node_ = 0;
  // (value id) -> values holding the same data in other layouts.
  std::map<int, std::vector<int>> layouts_;
  ActivationKernel tanh_kernel_ = ActivationKernel::kOneDnn;
  bool rectifier_kernels_ = true;
  ConvLayout conv_layout_ = ConvLayout::kAny;
  bool zero_copy_ = true;
  bool fuse_depthwise_ = true;
  bool fuse_squeeze_excite_ = true;
  DepthwiseKernel depthwise_kernel_ = DepthwiseKernel::kAuto;
  Conv3x3Kernel conv3x3_kernel_ = Conv3x3Kernel::kAuto;
  bool channel_split_ = true;
  ActivationKernel silu_kernel_ = ActivationKernel::kRectifier;
  std::set<size_t> absorbed_;
  std::vector<size_t> just_absorbed_;  // by the node being lowered
};

// Per-family lowerings: true when lowered to oneDNN, false when the node
// should run as its reference kernel instead.
absl::StatusOr<bool> LowerConvolution(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerPooling(PlanBuilder& b, const Node& node);
// ReduceMean / ReduceMax over exactly the spatial dims (2...) of an N-C-...
// tensor, as global average / max pooling in the producer's layout.
absl::StatusOr<bool> LowerSpatialReduce(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerEltwise(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerBinary(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerConcat(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerSoftmax(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerMatMul(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerSliceSplit(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerResize(PlanBuilder& b, const Node& node);
absl::StatusOr<bool> LowerBatchNorm(PlanBuilder& b, const Node& node);

// A dense descriptor of `dims` in the same layout family as `ref` (same dim
// order, same channel blocking). FAILED_PRECONDITION for other layouts.
absl::StatusOr<dnnl::memory::desc> SameLayout(const dnnl::memory::desc& ref,
                                              const dnnl::memory::dims& dims);

// True when a step label names a generic implementation: oneDNN's `ref:`
// or `simple:` kernels, or the engine's plain reference kernels. The plan
// description marks such steps "<- generic"; the zoo models have none
// beyond the listed exceptions (tests/engine/generic_kernels_test.py).
bool RunsGenericKernel(const std::string& label);

// Layout in oneDNN's letter notation ("abcd" plain NCHW, "aBcd8b" = nChw8c).
std::string LayoutName(const dnnl::memory::desc& md);
// Appends oneDNN eltwise steps for `ops` after value `v`; returns the result.
// Ops that UsesRectifierKernel selects run as Rectifier kernel steps
// instead, in place when `v` is private to this chain (`v_private`: an
// intermediate nobody else reads) or for every op after the first.
absl::StatusOr<int> EmitEltwiseChain(PlanBuilder& b, int v, const std::vector<PostOp>& ops,
                                     const std::string& name, const std::string& label,
                                     bool v_private = false);

// True (and the function in `f`) when `op` is tanh or GELU-tanh and the
// plan was asked to run those with Rectifier's kernel, or SiLU (swish with
// alpha 1) and the plan runs SiLU on Rectifier's (kSilu, computed with
// SiluFast): such ops are not fused into a producing primitive.
bool UsesRectifierKernel(const PlanBuilder& b, const PostOp& op, FastActivation* f = nullptr);

// Adds a Rectifier activation kernel step over value `v` (any dense layout,
// blocked padding included); in place when `in_place`. Returns the result.
absl::StatusOr<int> EmitRectifierActivation(PlanBuilder& b, int v, FastActivation f,
                                            const std::string& name, const std::string& label,
                                            bool in_place);

// Adds a Rectifier softmax step (SoftmaxMiddleAxis) over plain value `x`
// viewed as [outer, axis, inner]; returns the plain output value `name`.
absl::StatusOr<int> EmitRectifierSoftmax(PlanBuilder& b, int x, int64_t outer, int64_t axis,
                                         int64_t inner, bool log, const std::string& name,
                                         const std::string& label);

// Concat of `srcs` along `axis`, and Slice/Split of `x` along `axis` into
// (offset, extent) `ranges` (one per node output), as Rectifier row-copy
// steps (lower_copy.cc): false when the layouts are not plain or
// channel-blocked with aligned offsets, or CompileOptions::rectifier_kernels
// is off; oneDNN then lowers them.
absl::StatusOr<bool> LowerConcatAsCopies(PlanBuilder& b, const Node& node,
                                         const std::vector<int>& srcs, int axis);
absl::StatusOr<bool> LowerSliceAsCopies(PlanBuilder& b, const Node& node, int x, int axis,
                                        const std::vector<std::pair<int64_t, int64_t>>& ranges);

// PRelu: the slope (graph constant `slope`) broadcast to `rank` dims
// (leading 1s), or empty when it does not broadcast onto `shape`.
std::vector<int64_t> PreluSlopeDims(const Graph& graph, const std::string& slope,
                                    const std::vector<int64_t>& shape);
// Post-op mask of a prelu post-op with slope dims `dims` (bit d set where
// the slope varies along dim d).
int PreluMask(const std::vector<int64_t>& dims);
// The slope as a plan constant with dims `dims` (plain layout), the form a
// prelu post-op reads (DNNL_ARG_ATTR_MULTIPLE_POST_OP(i) | DNNL_ARG_WEIGHTS).
absl::StatusOr<int> PreluSlopeValue(PlanBuilder& b, const std::string& slope,
                                    const std::vector<int64_t>& dims);
// A standalone oneDNN prelu step computing PRelu(v, slope); -1 when the
// slope does not broadcast onto v.
absl::StatusOr<int> EmitPrelu(PlanBuilder& b, int v, const std::string& slope,
                              const std::string& name, const std::string& label);

// Primitive attributes with the scratchpad supplied by the caller (every
// plan step: the ExecutionContext owns one scratchpad).
dnnl::primitive_attr UserScratchpad();

// The oneDNN eltwise algorithm computing `fn`.
dnnl::algorithm DnnlEltwise(EltwiseFn fn);

// "dnnl error ... in <what>": converts a caught dnnl::error.
absl::Status DnnlError(const dnnl::error& e, const std::string& what);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_LOWER_PLAN_BUILDER_H_
