// PlanBuilder core: values, layouts/reorders, reference steps, aliases,
// graph outputs, and the dispatch of nodes to per-family lowerings.
#include "server/engine/lower/plan_builder.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/ops/op_registry.h"
#include "server/engine/passes/activations.h"

namespace rectifier::engine {

using dnnl::memory;

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::algorithm DnnlEltwise(EltwiseFn fn) {
  using Alg = dnnl::algorithm;
  switch (fn) {
    case EltwiseFn::kRelu:
      return Alg::eltwise_relu;
    case EltwiseFn::kLogistic:
      return Alg::eltwise_logistic;
    case EltwiseFn::kTanh:
      return Alg::eltwise_tanh;
    case EltwiseFn::kLinear:
      return Alg::eltwise_linear;
    case EltwiseFn::kClip:
      return Alg::eltwise_clip_v2;
    case EltwiseFn::kHardSwish:
      return Alg::eltwise_hardswish;
    case EltwiseFn::kElu:
      return Alg::eltwise_elu;
    case EltwiseFn::kSoftplus:
      return Alg::eltwise_soft_relu;
    case EltwiseFn::kMish:
      return Alg::eltwise_mish;
    case EltwiseFn::kSwish:
      return Alg::eltwise_swish;
    case EltwiseFn::kGeluErf:
      return Alg::eltwise_gelu_erf;
    case EltwiseFn::kGeluTanh:
      return Alg::eltwise_gelu_tanh;
    case EltwiseFn::kExp:
      return Alg::eltwise_exp;
    case EltwiseFn::kLog:
      return Alg::eltwise_log;
    case EltwiseFn::kSqrt:
      return Alg::eltwise_sqrt;
    case EltwiseFn::kAbs:
      return Alg::eltwise_abs;
  }
  return Alg::undef;
}

absl::Status DnnlError(const dnnl::error& e, const std::string& what) {
  const std::string msg =
      absl::StrCat("oneDNN error in ", what, ": ", e.what(), " (status ", e.status, ")");
  // oneDNN rejects bad shapes/attributes with invalid_arguments and
  // combinations it has no kernel for with unimplemented.
  switch (e.status) {
    case dnnl_out_of_memory:
      return absl::ResourceExhaustedError(msg);
    case dnnl_invalid_arguments:
      return absl::InvalidArgumentError(msg);
    case dnnl_unimplemented:
      return absl::UnimplementedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

std::string LayoutName(const memory::desc& md) {
  const auto& d = md.data;
  if (d.format_kind != dnnl_blocked) return "any";
  const int nd = d.ndims;
  const auto& blk = d.format_desc.blocking;
  std::vector<int> order(nd);
  for (int i = 0; i < nd; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return blk.strides[a] > blk.strides[b]; });
  std::vector<bool> blocked(nd, false);
  for (int i = 0; i < blk.inner_nblks; ++i) blocked[blk.inner_idxs[i]] = true;
  std::string s;
  for (int i : order) s += static_cast<char>((blocked[i] ? 'A' : 'a') + i);
  for (int i = 0; i < blk.inner_nblks; ++i)
    s +=
        absl::StrCat(blk.inner_blks[i], std::string(1, static_cast<char>('a' + blk.inner_idxs[i])));
  return s;
}

memory::dims PlanBuilder::Dims(const std::vector<int64_t>& shape) {
  if (shape.empty()) return {1};
  return memory::dims(shape.begin(), shape.end());
}

memory::desc PlanBuilder::PlainMd(const std::vector<int64_t>& shape) {
  memory::dims dims = Dims(shape);
  memory::dims strides(dims.size(), 1);
  for (int i = static_cast<int>(dims.size()) - 2; i >= 0; --i)
    strides[i] = strides[i + 1] * dims[i + 1];
  return memory::desc(dims, memory::data_type::f32, strides);
}

PlanBuilder::PlanBuilder(const Graph& graph, int batch, dnnl::engine engine, ConstantCache* cache)
    : graph_(graph),
      engine_(std::move(engine)),
      cache_(cache),
      compile_stream_(engine_),
      plan_(std::make_unique<CompiledPlan>()) {
  plan_->batch = batch;
}

int PlanBuilder::NewValue(const std::string& name, DataType type, const std::vector<int64_t>& shape,
                          const memory::desc& md) {
  PlanValue v;
  v.name = name;
  v.type = type;
  v.shape = shape;
  if (type == DataType::kFloat32) {
    v.md = md;
    v.bytes = md.get_size();
    v.plain = md == PlainMd(shape);
  } else {
    v.bytes = static_cast<size_t>(NumElements(shape)) * DataTypeSize(type);
    v.plain = true;
  }
  plan_->values.push_back(std::move(v));
  return static_cast<int>(plan_->values.size()) - 1;
}

ConstantCache* PlanBuilder::CacheFor(const std::string& name) const {
  if (cache_ == nullptr || shared_names_ == nullptr) return cache_;
  return shared_names_->count(name.substr(0, name.find('@'))) > 0 ? cache_ : nullptr;
}

absl::StatusOr<int> PlanBuilder::Value(const std::string& name) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a required input of ",
        current_node_ < graph_.nodes.size() ? graph_.nodes[current_node_].Describe() : "a node",
        " is missing (empty name)"));
  }
  auto it = ids_.find(name);
  if (it != ids_.end()) return it->second;
  auto c = graph_.constants.find(name);
  if (c == graph_.constants.end()) {
    return absl::InternalError(absl::StrCat("value '", name, "' used before it is computed"));
  }
  const Tensor& t = c->second;
  int id = NewValue(name, t.type, t.shape,
                    t.type == DataType::kFloat32 ? PlainMd(t.shape) : memory::desc());
  const std::string key = ConstantCache::Key(name, plan_->values[id].md);
  ConstantCache* cache = CacheFor(name);
  std::shared_ptr<const AlignedBuffer> buf = cache ? cache->Find(key) : nullptr;
  if (buf == nullptr) {
    auto fresh = std::make_shared<AlignedBuffer>(t.bytes.size());
    if (!t.bytes.empty()) std::memcpy(fresh->data(), t.bytes.data(), t.bytes.size());
    buf = fresh;
    if (cache) buf = cache->Insert(key, buf);
  }
  plan_->constant_storage.push_back(buf);
  plan_->values[id].storage = PlanValue::Storage::kConstant;
  plan_->values[id].constant = buf->data();
  ids_[name] = id;
  return id;
}

