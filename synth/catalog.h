// The curated code lists the generator draws from (embedded, so generation
// needs no external files). Codes are real: ICD-10 (valid in CIM-10 and
// ICD-10-CA), ATC, LOINC, CCAM and SNOMED CT; names are short English labels.
#ifndef PASSERELLE_SYNTH_CATALOG_H_
#define PASSERELLE_SYNTH_CATALOG_H_

#include <cstdint>

#include "absl/types/span.h"

namespace passerelle::synth::catalog {

// Condition groups. Chronic groups come first, in the order their risks are
// drawn (a group may depend on the ones before it).
enum Group : uint8_t {
  kObesity,
  kDyslipidemia,
  kHypertension,
  kT2d,
  kT1d,
  kIhd,
  kAf,
  kHeartFailure,
  kCkd,
  kAsthma,
  kCopd,
  kDepression,
  kAnxiety,
  kGerd,
  kBackPain,
  kHypothyroid,
  kOsteoarthritis,
  kDementia,
  kBreastCancer,
  kProstateCancer,
  kLungCancer,
  kColorectalCancer,
  kStroke,
  kNumChronic,
  // Primary-care problems, drawn with Zipf-like weights.
  kAcute = kNumChronic,
  // Main diagnoses of hospital stays.
  kSevere,
  kNumGroups,
};

// Restrictions and properties of a code.
enum Flags : uint16_t {
  kNone = 0,
  kInfection = 1 << 0,  // Acute infection: may get an antibiotic.
  kFemale = 1 << 1,     // Women only.
  kMale = 1 << 2,       // Men only.
  kAdult = 1 << 3,      // Age >= 18.
  kOlder = 1 << 4,      // Age >= 60.
  kFrom2020 = 1 << 5,   // Only on or after 2020-03-01 (COVID-19).
  kPregnancy = 1 << 6,  // Women aged 18-45.
  kChild = 1 << 7,      // Age < 18.
};

struct ConditionCode {
  Group group;
  const char* code;  // Dotted ICD-10, e.g. "E11.9".
  const char* name;
  uint16_t weight;  // Relative frequency within the group.
  uint16_t flags;
};

// Drug therapy classes.
enum RxClass : uint8_t {
  kRxT2dFirst,
  kRxT2dAddOn,
  kRxInsulin,
  kRxAntihypertensive,
  kRxStatin,
  kRxAntiplatelet,
  kRxAnticoagulant,
  kRxHeartFailure,
  kRxRelieverInhaler,
  kRxControllerInhaler,
  kRxCopdInhaler,
  kRxAntidepressant,
  kRxAnxiolytic,
  kRxPpi,
  kRxAnalgesic,
  kRxThyroid,
  kRxDementia,
  kRxBreastCancer,
  kRxProstateCancer,
  kRxAntibiotic,
  kRxSymptomatic,
  kRxContraceptive,
  kRxVitaminD,
  kRxGout,
  kRxAnemia,
  kNumRxClasses,
};

struct DrugCode {
  RxClass rx_class;
  const char* atc;
  const char* name;
  // Relative frequency within the class, per site profile.
  uint16_t weight_fr;
  uint16_t weight_qc;
  uint16_t weight_other;
};

// Procedure classes.
enum PxClass : uint8_t {
  kPxRoutine,    // ECG, chest X-ray, ultrasound: frequent, any visit.
  kPxCardiac,    // Echocardiography, coronary angioplasty.
  kPxScreening,  // Mammography, colonoscopy, densitometry.
  kPxImaging,    // CT, MRI.
  kPxEndoscopy,
  kPxSpirometry,
  kPxHip,
  kPxKnee,
  kPxAppendectomy,
  kPxCholecystectomy,
  kPxDelivery,
  kPxCesarean,
  kPxCataract,
  kPxDialysis,
  kPxMastectomy,
  kNumPxClasses,
};

// One procedure with its CCAM code (used by site "fr") and SNOMED CT code
// (used elsewhere).
struct ProcedureCode {
  PxClass px_class;
  const char* ccam;
  const char* ccam_name;
  const char* snomed;
  const char* snomed_name;
  uint16_t weight;
};

// Laboratory results and vital signs (LOINC), with their unit.
enum Lab : uint8_t {
  kHba1c,
  kGlucose,
  kCreatinine,
  kEgfr,
  kCholesterol,
  kLdl,
  kSystolic,
  kDiastolic,
  kBmi,
  kWeight,
  kHemoglobin,
  kPotassium,
  kTsh,
  kInr,
  kNumLabs,
};

struct LabCode {
  Lab lab;
  const char* loinc;
  const char* name;
  const char* unit;
  const char* concept_class;  // "Lab Test" or "Clinical Observation".
};

// Observations (SNOMED CT findings).
enum Obs : uint8_t {
  kNeverSmoked,
  kExSmoker,
  kSmoker,
  kFamilyHistoryDiabetes,
  kNumObs,
};

struct ObservationCode {
  Obs obs;
  const char* snomed;
  const char* name;
};

// Visit types, with their standard OMOP concept ids.
enum VisitType : uint8_t {
  kOutpatient,
  kEmergency,
  kInpatient,
  kNumVisitTypes
};

struct VisitCode {
  VisitType type;
  int64_t omop_concept_id;
  const char* code;
  const char* name;
};

absl::Span<const ConditionCode> ConditionCodes();
absl::Span<const DrugCode> DrugCodes();
absl::Span<const ProcedureCode> ProcedureCodes();
absl::Span<const LabCode> LabCodes();
absl::Span<const ObservationCode> ObservationCodes();
absl::Span<const VisitCode> VisitCodes();

}  // namespace passerelle::synth::catalog

#endif  // PASSERELLE_SYNTH_CATALOG_H_
