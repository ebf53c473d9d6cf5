// ExecutionContext: binds a plan's values to this worker's arena, scratchpad
// and the caller's I/O buffers, then runs the steps on its oneDNN stream.
#include "server/engine/execution_context.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <map>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/cpu_info.h"
#include "server/common/status_macros.h"
#include "server/engine/lower/plan.h"
#include "server/engine/lower/plan_builder.h"
#include "server/engine/runtime/activation_stats.h"
#include "server/engine/runtime/compiled_model_impl.h"

namespace rectifier::engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& s) {
  return absl::StrCat("[", absl::StrJoin(s, ","), "]");
}

// This context's binding of one plan to the context's arena/scratchpad.
struct PlanState {
  std::shared_ptr<const CompiledPlan> plan;
  std::vector<std::byte*> ptrs;    // per value; I/O-rooted ones set per run
  std::vector<dnnl::memory> mems;  // per value used by primitives
  std::vector<std::unordered_map<int, dnnl::memory>> args;  // per step
  // Per step split into parts (PlanStep::parts): each part's arguments.
  std::vector<std::vector<std::unordered_map<int, dnnl::memory>>> part_args;
  std::vector<int> io_values;  // values whose root is an input/output
  // Activation statistics: per site, the value's memory and (for non-plain
  // layouts) a reorder into the context's plain stats buffer. Built on the
  // first sampled execution of the plan.
  bool sites_bound = false;
  std::vector<dnnl::memory> site_src, site_plain;
  std::vector<dnnl::reorder> site_reorder;
};

class ExecutionContextImpl final : public ExecutionContext {
 public:
  ExecutionContextImpl(std::shared_ptr<const CompiledModelImpl> model, int threads)
      : model_(std::move(model)),
        threads_(threads),
        sample_every_(model_->activation_stats_sample_every()),
        stream_(model_->engine()) {}

  // 0 = all CPUs this process may use (affinity and cgroup quota); set
  // explicitly so a previous context on this thread does not leave its count
  // behind.
  void SetThreads() const {
    omp_set_num_threads(threads_ > 0 ? threads_ : common::AvailableCpus());
  }

  absl::StatusOr<std::vector<Tensor>> Run(const std::vector<Tensor>& inputs) override {
    return RunOn(inputs);
  }

  absl::StatusOr<std::vector<Tensor>> RunViews(const std::vector<TensorView>& inputs) override {
    return RunOn(inputs);
  }

  // Run over owned tensors or views (In: Tensor or TensorView).
  template <typename In>
  absl::StatusOr<std::vector<Tensor>> RunOn(const std::vector<In>& inputs) {
    ASSIGN_OR_RETURN(InputShapes shapes,
                     CheckInputs(inputs.size(), [&](size_t i) { return &inputs[i]; }));
    std::vector<const In*> in_ptrs;
    in_ptrs.reserve(inputs.size());
    for (const auto& t : inputs) in_ptrs.push_back(&t);
    if (const int parts = SplitParts(shapes); parts > 1) {
      ASSIGN_OR_RETURN(std::vector<TensorInfo> infos, PrepareSplit(shapes, parts));
      std::vector<Tensor> outputs;
      std::vector<Tensor*> out_ptrs;
      outputs.reserve(infos.size());
      out_ptrs.reserve(infos.size());
      for (const TensorInfo& info : infos) outputs.push_back(Tensor::Zeros(info.type, info.shape));
      for (auto& t : outputs) out_ptrs.push_back(&t);
      RETURN_IF_ERROR(RunSplit(in_ptrs, out_ptrs));
      return outputs;
    }
    last_parts_ = 1;
    // Before the plan is built: oneDNN fixes a primitive's thread count when
    // it is created, so a plan compiled under the default (all CPUs) would
    // run full-width teams whatever this context was given.
    SetThreads();
    ASSIGN_OR_RETURN(auto plan,
                     model_->GetPlan(shapes, ValuesOf([&](size_t i) { return &inputs[i]; })));
    std::vector<Tensor> outputs;
    std::vector<Tensor*> out_ptrs;
    outputs.reserve(plan->output_values.size());
    for (int v : plan->output_values) {
      outputs.push_back(Tensor::Zeros(plan->values[v].type, plan->values[v].shape));
    }
    out_ptrs.reserve(outputs.size());
    for (auto& t : outputs) out_ptrs.push_back(&t);
    RETURN_IF_ERROR(Execute(plan, Pointers(in_ptrs), Pointers(out_ptrs)));
    return outputs;
  }

