// Crosswalk tables: the four CSV forms, every kind of invalid row with its
// file:line, all-or-nothing loads, the mapping set id, and the expansion
// rules of docs/vocabulary.md (one hop, prefix rows, ICD rollup,
// combination rows, the three matching modes, unreached vocabularies).
#include "node/crosswalk.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/crosswalk_loader.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pxwalk-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = (std::filesystem::path(path_) / name).string();
    std::ofstream(p) << text;
    return p;
  }

 private:
  std::string path_;
};

constexpr char kHeader[] =
    "source_vocabulary,source_code,target_vocabulary,target_code,relation,"
    "flags\n";

std::shared_ptr<const CrosswalkSet> MustLoad(
    const std::vector<std::string>& specs,
    InvalidCrosswalkRows mode = InvalidCrosswalkRows::kRefuse) {
  CrosswalkLoadReport report;
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> set =
      LoadCrosswalks(specs, mode, &report);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *set : nullptr;
}

TEST(CrosswalkLoaderTest, PasserelleFormReadsEveryField) {
  TempDir dir;
  const std::string path = dir.Write(
      "ramq.csv", absl::StrCat(kHeader,
                               "icd9,250.0,icd10ca,E11.9,narrower,\n"
                               "ICD9,401*,icd10ca,I10,Equivalent,\n"
                               "icd9,2501,icd10ca,E10.10,approximate,"
                               "Combination; scenario=1 ;choice=2\n"));
  auto set = MustLoad({path});
  ASSERT_NE(set, nullptr);
  ASSERT_EQ(set->tables().size(), 1u);
  const CrosswalkTable& t = set->tables()[0];
  EXPECT_EQ(t.name, "ramq");
  EXPECT_EQ(t.form, "passerelle");
  ASSERT_EQ(t.rows.size(), 3u);
  // Sorted by canonical line; codes normalised; the prefix kept apart.
  EXPECT_EQ(t.rows[0].CanonicalLine(), "icd9\t2500\ticd10ca\tE119\tnarrower\t");
  EXPECT_EQ(t.rows[1].CanonicalLine(),
            "icd9\t2501\ticd10ca\tE1010\tapproximate\t"
            "combination;scenario=1;choice=2");
  EXPECT_TRUE(t.rows[1].combination);
  EXPECT_TRUE(t.rows[2].source_prefix);
  EXPECT_EQ(t.rows[2].source_code, "401");
  EXPECT_EQ(set->id().size(), 64u);
}

