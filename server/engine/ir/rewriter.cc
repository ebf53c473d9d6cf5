#include "server/engine/ir/rewriter.h"

#include <algorithm>
#include <utility>

namespace rectifier::engine {

GraphRewriter::GraphRewriter(Graph& graph) : g_(graph) {
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    AddReads(static_cast<int>(i));
    for (const auto& out : g_.nodes[i].outputs) {
      if (!out.empty()) producer_[out] = static_cast<int>(i);
    }
  }
}

void GraphRewriter::AddReads(int i) {
  for (const auto& in : node(i).inputs) {
    if (!in.empty()) readers_[in].push_back(i);
  }
}

void GraphRewriter::DropReads(int i) {
  for (const auto& in : node(i).inputs) {
    if (in.empty()) continue;
    auto it = readers_.find(in);
    if (it == readers_.end()) continue;
    auto pos = std::find(it->second.begin(), it->second.end(), i);
    if (pos != it->second.end()) it->second.erase(pos);
  }
}

int GraphRewriter::Producer(const std::string& value) const {
  auto it = producer_.find(value);
  return it == producer_.end() || erased_.count(it->second) ? -1 : it->second;
}

std::vector<int> GraphRewriter::Users(const std::string& value) const {
  auto it = readers_.find(value);
  if (it == readers_.end()) return {};
  std::vector<int> users = it->second;
  std::sort(users.begin(), users.end());
  users.erase(std::unique(users.begin(), users.end()), users.end());
  return users;
}

int GraphRewriter::ReadCount(const std::string& value) const {
  auto it = readers_.find(value);
  return it == readers_.end() ? 0 : static_cast<int>(it->second.size());
}

int GraphRewriter::SoleUser(const std::string& value) const {
  if (g_.IsGraphOutput(value)) return -1;
  auto it = readers_.find(value);
  if (it == readers_.end() || it->second.size() != 1) return -1;
  const int u = it->second[0];
  return Touched(u) ? -1 : u;
}

void GraphRewriter::Erase(int i) {
  if (erased_.count(i)) return;
  DropReads(i);
  touched_.insert(i);
  erased_.insert(i);
}

void GraphRewriter::SetInputs(int i, std::vector<std::string> inputs) {
  DropReads(i);
  node(i).inputs = std::move(inputs);
  AddReads(i);
}

void GraphRewriter::SetOutput(int i, size_t k, const std::string& value) {
  Node& n = node(i);
  if (n.outputs.size() <= k) n.outputs.resize(k + 1);
  n.outputs[k] = value;
  if (!value.empty()) producer_[value] = i;
}

int GraphRewriter::Finish() {
  if (!erased_.empty()) {
    std::vector<Node> kept;
    kept.reserve(g_.nodes.size() - erased_.size());
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (!erased_.count(static_cast<int>(i))) kept.push_back(std::move(g_.nodes[i]));
    }
    g_.nodes = std::move(kept);
    erased_.clear();
  }
  touched_.clear();
  readers_.clear();
  producer_.clear();
  return count_;
}

}  // namespace rectifier::engine
