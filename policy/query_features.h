// What a cohort query uses, as the access policy sees it: event domains,
// vocabularies, criterion kinds, breakdown dimensions and the size of the
// breakdown. Works on the AST (passerelle.v1.Query), never on query text.
#ifndef PASSERELLE_POLICY_QUERY_FEATURES_H_
#define PASSERELLE_POLICY_QUERY_FEATURES_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::policy {

// The policy-relevant features of one query. Names are the ones stewards
// write in policy files (see Scope in policy.proto).
struct QueryFeatures {
  std::set<std::string> domains;        // "condition", "drug", ...
  std::set<std::string> vocabularies;   // As in the AST, lower-case.
  std::set<std::string> criteria;       // "sex", "event", "not", ...
  std::vector<std::string> dimensions;  // Group-by order: "sex", ...
  std::vector<int32_t> age_band_widths;
};

// Validates `query` (query/validate.h) and walks it. INVALID_ARGUMENT for an
// AST the query component rejects.
absl::StatusOr<QueryFeatures> ExtractFeatures(
    const passerelle::v1::Query& query);

// Number of cells of the query's breakdown (1 without group by), from the
// public domains of query-language.md (query/cells.h): sex has 4 values,
// age_band(W) has ceil(110 / W) + 1 bands, site has `site_count` values.
absl::StatusOr<int64_t> BreakdownCells(const passerelle::v1::Query& query,
                                       int64_t site_count);

// The names stewards may write. Sorted.
const std::set<std::string>& KnownDomains();
const std::set<std::string>& KnownVocabularies();
const std::set<std::string>& KnownCriteria();
const std::set<std::string>& KnownDimensions();

// True when allowing `allowed` lets a query use `used`: equal names, or
// `allowed` is a family ("icd10", "icd9") and `used` one of its variants.
bool VocabularyCovers(absl::string_view allowed, absl::string_view used);

std::string DomainName(passerelle::v1::Domain domain);
std::string DimensionName(passerelle::v1::Dimension::Kind kind);

}  // namespace passerelle::policy

#endif  // PASSERELLE_POLICY_QUERY_FEATURES_H_
