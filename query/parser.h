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
// range max 1949, and-chains as one flat `and` (nested parentheses are kept;
// Canonicalize flattens them). Beyond the grammar it accepts `age CMP INT`,
// `at least 1 time` and `within N day`, whitespace around ':' and around an
// ICD dot (`icd10:E11 . 9`). A value filter is allowed on measurement and
// observation only. Columns count UTF-8 code points. Errors are
// INVALID_ARGUMENT "line:column: message", e.g.
// `1:17: expected a code after "icd10:", found end of input`. The text is
// untrusted: length, nesting, criteria and codes are bounded
// (query/limits.h), and literals are range-checked before any arithmetic.
// The result always passes ValidateQuery.
absl::StatusOr<passerelle::v1::Query> ParseQuery(absl::string_view text);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_PARSER_H_
