#include "node/synthea_loader.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "csv/csv_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/engine.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "psynthea-XXXXXX").string();
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

using Row = std::map<std::string, std::string>;

// Every row of a CSV file as column -> value, read independently of the
// loader's column handling.
std::vector<Row> ReadRows(const std::string& path) {
  std::vector<Row> rows;
  auto reader = csv::CsvReader::Open(path);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return rows;
  while (true) {
    auto next = (*reader)->Next();
    EXPECT_TRUE(next.ok()) << next.status();
    if (!next.ok() || !*next) break;
    Row row;
    for (size_t i = 0; i < (*reader)->header().size(); ++i) {
      row[(*reader)->header()[i]] = std::string((*reader)->field(i));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

int64_t Count(const std::shared_ptr<Snapshot>& snap, const std::string& text) {
  auto q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.status();
  if (!q.ok()) return -1;
  auto cells = NewIndexEngine(snap)->Count(*q);
  EXPECT_TRUE(cells.ok()) << text << ": " << cells.status();
  if (!cells.ok()) return -1;
  return (*cells)[0].count();
}

// ../shared/data/synthea-csv, or "" when absent.
std::string SharedSynthea() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  if (src == nullptr) return "";
  const fs::path dir = fs::path(src) / ".." / "shared" / "data" / "synthea-csv";
  return fs::exists(dir / "patients.csv") ? dir.string() : "";
}

class SharedSyntheaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = SharedSynthea();
    if (dir_.empty()) {
      GTEST_SKIP() << "../shared/data/synthea-csv is absent (set "
                      "PASSERELLE_SOURCE_DIR to the repository root)";
    }
    SnapshotBuilder builder("us");
    ASSERT_TRUE(
        LoadSyntheaDirectory(dir_, LoadOptions(), &builder, &report_).ok());
    snap_ = builder.Build("v1", 0);
    patients_ = ReadRows(dir_ + "/patients.csv");
    for (const Row& p : patients_) gender_[p.at("Id")] = p.at("GENDER");
  }

  std::vector<Row> Rows(const std::string& table) const {
    return ReadRows(dir_ + "/" + table + ".csv");
  }

  // Distinct patients of `table` rows that satisfy `keep`.
  template <typename Pred>
  int64_t DistinctPatients(const std::string& table, Pred keep) const {
    std::set<std::string> ids;
    for (const Row& r : Rows(table)) {
      if (gender_.count(r.at("PATIENT")) && keep(r))
        ids.insert(r.at("PATIENT"));
    }
    return static_cast<int64_t>(ids.size());
  }

  std::string dir_;
  LoadReport report_;
  std::shared_ptr<Snapshot> snap_;
  std::vector<Row> patients_;
  std::map<std::string, std::string> gender_;
};

TEST_F(SharedSyntheaTest, PersonsSexBirthAndDeathMatchPatientsCsv) {
  EXPECT_EQ(report_.rejected, 0);
  EXPECT_EQ(report_.persons, static_cast<int64_t>(patients_.size()));
  EXPECT_EQ(snap_->size(), patients_.size());
  int64_t female = 0, male = 0, deceased = 0;
  std::vector<int32_t> births;
  for (const Row& p : patients_) {
    female += p.at("GENDER") == "F";
    male += p.at("GENDER") == "M";
    deceased += !p.at("DEATHDATE").empty();
    const std::string& b = p.at("BIRTHDATE");  // YYYY-MM-DD
    births.push_back(std::stoi(b.substr(0, 4)) * 10000 +
                     std::stoi(b.substr(5, 2)) * 100 +
                     std::stoi(b.substr(8, 2)));
  }
  EXPECT_EQ(Count(snap_, "sex = female"), female);
  EXPECT_EQ(Count(snap_, "sex = male"), male);
  EXPECT_EQ(Count(snap_, "deceased"), deceased);
  // Full birth dates are kept, day included.
  std::vector<int32_t> keys = snap_->birth_keys;
  std::sort(births.begin(), births.end());
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, births);
}

