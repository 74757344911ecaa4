// Status propagation macros with the semantics of abseil's newer ABSL_RETURN_IF_ERROR /
// ABSL_ASSIGN_OR_RETURN (not in Debian 12's abseil 20220623): a later upgrade is a rename.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define UNL_STATUS_CONCAT_INNER_(x, y) x##y
#define UNL_STATUS_CONCAT_(x, y) UNL_STATUS_CONCAT_INNER_(x, y)

// Returns the status from the enclosing function if `expr` is not OK.
#define UNL_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status unl_status_ = (expr);       \
    if (!unl_status_.ok()) return unl_status_; \
  } while (false)

// `lhs` = value of the StatusOr `rexpr`, or returns its status from the enclosing function.
#define UNL_ASSIGN_OR_RETURN(lhs, rexpr) \
  UNL_ASSIGN_OR_RETURN_IMPL_(UNL_STATUS_CONCAT_(unl_statusor_, __LINE__), lhs, rexpr)

#define UNL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return statusor.status();          \
  lhs = std::move(statusor).value()