absl::StatusOr<int> PlanBuilder::CachedConstant(const std::string& name, const memory::desc& md,
                                                const std::vector<int64_t>& shape,
                                                const std::function<absl::Status(void*)>& fill) {
  const std::string key = ConstantCache::Key(name, md);
  ConstantCache* cache = CacheFor(name);
  std::shared_ptr<const AlignedBuffer> buf = cache ? cache->Find(key) : nullptr;
  if (buf == nullptr) {
    auto fresh = std::make_shared<AlignedBuffer>(md.get_size());
    RETURN_IF_ERROR(fill(fresh->data()));
    buf = fresh;
    if (cache) buf = cache->Insert(key, buf);
  }
  plan_->constant_storage.push_back(buf);
  const int id = NewValue(name, DataType::kFloat32, shape, md);
  plan_->values[id].storage = PlanValue::Storage::kConstant;
  plan_->values[id].constant = buf->data();
  return id;
}

absl::StatusOr<int> PlanBuilder::ConstantInLayout(const std::string& name, const void* data,
                                                  const memory::desc& src_md,
                                                  const memory::desc& md,
                                                  const std::vector<int64_t>& shape) {
  return CachedConstant(name, md, shape,
                        [&](void* out) { return ReorderInto(name, data, src_md, md, out); });
}

