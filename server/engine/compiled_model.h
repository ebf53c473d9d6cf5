// CompiledModel: an ONNX model imported, optimized and lowered to oneDNN
// primitives. Immutable after Create and shared by every worker.
#ifndef RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_
#define RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/tensor.h"

namespace rectifier::engine {

// Per-model activation replacement: every activation of kind `from` becomes
// `to` (kind names as in docs/ENGINE.md "Activations": Relu, LeakyRelu,
// PRelu, Relu6, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish, Elu, Selu,
// Softplus, Mish, SiLU, Swish, Gelu; case-insensitive). `alpha`/`beta` are
// the target's parameters (LeakyRelu alpha; Clip min/max; HardSigmoid
// alpha/beta; Elu alpha; Selu alpha/gamma; Swish beta); unset ones take the
// ONNX defaults.
struct ActivationReplacement {
  std::string from;
  std::string to;
  std::optional<float> alpha;
  std::optional<float> beta;
};

// Which kernel computes tanh and GELU-tanh (CompileOptions::tanh_kernel) or
// SiLU (CompileOptions::silu_kernel).
enum class ActivationKernel {
  kOneDnn,     // oneDNN's eltwise kernel, fused as a post-op where possible
  kRectifier,  // our AVX2 kernel (fast_activations.h); after a Conv/Gemm it
               // runs as a separate in-place pass instead of a post-op
};

// The activation layout convolutions ask oneDNN for. Which is fastest
// depends on the CPU, the model and the batch: on AVX-512 oneDNN's own
// choice is NHWC with its brgemm kernels, which lose to the direct blocked
// kernels on MobileNet-style networks at batch 8.
enum class ConvLayout {
  kAny,           // format_tag::any: oneDNN's choice
  kBlocked8,      // nChw8c where the channels allow (the direct AVX2 kernels)
  kBlocked16,     // nChw16c where the channels allow (the direct AVX-512 kernels)
  kChannelsLast,  // NHWC
  kTuned,         // per plan, the fastest of the candidates this CPU runs
                  // (timed when the plan compiles; CompileOptions::tuning_cache_dir)
};
// "any", "blocked8", "blocked16", "nhwc", "tuned".
const char* ConvLayoutName(ConvLayout layout);

// Which kernel runs depthwise convolutions (CompileOptions::depthwise_kernel).
enum class DepthwiseKernel {
  kOneDnn,     // oneDNN's jit_dw everywhere
  kAuto,       // Rectifier's where it measured faster (docs/ENGINE.md)
  kRectifier,  // Rectifier's wherever it can run (to compare and test)
};

// Which kernel runs 3x3 stride-1 convolutions (CompileOptions::conv3x3_kernel).
enum class Conv3x3Kernel {
  kOneDnn,        // oneDNN's direct convolution everywhere
  kAuto,          // Rectifier's Winograd F(4x4, 3x3) or F(2x2, 3x3) where it measured faster
  kAutoF2x2,      // as kAuto without F(4x4, 3x3) (to compare)
  kWinograd,      // F(2x2, 3x3) wherever it can run (to compare and test)
  kWinogradF4x4,  // F(4x4, 3x3) wherever it can run (to compare and test)
};
// "onednn", "auto", "rectifier".
const char* DepthwiseKernelName(DepthwiseKernel kernel);
// The kernel named so; false for other names.
bool ParseDepthwiseKernel(std::string_view name, DepthwiseKernel* kernel);
// "onednn", "auto", "auto-f2x2", "winograd", "winograd-f4x4".
const char* Conv3x3KernelName(Conv3x3Kernel kernel);
// The kernel named so; false for other names.
bool ParseConv3x3Kernel(std::string_view name, Conv3x3Kernel* kernel);
// The layout named so; false for other names.
bool ParseConvLayout(std::string_view name, ConvLayout* layout);

struct CompileOptions {
  // Fuse activations / residual adds into producing primitives. Off keeps each
  // op a separate primitive (debugging, measuring).
  bool fuse = true;
  // Largest batch an execution may use; plans are built lazily per input-shape
  // signature (batch included) and cached.
  int max_batch_size = 64;
  // Plans kept per model (one per input-shape signature): a new plan beyond
  // this drops the least recently used one, which is compiled again if asked
  // for later. 0: no bound. The default covers every batch size of the
  // default max_batch_size, so a model whose only dynamic dimension is the
  // batch never evicts unless given a smaller bound.
  int max_cached_plans = 64;
  // Upper bounds on dynamic input dimensions, by input name, one entry per
  // dimension of the input (-1: no bound on that one; the batch is bounded by
  // max_batch_size). An input over its bound is refused with
  // INVALID_ARGUMENT before anything is compiled for it.
  std::map<std::string, std::vector<int64_t>> max_input_dims;
  // The input shapes compiled at load, by input name (full shapes), which
  // checks the model and gives outputs() its types and shapes. Inputs not
  // named get batch 1 and kDefaultProbeDim for every other dynamic
  // dimension (lowered to its max_input_dims bound). Ignored for a model
  // whose only dynamic dimension is the batch (its load plan is batch 1).
  std::map<std::string, std::vector<int64_t>> load_shapes;
  // Graph inputs bound to fixed values at compile time: they become
  // initializers (weights) and disappear from inputs(). Used by the
  // conformance tests (ONNX node tests pass weights as graph inputs) and for
  // models whose shape inputs are fixed by configuration.
  std::map<std::string, Tensor> constant_inputs;
  // Upper bound on the bytes of any single tensor (weights or activations);
  // larger ones fail compilation with RESOURCE_EXHAUSTED instead of crashing.
  int64_t max_tensor_bytes = int64_t{4} << 30;
  // Kernel for tanh and GELU-tanh (config.pbtxt: activation { kernel }).
  ActivationKernel tanh_kernel = ActivationKernel::kOneDnn;
  // Kernel for SiLU (config.pbtxt: activation { silu_kernel }): Rectifier's
  // short-chain SiLU (ops/depthwise.h, SiluFast) as a separate in-place
  // step after the producer, by default, which measured faster than
  // oneDNN's fused swish post-op (EfficientNet-B0 +9-11%, the YOLO-style
  // detector +2-4%, docs/PERFORMANCE.md "SiLU as a separate pass"); or
  // oneDNN's post-op (rectifier-engine --silu-kernel onednn). A depthwise
  // convolution on Rectifier's kernel computes its SiLU itself either way.
  ActivationKernel silu_kernel = ActivationKernel::kRectifier;
  // Rectifier's own kernels where oneDNN 2.6 has only a reference or generic
  // implementation: Softmax/LogSoftmax over an axis that is not the
  // innermost (a detector's DFL head), and channel Concat/Slice/Split in
  // blocked layouts as block copies. Off: oneDNN for all of them (to
  // compare; rectifier-engine --onednn-only).
  bool rectifier_kernels = true;
  // Zero-copy views: a Slice/Split that takes one contiguous range of its
  // source (channels at block-aligned offsets of a batch-1 tensor, or any
  // range of an axis with only 1s before it) reads its source's bytes in
  // place, and a Concat of such ranges has its inputs' producers write
  // straight into their part of its output, instead of copy steps. Off: the
  // copies (to compare; rectifier-engine --no-zero-copy). Needs
  // rectifier_kernels.
  bool zero_copy = true;
  // Depthwise fusion: a 1x1 convolution whose output only a depthwise 3x3
  // or 5x5 convolution reads computes both in one step (oneDNN's depthwise
  // post-op), where that pays: ReLU/clip activations, an expanded tensor
  // of at least 1 MiB per image, a channel-blocked layout and oneDNN's JIT
  // fused kernel. Off: two steps (to compare; rectifier-engine
  // --no-dw-fusion). Also off while activation_stats_sample_every > 0, so
  // that the statistics see the 1x1's activation.
  bool fuse_depthwise = true;
  // Squeeze and excitation (EfficientNet, MobileNetV3): GlobalAveragePool
  // -> 1x1 Conv (+ ReLU or SiLU) -> 1x1 Conv + Sigmoid -> Mul with the
  // pooled tensor, on an nChw8c tensor, as one step of Rectifier's
  // (server/engine/ops/squeeze_excite.h) instead of five oneDNN steps.
  // Off: the five steps (to compare; rectifier-engine --no-se-fusion). Also
  // off while activation_stats_sample_every > 0, so that the statistics see
  // the first convolution's activation.
  bool fuse_squeeze_excite = true;
  // Depthwise convolutions (groups == channels) in a channel-blocked or
  // NHWC layout on Rectifier's kernel (server/engine/ops/depthwise.h)
  // instead of oneDNN's jit_dw: kAuto where it measured faster (stride 1,
  // output at least 56 wide, at most 64 channels over the batch, or SiLU
  // when silu_kernel is kOneDnn), kRectifier
  // wherever it can run, kOneDnn never (rectifier-engine
  // --depthwise-kernel).
  DepthwiseKernel depthwise_kernel = DepthwiseKernel::kAuto;
  // 3x3 convolutions with stride 1, padding 1, one group, 8k input and
  // output channels, constant weights, in nChw8c (oneDNN's AVX2 choice) on
  // Rectifier's Winograd kernel (server/engine/ops/winograd.h) instead of
  // oneDNN's direct kernel: kAuto where it measured faster (F(4x4, 3x3)
  // from 24 4x4 output tiles over the batch, from 8 where F(2x2, 3x3) does
  // not run; else F(2x2, 3x3) from 48 2x2 tiles covering at most 1.15
  // times the output pixels; lower_winograd.cc), kAutoF2x2 the same without
  // F(4x4, 3x3), kWinograd / kWinogradF4x4 wherever it can run, kOneDnn
  // never (rectifier-engine --conv3x3-kernel).
  Conv3x3Kernel conv3x3_kernel = Conv3x3Kernel::kAuto;
  // Batch split: a context running T threads runs a batch of N images,
  // N a multiple of T (T >= 2), as T parts of N / T images at once, each
  // part on one thread with its own plan (compiled for one thread), instead
  // of the whole batch on a team of T threads. The parts share no
  // barriers, and on 2 threads they measured 1-4% faster at batch 8
  // (EfficientNet-B0 3-4%, the YOLO-style detector 0-3%; docs/ENGINE.md
  // "Threads and batch split"). Only for models whose ops keep the samples
  // of a batch apart (CompiledModelImpl::batch_separable) and whose only
  // dynamic dimension is the batch; never while activation statistics are
  // sampled. Off: every batch on the whole team
  // (rectifier-engine --no-batch-split; config.pbtxt parameters { key:
  // "batch_split" }).
  bool batch_split = true;
  // Channel split: a 1x1 convolution on oneDNN's jit_1x1 kernel at batch 1
  // with at most 100 output pixels (7x7 and 10x10 maps), in nChw8c (AVX2's
  // layout) with output channels that divide into T slices of whole blocks
  // (T = the plan's threads, >= 2), runs as T primitives at once, each
  // compiled for one thread over one slice of the output channels, instead
  // of one primitive on the team: oneDNN's kernel spreads so little work
  // poorly over two threads (1.2-1.3x faster per convolution at 7x7 on 2
  // AVX2 threads; docs/ENGINE.md "Channel split"). The outputs are
  // identical. Off: rectifier-engine --no-channel-split.
  bool channel_split = true;
  // Activation layout of convolutions (rectifier-engine --conv-layout,
  // config.pbtxt parameters { key: "conv_layout" }).
  ConvLayout conv_layout = ConvLayout::kAny;
  // kTuned: a directory where each choice is kept (a file per model, CPU
  // and thread count), so a later load of the same model skips the
  // timing. Empty: choices live as long as the model.
  std::string tuning_cache_dir;
  // Rewrite exporter patterns (x*Sigmoid(x), the erf GELU, ...) into single
  // activations before fusion. Off only to compare against the raw graph.
  bool activation_patterns = true;
  // Applied to the whole graph after pattern recognition, first matching
  // rule per activation. Outputs differ unless the weights were trained
  // with the target activation.
  std::vector<ActivationReplacement> replace;
  // "" keeps each Gelu as the model says; "erf" or "tanh" forces one form.
  std::string gelu_approximation;
  // Activation statistics (zero fraction, dead channels): 0 = off, N = scan
  // the activation outputs of every N-th execution of each context.
  int activation_stats_sample_every = 0;
};

struct CompiledPlan;  // per input-shape signature; defined in the engine internals

// One full shape per model input, in model order.
using InputShapes = std::vector<std::vector<int64_t>>;

// The size given to a dynamic non-batch dimension when a model is checked
// at load without CompileOptions::load_shapes.
inline constexpr int64_t kDefaultProbeDim = 64;

// The activations a model runs after pattern recognition and replacement.
struct ActivationSummary {
  std::map<std::string, int> counts;    // label ("Relu", "SiLU", "Gelu(erf)") -> layers
  std::map<std::string, int> patterns;  // pattern rewrites by result kind
  std::vector<std::string> replaced;    // "SiLU -> Relu: 57 layer(s)"
  // Non-empty when a replacement changed the model: "outputs differ unless
  // the weights were trained with Relu".
  std::string warning;
  // One line: "activations: Relu x16, SiLU x3; patterns: SiLU x3".
  std::string ToString() const;
};

// Activation statistics of one activation layer (a standalone activation or
// a producer with a fused activation), over the sampled executions so far.
struct ActivationLayerStats {
  std::string name;  // the activation's output value (ONNX tensor name)
  std::string kind;  // label, as in ActivationSummary
  int64_t channels = 0;
  int64_t sampled_count = 0;           // sampled executions that ran this layer
  double zero_fraction = 0.0;          // mean over samples of (exact zeros / elements)
  std::vector<int64_t> dead_channels;  // zero in every sampled output so far
};

class CompiledModel {
 public:
  // Parses, validates and compiles. Errors: INVALID_ARGUMENT for a malformed
  // or inconsistent model (message names the node/tensor), UNIMPLEMENTED for
  // an unsupported op ("op 'Foo' (node 'n3', opset 13) is not supported"),
  // RESOURCE_EXHAUSTED for tensors over max_tensor_bytes.
  static absl::StatusOr<std::shared_ptr<const CompiledModel>> FromFile(
      const std::string& path, const CompileOptions& options = {});
  static absl::StatusOr<std::shared_ptr<const CompiledModel>> FromBytes(
      std::string_view onnx_bytes, const CompileOptions& options = {});

