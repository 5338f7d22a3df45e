#include "policy/query_features.h"

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace passerelle::policy {
namespace {

namespace v1 = ::passerelle::v1;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Query Q(const std::string& text) {
  v1::Query q;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &q)) << text;
  return q;
}

TEST(QueryFeaturesTest, CollectsDomainsVocabulariesCriteriaAndDimensions) {
  // condition [icd10:E11*, icd9:250*] before drug atc:A10BA02 within 365 days
  // and not (sex = male or age between 40 and 65)
  // group by sex, age_band(10)
  v1::Query q = Q(R"txt(
    where {
      and {
        terms {
          criterion {
            sequence {
              first {
                domain: DOMAIN_CONDITION
                codes { vocabulary: "icd10" code: "E11" prefix: true }
                codes { vocabulary: "icd9" code: "250" prefix: true }
              }
              second {
                domain: DOMAIN_DRUG
                codes { vocabulary: "atc" code: "A10BA02" }
              }
              has_within: true
              within_days: 365
            }
          }
        }
        terms {
          not {
            or {
              terms { criterion { sex: SEX_MALE } }
              terms { criterion { age { min: 40 max: 65 } } }
            }
          }
        }
        terms {
          criterion {
            event {
              event {
                domain: DOMAIN_MEASUREMENT
                codes { vocabulary: "loinc" code: "4548-4" }
                value { op: COMPARISON_GE number: 7 }
              }
              window {
                start { year: 2019 month: 1 day: 1 }
                end { year: 2019 month: 12 day: 31 }
              }
              min_count: 2
            }
          }
        }
      }
    }
    group_by { kind: SEX }
    group_by { kind: AGE_BAND width: 10 }
  )txt");
  absl::StatusOr<QueryFeatures> f = ExtractFeatures(q);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT(f->domains, ElementsAre("condition", "drug", "measurement"));
  EXPECT_THAT(f->vocabularies, ElementsAre("atc", "icd10", "icd9", "loinc"));
  EXPECT_THAT(f->criteria, ElementsAre("age", "count", "event", "not",
                                       "sequence", "sex", "value", "window"));
  EXPECT_THAT(f->dimensions, ElementsAre("sex", "age_band"));
  EXPECT_THAT(f->age_band_widths, ElementsAre(10));
}

TEST(QueryFeaturesTest, RejectsMalformedAsts) {
  EXPECT_EQ(ExtractFeatures(Q("")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      std::string(
          ExtractFeatures(Q("where { criterion {} }")).status().message()),
      HasSubstr("empty criterion"));
  EXPECT_THAT(std::string(ExtractFeatures(
                              Q("where { criterion { event { event { domain: "
                                "DOMAIN_DRUG } } } }"))
                              .status()
                              .message()),
              HasSubstr("empty code set"));
  EXPECT_THAT(
      std::string(ExtractFeatures(Q("where { criterion { deceased: true "
                                    "} } group_by { kind: AGE_BAND }"))
                      .status()
                      .message()),
      HasSubstr("width"));
  EXPECT_THAT(
      std::string(
          ExtractFeatures(Q("where { and { terms {} } }")).status().message()),
      HasSubstr("empty expression"));
}

TEST(QueryFeaturesTest, BreakdownCellsFollowThePublicDomains) {
  EXPECT_EQ(*BreakdownCells(Q(""), 2), 1);
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: SEX }"), 2), 4);
  // [0,10) ... [100,110), then 110+.
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: AGE_BAND width: 10 }"), 2), 12);
  // [0,7) ... [105,112), then 112+.
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: AGE_BAND width: 7 }"), 2), 17);
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: AGE_BAND width: 120 }"), 2), 2);
  EXPECT_FALSE(
      BreakdownCells(Q("group_by { kind: AGE_BAND width: 200 }"), 2).ok());
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: SITE }"), 3), 3);
  EXPECT_EQ(*BreakdownCells(Q("group_by { kind: SEX } group_by { kind: "
                              "AGE_BAND width: 5 } group_by { kind: SITE }"),
                            2),
            4 * 23 * 2);
  EXPECT_FALSE(
      BreakdownCells(Q("group_by { kind: AGE_BAND width: 0 }"), 2).ok());
}

TEST(QueryFeaturesTest, VocabularyFamiliesCoverTheirVariants) {
  EXPECT_TRUE(VocabularyCovers("icd10", "icd10"));
  EXPECT_TRUE(VocabularyCovers("icd10", "cim10"));
  EXPECT_TRUE(VocabularyCovers("icd10", "icd10cm"));
  EXPECT_TRUE(VocabularyCovers("icd9", "icd9cm"));
  // A variant does not cover the family, which reaches every variant.
  EXPECT_FALSE(VocabularyCovers("cim10", "icd10"));
  EXPECT_FALSE(VocabularyCovers("icd10", "icd9"));
  EXPECT_FALSE(VocabularyCovers("atc", "rxnorm"));
}

}  // namespace
}  // namespace passerelle::policy
