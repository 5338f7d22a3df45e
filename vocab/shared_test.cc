// The labels and the search on the real public nomenclatures in
// ../shared/data (skipped when absent).
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vocab/labels.h"
#include "vocab/search.h"
#include "vocab/test_fixture.h"

namespace passerelle::vocab {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Each test reads only the vocabularies it needs: under the sanitizers a
// whole load of the 34 MB takes seconds.
class SharedNomenclaturesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::SharedNomenclatures();
    if (dir_.empty()) {
      GTEST_SKIP() << "../shared/data/snds/nomenclatures is absent (set "
                      "PASSERELLE_SOURCE_DIR to the repository root)";
    }
  }

  void Load(std::vector<std::string> vocabularies) {
    LoadOptions options;
    options.vocabularies = std::move(vocabularies);
    absl::StatusOr<std::unique_ptr<Labels>> labels =
        Labels::Load(dir_, options);
    ASSERT_TRUE(labels.ok()) << labels.status();
    labels_ = std::move(*labels);
  }

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

  std::string dir_;
  std::unique_ptr<Labels> labels_;
};

TEST_F(SharedNomenclaturesTest, EveryFileIsPresentAndRead) {
  Load({});
  for (const SourceReport& s : labels_->sources()) {
    SCOPED_TRACE(s.file);
    EXPECT_TRUE(s.present);
    EXPECT_GT(s.rows, 0);
  }
  // Sizes from the files' own documentation (crosswalks/README.md,
  // ../shared/data/README.md): about 18,300 CIM-10 codes, 94,127 ICD-10-CM
  // titles, 14,567 ICD-9-CM titles, 56,865 DINs, 20,882 CIP13.
  EXPECT_GT(labels_->table("cim10")->entries.size(), 18000u);
  EXPECT_EQ(labels_->table("icd10cm")->entries.size(), 94127u);
  EXPECT_EQ(labels_->table("icd9cm")->entries.size(), 14567u);
  EXPECT_EQ(labels_->table("cip13")->entries.size(), 20882u);
  // 56,865 distinct DINs, less the DPD's "Not Applicable" placeholder.
  EXPECT_EQ(labels_->table("din")->entries.size(), 56864u);
  EXPECT_GT(labels_->table("ccam")->entries.size(), 8000u);
}

TEST_F(SharedNomenclaturesTest, DiabeteFindsE11InFrench) {
  Load({"icd10", "icd9"});
  SearchOptions fr;
  fr.language = Language::kFrench;
  for (absl::string_view text : {"diabète", "DIABETE", "diabete"}) {
    EXPECT_THAT(Codes(text, fr), ::testing::Contains("cim10:E11")) << text;
  }
  EXPECT_THAT(Codes("diabète type 2", fr)[0], "cim10:E11");
  std::optional<CodeLabels> e11 = labels_->Find("icd10", "E11");
  ASSERT_TRUE(e11.has_value());
  EXPECT_EQ(e11->fr(), "Diabète sucré de type 2");
  EXPECT_EQ(e11->en(), "Type 2 diabetes mellitus");
  EXPECT_EQ(labels_->Find("icd10", "E11.9")->en(),
            "Type 2 diabetes mellitus without complications");
  EXPECT_THAT(labels_->Find("icd9", "250.00")->en(),
              StartsWith("Diabetes mellitus without mention of complication"));
}

TEST_F(SharedNomenclaturesTest, MetforminFindsA10BA02InBothLanguages) {
  Load({"atc", "din", "cip13"});
  std::vector<std::string> hits = Codes("metformin");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0], "atc:A10BA02");
  SearchOptions fr;
  fr.language = Language::kFrench;
  EXPECT_EQ(Codes("metformine", fr)[0], "atc:A10BA02");
  std::optional<CodeLabels> atc = labels_->Find("atc", "A10BA02");
  ASSERT_TRUE(atc.has_value());
  EXPECT_EQ(atc->fr(), "METFORMINE");
  EXPECT_EQ(atc->en(), "METFORMIN");
  // The crosswalk README's spot check: DIN 02099233 is GLUCOPHAGE.
  EXPECT_THAT(labels_->Find("din", "02099233")->en(), HasSubstr("GLUCOPHAGE"));
}

TEST_F(SharedNomenclaturesTest, FileQuirksAreHandled) {
  Load({"ccam", "cim10", "ucd"});
  // IR_CCAM_V63: byte-order mark, line breaks inside codes and labels.
  EXPECT_THAT(labels_->Find("ccam", "JANH798")->fr(),
              HasSubstr("Destruction de tumeur rénale"));
  EXPECT_THAT(labels_->Find("ccam", "AHQP001")->fr(),
              StartsWith("Électromyographie"));
  // IR_CIM_V's doubled quoting.
  EXPECT_EQ(labels_->Find("cim10", "M653")->fr(), "Doigt \"à ressort\"");
  // NU_UCD_R's zero-padded codes.
  EXPECT_THAT(labels_->Find("ucd", "9231824")->fr(), StartsWith("CEPROTIN"));
  // ATIH's `+` extensions are counted, not labelled.
  for (const SourceReport& s : labels_->sources()) {
    if (s.file == "snds/nomenclatures/MS_CIM_V.csv") {
      EXPECT_GT(s.invalid, 0);
      ASSERT_FALSE(s.invalid_examples.empty());
      EXPECT_THAT(s.invalid_examples[0], HasSubstr("+"));
    }
  }
}

}  // namespace
}  // namespace passerelle::vocab
