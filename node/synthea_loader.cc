#include "node/synthea_loader.h"

#include <cmath>
#include <limits>
#include <map>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "node/loader.h"
#include "node/table_reader.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

enum class Kind { kPlain, kObservations };

struct EventTable {
  const char* name;  // File name without ".csv".
  std::vector<std::string> date_columns;
  v1::Domain domain;
  const char* vocabulary;  // When the row has no SYSTEM.
  Kind kind;
};

const std::vector<EventTable>& EventTables() {
  static const auto* const kTables = new std::vector<EventTable>{
      {"conditions", {"START"}, v1::DOMAIN_CONDITION, "snomed", Kind::kPlain},
      {"medications", {"START"}, v1::DOMAIN_DRUG, "rxnorm", Kind::kPlain},
      {"procedures",
       {"START", "DATE"},
       v1::DOMAIN_PROCEDURE,
       "snomed",
       Kind::kPlain},
      {"encounters", {"START"}, v1::DOMAIN_VISIT, "snomed", Kind::kPlain},
      {"observations",
       {"DATE"},
       v1::DOMAIN_MEASUREMENT,
       "loinc",
       Kind::kObservations},
      {"immunizations", {"DATE"}, v1::DOMAIN_DRUG, "cvx", Kind::kPlain},
      {"allergies", {"START"}, v1::DOMAIN_OBSERVATION, "snomed", Kind::kPlain},
  };
  return *kTables;
}

// Files of a Synthea export that have no mapping (yet).
constexpr const char* kNotMapped[] = {"careplans",
                                      "devices",
                                      "supplies",
                                      "imaging_studies",
                                      "claims",
                                      "payers",
                                      "claims_transactions",
                                      "payer_transitions",
                                      "organizations",
                                      "providers"};

v1::Sex SexFromGender(absl::string_view gender) {
  const std::string g =
      absl::AsciiStrToUpper(absl::StripAsciiWhitespace(gender));
  if (g == "F" || g == "FEMALE") return v1::SEX_FEMALE;
  if (g == "M" || g == "MALE") return v1::SEX_MALE;
  return v1::SEX_UNKNOWN;
}

}  // namespace

std::string VocabularyFromSyntheaSystem(absl::string_view system) {
  const std::string s =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(system));
  if (s == "snomed-ct" || s == "snomed" || s == "snomed ct" ||
      s == "http://snomed.info/sct") {
    return "snomed";
  }
  if (s == "rxnorm" || s == "http://www.nlm.nih.gov/research/umls/rxnorm") {
    return "rxnorm";
  }
  if (s == "loinc" || s == "http://loinc.org") return "loinc";
  if (s == "cvx" || s == "http://hl7.org/fhir/sid/cvx") return "cvx";
  return "";
}

bool IsLoincCode(absl::string_view code) {
  const size_t dash = code.find('-');
  if (dash == absl::string_view::npos || dash == 0 || dash > 7 ||
      dash + 2 != code.size()) {
    return false;
  }
  for (size_t i = 0; i < code.size(); ++i) {
    if (i != dash &&
        !absl::ascii_isdigit(static_cast<unsigned char>(code[i]))) {
      return false;
    }
  }
  return true;
}

