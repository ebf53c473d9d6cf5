// Element-wise ops: the mapping of ONNX unary activations onto the IR's
// element-wise functions (shared by lowering and the activation-fusion pass).
#ifndef RECTIFIER_SERVER_ENGINE_OPS_ELEMENTWISE_H_
#define RECTIFIER_SERVER_ENGINE_OPS_ELEMENTWISE_H_

#include <vector>

#include "server/engine/ir/ir.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {

// If `node` is a float unary op the post-op functions compute (possibly as
// a chain, e.g. HardSigmoid = linear + clip), appends the chain to `ops` and returns true.
// Clip needs constant bounds. Returns false (and leaves `ops`) otherwise.
bool MapToEltwise(const Node& node, const std::vector<ValueInfo>& in, std::vector<PostOp>& ops);

// Same, for graph-level fusion before shapes are known: constant inputs are
// looked up in `graph`.
bool MapToEltwise(const Node& node, const Graph& graph, std::vector<PostOp>& ops);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_OPS_ELEMENTWISE_H_
