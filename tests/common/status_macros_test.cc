// Tests for RETURN_IF_ERROR / ASSIGN_OR_RETURN.
#include "server/common/status_macros.h"

#include <memory>

#include "gtest/gtest.h"

namespace rectifier::common {
namespace {

int g_evaluations = 0;

absl::Status Fails() {
  ++g_evaluations;
  return absl::NotFoundError("no such model");
}
absl::Status Succeeds() {
  ++g_evaluations;
  return absl::OkStatus();
}
absl::StatusOr<std::unique_ptr<int>> MakeInt(bool ok) {
  if (!ok) return absl::InvalidArgumentError("bad int");
  return std::make_unique<int>(42);
}

absl::Status Chain(bool first_ok, int* reached) {
  RETURN_IF_ERROR(first_ok ? Succeeds() : Fails());
  *reached = 1;
  return absl::OkStatus();
}

absl::StatusOr<int> Unwrap(bool ok) {
  ASSIGN_OR_RETURN(std::unique_ptr<int> value, MakeInt(ok));  // move-only type
  int existing = 0;
  ASSIGN_OR_RETURN(existing, absl::StatusOr<int>(*value + 1));
  return existing;
}

TEST(StatusMacrosTest, ReturnIfErrorPropagatesAndEvaluatesOnce) {
  g_evaluations = 0;
  int reached = 0;
  const absl::Status status = Chain(false, &reached);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "no such model");
  EXPECT_EQ(reached, 0);
  EXPECT_EQ(g_evaluations, 1);
  EXPECT_TRUE(Chain(true, &reached).ok());
  EXPECT_EQ(reached, 1);
  EXPECT_EQ(g_evaluations, 2);
}

TEST(StatusMacrosTest, AssignOrReturnMovesValueOrReturnsError) {
  const absl::StatusOr<int> ok = Unwrap(true);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 43);
  const absl::StatusOr<int> bad = Unwrap(false);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "bad int");
}

}  // namespace
}  // namespace rectifier::common
