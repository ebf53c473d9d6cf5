// Graph passes, each a small named function over the IR (ncnn style). Passes
// that need shapes read Graph::value_info, which shape inference fills.
#ifndef RECTIFIER_SERVER_ENGINE_PASSES_PASSES_H_
#define RECTIFIER_SERVER_ENGINE_PASSES_PASSES_H_

#include "absl/status/status.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

// Every node's op is in the registry. UNIMPLEMENTED otherwise:
// "unsupported op 'Foo' (node 'n3', opset 13)".
absl::Status CheckSupportedOps(const Graph& graph);

// Removes Identity, Dropout (when its mask is unused) and Cast to the type
// the input already has (when that type is known), rewiring consumers.
// Nodes whose output is a graph output are kept (they become copies).
int EliminateIdentities(Graph& graph);

// Evaluates nodes whose inputs are all constants with their reference
// kernels; their outputs become constants. Requires topological order.
absl::Status FoldConstants(Graph& graph, int64_t max_tensor_bytes);

// Removes nodes none of whose outputs reach a graph output, and constants
// nothing reads.
int EliminateDeadNodes(Graph& graph);

// Conv/ConvTranspose/Gemm followed by BatchNormalization (constant
// parameters; the intermediate has one consumer and is not a graph output)
// become one node with rescaled weights and bias.
int FoldBatchNorm(Graph& graph);

// Conv/ConvTranspose/Gemm followed by Add/Sub/Mul with a constant that is
// per output channel (or a scalar) folds into the bias (and, for Mul, the
// weights), same single-consumer rules as FoldBatchNorm.
int FoldBiasAdd(Graph& graph);

// Unary activations (and the x*sigmoid(x) SiLU pattern) following a
// Conv/ConvTranspose/Gemm/MatMul become eltwise post-ops of that node.
int FuseActivations(Graph& graph);

// Add(conv_out, other) where conv_out has one consumer, is not a graph
// output and has the Add's output shape becomes a sum post-op on the conv
// (other is accumulated into the conv's destination). Needs value_info.
// Re-sorts the graph.
absl::StatusOr<int> FuseResidualAdd(Graph& graph);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_PASSES_PASSES_H_
