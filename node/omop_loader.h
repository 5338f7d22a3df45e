// Loaders map a site's own files into a SnapshotBuilder. This one reads OMOP
// CDM 5.3/5.4 CSV exports (either file-name case).
#ifndef PASSERELLE_NODE_OMOP_LOADER_H_
#define PASSERELLE_NODE_OMOP_LOADER_H_

#include <cstdint>
#include <optional>
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
  // Event rows dated after the load date (kept or left out as
  // LoadOptions::future_events says), and the first few of them (the reason
  // gives the date).
  int64_t future_events = 0;
  std::vector<RejectedRow> future_samples;
  std::vector<std::string> tables;  // Files that were read.
  std::vector<std::string> notes;   // E.g. codes left without vocabulary.
};

// What a load does with event rows dated after the load date: a mis-dated
// record, or a de-identified extract whose dates are shifted into the future
// on purpose (the MIMIC demo). The steward decides; nothing is kept silently.
enum class FutureEvents {
  kUnset,   // No decision: the load fails if there is any (with the report).
  kKeep,    // Loaded as dated (queries on such data give `as of`).
  kReject,  // Left out; counted in the report.
};

struct LoadOptions {
  // The load fails when more rows than this are rejected.
  int64_t max_rejected = 1000;
  // The load date (days since 1970-01-01); absent: today (UTC).
  std::optional<int32_t> load_day;
  FutureEvents future_events = FutureEvents::kUnset;
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
