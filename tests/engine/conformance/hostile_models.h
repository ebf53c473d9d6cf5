// Deterministic malformed or extreme models, each a regression case for a
// defect the fuzz test found (or could find): empty required inputs, wrong
// output arity, self-loops, INT64 extremes in attributes, dims and shape
// tensors. Shared by engine_bad_model_test (status codes) and
// engine_import_sanitized_test (no memory errors or UB under ASan/UBSan).
#ifndef RECTIFIER_TESTS_ENGINE_CONFORMANCE_HOSTILE_MODELS_H_
#define RECTIFIER_TESTS_ENGINE_CONFORMANCE_HOSTILE_MODELS_H_

#include <ostream>
#include <string>
#include <vector>

namespace rectifier::engine::testing {

struct HostileModel {
  std::string name;   // a valid gtest parameter name
  std::string bytes;  // serialized onnx.ModelProto
  // True when loading and running it successfully is also acceptable (the
  // model is odd but legal, e.g. a zero-sized tensor); otherwise it must be
  // refused with INVALID_ARGUMENT, UNIMPLEMENTED or RESOURCE_EXHAUSTED.
  bool may_succeed = false;
  // When refused, the error message must contain this (a node name).
  std::string names;
};

std::vector<HostileModel> HostileModels();

// gtest prints a parameter by its name rather than its bytes.
inline void PrintTo(const HostileModel& model, std::ostream* os) { *os << model.name; }

}  // namespace rectifier::engine::testing

#endif  // RECTIFIER_TESTS_ENGINE_CONFORMANCE_HOSTILE_MODELS_H_
