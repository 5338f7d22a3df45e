// The cohort engine side by side with PostgreSQL 15 and SQLite on the same
// data and queries (bench/README.md, "Engine benchmark").
//
// Each query is written once in the cohort language, parsed to the AST, and
// compiled from that AST to SQLite SQL (node/testing/sql_reference.h, the
// differential test's translation) and to PostgreSQL SQL (pg_sql.h). Every
// cell of every query must agree across the three engines before anything is
// timed. Then:
//   - Passerelle: CohortEngine::Count on the snapshot loaded from the node
//     store, in process (load-from-store time reported separately);
//     optionally `passerelle node count` as a whole-client time;
//   - SQLite: the statements through the sqlite3 C API on one open
//     connection (prepare + step + finalize of every statement);
//   - PostgreSQL: PQexec through libpq over the Unix socket, result rows
//     included;
// and optionally both reference engines through their CLIs (sqlite3, psql)
// as whole-client wall times.
//
// Usage: engine_bench --store DIR [--sqlite DB --pg CONNINFO] [options]
//   (without --sqlite and --pg only Passerelle is timed: the 10M run)
//   (run by bench/engine/run.sh, which prepares all three stores).
#include <fcntl.h>
#include <libpq-fe.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/engine/pg_sql.h"
#include "common/status_macros.h"
#include "node/engine.h"
#include "node/store.h"
#include "node/testing/sql_reference.h"
#include "query/canonical.h"
#include "query/cells.h"
#include "query/parser.h"

extern char** environ;

namespace passerelle::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct BenchQuery {
  const char* name;
  const char* kind;  // count | breakdown | temporal
  const char* text;
};

// The three queries of performance.md, then a few more shapes.
const BenchQuery kQueries[] = {
    {"q1_count_by", "count",
     "condition icd10:E11* and sex = male and birth_year between 1940 and "
     "1960"},
    {"q1b_count_age", "count",
     "condition icd10:E11* and sex = female and age between 40 and 65"},
    {"q2_breakdown", "breakdown",
     "condition icd10:E11* group by sex, age_band(10)"},
    {"q3_sequence", "temporal",
     "condition icd10:E11* before drug atc:A10BA02 within 365 days"},
    {"q4_or_sets", "count",
     "condition [icd10:I10, icd10:I11*, icd10:I15*] or drug atc:C09*"},
    {"q5_not", "count", "condition icd10:E11* and not drug atc:A10*"},
    {"q6_at_least", "count", "condition icd10:I10* at least 3 times"},
};

struct Options {
  std::string store;
  std::string sqlite_db;
  std::string pg_conninfo;
  std::string site = "fr";
  std::string cli;         // passerelle binary, for whole-client times.
  std::string sqlite_cli;  // sqlite3 binary, for whole-client times.
  std::string psql_cli;    // psql binary (with --pg-cli-args).
  std::string psql_args;   // e.g. "-h /tmp/x -U postgres -d bench".
  std::string scratch = "/tmp";
  std::string only;  // Comma-separated query names.
  std::string markdown_out;
  int runs = 30;
  int warmup = 5;
  int ref_runs = 7;
  int ref_warmup = 1;
  int cli_runs = 3;
  bool print_sql = false;
};

struct Stats {
  int n = 0;
  double min = 0, p50 = 0, p99 = 0, mean = 0;
};

// Quantiles with linear interpolation between closest ranks (numpy's
// default); with 30 runs p99 lies between the two slowest runs.
Stats Summarize(std::vector<double> v) {
  Stats s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) {
    const double pos = p * (v.size() - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
  };
  s.min = v.front();
  s.p50 = q(0.5);
  s.p99 = q(0.99);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  return s;
}

std::string LoadAvg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return absl::StrCat(a, " ", b, " ", c);
}

int64_t RssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kb = 0;
      std::istringstream(line.substr(6)) >> kb;
      return kb / 1024;
    }
  }
  return -1;
}

// ---------------------------------------------------------------------------
// Reference engines through their C APIs.

