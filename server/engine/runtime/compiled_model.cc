// CompiledModel: import, shape-independent passes, the plan cache per input-shape
// signature.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/ir/onnx_import.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/ops/op_registry.h"
#include "server/engine/passes/activations.h"
#include "server/engine/passes/pipeline.h"
#include "server/engine/passes/shape_inference.h"
#include "server/engine/runtime/compiled_model_impl.h"
#include "server/engine/runtime/conv_tuning.h"
#include "server/engine/runtime/omp_threads.h"

namespace rectifier::engine {

absl::StatusOr<std::shared_ptr<const CompiledModel>> CompiledModel::FromFile(
    const std::string& path, const CompileOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open model file '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto model = FromBytes(ss.str(), options);
  if (!model.ok()) {
    return absl::Status(model.status().code(), absl::StrCat(path, ": ", model.status().message()));
  }
  return model;
}

namespace {

// What the tuned layouts of a model depend on besides the CPU: the model's
// bytes, the options that change its graph or its kernels, and the revision
// of the kernels' selection rules and of the candidates (kKernelRevision: 2
// since the Winograd F(4x4, 3x3) kernel joined `auto`, 3 since a plan with
// channel-split steps is also timed without them), so that a cache tuned
// against other kernels is timed again.
constexpr int kKernelRevision = 3;

uint64_t ModelFingerprint(std::string_view onnx_bytes, const CompileOptions& o) {
  std::string text = absl::StrCat(
      "rev=", kKernelRevision, " fuse=", o.fuse, " rk=", o.rectifier_kernels, " zc=", o.zero_copy,
      " dw=", o.fuse_depthwise, " cs=", o.channel_split,
      " dwk=", static_cast<int>(o.depthwise_kernel), " c3k=", static_cast<int>(o.conv3x3_kernel),
      " ap=", o.activation_patterns, " tanh=", static_cast<int>(o.tanh_kernel),
      " silu=", static_cast<int>(o.silu_kernel), " gelu=", o.gelu_approximation);
  for (const auto& r : o.replace) {
    absl::StrAppend(&text, " ", r.from, "=", r.to, ":", r.alpha.value_or(0), ":",
                    r.beta.value_or(0));
  }
  for (const auto& [name, t] : o.constant_inputs) {
    absl::StrAppend(&text, " ", name, "#",
                    Fingerprint64(std::string_view(reinterpret_cast<const char*>(t.bytes.data()),
                                                   t.bytes.size())));
  }
  return Fingerprint64(text, Fingerprint64(onnx_bytes));
}

absl::StatusOr<std::shared_ptr<const CompiledModel>> FromBytesImpl(std::string_view onnx_bytes,
                                                                   const CompileOptions& options) {
  ASSIGN_OR_RETURN(Graph graph,
                   ImportOnnx(onnx_bytes, options.constant_inputs, options.max_tensor_bytes));
  ASSIGN_OR_RETURN(auto model, CompiledModelImpl::Create(std::move(graph), options,
                                                         ModelFingerprint(onnx_bytes, options)));
  return std::shared_ptr<const CompiledModel>(std::move(model));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CompiledModel>> CompiledModel::FromBytes(
    std::string_view onnx_bytes, const CompileOptions& options) {
  // No exception may leave the engine: oneDNN, protobuf and the standard
  // library (bad_alloc, out_of_range) are all turned into a Status here.
  try {
    return FromBytesImpl(onnx_bytes, options);
  } catch (const dnnl::error& e) {
    return DnnlError(e, "model compilation");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while compiling the model");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model compilation failed: ", e.what()));
  }
}

CompiledModelImpl::CompiledModelImpl(Graph graph, const CompileOptions& options,
                                     uint64_t fingerprint)
    : graph_(std::move(graph)),
      options_(options),
      engine_(dnnl::engine::kind::cpu, 0),
      tuning_(std::make_unique<TuningCache>(options.tuning_cache_dir, fingerprint)) {
  options_.constant_inputs.clear();  // already bound into the graph
}

CompiledModelImpl::~CompiledModelImpl() = default;

absl::StatusOr<std::shared_ptr<CompiledModelImpl>> CompiledModelImpl::Create(
    Graph graph, const CompileOptions& options, uint64_t fingerprint) {
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be at least 1");
  }
  if (options.activation_stats_sample_every < 0) {
    return absl::InvalidArgumentError(
        "activation.statistics.sample_every must be >= 0 (0 disables statistics)");
  }
  RETURN_IF_ERROR(ValidateActivationOptions(options));
  ActivationSummary summary;
  PassContext ctx(options, &summary);
  RETURN_IF_ERROR(RunPipeline(LoadPipeline(), graph, ctx, "load"));
  if (!summary.replaced.empty()) {
    std::set<std::string> targets;
    for (const auto& r : options.replace) targets.insert(r.to);
    summary.warning = absl::StrCat(
        "activation replacement is active (", absl::StrJoin(summary.replaced, ", "),
        "): outputs differ unless the weights were trained with ", absl::StrJoin(targets, "/"));
  }
  std::shared_ptr<CompiledModelImpl> model;
  try {
    model.reset(new CompiledModelImpl(std::move(graph), options, fingerprint));
  } catch (const dnnl::error& e) {
    return DnnlError(e, "creating the CPU engine");
  }
  summary.counts = CountActivations(model->graph_);
  model->activation_summary_ = std::move(summary);
  for (const auto& [name, t] : model->graph_.constants) model->shared_constant_names_.insert(name);
  RETURN_IF_ERROR(model->SetInputs());
  model->value_inputs_ = FindValueInputs(model->graph_);
  if (!model->value_inputs_.empty()) {
    // No plan without the values: the load checks the graph, outputs are as
    // the model declares them, and every call compiles (or finds) the plan
    // for its values. Never batched: requests with other values would mix.
    model->batchable_ = false;
    model->outputs_ = model->graph_.outputs;
    return model;
  }
  // Compile eagerly once so that load fails on a broken model, and learn the
  // output types and shapes.
  ASSIGN_OR_RETURN(auto plan, model->GetPlan(model->load_shapes_));
  RETURN_IF_ERROR(model->SetOutputs(*plan));
  return model;
}

