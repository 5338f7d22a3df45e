#include "synth/snapshot_sink.h"

#include <iostream>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "node/omop_loader.h"
#include "query/vocabulary.h"

namespace passerelle::synth {
namespace {

using node::SnapshotBuilder;

v1::Domain NodeDomain(Domain d) {
  switch (d) {
    case Domain::kVisit:
      return v1::DOMAIN_VISIT;
    case Domain::kCondition:
      return v1::DOMAIN_CONDITION;
    case Domain::kDrug:
      return v1::DOMAIN_DRUG;
    case Domain::kProcedure:
      return v1::DOMAIN_PROCEDURE;
    case Domain::kMeasurement:
      return v1::DOMAIN_MEASUREMENT;
    case Domain::kObservation:
      return v1::DOMAIN_OBSERVATION;
    case Domain::kDeath:
      break;
  }
  return v1::DOMAIN_UNSPECIFIED;
}

// As the OMOP loader reads gender_concept_id (and the "M"/"F" source value
// the CSV writer puts beside it).
v1::Sex SexOf(int32_t gender_concept_id) {
  switch (gender_concept_id) {
    case 8532:
      return v1::SEX_FEMALE;
    case 8507:
      return v1::SEX_MALE;
    case 8521:
    case 8570:
      return v1::SEX_OTHER;
    default:
      return v1::SEX_UNKNOWN;
  }
}

class SnapshotSink : public PatientSink {
 public:
  SnapshotSink(const Generator& generator, SnapshotBuilder* builder,
               const FillOptions& options)
      : generator_(generator),
        builder_(builder),
        options_(options),
        total_(generator.options().patients),
        codes_(static_cast<size_t>(kNumDomains) * generator.concepts().size()) {
  }

  absl::Status OnPatient(const PatientRecord& patient) override {
    const Person& p = patient.person;
    PASSERELLE_RETURN_IF_ERROR(builder_->AddPerson(
        p.person_id,
        node::BirthKey(p.year_of_birth, p.month_of_birth, p.day_of_birth),
        SexOf(p.gender_concept_id)));
    for (const Event& e : patient.events) {
      if (e.domain == Domain::kDeath) {
        PASSERELLE_RETURN_IF_ERROR(
            builder_->MarkDeceased(p.person_id, e.start_day));
        continue;
      }
      // Only measurements carry value_as_number in the CSV.
      const double value = e.domain == Domain::kMeasurement && e.has_value
                               ? e.value()
                               : std::numeric_limits<double>::quiet_NaN();
      PASSERELLE_RETURN_IF_ERROR(
          builder_->BeginEventForLastPerson(e.start_day, value));
      const Codes& codes = CodesOf(e.domain, e.concept);
      if (codes.concept_code != kNone)
        builder_->AddEventCode(codes.concept_code);
      if (codes.vocabulary_code != kNone)
        builder_->AddEventCode(codes.vocabulary_code);
    }
    ++done_;
    if (options_.progress && total_ >= 20 && done_ % (total_ / 20) == 0) {
      std::cerr << "generate: " << done_ << "/" << total_ << " patients\n";
    }
    return absl::OkStatus();
  }

 private:
  static constexpr SnapshotBuilder::CodeId kNone =
      std::numeric_limits<SnapshotBuilder::CodeId>::max();
  struct Codes {
    bool known = false;
    SnapshotBuilder::CodeId concept_code = kNone;
    SnapshotBuilder::CodeId vocabulary_code = kNone;
  };

  // The loader's codes for a row of `domain` with concept_id (and
  // source_concept_id) = the concept's id, found in concept.csv.
  const Codes& CodesOf(Domain domain, int32_t concept_index) {
    Codes& c =
        codes_[static_cast<size_t>(domain) * generator_.concepts().size() +
               static_cast<size_t>(concept_index)];
    if (!c.known) {
      c.known = true;
      const Concept& concept_row = generator_.concept_at(concept_index);
      const v1::Domain d = NodeDomain(domain);
      if (concept_row.concept_id != 0) {
        c.concept_code = builder_->InternCode(
            d, "concept", absl::StrCat(concept_row.concept_id));
        const std::string vocab =
            node::VocabularyFromOmop(concept_row.vocabulary_id);
        c.vocabulary_code = builder_->InternCode(
            d, vocab, query::NormalizeCode(vocab, concept_row.code));
      }
    }
    return c;
  }

  const Generator& generator_;
  SnapshotBuilder* const builder_;
  const FillOptions options_;
  const int64_t total_;
  int64_t done_ = 0;
  std::vector<Codes> codes_;  // By (domain, concept index).
};

}  // namespace

absl::Status FillSnapshot(const Generator& generator,
                          node::SnapshotBuilder* builder,
                          const FillOptions& options) {
  if (builder->persons() != 0) {
    return absl::FailedPreconditionError("FillSnapshot needs an empty builder");
  }
  SnapshotSink sink(generator, builder, options);
  return generator.Generate(sink);
}

}  // namespace passerelle::synth
