// Graph IR helpers and topological sort.
#include "server/engine/ir/ir.h"

#include <deque>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rectifier::engine {

int64_t Node::GetInt(const std::string& key, int64_t fallback) const {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second.i;
}

float Node::GetFloat(const std::string& key, float fallback) const {
  auto it = attrs.find(key);
  if (it == attrs.end()) return fallback;
  if (it->second.kind == Attribute::Kind::kInt) return static_cast<float>(it->second.i);
  return it->second.f;
}

std::string Node::GetString(const std::string& key, const std::string& fallback) const {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second.s;
}

std::vector<int64_t> Node::GetInts(const std::string& key,
                                   const std::vector<int64_t>& fallback) const {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second.ints;
}

std::vector<float> Node::GetFloats(const std::string& key,
                                   const std::vector<float>& fallback) const {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second.floats;
}

const std::string& Node::Input(size_t i) const {
  static const std::string kEmpty;
  return i < inputs.size() ? inputs[i] : kEmpty;
}

std::string Node::Describe() const {
  return absl::StrCat("op '", op_type, "' (node '", name, "', opset ", opset, ")");
}

bool Graph::IsGraphOutput(const std::string& value) const {
  for (const auto& o : outputs)
    if (o.name == value) return true;
  return false;
}

bool Graph::IsGraphInput(const std::string& value) const {
  for (const auto& i : inputs)
    if (i.name == value) return true;
  return false;
}

int Graph::ConsumerCount(const std::string& value) const {
  int n = 0;
  for (const auto& node : nodes)
    for (const auto& in : node.inputs)
      if (in == value) ++n;
  return n;
}

int Graph::ProducerIndex(const std::string& value) const {
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& out : nodes[i].outputs)
      if (out == value) return static_cast<int>(i);
  return -1;
}

absl::Status TopologicalSort(Graph& graph) {
  std::unordered_map<std::string, int> producer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& out : graph.nodes[i].outputs) {
      if (out.empty()) continue;
      if (!producer.emplace(out, static_cast<int>(i)).second || graph.IsConstant(out) ||
          graph.IsGraphInput(out)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "value '", out, "' is produced more than once (", graph.nodes[i].Describe(), ")"));
      }
    }
  }
  const size_t n = graph.nodes.size();
  std::vector<int> pending(n, 0);
  std::vector<std::vector<int>> users(n);
  for (size_t i = 0; i < n; ++i) {
    for (const auto& in : graph.nodes[i].inputs) {
      if (in.empty() || graph.IsConstant(in) || graph.IsGraphInput(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end()) {
        return absl::InvalidArgumentError(absl::StrCat("input '", in, "' of ",
                                                       graph.nodes[i].Describe(),
                                                       " is not produced by any node, graph "
                                                       "input or initializer"));
      }
      ++pending[i];
      users[it->second].push_back(static_cast<int>(i));
    }
  }
  std::deque<int> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push_back(static_cast<int>(i));
  std::vector<Node> sorted;
  sorted.reserve(n);
  std::vector<bool> done(n, false);
  while (!ready.empty()) {
    int i = ready.front();
    ready.pop_front();
    done[i] = true;
    sorted.push_back(graph.nodes[i]);
    for (int u : users[i])
      if (--pending[u] == 0) ready.push_back(u);
  }
  if (sorted.size() != n) {
    for (size_t i = 0; i < n; ++i) {
      if (!done[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("graph has a cycle through ", graph.nodes[i].Describe()));
      }
    }
  }
  graph.nodes = std::move(sorted);
  for (const auto& out : graph.outputs) {
    if (!producer.count(out.name) && !graph.IsConstant(out.name) && !graph.IsGraphInput(out.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("graph output '", out.name, "' is not produced by any node"));
    }
  }
  return absl::OkStatus();
}

}  // namespace rectifier::engine
