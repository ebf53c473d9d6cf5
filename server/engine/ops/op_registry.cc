// The explicit op table.
#include "server/engine/ops/op_registry.h"

#include "absl/strings/str_cat.h"

namespace rectifier::engine {

const Arity& OpDef::ArityAt(int opset) const {
  const Arity* a = &arity;
  for (const auto& [since, later] : arity_since) {
    if (opset >= since) a = &later;
  }
  return *a;
}

bool AlwaysView(const Graph& /*graph*/, const Node& /*node*/) { return true; }

absl::Status CheckArity(const Node& n) {
  static const OpDef kDefault;
  const OpDef* op = FindOp(n.op_type);
  const Arity& arity = (op != nullptr ? *op : kDefault).ArityAt(n.opset);
  // Required inputs must also be named: "" means "optional input omitted".
  const int required = arity.named_inputs == Arity::kAll ? static_cast<int>(n.inputs.size())
                       : arity.named_inputs < 0          ? arity.min_inputs
                                                         : arity.named_inputs;
  for (int i = 0; i < required && i < static_cast<int>(n.inputs.size()); ++i) {
    if (n.inputs[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("required input ", i, " of ", n.Describe(), " is missing (empty name)"));
    }
  }
  for (size_t i = static_cast<size_t>(arity.max_outputs); i < n.outputs.size(); ++i) {
    if (!n.outputs[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(n.Describe(), " has ", n.outputs.size(),
                                                     " outputs; at most ", arity.max_outputs,
                                                     " allowed"));
    }
  }
  if (static_cast<int>(n.inputs.size()) < arity.min_inputs || n.inputs.empty() ||
      n.inputs[0].empty() || n.outputs.empty() || n.outputs[0].empty()) {
    return absl::InvalidArgumentError(absl::StrCat(n.Describe(), " has too few inputs or outputs (",
                                                   n.inputs.size(), " inputs, ", n.outputs.size(),
                                                   " outputs)"));
  }
  return absl::OkStatus();
}

const OpDef* FindOp(const std::string& op_type) {
  static const OpTable* table = [] {
    auto* t = new OpTable();
    RegisterElementwiseOps(*t);
    RegisterTensorOps(*t);
    RegisterNnOps(*t);
    RegisterConvPoolOps(*t);
    return t;
  }();
  auto it = table->find(op_type);
  return it == table->end() ? nullptr : &it->second;
}

}  // namespace rectifier::engine
