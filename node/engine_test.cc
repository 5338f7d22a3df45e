// The index engine against a straightforward per-patient reference evaluator
// on random data, plus hand-checked cases.
#include "node/engine.h"

#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

struct RawPerson {
  int64_t id;
  int year, month, day;  // month/day 0: year only.
  v1::Sex sex;
  bool deceased;
};

struct RawEvent {
  int64_t person;
  v1::Domain domain;
  std::string vocab;
  std::string code;
  int32_t day;
  double value;
};

struct Dataset {
  std::vector<RawPerson> persons;
  std::vector<RawEvent> events;
};

Dataset RandomDataset(uint32_t seed, int n_persons) {
  std::mt19937 rng(seed);
  Dataset d;
  const char* icd[] = {"E119", "E110", "E10", "I10", "I251", "J45", "C509"};
  const char* atc[] = {"A10BA02", "A10AB01", "C09AA05", "N02BE01"};
  for (int i = 0; i < n_persons; ++i) {
    RawPerson p;
    p.id = 1000 + i * 7 - (i % 3 == 0 ? 50000 : 0);  // Some negative ids.
    p.year = 1920 + static_cast<int>(rng() % 100);
    const bool full = rng() % 4 != 0;
    p.month = full ? 1 + static_cast<int>(rng() % 12) : 0;
    p.day = full ? 1 + static_cast<int>(rng() % 28) : 0;
    if (full && rng() % 20 == 0) {
      p.month = 2;
      p.day = 29;
      p.year = 1960;  // A leap-day birthday.
    }
    p.sex = static_cast<v1::Sex>(1 + rng() % 4);
    p.deceased = rng() % 10 == 0;
    d.persons.push_back(p);
    const int n_events = static_cast<int>(rng() % 12);
    for (int e = 0; e < n_events; ++e) {
      RawEvent ev;
      ev.person = p.id;
      ev.day = DaysFromCivil(2015, 1, 1) + static_cast<int>(rng() % 2000);
      ev.value = std::numeric_limits<double>::quiet_NaN();
      switch (rng() % 4) {
        case 0:
        case 1:
          ev.domain = v1::DOMAIN_CONDITION;
          ev.vocab = rng() % 2 ? "icd10cm" : "cim10";
          ev.code = icd[rng() % 7];
          break;
        case 2:
          ev.domain = v1::DOMAIN_DRUG;
          ev.vocab = "atc";
          ev.code = atc[rng() % 4];
          break;
        default:
          ev.domain = v1::DOMAIN_MEASUREMENT;
          ev.vocab = "loinc";
          ev.code = "4548-4";
          if (rng() % 5 != 0) ev.value = 4.0 + (rng() % 80) / 10.0;
      }
      d.events.push_back(ev);
    }
  }
  return d;
}

std::shared_ptr<Snapshot> BuildSnapshot(const Dataset& d) {
  SnapshotBuilder b("fr");
  for (const RawPerson& p : d.persons) {
    EXPECT_TRUE(
        b.AddPerson(p.id, BirthKey(p.year, p.month, p.day), p.sex).ok());
  }
  b.FinishPersons();
  for (const RawPerson& p : d.persons) {
    if (p.deceased) {
      EXPECT_TRUE(b.MarkDeceased(p.id, DaysFromCivil(2020, 1, 1)).ok());
    }
  }
  for (const RawEvent& e : d.events) {
    EXPECT_TRUE(b.BeginEvent(e.person, e.day, e.value).ok());
    b.AddEventCode(e.domain, e.vocab, e.code);
  }
  return b.Build("fr-test-1", 0);
}

// --- The reference: direct evaluation per patient over the raw rows. ---

class Reference {
 public:
  explicit Reference(const Dataset& d) : d_(d) {
    for (const RawEvent& e : d.events) max_day_ = std::max(max_day_, e.day);
  }