// Each kind of invalid row, with the file and line named; nothing loaded.
TEST(CrosswalkLoaderTest, EveryInvalidRowKindIsNamedWithFileAndLine) {
  TempDir dir;
  const std::string path = dir.Write(
      "bad.csv", absl::StrCat(kHeader,
                              "icd9,250,icd10ca,E11,narrower,\n"   // 2: fine
                              "icd11,250,icd10ca,E11,narrower,\n"  // 3
                              "icd9,250,icd10xx,E11,narrower,\n"   // 4
                              "icd9,250,icd10ca,E11,similar,\n"    // 5
                              "din,1234,atc,A10BA02,narrower,\n"   // 6
                              "din,02099233,atc,UNASSIGN,narrower,\n"     // 7
                              "icd9,250,icd10ca,E11\n"                    // 8
                              "icd9,250,icd10ca,E11,narrower,\n"          // 9
                              "icd9,250,icd10ca,E11*,narrower,\n"         // 10
                              "icd9,250,icd10ca,E12,narrower,BAD FLAG\n"  // 11
                              ));
  CrosswalkLoadReport report;
  absl::StatusOr<std::shared_ptr<const CrosswalkSet>> set =
      LoadCrosswalks({path}, InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(set.status().message());
  EXPECT_THAT(msg, HasSubstr("9 invalid crosswalk rows; nothing was loaded"));
  EXPECT_THAT(msg, HasSubstr(path + ":3: unknown source vocabulary \"icd11\""));
  EXPECT_THAT(msg,
              HasSubstr(path + ":4: unknown target vocabulary \"icd10xx\""));
  EXPECT_THAT(msg, HasSubstr(path + ":5: unknown relation \"similar\""));
  EXPECT_THAT(msg,
              HasSubstr(path + ":6: source code \"1234\" is not a valid din"));
  EXPECT_THAT(
      msg, HasSubstr(path + ":7: target code \"UNASSIGN\" is not a valid atc"));
  EXPECT_THAT(msg, HasSubstr(path + ":8: expected 6 fields"));
  EXPECT_THAT(msg, HasSubstr(path + ":9: duplicate of line 2"));
  EXPECT_THAT(msg, HasSubstr(path + ":10: target code \"E11*\" is a prefix"));
  EXPECT_THAT(msg, HasSubstr(path + ":11: flag \"bad flag\""));
  EXPECT_EQ(msg.find(":2:"), std::string::npos) << msg;

  // Skipping: the valid row is loaded, the others counted and listed.
  CrosswalkLoadReport skipped;
  set = LoadCrosswalks({path}, InvalidCrosswalkRows::kSkip, &skipped);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ((*set)->tables().size(), 1u);
  EXPECT_EQ((*set)->tables()[0].rows.size(), 1u);
  EXPECT_EQ((*set)->tables()[0].skipped_rows, 9);
  EXPECT_EQ(skipped.invalid, 9);
  ASSERT_EQ(skipped.invalid_samples.size(), 9u);
  EXPECT_EQ(skipped.invalid_samples[0].file, path);
  EXPECT_EQ(skipped.invalid_samples[0].line, 3);
}

TEST(CrosswalkLoaderTest, TwentyErrorsThenACount) {
  TempDir dir;
  std::string text = kHeader;
  for (int i = 0; i < 45; ++i) text += "icd9,250,icd10ca,E11,nope,\n";
  const std::string path = dir.Write("many.csv", text);
  CrosswalkLoadReport report;
  auto set = LoadCrosswalks({path}, InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(set.ok());
  const std::string msg(set.status().message());
  EXPECT_THAT(msg, HasSubstr(path + ":21: unknown relation"));
  EXPECT_EQ(msg.find(path + ":22:"), std::string::npos);
  EXPECT_THAT(msg, HasSubstr("... and 25 more"));
}

TEST(CrosswalkLoaderTest, OneBadFileRefusesEveryTable) {
  TempDir dir;
  const std::string good =
      dir.Write("good.csv", absl::StrCat(kHeader,
                                         "icd9,250,icd10ca,E11,"
                                         "narrower,\n"));
  const std::string bad = dir.Write(
      "bad.csv", absl::StrCat(kHeader, "icd9,250,icd10ca,E11,wrong,\n"));
  CrosswalkLoadReport report;
  auto set =
      LoadCrosswalks({good, bad}, InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr(bad + ":2:"));
}

TEST(CrosswalkLoaderTest, HeaderAndSpecErrors) {
  TempDir dir;
  const std::string path = dir.Write("x.csv", "a,b,c\n1,2,3\n");
  CrosswalkLoadReport report;
  auto set = LoadCrosswalks({path}, InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(),
              HasSubstr(path + ":1: unrecognised crosswalk header \"a,b,c\""));
  EXPECT_FALSE(LoadCrosswalks({dir.Write("y.csv", "")},
                              InvalidCrosswalkRows::kRefuse, &report)
                   .ok());
  EXPECT_FALSE(LoadCrosswalks({"/nonexistent/z.csv"},
                              InvalidCrosswalkRows::kRefuse, &report)
                   .ok());
  EXPECT_FALSE(ParseCrosswalkSpec(",name=x").ok());
  EXPECT_FALSE(ParseCrosswalkSpec("a.csv,source=icd11").ok());
  EXPECT_FALSE(ParseCrosswalkSpec("a.csv,color=red").ok());
  absl::StatusOr<CrosswalkSpec> spec =
      ParseCrosswalkSpec("/d/gem.csv,source=ICD9,name=ramq-gem");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->path, "/d/gem.csv");
  EXPECT_EQ(spec->source_vocabulary, "icd9");
  EXPECT_EQ(spec->name, "ramq-gem");
  // Two tables of one name.
  const std::string a = dir.Write("a.csv", absl::StrCat(kHeader,
                                                        "icd9,250,icd10ca,E11,"
                                                        "narrower,\n"));
  auto dup = LoadCrosswalks({a + ",name=t", a + ",name=t"},
                            InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(dup.status().message(), HasSubstr("two crosswalks are named"));
}

TEST(CrosswalkLoaderTest, GemFormKeepsFlagsAndCountsNoMapRows) {
  TempDir dir;
  const std::string path =
      dir.Write("gem.csv",
                "icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
                "choice_list\n"
                "25000,E119,10000,1,0,0,0,0\n"
                "0010,A000,00000,0,0,0,0,0\n"
                "36570,NoDx,11000,1,1,0,0,0\n"
                "66602,O720,10111,1,0,1,1,1\n"
                "66602,O43211,10112,1,0,1,1,2\n"
                "66602,O720,10000,1,0,0,0,0\n"
                "25001,E109,10000,2,0,0,0,0\n");
  CrosswalkLoadReport report;
  auto set = LoadCrosswalks({path}, InvalidCrosswalkRows::kSkip, &report);
  ASSERT_TRUE(set.ok()) << set.status();
  const CrosswalkTable& t = (*set)->tables()[0];
  EXPECT_EQ(t.form, "gem");
  EXPECT_EQ(t.no_map_rows, 1);
  EXPECT_EQ(t.skipped_rows, 1);  // approximate = 2.
  ASSERT_EQ(report.invalid_samples.size(), 1u);
  EXPECT_EQ(report.invalid_samples[0].line, 8);
  std::vector<std::string> lines;
  for (const CrosswalkRow& r : t.rows) lines.push_back(r.CanonicalLine());
  EXPECT_THAT(lines, ElementsAre("icd9cm\t0010\ticd10cm\tA000\tequivalent\t",
                                 "icd9cm\t25000\ticd10cm\tE119\tapproximate\t",
                                 "icd9cm\t66602\ticd10cm\tO43211\tapproximate\t"
                                 "combination;scenario=1;choice=2",
                                 "icd9cm\t66602\ticd10cm\tO720\tapproximate\t",
                                 "icd9cm\t66602\ticd10cm\tO720\tapproximate\t"
                                 "combination;scenario=1;choice=1"));
  // source= applies the table to another vocabulary (RAMQ's ICD-9).
  auto ramq =
      MustLoad({path + ",source=icd9,name=ramq"}, InvalidCrosswalkRows::kSkip);
  ASSERT_NE(ramq, nullptr);
  EXPECT_EQ(ramq->tables()[0].name, "ramq");
  EXPECT_THAT(ramq->tables()[0].SourceVocabularies(), ElementsAre("icd9"));
  EXPECT_NE(ramq->id(), (*set)->id());
}

TEST(CrosswalkLoaderTest, DrugFormsMapToAtcAndMergeRepeats) {
  TempDir dir;
  const std::string dpd =
      dir.Write("hc_dpd_din_to_atc.csv",
                "din,atc,atc_label,brand_name,drug_code\n"
                "02099233,A10BA02,METFORMIN,GLUCOPHAGE,1\n"
                "02099233,A10BA02,METFORMIN,GLUCOPHAGE,2\n"
                "00000019,,,PLACIDYL,3\n"
                "02242974,L04AA40*,X,Y,4\n"
                "Not Applicable/non applicable,A10BA02,X,Y,5\n"
                "02242975,QJ01CA04,X,Y,6\n");
  const std::string bdpm =
      dir.Write("fr_bdpm_cip13_to_atc.csv",
                "cip13,cip7,cis,atc,atc_source\n"
                "3400930000001,3000000,60000001,A10BA02,CIS_MITM\n"
                "3400930000002,3000001,60000002,,\n");
  CrosswalkLoadReport report;
  auto refused = LoadCrosswalks({dpd}, InvalidCrosswalkRows::kRefuse, &report);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(),
              HasSubstr(dpd + ":5: ATC \"L04AA40*\" is not a valid atc code"));
  EXPECT_THAT(refused.status().message(),
              HasSubstr(dpd + ":6: source code \"NOT APPLICABLE/NON "
                              "APPLICABLE\" is not a valid din code"));
  auto set = MustLoad({dpd, bdpm}, InvalidCrosswalkRows::kSkip);
  ASSERT_NE(set, nullptr);
  ASSERT_EQ(set->tables().size(), 2u);
  const CrosswalkTable& b = set->tables()[0];
  const CrosswalkTable& h = set->tables()[1];
  EXPECT_EQ(b.name, "fr_bdpm_cip13_to_atc");
  EXPECT_EQ(b.form, "bdpm");
  EXPECT_EQ(b.rows.size(), 1u);
  EXPECT_EQ(b.no_map_rows, 1);
  EXPECT_EQ(h.form, "dpd");
  EXPECT_EQ(h.rows.size(), 2u);  // Metformin once, and the ATCvet code.
  EXPECT_EQ(h.merged_rows, 1);
  EXPECT_EQ(h.no_map_rows, 1);
  EXPECT_EQ(h.skipped_rows, 2);
  EXPECT_EQ(h.rows[0].relation, Relation::kNarrower);
}

TEST(CrosswalkSetTest, IdCoversRowsAndNamesNotFileOrder) {
  TempDir dir;
  const std::string a =
      dir.Write("a.csv", absl::StrCat(kHeader,
                                      "icd9,250,icd10ca,E11,narrower,\n"
                                      "icd9,401,icd10ca,I10,narrower,\n"));
  const std::string a2 =
      dir.Write("a2.csv", absl::StrCat(kHeader,
                                       "icd9,401,icd10ca,I10,narrower,\n"
                                       "icd9,250,icd10ca,E11,narrower,\n"));
  const std::string b =
      dir.Write("b.csv", absl::StrCat(kHeader,
                                      "icd9,250,icd10ca,E11,approximate,\n"
                                      "icd9,401,icd10ca,I10,narrower,\n"));
  auto x = MustLoad({a + ",name=t"});
  auto y = MustLoad({a2 + ",name=t"});
  auto z = MustLoad({b + ",name=t"});
  auto w = MustLoad({a + ",name=u"});
  ASSERT_TRUE(x && y && z && w);
  EXPECT_EQ(x->id(), y->id());  // Row order in the file does not matter.
  EXPECT_NE(x->id(), z->id());  // A changed relation does.
  EXPECT_NE(x->id(), w->id());  // So does the table's name.
  auto both = MustLoad({a + ",name=t", b + ",name=s"});
  auto both2 = MustLoad({b + ",name=s", a + ",name=t"});
  EXPECT_EQ(both->id(), both2->id());
  auto none = MustLoad({});
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(none->id(), "");
}

TEST(CrosswalkSetTest, EncodeDecodeRoundTripAndTamperIsDataLoss) {
  TempDir dir;
  const std::string a =
      dir.Write("a.csv", absl::StrCat(kHeader,
                                      "icd9,250*,icd10ca,E11,narrower,\n"
                                      "icd9,401,icd10ca,I10,narrower,x=1\n"));
  auto set = MustLoad({a});
  ASSERT_NE(set, nullptr);
  const std::string stored = set->Encode();
  auto back = CrosswalkSet::Decode(stored, set->id());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ((*back)->CanonicalText(), set->CanonicalText());
  EXPECT_EQ((*back)->tables()[0].form, "passerelle");
  std::string tampered = stored;
  tampered.replace(tampered.find("I10"), 3, "I11");
  auto bad = CrosswalkSet::Decode(tampered, set->id());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(CrosswalkSet::Decode("garbage", set->id()).ok());
}

// ---------------------------------------------------------------------------
// Expansion.

v1::Query Parse(const std::string& text) {
  absl::StatusOr<v1::Query> q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << q.status();
  return q.ok() ? *q : v1::Query();
}

// The added codes of the first event spec, as "vocab:code[*]".
std::vector<std::string> Added(const CrosswalkIndex& index,
                               const std::string& text) {
  const v1::Query q = Parse(text);
  v1::Query expanded;
  std::vector<std::string> out;
  if (!index.Expand(q, "qc", &expanded, nullptr)) return out;
  const v1::EventSpec& spec = expanded.where().has_criterion()
                                  ? expanded.where().criterion().event().event()
                                  : v1::EventSpec();
  for (int i = q.where().criterion().event().event().codes_size();
       i < spec.codes_size(); ++i) {
    out.push_back(absl::StrCat(spec.codes(i).vocabulary(), ":",
                               spec.codes(i).code(),
                               spec.codes(i).prefix() ? "*" : ""));
  }
  return out;
}

class ExpansionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    gem_ = dir_.Write(
        "gem.csv",
        "icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
        "choice_list\n"
        "25000,E119,10000,1,0,0,0,0\n"
        "25001,E109,10000,1,0,0,0,0\n"
        "25002,E1165,10000,1,0,0,0,0\n"
        "25010,E1310,10000,1,0,0,0,0\n"
        "4010,I10,00000,0,0,0,0,0\n"
        "66602,O720,10111,1,0,1,1,1\n"
        "66602,O43211,10112,1,0,1,1,2\n");
    steward_ =
        dir_.Write("steward.csv",
                   absl::StrCat(kHeader,
                                "din,02099233,atc,A10BA02,narrower,\n"
                                "din,02242974,atc,A10BD07,narrower,\n"
                                "icd9,493*,icd10ca,J45,broader,\n"
                                "icd10ca,J45,snomed,195967001,equivalent,\n"));
  }
  CrosswalkIndex Index(CrosswalkIndex::SiteVocabularies site,
                       std::vector<std::string> specs) {
    std::vector<std::string> full;
    for (const std::string& s : specs) full.push_back(s);
    return CrosswalkIndex(MustLoad(full, InvalidCrosswalkRows::kRefuse),
                          std::move(site));
  }
  TempDir dir_;
  std::string gem_, steward_;
};

