// A small random OMOP CDM CSV site full of the traps a loader and the engine
// must get right: signed 64-bit person ids, year-only and 29 February
// births, centenarians, every sex encoding, ICD codes with dots, padding and
// lower case in several vocabularies (and vocabulary_id spellings), source
// values coded only through vocabulary rules (first match wins), rows
// carrying several codes, duplicate rows, measurement values such as " 12 ",
// "6.50" and "1e2", every OMOP date form, deaths after the last event, and
// a few rows the loader must reject. Deterministic from the seed.
#ifndef PASSERELLE_NODE_TESTING_TRAP_DATASET_H_
#define PASSERELLE_NODE_TESTING_TRAP_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/testing/sql_reference.h"

namespace passerelle::node::difftest {

struct TrapDatasetOptions {
  int persons = 500;
  uint64_t seed = 1;
  // Every event and death date before 1970-01-01 (day numbers < 0).
  bool before_1970 = false;
  // PERSON.csv, CONDITION_OCCURRENCE.csv, ... (the loader takes any case).
  bool upper_case_files = false;
};

// Writes the tables into `dir` (created if needed) and returns the vocabulary
// rules the site's steward would declare for it.
absl::StatusOr<std::vector<SqlVocabularyRule>> WriteTrapDataset(
    const std::string& dir, const TrapDatasetOptions& options);

}  // namespace passerelle::node::difftest

#endif  // PASSERELLE_NODE_TESTING_TRAP_DATASET_H_
