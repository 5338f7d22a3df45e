#include "query/canonical.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/limits.h"
#include "query/parser.h"
#include "query/validate.h"
#include "query/vocabulary.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;
using ::testing::HasSubstr;

v1::Query MustParse(const std::string& text) {
  absl::StatusOr<v1::Query> q = ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.status();
  return q.ok() ? *q : v1::Query();
}

std::string Canon(const std::string& text) {
  return CanonicalText(MustParse(text));
}

// The round trip the canonical form promises, for a valid query.
void ExpectRoundTrip(const v1::Query& q) {
  ASSERT_TRUE(ValidateQuery(q).ok()) << ValidateQuery(q) << q.DebugString();
  const std::string text = CanonicalText(q);
  absl::StatusOr<v1::Query> back = ParseQuery(text);
  ASSERT_TRUE(back.ok()) << text << ": " << back.status();
  EXPECT_EQ(CanonicalText(*back), text);
  const v1::Query canonical = Canonicalize(q);
  EXPECT_TRUE(ValidateQuery(canonical).ok()) << text;
  EXPECT_EQ(Canonicalize(canonical).SerializeAsString(),
            canonical.SerializeAsString())
      << text;
  // The parsed canonical text is already canonical.
  EXPECT_EQ(Canonicalize(*back).SerializeAsString(), back->SerializeAsString())
      << text;
  EXPECT_EQ(back->SerializeAsString(), canonical.SerializeAsString()) << text;
}

TEST(CanonicalTest, ExpectedTexts) {
  const std::pair<const char*, const char*> cases[] = {
      {"condition icd10:E11*", "condition icd10:E11*"},
      {"CONDITION ICD10:e11.9", "condition icd10:E119"},
      {"sex = female and condition icd10:E11* and age between 40 and 65",
       "age between 40 and 65 and condition icd10:E11* and sex = female"},
      {"condition [icd9:250*, icd10:E11*] and not drug atc:A10A*",
       "condition [icd10:E11*, icd9:250*] and not drug atc:A10A*"},
      {"condition icd10:I10* at least 2 times",
       "condition icd10:I10* at least 2 times"},
      {"condition icd10:I10* at least 1 times", "condition icd10:I10*"},
      {"condition icd10:E11* before drug atc:A10BA02 within 365 days group by "
       "sex",
       "condition icd10:E11* before drug atc:A10BA02 within 365 days group by "
       "sex"},
      {"measurement loinc:4548-4 value >= 7 in 2019 group by age_band(10), sex",
       "measurement loinc:4548-4 value >= 7 in 2019 group by age_band(10), "
       "sex"},
      {"measurement loinc:4548-4 value >= 7.0 between 2019-01-01 and "
       "2019-12-31",
       "measurement loinc:4548-4 value >= 7 in 2019"},
      {"measurement loinc:4548-4 value < 0.1",
       "measurement loinc:4548-4 value < 0.1"},
      {"measurement loinc:4548-4 value < -0.0",
       "measurement loinc:4548-4 value < 0"},
      {"measurement loinc:4548-4 value > 1e300",
       "measurement loinc:4548-4 value > 1e+300"},
      {"condition icd10:I10 between 2019-01-01 and 2019-06-30",
       "condition icd10:I10 between 2019-01-01 and 2019-06-30"},
      {"birth_year < 1950", "birth_year <= 1949"},
      {"birth_year > 1950", "birth_year >= 1951"},
      {"birth_year between 1950 and 1950", "birth_year = 1950"},
      {"age = 40", "age = 40"},
      {"not not deceased", "deceased"},
      {"not not not deceased", "not deceased"},
      {"((deceased))", "deceased"},
      {"deceased and deceased", "deceased"},
      {"deceased or (sex = male or (sex = female or deceased))",
       "deceased or sex = female or sex = male"},
      {"(sex = male and deceased) and (deceased and age >= 50)",
       "age >= 50 and deceased and sex = male"},
      {"not (sex = male or deceased) and not not (age <= 3 or deceased)",
       "(age <= 3 or deceased) and not (deceased or sex = male)"},
      {"sex = male and deceased or sex = female",
       "deceased and sex = male or sex = female"},
      {"condition [icd10:E11, icd10:E11*, icd10:E119, icd10cm:E11.9, "
       "icd10cm:E11*, cim10:I10, icd10:I10]",
       "condition [icd10:E11*, icd10:I10]"},
      {"condition [icd10cm:E11*, icd10:E11]",
       "condition [icd10:E11, icd10cm:E11*]"},
      {"condition [icd9cm:250*, icd9:25000, icd9:250]",
       "condition [icd9:250, icd9:25000, icd9cm:250*]"},
      {"condition [icd9:250*, icd9cm:25000]", "condition icd9:250*"},
      {"drug [atc:A10, atc:A10*, rxnorm:1]", "drug [atc:A10*, rxnorm:1]"},
      {"age >= 40 and sex = male and age <= 65",
       "age between 40 and 65 and sex = male"},
      {"age >= 40 and age >= 50 and age <= 70 and (age <= 65 or deceased)",
       "(age <= 65 or deceased) and age between 50 and 70"},
      {"age >= 70 and age <= 65", "age <= 65 and age >= 70"},
      {"birth_year >= 1950 and birth_year < 1960 and age >= 3",
       "age >= 3 and birth_year between 1950 and 1959"},
      {"deceased group by site, age_band(5) as of 2020-02-29",
       "deceased group by site, age_band(5) as of 2020-02-29"},
      // The default matching is not written; the others are, last.
      {"condition icd10:E11* codes mapped", "condition icd10:E11*"},
      {"condition icd10:E11* CODES EQUIVALENT",
       "condition icd10:E11* codes equivalent"},
      {"condition icd10:E11* group by sex as of 2020-02-29 codes exact",
       "condition icd10:E11* group by sex as of 2020-02-29 codes exact"},
  };
  for (const auto& [text, canonical] : cases) {
    EXPECT_EQ(Canon(text), canonical) << text;
    ExpectRoundTrip(MustParse(text));
  }
}