TEST_F(ExpansionTest, RollupPrefixRowsAndOneHop) {
  const CrosswalkIndex index =
      Index({{v1::DOMAIN_CONDITION, {"icd9", "icd9cm", "icd10ca"}},
             {v1::DOMAIN_DRUG, {"din"}}},
            {gem_ + ",source=icd9,name=ramq", steward_});
  // The GEM applied to icd9 (source=icd9): exact rows, then the rollups
  // 250, 2500 (codes under them), never a code that is a source itself.
  EXPECT_THAT(Added(index, "condition icd10:E11*"),
              ElementsAre("icd9:250", "icd9:2500", "icd9:25000", "icd9:25002"));
  EXPECT_THAT(Added(index, "condition icd10cm:E13*"),
              ElementsAre("icd9:250", "icd9:2501", "icd9:25010"));
  // codes equivalent: approximate rows and rollups are out; 4010 -> I10 is
  // an equivalent GEM row, and the rollup of 4010 (401) is not used.
  EXPECT_THAT(Added(index, "condition icd10:E11* codes equivalent"),
              ElementsAre());
  EXPECT_THAT(Added(index, "condition icd10:I10 codes equivalent"),
              ElementsAre("icd9:4010"));
  EXPECT_THAT(Added(index, "condition icd10:I10"),
              ElementsAre("icd9:401", "icd9:4010"));
  EXPECT_THAT(Added(index, "condition icd10:I10 codes exact"), ElementsAre());
  // A prefix source row: every site code starting with 493.
  EXPECT_THAT(Added(index, "condition icd10ca:J45"), ElementsAre("icd9:493*"));
  EXPECT_THAT(Added(index, "condition icd10ca:J45 codes equivalent"),
              ElementsAre());  // broader.
  // One hop: snomed:195967001 reaches icd10ca:J45 only, not icd9:493*
  // through the second row.
  EXPECT_THAT(Added(index, "condition snomed:195967001"),
              ElementsAre("icd10ca:J45"));
  // Drugs: the DIN mapped to the ATC code or under the prefix.
  EXPECT_THAT(Added(index, "drug atc:A10BA02"), ElementsAre("din:02099233"));
  EXPECT_THAT(Added(index, "drug atc:A10B*"),
              ElementsAre("din:02099233", "din:02242974"));
  // A row whose source vocabulary the site does not hold in the domain is
  // not used: no DIN in conditions.
  EXPECT_THAT(Added(index, "condition atc:A10BA02"), ElementsAre());
}

