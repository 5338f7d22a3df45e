#include "synth/omop_writer.h"

#include <filesystem>
#include <iostream>
#include <memory>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "csv/csv_writer.h"

namespace passerelle::synth {

const char* const kOmopTableFiles[10] = {"person.csv",
                                         "visit_occurrence.csv",
                                         "condition_occurrence.csv",
                                         "drug_exposure.csv",
                                         "procedure_occurrence.csv",
                                         "measurement.csv",
                                         "observation.csv",
                                         "death.csv",
                                         "concept.csv",
                                         "observation_period.csv"};

namespace {

using csv::CsvWriter;

// OMOP type concept "EHR".
constexpr int64_t kTypeEhr = 32817;

constexpr const char* kPersonHeader =
    "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_birth,"
    "birth_datetime,race_concept_id,ethnicity_concept_id,location_id,"
    "provider_id,care_site_id,person_source_value,gender_source_value,"
    "gender_source_concept_id,race_source_value,race_source_concept_id,"
    "ethnicity_source_value,ethnicity_source_concept_id";
constexpr const char* kVisitHeader =
    "visit_occurrence_id,person_id,visit_concept_id,visit_start_date,"
    "visit_start_datetime,visit_end_date,visit_end_datetime,"
    "visit_type_concept_id,provider_id,care_site_id,visit_source_value,"
    "visit_source_concept_id,admitted_from_concept_id,"
    "admitted_from_source_value,discharged_to_concept_id,"
    "discharged_to_source_value,preceding_visit_occurrence_id";
constexpr const char* kConditionHeader =
    "condition_occurrence_id,person_id,condition_concept_id,"
    "condition_start_date,condition_start_datetime,condition_end_date,"
    "condition_end_datetime,condition_type_concept_id,"
    "condition_status_concept_id,stop_reason,provider_id,visit_occurrence_id,"
    "visit_detail_id,condition_source_value,condition_source_concept_id,"
    "condition_status_source_value";
constexpr const char* kDrugHeader =
    "drug_exposure_id,person_id,drug_concept_id,drug_exposure_start_date,"
    "drug_exposure_start_datetime,drug_exposure_end_date,"
    "drug_exposure_end_datetime,verbatim_end_date,drug_type_concept_id,"
    "stop_reason,refills,quantity,days_supply,sig,route_concept_id,"
    "lot_number,provider_id,visit_occurrence_id,visit_detail_id,"
    "drug_source_value,drug_source_concept_id,route_source_value,"
    "dose_unit_source_value";
constexpr const char* kProcedureHeader =
    "procedure_occurrence_id,person_id,procedure_concept_id,procedure_date,"
    "procedure_datetime,procedure_end_date,procedure_end_datetime,"
    "procedure_type_concept_id,modifier_concept_id,quantity,provider_id,"
    "visit_occurrence_id,visit_detail_id,procedure_source_value,"
    "procedure_source_concept_id,modifier_source_value";
constexpr const char* kMeasurementHeader =
    "measurement_id,person_id,measurement_concept_id,measurement_date,"
    "measurement_datetime,measurement_time,measurement_type_concept_id,"
    "operator_concept_id,value_as_number,value_as_concept_id,unit_concept_id,"
    "range_low,range_high,provider_id,visit_occurrence_id,visit_detail_id,"
    "measurement_source_value,measurement_source_concept_id,"
    "unit_source_value,unit_source_concept_id,value_source_value,"
    "measurement_event_id,meas_event_field_concept_id";
constexpr const char* kObservationHeader =
    "observation_id,person_id,observation_concept_id,observation_date,"
    "observation_datetime,observation_type_concept_id,value_as_number,"
    "value_as_string,value_as_concept_id,qualifier_concept_id,"
    "unit_concept_id,provider_id,visit_occurrence_id,visit_detail_id,"
    "observation_source_value,observation_source_concept_id,"
    "unit_source_value,qualifier_source_value,value_source_value,"
    "observation_event_id,obs_event_field_concept_id";
constexpr const char* kDeathHeader =
    "person_id,death_date,death_datetime,death_type_concept_id,"
    "cause_concept_id,cause_source_value,cause_source_concept_id";
constexpr const char* kPeriodHeader =
    "observation_period_id,person_id,observation_period_start_date,"
    "observation_period_end_date,period_type_concept_id";
constexpr const char* kConceptHeader =
    "concept_id,concept_name,domain_id,vocabulary_id,concept_class_id,"
    "standard_concept,concept_code,valid_start_date,valid_end_date,"
    "invalid_reason";

enum Table {
  kPerson,
  kVisit,
  kCondition,
  kDrug,
  kProcedure,
  kMeasurement,
  kObservation,
  kDeath,
  kConcept,
  kPeriod,
  kNumTables
};

class TableWriters : public PatientSink {
 public:
  TableWriters(const Generator& generator, const OmopWriteOptions& options)
      : generator_(generator), options_(options) {}