class Sqlite {
 public:
  ~Sqlite() {
    if (db_) sqlite3_close(db_);
  }
  absl::Status Open(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) !=
        SQLITE_OK) {
      return absl::InternalError(
          absl::StrCat("sqlite3_open ", path, ": ", sqlite3_errmsg(db_)));
    }
    // A page cache large enough for the whole database (1M patients: ~2 GB)
    // and memory-mapped reads: warm runs never go to the file system.
    return Exec(
               "PRAGMA cache_size = -4000000; PRAGMA mmap_size = 17179869184; "
               "PRAGMA temp_store = MEMORY;")
        .status();
  }
  // Runs every statement of `sql`; rows of every statement that returns
  // some, as `col|col|...` lines (sqlite3's list mode).
  absl::StatusOr<std::string> Exec(const std::string& sql) {
    std::string out;
    const char* tail = sql.c_str();
    while (tail && *tail) {
      sqlite3_stmt* stmt = nullptr;
      if (sqlite3_prepare_v2(db_, tail, -1, &stmt, &tail) != SQLITE_OK) {
        return absl::InternalError(
            absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
      }
      if (stmt == nullptr) continue;  // Whitespace or a comment.
      int rc;
      const int cols = sqlite3_column_count(stmt);
      while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        for (int c = 0; c < cols; ++c) {
          if (c) out += '|';
          const unsigned char* t = sqlite3_column_text(stmt, c);
          if (t) out += reinterpret_cast<const char*>(t);
        }
        out += '\n';
      }
      sqlite3_finalize(stmt);
      if (rc != SQLITE_DONE) {
        return absl::InternalError(
            absl::StrCat("sqlite step: ", sqlite3_errmsg(db_)));
      }
    }
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

class Postgres {
 public:
  ~Postgres() {
    if (conn_) PQfinish(conn_);
  }
  absl::Status Open(const std::string& conninfo) {
    conn_ = PQconnectdb(conninfo.c_str());
    if (PQstatus(conn_) != CONNECTION_OK) {
      return absl::InternalError(
          absl::StrCat("PQconnectdb: ", PQerrorMessage(conn_)));
    }
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Exec(const std::string& sql) {
    PGresult* res = PQexec(conn_, sql.c_str());
    const ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      std::string err = PQresultErrorMessage(res);
      PQclear(res);
      return absl::InternalError(absl::StrCat("postgres: ", err));
    }
    std::string out;
    const int rows = PQntuples(res), cols = PQnfields(res);
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        if (c) out += '|';
        out += PQgetvalue(res, r, c);
      }
      out += '\n';
    }
    PQclear(res);
    return out;
  }
  std::string Setting(const std::string& name) {
    absl::StatusOr<std::string> v = Exec("SHOW " + name);
    if (!v.ok()) return "?";
    std::string s = *v;
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }

 private:
  PGconn* conn_ = nullptr;
};

// Runs argv with stdin from `in_path` (or /dev/null), stdout and stderr to
// files in `scratch`; returns the wall time in ms, an error on failure.
absl::StatusOr<double> TimeProcess(const std::vector<std::string>& args,
                                   const std::string& in_path,
                                   const std::string& scratch,
                                   std::string* out) {
  const std::string out_path = scratch + "/proc.out";
  const std::string err_path = scratch + "/proc.err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(
      &actions, 0, in_path.empty() ? "/dev/null" : in_path.c_str(), O_RDONLY,
      0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  const Clock::time_point start = Clock::now();
  pid_t pid;
  const int rc =
      posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return absl::InternalError(absl::StrCat("spawn ", args[0]));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError("waitpid");
  }
  const double ms = Ms(Clock::now() - start);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(args[0], " failed: ", slurp(err_path).substr(0, 2000)));
  }
  if (out) *out = slurp(out_path);
  return ms;
}

// ---------------------------------------------------------------------------

struct Row {
  std::string query, kind, engine, mode;
  Stats stats;
  double ratio = 0;  // Engine p50 / Passerelle engine p50.
};

