// CompiledModel: import, batch-independent passes, per-batch plan cache.
#include <fstream>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/status_macros.h"
#include "server/engine/ir/onnx_import.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/passes/activations.h"
#include "server/engine/passes/pipeline.h"
#include "server/engine/passes/shape_inference.h"
#include "server/engine/runtime/compiled_model_impl.h"

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

absl::StatusOr<std::shared_ptr<const CompiledModel>> FromBytesImpl(std::string_view onnx_bytes,
                                                                   const CompileOptions& options) {
  ASSIGN_OR_RETURN(Graph graph,
                   ImportOnnx(onnx_bytes, options.constant_inputs, options.max_tensor_bytes));
  ASSIGN_OR_RETURN(auto model, CompiledModelImpl::Create(std::move(graph), options));
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

CompiledModelImpl::CompiledModelImpl(Graph graph, const CompileOptions& options)
    : graph_(std::move(graph)), options_(options), engine_(dnnl::engine::kind::cpu, 0) {
  options_.constant_inputs.clear();  // already bound into the graph
}

absl::StatusOr<std::shared_ptr<CompiledModelImpl>> CompiledModelImpl::Create(
    Graph graph, const CompileOptions& options) {
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
    model.reset(new CompiledModelImpl(std::move(graph), options));
  } catch (const dnnl::error& e) {
    return DnnlError(e, "creating the CPU engine");
  }
  summary.counts = CountActivations(model->graph_);
  model->activation_summary_ = std::move(summary);
  model->inputs_ = model->graph_.inputs;
  bool batchable = !model->inputs_.empty();
  for (const auto& in : model->inputs_) {
    if (in.shape.empty() || in.shape[0] != -1) batchable = false;
    for (size_t d = 1; d < in.shape.size(); ++d) {
      if (in.shape[d] < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", in.name, "' has dynamic dimension ", d,
                         "; only the batch dimension (0) may be dynamic"));
      }
    }
  }
  for (const auto& in : model->inputs_) {
    if (!batchable && !in.shape.empty() && in.shape[0] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", in.name,
                       "' has a dynamic batch dimension but other inputs "
                       "are static; either all or none must be batchable"));
    }
  }
  model->batchable_ = batchable;
  // Compile eagerly once so that load fails on a broken model, and learn the
  // output types/shapes; a second (shape-only) inference at batch 2 tells
  // which output dims follow the batch.
  ASSIGN_OR_RETURN(auto plan, model->GetPlan(1));
  model->outputs_ = model->graph_.outputs;
  for (size_t i = 0; i < plan->output_values.size(); ++i) {
    const PlanValue& v = plan->values[plan->output_values[i]];
    model->outputs_[i].type = v.type;
    model->outputs_[i].shape = v.shape;
  }
  if (batchable) {
    Graph g2 = model->graph_;
    auto shapes = model->InputShapes(2);
    for (size_t i = 0; i < g2.inputs.size(); ++i) g2.inputs[i].shape = shapes[i];
    if (InferShapes(g2, options.max_tensor_bytes).ok()) {
      for (auto& out : model->outputs_) {
        auto it = g2.value_info.find(out.name);
        if (it != g2.value_info.end() && !out.shape.empty() && !it->second.shape.empty() &&
            it->second.shape[0] != out.shape[0]) {
          out.shape[0] = -1;
        }
      }
    }
  }
  return model;
}

std::vector<std::vector<int64_t>> CompiledModelImpl::InputShapes(int batch) const {
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& in : graph_.inputs) {
    std::vector<int64_t> s = in.shape;
    if (batchable_ && !s.empty()) s[0] = batch;
    shapes.push_back(s);
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
  for (const auto& [key, slot] : plans_) stats.cached += slot->done ? 1 : 0;
  return stats;
}

void CompiledModelImpl::EvictLocked(int keep) const {
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

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::GetPlan(int batch) const {
  const int key = batchable_ ? batch : 0;
  if (batchable_ && (batch < 1 || batch > options_.max_batch_size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size ", batch, " outside [1, ", options_.max_batch_size, "]"));
  }
  std::shared_ptr<PlanSlot> slot;
  {
    absl::MutexLock lock(&mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      // Done, or another caller is compiling it: wait for that compile.
      slot = it->second;
      mu_.Await(absl::Condition(&slot->done));
      slot->last_used = ++tick_;
      return slot->plan;
    }
    slot = std::make_shared<PlanSlot>();
    plans_[key] = slot;
    ++compiles_;
  }
  absl::StatusOr<std::shared_ptr<const CompiledPlan>> plan = CompileNoThrow(batch);
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
    int batch) const {
  if (compile_hook_) compile_hook_(batch);
  try {
    return Compile(batch);
  } catch (const dnnl::error& e) {
    return DnnlError(e, absl::StrCat("compiling the plan for batch ", batch));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("out of memory while compiling a plan");
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("plan compilation failed: ", e.what()));
  }
}

absl::StatusOr<std::shared_ptr<const CompiledPlan>> CompiledModelImpl::Compile(int batch) const {
  Graph g = graph_;
  auto shapes = InputShapes(batch);
  for (size_t i = 0; i < g.inputs.size(); ++i) g.inputs[i].shape = shapes[i];
  PassContext ctx(options_);
  RETURN_IF_ERROR(RunPipeline(ShapePipeline(), g, ctx, "shape"));
  PlanBuilder builder(g, batchable_ ? batch : 0, engine_, &constants_);
  builder.set_tanh_kernel(options_.tanh_kernel);
  builder.set_rectifier_kernels(options_.rectifier_kernels);
  ASSIGN_OR_RETURN(std::unique_ptr<CompiledPlan> plan, builder.Build());
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
  ASSIGN_OR_RETURN(auto plan, GetPlan(batch));
  return plan->description;
}

}  // namespace rectifier::engine