  // The date the tests give a query without `as of` (pinned into the query,
  // as the gateway does): the latest event date, so that ages span the data.
  v1::Date DefaultDate() const {
    int y, m, d;
    CivilFromDays(max_day_, &y, &m, &d);
    v1::Date date;
    date.set_year(y);
    date.set_month(m);
    date.set_day(d);
    return date;
  }

  std::vector<int64_t> Count(const v1::Query& q,
                             const std::vector<v1::CellKey>& keys) const {
    int ry, rm, rd;
    if (q.has_as_of()) {
      ry = q.as_of().year();
      rm = q.as_of().month();
      rd = q.as_of().day();
    } else {
      CivilFromDays(max_day_, &ry, &rm, &rd);
    }
    std::vector<int64_t> counts(keys.size(), 0);
    for (const RawPerson& p : d_.persons) {
      const int age = Age(p, ry, rm, rd);
      if (!Eval(q.where(), p, age)) continue;
      for (size_t k = 0; k < keys.size(); ++k) {
        bool in = true;
        for (int i = 0; i < keys[k].values_size(); ++i) {
          const v1::DimensionValue& v = keys[k].values(i);
          if (v.dimension() == "sex") {
            in &= v.value() == query::SexLabel(p.sex);
          } else if (v.dimension() == "age_band") {
            const int w = q.group_by(i).width();
            in &= age >= 0 && query::AgeBandLabel(query::AgeBandIndex(age, w),
                                                  w) == v.value();
          }
        }
        if (in) ++counts[k];
      }
    }
    return counts;
  }

 private:
  static int Age(const RawPerson& p, int ry, int rm, int rd) {
    const int m = p.month ? p.month : 7, d = p.month ? p.day : 1;
    return ry - p.year - ((rm * 100 + rd) < (m * 100 + d) ? 1 : 0);
  }

  static bool Cmp(double v, v1::Comparison op, double n) {
    switch (op) {
      case v1::COMPARISON_EQ:
        return v == n;
      case v1::COMPARISON_LT:
        return v < n;
      case v1::COMPARISON_LE:
        return v <= n;
      case v1::COMPARISON_GT:
        return v > n;
      case v1::COMPARISON_GE:
        return v >= n;
      default:
        return false;
    }
  }

  static bool Matches(const v1::EventSpec& s, const RawEvent& e) {
    if (e.domain != s.domain()) return false;
    bool code_ok = false;
    for (const v1::Code& c : s.codes()) {
      if (!query::VocabularyMatches(c.vocabulary(), e.vocab)) continue;
      code_ok |=
          c.prefix() ? e.code.rfind(c.code(), 0) == 0 : e.code == c.code();
    }
    if (!code_ok) return false;
    if (s.has_value()) {
      return !std::isnan(e.value) &&
             Cmp(e.value, s.value().op(), s.value().number());
    }
    return true;
  }

  bool Eval(const v1::Expr& x, const RawPerson& p, int age) const {
    switch (x.kind_case()) {
      case v1::Expr::kAnd:
        for (const auto& t : x.and_().terms())
          if (!Eval(t, p, age)) return false;
        return true;
      case v1::Expr::kOr:
        for (const auto& t : x.or_().terms())
          if (Eval(t, p, age)) return true;
        return false;
      case v1::Expr::kNot:
        return !Eval(x.not_(), p, age);
      default:
        break;
    }
    const v1::Criterion& c = x.criterion();
    switch (c.kind_case()) {
      case v1::Criterion::kSex:
        return p.sex == c.sex();
      case v1::Criterion::kBirthYear:
        return (!c.birth_year().has_min() || p.year >= c.birth_year().min()) &&
               (!c.birth_year().has_max() || p.year <= c.birth_year().max());
      case v1::Criterion::kAge:
        return (!c.age().has_min() || age >= c.age().min()) &&
               (!c.age().has_max() || age <= c.age().max());
      case v1::Criterion::kDeceased:
        return p.deceased;
      case v1::Criterion::kEvent: {
        const auto& ev = c.event();
        int n = 0;
        for (const RawEvent& e : d_.events) {
          if (e.person != p.id || !Matches(ev.event(), e)) continue;
          if (ev.has_window()) {
            const auto& w = ev.window();
            if (e.day < DaysFromCivil(w.start().year(), w.start().month(),
                                      w.start().day()) ||
                e.day > DaysFromCivil(w.end().year(), w.end().month(),
                                      w.end().day())) {
              continue;
            }
          }
          ++n;
        }
        return n >= std::max(1, ev.min_count());
      }
      case v1::Criterion::kSequence: {
        const auto& s = c.sequence();
        for (const RawEvent& a : d_.events) {
          if (a.person != p.id || !Matches(s.first(), a)) continue;
          for (const RawEvent& b : d_.events) {
            if (b.person != p.id || !Matches(s.second(), b)) continue;
            const int gap = b.day - a.day;
            if (gap >= 0 && (!s.has_within() || gap <= s.within_days()))
              return true;
          }
        }
        return false;
      }
      default:
        return false;
    }
  }

