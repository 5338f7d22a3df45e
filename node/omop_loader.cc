#include "node/omop_loader.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "node/loader.h"
#include "node/table_reader.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

constexpr size_t kMaxSamples = 20;

struct EventTable {
  const char* name;
  v1::Domain domain;
  const char* prefix;       // Column prefix, e.g. "condition".
  const char* date_column;  // Start date.
  bool has_value;
};

const EventTable kEventTables[] = {
    {"condition_occurrence", v1::DOMAIN_CONDITION, "condition",
     "condition_start_date", false},
    {"drug_exposure", v1::DOMAIN_DRUG, "drug", "drug_exposure_start_date",
     false},
    {"procedure_occurrence", v1::DOMAIN_PROCEDURE, "procedure",
     "procedure_date", false},
    {"measurement", v1::DOMAIN_MEASUREMENT, "measurement", "measurement_date",
     true},
    {"visit_occurrence", v1::DOMAIN_VISIT, "visit", "visit_start_date", false},
    {"observation", v1::DOMAIN_OBSERVATION, "observation", "observation_date",
     true},
};

struct Concept {
  std::string vocabulary;
  std::string code;
};

class Rejections {
 public:
  Rejections(const LoadOptions& options, LoadReport* report)
      : options_(options), report_(report) {}
  absl::Status Reject(const std::string& file, int64_t line,
                      std::string reason) {
    ++report_->rejected;
    if (report_->rejected_samples.size() < kMaxSamples) {
      report_->rejected_samples.push_back({file, line, std::move(reason)});
    }
    if (report_->rejected > options_.max_rejected) {
      const RejectedRow& first = report_->rejected_samples.front();
      return absl::InvalidArgumentError(
          absl::StrCat("load aborted: more than ", options_.max_rejected,
                       " rejected rows; first: ", first.file, ":", first.line,
                       ": ", first.reason));
    }
    return absl::OkStatus();
  }

  TableReader::RejectFn For(const std::string& file) {
    return [this, file](int64_t line, std::string reason) {
      return Reject(file, line, std::move(reason));
    };
  }

 private:
  const LoadOptions& options_;
  LoadReport* report_;
};

bool ParseId(absl::string_view s, int64_t* out) {
  s = absl::StripAsciiWhitespace(s);
  return !s.empty() && absl::SimpleAtoi(s, out);
}

v1::Sex SexFromGenderConcept(int64_t concept_id, absl::string_view source) {
  switch (concept_id) {
    case 8532:
      return v1::SEX_FEMALE;
    case 8507:
      return v1::SEX_MALE;
    case 8521:
    case 8570:
      return v1::SEX_OTHER;
    default:
      break;
  }
  const std::string s =
      absl::AsciiStrToUpper(absl::StripAsciiWhitespace(source));
  if (s == "F" || s == "FEMALE") return v1::SEX_FEMALE;
  if (s == "M" || s == "MALE") return v1::SEX_MALE;
  return v1::SEX_UNKNOWN;
}

bool MatchesPattern(absl::string_view pattern, absl::string_view value) {
  if (absl::EndsWith(pattern, "*")) {
    return absl::StartsWith(value, pattern.substr(0, pattern.size() - 1));
  }
  return pattern == value;
}

absl::StatusOr<absl::flat_hash_map<int64_t, Concept>> LoadConcepts(
    const std::string& path) {
  absl::flat_hash_map<int64_t, Concept> concepts;
  PASSERELLE_ASSIGN_OR_RETURN(
      TableReader reader,
      TableReader::Open(path, {"concept_id", "vocabulary_id", "concept_code"},
                        {true, true, true}));
  PASSERELLE_RETURN_IF_ERROR(reader.ForEach(
      [&](const std::vector<absl::string_view>& f,
          int64_t line) -> absl::Status {
        int64_t id;
        if (!ParseId(f[0], &id)) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ":", line, ": concept_id \"", f[0],
                           "\" is not an integer"));
        }
        const std::string vocab = VocabularyFromOmop(f[1]);
        concepts[id] = {vocab, query::NormalizeCode(vocab, f[2])};
        return absl::OkStatus();
      },
      [&](int64_t line, std::string reason) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line, ": ", reason));
      }));
  return concepts;
}

}  // namespace

std::string VocabularyFromOmop(absl::string_view vocabulary_id) {
  std::string v =
      absl::AsciiStrToLower(absl::StripAsciiWhitespace(vocabulary_id));
  v.erase(
      std::remove_if(v.begin(), v.end(),
                     [](char c) { return c == ' ' || c == '-' || c == '_'; }),
      v.end());
  return v;
}