  absl::Status Open(const std::string& dir) {
    static const char* const kHeaders[kNumTables] = {
        kPersonHeader,    kVisitHeader,       kConditionHeader,   kDrugHeader,
        kProcedureHeader, kMeasurementHeader, kObservationHeader, kDeathHeader,
        kConceptHeader,   kPeriodHeader};
    for (int t = 0; t < kNumTables; ++t) {
      const std::string path =
          (std::filesystem::path(dir) / kOmopTableFiles[t]).string();
      PASSERELLE_ASSIGN_OR_RETURN(writers_[t], CsvWriter::Create(path));
      writers_[t]->Raw(kHeaders[t]);
      writers_[t]->EndRow();
    }
    return absl::OkStatus();
  }

  absl::Status OnPatient(const PatientRecord& patient) override {
    WritePerson(patient.person);
    for (const Event& e : patient.events) WriteEvent(e);
    ++stats_.persons;
    if (options_.progress && progress_every_ > 0 &&
        stats_.persons % progress_every_ == 0) {
      std::cerr << "generate: " << stats_.persons << "/" << total_
                << " patients\n";
    }
    // Write errors are sticky in each writer; check now and then.
    if ((stats_.persons & 0xFFF) == 0) {
      for (auto& w : writers_) PASSERELLE_RETURN_IF_ERROR(w->status());
    }
    return absl::OkStatus();
  }

  absl::Status WriteConcepts() {
    CsvWriter& w = *writers_[kConcept];
    // The sex concepts person.csv refers to (lowest ids, so the file stays
    // sorted by concept_id).
    w.Row({"8507", "MALE", "Gender", "Gender", "Gender", "S", "M", "1970-01-01",
           "2099-12-31", ""});
    w.Row({"8532", "FEMALE", "Gender", "Gender", "Gender", "S", "F",
           "1970-01-01", "2099-12-31", ""});
    for (const Concept& c : generator_.concepts()) {
      w.Int(c.concept_id);
      w.Text(c.name);
      w.Text(c.domain_id);
      w.Text(c.vocabulary_id);
      w.Text(c.concept_class_id);
      w.Text(c.standard_concept);
      w.Text(c.code);
      w.Raw("1970-01-01");
      w.Raw("2099-12-31");
      w.Empty();
      w.EndRow();
    }
    stats_.concepts = static_cast<int64_t>(generator_.concepts().size()) + 2;
    return absl::OkStatus();
  }

  absl::Status Close() {
    absl::Status status;
    for (auto& w : writers_) {
      if (w == nullptr) continue;
      const absl::Status s = w->Close();
      if (status.ok() && !s.ok()) status = s;
      stats_.bytes += w->bytes_written();
    }
    return status;
  }

  void set_total(int64_t total) {
    total_ = total;
    progress_every_ = total >= 20 ? total / 20 : 1;
  }
  const OmopWriteStats& stats() const { return stats_; }

 private:
  void Date(CsvWriter& w, int32_t days) {
    const CivilDay c = CivilFromDays(days);
    w.Date(c.year, c.month, c.day);
  }
  void OptionalId(CsvWriter& w, int64_t id) {
    if (id > 0) {
      w.Int(id);
    } else {
      w.Empty();
    }
  }
  void Empties(CsvWriter& w, int n) {
    for (int i = 0; i < n; ++i) w.Empty();
  }

  void WritePerson(const Person& p) {
    CsvWriter& w = *writers_[kPerson];
    w.Int(p.person_id);
    w.Int(p.gender_concept_id);
    w.Int(p.year_of_birth);
    if (p.month_of_birth > 0)
      w.Int(p.month_of_birth);
    else
      w.Empty();
    if (p.day_of_birth > 0)
      w.Int(p.day_of_birth);
    else
      w.Empty();
    w.Empty();  // birth_datetime
    w.Int(0);   // race_concept_id
    w.Int(0);   // ethnicity_concept_id
    Empties(w, 3);
    w.Int(p.person_id);  // person_source_value
    w.Raw(p.gender_concept_id == 8507   ? "M"
          : p.gender_concept_id == 8532 ? "F"
                                        : "");
    w.Int(0);
    w.Empty();
    w.Int(0);
    w.Empty();
    w.Int(0);
    w.EndRow();

    CsvWriter& period = *writers_[kPeriod];
    period.Int(p.person_id);  // One period per person: reuse the id.
    period.Int(p.person_id);
    Date(period, p.observation_start_day);
    Date(period, p.observation_end_day);
    period.Int(kTypeEhr);
    period.EndRow();
  }

