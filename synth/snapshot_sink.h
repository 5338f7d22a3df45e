// Generates a site's patients straight into a node snapshot, without the CSV
// detour: the snapshot is the one `passerelle node load` builds from the same
// patients written as OMOP CSV (same persons, codes, days, values and
// counts; only the internal row ordinals differ, which no query observes).
#ifndef PASSERELLE_SYNTH_SNAPSHOT_SINK_H_
#define PASSERELLE_SYNTH_SNAPSHOT_SINK_H_

#include <cstdint>

#include "absl/status/status.h"
#include "node/snapshot.h"
#include "synth/generator.h"

namespace passerelle::synth {

struct FillOptions {
  // Print a progress line to stderr every ~5% of the patients.
  bool progress = false;
};

// Adds every patient of `generator` (persons, deaths and events, one patient
// at a time: nothing but the builder's compact columns grows with the patient
// count) to `builder`, which must hold no person yet. Codes get the OMOP
// loader's meanings: each event is indexed under its concept id (vocabulary
// "concept") and under its vocabulary code (e.g. cim10:E119).
absl::Status FillSnapshot(const Generator& generator,
                          node::SnapshotBuilder* builder,
                          const FillOptions& options = {});

}  // namespace passerelle::synth

#endif  // PASSERELLE_SYNTH_SNAPSHOT_SINK_H_
