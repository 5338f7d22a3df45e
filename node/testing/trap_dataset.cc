#include "node/testing/trap_dataset.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "node/testing/query_generator.h"
#include "node/testing/rng.h"

namespace passerelle::node::difftest {
namespace {

namespace fs = std::filesystem;

struct TrapConcept {
  int64_t id;
  const char* domain;      // OMOP domain_id.
  const char* vocabulary;  // OMOP vocabulary_id, as exports spell it.
  const char* code;
};

// Codes in the forms exports really use: dotted, padded, lower case, and
// the same code in several ICD-10 variants.
const TrapConcept kConcepts[] = {
    {1001, "Condition", "ICD10CM", "E11.9"},
    {1002, "Condition", "ICD10CM", "E11.65"},
    {1003, "Condition", "ICD10CM", "e10.9"},
    {1004, "Condition", "ICD10CM", " I10 "},
    {1005, "Condition", "ICD-10-CM", "I25.10"},
    {1006, "Condition", "CIM10", "E11.9"},
    {1007, "Condition", "CIM10", "E119"},
    {1008, "Condition", "CIM10", "J45.9"},
    {1009, "Condition", "CIM10", "C50.9"},
    {1010, "Condition", "ICD10", "E11.9"},
    {1011, "Condition", "ICD10", "F32.9"},
    {1012, "Condition", "ICD10CA", "E11.9"},
    {1013, "Condition", "ICD10CA", "I48.2"},
    {1014, "Condition", "ICD9CM", "250.00"},
    {1015, "Condition", "ICD9CM", "401.9"},
    {1016, "Condition", "ICD9CM", "E879.8"},
    {1017, "Condition", "ICD9CM", "V58.67"},
    {1018, "Condition", "SNOMED", "44054006"},
    {1019, "Condition", "SNOMED", "38341003"},
    {1020, "Condition", "ICD10 CM", "K21.9"},
    {2001, "Drug", "ATC", "A10BA02"},
    {2002, "Drug", "ATC", "A10AB01"},
    {2003, "Drug", "ATC", "C09AA05"},
    {2004, "Drug", "ATC", "n02be01"},
    {2005, "Drug", "RxNorm", "860975"},
    {2006, "Drug", "RxNorm", "197361"},
    {2007, "Drug", "NDC", "00002751001"},
    {2008, "Drug", "ATC", "A10BB09"},
    {3001, "Procedure", "CCAM", "DEQP003"},
    {3002, "Procedure", "CCAM", "ZCQK002"},
    {3003, "Procedure", "SNOMED", "71388002"},
    {3004, "Procedure", "CPT4", "99213"},
    {3005, "Procedure", "ICD10PCS", "0DTJ4ZZ"},
    {4001, "Measurement", "LOINC", "4548-4"},
    {4002, "Measurement", "LOINC", "2345-7"},
    {4003, "Measurement", "LOINC", "8480-6"},
    {4004, "Measurement", "LOINC", "39156-5"},
    {6001, "Observation", "SNOMED", "160303001"},
    {6002, "Observation", "SNOMED", "77176002"},
    {6003, "Observation", "LOINC", "72166-2"},
    {9201, "Visit", "Visit", "IP"},
    {9202, "Visit", "Visit", "OP"},
    {9203, "Visit", "Visit", "ER"},
    // A second row for an id: the loader keeps the last.
    {1011, "Condition", "ICD10", "F32.1"},
};

// Source values with no CONCEPT row, coded by the rules below.
const char* const kIcd10Values[] = {"E119   ", "E11.9",   "I10    ", "e785",
                                    "I48.2",   "J45 . 9", "C509",    "K219"};
const char* const kIcd9Values[] = {"25000  ", "4019   ", "E8798", "V5867",
                                   "250.01"};
const char* const kNdcValues[] = {"00002751001", "00093-7212-01",
                                  "Acetaminophen, 500 mg", "0409-4888-02 "};
const char* const kValues[] = {"",    "7",   "7.25", "-1.5", " 12 ", "1e2",
                               "0.1", "6.5", "6.50", "100",  "7.0",  "0",
                               "-0",  "140", "5.99", "6.01"};

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos &&
      (s.empty() || (s.front() != ' ' && s.back() != ' '))) {
    return s;
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

class Table {
 public:
  Table(const std::string& path, const std::string& header)
      : out_(path), path_(path) {
    out_ << header << "\n";
  }
  void Row(const std::vector<std::string>& fields) {
    std::vector<std::string> quoted;
    for (const std::string& f : fields) quoted.push_back(CsvField(f));
    out_ << absl::StrJoin(quoted, ",") << "\n";
  }
  absl::Status Close() {
    out_.close();
    if (!out_) return absl::InternalError(absl::StrCat("cannot write ", path_));
    return absl::OkStatus();
  }

 private:
  std::ofstream out_;
  std::string path_;
};

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

}  // namespace

absl::StatusOr<std::vector<SqlVocabularyRule>> WriteTrapDataset(
    const std::string& dir, const TrapDatasetOptions& options) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir));
  Rng rng(MixSeed(options.seed, 0x7472617073));
  auto file = [&](const std::string& name) {
    return (fs::path(dir) / (options.upper_case_files
                                 ? absl::AsciiStrToUpper(name) + ".csv"
                                 : name + ".csv"))
        .string();
  };

  const int32_t first_day =
      options.before_1970 ? CivilToDays(1935, 1, 1) : CivilToDays(1998, 1, 1);
  const int32_t last_day = options.before_1970 ? CivilToDays(1969, 12, 30)
                                               : CivilToDays(2023, 6, 30);
  int first_year, last_year, m, d;
  DaysToCivil(first_day, &first_year, &m, &d);
  DaysToCivil(last_day, &last_year, &m, &d);

  auto date_text = [&](int32_t day) {
    int y, mo, da;
    DaysToCivil(day, &y, &mo, &da);
    switch (rng.Weighted({70, 12, 5, 10, 3})) {
      case 0:
        return absl::StrFormat("%04d-%02d-%02d", y, mo, da);
      case 1:
        return absl::StrFormat("%04d-%02d-%02d %02d:%02d:00", y, mo, da,
                               static_cast<int>(rng.Below(24)),
                               static_cast<int>(rng.Below(60)));
      case 2:
        return absl::StrFormat("%04d-%02d-%02dT08:30:00", y, mo, da);
      case 3:
        return absl::StrFormat("%04d%02d%02d", y, mo, da);
      default:
        return absl::StrFormat(" %04d-%02d-%02d ", y, mo, da);
    }
  };

  // Concepts.
  {
    Table t(file("concept"),
            "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,"
            "standard_concept,concept_code,valid_start_date,valid_end_date,"
            "invalid_reason");
    for (const TrapConcept& c : kConcepts) {
      t.Row({absl::StrCat(c.id), absl::StrCat("Concept ", c.id), c.domain,
             c.vocabulary, "Code", "", c.code, "1970-01-01", "2099-12-31", ""});
    }
    if (absl::Status st = t.Close(); !st.ok()) return st;
  }
  std::vector<int64_t> by_domain[7];
  for (const TrapConcept& c : kConcepts) {
    const std::string dom = c.domain;
    const int k = dom == "Condition"     ? 1
                  : dom == "Drug"        ? 2
                  : dom == "Procedure"   ? 3
                  : dom == "Measurement" ? 4
                  : dom == "Visit"       ? 5
                                         : 6;
    by_domain[k].push_back(c.id);
  }

  // Persons.
  std::vector<int64_t> ids;
  {
    Table t(file("person"),
            "person_id,gender_concept_id,year_of_birth,month_of_birth,"
            "day_of_birth,birth_datetime,race_concept_id,ethnicity_concept_id,"
            "gender_source_value");
    std::set<int64_t> used;
    for (int i = 0; i < options.persons; ++i) {
      int64_t id = static_cast<int64_t>(rng.Next());
      if (rng.Percent(30)) id = rng.Range(-1000, 1000);
      if (!used.insert(id).second) continue;
      ids.push_back(id);
      // Ages from newborn to beyond the last (open) age band.
      const int year = static_cast<int>(rng.Range(first_year - 118, last_year));
      std::string month, day;
      switch (rng.Weighted({62, 6, 25, 7})) {
        case 0: {
          const int mo = static_cast<int>(rng.Range(1, 12));
          static const int kDays[] = {31, 28, 31, 30, 31, 30,
                                      31, 31, 30, 31, 30, 31};
          month = absl::StrCat(mo);
          day = absl::StrCat(rng.Range(1, kDays[mo - 1]));
          break;
        }
        case 1:
          if (IsLeapYear(year)) {
            month = "2";
            day = "29";
          } else {
            month = "7";
            day = "1";
          }
          break;
        case 2:
          break;  // Year only: the contract's 1 July.
        default:
          month = absl::StrCat(rng.Range(1, 12));  // No day: year only.
      }
      static const int64_t kGender[] = {8532, 8507, 8521, 8570, 0, 8551};
      static const char* const kSources[] = {"F", "female", " M ", "Male",
                                             "",  "X",      "f"};
      const int64_t gender = kGender[rng.Weighted({38, 38, 3, 3, 14, 4})];
      const std::string source =
          rng.Percent(50) || gender == 0 ? kSources[rng.Below(7)] : "";
      t.Row({absl::StrCat(id), absl::StrCat(gender), absl::StrCat(year), month,
             day, "", "0", "0", source});
    }
    // Rows the loader rejects: no such date, a year out of range.
    t.Row({"424242", "8532", "1990", "2", "30", "", "0", "0", ""});
    t.Row({"424243", "8507", "1700", "", "", "", "0", "0", ""});
    if (absl::Status st = t.Close(); !st.ok()) return st;
  }

  // Events.
  struct Writer {
    Table table;
    const char* prefix;
    bool has_value;
  };
  Table condition(file("condition_occurrence"),
                  "condition_occurrence_id,person_id,condition_concept_id,"
                  "condition_start_date,condition_end_date,"
                  "condition_source_value,condition_source_concept_id");
  Table drug(file("drug_exposure"),
             "drug_exposure_id,person_id,drug_concept_id,"
             "drug_exposure_start_date,drug_exposure_end_date,"
             "drug_source_value,drug_source_concept_id");
  Table procedure(file("procedure_occurrence"),
                  "procedure_occurrence_id,person_id,procedure_concept_id,"
                  "procedure_date,procedure_source_value,"
                  "procedure_source_concept_id");
  Table measurement(file("measurement"),
                    "measurement_id,person_id,measurement_concept_id,"
                    "measurement_date,value_as_number,measurement_source_value,"
                    "measurement_source_concept_id");
  Table visit(file("visit_occurrence"),
              "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,"
              "visit_end_date,visit_source_value,visit_source_concept_id");
  Table observation(file("observation"),
                    "observation_id,person_id,observation_concept_id,"
                    "observation_date,value_as_number,observation_source_value,"
                    "observation_source_concept_id");
  int64_t row_id = 1;
  auto pick = [&](int domain) {
    return absl::StrCat(rng.Pick(by_domain[domain]));
  };
  auto write_event = [&](int64_t person, int domain, int32_t day) {
    const std::string pid = absl::StrCat(person);
    const std::string id = absl::StrCat(row_id++);
    const std::string date = date_text(day);
    switch (domain) {
      case 1: {
        std::string cid, scid, sv;
        switch (rng.Weighted({40, 12, 10, 8, 6, 4, 4, 8, 8})) {
          case 0:  // Coded source.
            cid = pick(1);
            scid = rng.Percent(50) ? cid : pick(1);
            sv = rng.Percent(50) ? "ignored" : "";
            break;
          case 1:  // Source value only: rule "0".
            cid = "1018";
            scid = "0";
            sv = rng.Pick(std::vector<std::string>(std::begin(kIcd10Values),
                                                   std::end(kIcd10Values)));
            break;
          case 2:  // ICD-9 source concept the export has no row for.
            cid = "1019";
            scid = absl::StrCat(44820000 + rng.Range(0, 99));
            sv = rng.Pick(std::vector<std::string>(std::begin(kIcd9Values),
                                                   std::end(kIcd9Values)));
            break;
          case 3:  // 4* but not 448*: the second rule.
            cid = "0";
            scid = absl::StrCat(45100000 + rng.Range(0, 99));
            sv = rng.Pick(std::vector<std::string>(std::begin(kIcd10Values),
                                                   std::end(kIcd10Values)));
            break;
          case 4:  // Any domain's 77* rule.
            cid = "";
            scid = absl::StrCat(7700000 + rng.Range(0, 99));
            sv = rng.Percent(50) ? "44054006" : " 38341003 ";
            break;
          case 5:  // No rule: reachable only through concept ids.
            cid = pick(1);
            scid = "9999";
            sv = "E11.9";
            break;
          case 6:  // No code at all; still an event of the snapshot.
            cid = "0";
            scid = "0";
            sv = "";
            break;
          default:  // A coded concept plus a rule-coded source value.
            cid = pick(1);
            scid = "0";
            sv = rng.Pick(std::vector<std::string>(std::begin(kIcd10Values),
                                                   std::end(kIcd10Values)));
        }
        condition.Row({id, pid, cid, date, "", sv, scid});
        break;
      }
      case 2: {
        std::string cid = pick(2), scid = cid, sv;
        if (rng.Percent(30)) {
          scid = rng.Percent(80) ? "0" : "";
          sv = rng.Pick(std::vector<std::string>(std::begin(kNdcValues),
                                                 std::end(kNdcValues)));
        }
        drug.Row({id, pid, cid, date, "", sv, scid});
        break;
      }
      case 3: {
        const std::string cid = pick(3);
        procedure.Row({id, pid, cid, date, rng.Percent(50) ? cid : "", cid});
        break;
      }
      case 4: {
        std::string cid = pick(4), scid = cid, sv;
        if (rng.Percent(20)) {
          scid = "0";
          sv = rng.Percent(50) ? "4548-4" : " 2345-7";
        }
        measurement.Row(
            {id, pid, cid, date,
             kValues[rng.Below(sizeof(kValues) / sizeof(kValues[0]))], sv,
             scid});
        break;
      }
      case 5: {
        const std::string cid = pick(5);
        visit.Row({id, pid, cid, date, "", "", rng.Percent(50) ? cid : "0"});
        break;
      }
      default: {
        const std::string cid = pick(6);
        observation.Row(
            {id, pid, cid, date,
             rng.Percent(40)
                 ? kValues[rng.Below(sizeof(kValues) / sizeof(kValues[0]))]
                 : "",
             "", cid});
      }
    }
  };
  std::vector<std::pair<int64_t, int32_t>> deaths;
  for (int64_t person : ids) {
    const int n = static_cast<int>(rng.Weighted({10, 30, 30, 20, 10}) * 8);
    int32_t day = static_cast<int32_t>(rng.Range(first_day, last_day));
    int domain = 1;
    for (int e = 0; e < n; ++e) {
      const int r = static_cast<int>(rng.Below(100));
      if (r < 60 || e == 0) {
        day = static_cast<int32_t>(rng.Range(first_day, last_day));
      } else if (r < 85) {
        day = std::min<int32_t>(last_day,
                                day + static_cast<int32_t>(rng.Range(0, 40)));
      }  // Otherwise the same day again.
      if (!rng.Percent(15) || e == 0) {
        domain = 1 + static_cast<int>(rng.Weighted({34, 22, 10, 18, 8, 8}));
      }
      write_event(person, domain, day);
    }
    if (rng.Percent(12)) {
      // Deaths may come after the last event of the whole site.
      deaths.emplace_back(
          person, static_cast<int32_t>(
                      rng.Range(first_day, std::min(last_day + 900, -2))));
      if (!options.before_1970) {
        deaths.back().second =
            static_cast<int32_t>(rng.Range(first_day, last_day + 900));
      }
    }
  }
  // Rows the loader rejects: unknown persons, impossible dates.
  condition.Row(
      {"900001", "31337", "1001", date_text(first_day), "", "", "1001"});
  drug.Row({"900002", absl::StrCat(ids.empty() ? 0 : ids[0]), "2001",
            "2019-02-30", "", "", "2001"});
  for (Table* t :
       {&condition, &drug, &procedure, &measurement, &visit, &observation}) {
    if (absl::Status st = t->Close(); !st.ok()) return st;
  }
  {
    Table t(file("death"), "person_id,death_date,death_type_concept_id");
    for (const auto& [person, day] : deaths) {
      t.Row({absl::StrCat(person), date_text(day), "32817"});
    }
    t.Row({"31337", date_text(first_day), "32817"});
    if (absl::Status st = t.Close(); !st.ok()) return st;
  }
  return std::vector<SqlVocabularyRule>{
      {"condition", "448*", "icd9cm"}, {"condition", "4*", "icd10cm"},
      {"condition", "0", "icd10cm"},   {"drug", "0", "ndc"},
      {"*", "77*", "snomed"},          {"measurement", "0", "loinc"},
  };
}

}  // namespace passerelle::node::difftest