  const Dataset& d_;
  int32_t max_day_ = 0;
};

const char* kQueries[] = {
    "condition icd10:E11*",
    "condition icd10cm:E11*",
    "condition cim10:E119",
    "condition icd10:E11.9 or drug atc:A10BA02",
    "condition icd10:E11* and sex = female and age between 40 and 65",
    "condition [icd10:E11*, icd10:E10*] and not drug atc:A10*",
    "condition icd10:I10* at least 2 times",
    "condition [icd10:E11*, icd10cm:E119] at least 3 times",
    "condition icd10:E11* before drug atc:A10BA02 within 365 days group by sex",
    "condition icd10:E11* before drug atc:A10BA02",
    "drug atc:A10BA02 before condition icd10:I10 within 0 days",
    "measurement loinc:4548-4 value >= 7 in 2017 group by age_band(10), sex",
    "measurement loinc:4548-4 value < 6.5 at least 2 times",
    "condition icd10:J45 between 2016-03-01 and 2017-02-28",
    "birth_year < 1950 group by sex",
    "birth_year between 1960 and 1960 or deceased",
    "age between 0 and 150 group by age_band(5)",
    "not (sex = male or sex = female) group by age_band(10)",
    "deceased and not condition icd10:C50* group by sex, age_band(20)",
    "age between 56 and 56 as of 2016-02-29",
    "age between 60 and 61 group by age_band(1) as of 2020-02-28",
    "sex = other or sex = unknown",
    "condition icd10:Z99*",
    // "At least N times" of one code: repeat bitmaps up to 8, a scan above;
    // two codes of a set, or a window or value condition, always a scan.
    "condition cim10:I10 at least 1 times",
    "condition cim10:I10 at least 2 times",
    "condition icd10:I10* at least 3 times and sex = female",
    "drug atc:A10BA02 at least 4 times",
    "condition [cim10:I10, cim10:I10] at least 3 times",
    "condition [cim10:I10, icd10cm:I10] at least 3 times",
    "condition cim10:I10 at least 8 times",
    "condition cim10:I10 at least 9 times",
    "condition icd10:I10 between 2016-01-01 and 2018-12-31 at least 3 times",
};

// Counts `text` with `engine` and with the reference, for every cell of the
// query's domain; the engine must answer each cell once, in order.
void CountBoth(const CohortEngine& engine, const Reference& ref,
               const std::string& text, std::vector<v1::Cell>* cells,
               std::vector<v1::CellKey>* keys, std::vector<int64_t>* expected) {
  absl::StatusOr<v1::Query> q = query::ParseQuery(text);
  ASSERT_TRUE(q.ok()) << text << ": " << q.status();
  if (!q->has_as_of()) *q->mutable_as_of() = ref.DefaultDate();
  absl::StatusOr<std::vector<v1::Cell>> counted = engine.Count(*q);
  ASSERT_TRUE(counted.ok()) << text << ": " << counted.status();
  *keys = query::EnumerateCells(*q, {"fr"});
  ASSERT_EQ(counted->size(), keys->size()) << text;
  *cells = *std::move(counted);
  *expected = ref.Count(*q, *keys);
}

