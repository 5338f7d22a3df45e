#include "query/validate.h"

#include <cmath>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "query/limits.h"
#include "query/parser.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;
using ::testing::HasSubstr;

v1::Query FromText(const std::string& textproto) {
  v1::Query q;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(textproto, &q))
      << textproto;
  return q;
}

std::string ErrorOf(const v1::Query& q) {
  absl::Status s = ValidateQuery(q);
  EXPECT_FALSE(s.ok()) << q.ShortDebugString();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.message());
}

// A valid event criterion, as text proto, to build bad cases around.
constexpr char kE11[] =
    "criterion { event { event { domain: DOMAIN_CONDITION "
    "codes { vocabulary: 'icd10' code: 'E11' prefix: true } } } }";

TEST(ValidateTest, ParsedQueriesAreValid) {
  for (const char* text : {
           "condition icd10:E11*",
           "condition icd10:E11* and sex = female and age between 40 and 65",
           "condition [icd10:E11*, icd9:250*] and not drug atc:A10A*",
           "condition icd10:I10* at least 2 times",
           "condition icd10:E11* before drug atc:A10BA02 within 365 days "
           "group by sex",
           "measurement loinc:4548-4 value >= 7 in 2019 group by "
           "age_band(10), sex",
           "birth_year < 1950 or deceased as of 2020-02-29",
       }) {
    absl::StatusOr<v1::Query> q = ParseQuery(text);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_TRUE(ValidateQuery(*q).ok()) << text << ": " << ValidateQuery(*q);
  }
}

TEST(ValidateTest, ExampleFromTheBrief) {
  v1::Query q = FromText(std::string("where { and { terms { ") + kE11 +
                         " } terms { criterion { event { event { domain: "
                         "DOMAIN_CONDITION codes { vocabulary: 'icd11' code: "
                         "'5A11' } } } } } } }");
  EXPECT_EQ(ErrorOf(q),
            "where.and.terms[1].criterion.event.event.codes[0]: unknown "
            "vocabulary \"icd11\"");
}

struct Case {
  const char* textproto;
  const char* message;
};

