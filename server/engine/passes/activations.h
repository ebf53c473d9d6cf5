// The activation catalog: the kinds the engine recognizes, how an ONNX node
// maps onto one, how a node is rewritten into another kind (per-model
// replacement), the exporter-pattern rewrites, and the summary of the
// effective activations of a graph. See docs/ENGINE.md, "Activations".
#ifndef RECTIFIER_SERVER_ENGINE_PASSES_ACTIVATIONS_H_
#define RECTIFIER_SERVER_ENGINE_PASSES_ACTIVATIONS_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine/compiled_model.h"
#include "server/engine/ir/ir.h"

namespace rectifier::engine {

enum class ActivationKind {
  kRelu,
  kLeakyRelu,  // alpha
  kPRelu,      // slope tensor (node input 1)
  kRelu6,      // Clip(0, 6)
  kClip,       // alpha = min, beta = max
  kSigmoid,
  kTanh,
  kHardSigmoid,  // alpha, beta
  kHardSwish,
  kElu,   // alpha
  kSelu,  // alpha, beta = gamma
  kSoftplus,
  kMish,
  kSilu,   // Swish with beta 1
  kSwish,  // alpha = beta of x * sigmoid(beta * x)
  kGelu,   // gelu_tanh selects the tanh approximation
};

struct Activation {
  ActivationKind kind = ActivationKind::kRelu;
  float alpha = 0.0f;
  float beta = 0.0f;
  bool gelu_tanh = false;
};

// Every kind, in catalog order.
const std::vector<ActivationKind>& AllActivationKinds();
// Catalog name: "Relu", "LeakyRelu", "PRelu", "Relu6", "Clip", "Sigmoid",
// "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus", "Mish",
// "SiLU", "Swish", "Gelu".
std::string_view ActivationKindName(ActivationKind kind);
// Case-insensitive inverse of ActivationKindName; nullopt if unknown.
std::optional<ActivationKind> ParseActivationKind(std::string_view name);
// Label used in summaries and statistics: the kind name, with the GELU form
// ("Gelu(erf)", "Gelu(tanh)").
std::string ActivationLabel(const Activation& act);

// The activation `node` computes, if it is one of the catalog (Clip only with
// constant bounds; PRelu with a constant slope). `graph` supplies constants.
std::optional<Activation> ActivationOfNode(const Node& node, const Graph& graph);

// Rewrites `node` in place (op_type, attributes, inputs) to compute `act`;
// its input 0 and output 0 are kept. PRelu cannot be a target (no slope).
void SetNodeActivation(Node& node, const Activation& act);

// Exporter patterns (torch 1.13 and friends) rewritten into single
// activation nodes. Each returns the number of rewrites. Intermediate values
// must have no other consumer and must not be graph outputs.
// The activation that `gate(x) * x` computes, for the gates that make a
// catalog activation: Sigmoid (SiLU) and HardSigmoid(1/6, 1/2) (HardSwish).
// The one matcher of this form, shared by the pattern passes below and by
// FuseActivations.
std::optional<Activation> GateActivation(const Node& gate);

int FuseSiluPattern(Graph& graph);     // x * Sigmoid(x)             -> SiLU
int FuseSwishPattern(Graph& graph);    // x * Sigmoid(b * x)         -> Swish(b)
int FuseMishPattern(Graph& graph);     // x * Tanh(Softplus(x))      -> Mish
int FuseGeluErfPattern(Graph& graph);  // 0.5 * x * (1 + Erf(x / sqrt 2)) -> Gelu
// 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 x^3))) -> Gelu(tanh)
int FuseGeluTanhPattern(Graph& graph);
int FuseHardSwishPattern(Graph& graph);  // x * HardSigmoid(x; 1/6, 0.5) -> HardSwish
int FuseRelu6Pattern(Graph& graph);      // Clip(0, 6), Relu -> Clip(0, 6) -> ReLU6
int FuseReluPattern(Graph& graph);       // Max(x, 0), Clip(x, 0, +inf) -> Relu

// All of the above until nothing changes; returns the rewrites per pattern
// name ("SiLU", "Swish", "Mish", "Gelu", "HardSwish", "Relu6", "Relu").
std::map<std::string, int> RecognizeActivationPatterns(Graph& graph);

// Checks `options.replace` and `options.gelu_approximation`.
// INVALID_ARGUMENT naming the field, e.g.
// "activation.replace[1].to: unknown activation kind 'Sigmoud' (known: ...)".
absl::Status ValidateActivationOptions(const CompileOptions& options);

// Applies the replacements (first matching rule per node, one pass) and the
// GELU approximation. Returns "<from> -> <to>" descriptions with counts.
absl::StatusOr<std::vector<std::string>> ApplyActivationOptions(Graph& graph,
                                                                const CompileOptions& options);

// Effective activations of `graph` (standalone nodes and fused post-ops),
// counted per label.
std::map<std::string, int> CountActivations(const Graph& graph);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_PASSES_ACTIVATIONS_H_