std::vector<size_t> FindValueInputs(const Graph& graph) {
  std::set<std::string> marked;
  std::set<std::string> seen;
  // Walks back from `value` to the graph inputs its values come from.
  std::vector<std::string> stack;
  for (const Node& n : graph.nodes) {
    const OpDef* def = FindOp(n.op_type);
    if (def == nullptr) continue;
    for (const int i : def->value_inputs) stack.push_back(n.Input(static_cast<size_t>(i)));
  }
  while (!stack.empty()) {
    const std::string value = std::move(stack.back());
    stack.pop_back();
    if (value.empty() || graph.IsConstant(value) || !seen.insert(value).second) continue;
    if (graph.IsGraphInput(value)) {
      marked.insert(value);
      continue;
    }
    const int p = graph.ProducerIndex(value);
    if (p < 0) continue;
    const Node& producer = graph.nodes[static_cast<size_t>(p)];
    const OpDef* def = FindOp(producer.op_type);
    if (def != nullptr && def->shape_only) continue;  // reads only a shape
    for (const std::string& in : producer.inputs) stack.push_back(in);
  }
  std::vector<size_t> indices;
  for (size_t i = 0; i < graph.inputs.size(); ++i) {
    if (marked.count(graph.inputs[i].name) != 0) indices.push_back(i);
  }
  return indices;
}

