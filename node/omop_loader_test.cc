#include "node/omop_loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "node/engine.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pload-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& content) const {
    std::ofstream(fs::path(path_) / name) << content;
  }

 private:
  std::string path_;
};

int64_t Count(const std::shared_ptr<Snapshot>& snap, const char* text) {
  auto q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << q.status();
  auto cells = NewIndexEngine(snap)->Count(*q);
  EXPECT_TRUE(cells.ok()) << cells.status();
  return (*cells)[0].count();
}

void WriteSmallSite(const TempDir& dir) {
  // Upper-case file names, as some exports use.
  dir.Write(
      "PERSON.csv",
      "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth\n"
      "-5,8532,1970,3,1\n"
      "7,8507,1980,,\n"
      "9,8532,1990,2,30\n"  // Rejected: no such date.
      "11,0,1960,,\n");
  dir.Write(
      "CONCEPT.csv",
      "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,"
      "standard_concept,concept_code,valid_start_date,valid_end_date,invalid_"
      "reason\n"
      "2000000001,T2D,Condition,ICD10CM,3-char,,E11.9,2000-01-01,2099-12-31,\n"
      "2000000002,Metformin,Drug,ATC,ATC "
      "5th,,A10BA02,2000-01-01,2099-12-31,\n");
  dir.Write(
      "condition_occurrence.csv",
      "condition_occurrence_id,person_id,condition_concept_id,condition_start_"
      "date,"
      "condition_source_value,condition_source_concept_id\n"
      "1,-5,201826,2020-01-05,E11.9,2000000001\n"
      "2,7,201826,2020-02-05 10:00:00,E11.9,2000000001\n"
      "3,404,201826,2020-02-05,E11.9,2000000001\n"  // Rejected: unknown person.
      "4,7,201826,not-a-date,E11.9,2000000001\n"    // Rejected: bad date.
      "5,11,0,2021-01-01,\"I10  \",0\n");  // No vocabulary: concept only.
  dir.Write(
      "drug_exposure.csv",
      "drug_exposure_id,person_id,drug_concept_id,drug_exposure_start_date,"
      "drug_source_value,drug_source_concept_id\n"
      "1,-5,1503297,2020-03-01,A10BA02,2000000002\n");
  dir.Write("death.csv", "person_id,death_date\n11,2022-01-01\n");
}

TEST(OmopLoaderTest, LoadsTablesResolvesConceptsAndReportsRejectedRows) {
  TempDir dir;
  WriteSmallSite(dir);
  SnapshotBuilder builder("fr");
  LoadReport report;
  ASSERT_TRUE(
      LoadOmopDirectory(dir.path(), LoadOptions(), &builder, &report).ok());
  EXPECT_EQ(report.persons, 3);
  EXPECT_EQ(report.rejected, 3);
  ASSERT_EQ(report.rejected_samples.size(), 3u);
  EXPECT_NE(report.rejected_samples[0].file.find("PERSON.csv"),
            std::string::npos);
  EXPECT_EQ(report.rejected_samples[0].line, 4);
  EXPECT_EQ(report.rejected_samples[1].line, 4);
  EXPECT_NE(report.rejected_samples[1].reason.find("404"), std::string::npos);
  EXPECT_EQ(report.rejected_samples[2].line, 5);
  ASSERT_FALSE(report.notes.empty());  // The I10 row had no vocabulary.

  auto snap = builder.Build("fr-1", 0);
  EXPECT_EQ(Count(snap, "condition icd10:E11*"), 2);
  EXPECT_EQ(Count(snap, "condition icd10cm:E119"), 2);
  EXPECT_EQ(Count(snap, "condition concept:201826"), 2);
  EXPECT_EQ(Count(snap, "condition icd10:I10"), 0);  // Never guessed.
  EXPECT_EQ(Count(snap, "condition concept:0"), 0);
  EXPECT_EQ(
      Count(snap,
            "condition icd10:E11* before drug atc:A10BA02 within 60 days"),
      1);
  EXPECT_EQ(Count(snap, "deceased"), 1);
  EXPECT_EQ(Count(snap, "sex = unknown"), 1);
}

TEST(OmopLoaderTest, TooManyRejectedRowsFailsTheLoad) {
  TempDir dir;
  WriteSmallSite(dir);
  SnapshotBuilder builder("fr");
  LoadReport report;
  LoadOptions options;
  options.max_rejected = 1;
  absl::Status st = LoadOmopDirectory(dir.path(), options, &builder, &report);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("PERSON.csv:4"), std::string::npos) << st;
}

TEST(OmopLoaderTest, MissingPersonTableIsAnError) {
  TempDir dir;
  SnapshotBuilder builder("fr");
  LoadReport report;
  absl::Status st =
      LoadOmopDirectory(dir.path(), LoadOptions(), &builder, &report);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("person"), std::string::npos) << st;
}

TEST(OmopLoaderTest, VocabularyRulesCodeSourceValuesAndRejectTypos) {
  TempDir dir;
  WriteSmallSite(dir);
  dir.Write("rules.txt",
            "# MIMIC-style rules\n"
            "condition source_concept_id 0 icd10cm\n");
  LoadOptions options;
  options.vocabulary_rules_file = dir.path() + "/rules.txt";
  SnapshotBuilder builder("fr");
  LoadReport report;
  ASSERT_TRUE(LoadOmopDirectory(dir.path(), options, &builder, &report).ok());
  EXPECT_EQ(Count(builder.Build("fr-1", 0), "condition icd10:I10"), 1);

  dir.Write("bad.txt", "condition source_concept_id 44* icd11\n");
  auto rules = ParseVocabularyRules(dir.path() + "/bad.txt");
  ASSERT_FALSE(rules.ok());
  EXPECT_NE(rules.status().message().find("bad.txt:1"), std::string::npos);
  EXPECT_NE(rules.status().message().find("icd11"), std::string::npos);
}

