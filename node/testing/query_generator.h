// Random cohort queries drawn from the grammar of the cohort language
// (../shared/docs/query-language.md), for differential tests of the engine.
//
// Each query comes as the AST the contract gives it (built directly, codes
// normalised by the contract's rules) and as text in a randomly varied
// surface form: keyword case, whitespace, ICD dots ("E11.9", "e11 . 9"),
// `in YEAR` or the equivalent `between`, `birth_year < N` for a range, and
// so on. A test checks that the parser turns the text into exactly that AST
// and that the engine and a reference agree on the AST.
//
// Codes are drawn mostly from the data's profile (so counts are not all
// zero), some from other domains and some absent. Deterministic: the same
// profile and seed give the same query on every platform. A QueryGenerator
// is immutable and safe to share between threads.
#ifndef PASSERELLE_NODE_TESTING_QUERY_GENERATOR_H_
#define PASSERELLE_NODE_TESTING_QUERY_GENERATOR_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "node/testing/sql_reference.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::node::difftest {

struct GeneratedQuery {
  v1::Query ast;
  std::string text;
  // The grammar features the query uses (see QueryGenerator::AllFeatures).
  std::set<std::string> features;
};

class QueryGenerator {
 public:
  explicit QueryGenerator(DataProfile profile);

  GeneratedQuery Generate(uint64_t seed) const;

  // Every feature name Generate can report, e.g. "sex", "age_as_of",
  // "window_in", "sequence_within", "not", "group_age_band".
  static const std::vector<std::string>& AllFeatures();

 private:
  friend class GenerationState;

  DataProfile profile_;
  // Indices into profile_.codes of the codes a query can name, by domain.
  std::map<int, std::vector<size_t>> by_domain_;
  std::vector<size_t> queryable_;
  int32_t min_day_ = 0;
  int32_t max_day_ = 0;
};

// Days since 1970-01-01 (proleptic Gregorian) and back; independent of the
// engine's own helpers.
int32_t CivilToDays(int year, int month, int day);
void DaysToCivil(int32_t days, int* year, int* month, int* day);

}  // namespace passerelle::node::difftest

#endif  // PASSERELLE_NODE_TESTING_QUERY_GENERATOR_H_
