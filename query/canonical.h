// The canonical form of a query (for cache keys, audit and comparing cohorts)
// and its JSON form. Pure functions, safe to call from any thread.
#ifndef PASSERELLE_QUERY_CANONICAL_H_
#define PASSERELLE_QUERY_CANONICAL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::query {

// The same cohort in one normal form: nested and/or flattened, terms sorted
// (by their canonical text) and deduplicated, single-term and/or replaced by
// the term, double negation removed; code sets sorted, deduplicated and
// without codes another code of the set already covers (icd10:E11* covers
// icd10:E119 and icd10cm:E11*); `at least 1 times` dropped; within_days
// cleared without has_within; -0 values as 0; width cleared on dimensions
// other than age_band. Group-by order is kept (it orders the cells).
// Ages (and birth years) under one `and` become one range when their
// intersection is not empty. Meaning-preserving; idempotent. Intended for valid
// queries, total on any.
passerelle::v1::Query Canonicalize(const passerelle::v1::Query& query);

// The canonical form printed in the cohort language (lower-case keywords,
// canonical vocabularies and codes, minimal parentheses, `in YEAR` for whole
// calendar years). Canonicalizes first. For a valid query,
// ParseQuery(CanonicalText(q)) succeeds and has the same CanonicalText; the
// same cohort written differently gives the same text.
std::string CanonicalText(const passerelle::v1::Query& query);

// The language's keyword for an event domain ("condition", "drug", ...), or
// "" for a value that is not one of the language's domains.
absl::string_view DomainKeyword(passerelle::v1::Domain domain);

// The civil date of `t` in UTC.
passerelle::v1::Date UtcDate(absl::Time t);

// Gives a query without `as of` the reference date `UtcDate(now)`, so that
// its ages never depend on the data (a reference date taken from the
// records, e.g. their latest event, lets one patient move every age count).
// The gateway pins the date of the request before canonicalising, caching
// and fanning out (every site counts ages on the same day); a node pins its
// own day for a query that arrives without one. A given `as of` is kept.
void PinReferenceDate(absl::Time now, passerelle::v1::Query* query);

// The query as JSON (proto field names, e.g. "group_by", "min_count").
absl::StatusOr<std::string> QueryToJson(const passerelle::v1::Query& query);

// A query from JSON (proto or lowerCamel field names; unknown fields are an
// error), then ValidateQuery. INVALID_ARGUMENT on malformed JSON or an
// invalid query.
absl::StatusOr<passerelle::v1::Query> QueryFromJson(absl::string_view json);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_CANONICAL_H_