TEST(CanonicalTest, SameCohortWrittenDifferently) {
  const std::vector<std::vector<const char*>> groups = {
      {"condition icd10:E11.9 and sex = female",
       "sex = female and condition icd10:E119",
       "SEX = FEMALE AND CONDITION ICD10:e11.9",
       "((sex = female)) and (condition [icd10:E11 . 9])",
       "sex = female and condition [icd10:E119, icd10:E11.9] and sex = female",
       "not not sex = female and condition icd10:E119"},
      {"condition [icd10:E11*, icd9:250*] and not drug atc:A10A*",
       "not drug atc:a10a* and condition [icd9:250*, icd10:E11*]",
       "not drug ATC:A10A* and condition [icd9:250*, icd10:e11*, icd10:E11.9]",
       "(not (drug atc:A10A*)) and (condition [icd9:250*, icd10cm:E11.9, "
       "icd10:E11*])"},
      {"condition icd10:I10 in 2019",
       "condition icd10:I10 between 2019-01-01 "
       "and 2019-12-31",
       "condition icd10:I10 IN 2019 at least 1 time"},
      {"age between 40 and 65 or deceased", "deceased or age between 40 and 65",
       "(deceased) or (age >= 40 and age <= 65) and age between 40 and 65"
       " or deceased and deceased and deceased"},
  };
  for (const auto& group : groups) {
    const std::string first = Canon(group[0]);
    for (const char* text : group) EXPECT_EQ(Canon(text), first) << text;
  }
  // What differs stays different.
  EXPECT_NE(Canon("deceased group by sex, site"),
            Canon("deceased group by site, sex"));
  EXPECT_NE(Canon("condition icd10:E11*"), Canon("condition icd10:E11"));
  EXPECT_NE(Canon("condition icd10:E11"), Canon("condition icd10cm:E11"));
  // The three matchings are three cohorts (and three cache keys).
  EXPECT_NE(Canon("condition icd10:E11*"),
            Canon("condition icd10:E11* codes exact"));
  EXPECT_NE(Canon("condition icd10:E11* codes equivalent"),
            Canon("condition icd10:E11* codes exact"));
}

TEST(CanonicalTest, CanonicalizeIsTotalOnInvalidAsts) {
  v1::Query q;
  q.mutable_where()->mutable_and_();
  q.add_group_by()->set_kind(static_cast<v1::Dimension::Kind>(9));
  EXPECT_THAT(CanonicalText(q), HasSubstr("<empty and>"));
  v1::Query empty;
  EXPECT_EQ(CanonicalText(empty), "<empty expression>");
  v1::Query c;
  c.mutable_where()->mutable_or_()->add_terms()->mutable_criterion();
  EXPECT_EQ(CanonicalText(c), "<empty criterion>");
}

