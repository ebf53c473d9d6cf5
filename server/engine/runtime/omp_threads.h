// ScopedOmpThreads: this thread's OpenMP team size for a scope. oneDNN sizes
// a primitive's team when the primitive is created, from the creating
// thread's setting: plans for one-thread parts are compiled under it.
#ifndef RECTIFIER_SERVER_ENGINE_RUNTIME_OMP_THREADS_H_
#define RECTIFIER_SERVER_ENGINE_RUNTIME_OMP_THREADS_H_

#include <omp.h>

namespace rectifier::engine {

class ScopedOmpThreads {
 public:
  // `threads` <= 0 leaves the setting as it is.
  explicit ScopedOmpThreads(int threads) : saved_(threads > 0 ? omp_get_max_threads() : 0) {
    if (threads > 0) omp_set_num_threads(threads);
  }
  ~ScopedOmpThreads() {
    if (saved_ > 0) omp_set_num_threads(saved_);
  }
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int saved_;
};

}  // namespace rectifier::engine

#endif  // RECTIFIER_SERVER_ENGINE_RUNTIME_OMP_THREADS_H_
