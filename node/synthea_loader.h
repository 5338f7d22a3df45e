// Loader for Synthea CSV exports (https://github.com/synthetichealth/synthea,
// "csv" exporter). What each file becomes:
//
//   patients.csv      Id -> a dense internal number (the UUID is used only
//                     while loading and never stored or printed); GENDER
//                     M/F -> male/female, anything else unknown; BIRTHDATE
//                     (full date) -> birth date; DEATHDATE -> deceased.
//   conditions.csv    START, CODE -> condition  snomed
//   medications.csv   START, CODE -> drug       rxnorm
//   procedures.csv    START (or DATE in older exports), CODE
//                                 -> procedure  snomed
//   encounters.csv    START, CODE -> visit      snomed
//   observations.csv  DATE, CODE (LOINC), VALUE, TYPE:
//                       numeric value -> measurement loinc, with the value;
//                       any other value -> observation loinc, no value;
//                       codes that are not LOINC codes (Synthea's own QALY,
//                       DALY, QOLS) are not loaded and counted in a note.
//   immunizations.csv DATE, CODE  -> drug       cvx (vaccines are drug
//                     exposures in OMOP; `cvx` is not yet a query
//                     vocabulary, so these rows are stored but not reachable
//                     from the cohort language until it is added)
//   allergies.csv     START, CODE, SYSTEM -> observation in SYSTEM's
//                     vocabulary (SNOMED-CT -> snomed, RxNorm -> rxnorm)
//
// A SYSTEM column, where a table has one, overrides the table's default
// vocabulary; an unknown SYSTEM is not guessed: the row is not loaded and
// counted in a note. Other files (careplans, devices, supplies, claims, ...)
// are not mapped and are listed in a note. Rejected rows (unknown PATIENT,
// bad date, empty or malformed CODE, a numeric TYPE without a number) carry
// file, line and reason; the reason never contains a patient id.
#ifndef PASSERELLE_NODE_SYNTHEA_LOADER_H_
#define PASSERELLE_NODE_SYNTHEA_LOADER_H_

#include <string>

#include "absl/status/status.h"
#include "node/loader.h"

namespace passerelle::node {

// Reads the Synthea export in `dir` into `builder`. options.max_rejected
// applies; options.vocabulary_rules_file must be empty (it is an OMOP
// option). Thread-compatible: concurrent calls need distinct builders and
// reports.
absl::Status LoadSyntheaDirectory(const std::string& dir,
                                  const LoadOptions& options,
                                  SnapshotBuilder* builder, LoadReport* report);

// The query vocabulary of a Synthea SYSTEM value ("SNOMED-CT" -> "snomed",
// "RxNorm" -> "rxnorm", "LOINC" -> "loinc", "CVX" -> "cvx", also their FHIR
// system URIs), or "" when unknown.
std::string VocabularyFromSyntheaSystem(absl::string_view system);

// True for a LOINC code: 1 to 7 digits, '-', one check digit.
bool IsLoincCode(absl::string_view code);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_SYNTHEA_LOADER_H_