// The number of events indexed under (domain, vocabulary, code).
size_t PostingSize(const Snapshot& snap, v1::Domain domain,
                   const std::string& vocabulary, const std::string& code) {
  auto t = snap.tables.find({static_cast<int>(domain), vocabulary});
  if (t == snap.tables.end()) return 0;
  for (size_t i = 0; i < t->second.codes.size(); ++i) {
    if (t->second.codes[i] == code) return t->second.postings[i]->size();
  }
  return 0;
}

TEST(OmopLoaderTest, IndexesEachRowOnceWhenSourceAndStandardConceptsCoincide) {
  TempDir dir;
  dir.Write("person.csv",
            "person_id,gender_concept_id,year_of_birth\n"
            "1,8532,1970\n"
            "2,8507,1980\n");
  dir.Write("concept.csv",
            "concept_id,vocabulary_id,concept_code\n"
            "2000000001,ICD10CM,E11.9\n"
            "2000000002,ICD10CM,E11.9\n"  // A second concept, same code.
            "2000000003,ICD10CM,I10\n");
  // Rows 1-3: source concept = concept (the usual export); row 4: two
  // concepts naming the same code; row 5: a source concept of its own.
  dir.Write("condition_occurrence.csv",
            "person_id,condition_concept_id,condition_start_date,"
            "condition_source_value,condition_source_concept_id\n"
            "1,2000000001,2020-01-05,E11.9,2000000001\n"
            "1,2000000001,2020-02-05,E11.9,2000000001\n"
            "2,2000000001,2020-03-05,E11.9,2000000001\n"
            "2,2000000002,2020-04-05,E11.9,2000000001\n"
            "2,2000000001,2020-05-05,I10,2000000003\n");
  SnapshotBuilder builder("fr");
  LoadReport report;
  ASSERT_TRUE(
      LoadOmopDirectory(dir.path(), LoadOptions(), &builder, &report).ok());
  EXPECT_EQ(report.events, 5);
  auto snap = builder.Build("fr-1", 0);
  const v1::Domain c = v1::DOMAIN_CONDITION;
  // One entry per row and code: the code E119 is named by 5 rows (row 5's
  // standard concept), concept 2000000001 by 5 rows (rows 1-4 through
  // either column, row 5 through its standard concept).
  EXPECT_EQ(PostingSize(*snap, c, "icd10cm", "E119"), 5u);
  EXPECT_EQ(PostingSize(*snap, c, "concept", "2000000001"), 5u);
  EXPECT_EQ(PostingSize(*snap, c, "concept", "2000000002"), 1u);
  EXPECT_EQ(PostingSize(*snap, c, "concept", "2000000003"), 1u);
  EXPECT_EQ(PostingSize(*snap, c, "icd10cm", "I10"), 1u);
  // Semantics unchanged: a source concept still matches, and repeats count
  // rows, not mentions.
  EXPECT_EQ(Count(snap, "condition icd10:I10"), 1);
  EXPECT_EQ(Count(snap, "condition concept:2000000003"), 1);
  EXPECT_EQ(Count(snap, "condition icd10:E11* at least 2 times"), 2);
  EXPECT_EQ(Count(snap, "condition icd10:E11* at least 3 times"), 1);
  EXPECT_EQ(Count(snap, "condition icd10:E11* at least 4 times"), 0);
  EXPECT_EQ(Count(snap, "condition concept:2000000001 at least 3 times"), 1);
}

TEST(OmopLoaderTest, LoadsMimicDemo) {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  const fs::path mimic = fs::path(src ? src : ".") / ".." / "shared" / "data" /
                         "mimic-iv-demo-omop";
  if (!fs::exists(mimic / "person.csv")) {
    GTEST_SKIP() << "../shared/data/mimic-iv-demo-omop is absent; skipping";
  }
  // Its dates are shifted into the next century on purpose: without the
  // steward's decision the load is refused, with the report.
  {
    SnapshotBuilder refused("all");
    LoadReport report;
    absl::Status st =
        LoadOmopDirectory(mimic.string(), LoadOptions(), &refused, &report);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_GT(report.future_events, 0);
    EXPECT_FALSE(report.future_samples.empty());
  }
  SnapshotBuilder builder("all");
  LoadReport report;
  LoadOptions options;
  options.future_events = FutureEvents::kKeep;
  ASSERT_TRUE(
      LoadOmopDirectory(mimic.string(), options, &builder, &report).ok());
  EXPECT_GT(report.future_events, 0);
  EXPECT_EQ(report.persons, 100);  // Signed 64-bit ids, many negative.
  EXPECT_EQ(report.rejected, 0);
  auto snap = builder.Build("all-1", 0);
  EXPECT_EQ(Count(snap, "sex = female or sex = male"), 100);
  EXPECT_GT(Count(snap, "deceased"), 0);
}

}  // namespace
}  // namespace passerelle::node