// ---- Randomised round trip ----

// Builds random valid ASTs from small pools, so that duplicates, covered
// codes, nesting of the same operator and double negations are frequent.
class RandomQueries {
 public:
  explicit RandomQueries(uint32_t seed) : rng_(seed) {}

  v1::Query Next() {
    v1::Query q;
    *q.mutable_where() = Expr(0);
    std::vector<int> kinds = {v1::Dimension::SEX, v1::Dimension::AGE_BAND,
                              v1::Dimension::SITE};
    std::shuffle(kinds.begin(), kinds.end(), rng_);
    const int n = Uniform(0, 3);
    for (int i = 0; i < n; ++i) {
      v1::Dimension* d = q.add_group_by();
      d->set_kind(static_cast<v1::Dimension::Kind>(kinds[i]));
      if (kinds[i] == v1::Dimension::AGE_BAND) d->set_width(Uniform(1, 120));
    }
    if (Coin()) *q.mutable_as_of() = Date();
    q.set_code_matching(static_cast<v1::CodeMatching>(Uniform(0, 2)));
    return q;
  }

 private:
  int Uniform(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  bool Coin() { return Uniform(0, 1) == 1; }

  v1::Date Date() {
    v1::Date d;
    d.set_year(Uniform(1990, 2025));
    d.set_month(Uniform(1, 12));
    d.set_day(Uniform(1, 28));
    if (Uniform(0, 9) == 0) {
      d.set_year(2020);
      d.set_month(2);
      d.set_day(29);
    }
    return d;
  }

  v1::Expr Expr(int depth) {
    v1::Expr e;
    const int pick = depth >= 5 ? 0 : Uniform(0, 5);
    if (pick <= 2) {
      *e.mutable_criterion() = Criterion();
    } else if (pick == 3) {
      *e.mutable_not_() = Expr(depth + 1);
    } else {
      v1::ExprList* list = pick == 4 ? e.mutable_and_() : e.mutable_or_();
      const int n = Uniform(1, 4);
      for (int i = 0; i < n; ++i) *list->add_terms() = Expr(depth + 1);
    }
    return e;
  }

  void Range(v1::IntRange* r, int lo, int hi) {
    const int a = Uniform(lo, hi);
    const int b = Uniform(a, hi);
    switch (Uniform(0, 3)) {
      case 0:
        r->set_min(a);
        break;
      case 1:
        r->set_max(b);
        break;
      case 2:
        r->set_min(a);
        r->set_max(a);
        break;
      default:
        r->set_min(a);
        r->set_max(b);
        break;
    }
  }

  v1::EventSpec Spec() {
    v1::EventSpec s;
    s.set_domain(static_cast<v1::Domain>(Uniform(1, 6)));
    static const std::pair<const char*, const char*> kCodes[] = {
        {"icd10", "E11"},        {"icd10", "E119"},      {"icd10", "E1"},
        {"icd10cm", "E119"},     {"icd10cm", "E11"},     {"cim10", "I10"},
        {"icd10ca", "I10"},      {"icd9", "250"},        {"icd9cm", "25000"},
        {"atc", "A10"},          {"atc", "A10BA02"},     {"loinc", "4548-4"},
        {"concept", "201826"},   {"snomed", "44054006"}, {"ccam", "HFFC018"},
        {"ndc", "0002-8215.01"}, {"rxnorm", "860975"},
    };
    const int n = Uniform(1, 4);
    for (int i = 0; i < n; ++i) {
      const auto& [vocab, code] = kCodes[Uniform(0, std::size(kCodes) - 1)];
      v1::Code* c = s.add_codes();
      c->set_vocabulary(vocab);
      c->set_code(code);
      c->set_prefix(Coin());
    }
    if ((s.domain() == v1::DOMAIN_MEASUREMENT ||
         s.domain() == v1::DOMAIN_OBSERVATION) &&
        Coin()) {
      static const double kNumbers[] = {7,  6.5,  -0.0,   0,          0.1,
                                        -3, 1e20, 1.5e-7, 123456.789, 1.0 / 3};
      s.mutable_value()->set_op(static_cast<v1::Comparison>(Uniform(1, 5)));
      s.mutable_value()->set_number(kNumbers[Uniform(0, 9)]);
    }
    return s;
  }

  v1::Criterion Criterion() {
    v1::Criterion c;
    switch (Uniform(0, 6)) {
      case 0:
        c.set_sex(static_cast<v1::Sex>(Uniform(1, 4)));
        break;
      case 1:
        Range(c.mutable_birth_year(), 1900, 2020);
        break;
      case 2:
        Range(c.mutable_age(), kMinAge, kMaxAge);
        break;
      case 3:
        c.set_deceased(true);
        break;
      case 4:
      case 5: {
        v1::EventCriterion* e = c.mutable_event();
        *e->mutable_event() = Spec();
        if (Coin()) {
          v1::Date a = Date();
          v1::Date b = Date();
          if (CompareDates(a, b) > 0) std::swap(a, b);
          if (Coin()) {
            a.set_month(1);
            a.set_day(1);
            b = a;
            b.set_month(12);
            b.set_day(31);
          }
          *e->mutable_window()->mutable_start() = a;
          *e->mutable_window()->mutable_end() = b;
        }
        e->set_min_count(Uniform(0, 3));
        break;
      }
      default: {
        v1::SequenceCriterion* s = c.mutable_sequence();
        *s->mutable_first() = Spec();
        *s->mutable_second() = Spec();
        if (Coin()) {
          s->set_has_within(true);
          s->set_within_days(Uniform(0, 400));
        }
        break;
      }
    }
    return c;
  }

  std::mt19937 rng_;
};

// A tiny reference evaluator over random patients: canonicalization must not
// change who is in the cohort.
struct Event {
  v1::Domain domain;
  std::string vocab;
  std::string code;
  int day;  // Days since 1990-01-01, roughly (monotone in the date).
  double value;
};

struct Patient {
  v1::Sex sex;
  int birth_year;
  int age;
  bool deceased;
  std::vector<Event> events;
};

int DayOf(const v1::Date& d) {
  return (d.year() - 1990) * 372 + (d.month() - 1) * 31 + (d.day() - 1);
}

Patient RandomPatient(std::mt19937& rng) {
  auto u = [&rng](int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  static const std::pair<const char*, const char*> kData[] = {
      {"icd10", "E119"},   {"icd10cm", "E119"},   {"icd10cm", "E110"},
      {"cim10", "E11"},    {"cim10", "I10"},      {"icd10ca", "I10"},
      {"icd10", "E1"},     {"icd9", "25000"},     {"icd9cm", "250"},
      {"icd9cm", "25000"}, {"atc", "A10BA02"},    {"atc", "A10"},
      {"loinc", "4548-4"}, {"concept", "201826"}, {"ndc", "0002-8215.01"},
  };
  Patient p;
  p.sex = static_cast<v1::Sex>(u(1, 4));
  p.birth_year = u(1900, 2020);
  p.age = u(0, 130);
  p.deceased = u(0, 3) == 0;
  const int n = u(0, 6);
  for (int i = 0; i < n; ++i) {
    const auto& [vocab, code] = kData[u(0, std::size(kData) - 1)];
    static const double kValues[] = {-3, 0, 0.1, 6.5, 7, 8, 1e21};
    p.events.push_back({static_cast<v1::Domain>(u(1, 6)), vocab, code,
                        u(0, 36 * 372), kValues[u(0, 6)]});
  }
  return p;
}

bool InRange(const v1::IntRange& r, int x) {
  return (!r.has_min() || x >= r.min()) && (!r.has_max() || x <= r.max());
}

bool Compare(double v, v1::Comparison op, double n) {
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

bool Matches(const v1::EventSpec& s, const Event& e) {
  if (e.domain != s.domain()) return false;
  bool code = false;
  for (const v1::Code& c : s.codes()) {
    if (!VocabularyMatches(c.vocabulary(), e.vocab)) continue;
    code |= c.prefix() ? e.code.rfind(c.code(), 0) == 0 : e.code == c.code();
  }
  if (!code) return false;
  return !s.has_value() || Compare(e.value, s.value().op(), s.value().number());
}

bool Eval(const v1::Expr& x, const Patient& p) {
  switch (x.kind_case()) {
    case v1::Expr::kAnd:
      for (const v1::Expr& t : x.and_().terms()) {
        if (!Eval(t, p)) return false;
      }
      return true;
    case v1::Expr::kOr:
      for (const v1::Expr& t : x.or_().terms()) {
        if (Eval(t, p)) return true;
      }
      return false;
    case v1::Expr::kNot:
      return !Eval(x.not_(), p);
    case v1::Expr::kCriterion:
      break;
    default:
      ADD_FAILURE() << "empty expression";
      return false;
  }
  const v1::Criterion& c = x.criterion();
  switch (c.kind_case()) {
    case v1::Criterion::kSex:
      return p.sex == c.sex();
    case v1::Criterion::kBirthYear:
      return InRange(c.birth_year(), p.birth_year);
    case v1::Criterion::kAge:
      return InRange(c.age(), p.age);
    case v1::Criterion::kDeceased:
      return p.deceased;
    case v1::Criterion::kEvent: {
      const v1::EventCriterion& e = c.event();
      int count = 0;
      for (const Event& ev : p.events) {
        if (!Matches(e.event(), ev)) continue;
        if (e.has_window() && (ev.day < DayOf(e.window().start()) ||
                               ev.day > DayOf(e.window().end()))) {
          continue;
        }
        ++count;
      }
      return count >= std::max(1, e.min_count());
    }
    case v1::Criterion::kSequence: {
      const v1::SequenceCriterion& s = c.sequence();
      for (const Event& a : p.events) {
        if (!Matches(s.first(), a)) continue;
        for (const Event& b : p.events) {
          if (!Matches(s.second(), b)) continue;
          const int gap = b.day - a.day;
          if (gap >= 0 && (!s.has_within() || gap <= s.within_days())) {
            return true;
          }
        }
      }
      return false;
    }
    default:
      ADD_FAILURE() << "empty criterion";
      return false;
  }
}

TEST(CanonicalTest, RandomisedRoundTripPreservesTextAndMeaning) {
  RandomQueries gen(20261122);
  std::mt19937 patients_rng(7);
  std::vector<Patient> patients;
  for (int i = 0; i < 300; ++i) patients.push_back(RandomPatient(patients_rng));
  int nontrivial = 0;
  for (int i = 0; i < 1500; ++i) {
    const v1::Query q = gen.Next();
    ASSERT_TRUE(ValidateQuery(q).ok()) << ValidateQuery(q) << q.DebugString();
    ExpectRoundTrip(q);
    if (HasFailure()) return;
    const v1::Query canonical = Canonicalize(q);
    absl::StatusOr<v1::Query> parsed = ParseQuery(CanonicalText(q));
    ASSERT_TRUE(parsed.ok());
    int members = 0;
    for (const Patient& p : patients) {
      const bool in = Eval(q.where(), p);
      members += in;
      ASSERT_EQ(Eval(canonical.where(), p), in) << CanonicalText(q) << "\n"
                                                << q.DebugString();
      ASSERT_EQ(Eval(parsed->where(), p), in) << CanonicalText(q);
    }
    nontrivial += members > 0 && members < static_cast<int>(patients.size());
  }
  // The generator and the patients exercise real cohorts, not only empty or
  // full ones.
  EXPECT_GT(nontrivial, 300);
}

TEST(CanonicalTest, RandomisedTextPerturbationsKeepTheCanonicalText) {
  // Re-parse the canonical text after changing case and whitespace.
  RandomQueries gen(99);
  std::mt19937 rng(5);
  for (int i = 0; i < 300; ++i) {
    const std::string text = CanonicalText(gen.Next());
    std::string messy;
    for (char c : text) {
      if (c == ' ') {
        messy += std::string(1 + rng() % 3, rng() % 2 ? ' ' : '\n');
      } else if (rng() % 2 && c >= 'a' && c <= 'z') {
        messy += static_cast<char>(c - 'a' + 'A');
      } else {
        messy += c;
      }
    }
    absl::StatusOr<v1::Query> q = ParseQuery(messy);
    ASSERT_TRUE(q.ok()) << messy << ": " << q.status();
    EXPECT_EQ(CanonicalText(*q), text) << messy;
  }
}

TEST(CanonicalTest, LargestValidQueryStillParses) {
  // Many long criteria and the most codes the limits allow: the canonical
  // text must stay within the parser's length limit.
  v1::Query q;
  v1::ExprList* list = q.mutable_where()->mutable_and_();
  const int kCriteria = kMaxCriteria;
  const int codes_per_spec = kMaxCodes / (2 * kCriteria);
  int code = 0;
  for (int i = 0; i < kCriteria; ++i) {
    v1::SequenceCriterion* s = list->add_terms()
                                   ->mutable_not_()
                                   ->mutable_criterion()
                                   ->mutable_sequence();
    for (v1::EventSpec* spec : {s->mutable_first(), s->mutable_second()}) {
      spec->set_domain(v1::DOMAIN_OBSERVATION);
      for (int j = 0; j < codes_per_spec; ++j) {
        v1::Code* c = spec->add_codes();
        c->set_vocabulary("concept");
        c->set_code(std::string(kMaxCodeLength - 8, '9') +
                    absl::StrCat(10000000 + code++));
      }
      spec->mutable_value()->set_op(v1::COMPARISON_GE);
      spec->mutable_value()->set_number(-1.2345678901234567e-300);
    }
    s->set_has_within(true);
    s->set_within_days(kMaxWithinDays);
  }
  q.add_group_by()->set_kind(v1::Dimension::AGE_BAND);
  q.mutable_group_by(0)->set_width(7);
  ASSERT_TRUE(ValidateQuery(q).ok()) << ValidateQuery(q);
  const std::string text = CanonicalText(q);
  EXPECT_LE(text.size(), kMaxQueryBytes);
  ExpectRoundTrip(q);
}

TEST(CanonicalTest, Json) {
  const v1::Query q = MustParse(
      "condition icd10:E11* before drug atc:A10BA02 within 365 days and "
      "measurement loinc:4548-4 value >= 7 in 2019 group by age_band(10), sex "
      "as of 2020-01-01");
  absl::StatusOr<std::string> json = QueryToJson(q);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"group_by\""));
  EXPECT_THAT(*json, HasSubstr("\"within_days\":365"));
  EXPECT_THAT(*json, HasSubstr("\"DOMAIN_CONDITION\""));
  absl::StatusOr<v1::Query> back = QueryFromJson(*json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), q.SerializeAsString());
  EXPECT_EQ(CanonicalText(*back), CanonicalText(q));

