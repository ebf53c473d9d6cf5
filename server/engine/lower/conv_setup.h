// What the convolution lowerings share (lower_conv.cc, lower_dw_fusion.cc):
// a Conv/ConvTranspose node resolved before any primitive is chosen, and
// depthwise fusion's entry point.
#ifndef RECTIFIER_SERVER_ENGINE_LOWER_CONV_SETUP_H_
#define RECTIFIER_SERVER_ENGINE_LOWER_CONV_SETUP_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/ir/ir.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/conv_pool.h"
#include "server/engine/ops/depthwise.h"

namespace rectifier::engine {

// What a convolution node resolves to before any primitive is chosen.
struct ConvSetup {
  bool transpose = false;
  WindowGeometry geo;
  const Tensor* weights = nullptr;  // nullptr: given at run time (a graph input or computed)
  std::vector<int64_t> weights_shape;
  const Tensor* bias = nullptr;  // nullptr: no bias input, or one given at run time
  bool runtime_bias = false;
  bool has_bias() const { return bias != nullptr || runtime_bias; }
  dnnl::memory::desc w_src;  // the ONNX weights, in oneDNN dims
  dnnl::memory::desc any_src, dst_any, w_any, b_md;
  dnnl::memory::dims strides, dil, pl, pr;
};

// Resolves `node` (Conv or ConvTranspose) for input shape `xs`: weights and
// bias (constant or given at run time), geometry, oneDNN descriptors.
absl::StatusOr<ConvSetup> ResolveConvSetup(const Graph& g, const Node& node,
                                           const std::vector<int64_t>& xs);

// Appends the node's post-ops `ops` (eltwise, sum, PReLU) to `po`.
void AppendConvPostOps(PlanBuilder& b, const ConvSetup& c, const std::vector<PostOp>& ops,
                       dnnl::post_ops& po);
// The (de)convolution primitive descriptor for source layout `src`,
// destination `dst` and post-ops `po`. Throws dnnl::error when oneDNN has no
// implementation.
dnnl::primitive_desc MakeConvPd(PlanBuilder& b, const ConvSetup& c, const dnnl::memory::desc& src,
                                const dnnl::memory::desc& dst, const dnnl::post_ops& po);

// The plan values a convolution primitive `pd` of `node` reads as weights
// and bias (-1: none): constants reordered once into pd's layouts (shared
// by convolutions with the same initializer), or run-time tensors reordered
// by a step.
struct ConvOperands {
  int weights = -1;
  int bias = -1;
};
absl::StatusOr<ConvOperands> BindConvOperands(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                              const dnnl::primitive_desc& pd);

// A post-op's name in plan labels ("relu", "clip", "sum", ...).
std::string PostOpName(const PostOp& op);

// Depthwise fusion (CompileOptions::fuse_depthwise): when `node` is a 1x1
// convolution (setup `c`, input value `x`) whose output only a depthwise
// convolution reads, and the conditions of lower_dw_fusion.cc hold, lowers
// both as one step and returns true; else false with nothing added.
absl::StatusOr<bool> TryLowerDepthwiseFused(PlanBuilder& b, const Node& node, const ConvSetup& c,
                                            int x);

// Rectifier's depthwise kernel (CompileOptions::depthwise_kernel): when
// `node` is a depthwise convolution (input value `x`) that oneDNN would run
// as `pd` with all of the node's post-ops, in a layout and with an
// activation the kernel takes, and the option selects it for this shape,
// adds its step (labelled `label` and the kernel) in pd's layouts and
// returns true; else false with nothing added.
absl::StatusOr<bool> TryLowerDepthwiseRectifier(PlanBuilder& b, const Node& node,
                                                const ConvSetup& c, int x,
                                                const dnnl::primitive_desc& pd,
                                                const std::string& label);

// How many of `node`'s post-ops (a prefix: 0 or 1) Rectifier's Winograd
// kernel computes: a clip / ReLU, or SiLU when Rectifier runs SiLU
// (CompileOptions::silu_kernel).
size_t WinogradFusedPostOps(const PlanBuilder& b, const Node& node);
// Rectifier's Winograd kernels (CompileOptions::conv3x3_kernel):
// when `node` is a 3x3 convolution (input value `x`) with stride 1, padding
// 1, one group and constant weights that oneDNN would run as `pd` in
// nChw8c, and the option selects it for this shape, adds its step
// (labelled `label()` and the kernel) computing the node's first
// WinogradFusedPostOps post-ops and returns its output value; else -1 with
// nothing added. The caller emits the node's remaining post-ops.
// A GlobalAveragePool starting a squeeze-and-excitation block lowered as
// one step (lower_squeeze_excite.cc, ops/squeeze_excite.h), the block's
// convolutions and multiply absorbed; false where the pattern or its
// conditions do not hold (the pooling is then lowered as usual).
absl::StatusOr<bool> TryLowerSqueezeExcite(PlanBuilder& b, const Node& pool);

absl::StatusOr<int> TryLowerWinograd(PlanBuilder& b, const Node& node, const ConvSetup& c, int x,
                                     const dnnl::primitive_desc& pd,
                                     const std::function<std::string()>& label);
// A convolution's plan label (which names oneDNN's weight layout for `pd`)
// for a Rectifier kernel step that reads its own weight layout `layout`.
std::string WithWeightLayout(std::string label, const dnnl::primitive_desc& pd,
                             const std::string& layout);
// 8 or 16 when `md` is `shape` in nChw8c or nChw16c, else 0.
int BlockedLanes(const dnnl::memory::desc& md, const std::vector<int64_t>& shape);
// The node's first post-op as a kernel activation (clip / ReLU or SiLU);
// false when it is none of them (or there is none: then act stays kNone).
bool KernelActivation(const std::vector<PostOp>& ops, DepthwiseAct* act, float* lo, float* hi);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_LOWER_CONV_SETUP_H_
