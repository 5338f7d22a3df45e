// The crosswalk part of the SQL reference (docs/vocabulary.md written again
// in SQL, without the engine's code): crosswalk CSV files imported into
// sqlite3, the ICD category rollup derived by a query over them, and the
// SQL of a code criterion's mapped site codes (a join through the mapping
// table with the relation filter of the query's matching mode). Test-only.
//
// Tables (created empty by OmopImportScript, filled by
// CrosswalkImportScript):
//   XW(tname, sv, sc, sp, tv, tc, rel)   the rows as loaded; sp = 1 for a
//                                        source prefix row (`C*`)
//   XA(tname, sv, sc, sp, tv, tc, rel, rollup)
//                                        XW and the rollup rows (rollup = 1,
//                                        rel = 'broader')
//   SVM(sv, vocab)                       a row's source vocabulary and the
//                                        data vocabularies it matches
#ifndef PASSERELLE_NODE_TESTING_SQL_CROSSWALK_H_
#define PASSERELLE_NODE_TESTING_SQL_CROSSWALK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::node::difftest {

struct SqlCrosswalkFile {
  std::string path;
  // "passerelle", "gem-forward" (icd9cm -> icd10cm) or "gem-backward".
  std::string form;
  std::string name;
  // Overrides the rows' source vocabulary ("" = as written).
  std::string source_vocabulary;
};

// The empty tables (appended to every import script).
std::string CrosswalkTablesSql();

// Imports the files into XW and derives XA. Run on the reference database
// after OmopImportScript.
absl::StatusOr<std::string> CrosswalkImportScript(
    const std::vector<SqlCrosswalkFile>& files);

// The mapped rows of one code of an event spec: `SELECT <columns> FROM ...
// EV x ...` arms (joined with UNION ALL by the caller), or none under
// `codes exact`. `common` is appended to each arm's WHERE (value, window).
std::vector<std::string> MappedCodeArms(const v1::Code& code, int domain,
                                        v1::CodeMatching mode,
                                        const std::string& columns,
                                        const std::string& common);

}  // namespace passerelle::node::difftest

#endif  // PASSERELLE_NODE_TESTING_SQL_CROSSWALK_H_
