// Sensitivity, black-box (../shared/docs/privacy.md requirement 1): two
// datasets that differ by one patient give cells whose L1 distance is at most
// 1, for every query. Small random datasets (some patients with events dated
// decades after the reference date, some born after it), random queries from
// the differential generator (node/testing/query_generator.h) without
// `as of`, so that ages are counted on the engine's own date; every patient
// is removed in turn, the one holding the latest event included. A reference
// date taken from the data (its latest event) fails this at once: removing
// the patient with the far-future event moves every age.
//
// Replay one dataset: PASSERELLE_SENSITIVITY_SEED=<seed>.
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "node/engine.h"
#include "node/snapshot.h"
#include "node/testing/query_generator.h"
#include "node/testing/rng.h"
#include "node/testing/sql_reference.h"
#include "query/validate.h"

namespace passerelle::node {
namespace {

using difftest::DataProfile;
using difftest::GeneratedQuery;
using difftest::QueryGenerator;

struct Code {
  v1::Domain domain;
  const char* vocabulary;  // As indexed.
  const char* code;        // Normalised.
  bool has_value;
};

// Codes as the loaders index them, a few per domain, some sharing a prefix.
constexpr Code kCodes[] = {
    {v1::DOMAIN_CONDITION, "cim10", "E119", false},
    {v1::DOMAIN_CONDITION, "cim10", "E110", false},
    {v1::DOMAIN_CONDITION, "icd10cm", "E1165", false},
    {v1::DOMAIN_CONDITION, "cim10", "I10", false},
    {v1::DOMAIN_CONDITION, "icd9cm", "25000", false},
    {v1::DOMAIN_DRUG, "atc", "A10BA02", false},
    {v1::DOMAIN_DRUG, "atc", "C09AA05", false},
    {v1::DOMAIN_PROCEDURE, "ccam", "DEQP003", false},
    {v1::DOMAIN_MEASUREMENT, "loinc", "4548-4", true},
    {v1::DOMAIN_OBSERVATION, "snomed", "77176002", true},
    {v1::DOMAIN_VISIT, "concept", "9202", false},
};

struct Person {
  int64_t id;
  int32_t birth_key;
  v1::Sex sex;
  int32_t death_day;  // INT32_MIN: alive.
};

struct Event {
  int64_t person;
  int code;  // Into kCodes.
  int32_t day;
  double value;
};

struct Dataset {
  std::vector<Person> persons;
  std::vector<Event> events;
  int64_t latest_holder = -1;  // The person with the latest event.
};

// The engines' date for queries without `as of`.
constexpr int kRefYear = 2026, kRefMonth = 12, kRefDay = 7;

Dataset RandomDataset(uint64_t seed, int persons) {
  std::mt19937_64 rng(seed);
  auto below = [&](int n) { return static_cast<int>(rng() % n); };
  Dataset d;
  for (int i = 0; i < persons; ++i) {
    Person p;
    p.id = 100 + i;
    // Births from 1915 to 2034: some after the reference date (no age).
    const int year = 1915 + below(120);
    if (below(4) == 0) {
      p.birth_key = BirthKey(year, 0, 0);  // Year only: 1 July.
    } else if (below(15) == 0) {
      // Around the reference date's birthday: a day before, on, after.
      p.birth_key = BirthKey(year, kRefMonth, kRefDay - 1 + below(3));
    } else {
      p.birth_key = BirthKey(year, 1 + below(12), 1 + below(28));
    }
    p.sex = static_cast<v1::Sex>(1 + below(4));
    p.death_day =
        below(8) == 0 ? DaysFromCivil(2012 + below(14), 3, 1) : INT32_MIN;
    d.persons.push_back(p);
    const int n = below(7);
    for (int e = 0; e < n; ++e) {
      Event ev;
      ev.person = p.id;
      ev.code = below(static_cast<int>(std::size(kCodes)));
      ev.day = DaysFromCivil(2010, 1, 1) + below(15 * 365);
      if (below(12) == 0) {
        // Mis-dated or date-shifted: years to a century after the reference
        // date.
        ev.day = DaysFromCivil(2027 + below(100), 1 + below(12), 1 + below(28));
      }
      ev.value = kCodes[ev.code].has_value ? 4 + below(60) / 4.0 : NAN;
      d.events.push_back(ev);
    }
  }
  // One patient holds the latest event by far (a mis-dated 2131 record).
  Event far;
  far.person = d.persons[below(persons)].id;
  far.code = 0;
  far.day = DaysFromCivil(2131, 6, 1);
  far.value = NAN;
  d.events.push_back(far);
  d.latest_holder = far.person;
  return d;
}

// The snapshot of `d` without person `without` (-1: everyone).
std::shared_ptr<Snapshot> Build(const Dataset& d, int64_t without) {
  SnapshotBuilder b("fr");
  for (const Person& p : d.persons) {
    if (p.id == without) continue;
    EXPECT_TRUE(b.AddPerson(p.id, p.birth_key, p.sex).ok());
  }
  b.FinishPersons();
  for (const Person& p : d.persons) {
    if (p.id == without || p.death_day == INT32_MIN) continue;
    EXPECT_TRUE(b.MarkDeceased(p.id, p.death_day).ok());
  }
  for (const Event& e : d.events) {
    if (e.person == without) continue;
    EXPECT_TRUE(b.BeginEvent(e.person, e.day, e.value).ok());
    const Code& c = kCodes[e.code];
    b.AddEventCode(c.domain, c.vocabulary, c.code);
  }
  return b.Build(absl::StrCat("fr-", without), 0);
}

std::string IsoDay(int32_t day) {
  int y, m, dd;
  CivilFromDays(day, &y, &m, &dd);
  return absl::StrFormat("%04d-%02d-%02d", y, m, dd);
}

// What the generator needs to draw queries that match something.
DataProfile Profile(const Dataset& d) {
  DataProfile profile;
  std::map<int, std::set<int64_t>> patients;
  std::map<int, std::set<std::string>> values;
  int32_t lo = INT32_MAX, hi = INT32_MIN;
  for (const Event& e : d.events) {
    patients[e.code].insert(e.person);
    if (!std::isnan(e.value)) values[e.code].insert(absl::StrCat(e.value));
    lo = std::min(lo, e.day);
    hi = std::max(hi, e.day);
  }
  for (const auto& [i, who] : patients) {
    difftest::ProfileCode& c = profile.codes.emplace_back();
    c.domain = kCodes[i].domain;
    c.vocabulary = kCodes[i].vocabulary;
    c.code = kCodes[i].code;
    c.patients = static_cast<int64_t>(who.size());
    c.values.assign(values[i].begin(), values[i].end());
  }
  profile.min_date = IsoDay(lo);
  // Windows and `as of` dates are drawn up to here: the ordinary data, not
  // the far-future record.
  profile.max_date = "2026-12-31";
  profile.min_birth_year = 1915;
  profile.max_birth_year = 2034;
  profile.persons = static_cast<int64_t>(d.persons.size());
  profile.events = static_cast<int64_t>(d.events.size());
  return profile;
}

std::vector<int64_t> Counts(const CohortEngine& engine, const v1::Query& q) {
  absl::StatusOr<std::vector<v1::Cell>> cells = engine.Count(q);
  EXPECT_TRUE(cells.ok()) << cells.status();
  std::vector<int64_t> out;
  if (cells.ok()) {
    for (const v1::Cell& c : *cells) out.push_back(c.count());
  }
  return out;
}

TEST(SensitivityTest, RemovingAnyOnePatientMovesTheCellsByAtMostOne) {
  constexpr int kDatasets = 10, kPersons = 32, kQueries = 48;
  FakeClock clock(
      absl::FromCivil(absl::CivilSecond(kRefYear, kRefMonth, kRefDay, 13, 0, 0),
                      absl::UTCTimeZone()));
  IndexEngineOptions options;
  options.clock = &clock;
  uint64_t replay = 0;
  const char* env = std::getenv("PASSERELLE_SENSITIVITY_SEED");
  const bool replaying = env != nullptr && absl::SimpleAtoi(env, &replay);
  int age_queries = 0, moved_by_one = 0, checked = 0;
  for (int k = 0; k < (replaying ? 1 : kDatasets); ++k) {
    const uint64_t seed = replaying ? replay : difftest::MixSeed(18001, k);
    SCOPED_TRACE(absl::StrCat("dataset seed ", seed,
                              " (replay: PASSERELLE_SENSITIVITY_SEED=", seed,
                              ")"));
    const Dataset d = RandomDataset(seed, kPersons);
    const QueryGenerator generator(Profile(d));
    std::vector<GeneratedQuery> queries;
    for (int i = 0; i < kQueries; ++i) {
      GeneratedQuery q = generator.Generate(difftest::MixSeed(seed, i));
      q.ast.clear_as_of();  // The engine's own date.
      ASSERT_TRUE(query::ValidateQuery(q.ast).ok()) << q.text;
      age_queries += q.features.count("age_between") +
                         q.features.count("age_cmp") +
                         q.features.count("group_age_band") +
                         q.features.count("group_both") >
                     0;
      queries.push_back(std::move(q));
    }
    const std::unique_ptr<CohortEngine> whole =
        NewIndexEngine(Build(d, -1), options);
    std::vector<std::vector<int64_t>> full;
    for (const GeneratedQuery& q : queries)
      full.push_back(Counts(*whole, q.ast));
    bool removed_latest = false;
    for (const Person& p : d.persons) {
      removed_latest |= p.id == d.latest_holder;
      const std::unique_ptr<CohortEngine> neighbour =
          NewIndexEngine(Build(d, p.id), options);
      for (size_t i = 0; i < queries.size(); ++i) {
        const std::vector<int64_t> cells = Counts(*neighbour, queries[i].ast);
        ASSERT_EQ(cells.size(), full[i].size()) << queries[i].text;
        int64_t l1 = 0;
        for (size_t c = 0; c < cells.size(); ++c) {
          l1 += std::llabs(cells[c] - full[i][c]);
        }
        ++checked;
        moved_by_one += l1 == 1;
        ASSERT_LE(l1, 1) << "removing patient " << p.id
                         << (p.id == d.latest_holder
                                 ? " (who holds the latest event)"
                                 : "")
                         << " moves the cells of this query by " << l1
                         << " in L1 (no `as of`): " << queries[i].text;
      }
    }
    EXPECT_TRUE(removed_latest);
  }
  // Not vacuous: ages were queried, and removals did change counts.
  EXPECT_GE(age_queries, replaying ? 1 : kDatasets * kQueries / 10);
  EXPECT_GE(moved_by_one, checked / 20);
}

}  // namespace
}  // namespace passerelle::node