TEST(IndexEngineTest, MatchesReferenceOnRandomData) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    Dataset d = RandomDataset(seed, 400);
    // Seed 4: temporal sequences split over threads from 10 candidates on.
    IndexEngineOptions options;
    if (seed == 4) options.parallel_sequence_candidates = 10;
    std::unique_ptr<CohortEngine> engine =
        NewIndexEngine(BuildSnapshot(d), options);
    Reference ref(d);
    for (const char* text : kQueries) {
      std::vector<v1::Cell> cells;
      std::vector<v1::CellKey> keys;
      std::vector<int64_t> expected;
      ASSERT_NO_FATAL_FAILURE(
          CountBoth(*engine, ref, text, &cells, &keys, &expected));
      for (size_t i = 0; i < keys.size(); ++i) {
        EXPECT_EQ(cells[i].key().DebugString(), keys[i].DebugString()) << text;
        EXPECT_EQ(cells[i].count(), expected[i])
            << "seed " << seed << " query: " << text << " cell "
            << keys[i].ShortDebugString();
      }
    }
  }
}

// Many events of two codes per person: "at least N times" for N from 1 to
// 12 of one code (repeat bitmaps up to 8, then a scan) and of a prefix
// spanning both (always a merge), against the reference.
TEST(IndexEngineTest, AtLeastNTimesMatchesReferenceWithManyRepeats) {
  for (uint32_t seed : {5u, 6u}) {
    Dataset d = RandomDataset(seed, 300);
    std::mt19937 rng(seed + 200);
    d.events.clear();
    for (const RawPerson& p : d.persons) {
      const int n = static_cast<int>(rng() % 30);
      for (int e = 0; e < n; ++e) {
        RawEvent ev;
        ev.person = p.id;
        ev.day = DaysFromCivil(2015, 1, 1) + static_cast<int>(rng() % 400);
        ev.value = std::numeric_limits<double>::quiet_NaN();
        ev.domain = v1::DOMAIN_CONDITION;
        ev.vocab = "cim10";
        ev.code = rng() % 3 ? "I10" : "I110";
        d.events.push_back(ev);
      }
    }
    std::unique_ptr<CohortEngine> engine = NewIndexEngine(BuildSnapshot(d));
    Reference ref(d);
    for (int n = 1; n <= 12; ++n) {
      for (const std::string code : {"cim10:I10", "icd10:I1*"}) {
        const std::string text =
            absl::StrCat("condition ", code, " at least ", n, " times");
        absl::StatusOr<v1::Query> q = query::ParseQuery(text);
        ASSERT_TRUE(q.ok()) << text << ": " << q.status();
        absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(*q);
        ASSERT_TRUE(cells.ok()) << text;
        std::vector<v1::CellKey> keys = query::EnumerateCells(*q, {"fr"});
        const std::vector<int64_t> expected = ref.Count(*q, keys);
        ASSERT_EQ(cells->size(), 1u);
        EXPECT_EQ((*cells)[0].count(), expected[0]) << text;
        if (n == 3) {
          EXPECT_GT(expected[0], 0) << text;  // Not vacuous.
        }
      }
    }
  }
}

// The same persons with condition codes spread over 40 codes of one prefix
// (so a sequence's first side has more codes than the engine walks with a
// cursor each) and two drugs.
Dataset WideDataset(uint32_t seed, int n_persons) {
  Dataset d = RandomDataset(seed, n_persons);
  std::mt19937 rng(seed + 100);
  for (RawEvent& e : d.events) {
    e.value = std::numeric_limits<double>::quiet_NaN();
    if (rng() % 3 != 0) {
      e.domain = v1::DOMAIN_CONDITION;
      e.vocab = "cim10";
      const unsigned c = rng() % 40;
      e.code = absl::StrCat("E1", c / 10, c % 10);
    } else {
      e.domain = v1::DOMAIN_DRUG;
      e.vocab = "atc";
      e.code = rng() % 2 ? "A10BA02" : "A10BB01";
    }
  }
  return d;
}

