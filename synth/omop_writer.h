// Writes a Generator's patients as OMOP CDM 5.4 CSV tables.
#ifndef PASSERELLE_SYNTH_OMOP_WRITER_H_
#define PASSERELLE_SYNTH_OMOP_WRITER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "synth/generator.h"

namespace passerelle::synth {

struct OmopWriteOptions {
  // Print a progress line to stderr every ~5% of the patients.
  bool progress = false;
};

struct OmopWriteStats {
  int64_t persons = 0;
  // Rows per table, indexed by Domain (kDeath counts death.csv rows).
  std::array<int64_t, kNumDomains> rows{};
  int64_t concepts = 0;
  int64_t bytes = 0;
};

// The files written, in this order: person.csv, visit_occurrence.csv,
// condition_occurrence.csv, drug_exposure.csv, procedure_occurrence.csv,
// measurement.csv, observation.csv, death.csv, concept.csv,
// observation_period.csv (one row per person). All use ',' and
// "\n", a header line with the OMOP CDM 5.4 column names, ISO dates, and empty
// fields for NULL.
extern const char* const kOmopTableFiles[10];

// Creates `out_dir` (and parents) if needed and writes every table there,
// replacing files of the same name. Memory use is bounded (one patient plus
// one write buffer per table) whatever the patient count. Errors:
// InvalidArgument/Internal naming the path that could not be created or
// written.
absl::StatusOr<OmopWriteStats> WriteOmopCsv(
    const Generator& generator, const std::string& out_dir,
    const OmopWriteOptions& options = {});

}  // namespace passerelle::synth

#endif  // PASSERELLE_SYNTH_OMOP_WRITER_H_
