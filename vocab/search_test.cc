#include "vocab/search.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vocab/test_fixture.h"

namespace passerelle::vocab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TempDir;
using testing::WriteFixtureNomenclatures;

class SearchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFixtureNomenclatures(dir_);
    absl::StatusOr<std::unique_ptr<Labels>> labels = Labels::Load(dir_.path());
    ASSERT_TRUE(labels.ok()) << labels.status();
    labels_ = std::move(*labels);
  }

  // "vocabulary:code" of each hit, best first.
  std::vector<std::string> Codes(absl::string_view text,
                                 const SearchOptions& options = {}) {
    absl::StatusOr<SearchResult> r = Search(*labels_, text, options);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> out;
    if (!r.ok()) return out;
    for (const SearchHit& h : r->hits) {
      out.push_back(absl::StrCat(h.vocabulary, ":", h.labels.code));
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Labels> labels_;
};

TEST_F(SearchTest, AccentsCaseAndPunctuationDoNotMatter) {
  const std::vector<std::string> expected = Codes("diabète");
  EXPECT_FALSE(expected.empty());
  for (absl::string_view variant :
       {"diabete", "DIABETE", "Diabéte", "  diabète,  ", "DIABE\xCC\x80TE"}) {
    EXPECT_EQ(Codes(variant), expected) << variant;
  }
  // Labels starting with the word, categories (3 characters) first; then
  // a label holding it as a whole word; then labels with a word starting with
  // it (English "diabetes" starts with the folded "diabete").
  EXPECT_THAT(expected,
              ElementsAre("cim10:E10", "cim10:E11", "cim10:E14", "cim10:O24",
                          "cim10:E110", "cim10:E119", "icd9cm:25000", "atc:A10",
                          "icd10cm:E11", "icd10cm:E119", "icd10cm:E1165"));
  EXPECT_THAT(Codes("gastro oesophagien"), ElementsAre("cim10:K21"));
  EXPECT_THAT(Codes("doigt a ressort"), ElementsAre("cim10:M653"));
}

TEST_F(SearchTest, EveryWordMustMatchWithinOneLabel) {
  EXPECT_THAT(Codes("diabète grossesse"), ElementsAre("cim10:O24"));
  EXPECT_THAT(Codes("sucré type 2 sans"), ElementsAre("cim10:E119"));
  EXPECT_TRUE(Codes("diabète zzz").empty());
  // A French word and an English word do not combine.
  EXPECT_TRUE(Codes("sucré mellitus").empty());
  // Words are matched at their start: "diab" finds diabète, "abete" not.
  EXPECT_FALSE(Codes("diab").empty());
  EXPECT_TRUE(Codes("abete").empty());
}

TEST_F(SearchTest, RankingCodeThenLabelThenWords) {
  // The code itself first (CIM-10 before ICD-10-CM), then codes under it.
  EXPECT_THAT(Codes("E11"),
              ElementsAre("cim10:E11", "icd10cm:E11", "cim10:E110",
                          "cim10:E119", "icd10cm:E119", "icd10cm:E1165"));
  EXPECT_THAT(Codes("e11.9"), ElementsAre("cim10:E119", "icd10cm:E119"));
  // The label equal to the words, then labels starting with them (shorter
  // codes first), then labels holding them as whole words.
  std::vector<std::string> metformin = Codes("metformin");
  EXPECT_THAT(metformin, ElementsAre("atc:A10BA02", "cip13:3400922086965",
                                     "din:02242974", "din:02242975"));
  absl::StatusOr<SearchResult> r = Search(*labels_, "metformin");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hits[0].kind, MatchKind::kLabelEquals);
  EXPECT_EQ(r->hits[0].language, Language::kEnglish);
  EXPECT_EQ(r->hits[0].labels.fr(), "METFORMINE");
  EXPECT_EQ(r->hits[1].kind, MatchKind::kLabelStarts);
  EXPECT_EQ(r->hits[1].language, Language::kFrench);
  EXPECT_EQ(r->hits.back().kind, MatchKind::kAllWords);
  for (size_t i = 1; i < r->hits.size(); ++i) {
    EXPECT_LE(r->hits[i - 1].kind, r->hits[i].kind);
  }
}

TEST_F(SearchTest, LanguageVocabularyAndLimit) {
  SearchOptions fr;
  fr.language = Language::kFrench;
  EXPECT_THAT(Codes("metformin", fr),
              ElementsAre("atc:A10BA02", "cip13:3400922086965"));
  SearchOptions en;
  en.language = Language::kEnglish;
  EXPECT_THAT(Codes("diabète", en),
              ElementsAre("icd9cm:25000", "icd10cm:E11", "icd10cm:E119",
                          "icd10cm:E1165"));
  EXPECT_THAT(Codes("type 2 diabetes", en),
              ElementsAre("icd10cm:E11", "icd10cm:E119", "icd10cm:E1165"));

  SearchOptions icd10;
  icd10.vocabularies = {"icd10"};
  EXPECT_THAT(Codes("hypertension", icd10),
              ElementsAre("cim10:I10", "icd10cm:I10"));
  SearchOptions icd9;
  icd9.vocabularies = {"icd9"};
  EXPECT_THAT(Codes("hypertension", icd9), ElementsAre("icd9cm:4019"));
  SearchOptions atc;
  atc.vocabularies = {"atc"};
  EXPECT_THAT(Codes("metformin", atc), ElementsAre("atc:A10BA02"));

  SearchOptions one;
  one.limit = 1;
  absl::StatusOr<SearchResult> r = Search(*labels_, "diabète", one);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hits.size(), 1u);
  EXPECT_EQ(r->total, 11);
  EXPECT_EQ(r->hits[0].labels.code, "E10");
}

TEST_F(SearchTest, BadQueriesAreRefused) {
  EXPECT_EQ(Search(*labels_, " ,;- ").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      Search(*labels_, std::string(kMaxSearchBytes + 1, 'a')).status().code(),
      absl::StatusCode::kInvalidArgument);
  std::string many;
  for (size_t i = 0; i <= kMaxSearchWords; ++i) absl::StrAppend(&many, "w ");
  EXPECT_THAT(Search(*labels_, many).status().message(), HasSubstr("words"));
  SearchOptions zero;
  zero.limit = 0;
  EXPECT_EQ(Search(*labels_, "diabete", zero).status().code(),
            absl::StatusCode::kInvalidArgument);
  SearchOptions unknown;
  unknown.vocabularies = {"klingon"};
  EXPECT_THAT(Search(*labels_, "diabete", unknown).status().message(),
              HasSubstr("klingon"));
  // Invalid UTF-8 in the query folds to separators, never crashes.
  EXPECT_TRUE(Search(*labels_, "diab\xE8te").ok());
}

}  // namespace
}  // namespace passerelle::vocab
