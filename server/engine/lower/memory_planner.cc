// Activation memory planner: buffers whose lifetimes do not overlap share
// arena bytes.
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <set>

#include "server/engine/lower/plan.h"

namespace rectifier::engine {

AlignedBuffer::AlignedBuffer(size_t bytes) : size_(bytes) {
  const size_t rounded = ((std::max<size_t>(bytes, 1) + 63) / 64) * 64;
  data_.reset(static_cast<std::byte*>(std::aligned_alloc(64, rounded)));
}

void AlignedBuffer::Free::operator()(std::byte* p) const { std::free(p); }

std::string ConstantCache::Key(const std::string& name, const dnnl::memory::desc& md) {
  return name + "|" + std::string(reinterpret_cast<const char*>(&md.data), sizeof(md.data));
}

std::shared_ptr<const AlignedBuffer> ConstantCache::Find(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : it->second;
}

std::shared_ptr<const AlignedBuffer> ConstantCache::Insert(
    const std::string& key, std::shared_ptr<const AlignedBuffer> buffer) {
  absl::MutexLock lock(&mu_);
  return entries_.emplace(key, std::move(buffer)).first->second;
}

size_t ConstantCache::Bytes() const {
  absl::MutexLock lock(&mu_);
  std::set<const AlignedBuffer*> seen;
  size_t bytes = 0;
  for (const auto& [key, buffer] : entries_)
    if (seen.insert(buffer.get()).second) bytes += buffer->size();
  return bytes;
}

void PlanMemory(CompiledPlan& plan) {
  const int n = static_cast<int>(plan.values.size());
  std::vector<int> first(n, std::numeric_limits<int>::max()), last(n, -1);
  for (int s = 0; s < static_cast<int>(plan.steps.size()); ++s) {
    auto touch = [&](int v) {
      if (v < 0) return;
      int r = plan.Root(v);
      first[r] = std::min(first[r], s);
      last[r] = std::max(last[r], s);
    };
    for (int v : plan.steps[s].reads) touch(v);
    for (int v : plan.steps[s].writes) touch(v);
  }
  struct Block {
    int value;
    size_t size;
  };
  std::vector<Block> blocks;
  for (int v = 0; v < n; ++v) {
    const PlanValue& pv = plan.values[v];
    if (pv.alias_of >= 0 || pv.storage != PlanValue::Storage::kArena || last[v] < 0) continue;
    blocks.push_back({v, ((std::max<size_t>(pv.bytes, 1) + 63) / 64) * 64});
  }
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) {
    return a.size != b.size ? a.size > b.size : a.value < b.value;
  });
  struct Placed {
    size_t offset, size;
    int first, last;
  };
  std::vector<Placed> placed;
  size_t total = 0;
  for (const Block& b : blocks) {
    std::vector<std::pair<size_t, size_t>> busy;
    for (const Placed& p : placed)
      if (!(p.last < first[b.value] || last[b.value] < p.first)) busy.push_back({p.offset, p.size});
    std::sort(busy.begin(), busy.end());
    size_t offset = 0;
    for (const auto& [o, sz] : busy) {
      if (offset + b.size <= o) break;
      offset = std::max(offset, o + sz);
    }
    plan.values[b.value].offset = offset;
    placed.push_back({offset, b.size, first[b.value], last[b.value]});
    total = std::max(total, offset + b.size);
  }
  plan.arena_bytes = total;
}

}  // namespace rectifier::engine