absl::Status PlanBuilder::ReorderInto(const std::string& name, const void* data,
                                      const memory::desc& src_md, const memory::desc& md,
                                      void* out) {
  try {
    memory src(src_md, engine_, const_cast<void*>(data));
    memory dst(md, engine_, out);
    dnnl::reorder(src, dst).execute(compile_stream_, src, dst);
    compile_stream_.wait();
  } catch (const dnnl::error& e) {
    return DnnlError(e, absl::StrCat("reordering constant '", name, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> PlanBuilder::ComputedConstant(const std::string& name, int64_t floats,
                                                  const std::function<void(float*)>& fill) {
  const memory::desc md({floats}, memory::data_type::f32, memory::format_tag::x);
  return CachedConstant(name, md, {floats}, [&](void* out) {
    fill(static_cast<float*>(out));
    return absl::OkStatus();
  });
}

absl::StatusOr<int> PlanBuilder::InLayout(int v, const memory::desc& md) {
  PlanValue& pv = plan_->values[v];
  if (pv.type != DataType::kFloat32 || pv.md == md) return v;
  for (int other : layouts_[v])
    if (plan_->values[other].md == md) return other;
  int id;
  if (pv.storage == PlanValue::Storage::kConstant) {
    const std::string name = absl::StrCat(pv.name, "@", LayoutName(md));
    ASSIGN_OR_RETURN(id, ConstantInLayout(name, pv.constant, pv.md, md, pv.shape));
  } else {
    const std::string name = absl::StrCat(pv.name, "@", LayoutName(md));
    const std::string from = LayoutName(pv.md);
    id = NewValue(name, DataType::kFloat32, plan_->values[v].shape, md);
    try {
      dnnl::reorder::primitive_desc pd(engine_, plan_->values[v].md, engine_, md,
                                       dnnl::primitive_attr());
      AddPrimitive(
          pd, dnnl::reorder(pd), {{DNNL_ARG_FROM, v}, {DNNL_ARG_TO, id}},
          absl::StrCat("Reorder '", plan_->values[v].name, "' ", from, " -> ", LayoutName(md)));
    } catch (const dnnl::error& e) {
      return DnnlError(e, absl::StrCat("reorder of '", plan_->values[v].name, "'"));
    }
  }
  layouts_[v].push_back(id);
  return id;
}

void PlanBuilder::ForgetLayout(int v, int copy) {
  auto& copies = layouts_[v];
  copies.erase(std::remove(copies.begin(), copies.end(), copy), copies.end());
}

void PlanBuilder::AddPrimitive(const dnnl::primitive_desc_base& pd, dnnl::primitive prim,
                               std::vector<std::pair<int, int>> args, const std::string& label,
                               const std::vector<int>& extra_reads) {
  PlanStep step;
  step.kind = PlanStep::Kind::kPrimitive;
  step.primitive = std::move(prim);
  step.scratchpad_md = pd.scratchpad_desc();
  plan_->scratchpad_bytes = std::max(plan_->scratchpad_bytes, step.scratchpad_md.get_size());
  for (const auto& [arg, v] : args) {
    if (arg == DNNL_ARG_DST) {
      step.writes.push_back(v);
    } else {
      step.reads.push_back(v);
    }
  }
  for (int v : extra_reads) step.reads.push_back(v);
  step.args = std::move(args);
  step.label = absl::StrCat(label, "  [", pd.impl_info_str(), "]");
  plan_->steps.push_back(std::move(step));
}

void PlanBuilder::AddPrimitiveParts(std::vector<PlanStep> parts, std::vector<int> reads,
                                    std::vector<int> writes, const std::string& label) {
  PlanStep step;
  step.kind = PlanStep::Kind::kPrimitive;
  // Each part's scratchpad in its own 64-byte aligned slice.
  for (const PlanStep& part : parts) {
    step.part_scratchpad_stride =
        std::max(step.part_scratchpad_stride, (part.scratchpad_md.get_size() + 63) / 64 * 64);
  }
  plan_->scratchpad_bytes =
      std::max(plan_->scratchpad_bytes, step.part_scratchpad_stride * parts.size());
  step.reads = std::move(reads);
  step.writes = std::move(writes);
  step.label = label;
  step.parts = std::move(parts);
  plan_->steps.push_back(std::move(step));
}

int PlanBuilder::ViewAt(int v, const std::string& name, const memory::desc& md, size_t offset) {
  const int id = ViewAs(v, name, md);
  plan_->values[id].alias_offset = offset;
  return id;
}

absl::Status PlanBuilder::AddReference(const Node& node) {
  const OpDef* op = FindOp(node.op_type);
  if (op == nullptr || op->compute == nullptr) {
    return absl::UnimplementedError(
        absl::StrCat(node.Describe(), " has no kernel for this configuration"));
  }
  for (const auto& op : node.post_ops) {
    if (op.kind == PostOp::Kind::kSum) {
      return absl::InternalError(
          absl::StrCat(node.Describe(), " has a fused sum but no oneDNN lowering"));
    }
  }
  PlanStep step;
  step.kind = PlanStep::Kind::kReference;
  step.node = node;
  step.compute = op->compute;
  std::vector<std::string> shapes;
  for (const auto& in : node.inputs) {
    if (in.empty()) {
      step.inputs.push_back(-1);
      continue;
    }
    ASSIGN_OR_RETURN(int v, Value(in));
    ASSIGN_OR_RETURN(v, Plain(v));
    step.inputs.push_back(v);
    step.reads.push_back(v);
  }
  for (const auto& out : node.outputs) {
    if (out.empty() || !graph_.value_info.count(out)) {
      step.outputs.push_back(-1);
      continue;
    }
    const TensorInfo& info = graph_.value_info.at(out);
    int v = NewValue(out, info.type, info.shape,
                     info.type == DataType::kFloat32 ? PlainMd(info.shape) : memory::desc());
    Define(out, v);
    step.outputs.push_back(v);
    step.writes.push_back(v);
    shapes.push_back(absl::StrCat("[", absl::StrJoin(info.shape, ","), "]"));
  }
  step.label = absl::StrCat(node.op_type, " '", node.name, "' -> ", absl::StrJoin(shapes, " "),
                            "  [reference, plain]");
  plan_->steps.push_back(std::move(step));
  if (!node.post_ops.empty() && !node.outputs.empty() && ids_.count(node.outputs[0])) {
    // Activations fused into a node that ended up on its reference kernel
    // (e.g. Gemm with a [M, N] bias) run as oneDNN eltwise steps after it.
    const int pre = ids_.at(node.outputs[0]);
    plan_->values[pre].name += "#pre";
    try {
      ASSIGN_OR_RETURN(int post, EmitEltwiseChain(*this, pre, node.post_ops, node.outputs[0],
                                                  absl::StrCat("Eltwise (after ", node.name, ")"),
                                                  /*v_private=*/true));
      Define(node.outputs[0], post);
    } catch (const dnnl::error& e) {
      return DnnlError(e, node.Describe());
    }
  }
  return absl::OkStatus();
}

int PlanBuilder::ViewAs(int v, const std::string& name, const memory::desc& md) {
  const PlanValue& base = plan_->values[v];
  const memory::dims dims = md.dims();
  const std::vector<int64_t> shape(dims.begin(), dims.end());
  const int id = NewValue(name, base.type, shape, md);
  plan_->values[id].alias_of = v;
  plan_->values[id].storage = plan_->values[v].storage;
  plan_->values[id].constant = plan_->values[v].constant;
  plan_->values[id].io_index = plan_->values[v].io_index;
  return id;
}

absl::Status PlanBuilder::LowerAlias(const Node& node) {
  ASSIGN_OR_RETURN(int v, Value(node.inputs[0]));
  ASSIGN_OR_RETURN(v, Plain(v));
  const TensorInfo& info = graph_.value_info.at(node.outputs[0]);
  int id = NewValue(node.outputs[0], info.type, info.shape,
                    info.type == DataType::kFloat32 ? PlainMd(info.shape) : memory::desc());
  plan_->values[id].alias_of = v;
  plan_->values[id].storage = plan_->values[v].storage;
  plan_->values[id].constant = plan_->values[v].constant;
  plan_->values[id].io_index = plan_->values[v].io_index;
  Define(node.outputs[0], id);
  return absl::OkStatus();
}

absl::Status PlanBuilder::LowerNode(const Node& node) {
  const OpDef* def = FindOp(node.op_type);
  if (def == nullptr) {
    return absl::UnimplementedError(absl::StrCat("unsupported op in ", node.Describe()));
  }
  if (def->view != nullptr && def->view(graph_, node)) return LowerAlias(node);
  if (def->lower != nullptr) {
    ASSIGN_OR_RETURN(bool lowered, def->lower(*this, node));
    if (lowered) return absl::OkStatus();
  }
  return AddReference(node);
}

absl::Status PlanBuilder::FinishOutputs() {
  std::set<int> used;
  for (size_t i = 0; i < graph_.outputs.size(); ++i) {
    const std::string& name = graph_.outputs[i].name;
    ASSIGN_OR_RETURN(int v, Value(name));
    PlanValue& pv = plan_->values[v];
    if (pv.storage == PlanValue::Storage::kArena && pv.alias_of < 0 && pv.plain && !used.count(v)) {
      pv.storage = PlanValue::Storage::kOutput;
      pv.io_index = static_cast<int>(i);
    } else {
      // Copy into a dedicated plain output (blocked layout, alias, input,
      // constant or a value listed twice).
      const DataType type = pv.type;
      const std::vector<int64_t> shape = pv.shape;
      int out =
          NewValue(name, type, shape, type == DataType::kFloat32 ? PlainMd(shape) : memory::desc());
      if (type == DataType::kFloat32) {
        try {
          dnnl::reorder::primitive_desc pd(engine_, plan_->values[v].md, engine_,
                                           plan_->values[out].md, dnnl::primitive_attr());
          AddPrimitive(
              pd, dnnl::reorder(pd), {{DNNL_ARG_FROM, v}, {DNNL_ARG_TO, out}},
              absl::StrCat("Output '", name, "' ", LayoutName(plan_->values[v].md), " -> plain"));
        } catch (const dnnl::error& e) {
          return DnnlError(e, absl::StrCat("output reorder of '", name, "'"));
        }
      } else {
        PlanStep step;
        step.kind = PlanStep::Kind::kReference;
        step.node.op_type = "Identity";
        step.node.name = name;
        step.compute = FindOp("Identity")->compute;
        step.inputs = {v};
        step.outputs = {out};
        step.reads = {v};
        step.writes = {out};
        step.label = absl::StrCat("Output '", name, "' copy");
        plan_->steps.push_back(std::move(step));
      }
      plan_->values[out].storage = PlanValue::Storage::kOutput;
      plan_->values[out].io_index = static_cast<int>(i);
      v = out;
    }
    used.insert(v);
    plan_->output_values.push_back(v);
  }
  return absl::OkStatus();
}

bool RunsGenericKernel(const std::string& label) {
  return absl::StrContains(label, "[ref:") || absl::StrContains(label, "[simple:") ||
         absl::StrContains(label, "[reference");
}

std::string PlanBuilder::Describe() const {
  // Constants used by several steps (a shared weight) are counted once.
  std::set<const AlignedBuffer*> distinct;
  size_t constant_bytes = 0;
  for (const auto& c : plan_->constant_storage)
    if (distinct.insert(c.get()).second) constant_bytes += c->size();
  std::string s =
      absl::StrCat("plan for ",
                   plan_->shapes_label.empty() ? absl::StrCat("batch ", plan_->batch)
                                               : absl::StrCat("input shapes ", plan_->shapes_label),
                   ": ", plan_->steps.size(), " steps, arena ", plan_->arena_bytes,
                   " bytes, scratchpad ", plan_->scratchpad_bytes, " bytes, ", distinct.size(),
                   " constants (", constant_bytes, " bytes)\n");
  int generic = 0;
  for (const auto& step : plan_->steps) generic += RunsGenericKernel(step.label) ? 1 : 0;
  if (generic > 0) {
    absl::StrAppend(&s, "  ", generic,
                    " step(s) marked <- generic: a slow general-purpose implementation\n");
  }
  for (size_t i = 0; i < plan_->steps.size(); ++i) {
    absl::StrAppend(&s, "  ", i, ": ", plan_->steps[i].label,
                    RunsGenericKernel(plan_->steps[i].label) ? "  <- generic" : "", "\n");
  }
  if (!plan_->views.empty()) {
    absl::StrAppend(&s, "  views (no step, no copy):\n");
    for (const auto& view : plan_->views) absl::StrAppend(&s, "    ", view, "\n");
  }
  return s;
}

void PlanBuilder::RecordActivationSite(const Node& node, size_t steps_before) {
  std::string kind;
  if (!node.post_ops.empty()) {
    kind = node.post_ops.back().activation;
  } else if (auto act = ActivationOfNode(node, graph_)) {
    kind = ActivationLabel(*act);
  }
  if (kind.empty() || node.outputs.empty() || plan_->steps.size() <= steps_before) return;
  auto it = ids_.find(node.outputs[0]);
  if (it == ids_.end() || plan_->values[it->second].type != DataType::kFloat32) return;
  const int root = plan_->Root(it->second);
  const PlanStep& last = plan_->steps.back();
  bool writes = false;
  for (int w : last.writes) writes = writes || plan_->Root(w) == root;
  if (!writes) return;
  ActivationSite site;
  site.name = node.outputs[0];
  site.kind = kind;
  site.value = it->second;
  site.step = static_cast<int>(plan_->steps.size()) - 1;
  plan_->activation_sites.push_back(std::move(site));
}

bool PlanBuilder::StorageReadLater(int v, int skip, int skip_node) const {
  const int root = plan_->Root(v);
  auto shares = [&](const std::string& name) {
    auto it = ids_.find(name);
    if (it == ids_.end()) return false;
    if (plan_->Root(it->second) == root) return true;
    auto copies = layouts_.find(it->second);
    if (copies == layouts_.end()) return false;
    for (int c : copies->second)
      if (c != skip && plan_->Root(c) == root) return true;
    return false;
  };
  for (size_t i = current_node_ + 1; i < graph_.nodes.size(); ++i) {
    if (static_cast<int>(i) == skip_node) continue;
    for (const auto& in : graph_.nodes[i].inputs)
      if (!in.empty() && shares(in)) return true;
  }
  for (const auto& out : graph_.outputs)
    if (shares(out.name)) return true;
  return false;
}

bool PlanBuilder::IsLastRead(const std::string& name) const {
  if (graph_.IsGraphOutput(name)) return false;
  for (size_t i = 0; i < graph_.nodes.size(); ++i) {
    const Node& n = graph_.nodes[i];
    bool reads = false;
    for (const auto& in : n.inputs) reads = reads || in == name;
    if (!reads) continue;
    if (i > current_node_) return false;
    const std::string& op = n.op_type;
    if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" ||
        op == "Identity" || op == "Dropout" || op == "Cast")
      return false;
  }
  return true;
}

std::vector<int64_t> PreluSlopeDims(const Graph& graph, const std::string& slope,
                                    const std::vector<int64_t>& shape) {
  auto it = graph.constants.find(slope);
  if (it == graph.constants.end() || it->second.type != DataType::kFloat32 ||
      it->second.shape.size() > shape.size() || shape.empty())
    return {};
  std::vector<int64_t> dims(shape.size() - it->second.shape.size(), 1);
  dims.insert(dims.end(), it->second.shape.begin(), it->second.shape.end());
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] != 1 && dims[i] != shape[i]) return {};
  return dims;
}

int PreluMask(const std::vector<int64_t>& dims) {
  int mask = 0;
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] != 1) mask |= 1 << i;
  return mask;
}