TEST_F(SharedSyntheaTest, EventCountIsTheRowsOfTheMappedTables) {
  int64_t expected = 0;
  for (const char* table : {"conditions", "medications", "procedures",
                            "encounters", "immunizations", "allergies"}) {
    for (const Row& r : Rows(table)) expected += gender_.count(r.at("PATIENT"));
  }
  // Observations with a LOINC code (digits, dash, check digit); Synthea's
  // own QALY/DALY/QOLS are not LOINC.
  const std::regex loinc("[0-9]{1,7}-[0-9]");
  int64_t non_loinc = 0;
  for (const Row& r : Rows("observations")) {
    if (std::regex_match(r.at("CODE"), loinc)) {
      ++expected;
    } else {
      ++non_loinc;
    }
  }
  EXPECT_GT(non_loinc, 0);
  EXPECT_EQ(report_.events, expected);
  EXPECT_EQ(snap_->meta.events, expected);
  bool noted = false;
  for (const std::string& note : report_.notes) {
    noted |=
        note.find(std::to_string(non_loinc) + " observations.csv rows") == 0;
  }
  EXPECT_TRUE(noted) << "no note for the non-LOINC observations";
}

TEST_F(SharedSyntheaTest, QueriesMatchCountsFromTheCsv) {
  auto code_is = [](const std::string& code) {
    return [code](const Row& r) { return r.at("CODE") == code; };
  };
  // Type 2 diabetes (none in this sample), hypertension, prediabetes.
  EXPECT_EQ(Count(snap_, "condition snomed:44054006"),
            DistinctPatients("conditions", code_is("44054006")));
  const int64_t hypertension =
      DistinctPatients("conditions", code_is("59621000"));
  EXPECT_GT(hypertension, 0);
  EXPECT_EQ(Count(snap_, "condition snomed:59621000"), hypertension);
  EXPECT_EQ(Count(snap_, "condition snomed:15777000 and sex = male"),
            DistinctPatients("conditions", [&](const Row& r) {
              return r.at("CODE") == "15777000" &&
                     gender_.at(r.at("PATIENT")) == "M";
            }));
  EXPECT_EQ(Count(snap_, "drug rxnorm:314076"),
            DistinctPatients("medications", code_is("314076")));
  EXPECT_EQ(Count(snap_, "visit snomed:185349003"),
            DistinctPatients("encounters", code_is("185349003")));
  // Numeric observations are measurements with their value; text ones are
  // observations without value.
  const int64_t hba1c = DistinctPatients("observations", [](const Row& r) {
    double v = 0;
    return r.at("CODE") == "4548-4" && r.at("TYPE") == "numeric" &&
           absl::SimpleAtod(r.at("VALUE"), &v) && v >= 6.2;
  });
  EXPECT_GT(hba1c, 0);
  EXPECT_EQ(Count(snap_, "measurement loinc:4548-4 value >= 6.2"), hba1c);
  const int64_t smoking = DistinctPatients("observations", [](const Row& r) {
    return r.at("CODE") == "72166-2" && r.at("TYPE") == "text";
  });
  EXPECT_GT(smoking, 0);
  EXPECT_EQ(Count(snap_, "observation loinc:72166-2"), smoking);
  EXPECT_EQ(Count(snap_, "measurement loinc:72166-2"), 0);
  // Allergies are observations in their SYSTEM's vocabulary.
  EXPECT_EQ(Count(snap_, "observation snomed:111088007"),
            DistinctPatients("allergies", code_is("111088007")));
}

// A small export written for the test.
void WriteSmallExport(const TempDir& dir) {
  dir.Write(
      "patients.csv",
      "Id,BIRTHDATE,DEATHDATE,SSN,GENDER\n"
      "aaaaaaaa-0000-0000-0000-000000000001,1970-03-01,,x,F\n"
      "aaaaaaaa-0000-0000-0000-000000000002,1980-12-31,2021-06-01,x,M\n"
      "aaaaaaaa-0000-0000-0000-000000000003,1990-02-30,,x,F\n"  // Bad date.
      "aaaaaaaa-0000-0000-0000-000000000004,2000-01-01,,x,\n");
  dir.Write("conditions.csv",
            "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
            "2020-01-05,,aaaaaaaa-0000-0000-0000-000000000001,e,44054006,T2D\n"
            "2020-02-05,,aaaaaaaa-0000-0000-0000-000000000002,e,44054006,T2D\n"
            "2020-02-06,,aaaaaaaa-0000-0000-0000-000000000002,e,44054006,T2D\n"
            "2020-02-07,,bbbbbbbb-0000-0000-0000-000000000009,e,44054006,T2D\n"
            "2020-13-01,,aaaaaaaa-0000-0000-0000-000000000004,e,44054006,T2D\n"
            "2020-03-01,,aaaaaaaa-0000-0000-0000-000000000004,e,,empty\n");
  dir.Write(
      "observations.csv",
      "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
      "2020-01-01T10:00:00Z,aaaaaaaa-0000-0000-0000-000000000001,e,lab,"
      "4548-4,HbA1c,7.5,%,numeric\n"
      "2020-01-02T10:00:00Z,aaaaaaaa-0000-0000-0000-000000000002,e,lab,"
      "4548-4,HbA1c,6.1,%,numeric\n"
      "2020-01-03T10:00:00Z,aaaaaaaa-0000-0000-0000-000000000002,e,survey,"
      "72166-2,Tobacco,Never smoker,,text\n"
      "2020-01-04T10:00:00Z,aaaaaaaa-0000-0000-0000-000000000001,e,,"
      "QALY,QALY,20.0,a,numeric\n");
  dir.Write("immunizations.csv",
            "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST\n"
            "2020-10-01T00:00:00Z,aaaaaaaa-0000-0000-0000-000000000001,e,140,"
            "Flu,1\n");
  dir.Write("careplans.csv", "Id,START,STOP,PATIENT,ENCOUNTER,CODE\n");
}