TEST(ValidateTest, MalformedAsts) {
  const Case cases[] = {
      {"", "where: missing expression"},
      {"where {}", "where: empty expression (none of criterion, and, or, not)"},
      {"where { and {} }", "where.and: empty term list"},
      {"where { or { terms {} } }",
       "where.or.terms[0]: empty expression (none of criterion, and, or, not)"},
      {"where { not { criterion {} } }",
       "where.not.criterion: empty criterion"},
      {"where { criterion { sex: SEX_UNSPECIFIED } }",
       "where.criterion.sex: invalid sex 0"},
      {"where { criterion { sex: 9 } }", "where.criterion.sex: invalid sex 9"},
      {"where { criterion { deceased: true } } code_matching: 7",
       "code_matching: unknown code matching 7 (mapped, equivalent or exact)"},
      {"where { criterion { birth_year {} } }",
       "where.criterion.birth_year: range has neither min nor max"},
      {"where { criterion { age { min: 65 max: 40 } } }",
       "where.criterion.age: inverted range: min 65 is greater than max 40"},
      {"where { criterion { age { max: 200 } } }",
       "where.criterion.age.max: 200 is outside [0, 150]"},
      {"where { criterion { age { min: -1 } } }",
       "where.criterion.age.min: -1 is outside [0, 150]"},
      {"where { criterion { birth_year { min: 0 } } }",
       "where.criterion.birth_year.min: 0 is outside [1, 9999]"},
      {"where { criterion { deceased: false } }",
       "where.criterion.deceased: must be true"},
      {"where { criterion { event {} } }",
       "where.criterion.event.event: missing event"},
      {"where { criterion { event { event { codes { vocabulary: 'icd10' code: "
       "'E11' } } } } }",
       "where.criterion.event.event.domain: invalid domain 0"},
      {"where { criterion { event { event { domain: 77 codes { vocabulary: "
       "'icd10' code: 'E11' } } } } }",
       "where.criterion.event.event.domain: invalid domain 77"},
      {"where { criterion { event { event { domain: DOMAIN_DRUG } } } }",
       "where.criterion.event.event.codes: empty code set"},
      {"where { criterion { event { event { domain: DOMAIN_DRUG codes { "
       "vocabulary: 'ATC' code: 'A10' } } } } }",
       "where.criterion.event.event.codes[0]: unknown vocabulary \"ATC\""},
      {"where { criterion { event { event { domain: DOMAIN_DRUG codes { "
       "vocabulary: 'atc' code: 'A10' } codes { vocabulary: 'atc' } } } } }",
       "where.criterion.event.event.codes[1]: empty code"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'e11.9' } } } } }",
       "where.criterion.event.event.codes[0]: code \"e11.9\" is not normalised "
       "(expected \"E119\")"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: ' I10' } } } } }",
       "where.criterion.event.event.codes[0]: code \" I10\" is not normalised "
       "(expected \"I10\")"},
      {"where { criterion { event { event { domain: DOMAIN_VISIT codes { "
       "vocabulary: 'concept' code: '92A' } } } } }",
       "where.criterion.event.event.codes[0]: malformed concept code \"92A\""},
      {"where { criterion { event { event { domain: DOMAIN_VISIT codes { "
       "vocabulary: 'loinc' code: '-1' } } } } }",
       "where.criterion.event.event.codes[0]: malformed loinc code \"-1\""},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'E11' } value { op: COMPARISON_GE number: 7 "
       "} } } } }",
       "where.criterion.event.event.value: a value filter applies only to "
       "measurement or observation"},
      {"where { criterion { event { event { domain: DOMAIN_MEASUREMENT codes { "
       "vocabulary: 'loinc' code: '4548-4' } value { number: 7 } } } } }",
       "where.criterion.event.event.value.op: invalid comparison 0"},
      {"where { criterion { event { event { domain: DOMAIN_MEASUREMENT codes { "
       "vocabulary: 'loinc' code: '4548-4' } value { op: COMPARISON_GE number: "
       "inf } } } } }",
       "where.criterion.event.event.value.number: not a finite number"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'E11' } } window { start { year: 2019 month: "
       "1 day: 1 } } } } }",
       "where.criterion.event.window.end: missing"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'E11' } } window { start { year: 2019 month: "
       "2 day: 29 } end { year: 2019 month: 3 day: 1 } } } } }",
       "where.criterion.event.window.start: invalid date 2019-02-29"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'E11' } } window { start { year: 2019 month: "
       "3 day: 1 } end { year: 2019 month: 2 day: 28 } } } } }",
       "where.criterion.event.window: inverted window: start 2019-03-01 is "
       "after end 2019-02-28"},
      {"where { criterion { event { event { domain: DOMAIN_CONDITION codes { "
       "vocabulary: 'icd10' code: 'E11' } } min_count: -1 } } }",
       "where.criterion.event.min_count: -1 is outside [0, 1000000]"},
      {"where { criterion { sequence { first { domain: DOMAIN_CONDITION codes "
       "{ "
       "vocabulary: 'icd10' code: 'E11' } } } } }",
       "where.criterion.sequence.second: missing event"},
      {"where { criterion { sequence { first { domain: DOMAIN_CONDITION codes "
       "{ "
       "vocabulary: 'icd10' code: 'E11' } } second { domain: DOMAIN_DRUG codes "
       "{ vocabulary: 'atc' code: 'A10' } } has_within: true within_days: -1 } "
       "} }",
       "where.criterion.sequence.within_days: -1 is outside [0, 36600]"},
      {"where { criterion { sequence { first { domain: DOMAIN_CONDITION codes "
       "{ "
       "vocabulary: 'icd10' code: 'E11' } } second { domain: DOMAIN_DRUG codes "
       "{ vocabulary: 'atc' code: 'A10' } } within_days: 30 } } }",
       "where.criterion.sequence.within_days: set without has_within"},
      {"where { criterion { deceased: true } } group_by {}",
       "group_by[0].kind: invalid dimension kind 0"},
      {"where { criterion { deceased: true } } group_by { kind: AGE_BAND }",
       "group_by[0].width: age band width 0 is outside [1, 120]"},
      {"where { criterion { deceased: true } } group_by { kind: SEX width: 10 "
       "}",
       "group_by[0].width: set on a dimension other than AGE_BAND"},
      {"where { criterion { deceased: true } } group_by { kind: SEX } group_by "
       "{ kind: SITE } group_by { kind: SEX }",
       "group_by[2]: dimension \"sex\" repeated"},
      {"where { criterion { deceased: true } } as_of { year: 2019 month: 2 "
       "day: 29 }",
       "as_of: invalid date 2019-02-29"},
      {"where { criterion { deceased: true } } as_of {}",
       "as_of: invalid date 0000-00-00"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ErrorOf(FromText(c.textproto)), c.message) << c.textproto;
  }
}

TEST(ValidateTest, LeapDaysAndCalendar) {
  auto date = [](int y, int m, int d) {
    v1::Date out;
    out.set_year(y);
    out.set_month(m);
    out.set_day(d);
    return out;
  };
  EXPECT_TRUE(IsValidDate(date(2020, 2, 29)));
  EXPECT_TRUE(IsValidDate(date(2000, 2, 29)));
  EXPECT_FALSE(IsValidDate(date(1900, 2, 29)));
  EXPECT_FALSE(IsValidDate(date(2019, 2, 29)));
  EXPECT_FALSE(IsValidDate(date(2019, 4, 31)));
  EXPECT_TRUE(IsValidDate(date(2019, 12, 31)));
  EXPECT_FALSE(IsValidDate(date(2019, 0, 1)));
  EXPECT_FALSE(IsValidDate(date(0, 1, 1)));
  EXPECT_FALSE(IsValidDate(date(10000, 1, 1)));
  EXPECT_LT(CompareDates(date(2019, 12, 31), date(2020, 1, 1)), 0);
  EXPECT_GT(CompareDates(date(2020, 2, 1), date(2020, 1, 31)), 0);
  EXPECT_EQ(CompareDates(date(2020, 2, 1), date(2020, 2, 1)), 0);
}

