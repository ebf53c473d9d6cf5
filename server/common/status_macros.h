// RETURN_IF_ERROR / ASSIGN_OR_RETURN: early-return plumbing for absl::Status.
#ifndef RECTIFIER_SERVER_COMMON_STATUS_MACROS_H_
#define RECTIFIER_SERVER_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) once; returns it from the enclosing
// function if it is not OK.
#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    ::absl::Status rectifier_status_ = (expr);             \
    if (!rectifier_status_.ok()) return rectifier_status_; \
  } while (false)

#define RECTIFIER_CONCAT_INNER_(a, b) a##b
#define RECTIFIER_CONCAT_(a, b) RECTIFIER_CONCAT_INNER_(a, b)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on
// error returns its status, otherwise moves the value into `lhs`, which may be
// a declaration (`auto x`) or an existing variable.
#define ASSIGN_OR_RETURN(lhs, expr) \
  RECTIFIER_ASSIGN_OR_RETURN_IMPL_(RECTIFIER_CONCAT_(rectifier_statusor_, __LINE__), lhs, expr)

// `statusor` names a fresh variable and `lhs` may be a declaration, so neither
// can be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RECTIFIER_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = std::move(statusor).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // RECTIFIER_SERVER_COMMON_STATUS_MACROS_H_
