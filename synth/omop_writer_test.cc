#include "synth/omop_writer.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "csv/csv_reader.h"
#include "csv/table_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::synth {
namespace {

class OmopWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/omop_writer_test_XXXXXX";
    dir_ = ::mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  OmopWriteStats Write(const std::string& sub, int64_t patients,
                       const std::string& site) {
    GeneratorOptions options;
    options.patients = patients;
    options.seed = 2024;
    options.site = site;
    auto generator = Generator::Create(options);
    EXPECT_TRUE(generator.ok()) << generator.status();
    auto stats = WriteOmopCsv(**generator, dir_ + "/" + sub);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? *stats : OmopWriteStats{};
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  std::string dir_;
};

int64_t ToInt(absl::string_view s) {
  int64_t v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << "not an integer: \"" << s << "\"";
  return v;
}

TEST_F(OmopWriterTest, SameOptionsWriteByteIdenticalFiles) {
  Write("a", 300, "fr");
  Write("b", 300, "fr");
  Write("c", 300, "qc");
  for (const char* file : kOmopTableFiles) {
    const std::string a = Slurp(dir_ + "/a/" + file);
    EXPECT_FALSE(a.empty()) << file;
    EXPECT_EQ(a, Slurp(dir_ + "/b/" + file)) << file;
  }
  EXPECT_NE(Slurp(dir_ + "/a/condition_occurrence.csv"),
            Slurp(dir_ + "/c/condition_occurrence.csv"));
}

// Reads every table back with the CSV reader and checks row counts and
// referential integrity: persons exist, concepts exist and match the source
// value, visits exist.
TEST_F(OmopWriterTest, TablesAreConsistent) {
  for (const std::string site : {"fr", "qc"}) {
    const OmopWriteStats stats = Write(site, 400, site);
    const std::string dir = dir_ + "/" + site;
    EXPECT_EQ(stats.persons, 400);

    std::map<int64_t, std::string> concept_code;
    std::set<std::string> vocabularies;
    {
      auto path = csv::FindTableFile(dir, "CONCEPT");
      ASSERT_TRUE(path.ok()) << path.status();
      auto reader = csv::CsvReader::Open(*path);
      ASSERT_TRUE(reader.ok()) << reader.status();
      const int id = *(*reader)->RequireColumn("concept_id");
      const int code = *(*reader)->RequireColumn("concept_code");
      const int vocabulary = *(*reader)->RequireColumn("vocabulary_id");
      while (*(*reader)->Next()) {
        ASSERT_TRUE(concept_code
                        .emplace(ToInt((*reader)->field(id)),
                                 std::string((*reader)->field(code)))
                        .second);
        vocabularies.insert(std::string((*reader)->field(vocabulary)));
      }
      EXPECT_EQ(static_cast<int64_t>(concept_code.size()), stats.concepts);
    }
    EXPECT_TRUE(vocabularies.count(site == "fr" ? "CIM10" : "ICD10CA"));
    EXPECT_TRUE(vocabularies.count(site == "fr" ? "CCAM" : "SNOMED"));
    for (const char* v : {"ATC", "LOINC", "Visit", "Gender"}) {
      EXPECT_TRUE(vocabularies.count(v)) << v;
    }

    std::set<int64_t> persons;
    {
      auto reader = csv::CsvReader::Open(dir + "/person.csv");
      ASSERT_TRUE(reader.ok()) << reader.status();
      const int id = *(*reader)->RequireColumn("person_id");
      const int gender = *(*reader)->RequireColumn("gender_concept_id");
      while (*(*reader)->Next()) {
        ASSERT_TRUE(persons.insert(ToInt((*reader)->field(id))).second);
        const int64_t g = ToInt((*reader)->field(gender));
        EXPECT_TRUE(g == 0 || concept_code.count(g)) << g;
      }
    }
    EXPECT_EQ(static_cast<int64_t>(persons.size()), stats.persons);

    // One observation period per person, covering all their events.
    std::map<int64_t, std::pair<std::string, std::string>> periods;
    {
      auto reader = csv::CsvReader::Open(dir + "/observation_period.csv");
      ASSERT_TRUE(reader.ok()) << reader.status();
      const int person = *(*reader)->RequireColumn("person_id");
      const int start =
          *(*reader)->RequireColumn("observation_period_start_date");
      const int end = *(*reader)->RequireColumn("observation_period_end_date");
      while (*(*reader)->Next()) {
        const int64_t id = ToInt((*reader)->field(person));
        EXPECT_TRUE(persons.count(id));
        EXPECT_LE((*reader)->field(start), (*reader)->field(end));
        periods[id] = {std::string((*reader)->field(start)),
                       std::string((*reader)->field(end))};
      }
    }
    EXPECT_EQ(periods.size(), persons.size());

    std::set<int64_t> visits;
    struct TableSpec {
      const char* file;
      Domain domain;
      const char* id;
      const char* date;
      const char* concept;
      const char* source_value;
      const char* source_concept;
    };
    const TableSpec kTables[] = {
        {"visit_occurrence.csv", Domain::kVisit, "visit_occurrence_id",
         "visit_start_date", "visit_concept_id", "visit_source_value",
         "visit_source_concept_id"},
        {"condition_occurrence.csv", Domain::kCondition,
         "condition_occurrence_id", "condition_start_date",
         "condition_concept_id", "condition_source_value",
         "condition_source_concept_id"},
        {"drug_exposure.csv", Domain::kDrug, "drug_exposure_id",
         "drug_exposure_start_date", "drug_concept_id", "drug_source_value",
         "drug_source_concept_id"},
        {"procedure_occurrence.csv", Domain::kProcedure,
         "procedure_occurrence_id", "procedure_date", "procedure_concept_id",
         "procedure_source_value", "procedure_source_concept_id"},
        {"measurement.csv", Domain::kMeasurement, "measurement_id",
         "measurement_date", "measurement_concept_id",
         "measurement_source_value", "measurement_source_concept_id"},
        {"observation.csv", Domain::kObservation, "observation_id",
         "observation_date", "observation_concept_id",
         "observation_source_value", "observation_source_concept_id"},
        {"death.csv", Domain::kDeath, nullptr, "death_date", "cause_concept_id",
         "cause_source_value", "cause_source_concept_id"},
    };
    std::set<int64_t> event_ids;
    std::vector<int64_t> visit_refs;
    for (const TableSpec& table : kTables) {
      auto reader = csv::CsvReader::Open(dir + "/" + table.file);
      ASSERT_TRUE(reader.ok()) << reader.status();
      csv::CsvReader& r = **reader;
      const int person = *r.RequireColumn("person_id");
      const int date_column = *r.RequireColumn(table.date);
      const int concept = *r.RequireColumn(table.concept);
      const int source_value = *r.RequireColumn(table.source_value);
      const int source_concept = *r.RequireColumn(table.source_concept);
      const int id = table.id ? *r.RequireColumn(table.id) : -1;
      const int visit = r.ColumnIndex("visit_occurrence_id");
      const int value = table.domain == Domain::kMeasurement
                            ? *r.RequireColumn("value_as_number")
                            : -1;
      int64_t rows = 0;
      for (;;) {
        auto next = r.Next();
        ASSERT_TRUE(next.ok()) << next.status();
        if (!*next) break;
        ++rows;
        const int64_t person_id = ToInt(r.field(person));
        EXPECT_TRUE(persons.count(person_id)) << table.file << ":" << r.line();
        const auto& period = periods[person_id];
        const std::string date(r.field(date_column));
        // ISO dates compare as strings.
        EXPECT_GE(date, period.first) << table.file << ":" << r.line();
        EXPECT_LE(date, period.second) << table.file << ":" << r.line();
        const int64_t c = ToInt(r.field(concept));
        EXPECT_EQ(c, ToInt(r.field(source_concept)));
        auto it = concept_code.find(c);
        ASSERT_NE(it, concept_code.end()) << table.file << ":" << r.line();
        EXPECT_EQ(it->second, r.field(source_value));
        if (id >= 0) {
          const int64_t event_id = ToInt(r.field(id));
          EXPECT_TRUE(event_ids.insert(event_id).second);
          if (table.domain == Domain::kVisit) visits.insert(event_id);
        }
        if (table.domain != Domain::kVisit && visit >= 0 &&
            !r.field(visit).empty()) {
          visit_refs.push_back(ToInt(r.field(visit)));
        }
        if (value >= 0) {
          double v = 0;
          EXPECT_TRUE(absl::SimpleAtod(r.field(value), &v)) << r.line();
        }
      }
      EXPECT_EQ(rows, stats.rows[static_cast<int>(table.domain)]) << table.file;
    }
    EXPECT_GT(visit_refs.size(), 0u);
    for (int64_t v : visit_refs) EXPECT_TRUE(visits.count(v)) << v;
  }
}

TEST_F(OmopWriterTest, UncreatableDirectoryIsAnError) {
  std::ofstream(dir_ + "/file") << "x";
  GeneratorOptions options;
  options.patients = 3;
  auto generator = Generator::Create(options);
  ASSERT_TRUE(generator.ok());
  auto stats = WriteOmopCsv(**generator, dir_ + "/file/sub");
  EXPECT_FALSE(stats.ok());
  EXPECT_THAT(stats.status().message(), ::testing::HasSubstr("file/sub"));
}

}  // namespace
}  // namespace passerelle::synth