TEST(ValidateTest, NanIsRejected) {
  v1::Query q = FromText(
      "where { criterion { event { event { domain: DOMAIN_MEASUREMENT codes { "
      "vocabulary: 'loinc' code: '4548-4' } value { op: COMPARISON_GE } } } } "
      "}");
  q.mutable_where()
      ->mutable_criterion()
      ->mutable_event()
      ->mutable_event()
      ->mutable_value()
      ->set_number(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(ErrorOf(q),
            "where.criterion.event.event.value.number: not a finite number");
}

TEST(ValidateTest, DepthIsBounded) {
  v1::Query q;
  v1::Expr* e = q.mutable_where();
  for (int i = 0; i < kMaxDepth; ++i) e = e->mutable_not_();
  e->mutable_criterion()->set_deceased(true);
  EXPECT_TRUE(ValidateQuery(q).ok()) << ValidateQuery(q);
  // One more level, as an and.
  v1::Query deeper;
  *deeper.mutable_where()->mutable_and_()->add_terms() = q.where();
  EXPECT_THAT(ErrorOf(deeper), HasSubstr("nested more than 32 levels deep"));
  // A very deep tree (built without recursion) is refused, not overflowed.
  v1::Query huge;
  e = huge.mutable_where();
  for (int i = 0; i < 10000; ++i) e = e->mutable_not_();
  EXPECT_THAT(ErrorOf(huge), HasSubstr("nested more than 32 levels deep"));
}

TEST(ValidateTest, SizeIsBounded) {
  v1::Query q;
  v1::ExprList* list = q.mutable_where()->mutable_or_();
  for (int i = 0; i <= kMaxCriteria; ++i) {
    list->add_terms()->mutable_criterion()->set_deceased(true);
  }
  EXPECT_THAT(ErrorOf(q), HasSubstr("more than 512 criteria in the query"));

  v1::Query codes;
  v1::EventSpec* spec = codes.mutable_where()
                            ->mutable_criterion()
                            ->mutable_event()
                            ->mutable_event();
  spec->set_domain(v1::DOMAIN_CONDITION);
  for (int i = 0; i <= kMaxCodes; ++i) {
    v1::Code* c = spec->add_codes();
    c->set_vocabulary("icd10");
    c->set_code("A" + std::to_string(i));
  }
  EXPECT_EQ(ErrorOf(codes),
            "where.criterion.event.event.codes: more than 2048 codes in the "
            "query");
  spec->mutable_codes()->RemoveLast();
  EXPECT_TRUE(ValidateQuery(codes).ok());

  v1::Query nodes;
  v1::ExprList* l = nodes.mutable_where()->mutable_and_();
  for (int i = 0; i < 200; ++i) {
    v1::Expr* t = l->add_terms();
    for (int j = 0; j < 10; ++j) t = t->mutable_not_();
    t->mutable_criterion()->set_deceased(true);
  }
  EXPECT_THAT(ErrorOf(nodes), HasSubstr("expression nodes in the query"));

  v1::Query long_code = FromText(
      "where { criterion { event { event { domain: DOMAIN_DRUG codes { "
      "vocabulary: 'atc' } } } } }");
  long_code.mutable_where()
      ->mutable_criterion()
      ->mutable_event()
      ->mutable_event()
      ->mutable_codes(0)
      ->set_code(std::string(1000, 'A'));
  EXPECT_EQ(ErrorOf(long_code),
            "where.criterion.event.event.codes[0]: code longer than 40 "
            "characters");
}

TEST(ValidateTest, UntrustedStringsAreEscapedAndShortened) {
  v1::Query q = FromText(
      "where { criterion { event { event { domain: DOMAIN_DRUG codes { "
      "code: 'A' } } } } }");
  q.mutable_where()
      ->mutable_criterion()
      ->mutable_event()
      ->mutable_event()
      ->mutable_codes(0)
      ->set_vocabulary(std::string("\n\x01") + std::string(500, 'x'));
  const std::string message = ErrorOf(q);
  EXPECT_THAT(message, HasSubstr("unknown vocabulary \"\\n\\001xxx"));
  EXPECT_THAT(message, HasSubstr("...\""));
  EXPECT_LT(message.size(), 150u);
}

}  // namespace
}  // namespace passerelle::query
