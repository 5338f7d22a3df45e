// Small local replacements for the status macros that Abseil 20220623 lacks.
#ifndef PASSERELLE_COMMON_STATUS_MACROS_H_
#define PASSERELLE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define PASSERELLE_RETURN_IF_ERROR(expr)                     \
  do {                                                       \
    ::absl::Status passerelle_status_ = (expr);              \
    if (!passerelle_status_.ok()) return passerelle_status_; \
  } while (0)

#define PASSERELLE_MACRO_CONCAT_INNER(x, y) x##y
#define PASSERELLE_MACRO_CONCAT(x, y) PASSERELLE_MACRO_CONCAT_INNER(x, y)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status,
// otherwise moves the value into `lhs` (which may be a declaration).
#define PASSERELLE_ASSIGN_OR_RETURN(lhs, rexpr) \
  PASSERELLE_ASSIGN_OR_RETURN_IMPL(             \
      PASSERELLE_MACRO_CONCAT(passerelle_statusor_, __LINE__), lhs, rexpr)

#define PASSERELLE_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();     \
  lhs = std::move(statusor).value()

#endif  // PASSERELLE_COMMON_STATUS_MACROS_H_
