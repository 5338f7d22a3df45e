// Validation of a query AST that arrives from outside (over the wire, from
// JSON, or built by hand). Every AST is untrusted. Pure functions, safe to
// call from any thread.
#ifndef PASSERELLE_QUERY_VALIDATE_H_
#define PASSERELLE_QUERY_VALIDATE_H_

#include "absl/status/status.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::query {

// OK when `query` is a well-formed cohort: the same semantic checks as the
// parser (canonical known vocabularies, normalised well-formed codes,
// non-empty code sets and term lists, non-inverted ranges within the limits
// of query/limits.h, real dates, enums in range, every oneof set, depth and
// size limits, no repeated group-by dimension). Otherwise INVALID_ARGUMENT
// naming the field path, e.g.
// `where.and.terms[1].criterion.event.event.codes[0]: unknown vocabulary
// "icd11"`. Everything ParseQuery returns passes.
absl::Status ValidateQuery(const passerelle::v1::Query& query);

// True for a real proleptic Gregorian date with year in [kMinYear, kMaxYear].
bool IsValidDate(const passerelle::v1::Date& date);

// <0, 0, >0 as a is before, equal to, or after b.
int CompareDates(const passerelle::v1::Date& a, const passerelle::v1::Date& b);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_VALIDATE_H_
