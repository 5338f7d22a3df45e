// Times the engine on mapped queries against the same queries with the
// mapped site codes written out (`codes exact`), and the expansion alone
// (Explain), on a generated RAMQ-like site: ICD-9 claims drawn from the
// GEM's source codes and RAMQ categories, DIN drugs from the DPD table,
// loaded with the real CMS GEM (source=icd9), the DPD and the BDPM tables.
//
// Usage: crosswalk_bench --crosswalks DIR [--patients N] [--runs R]
// Prints, per query, the p50 of each form over R runs and their ratio.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "node/crosswalk_loader.h"
#include "node/engine.h"
#include "query/canonical.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

using SteadyClock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int CountCodes(const v1::Expr& e) {
  int n = 0;
  if (e.has_criterion()) {
    const v1::Criterion& c = e.criterion();
    if (c.has_event()) n += c.event().event().codes_size();
    if (c.has_sequence()) {
      n += c.sequence().first().codes_size() +
           c.sequence().second().codes_size();
    }
  }
  for (const v1::Expr& t : e.and_().terms()) n += CountCodes(t);
  for (const v1::Expr& t : e.or_().terms()) n += CountCodes(t);
  if (e.has_not_()) n += CountCodes(e.not_());
  return n;
}

// The query with every mapped site code written into its code sets and
// `codes exact`: what a researcher would have had to write.
v1::Query Listed(const CrosswalkIndex& index, const v1::Query& q) {
  v1::Query expanded;
  if (!index.Expand(q, "qc", &expanded, nullptr)) expanded = q;
  expanded.set_code_matching(v1::CODE_MATCHING_EXACT);
  return expanded;
}

