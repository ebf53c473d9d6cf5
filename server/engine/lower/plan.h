// CompiledPlan: the lowered form of a model for one input-shape signature: values with
// their memory descriptors and storage, and an ordered list of steps (oneDNN
// primitives or plain-layout reference kernels). Immutable once built.
#ifndef RECTIFIER_SERVER_ENGINE_LOWER_PLAN_H_
#define RECTIFIER_SERVER_ENGINE_LOWER_PLAN_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "oneapi/dnnl/dnnl.hpp"
#include "server/engine/compiled_model.h"
#include "server/engine/ir/ir.h"
#include "server/engine/ops/op_registry.h"

namespace rectifier::engine {

// 64-byte aligned heap buffer (oneDNN's preferred alignment).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  size_t size_ = 0;
};

struct PlanValue {
  enum class Storage { kArena, kInput, kOutput, kConstant };
  std::string name;
  DataType type = DataType::kFloat32;
  std::vector<int64_t> shape;
  // Layout of float32 values (plain or blocked); zero desc for other types.
  dnnl::memory::desc md;
  size_t bytes = 0;
  Storage storage = Storage::kArena;
  int io_index = -1;                    // graph input/output index
  const std::byte* constant = nullptr;  // kConstant: owned by the plan
  int alias_of = -1;                    // shares the bytes of this value
  size_t alias_offset = 0;              // at this byte offset into them (a view)
  size_t offset = 0;                    // arena offset of a root kArena value
  bool plain = true;                    // dense row-major
};

struct PlanStep {
  enum class Kind { kPrimitive, kReference };
  Kind kind = Kind::kPrimitive;
  std::string label;  // one line of DescribePlan
  // kPrimitive
  dnnl::primitive primitive;
  std::vector<std::pair<int, int>> args;  // (DNNL_ARG_*, value id)
  dnnl::memory::desc scratchpad_md;
  // kReference
  Node node;
  ComputeFn compute = nullptr;
  std::vector<int> inputs, outputs;  // value ids, -1 for absent
  // Values read / written (for liveness).
  std::vector<int> reads, writes;
  // kPrimitive split by output channels (CompileOptions::channel_split):
  // these primitive steps run at once, one per thread (the context's
  // threads, in turn if it has fewer), each compiled for one thread over a
  // slice of the output channels (its `args` name a
  // view of the output); this step's own `primitive` and `args` are unused.
  // Part k's scratchpad starts at k * part_scratchpad_stride bytes.
  std::vector<PlanStep> parts;
  size_t part_scratchpad_stride = 0;
};

// An activation layer's output: value `value` holds it once step `step` has
// run (sampled executions scan it there, before the planner reuses the bytes).
struct ActivationSite {
  std::string name;  // graph value name
  std::string kind;  // catalog label
  int value = -1;
  int step = -1;
};

struct CompiledPlan {
  int batch = 0;
  // The input shapes, "[1,3,320,480]" (several inputs space-separated), for
  // a model with dynamic dimensions besides the batch; empty otherwise.
  std::string shapes_label;
  std::vector<PlanValue> values;
  std::vector<PlanStep> steps;
  std::vector<int> input_values;   // per graph input
  std::vector<int> output_values;  // per graph output
  // Constants in their compiled layouts; shared with other plans of the
  // same model through its ConstantCache.
  std::vector<std::shared_ptr<const AlignedBuffer>> constant_storage;
  size_t arena_bytes = 0;
  size_t scratchpad_bytes = 0;
  std::vector<ActivationSite> activation_sites;
  std::vector<int> site_after_step;  // per step: index into activation_sites or -1
  // Ops lowered to views of another value's bytes, with no step (a concat
  // whose inputs' producers write into their part of its output): one
  // description line each.
  std::vector<std::string> views;
  std::string description;
  // The activation layout its convolutions asked for (never kTuned: the
  // candidate a tuned plan kept).
  ConvLayout conv_layout = ConvLayout::kAny;

  // Root value whose storage `v` uses.
  int Root(int v) const {
    while (values[v].alias_of >= 0) v = values[v].alias_of;
    return v;
  }
  // Byte offset of `v`'s first byte in its root's storage (views: a slice
  // of a buffer, a concat input inside its output).
  size_t ByteOffset(int v) const {
    size_t offset = 0;
    for (; values[v].alias_of >= 0; v = values[v].alias_of) offset += values[v].alias_offset;
    return offset;
  }
};

// Constants (weights) in the layouts plans asked for, keyed by constant
// name and memory descriptor, so that plans for different shapes share one
// copy of each reordered weight. Thread-safe: plans of different shapes
// compile concurrently.
class ConstantCache {
 public:
  static std::string Key(const std::string& name, const dnnl::memory::desc& md);
  std::shared_ptr<const AlignedBuffer> Find(const std::string& key) const;
  // Keeps `buffer` under `key` unless another compile stored one first;
  // returns the buffer now held (use it, so that plans share it).
  std::shared_ptr<const AlignedBuffer> Insert(const std::string& key,
                                              std::shared_ptr<const AlignedBuffer> buffer);
  // Bytes of the distinct buffers held (each weight once per layout).
  size_t Bytes() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const AlignedBuffer>> entries_ ABSL_GUARDED_BY(mu_);
};

// Assigns arena offsets to root kArena values by liveness over `steps`
// (greedy, largest first, first fit) and sets arena_bytes.
void PlanMemory(CompiledPlan& plan);

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_LOWER_PLAN_H_
