// Shape inference with constant folding for a graph whose input shapes are
// fully known (plans are compiled per batch size). Shape subgraphs (Shape,
// Gather, Concat, Unsqueeze, arithmetic...) collapse into constants here.
#ifndef RECTIFIER_SERVER_ENGINE_PASSES_SHAPE_INFERENCE_H_
#define RECTIFIER_SERVER_ENGINE_PASSES_SHAPE_INFERENCE_H_

#include "absl/status/status.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

// REQUIRES: topological order; every graph input shape concrete.
// Fills graph.value_info for every value and replaces foldable nodes by
// constants. Errors name the node; RESOURCE_EXHAUSTED for tensors over
// max_tensor_bytes.
absl::Status InferShapes(Graph& graph, int64_t max_tensor_bytes);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_PASSES_SHAPE_INFERENCE_H_
