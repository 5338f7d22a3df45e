// The cohort language parser: text -> AST. Contract:
// ../shared/docs/query-language.md. Pure function, safe to call from any
// thread.
#ifndef PASSERELLE_QUERY_PARSER_H_
#define PASSERELLE_QUERY_PARSER_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::query {

// Parses one query (every form of the grammar, keywords case-insensitive).
// Codes come out normalised (NormalizeCode), vocabularies lower-case,
// `in YEAR` as the window YEAR-01-01..YEAR-12-31, `birth_year < 1950` as the
// range max 1949. Beyond the grammar it accepts `age CMP INT` and
// `at least 1 time`. Errors are INVALID_ARGUMENT "line:column: message", e.g.
// `1:17: expected a code after "icd10:", found end of input`. The text is
// untrusted: length, nesting and size are bounded (query/limits.h). The
// result always passes ValidateQuery.
absl::StatusOr<passerelle::v1::Query> ParseQuery(absl::string_view text);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_PARSER_H_