bool FindBatchSeparable(const Graph& g) {
  constexpr int64_t kProbe = kSeparabilityProbeBatch;
  for (const TensorInfo& in : g.inputs) {
    if (in.shape.empty() || in.shape[0] != kProbe) return false;
  }
  // Ops that index, scan or contract freely, whatever their attributes.
  static const std::set<std::string> kAcross = {
      "Einsum", "CumSum", "GatherND", "ScatterND", "NonMaxSuppression", "Compress",  "NonZero",
      "Unique", "Loop",   "Scan",     "If",        "RoiAlign",          "MaxRoiPool"};
  // Ops whose axis defaults to 0 when the attribute is absent.
  static const std::set<std::string> kAxisZeroByDefault = {
      "Gather", "Split", "GatherElements", "ScatterElements", "ArgMax", "ArgMin"};
  auto batch_leading = [&](const std::string& value) {
    auto it = g.value_info.find(value);
    return it != g.value_info.end() && !it->second.shape.empty() && it->second.shape[0] == kProbe;
  };
  for (const Node& n : g.nodes) {
    if (kAcross.count(n.op_type) != 0) return false;
    int64_t rank = 0;
    for (const std::string& in : n.inputs) {
      if (in.empty() || g.IsConstant(in)) continue;
      if (!batch_leading(in)) return false;
      if (rank == 0) rank = static_cast<int64_t>(g.value_info.at(in).shape.size());
    }
    for (const std::string& out : n.outputs) {
      if (!out.empty() && !batch_leading(out)) return false;
    }
    auto names_dim0 = [&](int64_t axis) { return axis == 0 || (rank > 0 && axis == -rank); };
    if (n.HasAttr("axis") ? names_dim0(n.GetInt("axis", 1))
                          : kAxisZeroByDefault.count(n.op_type) != 0) {
      return false;
    }
    for (const int64_t axis : n.GetInts("axes")) {
      if (names_dim0(axis)) return false;
    }
    if (n.op_type == "Transpose") {
      const std::vector<int64_t> perm = n.GetInts("perm");
      if (perm.empty() || perm[0] != 0) return false;
    }
    if (n.op_type == "Gemm" && n.GetInt("transA", 0) != 0) return false;
    if (n.op_type == "Gemm" || n.op_type == "MatMul") {
      const std::string& b = n.Input(1);
      // A second operand that is not a weight contracts over its dim 0,
      // unless both are stacks of matrices (a batched MatMul).
      const bool stacked = n.op_type == "MatMul" && !b.empty() && !g.IsConstant(b) &&
                           g.value_info.at(b).shape.size() >= 3 && rank >= 3;
      if (!b.empty() && !g.IsConstant(b) && !stacked) return false;
    }
  }
  for (const TensorInfo& out : g.outputs) {
    if (!batch_leading(out.name)) return false;
  }
  return true;
}

namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ","), "]");
}

std::string ShapesString(const InputShapes& shapes) {
  std::vector<std::string> parts;
  parts.reserve(shapes.size());
  for (const auto& s : shapes) parts.push_back(ShapeString(s));
  return absl::StrJoin(parts, " ");
}

}  // namespace

absl::Status CompiledModelImpl::SetInputs() {
  inputs_ = graph_.inputs;
  bool batchable = !inputs_.empty();
  for (const auto& in : inputs_) {
    if (in.shape.empty() || in.shape[0] != -1) batchable = false;
  }
  // Dim 0 is the batch only when it is dynamic in every input; otherwise a
  // dynamic dim 0 is one more dynamic dimension (the sequence of a model
  // with a second, static input, say).
  for (const auto& in : inputs_) {
    for (size_t d = batchable ? 1 : 0; d < in.shape.size(); ++d) dynamic_dims_ |= in.shape[d] < 0;
  }
  batchable_ = batchable;
  for (const auto& in : inputs_) {
    auto given = options_.load_shapes.find(in.name);
    if (dynamic_dims_ && given != options_.load_shapes.end()) {
      load_shapes_.push_back(given->second);
      continue;
    }
    std::vector<int64_t> s = in.shape;
    for (size_t d = 0; d < s.size(); ++d) {
      if (s[d] >= 0) continue;
      s[d] = d == 0 && batchable_ ? 1 : kDefaultProbeDim;
      auto bound = options_.max_input_dims.find(in.name);
      if ((d > 0 || !batchable_) && bound != options_.max_input_dims.end() &&
          d < bound->second.size() && bound->second[d] > 0) {
        s[d] = std::min(s[d], bound->second[d]);
      }
    }
    load_shapes_.push_back(std::move(s));
  }
  auto find_input = [&](const std::string& name) {
    return std::find_if(inputs_.begin(), inputs_.end(),
                        [&](const TensorInfo& t) { return t.name == name; });
  };
  for (const auto& [name, shape] : options_.load_shapes) {
    if (find_input(name) == inputs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("load shape for '", name, "', which is not an input of the model"));
    }
  }
  for (const auto& [name, bound] : options_.max_input_dims) {
    auto in = find_input(name);
    if (in == inputs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("max_input_dims for '", name, "', which is not an input of the model"));
    }
    if (bound.size() != in->shape.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "max_input_dims for '", name, "' has ", bound.size(), " dimension(s); the input ",
          ShapeString(in->shape), " has ", in->shape.size(), " (with the batch)"));
    }
  }
  if (absl::Status st = CheckInputShapes(load_shapes_); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("load shapes: ", st.message()));
  }
  return absl::OkStatus();
}