absl::StatusOr<int> PreluSlopeValue(PlanBuilder& b, const std::string& slope,
                                    const std::vector<int64_t>& dims) {
  const Tensor& t = b.graph().constants.at(slope);
  const memory::desc md = PlanBuilder::PlainMd(dims);
  return b.ConstantInLayout(absl::StrCat(slope, "@prelu"), t.bytes.data(), md, md, dims);
}

absl::StatusOr<int> EmitPrelu(PlanBuilder& b, int v, const std::string& slope,
                              const std::string& name, const std::string& label) {
  const std::vector<int64_t> shape = b.values()[v].shape;
  const std::vector<int64_t> dims = PreluSlopeDims(b.graph(), slope, shape);
  if (dims.empty()) return -1;
  const memory::desc src_md = b.values()[v].md;
  const memory::desc wei_any(PlanBuilder::Dims(dims), memory::data_type::f32,
                             memory::format_tag::any);
  dnnl::prelu_forward::desc d(dnnl::prop_kind::forward_inference, src_md, wei_any);
  dnnl::prelu_forward::primitive_desc pd(d, UserScratchpad(), b.engine());
  const Tensor& t = b.graph().constants.at(slope);
  ASSIGN_OR_RETURN(int w, b.ConstantInLayout(
                              absl::StrCat(slope, "@", LayoutName(pd.weights_desc())),
                              t.bytes.data(), PlanBuilder::PlainMd(dims), pd.weights_desc(), dims));
  int out = b.NewValue(name, DataType::kFloat32, shape, pd.dst_desc());
  b.AddPrimitive(pd, dnnl::prelu_forward(pd),
                 {{DNNL_ARG_SRC, v}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, out}},
                 absl::StrCat(label, " prelu ", LayoutName(src_md)));
  return out;
}