TEST(IndexEngineTest, WideCodeSetsMatchReference) {
  const char* queries[] = {
      "condition icd10:E1* before drug atc:A10BA02 within 90 days",
      "condition icd10:E1* before drug atc:A10BA02",
      "condition icd10:E12* before drug atc:A10BA02 within 30 days",
      "drug atc:A10B* before condition icd10:E1* within 30 days",
      "drug atc:A10BA02 before condition icd10:E10*",
      "condition icd10:E1* at least 3 times",
      "condition icd10:E105 at least 2 times",
      "condition icd10:E13* at least 2 times group by age_band(10), sex",
      "condition icd10:E1* group by sex",
      "condition icd10:E1* group by sex, age_band(25)",
  };
  // Each seed twice: the second time with temporal sequences split over
  // threads from 10 candidates on.
  for (uint32_t run : {0u, 1u, 2u, 3u}) {
    const uint32_t seed = 11 + run % 2;
    Dataset d = WideDataset(seed, 500);
    IndexEngineOptions options;
    if (run >= 2) options.parallel_sequence_candidates = 10;
    std::unique_ptr<CohortEngine> engine =
        NewIndexEngine(BuildSnapshot(d), options);
    Reference ref(d);
    for (const char* text : queries) {
      std::vector<v1::Cell> cells;
      std::vector<v1::CellKey> keys;
      std::vector<int64_t> expected;
      ASSERT_NO_FATAL_FAILURE(
          CountBoth(*engine, ref, text, &cells, &keys, &expected));
      int64_t total = 0;
      for (size_t i = 0; i < keys.size(); ++i) {
        EXPECT_EQ(cells[i].count(), expected[i])
            << "seed " << seed << " query: " << text << " cell "
            << keys[i].ShortDebugString();
        total += expected[i];
      }
      EXPECT_GT(total, 0) << text;  // Every query selects someone.
    }
  }
}

// The engine with sequence timelines (the default), without them (the code-
// by-code paths) and with a budget that allows only small ones: every count
// equal to the reference's.
std::vector<IndexEngineOptions> TimelineVariants() {
  std::vector<IndexEngineOptions> variants(4);
  variants[1].sequence_timeline_budget_bytes = 0;
  variants[2].sequence_timeline_budget_bytes = 4096;
  variants[3].parallel_sequence_candidates = 3;  // Threads, with timelines.
  return variants;
}

void ExpectMatchesReference(const Dataset& d, const char* const* queries,
                            size_t n_queries, const std::string& what) {
  const std::shared_ptr<Snapshot> snap = BuildSnapshot(d);
  Reference ref(d);
  const std::vector<IndexEngineOptions> variants = TimelineVariants();
  for (size_t v = 0; v < variants.size(); ++v) {
    std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap, variants[v]);
    // Twice each: the first run builds the timelines, the second reads them.
    for (int round = 0; round < 2; ++round) {
      for (size_t i = 0; i < n_queries; ++i) {
        const char* text = queries[i];
        std::vector<v1::Cell> cells;
        std::vector<v1::CellKey> keys;
        std::vector<int64_t> expected;
        ASSERT_NO_FATAL_FAILURE(
            CountBoth(*engine, ref, text, &cells, &keys, &expected));
        for (size_t k = 0; k < keys.size(); ++k) {
          EXPECT_EQ(cells[k].count(), expected[k])
              << what << ", variant " << v << ", round " << round
              << ", query: " << text << " cell " << keys[k].ShortDebugString();
        }
      }
    }
  }
}