absl::Status CompiledModelImpl::SetOutputs(const CompiledPlan& load_plan) {
  outputs_ = graph_.outputs;
  for (size_t i = 0; i < load_plan.output_values.size(); ++i) {
    const PlanValue& v = load_plan.values[load_plan.output_values[i]];
    outputs_[i].type = v.type;
    outputs_[i].shape = v.shape;
  }
  if (!batchable_ && !dynamic_dims_) return absl::OkStatus();
  // A second, shape-only inference with every dynamic input dimension moved
  // (the batch to kSeparabilityProbeBatch, the others doubled, which keeps
  // any stride multiple) tells which output dimensions follow them, and
  // whether a batch may be split (FindBatchSeparable).
  Graph g2 = graph_;
  for (size_t i = 0; i < g2.inputs.size(); ++i) {
    g2.inputs[i].shape = load_shapes_[i];
    for (size_t d = 0; d < g2.inputs[i].shape.size(); ++d) {
      if (inputs_[i].shape[d] < 0) {
        g2.inputs[i].shape[d] =
            d == 0 && batchable_ ? kSeparabilityProbeBatch : load_shapes_[i][d] * 2;
      }
    }
  }
  const bool inferred = InferShapes(g2, options_.max_tensor_bytes).ok();
  // A model that does not infer at that batch is not split.
  batch_separable_ = batchable_ && inferred && FindBatchSeparable(g2);
  for (auto& out : outputs_) {
    auto it = g2.value_info.find(out.name);
    for (size_t d = 0; d < out.shape.size(); ++d) {
      // Where the moved shapes do not infer (a model that needs, say, a
      // multiple of 32), every dimension that is dynamic in the ONNX
      // declaration stays dynamic.
      const bool moved = inferred && it != g2.value_info.end() && d < it->second.shape.size() &&
                         it->second.shape[d] != out.shape[d];
      const auto declared = std::find_if(graph_.outputs.begin(), graph_.outputs.end(),
                                         [&](const TensorInfo& t) { return t.name == out.name; });
      const bool declared_dynamic =
          declared != graph_.outputs.end() && d < declared->shape.size() && declared->shape[d] < 0;
      if (moved || (!inferred && declared_dynamic && dynamic_dims_)) out.shape[d] = -1;
    }
  }
  return absl::OkStatus();
}

absl::Status CompiledModelImpl::CheckInputShapes(const InputShapes& shapes) const {
  if (shapes.size() != inputs_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", inputs_.size(), " inputs, got ", shapes.size()));
  }
  int64_t batch = -1;
  for (size_t i = 0; i < shapes.size(); ++i) {
    const TensorInfo& info = inputs_[i];
    const std::vector<int64_t>& s = shapes[i];
    bool fits = s.size() == info.shape.size();
    for (size_t d = 0; fits && d < s.size(); ++d) {
      fits = info.shape[d] < 0 ? s[d] >= 1 : s[d] == info.shape[d];
    }
    if (!fits) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", info.name, "' has shape ", ShapeString(s), ", model expects ",
          ShapeString(info.shape), batchable_ || dynamic_dims_ ? " (-1: any size >= 1)" : ""));
    }
    if (batchable_) {
      if (batch >= 0 && s[0] != batch) {
        return absl::InvalidArgumentError(absl::StrCat("input '", info.name, "' has batch size ",
                                                       s[0], " but input '", inputs_[0].name,
                                                       "' has ", batch));
      }
      batch = s[0];
      if (batch > options_.max_batch_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", info.name, "' has batch size ", batch, ", outside [1, ",
                         options_.max_batch_size, "] (max_batch_size)"));
      }
    }
    auto bound = options_.max_input_dims.find(info.name);
    if (bound == options_.max_input_dims.end()) continue;
    for (size_t d = batchable_ ? 1 : 0; d < s.size() && d < bound->second.size(); ++d) {
      if (bound->second[d] > 0 && s[d] > bound->second[d]) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", info.name, "' has shape ", ShapeString(s), ": dimension ", d,
                         " is ", s[d], ", over max_input_dims ", ShapeString(bound->second)));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<InputShapes> CompiledModelImpl::OutputShapes(const InputShapes& shapes) const {
  RETURN_IF_ERROR(CheckInputShapes(shapes));
  ASSIGN_OR_RETURN(auto plan, GetPlan(shapes));
  InputShapes out;
  out.reserve(plan->output_values.size());
  for (int v : plan->output_values) out.push_back(plan->values[v].shape);
  return out;
}

