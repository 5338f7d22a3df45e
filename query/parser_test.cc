#include "query/parser.h"

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "query/canonical.h"
#include "query/limits.h"
#include "query/validate.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;
using ::testing::HasSubstr;

v1::Query MustParse(const std::string& text) {
  absl::StatusOr<v1::Query> q = ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.status();
  if (!q.ok()) return v1::Query();
  EXPECT_TRUE(ValidateQuery(*q).ok()) << text;
  return *q;
}

// The error message of a text that must fail with INVALID_ARGUMENT.
std::string ErrorOf(const std::string& text) {
  absl::StatusOr<v1::Query> q = ParseQuery(text);
  EXPECT_FALSE(q.ok()) << text << " parsed as " << q->ShortDebugString();
  if (q.ok()) return "";
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << text;
  return std::string(q.status().message());
}

TEST(ParserTest, EveryExampleOfTheContractParses) {
  for (const char* text : {
           "condition icd10:E11*",
           "condition icd10:E11* and sex = female and age between 40 and 65",
           "condition [icd10:E11*, icd9:250*] and not drug atc:A10A*",
           "condition icd10:I10* at least 2 times",
           "condition icd10:E11* before drug atc:A10BA02 within 365 days "
           "group by sex",
           "measurement loinc:4548-4 value >= 7 in 2019 group by "
           "age_band(10), sex",
       }) {
    MustParse(text);
  }
}

TEST(ParserTest, EventWithCodePrefix) {
  v1::Query q = MustParse("condition icd10:E11*");
  const v1::EventCriterion& e = q.where().criterion().event();
  EXPECT_EQ(e.event().domain(), v1::DOMAIN_CONDITION);
  ASSERT_EQ(e.event().codes_size(), 1);
  EXPECT_EQ(e.event().codes(0).vocabulary(), "icd10");
  EXPECT_EQ(e.event().codes(0).code(), "E11");
  EXPECT_TRUE(e.event().codes(0).prefix());
  EXPECT_FALSE(e.has_window());
  EXPECT_EQ(e.min_count(), 0);
  EXPECT_FALSE(q.has_as_of());
  EXPECT_EQ(q.group_by_size(), 0);
}

TEST(ParserTest, CodesAreNormalised) {
  for (const char* text : {"condition icd10:E11.9", "condition ICD10:e119",
                           "CONDITION Icd10:E11 . 9", "condition icd10 : e11.9",
                           "condition icd10:  E11.9"}) {
    v1::Query q = MustParse(text);
    const v1::Code& c = q.where().criterion().event().event().codes(0);
    EXPECT_EQ(c.vocabulary(), "icd10") << text;
    EXPECT_EQ(c.code(), "E119") << text;
    EXPECT_FALSE(c.prefix()) << text;
  }
  v1::Query q = MustParse("measurement LOINC:4548-4 value < 6.5");
  const v1::EventSpec& s = q.where().criterion().event().event();
  EXPECT_EQ(s.codes(0).vocabulary(), "loinc");
  EXPECT_EQ(s.codes(0).code(), "4548-4");
  EXPECT_EQ(s.value().op(), v1::COMPARISON_LT);
  EXPECT_DOUBLE_EQ(s.value().number(), 6.5);
  q = MustParse(
      "drug rxnorm:860975 and procedure ccam:hffc018 and observation "
      "snomed:44054006 value = -1.5e3 and visit concept:9201 and "
      "drug ndc:0002-8215_01 and condition cim10:E11.9*");
  EXPECT_EQ(q.where().and_().terms_size(), 6);
  EXPECT_EQ(
      q.where().and_().terms(1).criterion().event().event().codes(0).code(),
      "HFFC018");
  EXPECT_DOUBLE_EQ(
      q.where().and_().terms(2).criterion().event().event().value().number(),
      -1500);
  const v1::Code& cim =
      q.where().and_().terms(5).criterion().event().event().codes(0);
  EXPECT_EQ(cim.code(), "E119");
  EXPECT_TRUE(cim.prefix());
}

