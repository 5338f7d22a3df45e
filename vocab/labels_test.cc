#include "vocab/labels.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vocab/sources.h"
#include "vocab/test_fixture.h"

namespace passerelle::vocab {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::kCimHeader;
using testing::TempDir;
using testing::WriteFixtureNomenclatures;

std::unique_ptr<Labels> LoadOrDie(const std::string& dir,
                                  const LoadOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<Labels>> labels = Labels::Load(dir, options);
  EXPECT_TRUE(labels.ok()) << labels.status();
  return labels.ok() ? std::move(*labels) : nullptr;
}

const SourceReport* Report(const Labels& labels, const std::string& file) {
  for (const SourceReport& s : labels.sources()) {
    if (s.file == file) return &s;
  }
  return nullptr;
}

class LabelsTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteFixtureNomenclatures(dir_); }
  TempDir dir_;
};

TEST_F(LabelsTest, FrenchCim10FromSemicolonFilesWithAccents) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  std::optional<CodeLabels> e11 = labels->Find("cim10", "E11");
  ASSERT_TRUE(e11.has_value());
  // IR_CIM_V wins over MS_CIM_V for a code both label.
  EXPECT_EQ(e11->fr(), "Diabète sucré de type 2");
  EXPECT_EQ(e11->source[0], "cim10");
  EXPECT_EQ(e11->en(), "");
  // MS_CIM_V fills the codes IR_CIM_V lacks; white space runs collapse.
  ASSERT_TRUE(labels->Find("cim10", "E14").has_value());
  EXPECT_EQ(labels->Find("cim10", "E14")->fr(),
            "Diabète sucré, sans précision");
  // Codes are normalised as the query language does: case, dots, spaces.
  ASSERT_TRUE(labels->Find("cim10", " e11.9 ").has_value());
  EXPECT_EQ(labels->Find("cim10", " e11.9 ")->code, "E119");
  // IR_CIM_V's doubled quoting is unwrapped.
  EXPECT_EQ(labels->Find("cim10", "M653")->fr(), "Doigt \"à ressort\"");
}

TEST_F(LabelsTest, Icd10FamilyShowsCim10InFrenchAndIcd10CmInEnglish) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  std::optional<CodeLabels> l = labels->Find("icd10", "E11.9");
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->fr(), "Diabète sucré de type 2, sans complication");
  EXPECT_EQ(l->source[0], "cim10");
  EXPECT_EQ(l->en(), "Type 2 diabetes mellitus without complications");
  EXPECT_EQ(l->source[1], "icd10cm");
  // A code only ICD-10-CM has: English only.
  l = labels->Find("icd10", "E1165");
  ASSERT_TRUE(l.has_value());
  EXPECT_EQ(l->fr(), "");
  EXPECT_EQ(l->en(), "Type 2 diabetes mellitus with hyperglycemia");
  // icd10cm alone does not borrow the French label.
  EXPECT_EQ(labels->Find("icd10cm", "E119")->fr(), "");
  // icd9 reaches the ICD-9-CM titles.
  l = labels->Find("icd9", "250.00");
  ASSERT_TRUE(l.has_value());
  EXPECT_THAT(l->en(), HasSubstr("Diabetes mellitus without mention"));
  EXPECT_EQ(l->source[1], "icd9cm");
  EXPECT_FALSE(labels->Find("icd10", "E12").has_value());
}

TEST_F(LabelsTest, DescribeGivesThePreferredLanguageElseTheOther) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  EXPECT_EQ(labels->Describe("icd10", "E11", Language::kFrench),
            "Diabète sucré de type 2");
  EXPECT_EQ(labels->Describe("icd10", "E11", Language::kEnglish),
            "Type 2 diabetes mellitus");
  // E1165 has no French label, E110 no English one.
  EXPECT_EQ(labels->Describe("icd10", "E1165", Language::kFrench),
            "Type 2 diabetes mellitus with hyperglycemia");
  EXPECT_EQ(labels->Describe("icd10", "E110", Language::kEnglish),
            "Diabète sucré de type 2, avec coma");
  EXPECT_EQ(labels->Describe("icd10ca", "E11", Language::kFrench), "");
  EXPECT_EQ(labels->Describe("din", "99999999", Language::kEnglish), "");
}

