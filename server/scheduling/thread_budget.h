// CPU budget for model instances: how many intra-op threads each instance
// gets so that instances x threads never oversubscribe the CPUs by default.
#ifndef RECTIFIER_SERVER_SCHEDULING_THREAD_BUDGET_H_
#define RECTIFIER_SERVER_SCHEDULING_THREAD_BUDGET_H_

namespace rectifier::scheduling {

struct ThreadBudget {
  int instances = 1;
  int intra_op_threads = 1;  // per instance
  // instances x intra_op_threads > available CPUs: only when the caller asked
  // for more instances than CPUs, or for explicit thread counts.
  bool oversubscribed = false;
};

// `available_cpus`: what the process may use (common::AvailableCpus(), which
// honours cgroup quota and affinity, not the host's core count).
// `instances`: the model's instance count (values < 1 count as 1).
// `requested_intra_op_threads`: from the model config; <= 0 = choose.
//
// Default: floor(available_cpus / instances), at least 1. Worker threads of
// the scheduler do not count: they block while their instance computes. When
// CPUs do not divide evenly the remainder stays idle rather than
// oversubscribe (e.g. 5 CPUs, 2 instances -> 2 threads each).
ThreadBudget PlanThreads(int available_cpus, int instances, int requested_intra_op_threads = 0);

}  // namespace rectifier::scheduling

#endif  // RECTIFIER_SERVER_SCHEDULING_THREAD_BUDGET_H_
