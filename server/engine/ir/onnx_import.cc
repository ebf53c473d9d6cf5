// ONNX ModelProto -> Graph.
#include "server/engine/ir/onnx_import.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/engine/ir/onnx_tensor.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {
namespace {

constexpr int kMinOpset = 1;  // older opsets of the supported ops read the same here
constexpr int kMaxOpset = 21;

absl::StatusOr<Attribute> ConvertAttribute(const onnx::AttributeProto& a, const Node& node,
                                           int64_t max_bytes) {
  Attribute out;
  switch (a.type()) {
    case onnx::AttributeProto::INT:
      out.kind = Attribute::Kind::kInt;
      out.i = a.i();
      break;
    case onnx::AttributeProto::FLOAT:
      out.kind = Attribute::Kind::kFloat;
      out.f = a.f();
      break;
    case onnx::AttributeProto::STRING:
      out.kind = Attribute::Kind::kString;
      out.s = a.s();
      break;
    case onnx::AttributeProto::INTS:
      out.kind = Attribute::Kind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case onnx::AttributeProto::FLOATS:
      out.kind = Attribute::Kind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case onnx::AttributeProto::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case onnx::AttributeProto::TENSOR: {
      out.kind = Attribute::Kind::kTensor;
      auto t = TensorFromProto(a.t(), max_bytes);
      if (!t.ok()) {
        return absl::Status(t.status().code(),
                            absl::StrCat("attribute '", a.name(), "' of ", node.Describe(), ": ",
                                         t.status().message()));
      }
      out.t = *std::move(t);
      break;
    }
    case onnx::AttributeProto::UNDEFINED:
      // Pre-IR3 models leave `type` unset; infer from the populated field.
      if (a.has_i()) {
        out.kind = Attribute::Kind::kInt;
        out.i = a.i();
      } else if (a.has_f()) {
        out.kind = Attribute::Kind::kFloat;
        out.f = a.f();
      } else if (a.has_s()) {
        out.kind = Attribute::Kind::kString;
        out.s = a.s();
      } else if (a.has_t()) {
        out.kind = Attribute::Kind::kTensor;
        auto t = TensorFromProto(a.t(), max_bytes);
        if (!t.ok()) {
          return absl::Status(t.status().code(),
                              absl::StrCat("attribute '", a.name(), "' of ", node.Describe(), ": ",
                                           t.status().message()));
        }
        out.t = *std::move(t);
      } else if (a.has_g() || a.graphs_size() > 0) {
        return absl::UnimplementedError(absl::StrCat("graph attribute '", a.name(), "' of ",
                                                     node.Describe(), " is not supported"));
      } else if (a.ints_size()) {
        out.kind = Attribute::Kind::kInts;
        out.ints.assign(a.ints().begin(), a.ints().end());
      } else if (a.floats_size()) {
        out.kind = Attribute::Kind::kFloats;
        out.floats.assign(a.floats().begin(), a.floats().end());
      } else {
        out.kind = Attribute::Kind::kInts;
      }
      break;
    default:
      return absl::UnimplementedError(absl::StrCat("attribute '", a.name(), "' of ",
                                                   node.Describe(), " has an unsupported type"));
  }
  return out;
}

absl::StatusOr<TensorInfo> ConvertValueInfo(const onnx::ValueInfoProto& vi) {
  TensorInfo info;
  info.name = vi.name();
  if (!vi.type().has_tensor_type()) {
    return absl::UnimplementedError(
        absl::StrCat("graph value '", vi.name(), "' is not a tensor (sequences/maps unsupported)"));
  }
  const auto& tt = vi.type().tensor_type();
  auto type = DataTypeFromOnnx(tt.elem_type());
  if (!type.ok()) {
    return absl::UnimplementedError(
        absl::StrCat("graph value '", vi.name(), "': ", type.status().message()));
  }
  info.type = *type;
  if (tt.has_shape()) {
    for (const auto& d : tt.shape().dim()) {
      info.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
    }
  } else {
    info.shape = {-1};  // unknown rank: treated as dynamic, checked at run time
  }
  return info;
}

// The value of a Constant node, from whichever attribute holds it.
absl::StatusOr<Tensor> ConstantValue(Node& node) {
  Tensor value;
  if (node.HasAttr("value")) {
    if (node.attrs["value"].kind != Attribute::Kind::kTensor) {
      return absl::InvalidArgumentError(
          absl::StrCat(node.Describe(), ": attribute 'value' is not a tensor"));
    }
    value = std::move(node.attrs["value"].t);  // the node itself is dropped
  } else if (node.HasAttr("value_float")) {
    value = Tensor::Zeros(DataType::kFloat32, {});
    *value.data<float>() = node.GetFloat("value_float", 0);
  } else if (node.HasAttr("value_floats")) {
    auto v = node.GetFloats("value_floats");
    value = Tensor::Zeros(DataType::kFloat32, {static_cast<int64_t>(v.size())});
    std::copy(v.begin(), v.end(), value.data<float>());
  } else if (node.HasAttr("value_int")) {
    value = Tensor::Zeros(DataType::kInt64, {});
    *value.data<int64_t>() = node.GetInt("value_int", 0);
  } else if (node.HasAttr("value_ints")) {
    auto v = node.GetInts("value_ints");
    value = Tensor::Zeros(DataType::kInt64, {static_cast<int64_t>(v.size())});
    std::copy(v.begin(), v.end(), value.data<int64_t>());
  } else {
    return absl::UnimplementedError(
        absl::StrCat(node.Describe(), ": only tensor/float/int Constant values are supported"));
  }
  return value;
}

}  // namespace

