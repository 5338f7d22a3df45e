// The cohort engine: evaluates a validated query AST against one snapshot and
// returns one exact count of distinct patients per breakdown cell.
#ifndef PASSERELLE_NODE_ENGINE_H_
#define PASSERELLE_NODE_ENGINE_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "node/crosswalk.h"
#include "node/snapshot.h"
#include "passerelle/v1/node.pb.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::node {

// The seam between the node service and any engine implementation.
// Implementations are thread-safe.
class CohortEngine {
 public:
  virtual ~CohortEngine() = default;
  // Counts per cell, in the order of query::EnumerateCells(query, {site}).
  // The query must have passed query::ValidateQuery. Ages are counted on
  // the query's `as of` date, or without one on the engine's clock's date
  // (UTC): never on a date taken from the data.
  virtual absl::StatusOr<std::vector<v1::Cell>> Count(
      const v1::Query& query) const = 0;
  virtual const SnapshotMeta& meta() const = 0;
  virtual std::vector<std::string> Vocabularies() const = 0;

  // Count, and the query's crosswalk expansion at this snapshot in
  // `*expansion` (when not null). The mapped site codes join each event
  // spec's code set (docs/vocabulary.md); Count(query) counts the same.
  virtual absl::StatusOr<std::vector<v1::Cell>> CountExpanded(
      const v1::Query& query, v1::SiteExpansion* expansion) const {
    if (expansion != nullptr) *expansion = Explain(query);
    return Count(query);
  }
  // How the query's codes reach this snapshot's vocabularies through its
  // crosswalk tables: a pure function of (query, tables, the vocabularies
  // held per domain), never of the data.
  virtual v1::SiteExpansion Explain(const v1::Query& query) const {
    v1::SiteExpansion e;
    e.set_site(meta().site);
    e.set_code_matching(query.code_matching());
    return e;
  }
  // The crosswalk set in force (null: none).
  virtual std::shared_ptr<const CrosswalkSet> crosswalks() const {
    return nullptr;
  }
};

// The index-based engine: compressed bitmaps per code, contiguous patient
// ranges for age and birth year, posting scans for windows, repeats, values
// and sequences.
std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot);

struct IndexEngineOptions {
  // A temporal sequence with at least twice this many candidate patients is
  // checked by up to min(4, cores) threads, each on a consecutive range of
  // at least this many (0: never). With timelines a candidate costs ~15-20
  // ns at 10M patients, so a range is ~5 ms of work; on a shared machine
  // smaller ranges were slower than one thread.
  size_t parallel_sequence_candidates = 300000;
  // Each side of a temporal sequence without a value condition is read from
  // its timeline: the distinct (patient, day) pairs of its codes, by
  // patient (one merged timeline for a prefix such as E11*), built on first
  // use and kept with the engine while the timelines kept take at most this
  // many bytes in all. A side whose timeline would pass the budget, or a
  // quarter of it alone, is read code by code as before (0: never).
  size_t sequence_timeline_budget_bytes = size_t{512} << 20;
  // Gives the reference date for ages (its UTC date) to a query without
  // `as of`; null: the real clock. Must outlive the engine.
  Clock* clock = nullptr;
};
std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot,
    const IndexEngineOptions& options);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_ENGINE_H_