  virtual ~CompiledModel() = default;

  // Graph inputs/outputs in model order; dynamic dimensions (the batch, and
  // any other the model declares symbolic) are -1. An output dimension is -1
  // when it follows a dynamic input dimension.
  virtual const std::vector<TensorInfo>& inputs() const = 0;
  virtual const std::vector<TensorInfo>& outputs() const = 0;
  // True when dim 0 of every input is dynamic, so requests can be batched.
  virtual bool batchable() const = 0;
  virtual int max_batch_size() const = 0;
  // True when some input dimension other than the batch is dynamic: each new
  // input-shape signature then compiles its own plan.
  virtual bool has_dynamic_dims() const = 0;

  // True when the plan depends on the values of some inputs (a weight, a
  // Resize scale or a Reshape shape given as a graph input): each new value
  // compiles its own plan, there is no load plan, and the model never
  // batches. Default warm-up has nothing to run for such a model.
  virtual bool has_value_inputs() const { return false; }

  // OK when `shapes` fit inputs(): one shape per input, each of its rank,
  // static dimensions equal, dynamic ones >= 1, the batch equal across
  // inputs and within max_batch_size(), and within max_input_dims.
  // INVALID_ARGUMENT otherwise, naming the input and both shapes.
  virtual absl::Status CheckInputShapes(const InputShapes& shapes) const = 0;
  // The output shapes for these input shapes, in outputs() order. Compiles
  // the plan for them if it is not cached.
  virtual absl::StatusOr<InputShapes> OutputShapes(const InputShapes& shapes) const = 0;