// Sequences at the window's edges, one person per case: the same day,
// exactly N days, N + 1 days, B before A, several A events (of one code and
// of two codes of the set), the same day listed twice, several B codes.
TEST(IndexEngineTest, SequenceWindowEdgesWithAndWithoutTimelines) {
  const int32_t d0 = DaysFromCivil(2018, 1, 1);
  struct Case {
    const char* name;
    std::vector<std::pair<const char*, int32_t>> events;  // (code, day).
    // Expected for within 0, 30 and 365 days, and without a window.
    bool w0, w30, w365, any;
  };
  // "E..." codes are cim10 conditions, "A..." atc drugs.
  const Case cases[] = {
      {"same day", {{"E119", 0}, {"A10BA02", 0}}, true, true, true, true},
      {"exactly 30", {{"E119", 0}, {"A10BA02", 30}}, false, true, true, true},
      {"31 days", {{"E119", 0}, {"A10BA02", 31}}, false, false, true, true},
      {"exactly 365",
       {{"E119", 0}, {"A10BA02", 365}},
       false,
       false,
       true,
       true},
      {"366 days", {{"E119", 0}, {"A10BA02", 366}}, false, false, false, true},
      {"B before A", {{"A10BA02", 0}, {"E119", 1}}, false, false, false, false},
      {"B a day before A and long after",
       {{"A10BA02", 0}, {"E119", 1}, {"A10BA02", 500}},
       false,
       false,
       false,
       true},
      {"second A of the code within",
       {{"E119", 0}, {"E119", 400}, {"A10BA02", 420}},
       false,
       true,
       true,
       true},
      {"second A of another code within",
       {{"E110", 0}, {"E119", 400}, {"A10BA02", 420}},
       false,
       true,
       true,
       true},
      {"A of another code the same day",
       {{"E110", 0}, {"E119", 10}, {"A10BA02", 10}},
       true,
       true,
       true,
       true},
      {"A listed twice the same day",
       {{"E119", 5}, {"E110", 5}, {"E119", 5}, {"A10BA02", 40}},
       false,
       false,
       true,
       true},
      {"B of another code",
       {{"E119", 0}, {"A10BA02", 400}, {"A10BB01", 20}},
       false,
       true,
       true,
       true},
      {"A only", {{"E119", 0}, {"E110", 3}}, false, false, false, false},
      {"B only", {{"A10BA02", 0}}, false, false, false, false},
  };
  for (const Case& c : cases) {
    Dataset d;
    d.persons.push_back({1, 1950, 5, 5, v1::SEX_FEMALE, false});
    d.persons.push_back({2, 1960, 6, 6, v1::SEX_MALE, false});  // No events.
    for (const auto& [code, day] : c.events) {
      const bool drug = code[0] == 'A';
      d.events.push_back({1, drug ? v1::DOMAIN_DRUG : v1::DOMAIN_CONDITION,
                          drug ? "atc" : "cim10", code, d0 + day,
                          std::numeric_limits<double>::quiet_NaN()});
    }
    const std::shared_ptr<Snapshot> snap = BuildSnapshot(d);
    const std::pair<const char*, bool> queries[] = {
        {"condition icd10:E11* before drug atc:A10B* within 0 days", c.w0},
        {"condition icd10:E11* before drug atc:A10B* within 30 days", c.w30},
        {"condition icd10:E11* before drug atc:A10B* within 365 days", c.w365},
        {"condition icd10:E11* before drug atc:A10B*", c.any},
    };
    for (const IndexEngineOptions& options : TimelineVariants()) {
      std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap, options);
      for (const auto& [text, expected] : queries) {
        absl::StatusOr<v1::Query> q = query::ParseQuery(text);
        ASSERT_TRUE(q.ok()) << text << ": " << q.status();
        for (int round = 0; round < 2; ++round) {
          absl::StatusOr<std::vector<v1::Cell>> cells = engine->Count(*q);
          ASSERT_TRUE(cells.ok()) << text << ": " << cells.status();
          EXPECT_EQ((*cells)[0].count(), expected ? 1 : 0)
              << c.name << ": " << text << " (budget "
              << options.sequence_timeline_budget_bytes << ", round " << round
              << ")";
        }
      }
    }
    // The single-code forms as well, against the reference.
    const char* single[] = {
        "condition cim10:E119 before drug atc:A10BA02 within 30 days",
        "condition icd10:E11* before drug atc:A10BA02 within 30 days",
        "condition icd10:E11* before drug atc:A10BA02 within 365 days",
        "drug atc:A10B* before condition icd10:E11* within 1 days",
    };
    ExpectMatchesReference(d, single, 4, c.name);
  }
}