TEST_F(LabelsTest, VocabulariesWithoutOpenLabelsSaySo) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  EXPECT_FALSE(labels->Find("icd10ca", "E11").has_value());
  EXPECT_FALSE(labels->Find("cci", "1.IJ.50.GQ-AZ").has_value());
  EXPECT_THAT(UnlabelledReason("icd10ca"), HasSubstr("CIHI"));
  EXPECT_THAT(UnlabelledReason("cci"), HasSubstr("CIHI"));
  EXPECT_THAT(UnlabelledReason("snomed"), HasSubstr("licensed"));
  EXPECT_THAT(UnlabelledReason("nosuch"), HasSubstr("not a known vocabulary"));
  for (absl::string_view v : {"icd10", "icd9", "cim10", "icd10cm", "icd9cm",
                              "atc", "ccam", "cip13", "ucd", "din"}) {
    EXPECT_EQ(UnlabelledReason(v), "") << v;
  }
}

TEST_F(LabelsTest, AtcInBothLanguagesAndDrugProducts) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  std::optional<CodeLabels> atc = labels->Find("atc", "a10ba02");
  ASSERT_TRUE(atc.has_value());
  EXPECT_EQ(atc->fr(), "METFORMINE");
  // The DPD label most rows give (2 of 3 write METFORMIN).
  EXPECT_EQ(atc->en(), "METFORMIN");
  // Level files in level order: ATC3 labels A10B, not ATC5's repeat; the
  // trailing space is trimmed.
  EXPECT_EQ(labels->Find("atc", "A10B")->fr(),
            "HYPOGLYCEMIANTS, INSULINES EXCLUES");
  EXPECT_EQ(labels->Find("atc", "A")->fr(), "Système digestif et métabolisme");
  // A DIN on two DPD rows: both brand names.
  EXPECT_EQ(labels->Find("din", "02242975")->en(),
            "APO-METFORMIN 850 / METFORMIN, 850 MG");
  EXPECT_EQ(labels->Find("din", "02099233")->en(), "GLUCOPHAGE");
  EXPECT_EQ(labels->Find("cip13", "3400922086965")->fr(),
            "METFORMINE EG 850 mg, comprimé pelliculé — plaquette(s) de 30 "
            "comprimé(s)");
  // UCD: NU_UCD_R's zero-padded 13 digits and the 7-digit UCD are one code.
  ASSERT_TRUE(labels->Find("ucd", "9231824").has_value());
  EXPECT_EQ(labels->Find("ucd", "0000009231824")->code, "9231824");
  EXPECT_EQ(labels->Find("ucd", "9231824")->fr(),
            "CEPROTIN 500 UI/5 ML — poudre et solvant pour solution "
            "injectable");
}

TEST_F(LabelsTest, CcamWithByteOrderMarkAndLineBreaksInFields) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  EXPECT_EQ(labels->Find("ccam", "AHQP001")->fr(),
            "Électromyographie par électrode de surface, sans enregistrement "
            "vidéo");
  // `"JANH798\n[A]"`: the code, with the note kept on the label.
  ASSERT_TRUE(labels->Find("ccam", "JANH798").has_value());
  EXPECT_EQ(labels->Find("ccam", "JANH798")->fr(),
            "Destruction de tumeur rénale par radiofréquence [A]");
  EXPECT_EQ(labels->Find("ccam", "HBLD318")->fr(),
            "Pose d'une couronne dentaire Avec ou sans recouvrement");
}

TEST_F(LabelsTest, CodesNoQueryCanCarryAreCountedWithTheirLineNotLabelled) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  EXPECT_FALSE(labels->Find("cim10", "F55+0").has_value());
  const SourceReport* cim = Report(*labels, "snds/nomenclatures/IR_CIM_V.csv");
  ASSERT_NE(cim, nullptr);
  EXPECT_TRUE(cim->present);
  EXPECT_EQ(cim->rows, 9);
  EXPECT_EQ(cim->labelled, 8);
  EXPECT_EQ(cim->invalid, 1);
  EXPECT_THAT(cim->invalid_examples,
              ElementsAre("snds/nomenclatures/IR_CIM_V.csv:7: F55+0"));
  // MS_CIM_V labels only E14: E11 was IR_CIM_V's.
  EXPECT_EQ(Report(*labels, "snds/nomenclatures/MS_CIM_V.csv")->labelled, 1);
  const SourceReport* dpd_atc = nullptr;
  const SourceReport* dpd_din = nullptr;
  for (const SourceReport& s : labels->sources()) {
    if (s.file == "crosswalks/hc_dpd_din_to_atc.csv") {
      (s.vocabulary == "atc" ? dpd_atc : dpd_din) = &s;
    }
  }
  ASSERT_NE(dpd_atc, nullptr);
  ASSERT_NE(dpd_din, nullptr);
  EXPECT_EQ(dpd_atc->blank, 1);    // The product with no ATC.
  EXPECT_EQ(dpd_atc->invalid, 2);  // L04AA40*, UNASSIGN.
  EXPECT_FALSE(labels->Find("atc", "UNASSIGN").has_value());
  EXPECT_EQ(dpd_din->invalid, 1);  // "Not Applicable/non applicable".
  EXPECT_EQ(dpd_din->labelled, 5);
}