  void WriteEvent(const Event& e) {
    const Concept& c = generator_.concept_at(e.concept);
    switch (e.domain) {
      case Domain::kVisit: {
        CsvWriter& w = *writers_[kVisit];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        w.Empty();
        Date(w, e.end_day);
        w.Empty();
        w.Int(kTypeEhr);
        Empties(w, 2);
        w.Raw(c.code);
        w.Int(c.concept_id);
        Empties(w, 5);
        w.EndRow();
        break;
      }
      case Domain::kCondition: {
        CsvWriter& w = *writers_[kCondition];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        Empties(w, 3);
        w.Int(kTypeEhr);
        Empties(w, 3);
        OptionalId(w, e.visit_id);
        w.Empty();
        w.Text(c.code);
        w.Int(c.concept_id);
        w.Empty();
        w.EndRow();
        break;
      }
      case Domain::kDrug: {
        CsvWriter& w = *writers_[kDrug];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        w.Empty();
        Date(w, e.end_day);
        Empties(w, 2);
        w.Int(kTypeEhr);
        Empties(w, 2);
        w.Int(e.quantity);
        w.Int(e.days_supply);
        Empties(w, 4);
        OptionalId(w, e.visit_id);
        w.Empty();
        w.Text(c.code);
        w.Int(c.concept_id);
        Empties(w, 2);
        w.EndRow();
        break;
      }
      case Domain::kProcedure: {
        CsvWriter& w = *writers_[kProcedure];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        Empties(w, 3);
        w.Int(kTypeEhr);
        w.Empty();
        w.Int(1);
        w.Empty();
        OptionalId(w, e.visit_id);
        w.Empty();
        w.Text(c.code);
        w.Int(c.concept_id);
        w.Empty();
        w.EndRow();
        break;
      }
      case Domain::kMeasurement: {
        CsvWriter& w = *writers_[kMeasurement];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        Empties(w, 2);
        w.Int(kTypeEhr);
        w.Empty();
        if (e.has_value) {
          w.Decimal(e.value_scaled, e.value_decimals);
        } else {
          w.Empty();
        }
        Empties(w, 5);
        OptionalId(w, e.visit_id);
        w.Empty();
        w.Text(c.code);
        w.Int(c.concept_id);
        w.Text(c.unit);
        Empties(w, 4);
        w.EndRow();
        break;
      }
      case Domain::kObservation: {
        CsvWriter& w = *writers_[kObservation];
        w.Int(e.id);
        w.Int(e.person_id);
        w.Int(c.concept_id);
        Date(w, e.start_day);
        w.Empty();
        w.Int(kTypeEhr);
        Empties(w, 6);
        OptionalId(w, e.visit_id);
        w.Empty();
        w.Text(c.code);
        w.Int(c.concept_id);
        Empties(w, 5);
        w.EndRow();
        break;
      }
      case Domain::kDeath: {
        CsvWriter& w = *writers_[kDeath];
        w.Int(e.person_id);
        Date(w, e.start_day);
        w.Empty();
        w.Int(kTypeEhr);
        w.Int(c.concept_id);
        w.Text(c.code);
        w.Int(c.concept_id);
        w.EndRow();
        break;
      }
    }
    ++stats_.rows[static_cast<int>(e.domain)];
  }

  const Generator& generator_;
  const OmopWriteOptions options_;
  std::unique_ptr<CsvWriter> writers_[kNumTables];
  OmopWriteStats stats_;
  int64_t total_ = 0;
  int64_t progress_every_ = 0;
};

}  // namespace

absl::StatusOr<OmopWriteStats> WriteOmopCsv(const Generator& generator,
                                            const std::string& out_dir,
                                            const OmopWriteOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot create output directory ", out_dir, ": ", ec.message()));
  }
  TableWriters writers(generator, options);
  writers.set_total(generator.options().patients);
  absl::Status status = writers.Open(out_dir);
  if (status.ok()) status = generator.Generate(writers);
  if (status.ok()) status = writers.WriteConcepts();
  const absl::Status closed = writers.Close();
  if (status.ok()) status = closed;
  PASSERELLE_RETURN_IF_ERROR(status);
  return writers.stats();
}

}  // namespace passerelle::synth
