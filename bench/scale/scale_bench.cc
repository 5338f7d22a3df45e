// Opens a node store and times queries in process: the open (store ->
// snapshot -> engine), the resident memory after it, and min / p50 / p99 of
// each query over --runs runs after --warmup runs.
//
// Usage: scale_bench --store DIR [--runs 30] [--warmup 5]
//                    [--sequence-threads-from N] [--sequence-timeline-mib N]
//                    [--query TEXT]...
// --sequence-threads-from sets IndexEngineOptions::parallel_sequence_candidates
// (0: every sequence on one thread), --sequence-timeline-mib its
// sequence_timeline_budget_bytes in MiB (0: no timelines, the code-by-code
// paths).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "node/engine.h"
#include "node/store.h"
#include "query/parser.h"
#include "query/validate.h"

namespace {

using SteadyClock = std::chrono::steady_clock;

double Ms(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// VmRSS / VmHWM of this process, in MiB.
std::pair<double, double> Resident() {
  std::ifstream in("/proc/self/status");
  std::string line;
  double rss = 0, hwm = 0;
  while (std::getline(in, line)) {
    long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %ld kB", &kb) == 1) rss = kb / 1024.0;
    if (std::sscanf(line.c_str(), "VmHWM: %ld kB", &kb) == 1) hwm = kb / 1024.0;
  }
  return {rss, hwm};
}

// CPU time (user + system) of this process so far, in seconds: on a shared
// machine the wall time of the open mostly measures the wait for a core.
double CpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

// The targets of ../shared/docs/performance.md: 3-criterion count, sex x 11
// age bands, a temporal sequence; then the engine benchmark's other shapes.
const std::pair<const char*, const char*> kDefaultQueries[] = {
    {"count3",
     "condition icd10:E11* and sex = female and age between 40 and 65"},
    {"count3_by",
     "condition icd10:E11* and sex = male and birth_year between 1940 and "
     "1960"},
    {"breakdown_sex_x_11_bands",
     "condition icd10:E11* group by sex, age_band(10)"},
    {"sequence",
     "condition icd10:E11* before drug atc:A10BA02 within 365 days"},
    {"or_sets",
     "condition [icd10:I10, icd10:I11*, icd10:I15*] or drug atc:C09*"},
    {"not", "condition icd10:E11* and not drug atc:A10*"},
    {"at_least", "condition icd10:I10* at least 3 times"},
};

}  // namespace

int main(int argc, char** argv) {
  using namespace passerelle;
  std::string store_dir;
  int runs = 30, warmup = 5;
  node::IndexEngineOptions options;
  std::vector<std::pair<std::string, std::string>> queries;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--store") {
      store_dir = next();
    } else if (a == "--runs" || a == "--warmup") {
      int v = 0;
      if (!absl::SimpleAtoi(next(), &v) || v < (a == "--runs" ? 1 : 0)) {
        std::cerr << a << ": bad number\n";
        return 2;
      }
      (a == "--runs" ? runs : warmup) = v;
    } else if (a == "--sequence-threads-from") {
      int v = 0;
      if (!absl::SimpleAtoi(next(), &v) || v < 0) {
        std::cerr << a << ": bad number\n";
        return 2;
      }
      options.parallel_sequence_candidates = static_cast<size_t>(v);
    } else if (a == "--sequence-timeline-mib") {
      int v = 0;
      if (!absl::SimpleAtoi(next(), &v) || v < 0) {
        std::cerr << a << ": bad number\n";
        return 2;
      }
      options.sequence_timeline_budget_bytes = static_cast<size_t>(v) << 20;
    } else if (a == "--query") {
      const std::string q = next();
      queries.emplace_back(absl::StrFormat("q%d", queries.size() + 1), q);
    } else {
      std::cerr << "usage: scale_bench --store DIR [--runs N] [--warmup N] "
                   "[--sequence-threads-from N] [--sequence-timeline-mib N] "
                   "[--query TEXT]...\n";
      return 2;
    }
  }
  if (store_dir.empty()) {
    std::cerr << "scale_bench: --store is required\n";
    return 2;
  }
  if (queries.empty()) {
    for (const auto& [name, text] : kDefaultQueries)
      queries.emplace_back(name, text);
  }
  const auto [rss0, hwm0] = Resident();
  const double cpu0 = CpuSeconds();
  const SteadyClock::time_point t0 = SteadyClock::now();
  auto store = node::NodeStore::Open(store_dir);
  if (!store.ok()) {
    std::cerr << store.status() << "\n";
    return 1;
  }
  const SteadyClock::time_point t1 = SteadyClock::now();
  auto snap = (*store)->LoadCurrent();
  if (!snap.ok()) {
    std::cerr << snap.status() << "\n";
    return 1;
  }
  const SteadyClock::time_point t2 = SteadyClock::now();
  std::unique_ptr<node::CohortEngine> engine =
      node::NewIndexEngine(*snap, options);
  const SteadyClock::time_point t3 = SteadyClock::now();
  const double cpu_open = CpuSeconds() - cpu0;
  store->reset();  // No background RocksDB work while timing.
  const node::SnapshotMeta meta = engine->meta();
  snap->reset();
  const auto [rss, hwm] = Resident();
  std::cout << absl::StrFormat(
      "store %s: site %s, %d persons, %d events\n"
      "open: store %.0f ms + snapshot %.0f ms + engine %.0f ms = %.2f s "
      "(CPU %.2f s, load %s)\n"
      "resident after open: VmRSS %.0f MiB, VmHWM %.0f MiB (before: %.0f / "
      "%.0f)\n",
      store_dir, meta.site, meta.persons, meta.events, Ms(t0, t1), Ms(t1, t2),
      Ms(t2, t3), Ms(t0, t3) / 1000, cpu_open, LoadAverage(), rss, hwm, rss0,
      hwm0);
  // "first ms": the first run, which also builds what the engine builds on
  // first use (a sequence's timelines).
  std::cout << absl::StrFormat("%-26s %10s %10s %10s %10s %10s  %s\n", "query",
                               "patients", "first ms", "min ms", "p50 ms",
                               "p99 ms", "text");
  int failures = 0;
  for (const auto& [name, text] : queries) {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text);
    absl::Status valid = q.ok() ? query::ValidateQuery(*q) : q.status();
    if (!valid.ok()) {
      std::cerr << name << ": " << valid << "\n";
      ++failures;
      continue;
    }
    std::vector<double> times;
    double first = 0;
    int64_t total = 0;
    for (int r = 0; r < warmup + runs; ++r) {
      const SteadyClock::time_point a = SteadyClock::now();
      absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(*q);
      const SteadyClock::time_point b = SteadyClock::now();
      if (!cells.ok()) {
        std::cerr << name << ": " << cells.status() << "\n";
        ++failures;
        break;
      }
      if (r == 0) first = Ms(a, b);
      if (r >= warmup) times.push_back(Ms(a, b));
      total = 0;
      for (const v1::Cell& c : *cells) total += c.count();
    }
    if (times.empty()) continue;
    std::cout << absl::StrFormat("%-26s %10d %10.3f %10.3f %10.3f %10.3f  %s\n",
                                 name, total, first, Percentile(times, 0),
                                 Percentile(times, 0.5),
                                 Percentile(times, 0.99), text);
  }
  const auto [rss_end, hwm_end] = Resident();
  std::cout << absl::StrFormat(
      "resident after queries: VmRSS %.0f MiB, VmHWM %.0f MiB (load %s)\n",
      rss_end, hwm_end, LoadAverage());
  return failures == 0 ? 0 : 1;
}