TEST_F(ExpansionTest, ReportCountsRowsByRelationAndNamesUnreached) {
  const CrosswalkIndex index =
      Index({{v1::DOMAIN_CONDITION, {"icd9cm", "icd10cm", "snomed", "concept"}},
             {v1::DOMAIN_DRUG, {"din", "atc", "concept"}}},
            {gem_ + ",name=gem"});
  v1::SiteExpansion e;
  v1::Query expanded;
  ASSERT_TRUE(index.Expand(
      Parse("condition [icd10:E11*, icd10cm:O720] and drug atc:A10BA02"), "qc",
      &expanded, &e));
  EXPECT_EQ(e.site(), "qc");
  EXPECT_EQ(e.mapping_set(), index.mapping_set());
  EXPECT_EQ(e.code_matching(), v1::CODE_MATCHING_MAPPED);
  ASSERT_EQ(e.codes_size(), 2);
  const v1::CodeExpansion& e11 = e.codes(0);
  EXPECT_EQ(e11.code(), "icd10:E11*");
  EXPECT_EQ(e11.domain(), v1::DOMAIN_CONDITION);
  EXPECT_EQ(e11.site_vocabulary(), "icd9cm");
  EXPECT_EQ(e11.crosswalk(), "gem");
  // 25000 and 25002 (approximate), and their rollups 250 and 2500 (broader).
  EXPECT_EQ(e11.rows(), 6);
  EXPECT_EQ(e11.approximate_rows(), 2);
  EXPECT_EQ(e11.broader_rows(), 4);
  EXPECT_EQ(e11.source_codes(), 4);
  EXPECT_THAT(e11.sample_source_codes(),
              ElementsAre("250", "2500", "25000", "25002"));
  const v1::CodeExpansion& o72 = e.codes(1);
  EXPECT_EQ(o72.code(), "icd10cm:O720");
  // The cluster row 66602 -> O720 and its rollups 666 and 6660 (broader,
  // still rows of a combination cluster).
  EXPECT_EQ(o72.rows(), 3);
  EXPECT_EQ(o72.approximate_rows(), 1);
  EXPECT_EQ(o72.broader_rows(), 2);
  EXPECT_EQ(o72.combination_rows(), 3);
  // snomed is held for conditions and no code reaches it; drugs: atc is
  // reached directly, din by no row of this set. OMOP concept ids are the
  // same rows as their vocabulary codes: never listed.
  EXPECT_THAT(e.unreached(), ElementsAre("condition: snomed", "drug: din"));

  // Explain alone gives the same report.
  v1::SiteExpansion again;
  index.Expand(Parse("condition [icd10:E11*, icd10cm:O720] and drug "
                     "atc:A10BA02"),
               "qc", nullptr, &again);
  EXPECT_EQ(again.SerializeAsString(), e.SerializeAsString());

  // codes exact: nothing mapped, every non-matching vocabulary unreached.
  index.Expand(Parse("condition icd10:E11* codes exact"), "qc", nullptr, &e);
  EXPECT_EQ(e.codes_size(), 0);
  EXPECT_EQ(e.code_matching(), v1::CODE_MATCHING_EXACT);
  EXPECT_THAT(e.unreached(),
              ElementsAre("condition: icd9cm", "condition: snomed"));
}