TEST(ParserTest, CodeSets) {
  v1::Query q = MustParse("condition [icd10:E11*, icd9:250* ,icd10cm:E10.1]");
  const v1::EventSpec& s = q.where().criterion().event().event();
  ASSERT_EQ(s.codes_size(), 3);
  EXPECT_EQ(s.codes(1).vocabulary(), "icd9");
  EXPECT_EQ(s.codes(1).code(), "250");
  EXPECT_TRUE(s.codes(1).prefix());
  EXPECT_EQ(s.codes(2).code(), "E101");
  EXPECT_FALSE(s.codes(2).prefix());
}

TEST(ParserTest, Windows) {
  v1::Query q = MustParse("condition icd10:I10 in 2019");
  const v1::Window& w = q.where().criterion().event().window();
  EXPECT_EQ(w.start().ShortDebugString(), "year: 2019 month: 1 day: 1");
  EXPECT_EQ(w.end().ShortDebugString(), "year: 2019 month: 12 day: 31");
  q = MustParse("condition icd10:I10 between 2016-02-29 and 2016-03-01");
  const v1::Window& w2 = q.where().criterion().event().window();
  EXPECT_EQ(w2.start().ShortDebugString(), "year: 2016 month: 2 day: 29");
  EXPECT_EQ(w2.end().ShortDebugString(), "year: 2016 month: 3 day: 1");
  q = MustParse(
      "condition icd10:I10 between 2019-01-01 and 2019-01-01 at least "
      "3 times");
  EXPECT_EQ(q.where().criterion().event().min_count(), 3);
  q = MustParse("condition icd10:I10 at least 1 time");
  EXPECT_EQ(q.where().criterion().event().min_count(), 1);
}

TEST(ParserTest, Demographics) {
  v1::Query q = MustParse("SEX = Female");
  EXPECT_EQ(q.where().criterion().sex(), v1::SEX_FEMALE);
  for (auto [text, has_min, min, has_max, max] :
       std::vector<std::tuple<const char*, bool, int, bool, int>>{
           {"birth_year < 1950", false, 0, true, 1949},
           {"birth_year <= 1950", false, 0, true, 1950},
           {"birth_year = 1950", true, 1950, true, 1950},
           {"birth_year > 1950", true, 1951, false, 0},
           {"birth_year >= 1950", true, 1950, false, 0},
           {"birth_year between 1940 and 1950", true, 1940, true, 1950},
       }) {
    q = MustParse(text);
    const v1::IntRange& r = q.where().criterion().birth_year();
    EXPECT_EQ(r.has_min(), has_min) << text;
    EXPECT_EQ(r.has_max(), has_max) << text;
    if (has_min) {
      EXPECT_EQ(r.min(), min) << text;
    }
    if (has_max) {
      EXPECT_EQ(r.max(), max) << text;
    }
  }
  q = MustParse("age between 40 and 65");
  EXPECT_EQ(q.where().criterion().age().min(), 40);
  EXPECT_EQ(q.where().criterion().age().max(), 65);
  q = MustParse("age < 18");
  EXPECT_FALSE(q.where().criterion().age().has_min());
  EXPECT_EQ(q.where().criterion().age().max(), 17);
  q = MustParse("deceased");
  EXPECT_TRUE(q.where().criterion().deceased());
}

TEST(ParserTest, Sequence) {
  v1::Query q =
      MustParse("condition icd10:E11* before drug atc:A10BA02 within 365 days");
  const v1::SequenceCriterion& s = q.where().criterion().sequence();
  EXPECT_EQ(s.first().domain(), v1::DOMAIN_CONDITION);
  EXPECT_EQ(s.second().domain(), v1::DOMAIN_DRUG);
  EXPECT_EQ(s.second().codes(0).code(), "A10BA02");
  EXPECT_TRUE(s.has_within());
  EXPECT_EQ(s.within_days(), 365);
  q = MustParse("condition icd10:E11* before drug atc:A10BA02");
  EXPECT_FALSE(q.where().criterion().sequence().has_within());
  q = MustParse("condition icd10:E11* before drug atc:A10BA02 within 0 days");
  EXPECT_TRUE(q.where().criterion().sequence().has_within());
  EXPECT_EQ(q.where().criterion().sequence().within_days(), 0);
}