absl::StatusOr<std::unique_ptr<CompiledPlan>> PlanBuilder::Build() {
  try {
    for (size_t i = 0; i < graph_.inputs.size(); ++i) {
      const auto& in = graph_.inputs[i];
      // An input bound by value for this plan is one of its constants.
      if (graph_.IsConstant(in.name)) continue;
      const TensorInfo& info = graph_.value_info.at(in.name);
      int v = NewValue(in.name, info.type, info.shape,
                       info.type == DataType::kFloat32 ? PlainMd(info.shape) : memory::desc());
      plan_->values[v].storage = PlanValue::Storage::kInput;
      plan_->values[v].io_index = static_cast<int>(i);
      plan_->input_values.push_back(v);
      Define(in.name, v);
    }
    for (current_node_ = 0; current_node_ < graph_.nodes.size(); ++current_node_) {
      if (absorbed_.count(current_node_) != 0) continue;
      const Node& node = graph_.nodes[current_node_];
      const size_t steps_before = plan_->steps.size();
      just_absorbed_.clear();
      RETURN_IF_ERROR(LowerNode(node));
      RecordActivationSite(node, steps_before);
      for (size_t i : just_absorbed_) RecordActivationSite(graph_.nodes[i], steps_before);
    }
    RETURN_IF_ERROR(FinishOutputs());
  } catch (const dnnl::error& e) {
    return DnnlError(e, "plan compilation");
  }
  PlanMemory(*plan_);
  plan_->site_after_step.assign(plan_->steps.size(), -1);
  for (size_t i = 0; i < plan_->activation_sites.size(); ++i)
    plan_->site_after_step[static_cast<size_t>(plan_->activation_sites[i].step)] =
        static_cast<int>(i);
  plan_->description = Describe();
  return std::move(plan_);
}

}  // namespace rectifier::engine
