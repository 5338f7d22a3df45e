// Deterministic synthetic patients for one site, as an event stream.
//
// The same (patients, seed, site) always yields the same persons and events,
// byte for byte, on any platform: all randomness comes from synth/rng.h in
// integer arithmetic, and patient i depends only on (seed, site, i), so any
// range of patients can be generated independently (and in parallel).
//
// Codes come from an embedded catalog (synth/catalog.h) with skewed
// frequencies and clinical correlations: diabetes raises the odds of
// metformin, HbA1c tests and high HbA1c values; hypertension of
// antihypertensives and high blood pressure; and so on. The site shifts
// prevalences and prescribing habits, and the coding picks the vocabularies.
//
// Coding::kUniform (one ICD-10 / ATC world, what the benchmarks measure):
//   site "fr": conditions CIM10, procedures CCAM;
//   site "qc": conditions ICD10CA, procedures SNOMED;
//   any other site: conditions ICD10, procedures SNOMED;
//   everywhere: drugs ATC.
// Coding::kSite (the default: each site in its real coding, see
// synth/site_codes.h):
//   site "fr": conditions CIM10, procedures CCAM, drugs CIP13 (community
//     pharmacy), or UCD when the drug has a hospital unit and is given
//     during a hospital stay;
//   site "qc": conditions of outpatient and emergency visits ICD9 (RAMQ
//     physician claims, 3-4 characters), of hospital stays and deaths
//     ICD10CA (MED-ECHO), drugs DIN, procedures SNOMED (no CCI code could be
//     checked against a public table, so none is invented);
//   any other site: as kUniform.
// Both codings describe the same patients: the clinical model draws the
// same random numbers, so the two outputs have the same persons and events
// (ids, dates, values), and differ only in codes and concept ids. A
// patient keeps the same product of a drug across refills.
// Everywhere: measurements LOINC, observations SNOMED, visits Visit
// (standard OMOP ids 9201/9202/9203), sex Gender (8507/8532).
#ifndef PASSERELLE_SYNTH_GENERATOR_H_
#define PASSERELLE_SYNTH_GENERATOR_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace passerelle::synth {

namespace internal {
struct GeneratorTables;
}  // namespace internal

// How events are coded (see the file comment).
enum class Coding : uint8_t { kUniform, kSite };

// Parses "uniform" / "site"; false for anything else.
bool ParseCoding(absl::string_view text, Coding* coding);
absl::string_view CodingName(Coding coding);

struct GeneratorOptions {
  int64_t patients = 1000;
  uint64_t seed = 1;
  // 1-32 characters of [a-z0-9_-]. "fr" and "qc" have their own profiles.
  std::string site = "fr";
  Coding coding = Coding::kSite;
};

// Event kinds, one per OMOP table.
enum class Domain : uint8_t {
  kVisit,
  kCondition,
  kDrug,
  kProcedure,
  kMeasurement,
  kObservation,
  kDeath,
};
constexpr int kNumDomains = 7;

// One vocabulary entry, as written to concept.csv.
struct Concept {
  int64_t concept_id;
  absl::string_view code;  // concept_code and *_source_value, e.g. "E11.9".
  absl::string_view name;
  absl::string_view domain_id;      // "Condition", "Drug", ...
  absl::string_view vocabulary_id;  // "CIM10", "ATC", "DIN", "ICD9", ...
  absl::string_view concept_class_id;
  absl::string_view standard_concept;  // "S" or "".
  absl::string_view unit;              // Measurements only.
};

// Dates are days since 1970-01-01.
struct CivilDay {
  int year;
  int month;
  int day;
};
int32_t DaysFromCivil(int year, int month, int day);
CivilDay CivilFromDays(int32_t days);

// First and last day of generated events: 2010-01-01 and 2024-12-31.
extern const int32_t kFirstEventDay;
extern const int32_t kLastEventDay;

struct Person {
  int64_t person_id;          // Unique per site; sites never collide.
  int64_t index;              // 0-based position in the generated sequence.
  int32_t gender_concept_id;  // 8507 male, 8532 female, 0 unknown.
  int32_t year_of_birth;
  int32_t month_of_birth;  // 0 when only the year is known.
  int32_t day_of_birth;    // 0 when unknown.
  int32_t death_day;       // -1 if alive at the end of 2024.
  // The span every event of the person lies in: from the later of
  // 2010-01-01 and birth, to the earlier of 2024-12-31 and death (drug
  // supply may run past death).
  int32_t observation_start_day;
  int32_t observation_end_day;
};

struct Event {
  Domain domain;
  // Unique within the site across all tables; the death row has id 0 (the
  // OMOP death table has no id column).
  int64_t id;
  int64_t person_id;
  // Index into Generator::concepts() (the cause of death for kDeath).
  int32_t concept;
  int32_t start_day;
  int32_t end_day;  // -1 when the table has no end (conditions, ...).
  // Visit this event was recorded in (an Event::id of a kVisit), or 0.
  int64_t visit_id;
  // Measurements: value = value_scaled / 10^value_decimals.
  int64_t value_scaled;
  int8_t value_decimals;
  bool has_value;
  // Drugs: days of supply and quantity dispensed.
  int16_t days_supply;
  int16_t quantity;
  // Position in generation order (used internally to keep sorting stable).
  int32_t sequence;

  double value() const;
};

// One patient: the person and all of their events in date order (visits
// first on a given day), death last.
struct PatientRecord {
  Person person;
  std::vector<Event> events;
  // Scratch space reused between patients.
  std::vector<int32_t> scratch;
};

// Receives generated patients in index order.
class PatientSink {
 public:
  virtual ~PatientSink() = default;
  // Called once per patient; the record is valid only during the call. A
  // non-OK status stops generation and is returned by Generate().
  virtual absl::Status OnPatient(const PatientRecord& patient) = 0;
};

// Generates one site's patients.
//
// A Generator is immutable after Create() and safe for concurrent use from
// several threads, each with its own PatientRecord.
class Generator {
 public:
  // InvalidArgument naming the bad option (negative patient count, bad site).
  static absl::StatusOr<std::unique_ptr<Generator>> Create(
      const GeneratorOptions& options);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  const GeneratorOptions& options() const { return options_; }

  // Every concept that events may reference, in concept_id order.
  const std::vector<Concept>& concepts() const { return concepts_; }
  const Concept& concept_at(int32_t index) const { return concepts_[index]; }

  // The person_id of patient `index` (0-based).
  int64_t PersonId(int64_t index) const;

  // Fills `*record` with patient `index`. Deterministic.
  void GeneratePatient(int64_t index, PatientRecord* record) const;

  // Generates patients [begin, end) in order into `sink`; end < 0 means
  // options().patients.
  absl::Status Generate(PatientSink& sink, int64_t begin = 0,
                        int64_t end = -1) const;

 private:
  explicit Generator(const GeneratorOptions& options);
  absl::Status Init();

  GeneratorOptions options_;
  int site_profile_ = 0;      // 0 fr, 1 qc, 2 other.
  bool site_coding_ = false;  // Coding::kSite at a site that has one.
  int64_t person_id_base_ = 0;
  uint64_t stream_seed_ = 0;
  std::vector<Concept> concepts_;
  std::unique_ptr<internal::GeneratorTables> tables_;
};

}  // namespace passerelle::synth

#endif  // PASSERELLE_SYNTH_GENERATOR_H_
