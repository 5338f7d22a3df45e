// A small deterministic site for the request harnesses (node and gateway):
// a snapshot of a few dozen patients with conditions, drugs, measurements
// with values, procedures, visits and observations over 2015-2020, so that
// fuzzed queries reach every part of the engine.
#ifndef PASSERELLE_NODE_FUZZ_FUZZ_SITE_H_
#define PASSERELLE_NODE_FUZZ_FUZZ_SITE_H_

#include <memory>
#include <string>

#include "node/snapshot.h"

namespace passerelle::node::fuzz {

// `patients` patients, laid out from `seed` (same arguments, same snapshot).
std::shared_ptr<const Snapshot> FuzzSnapshot(const std::string& site,
                                             int patients, int seed);

}  // namespace passerelle::node::fuzz

#endif  // PASSERELLE_NODE_FUZZ_FUZZ_SITE_H_