InputShapes CompiledModelImpl::ShapesForBatch(int batch) const {
  InputShapes shapes = load_shapes_;
  if (batchable_) {
    for (auto& s : shapes) s[0] = batch;
  }
  return shapes;
}

CompiledModelImpl::ConstantBytes CompiledModelImpl::constant_bytes() const {
  ConstantBytes bytes;
  for (const auto& [name, t] : graph_.constants) bytes.graph += t.bytes.size();
  bytes.compiled = constants_.Bytes();
  return bytes;
}

int CompiledModelImpl::compiles() const {
  absl::MutexLock lock(&mu_);
  return compiles_;
}

CompiledModel::PlanCacheStats CompiledModelImpl::plan_cache_stats() const {
  absl::MutexLock lock(&mu_);
  PlanCacheStats stats;
  stats.compiles = compiles_;
  stats.evictions = evictions_;
  stats.hits = hits_;
  stats.misses = misses_;
  for (const auto& [key, slot] : plans_) stats.cached += slot->done ? 1 : 0;
  return stats;
}

void CompiledModelImpl::EvictLocked(const PlanKey& keep) const {
  if (options_.max_cached_plans <= 0) return;
  for (;;) {
    int held = 0;
    auto oldest = plans_.end();
    for (auto it = plans_.begin(); it != plans_.end(); ++it) {
      if (!it->second->done) continue;  // being compiled: its waiters need the slot
      ++held;
      if (it->first != keep &&
          (oldest == plans_.end() || it->second->last_used < oldest->second->last_used)) {
        oldest = it;
      }
    }
    if (held <= options_.max_cached_plans || oldest == plans_.end()) return;
    // Executions that hold the plan keep it alive until they finish; the
    // contexts drop their binding of it on their next new plan.
    plans_.erase(oldest);
    ++evictions_;
  }
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::GetOneThreadPlan(
    const InputShapes& shapes, ConvLayout layout) const {
  PlanKey key{shapes, {}, /*one_thread=*/true, layout};
  RETURN_IF_ERROR(CheckInputShapes(shapes));
  return GetPlanFor(key);
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::GetPlan(
    const InputShapes& shapes, const std::vector<std::string>& values) const {
  RETURN_IF_ERROR(CheckInputShapes(shapes));
  if (values.size() != value_inputs_.size()) {
    std::vector<std::string> names;
    for (const size_t i : value_inputs_) names.push_back(inputs_[i].name);
    return absl::InvalidArgumentError(
        absl::StrCat("the plan depends on the values of input(s) ", absl::StrJoin(names, ", "),
                     "; it is compiled when the model runs with them"));
  }
  PlanKey key{shapes, values};
  for (size_t k = 0; k < value_inputs_.size(); ++k) {
    const TensorInfo& info = inputs_[value_inputs_[k]];
    const size_t expected =
        static_cast<size_t>(NumElements(shapes[value_inputs_[k]])) * DataTypeSize(info.type);
    if (values[k].size() != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", info.name, "' has ", values[k].size(), " bytes; expected ", expected));
    }
  }
  return GetPlanFor(key);
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::GetPlanFor(
    const PlanKey& key) const {
  std::shared_ptr<PlanSlot> slot;
  {
    absl::MutexLock lock(&mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      // Done, or another caller is compiling it: wait for that compile.
      slot = it->second;
      if (slot->done) {
        ++hits_;
      } else {
        ++misses_;
        mu_.Await(absl::Condition(&slot->done));
      }
      slot->last_used = ++tick_;
      return slot->plan;
    }
    ++misses_;
    slot = std::make_shared<PlanSlot>();
    plans_[key] = slot;
    ++compiles_;
  }
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> plan = CompileNoThrow(key);
  absl::MutexLock lock(&mu_);
  slot->plan = plan;
  slot->done = true;
  slot->last_used = ++tick_;
  // A failed compile is not kept: the next request tries again (its waiters
  // still see this failure through their slot).
  if (!plan.ok()) {
    plans_.erase(key);
  } else {
    EvictLocked(key);
  }
  return plan;
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::CompileNoThrow(
    const PlanKey& key) const {
  if (compile_hook_) compile_hook_(key.shapes);
  // oneDNN sizes a primitive's team when it is created: from this thread's
  // OpenMP setting, set to one thread for the compile of a part plan.
  const ScopedOmpThreads team(key.one_thread ? 1 : 0);
  try {
    return Compile(key);
  } catch (const dnnl::error& e) {
    return DnnlError(
        e, absl::StrCat("compiling the plan for input shapes ", ShapesString(key.shapes)));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while compiling a plan");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("plan compilation failed: ", e.what()));
  }
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::Compile(
    const PlanKey& key) const {
  const InputShapes& shapes = key.shapes;
  Graph g = graph_;
  for (size_t i = 0; i < g.inputs.size(); ++i) g.inputs[i].shape = shapes[i];
  // Inputs that select the plan by value are constants of this plan (the
  // plan binds no buffer for them; shape inference folds what they feed).
  for (size_t k = 0; k < value_inputs_.size(); ++k) {
    const TensorInfo& in = g.inputs[value_inputs_[k]];
    Tensor t = Tensor::Zeros(in.type, in.shape);
    std::copy(key.values[k].begin(), key.values[k].end(), reinterpret_cast<char*>(t.bytes.data()));
    g.constants[in.name] = std::move(t);
  }
  PassContext ctx(options_);
  absl::Status shaped = RunPipeline(ShapePipeline(), g, ctx, "shape");
  if (!shaped.ok() && dynamic_dims_) {
    return absl::Status(shaped.code(), absl::StrCat("at input shapes ", ShapesString(shapes), ": ",
                                                    shaped.message()));
  }
  RETURN_IF_ERROR(shaped);
  const int batch = batchable_ && !shapes.empty() ? static_cast<int>(shapes[0][0]) : 0;
  auto build = [&](const TunedVariant& variant,
                   ConstantCache* cache) -> absl::StatusOr<std::unique_ptr<CompiledPlan>> {
    PlanBuilder builder(g, batch, engine_, cache);
    builder.set_shared_constants(&shared_constant_names_);
    if (dynamic_dims_) builder.set_shapes_label(ShapesString(shapes));
    builder.set_tanh_kernel(options_.tanh_kernel);
    builder.set_rectifier_kernels(options_.rectifier_kernels);
    builder.set_zero_copy(options_.zero_copy);
    // Activation statistics observe every activation's output; a fused
    // 1x1 convolution's would never exist.
    builder.set_fuse_depthwise(options_.fuse_depthwise &&
                               options_.activation_stats_sample_every <= 0);
    builder.set_fuse_squeeze_excite(options_.fuse_squeeze_excite &&
                                    options_.activation_stats_sample_every <= 0);
    builder.set_conv_layout(variant.layout);
    builder.set_depthwise_kernel(options_.depthwise_kernel);
    builder.set_conv3x3_kernel(options_.conv3x3_kernel);
    builder.set_channel_split(options_.channel_split && variant.channel_split);
    builder.set_silu_kernel(options_.silu_kernel);
    ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, builder.Build());
    plan->conv_layout = variant.layout;
    return plan;
  };
  // Plans that depend on input values compile per value: not timed.
  if (options_.conv_layout != ConvLayout::kTuned || !value_inputs_.empty()) {
    const ConvLayout layout =
        options_.conv_layout == ConvLayout::kTuned ? ConvLayout::kAny : options_.conv_layout;
    ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, build({layout}, &constants_));
    return std::shared_ptr<const CompiledPlan>(std::move(plan));
  }
  // A part plan takes the whole team's layout (PlanKey::layout): not timed
  // (one thread: never channel-split).
  if (key.one_thread) {
    ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, build({key.layout}, &constants_));
    return std::shared_ptr<const CompiledPlan>(std::move(plan));
  }
  return CompileTuned(key, build);
}

namespace {

// True when two plans run the same steps (labels name layouts and kernels).
bool SameSteps(const CompiledPlan& a, const CompiledPlan& b) {
  if (a.steps.size() != b.steps.size()) return false;
  for (size_t i = 0; i < a.steps.size(); ++i)
    if (a.steps[i].label != b.steps[i].label) return false;
  return true;
}

// Steps on oneDNN's generic (ref:/simple:) or the engine's reference kernels.
int GenericSteps(const CompiledPlan& p) {
  int n = 0;
  for (const auto& step : p.steps) n += RunsGenericKernel(step.label) ? 1 : 0;
  return n;
}

// True when a step of `p` runs as parts (a channel-split convolution).
bool HasSplitSteps(const CompiledPlan& p) {
  for (const auto& step : p.steps) {
    if (!step.parts.empty()) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::CompileTuned(
    const PlanKey& key, const PlanBuildFn& build) const {
  const std::string plan_key = ShapesString(key.shapes);
  const int threads = omp_get_max_threads();
  if (std::optional<TunedVariant> known = tuning_->Find(plan_key, threads)) {
    ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, build(*known, &constants_));
    plan->description = absl::StrCat(
        "conv layout: ", TunedVariantName(*known), " (tuned; from ",
        options_.tuning_cache_dir.empty() ? "an earlier plan" : tuning_->PathFor(threads), ")\n",
        plan->description);
    return std::shared_ptr<const CompiledPlan>(std::move(plan));
  }
  // Timing is bounded where it may land on a request: only the load shapes
  // at a batch up to kMaxTunedBatch are timed.
  const int batch = batchable_ ? static_cast<int>(key.shapes[0][0]) : 1;
  InputShapes at_load = key.shapes;
  if (batchable_) {
    for (auto& shape : at_load) shape[0] = load_shapes_[0][0];
  }
  if (at_load != load_shapes_ || batch > kMaxTunedBatch) {
    return CompileInherited(batch, build, threads);
  }
  return TuneAndCompile(plan_key, build, threads);
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::CompileInherited(
    int batch, const PlanBuildFn& build, int threads) const {
  // The choice of the nearest plan of the load shapes tuned so far (batch
  // min(b, kMaxTunedBatch) down to 1), else oneDNN's own.
  TunedVariant variant;
  std::string from;
  for (int b = std::min(batch, kMaxTunedBatch); b >= 1 && from.empty(); --b) {
    InputShapes shapes = load_shapes_;
    if (batchable_) {
      for (auto& shape : shapes) shape[0] = b;
    }
    if (std::optional<TunedVariant> found = tuning_->Find(ShapesString(shapes), threads)) {
      variant = *found;
      from = ShapesString(shapes);
    }
    if (!batchable_) break;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, build(variant, &constants_));
  plan->description =
      absl::StrCat("conv layout: ", TunedVariantName(variant),
                   from.empty() ? " (not timed: no plan of the load shapes tuned yet)"
                                : absl::StrCat(" (as tuned for ", from, ")"),
                   "\n", plan->description);
  return std::shared_ptr<const CompiledPlan>(std::move(plan));
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::TuneAndCompile(
    const std::string& plan_key, const PlanBuildFn& build, int threads) const {
  const auto t0 = std::chrono::steady_clock::now();
  // The baseline shares the model's constants; the other candidates reorder
  // their weights privately, so a loser leaves nothing behind.
  std::vector<std::shared_ptr<CompiledPlan>> plans;
  std::vector<TunedVariant> variants;
  ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> base, build(TunedVariant{}, &constants_));
  plans.push_back(std::move(base));
  variants.push_back(TunedVariant{});
  ConstantCache scratch_constants;
  std::vector<std::string> skipped;
  auto add = [&](const TunedVariant& v) {
    absl::StatusOr<std::unique_ptr<CompiledPlan>> p = build(v, &scratch_constants);
    const char* why = !p.ok()                                       ? " (does not compile)"
                      : SameSteps(**p, *plans[0])                   ? " (same plan)"
                      : GenericSteps(**p) > GenericSteps(*plans[0]) ? " (generic kernels)"
                                                                    : nullptr;
    if (why != nullptr) {
      skipped.push_back(absl::StrCat(TunedVariantName(v), why));
      return;
    }
    plans.push_back(std::move(*p));
    variants.push_back(v);
  };
  for (const ConvLayout layout : TuningCandidates()) {
    if (layout != ConvLayout::kAny) add({layout});
  }
  // The channel split's rule (lower_conv.cc) was measured on one CPU: a
  // candidate that splits is timed without the split as well.
  for (size_t i = 0, n = plans.size(); i < n; ++i) {
    if (HasSplitSteps(*plans[i])) add({variants[i].layout, /*channel_split=*/false});
  }
  TuningChoice choice;
  std::string timing_error;
  if (plans.size() > 1) {
    // A candidate that cannot run (its arena cannot be allocated, say)
    // leaves oneDNN's own choice in place.
    absl::StatusOr<std::vector<double>> ms =
        TimePlans(*this, {plans.begin(), plans.end()}, threads, kTuningBudgetMs);
    if (ms.ok()) {
      for (size_t i = 0; i < plans.size(); ++i) choice.timings.push_back({variants[i], (*ms)[i]});
      choice.variant = PickFastest(choice.timings);
    } else {
      timing_error = std::string(ms.status().message());
    }
  }
  std::shared_ptr<CompiledPlan> plan = plans[0];
  plans.clear();
  if (choice.variant != TunedVariant{}) {
    // Again with the model's constants, which plans of other shapes share.
    ASSIGN_OR_RETURN(plan, build(choice.variant, &constants_));
  }
  const std::string store_error =
      timing_error.empty() ? tuning_->Store(plan_key, threads, choice) : "";
  std::vector<std::string> timed;
  for (const auto& t : choice.timings)
    timed.push_back(absl::StrFormat("%s %.3f ms", TunedVariantName(t.variant), t.ms));
  const double took =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::string note =
      absl::StrCat("conv layout: ", TunedVariantName(choice.variant), " (tuned in ",
                   absl::StrFormat("%.0f", took), " ms at ", threads, " thread(s)",
                   timed.empty() ? "" : ": ", absl::StrJoin(timed, ", "),
                   skipped.empty() ? "" : "; skipped ", absl::StrJoin(skipped, ", "), ")\n");
  if (!store_error.empty()) absl::StrAppend(&note, "  tuning not kept: ", store_error, "\n");
  if (!timing_error.empty()) absl::StrAppend(&note, "  timing failed: ", timing_error, "\n");
  plan->description = note + plan->description;
  return std::shared_ptr<const CompiledPlan>(std::move(plan));
}

std::string ActivationSummary::ToString() const {
  auto join = [](const std::map<std::string, int>& m) {
    std::vector<std::string> parts;
    parts.reserve(m.size());
    for (const auto& [k, v] : m) parts.push_back(absl::StrCat(k, " x", v));
    return parts.empty() ? std::string("none") : absl::StrJoin(parts, ", ");
  };
  std::string s = absl::StrCat("activations: ", join(counts));
  if (!patterns.empty()) absl::StrAppend(&s, "; patterns: ", join(patterns));
  if (!replaced.empty()) absl::StrAppend(&s, "; replaced: ", absl::StrJoin(replaced, ", "));
  return s;
}

absl::StatusOr<std::string> CompiledModelImpl::DescribePlan(int batch) const {
  if (batchable_ && (batch < 1 || batch > options_.max_batch_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size ", batch, " outside [1, ", options_.max_batch_size, "]"));
  }
  ASSIGN_OR_RETURN(auto plan, GetPlan(batch));
  return plan->description;
}

absl::StatusOr<std::string> CompiledModelImpl::DescribePlanForShapes(
    const InputShapes& shapes) const {
  ASSIGN_OR_RETURN(auto plan, GetPlan(shapes));
  return plan->description;
}

}  // namespace rectifier::engine
