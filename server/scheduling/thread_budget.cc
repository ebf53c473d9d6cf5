// Intra-op thread sizing; see thread_budget.h.
#include "server/scheduling/thread_budget.h"

#include <algorithm>

namespace rectifier::scheduling {

ThreadBudget PlanThreads(int available_cpus, int instances, int requested_intra_op_threads) {
  ThreadBudget budget;
  const int cpus = std::max(available_cpus, 1);
  budget.instances = std::max(instances, 1);
  budget.intra_op_threads = requested_intra_op_threads > 0 ? requested_intra_op_threads
                                                           : std::max(1, cpus / budget.instances);
  budget.oversubscribed = static_cast<long long>(budget.instances) * budget.intra_op_threads > cpus;
  return budget;
}

}  // namespace rectifier::scheduling