TEST(ParserTest, Precedence) {
  // and binds tighter than or; not binds tightest.
  v1::Query q = MustParse("deceased or sex = male and not sex = female");
  ASSERT_TRUE(q.where().has_or_());
  ASSERT_EQ(q.where().or_().terms_size(), 2);
  EXPECT_TRUE(q.where().or_().terms(0).criterion().deceased());
  const v1::Expr& a = q.where().or_().terms(1);
  ASSERT_TRUE(a.has_and_());
  EXPECT_EQ(a.and_().terms(0).criterion().sex(), v1::SEX_MALE);
  EXPECT_EQ(a.and_().terms(1).not_().criterion().sex(), v1::SEX_FEMALE);
  q = MustParse("(deceased or sex = male) and sex = other");
  ASSERT_TRUE(q.where().has_and_());
  EXPECT_TRUE(q.where().and_().terms(0).has_or_());
  q = MustParse("not not deceased");
  EXPECT_TRUE(q.where().not_().not_().criterion().deceased());
  q = MustParse("((((deceased))))");
  EXPECT_TRUE(q.where().criterion().deceased());
}

TEST(ParserTest, GroupByAndAsOf) {
  v1::Query q =
      MustParse("deceased group by sex, age_band(5), site as of 2020-06-30");
  ASSERT_EQ(q.group_by_size(), 3);
  EXPECT_EQ(q.group_by(0).kind(), v1::Dimension::SEX);
  EXPECT_EQ(q.group_by(1).kind(), v1::Dimension::AGE_BAND);
  EXPECT_EQ(q.group_by(1).width(), 5);
  EXPECT_EQ(q.group_by(2).kind(), v1::Dimension::SITE);
  EXPECT_EQ(q.as_of().ShortDebugString(), "year: 2020 month: 6 day: 30");
  q = MustParse("deceased AS OF 2020-01-01");
  EXPECT_EQ(q.as_of().year(), 2020);
}

TEST(ParserTest, CodeMatchingEndsTheQuery) {
  EXPECT_EQ(MustParse("condition icd10:E11*").code_matching(),
            v1::CODE_MATCHING_MAPPED);
  EXPECT_EQ(MustParse("condition icd10:E11* codes mapped").code_matching(),
            v1::CODE_MATCHING_MAPPED);
  EXPECT_EQ(MustParse("condition icd10:E11* CODES Equivalent").code_matching(),
            v1::CODE_MATCHING_EQUIVALENT);
  v1::Query q = MustParse(
      "condition icd10:E11* group by sex as of 2020-06-30 codes exact");
  EXPECT_EQ(q.code_matching(), v1::CODE_MATCHING_EXACT);
  EXPECT_EQ(q.group_by_size(), 1);
  EXPECT_EQ(q.as_of().year(), 2020);
  // "codes" is a keyword only at the end: a vocabulary is still a code.
  q = MustParse("condition icd10:E11 codes exact");
  EXPECT_EQ(q.where().criterion().event().event().codes_size(), 1);
}

TEST(ParserTest, WhitespaceAndLinesAreFree) {
  v1::Query a = MustParse("condition icd10:E11* and sex = female");
  v1::Query b = MustParse("\n  condition\ticd10:E11*\r\n and\n\nsex=female  ");
  EXPECT_EQ(a.SerializeAsString(), b.SerializeAsString());
}

struct ErrorCase {
  const char* text;
  const char* message;  // The whole expected message.
};