absl::StatusOr<std::vector<VocabularyRule>> ParseVocabularyRules(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read vocabulary rules ", path));
  }
  std::vector<VocabularyRule> rules;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    absl::string_view body = line;
    if (size_t hash = body.find('#'); hash != absl::string_view::npos) {
      body = body.substr(0, hash);
    }
    std::vector<absl::string_view> words =
        absl::StrSplit(body, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (words.empty()) continue;
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", why));
    };
    if (words.size() != 4) {
      return fail("expected `DOMAIN source_concept_id PATTERN VOCABULARY`");
    }
    bool known_domain = words[0] == "*";
    for (const EventTable& t : kEventTables)
      known_domain |= words[0] == t.prefix;
    if (!known_domain)
      return fail(absl::StrCat("unknown domain \"", words[0], "\""));
    if (words[1] != "source_concept_id") {
      return fail(absl::StrCat("unknown column \"", words[1],
                               "\" (only source_concept_id is supported)"));
    }
    const std::string vocab = absl::AsciiStrToLower(words[3]);
    if (!query::IsKnownVocabulary(vocab)) {
      return fail(absl::StrCat("unknown vocabulary \"", words[3], "\""));
    }
    rules.push_back({std::string(words[0]), std::string(words[2]), vocab});
  }
  return rules;
}