// Many events per person over several codes of each side: sequences with
// both sides as timelines, one side only, neither, at several windows.
TEST(IndexEngineTest, SequenceTimelinesMatchReferenceOnDenseData) {
  const char* queries[] = {
      "condition icd10:E1* before drug atc:A10B* within 0 days",
      "condition icd10:E1* before drug atc:A10B* within 1 days",
      "condition icd10:E1* before drug atc:A10B* within 30 days",
      "condition icd10:E11* before drug atc:A10BA02 within 365 days",
      "condition icd10:E11* before drug atc:A10BA02",
      "drug atc:A10B* before condition icd10:E1* within 7 days",
      "condition icd10:E105 before condition icd10:E1* within 10 days",
      "condition icd10:E1* before condition icd10:E1* within 0 days",
      "condition [icd10:E105, icd10:E12*] before drug atc:A10BA02 within 60 "
      "days group by sex",
      "condition icd10:E1* before drug atc:A10B* within 90 days and "
      "sex = female",
  };
  for (uint32_t seed : {21u, 22u}) {
    Dataset d = WideDataset(seed, 400);
    ExpectMatchesReference(d, queries, sizeof(queries) / sizeof(queries[0]),
                           absl::StrCat("seed ", seed));
  }
}

TEST(IndexEngineTest, BreakdownCellsSumToTotal) {
  Dataset d = RandomDataset(7, 300);
  std::unique_ptr<CohortEngine> engine = NewIndexEngine(BuildSnapshot(d));
  absl::StatusOr<v1::Query> total = query::ParseQuery("condition icd10:E11*");
  absl::StatusOr<v1::Query> by_sex =
      query::ParseQuery("condition icd10:E11* group by sex");
  ASSERT_TRUE(total.ok() && by_sex.ok());
  auto t = engine->Count(*total);
  auto s = engine->Count(*by_sex);
  ASSERT_TRUE(t.ok() && s.ok());
  ASSERT_EQ(s->size(), 4u);  // Every sex cell, zeros included.
  int64_t sum = 0;
  for (const v1::Cell& c : *s) sum += c.count();
  EXPECT_EQ(sum, (*t)[0].count());
  EXPECT_GT(sum, 0);
}

TEST(IndexEngineTest, AgeUsesFullBirthDateAndJulyFirstForYearOnly) {
  Dataset d;
  d.persons = {{1, 1980, 3, 15, v1::SEX_FEMALE, false},
               {2, 1980, 0, 0, v1::SEX_MALE, false},
               {3, 1980, 12, 31, v1::SEX_FEMALE, false}};
  std::unique_ptr<CohortEngine> engine = NewIndexEngine(BuildSnapshot(d));
  auto count = [&](const char* text) {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text);
    EXPECT_TRUE(q.ok()) << q.status();
    auto cells = engine->Count(*q);
    EXPECT_TRUE(cells.ok()) << cells.status();
    return (*cells)[0].count();
  };
  // On 2020-03-15: person 1 turned 40 that day; 2 (1 July) and 3 are 39.
  EXPECT_EQ(count("age between 40 and 40 as of 2020-03-15"), 1);
  EXPECT_EQ(count("age between 39 and 39 as of 2020-03-15"), 2);
  // On 2020-07-01 person 2 turns 40 as well.
  EXPECT_EQ(count("age between 40 and 40 as of 2020-07-01"), 2);
  EXPECT_EQ(count("age between 40 and 40 as of 2020-06-30"), 1);
}