TEST_F(ExpansionTest, ReportIsBounded) {
  TempDir dir;
  std::string text = kHeader;
  for (int i = 0; i < 400; ++i) {
    text += absl::StrCat("din,", 10000000 + i, ",atc,A10BA", 10 + i % 90,
                         ",narrower,\n");
  }
  const std::string path = dir.Write("big.csv", text);
  std::vector<std::string> specs;
  // Longest table names (64 characters).
  for (int t = 0; t < 4; ++t) {
    specs.push_back(absl::StrCat(path, ",name=", std::string(63, 'a' + t), t));
  }
  const CrosswalkIndex index = Index({{v1::DOMAIN_DRUG, {"din"}}}, specs);
  std::vector<std::string> codes;
  for (int i = 10; i < 100; ++i) codes.push_back(absl::StrCat("atc:A10BA", i));
  v1::SiteExpansion e;
  index.Expand(Parse(absl::StrCat("drug [", absl::StrJoin(codes, ", "),
                                  "] or drug atc:A10B*")),
               "qc", nullptr, &e);
  EXPECT_EQ(e.codes_size(), kMaxExpansionEntries);
  int samples = 0;
  for (const v1::CodeExpansion& c : e.codes()) {
    EXPECT_LE(c.sample_source_codes_size(), kMaxExpansionSamples);
    samples += c.sample_source_codes_size();
  }
  EXPECT_LE(samples, kMaxExpansionSampleTotal);
  // With the longest canonical query and the other fields, a node's audit
  // entry stays under its bound.
  EXPECT_LT(e.ByteSizeLong() + limits::kMaxCanonicalQueryBytes + 4096,
            limits::kMaxAuditEntryBytes);
}

}  // namespace
}  // namespace passerelle::node