  int last_batch_parts() const override { return last_parts_; }

  void PauseActivationStatistics(bool paused) override { stats_paused_ = paused; }

  // Runs `plan` once (TimePlans: a plan not from the model's cache).
  absl::Status RunPlan(const std::shared_ptr<const CompiledPlan>& plan,
                       const std::vector<const Tensor*>& inputs,
                       const std::vector<Tensor*>& outputs) {
    return Execute(plan, Pointers(inputs), Pointers(outputs));
  }

  void EnableStepProfile(bool on) override {
    profile_ = on;
    for (auto& part : parts_) part->EnableStepProfile(on);
  }

  std::vector<StepProfile> StepProfiles() const override {
    std::map<std::pair<int, std::string>, StepProfile> all = profiles_;
    // The parts of split batches: one profile per part plan, their runs
    // and times summed over the parts (which ran at the same time).
    for (const auto& part : parts_) {
      for (const auto& [key, profile] : part->profiles_) {
        auto [it, inserted] = all.emplace(key, profile);
        if (inserted) continue;
        it->second.runs += profile.runs;
        for (size_t s = 0; s < profile.ms.size() && s < it->second.ms.size(); ++s)
          it->second.ms[s] += profile.ms[s];
      }
    }
    std::vector<StepProfile> out;
    out.reserve(all.size());
    for (const auto& [batch, profile] : all) out.push_back(profile);
    return out;
  }