int Run(int argc, char** argv) {
  std::string dir;
  int64_t patients = 200000, runs = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--crosswalks") dir = argv[i + 1];
    if (flag == "--patients") (void)absl::SimpleAtoi(argv[i + 1], &patients);
    if (flag == "--runs") (void)absl::SimpleAtoi(argv[i + 1], &runs);
  }
  if (dir.empty()) {
    std::cerr << "usage: crosswalk_bench --crosswalks DIR [--patients N] "
                 "[--runs R]\n";
    return 2;
  }
  CrosswalkLoadReport report;
  auto start = SteadyClock::now();
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> set = LoadCrosswalks(
      {dir + "/cms_gem2018_icd9cm_to_icd10cm.csv,source=icd9,name=gem",
       dir + "/hc_dpd_din_to_atc.csv,name=dpd",
       dir + "/fr_bdpm_cip13_to_atc.csv,name=bdpm"},
      InvalidCrosswalkRows::kSkip, &report);
  if (!set.ok()) {
    std::cerr << set.status() << "\n";
    return 1;
  }
  const double load_ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - start)
          .count();
  // Site codes: the GEM's ICD-9 sources and their 3-4 character
  // categories, the DPD's DINs.
  std::vector<std::string> icd9, din;
  for (const CrosswalkTable& t : (*set)->tables()) {
    for (const CrosswalkRow& r : t.rows) {
      if (t.name == "gem") {
        icd9.push_back(r.source_code);
        icd9.push_back(r.source_code.substr(0, 3));
      } else if (t.name == "dpd") {
        din.push_back(r.source_code);
      }
    }
  }
  std::sort(icd9.begin(), icd9.end());
  icd9.erase(std::unique(icd9.begin(), icd9.end()), icd9.end());
  std::mt19937_64 rng(42);
  // Diabetes is common in the claims, so the mapped codes have patients.
  const std::vector<std::string> diabetes = {"250",  "25000", "25002",
                                             "2500", "25040", "25060"};
  const std::vector<std::string> metformin = {"02099233", "02162849",
                                              "02167786"};
  SnapshotBuilder site("qc");
  for (int64_t p = 0; p < patients; ++p) {
    (void)site.AddPerson(p, BirthKey(1930 + rng() % 80, 1 + rng() % 12, 1),
                         static_cast<v1::Sex>(1 + rng() % 2));
  }
  site.FinishPersons();
  for (int64_t p = 0; p < patients; ++p) {
    for (int e = 0; e < 12; ++e) {
      const int32_t day = DaysFromCivil(2012, 1, 1) + rng() % 4000;
      (void)site.BeginEvent(p, day, 0);
      const int kind = rng() % 10;
      if (kind < 5) {
        site.AddEventCode(v1::DOMAIN_CONDITION, "icd9",
                          rng() % 8 == 0 ? diabetes[rng() % diabetes.size()]
                                         : icd9[rng() % icd9.size()]);
      } else if (kind < 7) {
        site.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca",
                          rng() % 10 == 0 ? "E119" : "I10");
      } else {
        site.AddEventCode(v1::DOMAIN_DRUG, "din",
                          rng() % 6 == 0 ? metformin[rng() % metformin.size()]
                                         : din[rng() % din.size()]);
      }
    }
  }
  std::shared_ptr<Snapshot> snap = site.Build("qc-bench", 0);
  snap->crosswalks = *set;
  start = SteadyClock::now();
  std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap);
  const double open_ms =
      std::chrono::duration<double, std::milli>(SteadyClock::now() - start)
          .count();
  CrosswalkIndex::SiteVocabularies vocabs;
  for (const auto& [key, table] : snap->tables) {
    vocabs[key.first].push_back(key.second);
  }
  const CrosswalkIndex index(*set, vocabs);
  std::printf(
      "crosswalks: %lld rows in %zu tables, read in %.0f ms; site: %lld "
      "patients, %lld events; engine open (incl. the target index) %.0f ms\n",
      static_cast<long long>((*set)->rows()), (*set)->tables().size(), load_ms,
      static_cast<long long>(patients),
      static_cast<long long>(snap->meta.events), open_ms);
  const std::vector<std::string> texts = {
      "condition icd10:E11*",
      "condition icd10:E119",
      "drug atc:A10BA02",
      "condition icd10:E11* and drug atc:A10B* group by sex, age_band(10)",
      "condition icd10:E11* in 2018 at least 2 times",
      "condition icd10:E11* before drug atc:A10BA02 within 365 days",
      "condition icd10:I* at least 3 times",
      "drug atc:A10*",
  };
  std::printf("%-70s %10s %10s %6s %10s %8s\n", "query", "mapped", "listed",
              "ratio", "explain", "codes");
  for (const std::string& text : texts) {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text + " as of 2024-01-01");
    if (!q.ok()) {
      std::cerr << q.status() << "\n";
      return 1;
    }
    const v1::Query listed = Listed(index, *q);
    const int added = CountCodes(listed.where());
    std::vector<double> mapped_ms, listed_ms, explain_ms;
    int64_t a = -1, b2 = -2;
    for (int64_t r = 0; r < runs + 5; ++r) {
      auto t0 = SteadyClock::now();
      auto cells = engine->Count(*q);
      auto t1 = SteadyClock::now();
      auto cells2 = engine->Count(listed);
      auto t2 = SteadyClock::now();
      v1::SiteExpansion e = engine->Explain(*q);
      auto t3 = SteadyClock::now();
      if (!cells.ok() || !cells2.ok()) {
        std::cerr << "count failed\n";
        return 1;
      }
      a = (*cells)[0].count();
      b2 = (*cells2)[0].count();
      if (r < 5) continue;  // Warm-up.
      mapped_ms.push_back(
          std::chrono::duration<double, std::milli>(t1 - t0).count());
      listed_ms.push_back(
          std::chrono::duration<double, std::milli>(t2 - t1).count());
      explain_ms.push_back(
          std::chrono::duration<double, std::milli>(t3 - t2).count());
    }
    if (a != b2) {
      std::cerr << "mismatch on " << text << ": " << a << " vs " << b2 << "\n";
      return 1;
    }
    const double m = Median(mapped_ms), l = Median(listed_ms);
    std::printf("%-70s %8.3fms %8.3fms %6.2f %8.3fms %8d\n", text.c_str(), m, l,
                l > 0 ? m / l : 0, Median(explain_ms), added);
  }
  return 0;
}

}  // namespace
}  // namespace passerelle::node

int main(int argc, char** argv) { return passerelle::node::Run(argc, argv); }
