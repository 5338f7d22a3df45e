// Loaders map a site's own files into a SnapshotBuilder. This one reads OMOP
// CDM 5.3/5.4 CSV exports (either file-name case).
#ifndef PASSERELLE_NODE_OMOP_LOADER_H_
#define PASSERELLE_NODE_OMOP_LOADER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "node/snapshot.h"

namespace passerelle::node {

struct RejectedRow {
  std::string file;
  int64_t line = 0;
  std::string reason;
};

struct LoadReport {
  int64_t persons = 0;
  int64_t events = 0;
  int64_t rejected = 0;
  std::vector<RejectedRow> rejected_samples;  // The first few, for the steward.
  std::vector<std::string> tables;            // Files that were read.
  std::vector<std::string> notes;             // E.g. codes left without vocabulary.
};

struct LoadOptions {
  // The load fails when more rows than this are rejected.
  int64_t max_rejected = 1000;
  // Steward-supplied rules giving the vocabulary of source values when the
  // export has no CONCEPT table for them (see ParseVocabularyRules).
  std::string vocabulary_rules_file;
};

// A rule: in `domain` ("condition", ..., or "*"), rows whose
// <domain>_source_concept_id matches `pattern` (exact, or a prefix ending in
// '*') carry a source value coded in `vocabulary`.
struct VocabularyRule {
  std::string domain;
  std::string pattern;
  std::string vocabulary;
};

// One rule per line: `DOMAIN source_concept_id PATTERN VOCABULARY`; '#'
// starts a comment. Errors name file:line.
absl::StatusOr<std::vector<VocabularyRule>> ParseVocabularyRules(
    const std::string& path);

// The canonical Passerelle vocabulary name of an OMOP vocabulary_id
// ("ICD10CM" -> "icd10cm", "RxNorm" -> "rxnorm").
std::string VocabularyFromOmop(absl::string_view vocabulary_id);

// Reads `dir` into `builder` (persons first, then every event table present).
// Rejected rows are counted in `report`; the load fails when they exceed
// options.max_rejected or when a table is malformed.
absl::Status LoadOmopDirectory(const std::string& dir,
                               const LoadOptions& options,
                               SnapshotBuilder* builder, LoadReport* report);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_OMOP_LOADER_H_