TEST(SyntheaLoaderTest, SmallExportLoadsWithRejectsNamingFileLineReason) {
  TempDir dir;
  WriteSmallExport(dir);
  SnapshotBuilder builder("us");
  LoadReport report;
  ASSERT_TRUE(
      LoadSyntheaDirectory(dir.path(), LoadOptions(), &builder, &report).ok());
  std::shared_ptr<Snapshot> snap = builder.Build("v1", 0);
  EXPECT_EQ(report.persons, 3);
  // 3 conditions + 3 LOINC observations + 1 immunization.
  EXPECT_EQ(report.events, 7);
  ASSERT_EQ(report.rejected, 4);
  ASSERT_EQ(report.rejected_samples.size(), 4u);
  const std::string patients = dir.path() + "/patients.csv";
  const std::string conditions = dir.path() + "/conditions.csv";
  EXPECT_EQ(report.rejected_samples[0].file, patients);
  EXPECT_EQ(report.rejected_samples[0].line, 4);
  EXPECT_THAT(report.rejected_samples[0].reason, HasSubstr("BIRTHDATE"));
  EXPECT_EQ(report.rejected_samples[1].file, conditions);
  EXPECT_EQ(report.rejected_samples[1].line, 5);
  EXPECT_EQ(report.rejected_samples[1].reason,
            "PATIENT is not in patients.csv");
  EXPECT_EQ(report.rejected_samples[2].line, 6);
  EXPECT_THAT(report.rejected_samples[2].reason,
              HasSubstr("START: invalid date"));
  EXPECT_EQ(report.rejected_samples[3].line, 7);
  EXPECT_EQ(report.rejected_samples[3].reason, "CODE is empty");
  // No patient id in any reason or note.
  for (const RejectedRow& r : report.rejected_samples) {
    EXPECT_EQ(r.reason.find("-0000-"), std::string::npos) << r.reason;
  }
  for (const std::string& note : report.notes) {
    EXPECT_EQ(note.find("-0000-"), std::string::npos) << note;
  }
  EXPECT_THAT(report.notes,
              ::testing::Contains(HasSubstr("not mapped: careplans.csv")));
  EXPECT_THAT(report.notes, ::testing::Contains(HasSubstr("not LOINC")));

  EXPECT_EQ(Count(snap, "condition snomed:44054006"), 2);
  EXPECT_EQ(Count(snap, "condition snomed:44054006 at least 2 times"), 1);
  EXPECT_EQ(Count(snap, "deceased"), 1);
  EXPECT_EQ(Count(snap, "sex = unknown"), 1);
  EXPECT_EQ(Count(snap, "measurement loinc:4548-4 value >= 7"), 1);
  EXPECT_EQ(Count(snap, "measurement loinc:4548-4"), 2);
  EXPECT_EQ(Count(snap, "observation loinc:72166-2"), 1);
  // Full birth date: on 2020-03-01 the first patient turns 50, not before.
  EXPECT_EQ(
      Count(snap, "age between 50 and 50 and sex = female as of 2020-03-01"),
      1);
  EXPECT_EQ(
      Count(snap, "age between 50 and 50 and sex = female as of 2020-02-29"),
      0);
  // Vaccines are kept as drug events in vocabulary cvx.
  EXPECT_THAT(snap->Vocabularies(), ::testing::Contains("cvx"));
}