absl::Status LoadOmopDirectory(const std::string& dir,
                               const LoadOptions& options,
                               SnapshotBuilder* builder, LoadReport* report) {
  Rejections rejections(options, report);
  FutureEventCheck future(options, report);
  std::vector<VocabularyRule> rules;
  if (!options.vocabulary_rules_file.empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(
        rules, ParseVocabularyRules(options.vocabulary_rules_file));
  }
  // Optional tables: absent is fine, ambiguous (person.csv and PERSON.csv)
  // is an error rather than a guess.
  auto optional_table =
      [&](absl::string_view name) -> absl::StatusOr<std::string> {
    absl::StatusOr<std::string> path = FindTable(dir, name);
    if (!path.ok() && path.status().code() == absl::StatusCode::kNotFound)
      return std::string();
    return path;
  };
  absl::flat_hash_map<int64_t, Concept> concepts;
  PASSERELLE_ASSIGN_OR_RETURN(std::string concept_path,
                              optional_table("concept"));
  if (absl::StatusOr<std::string> path = concept_path; !concept_path.empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(concepts, LoadConcepts(*path));
    report->tables.push_back(*path);
  }

  // Persons.
  PASSERELLE_ASSIGN_OR_RETURN(std::string person_path,
                              FindTable(dir, "person"));
  {
    PASSERELLE_ASSIGN_OR_RETURN(
        TableReader reader,
        TableReader::Open(
            person_path,
            {"person_id", "gender_concept_id", "year_of_birth",
             "month_of_birth", "day_of_birth", "gender_source_value"},
            {true, true, true, false, false, false}));
    PASSERELLE_RETURN_IF_ERROR(reader.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          int64_t id = 0, gender = 0;
          int year = 0, month = 0, day = 0;
          if (!ParseId(f[0], &id)) {
            return rejections.Reject(
                person_path, line,
                absl::StrCat("person_id \"", f[0], "\" is not an integer"));
          }
          if (!ParseId(f[1], &gender)) gender = 0;
          if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(f[2]), &year) ||
              year < 1800 || year > 2300) {
            return rejections.Reject(
                person_path, line,
                absl::StrCat("year_of_birth \"", f[2],
                             "\" is missing or out of range"));
          }
          if (!f[3].empty() && !f[4].empty()) {
            if (!absl::SimpleAtoi(f[3], &month) ||
                !absl::SimpleAtoi(f[4], &day) ||
                !ParseDay(absl::StrFormat("%04d-%02d-%02d", year, month, day))
                     .ok()) {
              return rejections.Reject(
                  person_path, line,
                  "month_of_birth/day_of_birth is not a valid date");
            }
          }
          absl::Status st =
              builder->AddPerson(id, BirthKey(year, month, day),
                                 SexFromGenderConcept(gender, f[5]));
          if (!st.ok())
            return rejections.Reject(person_path, line,
                                     std::string(st.message()));
          return absl::OkStatus();
        },
        rejections.For(person_path)));
    report->tables.push_back(person_path);
  }
  builder->FinishPersons();
  report->persons = builder->persons();

  // Deaths.
  PASSERELLE_ASSIGN_OR_RETURN(std::string death_path, optional_table("death"));
  if (absl::StatusOr<std::string> path = death_path; !death_path.empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(
        TableReader reader,
        TableReader::Open(*path, {"person_id", "death_date"}, {true, true}));
    PASSERELLE_RETURN_IF_ERROR(reader.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          int64_t id;
          absl::StatusOr<int32_t> day = ParseDay(f[1]);
          if (!ParseId(f[0], &id)) {
            return rejections.Reject(*path, line,
                                     "person_id is not an integer");
          }
          if (!day.ok())
            return rejections.Reject(*path, line,
                                     std::string(day.status().message()));
          absl::Status st = builder->MarkDeceased(id, *day);
          if (!st.ok())
            return rejections.Reject(*path, line, std::string(st.message()));
          return absl::OkStatus();
        },
        rejections.For(*path)));
    report->tables.push_back(*path);
  }

  // Events.
  int64_t unmapped = 0;
  for (const EventTable& table : kEventTables) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string table_path,
                                optional_table(table.name));
    if (table_path.empty()) continue;
    absl::StatusOr<std::string> path = table_path;
    const std::string p = table.prefix;
    std::vector<std::string> columns = {
        "person_id", table.date_column, p + "_concept_id",
        p + "_source_concept_id", p + "_source_value"};
    std::vector<bool> required = {true, true, true, false, false};
    if (table.has_value) {
      columns.push_back("value_as_number");
      required.push_back(false);
    }
    std::vector<const VocabularyRule*> table_rules;
    for (const VocabularyRule& r : rules) {
      if (r.domain == "*" || r.domain == p) table_rules.push_back(&r);
    }
    PASSERELLE_ASSIGN_OR_RETURN(TableReader reader,
                                TableReader::Open(*path, columns, required));
    std::vector<std::pair<std::string, std::string>> row_codes;  // This row's.
    PASSERELLE_RETURN_IF_ERROR(reader.ForEach(
        [&](const std::vector<absl::string_view>& f,
            int64_t line) -> absl::Status {
          int64_t person;
          if (!ParseId(f[0], &person)) {
            return rejections.Reject(*path, line,
                                     "person_id is not an integer");
          }
          absl::StatusOr<int32_t> day = ParseDay(f[1]);
          if (!day.ok()) {
            return rejections.Reject(
                *path, line,
                absl::StrCat(table.date_column, ": ", day.status().message()));
          }
          double value = std::numeric_limits<double>::quiet_NaN();
          if (table.has_value) {
            absl::string_view v = absl::StripAsciiWhitespace(f[5]);
            if (!v.empty() && !absl::SimpleAtod(v, &value)) {
              return rejections.Reject(
                  *path, line,
                  absl::StrCat("value_as_number \"", v, "\" is not a number"));
            }
          }
          if (!future.Keep(*path, line, *day)) return absl::OkStatus();
          absl::Status st = builder->BeginEvent(person, *day, value);
          if (!st.ok())
            return rejections.Reject(*path, line, std::string(st.message()));
          int64_t concept_id = 0, source_concept_id = 0;
          ParseId(f[2], &concept_id);
          ParseId(f[3], &source_concept_id);
          // Each code is indexed once per row: a row is one event whatever
          // the number of ways it names a code (source_concept_id equal to
          // concept_id, as in most exports, or two concepts with the same
          // vocabulary code). The postings hold events, not mentions.
          row_codes.clear();
          auto add_code = [&](absl::string_view vocabulary,
                              absl::string_view code) {
            for (const auto& [v, c] : row_codes) {
              if (v == vocabulary && c == code) return;
            }
            row_codes.emplace_back(std::string(vocabulary), std::string(code));
            builder->AddEventCode(table.domain, vocabulary, code);
          };
          bool coded_source = false;
          for (int64_t id : {concept_id, source_concept_id}) {
            if (id == 0) continue;
            add_code("concept", absl::StrCat(id));
            if (auto it = concepts.find(id); it != concepts.end()) {
              add_code(it->second.vocabulary, it->second.code);
              coded_source |= id == source_concept_id;
            }
          }
          absl::string_view source_value = absl::StripAsciiWhitespace(f[4]);
          if (!coded_source && !source_value.empty()) {
            const std::string sid = absl::StrCat(source_concept_id);
            const VocabularyRule* rule = nullptr;
            for (const VocabularyRule* r : table_rules) {
              if (MatchesPattern(r->pattern, sid)) {
                rule = r;
                break;
              }
            }
            if (rule != nullptr) {
              add_code(rule->vocabulary,
                       query::NormalizeCode(rule->vocabulary, source_value));
            } else {
              // Never guess a vocabulary: the value stays unindexed.
              ++unmapped;
            }
          }
          return absl::OkStatus();
        },
        rejections.For(*path)));
    report->tables.push_back(*path);
  }
  report->events = builder->events();
  if (unmapped > 0) {
    report->notes.push_back(absl::StrCat(
        unmapped,
        " source values have no known vocabulary (no CONCEPT row, no rule) and "
        "are reachable only through concept ids"));
  }
  return future.Finish();
}

}  // namespace passerelle::node
