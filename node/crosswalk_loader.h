// Reading crosswalk tables from CSV files (docs/vocabulary.md): the
// Passerelle form a steward writes, and the three public forms shipped as
// they are published (CMS GEMs, Health Canada DPD DIN -> ATC, BDPM CIP13 ->
// ATC). The form is detected from the header line.
//
// A load is all or nothing: an invalid row (unknown vocabulary or relation,
// a code that is not one of its vocabulary, a wrong column count, a
// duplicate row) refuses every table with `file:line: reason` for the first
// 20 of them and a count, unless the steward chose to skip them (they are
// then counted per table and listed in the report).
#ifndef PASSERELLE_NODE_CROSSWALK_LOADER_H_
#define PASSERELLE_NODE_CROSSWALK_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "node/crosswalk.h"
#include "node/omop_loader.h"  // RejectedRow.

namespace passerelle::node {

// `PATH[,source=VOCAB][,name=NAME]`.
struct CrosswalkSpec {
  std::string path;
  // Overrides every row's source vocabulary ("" = as the file says).
  std::string source_vocabulary;
  // The table's name ("" = the file's base name without ".csv").
  std::string name;
};
absl::StatusOr<CrosswalkSpec> ParseCrosswalkSpec(absl::string_view text);

enum class InvalidCrosswalkRows {
  kRefuse,  // Any invalid row refuses the whole load.
  kSkip,    // Invalid rows are left out, counted and listed.
};

struct CrosswalkLoadReport {
  // Invalid rows in all files (refused, or skipped under kSkip), and the
  // first kMaxSamples of them.
  static constexpr size_t kMaxSamples = 20;
  int64_t invalid = 0;
  std::vector<RejectedRow> invalid_samples;
};

// Reads one table. Invalid rows are counted into `report`; under kRefuse the
// caller fails the load when report->invalid > 0 (LoadCrosswalks does).
// Errors: an unreadable file or an unrecognised header (file:1).
absl::StatusOr<CrosswalkTable> ReadCrosswalkTable(const CrosswalkSpec& spec,
                                                  InvalidCrosswalkRows mode,
                                                  CrosswalkLoadReport* report);

// Reads every table of `specs` (SPEC strings) into one set. Under kRefuse
// any invalid row fails with "file:line: reason" for the first 20 and the
// total; nothing is returned half-way. Two tables of the same name fail.
absl::StatusOr<std::shared_ptr<const CrosswalkSet>> LoadCrosswalks(
    const std::vector<std::string>& specs, InvalidCrosswalkRows mode,
    CrosswalkLoadReport* report);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_CROSSWALK_LOADER_H_