  // Hand-written JSON, lowerCamel names and enum numbers accepted.
  absl::StatusOr<v1::Query> hand = QueryFromJson(R"({
    "where": {"criterion": {"event": {
      "event": {"domain": 1, "codes": [{"vocabulary": "icd10", "code": "E11",
                                        "prefix": true}]},
      "minCount": 2}}},
    "groupBy": [{"kind": "SEX"}]
  })");
  ASSERT_TRUE(hand.ok()) << hand.status();
  EXPECT_EQ(CanonicalText(*hand),
            "condition icd10:E11* at least 2 times group by sex");
}

TEST(CanonicalTest, JsonErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "invalid query JSON"},
      {"{", "invalid query JSON"},
      {"[]", "invalid query JSON"},
      {R"({"where": {"criterion": {"deceased": true}}, "extra": 1})",
       "invalid query JSON"},
      {R"({"where": {"criterion": {"sex": "SEX_WOMAN"}}})",
       "invalid query JSON"},
      {R"({"where": {"criterion": {"sex": "SEX_FEMALE", "deceased": true}}})",
       "invalid query JSON"},
      {R"({"groupBy": []})", "where: missing expression"},
      {R"({"where": {"criterion": {"event": {"event": {"domain": "DOMAIN_CONDITION",
          "codes": [{"vocabulary": "icd11", "code": "5A11"}]}}}}})",
       "where.criterion.event.event.codes[0]: unknown vocabulary \"icd11\""},
      {R"({"where": {"criterion": {"event": {"event": {"domain": "DOMAIN_CONDITION",
          "codes": [{"vocabulary": "icd10", "code": "E11.9"}]}}}}})",
       "is not normalised"},
  };
  for (const auto& [json, message] : cases) {
    absl::StatusOr<v1::Query> q = QueryFromJson(json);
    ASSERT_FALSE(q.ok()) << json;
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_THAT(q.status().message(), HasSubstr(message)) << json;
  }
  EXPECT_THAT(
      QueryFromJson(std::string(kMaxJsonBytes + 1, ' ')).status().message(),
      HasSubstr("longer than the limit"));
  // Deep JSON nesting is refused by a limit, not by the stack.
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "{\"not\":";
  deep += "{\"criterion\":{\"deceased\":true}}";
  for (int i = 0; i < 5000; ++i) deep += "}";
  absl::StatusOr<v1::Query> q = QueryFromJson("{\"where\":" + deep + "}");
  EXPECT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace passerelle::query