TEST(ParserTest, ErrorsNamePositionAndExpectation) {
  const ErrorCase cases[] = {
      {"condition icd10:",
       "1:17: expected a code after \"icd10:\", found end of input"},
      {"condition icd10:E11* or drug atc:",
       "1:34: expected a code after \"atc:\", found end of input"},
      {"condition [icd10:E11, icd10:)",
       "1:29: expected a code after \"icd10:\", found \")\""},
      {"condition icd11:E11", "1:11: unknown vocabulary \"icd11\""},
      {"condition E11", "1:11: expected a code (VOCAB:CODE), found \"E11\""},
      {"condition []", "1:12: empty code set"},
      {"condition [icd10:E11",
       "1:21: expected \",\" or \"]\", found end of input"},
      {"age between 65 and 40",
       "1:13: inverted range \"between 65 and 40\": the lower bound is greater "
       "than the upper bound"},
      {"age between 40 and 200", "1:20: age must be in [0, 150], found 200"},
      {"age < 0", "1:7: age < 0 matches no one"},
      {"birth_year > 9999", "1:14: birth year > 9999 matches no one"},
      {"birth_year 1950",
       "1:12: expected \"between\", \"=\", \"<\", \"<=\", \">\" or \">=\", "
       "found \"1950\""},
      {"condition icd10:E11 between 2019-02-30 and 2019-12-31",
       "1:29: invalid date \"2019-02-30\""},
      {"condition icd10:E11 between 2019-12-31 and 2019-01-01",
       "1:29: inverted window: 2019-12-31 is after 2019-01-01"},
      {"condition icd10:E11 between 2019-1-1 and 2019-12-31",
       "1:29: invalid date \"2019-1-1\", expected YYYY-MM-DD"},
      {"condition icd10:E11 between 2019 and 2020",
       "1:29: expected a date (YYYY-MM-DD), found \"2019\""},
      {"condition icd10:E11 in 0", "1:24: year must be in [1, 9999], found 0"},
      {"condition icd10:E11 at least 0 times",
       "1:30: the count in \"at least N times\" must be in [1, 1000000], found "
       "0"},
      {"condition icd10:E11 at least 2",
       "1:31: expected \"times\", found end of input"},
      {"condition icd10:E11 before drug atc:A10 within -5 days",
       "1:48: within days must be in [0, 36600], found -5"},
      {"condition icd10:E11 before sex = male",
       "1:28: expected an event (condition, drug, procedure, measurement, "
       "visit or observation), found \"sex\""},
      {"deceased group by age_band(0)",
       "1:28: age band width must be in [1, 120], found 0"},
      {"deceased group by age_band(121)",
       "1:28: age band width must be in [1, 120], found 121"},
      {"deceased group by sex, site, sex",
       "1:30: dimension \"sex\" repeated in group by"},
      {"deceased group by age_band(5), age_band(10)",
       "1:32: dimension \"age_band\" repeated in group by"},
      {"deceased group by",
       "1:18: expected a dimension (sex, age_band(W) or site), found end of "
       "input"},
      {"deceased group by sex,",
       "1:23: expected a dimension (sex, age_band(W) or site), found end of "
       "input"},
      {"deceased as of 2019-13-01", "1:16: invalid date \"2019-13-01\""},
      {"sex = woman",
       "1:7: expected female, male, other or unknown, found \"woman\""},
      {"sex female", "1:5: expected \"=\", found \"female\""},
      {"",
       "1:1: expected a criterion (sex, birth_year, age, deceased, condition, "
       "drug, procedure, measurement, visit, observation, \"not\" or \"(\"), "
       "found end of input"},
      {"deceased and",
       "1:13: expected a criterion (sex, birth_year, age, deceased, condition, "
       "drug, procedure, measurement, visit, observation, \"not\" or \"(\"), "
       "found end of input"},
      {"(deceased",
       "1:10: expected \"and\", \"or\" or \")\", found end of input"},
      {"deceased)",
       "1:9: expected \"and\", \"or\", \"group by\", \"as of\", \"codes\" or "
       "end of input, found \")\""},
      {"deceased group by sex sex",
       "1:23: expected \",\", \"as of\", \"codes\" or end of input, found "
       "\"sex\""},
      {"deceased as of 2020-01-01 x",
       "1:27: expected \"codes\" or end of input, found \"x\""},
      {"deceased codes",
       "1:15: expected mapped, equivalent or exact, found "
       "end of input"},
      {"deceased codes strict",
       "1:16: expected mapped, equivalent or exact, found \"strict\""},
      {"deceased codes exact as of 2020-01-01",
       "1:22: expected end of input, found \"as\""},
      {"deceased codes exact codes mapped",
       "1:22: expected end of input, found \"codes\""},
      {"deceased group by sex codes equivalent sex",
       "1:40: expected end of input, found \"sex\""},
      {"drug atc:A10 value > 3",
       "1:14: a value filter applies only to measurement or observation"},
      {"measurement loinc:1-1 value > x",
       "1:31: expected a number, found \"x\""},
      {"measurement loinc:1-1 value 3",
       "1:29: expected a comparison (=, <, <=, >, >=), found \"3\""},
      {"visit concept:92a01",
       "1:15: malformed concept code \"92a01\" (concept ids are digits)"},
      {"deceased # comment",
       "1:10: expected \"and\", \"or\", \"group by\", \"as of\", \"codes\" or "
       "end of input, found \"#\""},
      {"deceased\nand sex = femme",
       "2:11: expected female, male, other or unknown, found \"femme\""},
      {"deceased and \xC3\xA9",
       "1:14: expected a criterion (sex, birth_year, age, deceased, condition, "
       "drug, procedure, measurement, visit, observation, \"not\" or \"(\"), "
       "found byte 0xC3"},
      {"\xC3\xA9\xC3\xA9 deceased",
       "1:1: expected a criterion (sex, birth_year, age, deceased, condition, "
       "drug, procedure, measurement, visit, observation, \"not\" or \"(\"), "
       "found byte 0xC3"},
      {"age between 99999999999999999999 and 3",
       "1:13: integer \"99999999999999999999\" is out of range"},
  };
  for (const ErrorCase& c : cases) {
    EXPECT_EQ(ErrorOf(c.text), c.message) << c.text;
  }
}