absl::Status LoadSyntheaDirectory(const std::string& dir,
                                  const LoadOptions& options,
                                  SnapshotBuilder* builder,
                                  LoadReport* report) {
  if (!options.vocabulary_rules_file.empty()) {
    return absl::InvalidArgumentError(
        "vocabulary rules apply to OMOP exports only; Synthea codes carry "
        "their vocabulary");
  }
  RejectCounter rejects(options, report);
  FutureEventCheck future(options, report);

  // Patients: the UUID maps to a dense number, the only id the builder sees.
  absl::flat_hash_map<std::string, int64_t> ids;
  std::vector<std::pair<int64_t, int32_t>> deaths;
  PASSERELLE_ASSIGN_OR_RETURN(const std::string patients_path,
                              FindTable(dir, "patients"));
  {
    PASSERELLE_ASSIGN_OR_RETURN(
        SourceTable table,
        SourceTable::Open(patients_path, {{{"Id"}, true},
                                          {{"BIRTHDATE"}, true},
                                          {{"DEATHDATE"}, false},
                                          {{"GENDER"}, true}}));
    PASSERELLE_RETURN_IF_ERROR(table.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          auto reject = [&](std::string reason) {
            return rejects.Reject(patients_path, line, std::move(reason));
          };
          const absl::string_view id = absl::StripAsciiWhitespace(f[0]);
          if (id.empty()) return reject("Id is empty");
          if (ids.contains(id)) return reject("duplicate patient Id");
          absl::StatusOr<int32_t> birth = ParseDay(f[1]);
          if (!birth.ok()) {
            return reject(
                absl::StrCat("BIRTHDATE: ", birth.status().message()));
          }
          absl::StatusOr<int32_t> death = std::numeric_limits<int32_t>::min();
          if (!absl::StripAsciiWhitespace(f[2]).empty()) {
            death = ParseDay(f[2]);
            if (!death.ok()) {
              return reject(
                  absl::StrCat("DEATHDATE: ", death.status().message()));
            }
          }
          int y, m, d;
          CivilFromDays(*birth, &y, &m, &d);
          const int64_t dense = static_cast<int64_t>(ids.size());
          PASSERELLE_RETURN_IF_ERROR(builder->AddPerson(
              dense, BirthKey(y, m, d), SexFromGender(f[3])));
          ids.emplace(std::string(id), dense);
          if (*death != std::numeric_limits<int32_t>::min()) {
            deaths.emplace_back(dense, *death);
          }
          return absl::OkStatus();
        },
        &rejects));
    report->tables.push_back(patients_path);
  }
  builder->FinishPersons();
  report->persons = builder->persons();
  for (const auto& [dense, day] : deaths) {
    PASSERELLE_RETURN_IF_ERROR(builder->MarkDeceased(dense, day));
  }

  int64_t non_loinc = 0;
  int64_t vaccinations = 0;
  std::map<std::string, int64_t> unknown_systems;
  for (const EventTable& spec : EventTables()) {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string path,
                                FindOptionalTable(dir, spec.name));
    if (path.empty()) continue;
    const bool observations = spec.kind == Kind::kObservations;
    std::vector<ColumnSpec> columns = {{{"PATIENT"}, true},
                                       {spec.date_columns, true},
                                       {{"CODE"}, true},
                                       {{"SYSTEM"}, false}};
    if (observations) {
      columns.push_back({{"VALUE"}, true});
      columns.push_back({{"TYPE"}, false});
    }
    PASSERELLE_ASSIGN_OR_RETURN(SourceTable table,
                                SourceTable::Open(path, columns));
    const std::string date_column = table.column(1);
    const bool has_system = table.has(3);
    const bool has_type = observations && table.has(5);
    PASSERELLE_RETURN_IF_ERROR(table.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          auto reject = [&](std::string reason) {
            return rejects.Reject(path, line, std::move(reason));
          };
          const absl::string_view patient = absl::StripAsciiWhitespace(f[0]);
          if (patient.empty()) return reject("PATIENT is empty");
          auto it = ids.find(patient);
          // Never echo the patient's UUID.
          if (it == ids.end()) return reject("PATIENT is not in patients.csv");
          absl::StatusOr<int32_t> day = ParseDay(f[1]);
          if (!day.ok()) {
            return reject(
                absl::StrCat(date_column, ": ", day.status().message()));
          }
          std::string vocabulary = spec.vocabulary;
          const absl::string_view system = absl::StripAsciiWhitespace(f[3]);
          if (has_system && !system.empty()) {
            vocabulary = VocabularyFromSyntheaSystem(system);
            if (vocabulary.empty()) {
              ++unknown_systems[absl::StrCat(spec.name, ".csv SYSTEM \"",
                                             system, "\"")];
              return absl::OkStatus();
            }
          }
          const std::string code = query::NormalizeCode(vocabulary, f[2]);
          if (code.empty()) return reject("CODE is empty");
          if (!query::IsValidCode(vocabulary, code)) {
            return reject(absl::StrCat("CODE \"", f[2], "\" is not a valid ",
                                       vocabulary, " code"));
          }
          v1::Domain domain = spec.domain;
          double value = std::numeric_limits<double>::quiet_NaN();
          if (observations) {
            if (vocabulary == "loinc" && !IsLoincCode(code)) {
              ++non_loinc;
              return absl::OkStatus();
            }
            const absl::string_view text = absl::StripAsciiWhitespace(f[4]);
            const std::string type =
                absl::AsciiStrToLower(absl::StripAsciiWhitespace(f[5]));
            double parsed = 0;
            const bool is_number = !text.empty() &&
                                   absl::SimpleAtod(text, &parsed) &&
                                   std::isfinite(parsed);
            if (has_type && type == "numeric") {
              if (!text.empty() && !is_number) {
                return reject(absl::StrCat(
                    "VALUE \"", text, "\" is not a number (TYPE numeric)"));
              }
              if (is_number) value = parsed;
            } else if (has_type) {
              domain = v1::DOMAIN_OBSERVATION;  // Text, coded answers.
            } else if (is_number) {
              value = parsed;
            } else {
              domain = v1::DOMAIN_OBSERVATION;
            }
          }
          if (!future.Keep(path, line, *day)) return absl::OkStatus();
          PASSERELLE_RETURN_IF_ERROR(
              builder->BeginEvent(it->second, *day, value));
          builder->AddEventCode(domain, vocabulary, code);
          if (vocabulary == "cvx") ++vaccinations;
          return absl::OkStatus();
        },
        &rejects));
    report->tables.push_back(path);
  }
  report->events = builder->events();

  if (non_loinc > 0) {
    report->notes.push_back(absl::StrCat(
        non_loinc,
        " observations.csv rows have codes that are not LOINC (Synthea's own "
        "QALY, DALY, QOLS, ...) and were not loaded"));
  }
  for (const auto& [what, n] : unknown_systems) {
    report->notes.push_back(absl::StrCat(n, " rows with unknown ", what,
                                         " were not loaded (no vocabulary)"));
  }
  if (vaccinations > 0) {
    report->notes.push_back(absl::StrCat(
        vaccinations,
        " immunizations are stored as drug events in vocabulary cvx, which "
        "the cohort language cannot name yet"));
  }
  std::vector<std::string> unmapped;
  for (const char* name : kNotMapped) {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string path,
                                FindOptionalTable(dir, name));
    if (!path.empty()) unmapped.push_back(absl::StrCat(name, ".csv"));
  }
  if (!unmapped.empty()) {
    report->notes.push_back(
        absl::StrCat("not mapped: ", absl::StrJoin(unmapped, ", ")));
  }
  return future.Finish();
}

}  // namespace passerelle::node