absl::StatusOr<Graph> ImportModelProto(const onnx::ModelProto& model,
                                       const std::map<std::string, Tensor>& constant_inputs,
                                       int64_t max_tensor_bytes) {
  Graph g;
  for (const auto& op : model.opset_import()) {
    if (op.domain().empty() || op.domain() == "ai.onnx") g.opset = static_cast<int>(op.version());
  }
  if (model.opset_import_size() == 0) g.opset = 1;
  if (g.opset < kMinOpset || g.opset > kMaxOpset) {
    return absl::UnimplementedError(absl::StrCat("default-domain opset ", g.opset,
                                                 " is not supported (supported: ", kMinOpset, "..",
                                                 kMaxOpset, ")"));
  }
  const onnx::GraphProto& gp = model.graph();
  std::set<std::string> initializer_names;
  for (const auto& init : gp.initializer()) {
    auto t = TensorFromProto(init, max_tensor_bytes);
    if (!t.ok()) return t.status();
    g.constants[init.name()] = *std::move(t);
    initializer_names.insert(init.name());
  }
  for (const auto& [name, value] : constant_inputs) {
    if (value.bytes.size() !=
        static_cast<size_t>(value.num_elements()) * DataTypeSize(value.type)) {
      return absl::InvalidArgumentError(
          absl::StrCat("constant input '", name, "' byte size does not match its shape"));
    }
    g.constants[name] = value;
  }
  for (const auto& in : gp.input()) {
    if (initializer_names.count(in.name()) || constant_inputs.count(in.name())) continue;
    ASSIGN_OR_RETURN(TensorInfo info, ConvertValueInfo(in));
    g.inputs.push_back(std::move(info));
  }
  for (const auto& out : gp.output()) {
    ASSIGN_OR_RETURN(TensorInfo info, ConvertValueInfo(out));
    g.outputs.push_back(std::move(info));
  }
  if (g.outputs.empty()) return absl::InvalidArgumentError("model graph has no outputs");
  int index = 0;
  for (const auto& np : gp.node()) {
    Node node;
    node.op_type = np.op_type();
    node.name = np.name().empty() ? absl::StrCat(np.op_type(), "_", index) : np.name();
    node.opset = g.opset;
    ++index;
    if (!np.domain().empty() && np.domain() != "ai.onnx") {
      return absl::UnimplementedError(absl::StrCat("unsupported op '", np.op_type(), "' (node '",
                                                   node.name, "', domain '", np.domain(), "')"));
    }
    if (np.op_type() != "Constant" && FindOp(np.op_type()) == nullptr) {
      return absl::UnimplementedError(absl::StrCat("unsupported op '", np.op_type(), "' (node '",
                                                   node.name, "', opset ", g.opset, ")"));
    }
    node.inputs.assign(np.input().begin(), np.input().end());
    node.outputs.assign(np.output().begin(), np.output().end());
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty()) {
        return absl::UnimplementedError(
            absl::StrCat("attribute references in ", node.Describe(), " are not supported"));
      }
      ASSIGN_OR_RETURN(node.attrs[a.name()], ConvertAttribute(a, node, max_tensor_bytes));
    }
    if (node.op_type == "Constant") {
      if (node.outputs.size() != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(node.Describe(), " must have exactly one output"));
      }
      ASSIGN_OR_RETURN(Tensor value, ConstantValue(node));
      g.constants[node.outputs[0]] = std::move(value);
      continue;
    }
    g.nodes.push_back(std::move(node));
  }
  RETURN_IF_ERROR(TopologicalSort(g));
  return g;
}

absl::StatusOr<Graph> ImportOnnx(std::string_view bytes,
                                 const std::map<std::string, Tensor>& constant_inputs,
                                 int64_t max_tensor_bytes) {
  onnx::ModelProto model;
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(INT32_MAX);
  if (bytes.empty() || !model.ParseFromCodedStream(&coded) || !coded.ConsumedEntireMessage()) {
    return absl::InvalidArgumentError(absl::StrCat("not a valid ONNX model (", bytes.size(),
                                                   " bytes could not be parsed; "
                                                   "truncated or corrupt file?)"));
  }
  if (!model.has_graph()) return absl::InvalidArgumentError("ONNX model has no graph");
  return ImportModelProto(model, constant_inputs, max_tensor_bytes);
}

}  // namespace rectifier::engine
