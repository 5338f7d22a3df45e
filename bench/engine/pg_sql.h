// PostgreSQL translation of a cohort query AST for the engine benchmark: the
// same meanings as node/testing/sql_reference.h's SQLite translation (which
// the benchmark uses for SQLite), on the same tables, written for
// PostgreSQL 15 (DATE columns, integer age arithmetic, no temporary tables).
//
// Tables (see bench/engine/pg_import.sql):
//   P(pid bigint, sex text, by int, bmd int)
//   EV(domain smallint, vocab text, code text, eid bigint, pid bigint,
//      d date, value double precision)
//   D(pid bigint)   SNAP(d date, y int, md int)
// Text comparisons assume the C collation (initdb --no-locale), so a code
// prefix is an index range. Pure functions; safe from any thread.
#ifndef PASSERELLE_BENCH_ENGINE_PG_SQL_H_
#define PASSERELLE_BENCH_ENGINE_PG_SQL_H_

#include <string>

#include "absl/strings/string_view.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::bench {

// One SELECT (no trailing ';') returning, per non-empty cell, the text
// columns `index, value..., count` (the cell's values in group-by order),
// the shape difftest::ParseCellCounts reads once joined with '|'.
std::string PgQueryToSql(const v1::Query& query, int index,
                         absl::string_view site);

}  // namespace passerelle::bench

#endif  // PASSERELLE_BENCH_ENGINE_PG_SQL_H_
