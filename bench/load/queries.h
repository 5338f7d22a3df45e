// Queries for the load driver: every request of a run must have a distinct
// canonical form, because the gateway answers a repeat (same canonical query
// under the same node snapshots) from its release cache without asking the
// nodes (gateway/release_cache.h), and the throughput target is measured
// without a result cache.
#ifndef PASSERELLE_BENCH_LOAD_QUERIES_H_
#define PASSERELLE_BENCH_LOAD_QUERIES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace passerelle::bench {

// The shapes of the default mix (the three node-side targets of
// performance.md): a 3-criterion count, a sex x age-band breakdown and a
// temporal sequence.
enum class Shape { kCount, kBreakdown, kSequence };

// Produces query i of a run as cohort-language text. Implementations are
// immutable after construction and safe to call from any thread.
class QuerySource {
 public:
  virtual ~QuerySource() = default;
  virtual std::string Query(uint64_t i) const = 0;
  // Queries 0 .. DistinctCount()-1 have pairwise distinct canonical forms.
  virtual uint64_t DistinctCount() const = 0;
};

// The default mix: the shapes in turn, each over a code of the synthetic
// catalogue, a sex, an age range [lo, lo + width] and an `as of` date, all
// derived from i by a mixed-radix decomposition, so distinct i give distinct
// parameters. INVALID_ARGUMENT when `shapes` is empty.
absl::StatusOr<std::unique_ptr<QuerySource>> NewDefaultMix(
    std::vector<Shape> shapes);

// A fixed list, cycled: query i is list[i % n]. With `vary_as_of`, each
// cycle appends a different `as of` date (cycle k: 2025-12-31 minus k days)
// to every line that has none, so the list's distinct lines stay distinct
// across cycles. INVALID_ARGUMENT on an empty list.
absl::StatusOr<std::unique_ptr<QuerySource>> NewListSource(
    std::vector<std::string> queries, bool vary_as_of);

// "count", "breakdown", "sequence", comma-separated.
absl::StatusOr<std::vector<Shape>> ParseShapes(const std::string& text);

// One query per line; blank lines and lines starting with '#' are skipped.
absl::StatusOr<std::vector<std::string>> ReadQueryFile(const std::string& path);

}  // namespace passerelle::bench

#endif  // PASSERELLE_BENCH_LOAD_QUERIES_H_
