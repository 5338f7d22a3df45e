// The SQL reference for differential tests of the cohort engine: imports the
// same OMOP CDM CSV files a node loads into sqlite3 tables and translates a
// query AST into plain SQL that implements the language contract
// (../shared/docs/query-language.md) directly, without any of the engine's
// data structures. Everything here is test-only; the functions are pure and
// safe to call from any thread.
//
// Tables the import script builds (all dates are ISO 'YYYY-MM-DD' text):
//   P(pid, sex, by, bmd)    one row per accepted person: sex label, birth
//                           year, birth month*100+day (701 when unknown)
//   E0(eid, domain, pid, d, value, vtext, cid, scid, sv)
//                           one row per accepted event row (any table)
//   EV(domain, vocab, code, eid, pid, d, value)
//                           one row per code an event row carries
//   D(pid)                  the deceased
#ifndef PASSERELLE_NODE_TESTING_SQL_REFERENCE_H_
#define PASSERELLE_NODE_TESTING_SQL_REFERENCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::node::difftest {

// A steward's vocabulary rule, as the loader's --vocabulary-rules file holds
// it: in `domain` ("condition", ... or "*"), rows whose source_concept_id is
// `pattern` (or starts with it when it ends in '*') and that no CONCEPT row
// codes carry a source value in `vocabulary`. The first matching rule wins.
struct SqlVocabularyRule {
  std::string domain;
  std::string pattern;
  std::string vocabulary;
};

// The rules in the loader's file format.
std::string VocabularyRulesText(const std::vector<SqlVocabularyRule>& rules);

// What the data holds, for drawing queries that match something.
struct ProfileCode {
  v1::Domain domain = v1::DOMAIN_UNSPECIFIED;
  std::string vocabulary;  // As indexed, e.g. "cim10", "concept", "visit".
  std::string code;        // Normalised.
  int64_t patients = 0;
  std::vector<std::string> values;  // A few numeric values, as written.
};

struct DataProfile {
  std::vector<ProfileCode> codes;
  std::string min_date = "2010-01-01";  // Of event start dates.
  std::string max_date = "2024-12-31";
  int min_birth_year = 1920;
  int max_birth_year = 2020;
  int64_t persons = 0;
  int64_t events = 0;
};

// The sqlite3 script (dot-commands and SQL) that imports the OMOP CSV
// tables found in `csv_dir` (any file-name case) into a fresh database and
// prints the profile. Only the tables the node's loader reads are used.
absl::StatusOr<std::string> OmopImportScript(
    const std::string& csv_dir, const std::vector<SqlVocabularyRule>& rules);

// Parses the import script's output.
absl::StatusOr<DataProfile> ParseProfile(absl::string_view output);

// SQL statements (each ending in ";\n": a SELECT, preceded by the temporary
// tables of its `before` criteria and followed by their removal) printing,
// in list mode with '|', one line per non-empty cell: `index|value|...|count`
// (the cell's values in group-by order; just `index|count` without group
// by). `site` is the value of the site dimension; `reference` is the
// reference date for ages of a query without `as of` (the date the engine
// under test uses: the contract never takes it from the data).
std::string QueryToSql(const v1::Query& query, int index,
                       absl::string_view site, const v1::Date& reference);

// The statements' combined output as one count per cell for each query, in
// query::EnumerateCells order (cells with no line are 0). A line for a cell
// outside the public domain is an error.
absl::StatusOr<std::vector<std::vector<int64_t>>> ParseCellCounts(
    absl::string_view output, const std::vector<v1::Query>& queries,
    absl::string_view site);

// Runs `sqlite3 -batch -bail <db>` with `script_path` as standard input;
// returns standard output, or an error with the exit code and standard
// error. `scratch_dir` holds the captured streams.
absl::StatusOr<std::string> RunSqlite(const std::string& db,
                                      const std::string& script_path,
                                      const std::string& scratch_dir);

// The shortest decimal text that reads back as exactly `v` ("7.25", "1e+20").
std::string FormatSqlNumber(double v);

// The sqlite3 executable on PATH (or /usr/bin/sqlite3), "" when absent.
std::string FindSqlite();

}  // namespace passerelle::node::difftest

#endif  // PASSERELLE_NODE_TESTING_SQL_REFERENCE_H_