  absl::Status RunInto(const std::vector<const Tensor*>& inputs,
                       const std::vector<Tensor*>& outputs) override {
    ASSIGN_OR_RETURN(InputShapes shapes,
                     CheckInputs(inputs.size(), [&](size_t i) { return inputs[i]; }));
    if (const int parts = SplitParts(shapes); parts > 1) {
      ASSIGN_OR_RETURN(std::vector<TensorInfo> infos, PrepareSplit(shapes, parts));
      if (outputs.size() != infos.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("expected ", infos.size(), " outputs, got ", outputs.size()));
      }
      for (size_t i = 0; i < outputs.size(); ++i) {
        const TensorInfo& info = infos[i];
        if (outputs[i] == nullptr || outputs[i]->type != info.type ||
            outputs[i]->shape != info.shape ||
            outputs[i]->bytes.size() !=
                static_cast<size_t>(NumElements(info.shape)) * DataTypeSize(info.type)) {
          return absl::InvalidArgumentError(absl::StrCat("output '", info.name, "' buffer must be ",
                                                         DataTypeName(info.type), " ",
                                                         ShapeString(info.shape)));
        }
      }
      return RunSplit(inputs, outputs);
    }
    last_parts_ = 1;
    SetThreads();  // before the plan is built, as in Run
    ASSIGN_OR_RETURN(auto plan,
                     model_->GetPlan(shapes, ValuesOf([&](size_t i) { return inputs[i]; })));
    if (outputs.size() != plan->output_values.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", plan->output_values.size(), " outputs, got ", outputs.size()));
    }
    for (size_t i = 0; i < outputs.size(); ++i) {
      const PlanValue& v = plan->values[plan->output_values[i]];
      if (outputs[i] == nullptr || outputs[i]->type != v.type || outputs[i]->shape != v.shape ||
          outputs[i]->bytes.size() != v.bytes) {
        return absl::InvalidArgumentError(absl::StrCat("output '", v.name, "' buffer must be ",
                                                       DataTypeName(v.type), " ",
                                                       ShapeString(v.shape)));
      }
    }
    return Execute(plan, Pointers(inputs), Pointers(outputs));
  }

 private:
  template <typename T>
  static std::vector<std::byte*> Pointers(const std::vector<T*>& tensors) {
    std::vector<std::byte*> ptrs;
    ptrs.reserve(tensors.size());
    for (T* t : tensors) ptrs.push_back(const_cast<std::byte*>(t->bytes.data()));
    return ptrs;
  }

  // How many parts a batch of these shapes runs as (1: not split): this
  // context's thread count T when the model allows a split, no statistics
  // are sampled, T >= 2 and the batch is a multiple of T.
  int SplitParts(const InputShapes& shapes) const {
    if (!model_->batch_split_enabled() || sample_every_ > 0 || shapes.empty() ||
        shapes[0].empty()) {
      return 1;
    }
    const int threads = threads_ > 0 ? threads_ : common::AvailableCpus();
    const int64_t batch = shapes[0][0];
    return threads >= 2 && batch >= threads && batch % threads == 0 ? threads : 1;
  }

  // The part contexts (one thread each) and their plan for a batch of
  // `shapes` split into `parts`, compiled here, on the calling thread;
  // returns the whole batch's outputs (the part plan's, dim 0 times
  // `parts`).
  absl::StatusOr<std::vector<TensorInfo>> PrepareSplit(const InputShapes& shapes, int parts) {
    InputShapes part_shapes = shapes;
    for (auto& s : part_shapes) s[0] /= parts;
    while (static_cast<int>(parts_.size()) < parts) {
      auto part = std::make_unique<ExecutionContextImpl>(model_, 1);
      part->EnableStepProfile(profile_);
      parts_.push_back(std::move(part));
    }
    // The whole team's plan of the part's shapes first: its conv layout,
    // so that an image gets the same kernels, and bit for bit the same
    // results, whether its batch was split or not.
    SetThreads();
    ASSIGN_OR_RETURN(auto team_plan, model_->GetPlan(part_shapes));
    ASSIGN_OR_RETURN(split_plan_, model_->GetOneThreadPlan(part_shapes, team_plan->conv_layout));
    std::vector<TensorInfo> infos;
    for (const int v : split_plan_->output_values) {
      const PlanValue& value = split_plan_->values[v];
      TensorInfo info{value.name, value.type, value.shape};
      info.shape[0] *= parts;
      infos.push_back(std::move(info));
    }
    split_parts_ = parts;
    return infos;
  }

  // Runs the batch prepared by PrepareSplit: part k reads and writes the
  // k-th slice (dim 0) of every input and output, on thread k of a team of
  // split_parts_, with its own arena.
  template <typename In, typename Out>
  absl::Status RunSplit(const std::vector<In*>& inputs, const std::vector<Out*>& outputs) {
    const int parts = split_parts_;
    std::vector<std::vector<std::byte*>> in(parts), out(parts);
    for (int k = 0; k < parts; ++k) {
      for (const In* t : inputs) {
        const size_t slice = t->bytes.size() / static_cast<size_t>(parts);
        in[k].push_back(const_cast<std::byte*>(t->bytes.data()) + slice * k);
      }
      for (Out* t : outputs) {
        const size_t slice = t->bytes.size() / static_cast<size_t>(parts);
        out[k].push_back(t->bytes.data() + slice * k);
      }
    }
    std::vector<absl::Status> status(static_cast<size_t>(parts));
    std::vector<char> ran(static_cast<size_t>(parts), 0);
    auto run_part = [&](int k) {
      ran[k] = 1;
      // Nothing may leave an OpenMP region by an exception.
      try {
        status[k] = parts_[k]->Execute(split_plan_, in[k], out[k]);
      } catch (const std::bad_alloc&) {
        status[k] = absl::ResourceExhaustedError("out of memory while running a batch part");
      } catch (const std::exception& e) {
        status[k] = absl::InternalError(absl::StrCat("batch part failed: ", e.what()));
      }
    };
#pragma omp parallel num_threads(parts)
    {
      const int k = omp_get_thread_num();
      if (k < parts) run_part(k);
    }
    // A team smaller than asked for (the runtime's thread limit, or this
    // call inside another parallel region) leaves parts not run: they run
    // here, one after another.
    for (int k = 0; k < parts; ++k) {
      if (ran[k] == 0) run_part(k);
    }
    SetThreads();
    for (absl::Status& s : status) RETURN_IF_ERROR(s);
    last_parts_ = parts;
    return absl::OkStatus();
  }

  // The bytes of the inputs that select the plan by value (usually none).
  template <typename Get>
  std::vector<std::string> ValuesOf(Get get) const {
    std::vector<std::string> values;
    for (const size_t i : model_->value_inputs()) {
      const auto* t = get(i);
      values.emplace_back(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
    }
    return values;
  }

  // The inputs' shapes, once their count, types, shapes and byte sizes fit
  // the model.
  template <typename Get>
  absl::StatusOr<InputShapes> CheckInputs(size_t count, Get get) {
    const auto& infos = model_->inputs();
    if (count != infos.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", infos.size(), " inputs, got ", count));
    }
    InputShapes shapes;
    shapes.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      const auto* t = get(i);
      if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("input ", i, " is null"));
      if (t->type != infos[i].type) {
        return absl::InvalidArgumentError(absl::StrCat("input '", infos[i].name, "' must be ",
                                                       DataTypeName(infos[i].type), ", got ",
                                                       DataTypeName(t->type)));
      }
      shapes.push_back(t->shape);
    }
    RETURN_IF_ERROR(model_->CheckInputShapes(shapes));
    for (size_t i = 0; i < count; ++i) {
      const auto* t = get(i);
      if (t->bytes.size() != static_cast<size_t>(t->num_elements()) * DataTypeSize(t->type)) {
        return absl::InvalidArgumentError(
            absl::StrCat("input '", infos[i].name, "' byte size does not match its shape"));
      }
    }
    return shapes;
  }

  absl::StatusOr<PlanState*> StateFor(const std::shared_ptr<const CompiledPlan>& plan) {
    auto it = states_.find(plan.get());
    if (it != states_.end()) return it->second.get();
    // Bindings of plans that only this context still holds: the model
    // dropped them from its cache (max_cached_plans), so they will not be
    // asked for again by that pointer.
    for (auto st = states_.begin(); st != states_.end();) {
      st = st->second->plan.use_count() == 1 ? states_.erase(st) : std::next(st);
    }
    // One arena and one scratchpad per context, sized for the largest plan
    // run so far (plans run one at a time); growing them rebinds all plans.
    if (plan->arena_bytes > arena_.size() || plan->scratchpad_bytes > scratchpad_.size() ||
        arena_.data() == nullptr) {
      states_.clear();
      arena_ = AlignedBuffer(std::max(plan->arena_bytes, arena_.size()));
      scratchpad_ = AlignedBuffer(std::max(plan->scratchpad_bytes, scratchpad_.size()));
      if (arena_.data() == nullptr || scratchpad_.data() == nullptr) {
        arena_ = AlignedBuffer();
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot allocate the ", plan->arena_bytes, "-byte activation arena"));
      }
    }
    auto st = std::make_unique<PlanState>();
    st->plan = plan;
    const size_t n = plan->values.size();
    st->ptrs.assign(n, nullptr);
    st->mems.resize(n);
    for (size_t v = 0; v < n; ++v) {
      const int r = plan->Root(static_cast<int>(v));
      const PlanValue& root = plan->values[r];
      switch (root.storage) {
        case PlanValue::Storage::kArena:
          st->ptrs[v] = arena_.data() + root.offset + plan->ByteOffset(static_cast<int>(v));
          break;
        case PlanValue::Storage::kConstant:
          st->ptrs[v] =
              const_cast<std::byte*>(root.constant) + plan->ByteOffset(static_cast<int>(v));
          break;
        default:
          st->io_values.push_back(static_cast<int>(v));
          break;
      }
    }
    // A primitive step's arguments: its values' memories and a scratchpad
    // at `scratchpad`.
    auto bind = [&](const PlanStep& step, std::byte* scratchpad) {
      std::unordered_map<int, dnnl::memory> args;
      for (const auto& [arg, v] : step.args) {
        if (!st->mems[v]) {
          st->mems[v] = dnnl::memory(plan->values[v].md, model_->engine(), st->ptrs[v]);
        }
        args.emplace(arg, st->mems[v]);
      }
      if (step.scratchpad_md.get_size() > 0) {
        args.emplace(DNNL_ARG_SCRATCHPAD,
                     dnnl::memory(step.scratchpad_md, model_->engine(), scratchpad));
      }
      return args;
    };
    try {
      st->part_args.resize(plan->steps.size());
      for (size_t s = 0; s < plan->steps.size(); ++s) {
        const PlanStep& step = plan->steps[s];
        std::unordered_map<int, dnnl::memory> args;
        if (step.kind == PlanStep::Kind::kPrimitive && step.parts.empty()) {
          args = bind(step, scratchpad_.data());
        }
        for (size_t k = 0; k < step.parts.size(); ++k) {
          st->part_args[s].push_back(
              bind(step.parts[k], scratchpad_.data() + k * step.part_scratchpad_stride));
        }
        st->args.push_back(std::move(args));
      }
      size_t most = 0;
      for (const auto& step : plan->steps) most = std::max(most, step.parts.size());
      while (part_streams_.size() < most) part_streams_.emplace_back(model_->engine());
    } catch (const dnnl::error& e) {
      return absl::InternalError(absl::StrCat("binding plan memory: ", e.what()));
    }
    PlanState* raw = st.get();
    states_[plan.get()] = std::move(st);
    return raw;
  }

  // Runs `plan` on the inputs' and outputs' bytes (in plan order; inputs
  // are only read).
  absl::Status Execute(const std::shared_ptr<const CompiledPlan>& plan,
                       const std::vector<std::byte*>& inputs,
                       const std::vector<std::byte*>& outputs) {
    ASSIGN_OR_RETURN(PlanState * st, StateFor(plan));
    const CompiledPlan& p = *plan;
    for (int v : st->io_values) {
      const PlanValue& root = p.values[p.Root(v)];
      std::byte* ptr = root.storage == PlanValue::Storage::kInput ? inputs[root.io_index]
                                                                  : outputs[root.io_index];
      ptr += p.ByteOffset(v);
      st->ptrs[v] = ptr;
      if (st->mems[v]) st->mems[v].set_data_handle(ptr);
    }
    SetThreads();
    // Activation statistics: one branch per execution when not sampled.
    const bool sample = sample_every_ > 0 && !stats_paused_ && executions_++ % sample_every_ == 0;
    if (profile_) return sample ? RunSteps<true, true>(p, st) : RunSteps<false, true>(p, st);
    return sample ? RunSteps<true, false>(p, st) : RunSteps<false, false>(p, st);
  }

  StepProfile& ProfileFor(const CompiledPlan& p) {
    StepProfile& profile = profiles_[{p.batch, p.shapes_label}];
    if (profile.steps.size() != p.steps.size()) {
      profile = StepProfile{};
      profile.batch = p.batch;
      profile.shapes = p.shapes_label;
      for (const auto& step : p.steps) profile.steps.push_back(step.label);
      profile.ms.assign(p.steps.size(), 0.0);
    }
    return profile;
  }

  template <bool kSample, bool kProfile>
  absl::Status RunSteps(const CompiledPlan& p, PlanState* st) {
    using Clock = std::chrono::steady_clock;
    StepProfile* profile = nullptr;
    if constexpr (kProfile) {
      profile = &ProfileFor(p);
      ++profile->runs;
    }
    Clock::time_point t0;
    // Closes step `s`'s timing (after the stream has drained).
    auto timed = [&](size_t s) {
      if constexpr (kProfile) {
        stream_.wait();
        const auto t1 = Clock::now();
        profile->ms[s] += std::chrono::duration<double, std::milli>(t1 - t0).count();
        t0 = t1;
      }
    };
    try {
      if constexpr (kProfile) t0 = Clock::now();
      for (size_t s = 0; s < p.steps.size(); ++s) {
        const PlanStep& step = p.steps[s];
        if (step.kind == PlanStep::Kind::kPrimitive) {
          if (step.parts.empty()) {
            step.primitive.execute(stream_, st->args[s]);
          } else {
            RETURN_IF_ERROR(RunParts(step, st->part_args[s]));
          }
          timed(s);
          if constexpr (kSample) {
            if (p.site_after_step[s] >= 0) RETURN_IF_ERROR(SampleSite(p, st, p.site_after_step[s]));
          }
          if constexpr (kProfile) t0 = Clock::now();
          continue;
        }
        stream_.wait();
        std::vector<View> in(step.inputs.size()), out(step.outputs.size());
        for (size_t i = 0; i < step.inputs.size(); ++i) {
          const int v = step.inputs[i];
          if (v < 0) continue;
          in[i] = View{p.values[v].type, p.values[v].shape, st->ptrs[v]};
        }
        for (size_t i = 0; i < step.outputs.size(); ++i) {
          const int v = step.outputs[i];
          if (v < 0) continue;
          out[i] = View{p.values[v].type, p.values[v].shape, st->ptrs[v]};
        }
        absl::Status status = step.compute(step.node, in, out);
        if (!status.ok()) return status;
        timed(s);
        if constexpr (kSample) {
          if (p.site_after_step[s] >= 0) RETURN_IF_ERROR(SampleSite(p, st, p.site_after_step[s]));
        }
        if constexpr (kProfile) t0 = Clock::now();
      }
      stream_.wait();
    } catch (const dnnl::error& e) {
      return absl::InternalError(absl::StrCat("oneDNN execution failed: ", e.what()));
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError("out of memory while running the model");
    } catch (const std::exception& e) {
      return absl::InternalError(absl::StrCat("execution failed: ", e.what()));
    }
    return absl::OkStatus();
  }

  // Runs a step's parts at once, part k on thread k % team of a team of at
  // most this context's threads (each part's primitive was compiled for one
  // thread; inside the parallel region oneDNN runs it on the calling thread
  // alone). A plan compiled for more threads than this context runs (plans
  // are cached by shape) thus stays within the context's threads.
  absl::Status RunParts(const PlanStep& step,
                        std::vector<std::unordered_map<int, dnnl::memory>>& args) {
    const int parts = static_cast<int>(step.parts.size());
    const int team = std::max(1, std::min(parts, omp_get_max_threads()));
    if (part_streams_.size() < step.parts.size()) {
      return absl::InternalError("a step has more parts than the context has streams");
    }
    part_ran_.assign(step.parts.size(), 0);
    part_error_.assign(step.parts.size(), std::string());
    auto run_part = [&](int k) {
      part_ran_[k] = 1;
      // Nothing may leave an OpenMP region by an exception.
      try {
        step.parts[k].primitive.execute(part_streams_[k], args[k]);
        part_streams_[k].wait();
      } catch (const std::exception& e) {
        part_error_[k] = e.what();
      }
    };
    stream_.wait();
    if (team == 1) {
      for (int k = 0; k < parts; ++k) run_part(k);
    } else {
#pragma omp parallel num_threads(team)
      {
        const int t = omp_get_thread_num();
        if (t < team) {
          for (int k = t; k < parts; k += team) run_part(k);
        }
      }
    }
    // A smaller team (the runtime's thread limit, or a call from inside
    // another parallel region) leaves parts not run: they run here.
    for (int k = 0; k < parts; ++k) {
      if (part_ran_[k] == 0) run_part(k);
    }
    for (const std::string& e : part_error_) {
      if (!e.empty()) return absl::InternalError(absl::StrCat("oneDNN execution failed: ", e));
    }
    return absl::OkStatus();
  }

  // Scans activation site `i` right after the step that wrote it (before the
  // memory planner lets a later step reuse its bytes) and merges the counts
  // into the model's accumulator. Blocked layouts (nChw8c/16c, padded
  // channels) are first reordered into a plain buffer.
  absl::Status SampleSite(const CompiledPlan& p, PlanState* st, int i) {
    stream_.wait();
    if (!st->sites_bound) {
      size_t bytes = 0;
      for (const auto& site : p.activation_sites) {
        const PlanValue& v = p.values[site.value];
        if (!v.plain) bytes = std::max(bytes, PlainBytes(v));
      }
      if (bytes > stats_buffer_.size()) stats_buffer_ = AlignedBuffer(bytes);
      for (const auto& site : p.activation_sites) {
        const PlanValue& v = p.values[site.value];
        st->site_src.emplace_back(v.md, model_->engine(), st->ptrs[site.value]);
        if (v.plain) {
          st->site_plain.emplace_back();
          st->site_reorder.emplace_back();
          continue;
        }
        dnnl::memory::dims dims(v.shape.begin(), v.shape.end());
        dnnl::memory::dims strides(dims.size(), 1);
        for (int d = static_cast<int>(dims.size()) - 2; d >= 0; --d)
          strides[d] = strides[d + 1] * dims[d + 1];
        const dnnl::memory::desc plain_md(dims, dnnl::memory::data_type::f32, strides);
        st->site_plain.emplace_back(plain_md, model_->engine(), stats_buffer_.data());
        st->site_reorder.emplace_back(dnnl::reorder(st->site_src.back(), st->site_plain.back()));
      }
      st->sites_bound = true;
    }
    const ActivationSite& site = p.activation_sites[i];
    const PlanValue& v = p.values[site.value];
    const float* data;
    if (v.plain) {
      data = reinterpret_cast<const float*>(st->ptrs[site.value]);
    } else if (const int block = DirectScanBlock(v); block >= 0) {
      model_->activation_stats().Merge(
          site.name, site.kind, site.step,
          ScanActivationNhwcOrBlocked(reinterpret_cast<const float*>(st->ptrs[site.value]), v.shape,
                                      block));
      return absl::OkStatus();
    } else {
      st->site_src[i].set_data_handle(st->ptrs[site.value]);
      st->site_plain[i].set_data_handle(stats_buffer_.data());
      st->site_reorder[i].execute(stream_, st->site_src[i], st->site_plain[i]);
      stream_.wait();
      data = reinterpret_cast<const float*>(stats_buffer_.data());
    }
    model_->activation_stats().Merge(site.name, site.kind, site.step,
                                     ScanActivation(data, v.shape));
    return absl::OkStatus();
  }

  // 0 for dense NHWC, 8/16 for dense nChw8c/16c (scanned in place); -1 for
  // other layouts (reordered to plain first).
  static int DirectScanBlock(const PlanValue& v) {
    if (v.shape.size() != 4) return -1;
    const std::string layout = LayoutName(v.md);
    const size_t hw = static_cast<size_t>(v.shape[2] * v.shape[3]) * sizeof(float);
    const size_t n = static_cast<size_t>(v.shape[0]), c = static_cast<size_t>(v.shape[1]);
    if (layout == "acdb" && v.md.get_size() == n * c * hw) return 0;
    for (int block : {8, 16}) {
      const size_t padded = (c + block - 1) / block * block;
      if (layout == absl::StrCat("aBcd", block, "b") && v.md.get_size() == n * padded * hw)
        return block;
    }
    return -1;
  }

  static size_t PlainBytes(const PlanValue& v) {
    size_t n = sizeof(float);
    for (int64_t d : v.shape) n *= static_cast<size_t>(d);
    return n;
  }

  std::shared_ptr<const CompiledModelImpl> model_;
  int threads_;
  int sample_every_;
  uint64_t executions_ = 0;
  bool stats_paused_ = false;
  bool profile_ = false;
  std::map<std::pair<int, std::string>, StepProfile> profiles_;  // by batch, shapes
  AlignedBuffer stats_buffer_;
  dnnl::stream stream_;
  // One stream per part of a split step (PlanStep::parts), and per part
  // whether it ran and its error.
  std::vector<dnnl::stream> part_streams_;
  std::vector<char> part_ran_;
  std::vector<std::string> part_error_;
  AlignedBuffer arena_;
  AlignedBuffer scratchpad_;
  std::unordered_map<const CompiledPlan*, std::unique_ptr<PlanState>> states_;
  // Batch split (CompileOptions::batch_split): one context per part, the
  // part plan and part count of the batch being run, and the parts of the
  // last run (1: not split).
  std::vector<std::unique_ptr<ExecutionContextImpl>> parts_;
  std::shared_ptr<const CompiledPlan> split_plan_;
  int split_parts_ = 1;
  int last_parts_ = 1;
};

}  // namespace

