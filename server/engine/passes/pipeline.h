// The pass pipelines: which graph passes run, in which order, once at load
// and once per concrete input shape. Every pass has one signature and
// reports how many rewrites it made; RunPipeline logs each count (debug).
#ifndef RECTIFIER_SERVER_ENGINE_PASSES_PIPELINE_H_
#define RECTIFIER_SERVER_ENGINE_PASSES_PIPELINE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/compiled_model.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

struct PassContext {
  explicit PassContext(const CompileOptions& o, ActivationSummary* s = nullptr)
      : options(o), summary(s) {}
  const CompileOptions& options;
  // Filled by the activation passes at load; nullptr per shape.
  ActivationSummary* summary;
  // Rewrites per pass name in this run (a pass may depend on an earlier
  // one's count).
  std::map<std::string, int> counts;
};

// Rewrites `graph`; returns the number of rewrites (0 when disabled by the
// options).
using PassFn = absl::StatusOr<int> (*)(Graph& graph, PassContext& ctx);

struct Pass {
  const char* name;
  PassFn run;
};

// Run once at load, before any shape is known.
const std::vector<Pass>& LoadPipeline();
// Run per concrete input shape, starting with shape inference.
const std::vector<Pass>& ShapePipeline();

// Runs `passes` in order; the first error stops it. `stage` names the
// pipeline in the log ("load", "shape").
absl::Status RunPipeline(const std::vector<Pass>& passes, Graph& graph, PassContext& ctx,
                         const char* stage);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_PASSES_PIPELINE_H_
