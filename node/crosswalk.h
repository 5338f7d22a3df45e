// Crosswalk tables at a node (contract: docs/vocabulary.md): the rows a site
// steward loads with the data, their canonical serialisation and its SHA-256
// (the mapping set id, part of the snapshot identity), and the target-side
// index that expands a query's codes into the site codes mapped to them.
//
// The expansion is a pure function of (query, crosswalk tables, the
// vocabularies the site holds per domain): it never reads the data, so the
// same query and tables give the same expansion at any site holding the
// same vocabularies, and the privacy analysis of a query is unchanged.
#ifndef PASSERELLE_NODE_CROSSWALK_H_
#define PASSERELLE_NODE_CROSSWALK_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passerelle/v1/node.pb.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::node {

// The relation of a row's SOURCE code to its target: `narrower` = the source
// is narrower than the target (a patient with the source code has the
// target).
enum class Relation : uint8_t {
  kEquivalent,
  kNarrower,
  kBroader,
  kApproximate
};
absl::string_view RelationName(Relation r);
// "equivalent", "narrower", "broader" or "approximate" (exact, lower case).
bool ParseRelation(absl::string_view text, Relation* r);

struct CrosswalkRow {
  std::string source_vocabulary;
  // Normalised (query::NormalizeCode); without the '*' of a prefix row.
  std::string source_code;
  // Passerelle form `C*`: the row covers every site code starting with C.
  bool source_prefix = false;
  std::string target_vocabulary;
  std::string target_code;
  Relation relation = Relation::kEquivalent;
  // `;`-separated words as loaded (e.g. "combination;scenario=1;choice=2"),
  // empty words dropped.
  std::string flags;
  // The flags hold the word "combination" (a GEM cluster row).
  bool combination = false;

  // The row's line in the canonical serialisation (no newline).
  std::string CanonicalLine() const;
};

struct CrosswalkTable {
  std::string name;
  // The CSV form it was read from: "passerelle", "gem", "dpd" or "bdpm".
  std::string form;
  // Distinct rows, sorted by CanonicalLine.
  std::vector<CrosswalkRow> rows;
  // Invalid rows left out under `--crosswalk-invalid skip`.
  int64_t skipped_rows = 0;
  // Source rows that state there is no mapping (GEM `NoDx`, blank ATC).
  int64_t no_map_rows = 0;
  // Rows of a converted form (DPD, BDPM, GEM) that repeat a mapping of an
  // earlier row (e.g. one DIN under two DPD drug codes), merged into it.
  int64_t merged_rows = 0;

  std::vector<std::string> SourceVocabularies() const;
  std::vector<std::string> TargetVocabularies() const;
};

// An immutable set of tables (sorted by name, names unique) and its id.
class CrosswalkSet {
 public:
  // Sorts and checks the tables: a name used twice, an empty or malformed
  // name, or unsorted/duplicate rows are INVALID_ARGUMENT.
  static absl::StatusOr<std::shared_ptr<const CrosswalkSet>> Make(
      std::vector<CrosswalkTable> tables);

  const std::vector<CrosswalkTable>& tables() const { return tables_; }
  bool empty() const { return tables_.empty(); }
  int64_t rows() const;
  // Lower-case hex SHA-256 of CanonicalText(); "" for an empty set.
  const std::string& id() const { return id_; }
  // "passerelle crosswalk set 1\n", then per table (by name) "table NAME\n"
  // and its rows' canonical lines, one per line, in order.
  std::string CanonicalText() const;

  // The stored form: the canonical text, then one "meta" line per table
  // (form and counts, not part of the id). Decode checks every row again
  // and that the id recomputed matches `expected_id` (DATA_LOSS otherwise).
  std::string Encode() const;
  static absl::StatusOr<std::shared_ptr<const CrosswalkSet>> Decode(
      absl::string_view stored, absl::string_view expected_id);

  // The tables for NodeInfo.
  void Describe(v1::NodeInfo* info) const;

 private:
  std::vector<CrosswalkTable> tables_;
  std::string id_;
};

// Checks one row's fields (known vocabularies, codes valid for their
// vocabulary, flag words): OK or INVALID_ARGUMENT with the reason (no
// location; the loader adds file:line).
absl::Status CheckCrosswalkRow(const CrosswalkRow& row);

// The ICD vocabularies' code syntax and the structure of din (8 digits),
// cip13 (13 digits), ucd (7 or 13 digits), atc (A, A00, A00A, A00AA,
// A00AA00; ATCvet with a leading Q), stricter than query::IsValidCode: a
// crosswalk code must be a real code of its vocabulary.
bool IsWellFormedCrosswalkCode(absl::string_view vocab, absl::string_view code);

// A bounded SiteExpansion: at most this many CodeExpansion entries (the
// first ones in query order) and sample codes in all; the audit entry and
// the gateway's copy stay small whatever the query.
inline constexpr int kMaxExpansionEntries = 256;
inline constexpr int kMaxExpansionSamples = 20;
inline constexpr int kMaxExpansionSampleTotal = 1024;

// The target-side index of a crosswalk set, built once per snapshot open.
// Thread-safe (immutable).
class CrosswalkIndex {
 public:
  // The vocabularies a site holds, per domain (v1::Domain as int).
  using SiteVocabularies = std::map<int, std::vector<std::string>>;

  CrosswalkIndex(std::shared_ptr<const CrosswalkSet> set,
                 SiteVocabularies site);

  // The query with every event spec's code set extended by the site codes
  // mapped to its codes (as codes of the rows' source vocabularies, exact
  // or prefix), per the query's code_matching; `report`, when not null,
  // receives the per-site account (site name and mapping set included).
  // Only codes whose source vocabulary matches a vocabulary the site holds
  // in the spec's domain are added. Returns false (and leaves `expanded`
  // untouched) when nothing is added: the query can be evaluated as it is.
  // `expanded` may be null (the report only).
  bool Expand(const v1::Query& query, const std::string& site,
              v1::Query* expanded, v1::SiteExpansion* report) const;

  const std::string& mapping_set() const;

 private:
  // One row as an index entry: the row itself, or (rollup_len > 0) the
  // row read from its source code's first rollup_len characters, broader.
  struct Entry {
    uint32_t row;
    uint8_t rollup_len;
  };
  // Entries of table `t` whose target matches (vocab, code, prefix).
  void Lookup(size_t t, const v1::Code& code, v1::CodeMatching mode,
              std::vector<Entry>* out) const;

  std::shared_ptr<const CrosswalkSet> set_;
  SiteVocabularies site_;
  // Per table: entries sorted by (target vocabulary, target code).
  std::vector<std::vector<Entry>> by_target_;
  // Per table: its target vocabularies.
  std::vector<std::vector<std::string>> target_vocabs_;
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_CROSSWALK_H_
