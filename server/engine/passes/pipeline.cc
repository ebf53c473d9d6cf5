#include "server/engine/passes/pipeline.h"

#include "server/common/status_macros.h"
#include "server/engine/passes/activations.h"
#include "server/engine/passes/passes.h"
#include "server/engine/passes/shape_inference.h"
#include "spdlog/spdlog.h"

namespace rectifier::engine {
namespace {

absl::StatusOr<int> CheckOps(Graph& g, PassContext& /*ctx*/) {
  RETURN_IF_ERROR(CheckSupportedOps(g));
  return 0;
}

absl::StatusOr<int> Identities(Graph& g, PassContext& /*ctx*/) { return EliminateIdentities(g); }

absl::StatusOr<int> Constants(Graph& g, PassContext& ctx) {
  const size_t before = g.nodes.size();
  RETURN_IF_ERROR(FoldConstants(g, ctx.options.max_tensor_bytes));
  return static_cast<int>(before - g.nodes.size());
}

absl::StatusOr<int> DeadNodes(Graph& g, PassContext& /*ctx*/) { return EliminateDeadNodes(g); }

absl::StatusOr<int> Patterns(Graph& g, PassContext& ctx) {
  if (!ctx.options.activation_patterns) return 0;
  std::map<std::string, int> patterns = RecognizeActivationPatterns(g);
  int total = 0;
  for (const auto& [kind, n] : patterns) total += n;
  if (ctx.summary != nullptr) ctx.summary->patterns = std::move(patterns);
  return total;
}

absl::StatusOr<int> Replacements(Graph& g, PassContext& ctx) {
  ASSIGN_OR_RETURN(std::vector<std::string> replaced, ApplyActivationOptions(g, ctx.options));
  const int n = static_cast<int>(replaced.size());
  if (ctx.summary != nullptr) ctx.summary->replaced = std::move(replaced);
  return n;
}

absl::StatusOr<int> BatchNorms(Graph& g, PassContext& ctx) {
  return ctx.options.fuse ? FoldBatchNorm(g) : 0;
}

absl::StatusOr<int> BiasAdds(Graph& g, PassContext& ctx) {
  return ctx.options.fuse ? FoldBiasAdd(g) : 0;
}

absl::StatusOr<int> Activations(Graph& g, PassContext& ctx) {
  return ctx.options.fuse ? FuseActivations(g) : 0;
}

// Weights that folding replaced by rescaled copies are no longer read.
absl::StatusOr<int> DeadAfterFolding(Graph& g, PassContext& ctx) {
  return ctx.options.fuse ? EliminateDeadNodes(g) : 0;
}

absl::StatusOr<int> Shapes(Graph& g, PassContext& ctx) {
  const size_t before = g.nodes.size();
  RETURN_IF_ERROR(InferShapes(g, ctx.options.max_tensor_bytes));
  return static_cast<int>(before - g.nodes.size());
}

absl::StatusOr<int> ResidualAdds(Graph& g, PassContext& ctx) {
  return ctx.options.fuse ? FuseResidualAdd(g) : 0;
}

// A sum post-op ends the chain at the Add's output; the activation after
// it (ResNet's conv + add + relu) can now fold in too.
absl::StatusOr<int> ActivationsAfterSums(Graph& g, PassContext& ctx) {
  return ctx.options.fuse && ctx.counts["FuseResidualAdd"] > 0 ? FuseActivations(g) : 0;
}

}  // namespace

const std::vector<Pass>& LoadPipeline() {
  static const std::vector<Pass> kPasses = {
      {"CheckSupportedOps", CheckOps},
      {"EliminateIdentities", Identities},
      {"FoldConstants", Constants},
      {"EliminateDeadNodes", DeadNodes},
      {"RecognizeActivationPatterns", Patterns},
      {"ApplyActivationOptions", Replacements},
      {"FoldBatchNorm", BatchNorms},
      {"FoldBiasAdd", BiasAdds},
      {"FuseActivations", Activations},
      {"EliminateDeadNodes(after folding)", DeadAfterFolding},
  };
  return kPasses;
}

const std::vector<Pass>& ShapePipeline() {
  static const std::vector<Pass> kPasses = {
      {"InferShapes", Shapes},
      {"EliminateIdentities", Identities},
      {"EliminateDeadNodes", DeadNodes},
      {"FuseResidualAdd", ResidualAdds},
      {"FuseActivations(after sums)", ActivationsAfterSums},
  };
  return kPasses;
}

absl::Status RunPipeline(const std::vector<Pass>& passes, Graph& graph, PassContext& ctx,
                         const char* stage) {
  for (const Pass& pass : passes) {
    ASSIGN_OR_RETURN(int rewrites, pass.run(graph, ctx));
    ctx.counts[pass.name] = rewrites;
    spdlog::debug("engine {} pass {}: {} rewrite(s), {} nodes", stage, pass.name, rewrites,
                  graph.nodes.size());
  }
  return absl::OkStatus();
}

}  // namespace rectifier::engine