std::string Fmt(double ms) {
  if (ms >= 100) return absl::StrFormat("%.0f ms", ms);
  if (ms >= 1) return absl::StrFormat("%.2f ms", ms);
  return absl::StrFormat("%.3f ms", ms);
}

absl::Status Run(const Options& o) {
  std::cout << "engine_bench: load average at start " << LoadAvg() << "\n";

  // Passerelle: the snapshot from the store, as a node opens it at start.
  const Clock::time_point t0 = Clock::now();
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<node::NodeStore> store,
                              node::NodeStore::Open(o.store));
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<node::Snapshot> snap,
                              store->LoadCurrent());
  const double load_ms = Ms(Clock::now() - t0);
  store.reset();
  const int64_t rss_snapshot = RssMiB();
  const Clock::time_point t1 = Clock::now();
  std::unique_ptr<node::CohortEngine> engine = node::NewIndexEngine(snap);
  const double engine_ms = Ms(Clock::now() - t1);
  {
    // The index's size: posting entries (one per event and code), their
    // columns and the per-code bitmaps (once per shared posting); per
    // source event row.
    uint64_t entries = 0, column_bytes = 0, bitmap_bytes = 0, codes = 0;
    std::set<const node::Posting*> counted;
    for (const auto& [key, table] : snap->tables) {
      for (const auto& shared : table.postings) {
        const node::Posting& p = *shared;
        ++codes;
        entries += p.size();
        if (!counted.insert(&p).second) continue;
        column_bytes += p.patients.size() * sizeof(uint32_t) +
                        p.days.size() * sizeof(int32_t) +
                        p.events.size() * sizeof(uint32_t) +
                        p.values.size() * sizeof(double);
        bitmap_bytes += p.bitmap.getSizeInBytes();
      }
    }
    const double ev = std::max<double>(1, snap->meta.events);
    std::cout << absl::StreamFormat(
        "passerelle index: %d codes, %d posting entries (%.2f per event), "
        "columns %.0f MiB (%.1f bytes/event), bitmaps %.0f MiB (%.1f "
        "bytes/event); resident %d MiB after the snapshot load, %d MiB with "
        "the engine (%.1f bytes/event)\n",
        codes, entries, entries / ev, column_bytes / 1048576.0,
        column_bytes / ev, bitmap_bytes / 1048576.0, bitmap_bytes / ev,
        rss_snapshot, RssMiB(), RssMiB() * 1048576.0 / ev);
  }
  // Every engine counts ages on one reference date, given to each query as
  // `as of`: today (UTC) when the run starts.
  const absl::Time run_start = absl::Now();
  const v1::Date ref = query::UtcDate(run_start);
  const std::string ref_date =
      absl::StrFormat("%04d-%02d-%02d", ref.year(), ref.month(), ref.day());
  std::cout << absl::StreamFormat(
      "passerelle: snapshot %s of site %s: %d persons, %d events, reference "
      "date %s; loaded from the store in %.0f ms, engine built in %.0f ms; "
      "resident %d MiB\n",
      snap->meta.version, snap->meta.site, snap->meta.persons,
      snap->meta.events, ref_date, load_ms, engine_ms, RssMiB());

  // Without reference engines (--engine-only, e.g. at 10M patients where
  // they would need hours to load) only Passerelle is timed.
  const bool refs = !o.sqlite_db.empty();
  Sqlite sqlite;
  Postgres pg;
  if (refs) {
    PASSERELLE_RETURN_IF_ERROR(sqlite.Open(o.sqlite_db));
    PASSERELLE_RETURN_IF_ERROR(pg.Open(o.pg_conninfo));

    PASSERELLE_ASSIGN_OR_RETURN(std::string v,
                                sqlite.Exec("SELECT sqlite_version()"));
    std::cout << "sqlite: version " << v;
    PASSERELLE_ASSIGN_OR_RETURN(std::string pv, pg.Exec("SELECT version()"));
    std::cout << "postgres: " << pv;
    std::cout << "postgres settings: shared_buffers="
              << pg.Setting("shared_buffers")
              << " work_mem=" << pg.Setting("work_mem")
              << " max_parallel_workers_per_gather="
              << pg.Setting("max_parallel_workers_per_gather")
              << " jit=" << pg.Setting("jit") << "\n";
  }

  std::vector<BenchQuery> queries;
  for (const BenchQuery& q : kQueries) {
    if (o.only.empty() || absl::StrContains(absl::StrCat(",", o.only, ","),
                                            absl::StrCat(",", q.name, ","))) {
      queries.push_back(q);
    }
  }

  // 1. Correctness: every cell, every engine, before any timing.
  struct Prepared {
    BenchQuery q;
    v1::Query ast;
    std::string sqlite_sql, pg_sql;
    int64_t total = 0;
    size_t cells = 0;
  };
  std::vector<Prepared> prepared;
  bool all_equal = true;
  for (const BenchQuery& q : queries) {
    Prepared p{q, {}, {}, {}, 0, 0};
    PASSERELLE_ASSIGN_OR_RETURN(p.ast, query::ParseQuery(q.text));
    query::PinReferenceDate(run_start, &p.ast);
    p.sqlite_sql = node::difftest::QueryToSql(p.ast, 0, o.site, ref);
    p.pg_sql = PgQueryToSql(p.ast, 0, o.site);
    if (o.print_sql) {
      std::cout << "-- " << q.name << ": " << q.text << "\n-- SQLite:\n"
                << p.sqlite_sql << "-- PostgreSQL:\n"
                << p.pg_sql << ";\n";
    }
    PASSERELLE_ASSIGN_OR_RETURN(std::vector<v1::Cell> cells,
                                engine->Count(p.ast));
    const std::vector<v1::CellKey> keys =
        query::EnumerateCells(p.ast, {o.site});
    p.cells = keys.size();
    std::vector<std::vector<int64_t>> sq_counts, pg_counts;
    if (refs) {
      PASSERELLE_ASSIGN_OR_RETURN(std::string sq_out,
                                  sqlite.Exec(p.sqlite_sql));
      PASSERELLE_ASSIGN_OR_RETURN(std::string pg_out, pg.Exec(p.pg_sql));
      PASSERELLE_ASSIGN_OR_RETURN(
          sq_counts, node::difftest::ParseCellCounts(sq_out, {p.ast}, o.site));
      PASSERELLE_ASSIGN_OR_RETURN(
          pg_counts, node::difftest::ParseCellCounts(pg_out, {p.ast}, o.site));
    } else {
      sq_counts = pg_counts = {std::vector<int64_t>(keys.size())};
      for (size_t k = 0; k < cells.size() && k < keys.size(); ++k) {
        sq_counts[0][k] = pg_counts[0][k] = cells[k].count();
      }
    }
    bool equal = cells.size() == keys.size();
    for (size_t k = 0; k < keys.size(); ++k) {
      const int64_t n = equal ? cells[k].count() : -1;
      p.total += n;
      if (sq_counts[0][k] != n || pg_counts[0][k] != n) {
        equal = false;
        std::vector<std::string> vals;
        for (const auto& v : keys[k].values()) vals.push_back(v.value());
        std::cout << "MISMATCH " << q.name << " cell ["
                  << absl::StrJoin(vals, ",") << "]: passerelle " << n
                  << ", sqlite " << sq_counts[0][k] << ", postgres "
                  << pg_counts[0][k] << "\n";
      }
    }
    std::cout << absl::StreamFormat(
        "check %-14s %-9s %3d cell(s), %8d patients: %s\n", q.name, q.kind,
        p.cells, p.total,
        !equal ? "MISMATCH"
        : refs ? "passerelle = sqlite = postgres"
               : "passerelle only (no reference engine)");
    all_equal &= equal;
    prepared.push_back(std::move(p));
  }
  if (!all_equal) {
    return absl::InternalError("counts differ between engines: nothing timed");
  }

  // 2. Timing.
  std::vector<Row> rows;
  const std::string load_before = LoadAvg();
  for (const Prepared& p : prepared) {
    auto time_it =
        [&](int warmup, int runs,
            const std::function<absl::Status()>& fn) -> absl::StatusOr<Stats> {
      for (int i = 0; i < warmup; ++i) PASSERELLE_RETURN_IF_ERROR(fn());
      std::vector<double> ms;
      for (int i = 0; i < runs; ++i) {
        const Clock::time_point s = Clock::now();
        PASSERELLE_RETURN_IF_ERROR(fn());
        ms.push_back(Ms(Clock::now() - s));
      }
      return Summarize(ms);
    };
    Row base{p.q.name, p.q.kind, "passerelle", "engine in-process", {}, 1};
    PASSERELLE_ASSIGN_OR_RETURN(
        base.stats, time_it(o.warmup, o.runs, [&]() -> absl::Status {
          return engine->Count(p.ast).status();
        }));
    base.ratio = 1;
    rows.push_back(base);
    auto add = [&](const std::string& eng, const std::string& mode,
                   const Stats& s) {
      Row r{p.q.name, p.q.kind, eng, mode, s, 0};
      r.ratio = s.p50 / base.stats.p50;
      rows.push_back(r);
      std::cout << absl::StreamFormat("  %-14s %-11s %-20s p50 %10s  (x%.0f)\n",
                                      p.q.name, eng, mode, Fmt(s.p50), r.ratio);
    };
    std::cout << absl::StreamFormat("  %-14s %-11s %-20s p50 %10s\n", p.q.name,
                                    "passerelle", base.mode,
                                    Fmt(base.stats.p50));
    if (refs) {
      PASSERELLE_ASSIGN_OR_RETURN(
          Stats sq, time_it(o.ref_warmup, o.ref_runs, [&]() -> absl::Status {
            return sqlite.Exec(p.sqlite_sql).status();
          }));
      add("sqlite", "C API", sq);
      PASSERELLE_ASSIGN_OR_RETURN(
          Stats pq, time_it(o.ref_warmup, o.ref_runs, [&]() -> absl::Status {
            return pg.Exec(p.pg_sql).status();
          }));
      add("postgres", "libpq", pq);
    }

    // Whole-client times (a process per query). `passerelle node count`
    // opens the store and loads the snapshot on every call, so its time is
    // the load time whatever the query: measured on the first query only.
    if (!o.cli.empty() && &p == &prepared.front()) {
      std::vector<std::string> args = {o.cli,   "node",     "count", "--store",
                                       o.store, "--format", "csv",   p.q.text};
      PASSERELLE_ASSIGN_OR_RETURN(
          Stats s, time_it(0, o.cli_runs, [&]() -> absl::Status {
            return TimeProcess(args, "", o.scratch, nullptr).status();
          }));
      add("passerelle", "CLI (load+query)", s);
    }
    if (refs && !o.sqlite_cli.empty()) {
      const std::string file = o.scratch + "/q.sqlite.sql";
      std::ofstream(file) << p.sqlite_sql;
      std::vector<std::string> args = {o.sqlite_cli, "-batch", "-bail",
                                       o.sqlite_db};
      PASSERELLE_ASSIGN_OR_RETURN(
          Stats s, time_it(0, o.cli_runs, [&]() -> absl::Status {
            return TimeProcess(args, file, o.scratch, nullptr).status();
          }));
      add("sqlite", "sqlite3 CLI", s);
    }
    if (refs && !o.psql_cli.empty()) {
      const std::string file = o.scratch + "/q.pg.sql";
      std::ofstream(file) << p.pg_sql << ";\n";
      std::vector<std::string> args = {o.psql_cli, "-X", "-q", "-A", "-t"};
      for (absl::string_view a :
           absl::StrSplit(o.psql_args, ' ', absl::SkipEmpty())) {
        args.emplace_back(a);
      }
      args.push_back("-f");
      args.push_back(file);
      PASSERELLE_ASSIGN_OR_RETURN(
          Stats s, time_it(0, o.cli_runs, [&]() -> absl::Status {
            return TimeProcess(args, "", o.scratch, nullptr).status();
          }));
      add("postgres", "psql CLI", s);
    }
  }
  const std::string load_after = LoadAvg();

  // 3. Report.
  std::ostringstream md;
  md << absl::StreamFormat(
      "%d patients, %d events (ages as of %s); Passerelle load from store "
      "%.0f ms, engine (index) built in %.0f ms, resident %d MiB.\nLoad "
      "average (1/5/15 min) before timing: "
      "%s; after: %s.\nRuns: Passerelle engine %d after %d warm-up; "
      "reference engines %d after %d warm-up; CLI rows %d.\n\n",
      snap->meta.persons, snap->meta.events, ref_date, load_ms, engine_ms,
      RssMiB(), load_before, load_after, o.runs, o.warmup, o.ref_runs,
      o.ref_warmup, o.cli_runs);
  md << "| query | patients | engine | how | min | p50 | p99 | p50 / "
        "Passerelle p50 |\n"
        "|---|---:|---|---|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    int64_t total = 0;
    for (const Prepared& p : prepared) {
      if (r.query == p.q.name) total = p.total;
    }
    md << "| " << r.query << " | " << total << " | " << r.engine << " | "
       << r.mode << " | " << Fmt(r.stats.min) << " | " << Fmt(r.stats.p50)
       << " | " << Fmt(r.stats.p99) << " | "
       << (r.engine == "passerelle" && r.mode == "engine in-process"
               ? std::string("1")
               : absl::StrFormat("%.0f×", r.ratio))
       << " |\n";
  }
  md << "\nQueries:\n\n";
  for (const Prepared& p : prepared) {
    md << "- `" << p.q.name << "` (" << p.q.kind << "): `" << p.q.text << "`\n";
  }
  std::cout << "\n" << md.str();
  if (!o.markdown_out.empty()) {
    std::ofstream out(o.markdown_out);
    out << md.str();
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    auto next_int = [&]() {
      int v = 0;
      const std::string s = next();
      if (!absl::SimpleAtoi(s, &v) || v < 0) {
        std::cerr << a << ": bad number " << s << "\n";
        std::exit(2);
      }
      return v;
    };
    if (a == "--store")
      o.store = next();
    else if (a == "--sqlite")
      o.sqlite_db = next();
    else if (a == "--pg")
      o.pg_conninfo = next();
    else if (a == "--site")
      o.site = next();
    else if (a == "--cli")
      o.cli = next();
    else if (a == "--sqlite-cli")
      o.sqlite_cli = next();
    else if (a == "--psql-cli")
      o.psql_cli = next();
    else if (a == "--psql-args")
      o.psql_args = next();
    else if (a == "--scratch")
      o.scratch = next();
    else if (a == "--only")
      o.only = next();
    else if (a == "--print-sql")
      o.print_sql = true;
    else if (a == "--markdown")
      o.markdown_out = next();
    else if (a == "--runs")
      o.runs = next_int();
    else if (a == "--warmup")
      o.warmup = next_int();
    else if (a == "--ref-runs")
      o.ref_runs = next_int();
    else if (a == "--ref-warmup")
      o.ref_warmup = next_int();
    else if (a == "--cli-runs")
      o.cli_runs = next_int();
    else {
      std::cerr
          << "usage: engine_bench --store DIR [--sqlite DB --pg CONNINFO] "
             "[--site ID] [--runs N] [--warmup N] [--ref-runs N] "
             "[--ref-warmup N] [--cli PASSERELLE] [--sqlite-cli SQLITE3] "
             "[--psql-cli PSQL --psql-args ARGS] [--cli-runs N] "
             "[--scratch DIR] [--only q1,q2] [--markdown FILE] [--print-sql]\n";
      return 2;
    }
  }
  if (o.store.empty() || o.sqlite_db.empty() != o.pg_conninfo.empty() ||
      o.runs == 0) {
    std::cerr << "engine_bench: --store is required, and --sqlite with --pg "
                 "(without both, only Passerelle is timed)\n";
    return 2;
  }
  absl::Status st = Run(o);
  if (!st.ok()) {
    std::cerr << "engine_bench: " << st << "\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace passerelle::bench

int main(int argc, char** argv) { return passerelle::bench::Main(argc, argv); }
