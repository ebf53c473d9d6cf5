// Compile-and-run helpers for the engine reference and fusion tests.
#include "tests/engine/conformance/engine_runner.h"

#include <memory>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "server/engine/compiled_model.h"
#include "server/engine/execution_context.h"

namespace rectifier::engine::testing {

absl::StatusOr<std::vector<Tensor>> CompileAndRun(const std::string& bytes,
                                                  const std::vector<Tensor>& inputs, bool fuse) {
  CompileOptions options;
  options.fuse = fuse;
  absl::StatusOr<std::shared_ptr<const CompiledModel>> model =
      CompiledModel::FromBytes(bytes, options);
  if (!model.ok()) return model.status();
  ContextOptions context_options;
  context_options.threads = 1;
  absl::StatusOr<std::unique_ptr<ExecutionContext>> context =
      ExecutionContext::Create(*model, context_options);
  if (!context.ok()) return context.status();
  return (*context)->Run(inputs);
}

void ExpectEngineMatches(const std::string& bytes, const std::vector<Tensor>& inputs,
                         const Tensor& want, bool fuse) {
  absl::StatusOr<std::vector<Tensor>> got = CompileAndRun(bytes, inputs, fuse);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ(CompareTensors(want, (*got)[0], kRefTolerance), "");
}

int64_t Pick(std::mt19937& rng, const std::vector<int64_t>& values) {
  return values[rng() % values.size()];
}

std::string Join(const std::vector<int64_t>& values) { return absl::StrJoin(values, ","); }

}  // namespace rectifier::engine::testing