// A patient not yet born on the reference date has no age: no age criterion
// holds for them (not even `age between 0 and ...`) and they fall in no age
// band, whether the date is the query's or the engine's clock's; the
// reference date never comes from the data (an event in 2040 moves nothing).
TEST(IndexEngineTest, NotYetBornHasNoAge) {
  Dataset d;
  d.persons.push_back({1, 1990, 4, 2, v1::SEX_FEMALE, false});
  d.persons.push_back({2, 2030, 5, 1, v1::SEX_FEMALE, false});  // Later.
  d.persons.push_back({3, 2031, 0, 0, v1::SEX_MALE, false});    // Year only.
  d.persons.push_back({4, 2026, 12, 8, v1::SEX_MALE, false});   // A day after.
  d.events.push_back({2, v1::DOMAIN_CONDITION, "cim10", "E119",
                      DaysFromCivil(2040, 1, 1), NAN});
  d.events.push_back({1, v1::DOMAIN_CONDITION, "cim10", "E119",
                      DaysFromCivil(2020, 1, 1), NAN});
  FakeClock clock(absl::FromCivil(absl::CivilSecond(2026, 12, 7, 23, 59, 59),
                                  absl::UTCTimeZone()));
  IndexEngineOptions options;
  options.clock = &clock;
  std::unique_ptr<CohortEngine> engine =
      NewIndexEngine(BuildSnapshot(d), options);
  auto cells = [&](const std::string& text) {
    absl::StatusOr<v1::Query> q = query::ParseQuery(text);
    EXPECT_TRUE(q.ok()) << text << ": " << q.status();
    absl::StatusOr<std::vector<v1::Cell>> c = engine->Count(*q);
    EXPECT_TRUE(c.ok()) << text << ": " << c.status();
    std::vector<int64_t> counts;
    if (c.ok()) {
      for (const v1::Cell& cell : *c) counts.push_back(cell.count());
    }
    return counts;
  };
  auto total = [&](const std::string& text) {
    int64_t sum = 0;
    for (int64_t n : cells(text)) sum += n;
    return sum;
  };
  for (const std::string as_of : {"", " as of 2026-12-07"}) {
    SCOPED_TRACE(as_of.empty() ? "the engine's clock's date" : as_of);
    // Only person 1 (36) has an age on 2026-12-07.
    EXPECT_EQ(total("age between 0 and 150" + as_of), 1);
    EXPECT_EQ(total("age between 36 and 36" + as_of), 1);
    EXPECT_EQ(total("age between 0 and 0" + as_of), 0);
    EXPECT_EQ(total("not age between 0 and 150" + as_of), 3);
    EXPECT_EQ(total("condition icd10:E11* and age between 0 and 10" + as_of),
              0);
    // In no age band: the bands sum to the patients who have an age.
    EXPECT_EQ(total("sex = female group by age_band(5)" + as_of), 1);
    EXPECT_EQ(total("sex = male group by sex, age_band(10)" + as_of), 0);
    EXPECT_EQ(total("condition icd10:E11* group by age_band(1)" + as_of), 1);
    EXPECT_EQ(cells("age between 0 and 150 group by sex" + as_of),
              (std::vector<int64_t>{1, 0, 0, 0}));
  }
  // A day later person 4 is born (age 0); on 2030-05-01 person 2 too.
  EXPECT_EQ(total("age between 0 and 0 as of 2026-12-08"), 1);
  EXPECT_EQ(total("age between 0 and 5 group by age_band(5) as of 2030-05-01"),
            2);
  clock.Set(absl::FromCivil(absl::CivilSecond(2026, 12, 8, 0, 0, 0),
                            absl::UTCTimeZone()));
  EXPECT_EQ(total("age between 0 and 0"), 1);
  EXPECT_EQ(total("sex = male group by age_band(5)"), 1);
}

}  // namespace
}  // namespace passerelle::node
