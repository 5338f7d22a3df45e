// Limits and ranges of the cohort language, shared by the parser and the
// validator so that everything the parser accepts also validates, and every
// valid AST prints to canonical text the parser accepts again.
#ifndef PASSERELLE_QUERY_LIMITS_H_
#define PASSERELLE_QUERY_LIMITS_H_

#include <cstddef>

namespace passerelle::query {

// Longest query text ParseQuery accepts. Chosen so that the canonical text of
// any AST within the structural limits below (at most ~200 KB) parses again.
inline constexpr size_t kMaxQueryBytes = 256 * 1024;
// Longest JSON text QueryFromJson accepts.
inline constexpr size_t kMaxJsonBytes = 1024 * 1024;

// Nesting of and/or/not (and of parentheses in text). Keeps the wire message
// well under protobuf's default recursion limit of 100.
inline constexpr int kMaxDepth = 32;
// Criteria (leaves) in one query.
inline constexpr int kMaxCriteria = 512;
// Expression nodes (criteria plus and/or/not) in one query.
inline constexpr int kMaxExprNodes = 2048;
// Codes in one query, all code sets together.
inline constexpr int kMaxCodes = 2048;
// Characters of one normalised code.
inline constexpr size_t kMaxCodeLength = 40;

// Inclusive ranges of literals and of the bounds of integer ranges.
inline constexpr int kMinYear = 1;  // Dates, `in YEAR`, birth_year bounds.
inline constexpr int kMaxYear = 9999;
inline constexpr int kMinAge = 0;
inline constexpr int kMaxAge = 150;
inline constexpr int kMinCount = 1;  // `at least N times`; 0 in the AST = 1.
inline constexpr int kMaxCount = 1000000;
inline constexpr int kMaxWithinDays = 36600;  // About 100 years.
inline constexpr int kMinBandWidth = 1;
inline constexpr int kMaxBandWidth = 120;

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_LIMITS_H_