TEST(SyntheaLoaderTest, RejectsOverTheLimitFailTheLoad) {
  TempDir dir;
  WriteSmallExport(dir);
  LoadOptions options;
  options.max_rejected = 3;
  SnapshotBuilder builder("us");
  LoadReport report;
  absl::Status st =
      LoadSyntheaDirectory(dir.path(), options, &builder, &report);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()),
              HasSubstr("more than 3 rejected rows"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("patients.csv:4"));

  options.max_rejected = 4;
  SnapshotBuilder again("us");
  LoadReport ok_report;
  EXPECT_TRUE(
      LoadSyntheaDirectory(dir.path(), options, &again, &ok_report).ok());
}

TEST(SyntheaLoaderTest, MalformedDateNamesFileAndLine) {
  TempDir dir;
  dir.Write("patients.csv",
            "Id,BIRTHDATE,DEATHDATE,GENDER\n"
            "p1,1970-03-01,,F\n");
  dir.Write("procedures.csv",
            "START,STOP,PATIENT,ENCOUNTER,CODE,DESCRIPTION\n"
            "2020-01-01T00:00:00Z,,p1,e,430193006,ok\n"
            "01/02/2020,,p1,e,430193006,bad\n");
  LoadOptions options;
  options.max_rejected = 0;
  SnapshotBuilder builder("us");
  LoadReport report;
  absl::Status st =
      LoadSyntheaDirectory(dir.path(), options, &builder, &report);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("procedures.csv:3: START"));
}

TEST(SyntheaLoaderTest, MissingRequiredColumnNamesFileAndColumn) {
  TempDir dir;
  dir.Write("patients.csv",
            "Id,BIRTHDATE,DEATHDATE,GENDER\np1,1970-03-01,,F\n");
  dir.Write("medications.csv",
            "START,STOP,PATIENT,DESCRIPTION\n2020-01-01,,p1,x\n");
  SnapshotBuilder builder("us");
  LoadReport report;
  absl::Status st =
      LoadSyntheaDirectory(dir.path(), LoadOptions(), &builder, &report);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("medications.csv"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("\"CODE\""));

  TempDir no_gender;
  no_gender.Write("patients.csv", "Id,BIRTHDATE\np1,1970-03-01\n");
  SnapshotBuilder b2("us");
  LoadReport r2;
  st = LoadSyntheaDirectory(no_gender.path(), LoadOptions(), &b2, &r2);
  EXPECT_THAT(std::string(st.message()), HasSubstr("patients.csv"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("\"GENDER\""));
}

TEST(SyntheaLoaderTest, MissingPatientsAndOmopOptionsAreErrors) {
  TempDir dir;
  SnapshotBuilder builder("us");
  LoadReport report;
  EXPECT_EQ(
      LoadSyntheaDirectory(dir.path(), LoadOptions(), &builder, &report).code(),
      absl::StatusCode::kNotFound);
  LoadOptions options;
  options.vocabulary_rules_file = "/dev/null";
  EXPECT_EQ(LoadSyntheaDirectory(dir.path(), options, &builder, &report).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SyntheaLoaderTest,
     SystemColumnChoosesTheVocabularyAndUnknownIsNotGuessed) {
  TempDir dir;
  dir.Write("patients.csv",
            "Id,BIRTHDATE,DEATHDATE,GENDER\np1,1970-03-01,,F\n");
  dir.Write("allergies.csv",
            "START,STOP,PATIENT,ENCOUNTER,CODE,SYSTEM,DESCRIPTION\n"
            "2020-01-01,,p1,e,111088007,SNOMED-CT,Latex\n"
            "2020-01-01,,p1,e,7984,RxNorm,Penicillin\n"
            "2020-01-01,,p1,e,X1,Local,Something\n");
  SnapshotBuilder builder("us");
  LoadReport report;
  ASSERT_TRUE(
      LoadSyntheaDirectory(dir.path(), LoadOptions(), &builder, &report).ok());
  auto snap = builder.Build("v", 0);
  EXPECT_EQ(report.events, 2);
  EXPECT_EQ(Count(snap, "observation snomed:111088007"), 1);
  EXPECT_EQ(Count(snap, "observation rxnorm:7984"), 1);
  EXPECT_THAT(report.notes, ::testing::Contains(HasSubstr("SYSTEM \"Local\"")));
  EXPECT_EQ(VocabularyFromSyntheaSystem("http://loinc.org"), "loinc");
  EXPECT_TRUE(IsLoincCode("4548-4"));
  EXPECT_FALSE(IsLoincCode("QALY"));
  EXPECT_FALSE(IsLoincCode("4548-"));
}

}  // namespace
}  // namespace passerelle::node