  // Human-readable plan for `batch`: nodes after fusion, layouts, and the
  // oneDNN implementation of each primitive. Compiles the plan if needed.
  // A model with other dynamic dimensions uses its load shapes for them.
  virtual absl::StatusOr<std::string> DescribePlan(int batch) const = 0;
  // The same for explicit input shapes.
  virtual absl::StatusOr<std::string> DescribePlanForShapes(const InputShapes& shapes) const = 0;

  // The effective activations (fixed at compile time).
  virtual const ActivationSummary& activation_summary() const = 0;
  // Snapshot of the activation statistics, one entry per activation layer
  // seen by a sampled execution, in execution order; empty when
  // activation_stats_sample_every is 0. Thread-safe.
  virtual std::vector<ActivationLayerStats> activation_statistics() const = 0;

  // The plan cache: plans compiled (failed compiles included), plans dropped
  // by the max_cached_plans bound, plans held now, and lookups that found a
  // finished plan (hits) or had to compile or wait for one (misses).
  // Thread-safe.
  struct PlanCacheStats {
    int64_t compiles = 0;
    int64_t evictions = 0;
    int cached = 0;
    int64_t hits = 0;
    int64_t misses = 0;
  };
  virtual PlanCacheStats plan_cache_stats() const = 0;
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_COMPILED_MODEL_H_