TEST(ParserTest, ColumnsCountCharactersNotBytes) {
  // "é" is two bytes but one column; it is not valid anywhere, but the
  // position of a later error must still be right.
  EXPECT_EQ(ErrorOf("sex = é"),
            "1:7: expected female, male, other or unknown, found byte 0xC3");
}

TEST(ParserTest, NestingIsBounded) {
  std::string ok;
  for (int i = 0; i < kMaxDepth; ++i) ok += "not ";
  MustParse(ok + "deceased");
  std::string deep = ok + "not deceased";
  EXPECT_THAT(ErrorOf(deep), HasSubstr("nested more than 32 levels deep"));
  EXPECT_EQ(ErrorOf(deep).substr(0, 6), "1:129:");
  // Deep parentheses are refused before they exhaust the stack.
  std::string parens(100000, '(');
  EXPECT_EQ(ErrorOf(parens + "deceased"),
            "1:33: expression nested more than 32 levels deep");
  // Parentheses that build and/or nodes count those nodes too.
  std::string mixed;
  for (int i = 0; i < 20; ++i) mixed += "deceased and (deceased or ";
  mixed += "deceased";
  for (int i = 0; i < 20; ++i) mixed += ")";
  EXPECT_THAT(ErrorOf(mixed), HasSubstr("nested more than 32 levels deep"));
}

TEST(ParserTest, SizeIsBounded) {
  EXPECT_THAT(ErrorOf(std::string(kMaxQueryBytes + 1, ' ')),
              HasSubstr("longer than the limit"));
  std::string many = "condition [icd10:A00";
  for (int i = 1; i <= kMaxCodes; ++i) many += ", icd10:A" + std::to_string(i);
  many += "]";
  EXPECT_THAT(ErrorOf(many), HasSubstr("more than 2048 codes in the query"));
  std::string criteria = "deceased";
  for (int i = 1; i <= kMaxCriteria; ++i) criteria += " or deceased";
  EXPECT_THAT(ErrorOf(criteria), HasSubstr("more than 512 criteria"));
  std::string long_code = "condition icd10:" + std::string(41, 'A');
  EXPECT_EQ(ErrorOf(long_code), "1:17: code longer than 40 characters");
}