absl::StatusOr<std::vector<double>> TimePlans(
    const CompiledModelImpl& model, const std::vector<std::shared_ptr<const CompiledPlan>>& plans,
    int threads, double budget_ms) {
  using Clock = std::chrono::steady_clock;
  // The context does not own the model: it lives only inside this call,
  // which the model's own compile makes.
  ExecutionContextImpl context(
      std::shared_ptr<const CompiledModelImpl>(std::shared_ptr<const CompiledModelImpl>(), &model),
      threads);
  context.PauseActivationStatistics(true);
  struct Io {
    std::vector<Tensor> in, out;
    std::vector<const Tensor*> in_ptrs;
    std::vector<Tensor*> out_ptrs;
  };
  std::vector<Io> io(plans.size());
  for (size_t i = 0; i < plans.size(); ++i) {
    const CompiledPlan& p = *plans[i];
    for (const int v : p.input_values) {
      Tensor t = v >= 0 ? Tensor::Zeros(p.values[v].type, p.values[v].shape) : Tensor{};
      if (t.type == DataType::kFloat32) {
        float* f = reinterpret_cast<float*>(t.bytes.data());
        std::fill(f, f + t.num_elements(), 0.1f);
      }
      io[i].in.push_back(std::move(t));
    }
    for (const int v : p.output_values) {
      io[i].out.push_back(Tensor::Zeros(p.values[v].type, p.values[v].shape));
    }
    for (const auto& t : io[i].in) io[i].in_ptrs.push_back(&t);
    for (auto& t : io[i].out) io[i].out_ptrs.push_back(&t);
  }
  std::vector<double> best(plans.size(), 0);
  const auto start = Clock::now();
  for (int round = 0; round < kTuningMaxRounds; ++round) {
    for (size_t i = 0; i < plans.size(); ++i) {
      // An untimed run first: the timed one then finds this plan's weights
      // and arena in the caches, as a plan run request after request does.
      RETURN_IF_ERROR(context.RunPlan(plans[i], io[i].in_ptrs, io[i].out_ptrs));
      const auto t0 = Clock::now();
      RETURN_IF_ERROR(context.RunPlan(plans[i], io[i].in_ptrs, io[i].out_ptrs));
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (best[i] == 0 || ms < best[i]) best[i] = ms;
    }
    const double spent = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (spent > budget_ms) break;
  }
  return best;
}

absl::StatusOr<std::unique_ptr<ExecutionContext>> ExecutionContext::Create(
    const std::shared_ptr<const CompiledModel>& model, const ContextOptions& options) {
  auto impl = std::dynamic_pointer_cast<const CompiledModelImpl>(model);
  if (impl == nullptr) return absl::InvalidArgumentError("model was not created by the engine");
  if (options.threads < 0) return absl::InvalidArgumentError("threads must be >= 0");
  try {
    return std::unique_ptr<ExecutionContext>(
        new ExecutionContextImpl(std::move(impl), options.threads));
  } catch (const dnnl::error& e) {
    return absl::InternalError(absl::StrCat("creating oneDNN stream: ", e.what()));
  }
}

}  // namespace rectifier::engine
