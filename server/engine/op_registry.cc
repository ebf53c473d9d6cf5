// The explicit op table.
#include "server/engine/op_registry.h"

#include <map>

#include "absl/strings/str_cat.h"

namespace rectifier::engine {
namespace {

// Minimum input counts of ops whose kernels index inputs unconditionally.
int MinInputs(const Node& n) {
  static const std::map<std::string, int> kMin = {{"Add", 2},
                                                  {"Sub", 2},
                                                  {"Mul", 2},
                                                  {"Div", 2},
                                                  {"Pow", 2},
                                                  {"Mod", 2},
                                                  {"PRelu", 2},
                                                  {"Equal", 2},
                                                  {"Less", 2},
                                                  {"Greater", 2},
                                                  {"LessOrEqual", 2},
                                                  {"GreaterOrEqual", 2},
                                                  {"And", 2},
                                                  {"Or", 2},
                                                  {"Xor", 2},
                                                  {"Where", 3},
                                                  {"Gather", 2},
                                                  {"MatMul", 2},
                                                  {"Gemm", 2},
                                                  {"Conv", 2},
                                                  {"ConvTranspose", 2},
                                                  {"Expand", 2},
                                                  {"Tile", 2},
                                                  {"BatchNormalization", 5},
                                                  {"InstanceNormalization", 3},
                                                  {"Range", 3},
                                                  {"ConstantOfShape", 1}};
  auto it = kMin.find(n.op_type);
  int min = it == kMin.end() ? 1 : it->second;
  if (n.op_type == "Reshape" && n.opset >= 5) min = 2;
  if (n.op_type == "Slice" && n.opset >= 10) min = 3;
  if ((n.op_type == "Resize" || n.op_type == "Upsample") && n.opset >= 9) min = 2;
  if (n.op_type == "Pad" && n.opset >= 11) min = 2;
  return min;
}

}  // namespace

absl::Status CheckArity(const Node& n) {
  // Required inputs must also be named: "" means "optional input omitted".
  int required = MinInputs(n);
  if (n.op_type == "Resize" && n.opset >= 11) required = 1;  // roi/scales/sizes may be ""
  if (n.op_type == "Concat" || n.op_type == "Sum" || n.op_type == "Max" || n.op_type == "Min" ||
      n.op_type == "Mean") {
    required = static_cast<int>(n.inputs.size());
  }
  for (int i = 0; i < required && i < static_cast<int>(n.inputs.size()); ++i) {
    if (n.inputs[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("required input ", i, " of ", n.Describe(), " is missing (empty name)"));
    }
  }
  // Ops with more than one output; every other op has exactly one.
  static const std::map<std::string, int> kMaxOutputs = {
      {"Split", 1 << 20}, {"Dropout", 2}, {"MaxPool", 2}, {"BatchNormalization", 5}};
  auto mo = kMaxOutputs.find(n.op_type);
  const int max_outputs = mo == kMaxOutputs.end() ? 1 : mo->second;
  for (size_t i = static_cast<size_t>(max_outputs); i < n.outputs.size(); ++i) {
    if (!n.outputs[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          n.Describe(), " has ", n.outputs.size(), " outputs; at most ", max_outputs, " allowed"));
    }
  }
  if (static_cast<int>(n.inputs.size()) < MinInputs(n) || n.inputs.empty() || n.inputs[0].empty() ||
      n.outputs.empty() || n.outputs[0].empty()) {
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