// Every outcome of untrusted text is either a query that validates and
// round-trips through its canonical text, or INVALID_ARGUMENT with a
// "line:column: " position.
void CheckOutcome(const std::string& text) {
  absl::StatusOr<v1::Query> q = ParseQuery(text);
  if (q.ok()) {
    ASSERT_TRUE(ValidateQuery(*q).ok()) << text;
    const std::string canonical = CanonicalText(*q);
    absl::StatusOr<v1::Query> back = ParseQuery(canonical);
    ASSERT_TRUE(back.ok()) << canonical << ": " << back.status();
    ASSERT_EQ(CanonicalText(*back), canonical) << text;
    return;
  }
  ASSERT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << text;
  const std::string message(q.status().message());
  size_t i = 0;
  auto digits = [&] {
    const size_t start = i;
    while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i;
    return i > start;
  };
  ASSERT_TRUE(digits() && i < message.size() && message[i++] == ':' &&
              digits() && message.compare(i, 2, ": ") == 0)
      << "no position in \"" << message << "\" for " << text;
}

TEST(ParserTest, MutatedQueriesNeverCrash) {
  const std::vector<std::string> seeds = {
      "condition [icd10:E11*, icd9:250*] and not drug atc:A10A*",
      "condition icd10:E11* before drug atc:A10BA02 within 365 days group by "
      "sex",
      "measurement loinc:4548-4 value >= 7 in 2019 group by age_band(10), sex",
      "(sex = female or birth_year < 1950) and age between 40 and 65 as of "
      "2020-02-29",
      "condition icd10:I10 between 2019-01-01 and 2019-06-30 at least 2 times",
  };
  const std::string alphabet =
      "()[],:*=<>-. \n\tabcdeinorstvwxyz0123456789ABEIZ_\x01\xC3\xA9";
  std::mt19937 rng(42);
  int parsed = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string text = seeds[rng() % seeds.size()];
    const int edits = 1 + rng() % 4;
    for (int e = 0; e < edits; ++e) {
      const size_t at = text.empty() ? 0 : rng() % text.size();
      switch (rng() % 4) {
        case 0:
          if (!text.empty()) text.erase(at, 1 + rng() % 3);
          break;
        case 1:
          text.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 2:
          if (!text.empty()) text[at] = alphabet[rng() % alphabet.size()];
          break;
        default: {  // Splice a piece of another seed.
          const std::string& other = seeds[rng() % seeds.size()];
          const size_t from = rng() % other.size();
          text.insert(at, other.substr(from, 1 + rng() % 12));
          break;
        }
      }
    }
    CheckOutcome(text);
    if (HasFailure()) return;
    parsed += ParseQuery(text).ok();
  }
  EXPECT_GT(parsed, 300);  // The mutations also produce valid queries.
}

TEST(ParserTest, RandomTokenSoupNeverCrashes) {
  const char* tokens[] = {
      "condition",  "drug",  "icd10",       ":",        "E11",    "*",
      "[",          "]",     ",",           "(",        ")",      "and",
      "or",         "not",   "sex",         "=",        "female", "age",
      "between",    "40",    "65",          "in",       "2019",   "2019-02-30",
      "2019-01-01", "at",    "least",       "times",    "before", "within",
      "days",       "group", "by",          "age_band", "site",   "as",
      "of",         "value", ">=",          "-3",       "1e5",    "deceased",
      "birth_year", "<",     "measurement", "loinc",    "4548-4", "icd10:"};
  std::mt19937 rng(1234);
  for (int round = 0; round < 20000; ++round) {
    std::string text;
    const int n = 1 + rng() % 14;
    for (int i = 0; i < n; ++i) {
      text += tokens[rng() % std::size(tokens)];
      if (rng() % 4) text += " ";
    }
    CheckOutcome(text);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace passerelle::query
