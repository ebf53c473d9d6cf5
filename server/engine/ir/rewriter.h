// GraphRewriter: the one toolkit graph passes rewrite with. It indexes
// producers and readers of every value once, keeps that index current as a
// pass rewires nodes, and erases nodes in one compaction at the end, so a
// pass is a single sweep instead of repeated O(N) scans.
#ifndef RECTIFIER_SERVER_ENGINE_IR_REWRITER_H_
#define RECTIFIER_SERVER_ENGINE_IR_REWRITER_H_

#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/engine/ir/ir.h"

namespace rectifier::engine {

class GraphRewriter {
 public:
  explicit GraphRewriter(Graph& graph);

  Graph& graph() { return g_; }
  Node& node(int i) { return g_.nodes[static_cast<size_t>(i)]; }

  // Index of the live node producing `value`, or -1.
  int Producer(const std::string& value) const;
  // Live nodes reading `value`, each once, in node order.
  std::vector<int> Users(const std::string& value) const;
  // Input slots of live nodes reading `value` (graph outputs not counted).
  int ReadCount(const std::string& value) const;
  // The single reader of `value` (one slot), if `value` is not a graph
  // output and that reader was not touched by this sweep; else -1.
  int SoleUser(const std::string& value) const;

  // Node `i` takes part in a rewrite of this sweep: other matches skip it.
  void Touch(int i) { touched_.insert(i); }
  bool Touched(int i) const { return touched_.count(i) != 0; }
  // Node `i` disappears (at Finish); its reads leave the index now.
  void Erase(int i);
  bool Erased(int i) const { return erased_.count(i) != 0; }
  // Replaces node `i`'s inputs, keeping the index current.
  void SetInputs(int i, std::vector<std::string> inputs);
  // Node `i` now produces `value` as output `k`.
  void SetOutput(int i, size_t k, const std::string& value);

  // One rewrite done (the pass's count).
  void Count() { ++count_; }
  // Compacts the node list; returns the number of rewrites.
  int Finish();

 private:
  void AddReads(int i);
  void DropReads(int i);

  Graph& g_;
  std::unordered_map<std::string, std::vector<int>> readers_;  // one entry per slot
  std::unordered_map<std::string, int> producer_;
  std::set<int> touched_, erased_;
  int count_ = 0;
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_IR_REWRITER_H_