TEST_F(LabelsTest, UnderMergesTheFamilyByCodeAndIsBounded) {
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  int64_t total = 0;
  std::vector<CodeLabels> codes = labels->Under("icd10", "E11", 10, &total);
  EXPECT_EQ(total, 4);
  std::vector<std::string> seen;
  for (const CodeLabels& c : codes) seen.push_back(c.code);
  EXPECT_THAT(seen, ElementsAre("E11", "E110", "E1165", "E119"));
  EXPECT_EQ(codes[0].fr(), "Diabète sucré de type 2");
  EXPECT_EQ(codes[0].en(), "Type 2 diabetes mellitus");
  EXPECT_EQ(codes[1].en(), "");  // E110: CIM-10 only.
  codes = labels->Under("icd10", "E11", 2, &total);
  EXPECT_EQ(codes.size(), 2u);
  EXPECT_EQ(total, 4);
  codes = labels->Under("icd10ca", "E11", 10, &total);
  EXPECT_TRUE(codes.empty());
  EXPECT_EQ(total, 0);
}

TEST_F(LabelsTest, LoadsOnlyTheRequestedVocabularies) {
  // A broken CIM-10 file does not matter to an ATC lookup: it is not read.
  dir_.Write("snds/nomenclatures/IR_CIM_V.csv",
             std::string(kCimHeader) + "E11;broken\n");
  LoadOptions options;
  options.vocabularies = {"atc"};
  auto labels = LoadOrDie(dir_.path(), options);
  ASSERT_NE(labels, nullptr);
  EXPECT_TRUE(labels->Find("atc", "A10BA02").has_value());
  EXPECT_EQ(labels->table("cim10"), nullptr);
  EXPECT_FALSE(Report(*labels, "snds/nomenclatures/IR_CIM_V.csv")->requested);
  options.vocabularies = {"icd10"};
  EXPECT_THAT(Labels::Load(dir_.path(), options).status().message(),
              HasSubstr("IR_CIM_V.csv:2:"));
  options.vocabularies = {"nosuch"};
  EXPECT_EQ(Labels::Load(dir_.path(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

struct Malformed {
  std::string name;
  std::string content;
  std::string expected;
};

TEST_F(LabelsTest, MalformedFilesGiveFileAndLine) {
  const std::string cim = "snds/nomenclatures/IR_CIM_V.csv";
  const std::vector<Malformed> cases = {
      {"wrong field count",
       std::string(kCimHeader) + "E10;Diabète;8;E10;V8.0;;;0\nE11;x;8\n",
       "IR_CIM_V.csv:3:"},
      {"unterminated quote",
       std::string(kCimHeader) + "E11;\"Diabète sucré;8;E11;V8.0;;;0\n",
       "IR_CIM_V.csv:2:"},
      {"not UTF-8 (cp1252)",
       std::string(kCimHeader) + "E10;Diab\xE8te;8;E10;V8.0;;;0\n"
                                 "E11;Diab\xE8te sucr\xE9;8;E11;V8.0;;;0\n",
       "IR_CIM_V.csv:2: text that is not UTF-8"},
      {"blank code",
       std::string(kCimHeader) +
           "E10;Diabète;8;E10;V8.0;;;0\n ;Orphan;8;E11;V8.0;;;0\n",
       "IR_CIM_V.csv:3: blank code in column CIM_COD"},
      {"one code, two labels",
       std::string(kCimHeader) + "E11;Diabète de type 2;8;E11;V8.0;;;0\n"
                                 "E10;Diabète de type 1;8;E10;V8.0;;;0\n"
                                 "e11;Autre chose;8;E11;V8.0;;;0\n",
       "IR_CIM_V.csv:4: code E11 already has another label (line 2)"},
      {"missing column", "CIM_COD;LIBELLE\nE11;Diabète\n", "CIM_LIB"},
  };
  for (const Malformed& c : cases) {
    SCOPED_TRACE(c.name);
    dir_.Write(cim, c.content);
    absl::StatusOr<std::unique_ptr<Labels>> labels = Labels::Load(dir_.path());
    ASSERT_FALSE(labels.ok());
    EXPECT_EQ(labels.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(labels.status().message(), HasSubstr(c.expected));
  }
  // The same label twice is not an error.
  dir_.Write(cim, std::string(kCimHeader) +
                      "E11;Diabète de type 2;8;E11;V8.0;;;0\n"
                      "E11;Diabète de type 2;8;E11;V8.0;;;0\n");
  EXPECT_TRUE(Labels::Load(dir_.path()).ok());
}

TEST_F(LabelsTest, MissingFilesAreReportedOrRefused) {
  dir_.Remove("snds/nomenclatures/MS_CIM_V.csv");
  auto labels = LoadOrDie(dir_.path());
  ASSERT_NE(labels, nullptr);
  const SourceReport* ms = Report(*labels, "snds/nomenclatures/MS_CIM_V.csv");
  ASSERT_NE(ms, nullptr);
  EXPECT_FALSE(ms->present);
  EXPECT_TRUE(ms->requested);
  EXPECT_TRUE(labels->Find("cim10", "E11").has_value());
  EXPECT_FALSE(labels->Find("cim10", "E14").has_value());

  LoadOptions strict;
  strict.require_all_files = true;
  absl::StatusOr<std::unique_ptr<Labels>> refused =
      Labels::Load(dir_.path(), strict);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("MS_CIM_V.csv"));

  // A vocabulary none of whose files exist.
  dir_.Remove("crosswalks/cms_icd9cm_v32_dx_descriptions.csv");
  LoadOptions icd9;
  icd9.vocabularies = {"icd9"};
  refused = Labels::Load(dir_.path(), icd9);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("cms_icd9cm_v32_dx_descriptions.csv"));

  TempDir empty;
  refused = Labels::Load(empty.path());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("laid out like"));
  refused = Labels::Load(empty.path() + "/nowhere");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(refused.status().message(), HasSubstr("nowhere"));
}

TEST(CleanLabelTest, WhiteSpaceAndDoubleQuoting) {
  EXPECT_EQ(CleanLabel("  a \n b\t\tc  "), "a b c");
  EXPECT_EQ(CleanLabel("\"Syndrome de la \"\"bile épaisse\"\"\""),
            "Syndrome de la \"bile épaisse\"");
  EXPECT_EQ(CleanLabel("\""), "\"");
  EXPECT_EQ(CleanLabel(""), "");
}

TEST(CodeShapeTest, EachVocabularysShape) {
  for (absl::string_view ok : {"A", "A10", "A10B", "A10BA", "A10BA02"}) {
    EXPECT_TRUE(HasCodeShape("atc", ok)) << ok;
  }
  for (absl::string_view bad :
       {"UNASSIGN", "L04AA40*", "A1", "A10BA0", "10BA02", "A10BA02X", ""}) {
    EXPECT_FALSE(HasCodeShape("atc", bad)) << bad;
  }
  EXPECT_TRUE(HasCodeShape("ccam", "JANH798"));
  EXPECT_FALSE(HasCodeShape("ccam", "JANH79"));
  EXPECT_TRUE(HasCodeShape("din", "02099233"));
  EXPECT_FALSE(HasCodeShape("din", "2099233"));
  EXPECT_TRUE(HasCodeShape("cip13", "3400922086965"));
  EXPECT_TRUE(HasCodeShape("ucd", "9231824"));
  EXPECT_TRUE(HasCodeShape("ucd", "3400892318240"));
  EXPECT_FALSE(HasCodeShape("ucd", "92318"));
  EXPECT_TRUE(HasCodeShape("cim10", "E119"));
  EXPECT_FALSE(HasCodeShape("cim10", "F55+0"));
  EXPECT_EQ(LabelKey("ucd", "0000009231824"), "9231824");
  EXPECT_EQ(LabelKey("ucd", "3400892318240"), "3400892318240");
  EXPECT_EQ(LabelKey("icd10", "e11.9"), "E119");
}

}  // namespace
}  // namespace passerelle::vocab
