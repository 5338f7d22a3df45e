#include "synth/generator.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "synth/catalog.h"
#include "synth/rng.h"
#include "synth/site_codes.h"

namespace passerelle::synth {

using catalog::Group;
using catalog::Lab;
using catalog::PxClass;
using catalog::RxClass;

// Howard Hinnant's days_from_civil / civil_from_days (public domain).
int32_t DaysFromCivil(int year, int month, int day) {
  year -= month <= 2;
  const int era = (year >= 0 ? year : year - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(year - era * 400);
  const unsigned doy =
      (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int32_t>(doe) - 719468;
}

CivilDay CivilFromDays(int32_t days) {
  days += 719468;
  const int era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int y = static_cast<int>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return CivilDay{y + (m <= 2), m, d};
}

const int32_t kFirstEventDay = DaysFromCivil(2010, 1, 1);
const int32_t kLastEventDay = DaysFromCivil(2024, 12, 31);

bool ParseCoding(absl::string_view text, Coding* coding) {
  if (text == "uniform") {
    *coding = Coding::kUniform;
  } else if (text == "site") {
    *coding = Coding::kSite;
  } else {
    return false;
  }
  return true;
}

absl::string_view CodingName(Coding coding) {
  return coding == Coding::kUniform ? "uniform" : "site";
}

double Event::value() const {
  double divisor = 1;
  for (int i = 0; i < value_decimals; ++i) divisor *= 10;
  return static_cast<double>(value_scaled) / divisor;
}

namespace {

constexpr int64_t kMaxPatients = 9'999'999'999;
constexpr int64_t kPersonIdBlock = 10'000'000'000;
constexpr int32_t kMaxEventsPerPatient = 9'998;
constexpr int64_t kLocalConceptBase = 2'000'000'000;
constexpr int64_t kVocabularyBlock = 100'000;
constexpr int32_t kNoDay = -1;
constexpr int32_t kNever = std::numeric_limits<int32_t>::max();

// Vocabulary blocks of the synthetic concept ids.
enum VocabularyBlock {
  kBlockCim10 = 1,
  kBlockIcd10ca = 2,
  kBlockIcd10 = 3,
  kBlockAtc = 4,
  kBlockLoinc = 5,
  kBlockCcam = 6,
  kBlockSnomed = 7,
  kBlockIcd9 = 8,
  kBlockDin = 9,
  kBlockCip13 = 10,
  kBlockUcd = 11,
  kNumBlocks
};

enum Profile { kFr = 0, kQc = 1, kOther = 2 };

uint64_t Fnv1a64(absl::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

bool ValidSite(const std::string& site) {
  if (site.empty() || site.size() > 32) return false;
  for (char c : site) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

// A table of items with integer weights, sampled by binary search.
struct WeightedTable {
  std::vector<int32_t> items;
  std::vector<uint32_t> cumulative;

  void Add(int32_t item, uint32_t weight) {
    if (weight == 0) return;
    items.push_back(item);
    cumulative.push_back((cumulative.empty() ? 0 : cumulative.back()) + weight);
  }
  bool empty() const { return items.empty(); }
  int32_t Pick(Rng& rng) const {
    const uint32_t r = rng.Below(cumulative.back());
    const size_t i = static_cast<size_t>(
        std::upper_bound(cumulative.begin(), cumulative.end(), r) -
        cumulative.begin());
    return items[i];
  }
};

// Prevalence (per mille) of each chronic group by age band
// (<18, 18-39, 40-59, 60-74, 75+), before sex, site and risk factors.
constexpr uint16_t kBasePermille[catalog::kNumChronic][5] = {
    {40, 120, 170, 190, 150},  // obesity
    {2, 40, 160, 280, 300},    // dyslipidaemia
    {2, 40, 200, 420, 580},    // hypertension
    {1, 12, 55, 125, 150},     // type 2 diabetes
    {4, 5, 5, 4, 3},           // type 1 diabetes
    {0, 3, 40, 110, 180},      // ischaemic heart disease
    {0, 2, 12, 60, 140},       // atrial fibrillation
    {0, 2, 10, 40, 110},       // heart failure
    {1, 5, 20, 70, 160},       // chronic kidney disease
    {90, 80, 70, 65, 60},      // asthma
    {0, 5, 40, 90, 110},       // COPD
    {20, 90, 90, 70, 70},      // depression
    {30, 90, 80, 60, 50},      // anxiety
    {10, 60, 100, 120, 120},   // GERD
    {10, 120, 170, 160, 140},  // back pain
    {3, 25, 50, 70, 80},       // hypothyroidism
    {0, 10, 70, 180, 280},     // osteoarthritis
    {0, 0, 2, 25, 120},        // dementia
    {0, 5, 25, 45, 50},        // breast cancer (women)
    {0, 0, 15, 70, 110},       // prostate cancer (men)
    {0, 1, 6, 15, 15},         // lung cancer
    {0, 1, 6, 15, 25},         // colorectal cancer
    {0, 2, 10, 35, 70},        // stroke
};

// Site prevalence multipliers in percent: fr, qc, other.
constexpr uint16_t kSitePercent[catalog::kNumChronic][3] = {
    {80, 125, 100},   // obesity: more common in Quebec
    {110, 95, 100},   // dyslipidaemia
    {100, 100, 100},  // hypertension
    {85, 120, 100},   // type 2 diabetes
    {100, 100, 100},  // type 1 diabetes
    {90, 105, 100},   // IHD
    {100, 100, 100},  // AF
    {100, 100, 100},  // heart failure
    {100, 100, 100},  // CKD
    {90, 115, 100},   // asthma
    {100, 105, 100},  // COPD
    {90, 110, 100},   // depression
    {110, 95, 100},   // anxiety
    {100, 105, 100},  // GERD
    {115, 95, 100},   // back pain
    {100, 100, 100},  // hypothyroidism
    {100, 100, 100},  // osteoarthritis
    {100, 100, 100},  // dementia
    {105, 100, 100},  // breast cancer
    {105, 95, 100},   // prostate cancer
    {105, 100, 100},  // lung cancer
    {100, 100, 100},  // colorectal cancer
    {100, 100, 100},  // stroke
};

// Drug therapy plans: which classes a chronic condition is treated with, and
// how often (per mille of patients with the condition).
struct Therapy {
  Group group;
  RxClass rx;
  uint16_t permille;
};
constexpr Therapy kTherapies[] = {
    {catalog::kT2d, catalog::kRxT2dFirst, 850},
    {catalog::kT2d, catalog::kRxT2dAddOn, 350},
    {catalog::kT1d, catalog::kRxInsulin, 1000},
    {catalog::kT1d, catalog::kRxInsulin, 700},
    {catalog::kHypertension, catalog::kRxAntihypertensive, 800},
    {catalog::kHypertension, catalog::kRxAntihypertensive, 350},
    {catalog::kDyslipidemia, catalog::kRxStatin, 650},
    {catalog::kIhd, catalog::kRxStatin, 800},
    {catalog::kIhd, catalog::kRxAntiplatelet, 800},
    {catalog::kAf, catalog::kRxAnticoagulant, 750},
    {catalog::kHeartFailure, catalog::kRxHeartFailure, 850},
    {catalog::kHeartFailure, catalog::kRxHeartFailure, 400},
    {catalog::kCkd, catalog::kRxAnemia, 150},
    {catalog::kAsthma, catalog::kRxRelieverInhaler, 850},
    {catalog::kAsthma, catalog::kRxControllerInhaler, 500},
    {catalog::kCopd, catalog::kRxCopdInhaler, 800},
    {catalog::kCopd, catalog::kRxRelieverInhaler, 400},
    {catalog::kDepression, catalog::kRxAntidepressant, 700},
    {catalog::kAnxiety, catalog::kRxAnxiolytic, 450},
    {catalog::kAnxiety, catalog::kRxAntidepressant, 200},
    {catalog::kGerd, catalog::kRxPpi, 700},
    {catalog::kBackPain, catalog::kRxAnalgesic, 700},
    {catalog::kHypothyroid, catalog::kRxThyroid, 900},
    {catalog::kOsteoarthritis, catalog::kRxAnalgesic, 600},
    {catalog::kDementia, catalog::kRxDementia, 500},
    {catalog::kBreastCancer, catalog::kRxBreastCancer, 700},
    {catalog::kProstateCancer, catalog::kRxProstateCancer, 600},
    {catalog::kStroke, catalog::kRxAntiplatelet, 700},
    {catalog::kStroke, catalog::kRxStatin, 600},
};

// Per-refill probability (per mille) that a treatment goes on: long-term
// treatments persist, symptomatic ones come in short courses.
uint16_t ContinuePermille(RxClass rx) {
  switch (rx) {
    case catalog::kRxAnalgesic:
    case catalog::kRxAnxiolytic:
    case catalog::kRxAnemia:
      return 650;
    case catalog::kRxRelieverInhaler:
    case catalog::kRxPpi:
    case catalog::kRxAntidepressant:
      return 800;
    default:
      return 870;
  }
}

// Age pyramid: weights of 5-year age bands (0-4 ... 95-99) at the end of
// 2024, roughly France/Quebec.
constexpr uint16_t kAgeBandWeight[20] = {50, 55, 60, 60, 58, 60, 63, 65, 63, 66,
                                         68, 66, 63, 60, 55, 45, 30, 20, 12, 5};

int AgeBand(int age) {
  if (age < 18) return 0;
  if (age < 40) return 1;
  if (age < 60) return 2;
  if (age < 75) return 3;
  return 4;
}

}  // namespace

struct internal::GeneratorTables {
  WeightedTable conditions[catalog::kNumGroups];
  // Minimum age for a chronic group (from its codes' flags).
  int min_age[catalog::kNumChronic] = {};
  WeightedTable rx[catalog::kNumRxClasses];
  WeightedTable px[catalog::kNumPxClasses];
  int32_t lab[catalog::kNumLabs] = {};
  int32_t obs[catalog::kNumObs] = {};
  int32_t visit[catalog::kNumVisitTypes] = {};
  // Flags of each concept (conditions only; 0 otherwise).
  std::vector<uint16_t> flags;
  // Specific codes the model refers to.
  int32_t j06_9 = -1, j18_9 = -1, i21_9 = -1, i50_0 = -1, j44_1 = -1,
          i63_9 = -1, c34_9 = -1, r99 = -1, o80 = -1, s72_0 = -1, k35_8 = -1,
          k80_2 = -1, n18_5 = -1;
  int32_t warfarin = -1;

  // Site coding (Coding::kSite at "fr" or "qc"), by concept index; empty
  // under uniform coding.
  bool site_coding = false;
  // Condition concept -> its ICD-9 concept for claims (qc), or -1.
  std::vector<int32_t> icd9;
  // Drug (ATC) concept -> the products it is dispensed as, and (fr) the
  // hospital units it is given as during a stay.
  std::vector<WeightedTable> products;
  std::vector<WeightedTable> hospital_products;
};

Generator::Generator(const GeneratorOptions& options) : options_(options) {}
Generator::~Generator() = default;

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(
    const GeneratorOptions& options) {
  if (options.patients < 0 || options.patients > kMaxPatients) {
    return absl::InvalidArgumentError(
        absl::StrCat("--patients: ", options.patients, " is out of range [0, ",
                     kMaxPatients, "]"));
  }
  if (!ValidSite(options.site)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--site: \"", options.site, "\" must be 1-32 of [a-z0-9_-]"));
  }
  std::unique_ptr<Generator> generator(new Generator(options));
  PASSERELLE_RETURN_IF_ERROR(generator->Init());
  return generator;
}

absl::Status Generator::Init() {
  site_profile_ = options_.site == "fr"   ? kFr
                  : options_.site == "qc" ? kQc
                                          : kOther;
  site_coding_ = options_.coding == Coding::kSite && site_profile_ != kOther;
  const uint64_t site_hash = Fnv1a64(options_.site);
  const int64_t prefix = site_profile_ == kFr ? 1
                         : site_profile_ == kQc
                             ? 2
                             : 3 + static_cast<int64_t>(site_hash % 900);
  person_id_base_ = prefix * kPersonIdBlock;
  stream_seed_ = MixSeed(options_.seed, site_hash);
  tables_ = std::make_unique<internal::GeneratorTables>();
  internal::GeneratorTables& t = *tables_;

  // Build the concept list. Within a vocabulary, a code's position (its
  // first appearance in the catalog) fixes its id, independently of the site.
  std::map<std::pair<int, std::string>, int32_t> index;  // (block, code)
  int block_count[kNumBlocks] = {};
  auto add = [&](int block, absl::string_view code, absl::string_view name,
                 absl::string_view domain, absl::string_view vocabulary,
                 absl::string_view concept_class, absl::string_view standard,
                 absl::string_view unit) -> int32_t {
    auto key = std::make_pair(block, std::string(code));
    auto it = index.find(key);
    if (it != index.end()) return it->second;
    const int64_t id =
        kLocalConceptBase + block * kVocabularyBlock + block_count[block]++;
    concepts_.push_back(Concept{id, code, name, domain, vocabulary,
                                concept_class, standard, unit});
    const int32_t i = static_cast<int32_t>(concepts_.size() - 1);
    index.emplace(std::move(key), i);
    return i;
  };

  const int condition_block = site_profile_ == kFr   ? kBlockCim10
                              : site_profile_ == kQc ? kBlockIcd10ca
                                                     : kBlockIcd10;
  const absl::string_view condition_vocabulary = site_profile_ == kFr ? "CIM10"
                                                 : site_profile_ == kQc
                                                     ? "ICD10CA"
                                                     : "ICD10";
  std::vector<std::pair<int32_t, uint16_t>> condition_flags;
  for (int g = 0; g < catalog::kNumChronic; ++g) t.min_age[g] = 0;
  for (const catalog::ConditionCode& c : catalog::ConditionCodes()) {
    const int32_t i = add(condition_block, c.code, c.name, "Condition",
                          condition_vocabulary, "ICD10 code", "", "");
    condition_flags.emplace_back(i, c.flags);
    t.conditions[c.group].Add(i, c.weight);
    if (c.group < catalog::kNumChronic) {
      if (c.flags & catalog::kAdult) {
        t.min_age[c.group] = std::max(t.min_age[c.group], 18);
      }
      if (c.flags & catalog::kOlder) {
        t.min_age[c.group] = std::max(t.min_age[c.group], 60);
      }
    }
  }
  for (const catalog::DrugCode& d : catalog::DrugCodes()) {
    const int32_t i =
        add(kBlockAtc, d.atc, d.name, "Drug", "ATC", "ATC 5th", "", "");
    const uint16_t weight = site_profile_ == kFr   ? d.weight_fr
                            : site_profile_ == kQc ? d.weight_qc
                                                   : d.weight_other;
    t.rx[d.rx_class].Add(i, weight);
    if (absl::string_view(d.atc) == "B01AA03") t.warfarin = i;
  }
  for (const catalog::LabCode& l : catalog::LabCodes()) {
    t.lab[l.lab] = add(kBlockLoinc, l.loinc, l.name, "Measurement", "LOINC",
                       l.concept_class, "S", l.unit);
  }
  for (const catalog::ObservationCode& o : catalog::ObservationCodes()) {
    t.obs[o.obs] = add(kBlockSnomed, o.snomed, o.name, "Observation", "SNOMED",
                       "Clinical Finding", "S", "");
  }
  for (const catalog::ProcedureCode& p : catalog::ProcedureCodes()) {
    const int32_t i = site_profile_ == kFr
                          ? add(kBlockCcam, p.ccam, p.ccam_name, "Procedure",
                                "CCAM", "Procedure", "", "")
                          : add(kBlockSnomed, p.snomed, p.snomed_name,
                                "Procedure", "SNOMED", "Procedure", "S", "");
    t.px[p.px_class].Add(i, p.weight);
  }
  for (const catalog::VisitCode& v : catalog::VisitCodes()) {
    concepts_.push_back(Concept{v.omop_concept_id, v.code, v.name, "Visit",
                                "Visit", "Visit", "S", ""});
    t.visit[v.type] = static_cast<int32_t>(concepts_.size() - 1);
  }

  // The site's own codes: (catalog concept, site concept, weight, hospital).
  struct SiteCode {
    int32_t from;
    int32_t to;
    uint16_t weight;
    bool hospital;
  };
  std::vector<SiteCode> site_codes;
  if (site_coding_ && site_profile_ == kQc) {
    for (const catalog::Icd9Code& c : catalog::Icd9Codes()) {
      auto it =
          index.find(std::make_pair(condition_block, std::string(c.icd10)));
      if (it == index.end()) {
        return absl::InternalError(absl::StrCat("ICD-9 table names ", c.icd10,
                                                ", not in the catalog"));
      }
      const int32_t i = add(kBlockIcd9, c.icd9, c.name, "Condition", "ICD9",
                            "ICD9 code", "", "");
      site_codes.push_back({it->second, i, 1, false});
    }
  }
  if (site_coding_) {
    for (const catalog::DrugProduct& d : catalog::DrugProducts()) {
      const bool wanted = site_profile_ == kQc ? d.vocabulary == catalog::kDin
                                               : d.vocabulary != catalog::kDin;
      if (!wanted) continue;
      auto it = index.find(std::make_pair(int{kBlockAtc}, std::string(d.atc)));
      if (it == index.end()) {
        return absl::InternalError(absl::StrCat("product table names ", d.atc,
                                                ", not in the catalog"));
      }
      const int block = d.vocabulary == catalog::kDin     ? kBlockDin
                        : d.vocabulary == catalog::kCip13 ? kBlockCip13
                                                          : kBlockUcd;
      const absl::string_view vocabulary = d.vocabulary == catalog::kDin ? "DIN"
                                           : d.vocabulary == catalog::kCip13
                                               ? "CIP13"
                                               : "UCD";
      const int32_t i = add(block, d.code, d.name, "Drug", vocabulary,
                            "Drug Product", "", "");
      site_codes.push_back(
          {it->second, i, d.weight, d.vocabulary == catalog::kUcd});
    }
  }

  // Sort by concept_id and remap every stored index.
  std::vector<int32_t> order(concepts_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return concepts_[a].concept_id < concepts_[b].concept_id;
  });
  std::vector<int32_t> new_index(order.size());
  std::vector<Concept> sorted;
  sorted.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    new_index[order[i]] = static_cast<int32_t>(i);
    sorted.push_back(concepts_[order[i]]);
  }
  concepts_ = std::move(sorted);
  auto remap_table = [&](WeightedTable& table) {
    for (int32_t& item : table.items) item = new_index[item];
  };
  for (WeightedTable& table : t.conditions) remap_table(table);
  for (WeightedTable& table : t.rx) remap_table(table);
  for (WeightedTable& table : t.px) remap_table(table);
  for (int32_t& i : t.lab) i = new_index[i];
  for (int32_t& i : t.obs) i = new_index[i];
  for (int32_t& i : t.visit) i = new_index[i];
  if (t.warfarin >= 0) t.warfarin = new_index[t.warfarin];
  t.flags.assign(concepts_.size(), 0);
  for (const auto& [i, flags] : condition_flags) t.flags[new_index[i]] = flags;

  auto find = [&](const char* code, int32_t* out) -> absl::Status {
    auto it = index.find(std::make_pair(condition_block, std::string(code)));
    if (it == index.end()) {
      return absl::InternalError(absl::StrCat("catalog lacks ", code));
    }
    *out = new_index[it->second];
    return absl::OkStatus();
  };
  PASSERELLE_RETURN_IF_ERROR(find("J06.9", &t.j06_9));
  PASSERELLE_RETURN_IF_ERROR(find("J18.9", &t.j18_9));
  PASSERELLE_RETURN_IF_ERROR(find("I21.9", &t.i21_9));
  PASSERELLE_RETURN_IF_ERROR(find("I50.0", &t.i50_0));
  PASSERELLE_RETURN_IF_ERROR(find("J44.1", &t.j44_1));
  PASSERELLE_RETURN_IF_ERROR(find("I63.9", &t.i63_9));
  PASSERELLE_RETURN_IF_ERROR(find("C34.9", &t.c34_9));
  PASSERELLE_RETURN_IF_ERROR(find("R99", &t.r99));
  PASSERELLE_RETURN_IF_ERROR(find("O80", &t.o80));
  PASSERELLE_RETURN_IF_ERROR(find("S72.0", &t.s72_0));
  PASSERELLE_RETURN_IF_ERROR(find("K35.8", &t.k35_8));
  PASSERELLE_RETURN_IF_ERROR(find("K80.2", &t.k80_2));
  PASSERELLE_RETURN_IF_ERROR(find("N18.5", &t.n18_5));
  for (const WeightedTable& table : t.conditions) {
    if (table.empty()) return absl::InternalError("empty condition group");
  }
  for (const WeightedTable& table : t.rx) {
    if (table.empty()) return absl::InternalError("empty drug class");
  }
  for (const WeightedTable& table : t.px) {
    if (table.empty()) return absl::InternalError("empty procedure class");
  }
  if (site_coding_) {
    t.site_coding = true;
    if (site_profile_ == kQc) t.icd9.assign(concepts_.size(), -1);
    t.products.resize(concepts_.size());
    t.hospital_products.resize(concepts_.size());
    for (const SiteCode& c : site_codes) {
      const int32_t from = new_index[c.from], to = new_index[c.to];
      if (concepts_[to].domain_id == "Condition") {
        t.icd9[from] = to;
      } else {
        (c.hospital ? t.hospital_products : t.products)[from].Add(to, c.weight);
      }
    }
    // Every code a claim or dispensing can carry has its site code.
    if (site_profile_ == kQc) {
      for (int g = 0; g < catalog::kSevere; ++g) {
        for (int32_t i : t.conditions[g].items) {
          if (t.icd9[i] < 0) {
            return absl::InternalError(
                absl::StrCat("no ICD-9 code for ", concepts_[i].code));
          }
        }
      }
    }
    for (const WeightedTable& table : t.rx) {
      for (int32_t i : table.items) {
        if (t.products[i].empty()) {
          return absl::InternalError(
              absl::StrCat("no ", site_profile_ == kQc ? "DIN" : "CIP13",
                           " for ", concepts_[i].code));
        }
      }
    }
  }
  return absl::OkStatus();
}

int64_t Generator::PersonId(int64_t index) const {
  return person_id_base_ + index + 1;
}

namespace {

// Everything the model knows about one patient while generating.
class PatientBuilder {
 public:
  // `product_seed` picks the patient's products of each drug under site
  // coding (apart from `rng`, so both codings draw the same numbers).
  PatientBuilder(const internal::GeneratorTables& t, int profile, Rng& rng,
                 uint64_t product_seed, PatientRecord* record)
      : t_(t),
        profile_(profile),
        rng_(rng),
        product_seed_(product_seed),
        record_(record) {}

  void Build(int64_t person_id, int64_t index);

 private:
  struct Active {
    bool has = false;
    int32_t day = kNever;  // Diagnosis day.
    int32_t code = -1;     // Usual code for this patient.
  };

  int AgeAt(int32_t day) const {
    const CivilDay c = CivilFromDays(day);
    int age = c.year - birth_.year;
    if (c.month < birth_.month ||
        (c.month == birth_.month && c.day < birth_.day)) {
      --age;
    }
    return age;
  }
  bool ActiveAt(Group g, int32_t day) const {
    return chronic_[g].has && chronic_[g].day <= day;
  }
  // Whether a condition code's restrictions allow it for this patient.
  bool Allowed(int32_t concept, int32_t day) const;
  int32_t PickCondition(Group g, int32_t day);

  // Appends an event; returns its sequence (or -1 when the cap is reached).
  int32_t Add(Domain domain, int32_t concept, int32_t start, int32_t end,
              int32_t visit_sequence);
  int32_t AddVisit(catalog::VisitType type, int32_t start, int32_t end) {
    return Add(Domain::kVisit, t_.visit[type], start, end, -1);
  }
  void AddMeasurement(Lab lab, int32_t day, int32_t visit, int64_t scaled,
                      int decimals);
  void AddLabs(int32_t day, int32_t visit, bool inpatient);
  void AddProcedure(PxClass px, int32_t day, int32_t visit) {
    Add(Domain::kProcedure, t_.px[px].Pick(rng_), day, day, visit);
  }
  void Encounter(int32_t day);
  void Stay(int32_t day);
  void Therapies();
  void Dispense(RxClass rx, int32_t start, bool chronic);
  // Recodes the catalog's codes into the site's (Coding::kSite).
  void ApplySiteCoding();
  void Finish(int64_t person_id);

  const internal::GeneratorTables& t_;
  const int profile_;
  Rng& rng_;
  const uint64_t product_seed_;
  PatientRecord* const record_;

  CivilDay birth_{};
  int32_t birth_day_ = 0;
  bool male_ = false;
  bool female_ = false;
  int age_end_ = 0;  // Age at the end of the window.
  int32_t window_start_ = 0;
  int32_t window_end_ = 0;
  int smoking_ = -1;  // catalog::Obs, -1 for children.
  Active chronic_[catalog::kNumChronic];
  int chronic_count_ = 0;
  int32_t statin_day_ = kNever;
  int32_t warfarin_day_ = kNever;
};

bool PatientBuilder::Allowed(int32_t concept, int32_t day) const {
  const uint16_t flags = t_.flags[concept];
  if (flags == 0) return true;
  if ((flags & catalog::kFemale) && !female_) return false;
  if ((flags & catalog::kMale) && !male_) return false;
  if (flags & (catalog::kAdult | catalog::kOlder | catalog::kChild |
               catalog::kPregnancy)) {
    const int age = AgeAt(day);
    if ((flags & catalog::kAdult) && age < 18) return false;
    if ((flags & catalog::kOlder) && age < 60) return false;
    if ((flags & catalog::kChild) && age >= 18) return false;
    if ((flags & catalog::kPregnancy) && (!female_ || age < 18 || age > 45)) {
      return false;
    }
  }
  if ((flags & catalog::kFrom2020) && day < DaysFromCivil(2020, 3, 1)) {
    return false;
  }
  return true;
}

int32_t PatientBuilder::PickCondition(Group g, int32_t day) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    const int32_t c = t_.conditions[g].Pick(rng_);
    if (Allowed(c, day)) return c;
  }
  return g == catalog::kSevere ? t_.j18_9 : t_.j06_9;
}

int32_t PatientBuilder::Add(Domain domain, int32_t concept, int32_t start,
                            int32_t end, int32_t visit_sequence) {
  std::vector<Event>& events = record_->events;
  if (static_cast<int32_t>(events.size()) >= kMaxEventsPerPatient) return -1;
  Event e{};
  e.domain = domain;
  e.concept = concept;
  e.start_day = start;
  e.end_day = end;
  // Until Finish(), visit_id holds the visit's sequence + 1.
  e.visit_id = visit_sequence >= 0 ? visit_sequence + 1 : 0;
  e.sequence = static_cast<int32_t>(events.size());
  events.push_back(e);
  return e.sequence;
}

void PatientBuilder::AddMeasurement(Lab lab, int32_t day, int32_t visit,
                                    int64_t scaled, int decimals) {
  const int32_t s = Add(Domain::kMeasurement, t_.lab[lab], day, kNoDay, visit);
  if (s < 0) return;
  Event& e = record_->events[s];
  e.value_scaled = scaled;
  e.value_decimals = static_cast<int8_t>(decimals);
  e.has_value = true;
}

void PatientBuilder::AddLabs(int32_t day, int32_t visit, bool inpatient) {
  const bool adult = AgeAt(day) >= 18;
  const bool diabetic =
      ActiveAt(catalog::kT2d, day) || ActiveAt(catalog::kT1d, day);
  const bool hypertensive = ActiveAt(catalog::kHypertension, day);
  const bool ckd = ActiveAt(catalog::kCkd, day);
  const bool obese = ActiveAt(catalog::kObesity, day);
  const bool dyslipidemic =
      ActiveAt(catalog::kDyslipidemia, day) || ActiveAt(catalog::kIhd, day);
  const bool on_statin = statin_day_ <= day;

  if (adult && rng_.Permille(inpatient ? 600 : hypertensive ? 450 : 150)) {
    AddMeasurement(catalog::kSystolic, day, visit,
                   hypertensive ? rng_.Bell(122, 178) : rng_.Bell(98, 140), 0);
    AddMeasurement(catalog::kDiastolic, day, visit,
                   hypertensive ? rng_.Bell(72, 106) : rng_.Bell(58, 90), 0);
  }
  if (diabetic ? rng_.Permille(400) : adult && rng_.Permille(30)) {
    AddMeasurement(catalog::kHba1c, day, visit,
                   diabetic ? rng_.Bell(55, 100)
                   : obese  ? rng_.Bell(50, 64)
                            : rng_.Bell(46, 60),
                   1);
  }
  if (diabetic ? rng_.Permille(inpatient ? 700 : 250)
               : rng_.Permille(inpatient ? 300
                               : adult   ? 50
                                         : 10)) {
    AddMeasurement(catalog::kGlucose, day, visit,
                   diabetic ? rng_.Bell(95, 260) : rng_.Bell(72, 118), 0);
  }
  if (dyslipidemic || diabetic ? rng_.Permille(250)
                               : adult && rng_.Permille(50)) {
    const bool high = ActiveAt(catalog::kDyslipidemia, day) && !on_statin;
    AddMeasurement(catalog::kCholesterol, day, visit,
                   high        ? rng_.Bell(210, 300)
                   : on_statin ? rng_.Bell(140, 215)
                               : rng_.Bell(150, 245),
                   0);
    AddMeasurement(catalog::kLdl, day, visit,
                   high        ? rng_.Bell(140, 225)
                   : on_statin ? rng_.Bell(55, 120)
                               : rng_.Bell(70, 165),
                   0);
  }
  if (ckd ? rng_.Permille(500)
          : rng_.Permille(inpatient                  ? 500
                          : diabetic || hypertensive ? 150
                          : adult                    ? 40
                                                     : 5)) {
    AddMeasurement(catalog::kCreatinine, day, visit,
                   ckd     ? rng_.Bell(130, 380)
                   : male_ ? rng_.Bell(70, 125)
                           : rng_.Bell(55, 100),
                   2);
    const int age = AgeAt(day);
    const int top = std::max(75, 125 - std::max(0, age - 40) / 2);
    AddMeasurement(catalog::kEgfr, day, visit,
                   ckd ? rng_.Bell(15, 59) : rng_.Bell(60, top), 0);
    if (rng_.Permille(500)) {
      AddMeasurement(catalog::kPotassium, day, visit,
                     ckd ? rng_.Bell(40, 58) : rng_.Bell(35, 52), 1);
    }
  }
  if (adult && rng_.Permille(obese ? 300 : 100)) {
    const int32_t bmi = obese ? rng_.Bell(300, 450) : rng_.Bell(185, 299);
    const int32_t height =
        male_ ? rng_.Bell(163, 192) : rng_.Bell(150, 178);  // cm
    AddMeasurement(catalog::kBmi, day, visit, bmi, 1);
    AddMeasurement(catalog::kWeight, day, visit,
                   static_cast<int64_t>(bmi) * height * height / 10000, 1);
  }
  if (rng_.Permille(inpatient ? 500 : 40)) {
    const int32_t lower = ckd ? 15 : 0;
    AddMeasurement(catalog::kHemoglobin, day, visit,
                   (male_ ? rng_.Bell(130, 172) : rng_.Bell(115, 155)) - lower,
                   1);
  }
  if (ActiveAt(catalog::kHypothyroid, day) ? rng_.Permille(400)
                                           : rng_.Permille(15)) {
    AddMeasurement(catalog::kTsh, day, visit,
                   ActiveAt(catalog::kHypothyroid, day) ? rng_.Bell(150, 900)
                                                        : rng_.Bell(40, 400),
                   2);
  }
  if (warfarin_day_ <= day ? rng_.Permille(700) : rng_.Permille(5)) {
    AddMeasurement(catalog::kInr, day, visit,
                   warfarin_day_ <= day ? rng_.Bell(15, 35) : rng_.Bell(9, 12),
                   1);
  }
}

void PatientBuilder::Encounter(int32_t day) {
  const bool emergency = rng_.Permille(80);
  const int32_t visit = AddVisit(
      emergency ? catalog::kEmergency : catalog::kOutpatient, day, day);
  if (visit < 0) return;
  // Follow-up of a chronic condition, or a new problem.
  int active[catalog::kNumChronic];
  int n_active = 0;
  for (int g = 0; g < catalog::kNumChronic; ++g) {
    if (ActiveAt(static_cast<Group>(g), day)) active[n_active++] = g;
  }
  if (n_active > 0 && rng_.Permille(emergency ? 250 : 550)) {
    const Group g = static_cast<Group>(active[rng_.Below(n_active)]);
    const int32_t code =
        rng_.Permille(850) ? chronic_[g].code : PickCondition(g, day);
    Add(Domain::kCondition, code, day, kNoDay, visit);
  } else {
    const int32_t code = PickCondition(catalog::kAcute, day);
    Add(Domain::kCondition, code, day, kNoDay, visit);
    if (t_.flags[code] & catalog::kInfection) {
      if (rng_.Permille(450)) Dispense(catalog::kRxAntibiotic, day, false);
    } else if (rng_.Permille(300)) {
      Dispense(
          rng_.Permille(600) ? catalog::kRxSymptomatic : catalog::kRxAnalgesic,
          day, false);
    }
  }
  AddLabs(day, visit, /*inpatient=*/false);

  const int age = AgeAt(day);
  const bool cardiac = ActiveAt(catalog::kIhd, day) ||
                       ActiveAt(catalog::kAf, day) ||
                       ActiveAt(catalog::kHeartFailure, day);
  if (rng_.Permille(cardiac ? 200 : emergency ? 250 : 50)) {
    AddProcedure(catalog::kPxRoutine, day, visit);
  }
  if (cardiac && rng_.Permille(80))
    AddProcedure(catalog::kPxCardiac, day, visit);
  if (age >= 50 && age <= 74 && rng_.Permille(female_ ? 70 : 15)) {
    AddProcedure(catalog::kPxScreening, day, visit);
  }
  if ((ActiveAt(catalog::kAsthma, day) || ActiveAt(catalog::kCopd, day)) &&
      rng_.Permille(150)) {
    AddProcedure(catalog::kPxSpirometry, day, visit);
  }
  if (ActiveAt(catalog::kGerd, day) && rng_.Permille(50)) {
    AddProcedure(catalog::kPxEndoscopy, day, visit);
  }
  if (rng_.Permille(emergency ? 150 : 20)) {
    AddProcedure(catalog::kPxImaging, day, visit);
  }
  if (age >= 65 && rng_.Permille(8))
    AddProcedure(catalog::kPxCataract, day, visit);
  if (ActiveAt(catalog::kCkd, day) &&
      chronic_[catalog::kCkd].code == t_.n18_5 && rng_.Permille(700)) {
    AddProcedure(catalog::kPxDialysis, day, visit);
  }
}

void PatientBuilder::Stay(int32_t day) {
  const int age = AgeAt(day);
  int32_t length = rng_.Range(0, 3) + (age >= 60 ? rng_.Range(0, 7) : 0);
  const int32_t end = std::min(day + length, window_end_);
  const int32_t visit = AddVisit(catalog::kInpatient, day, end);
  if (visit < 0) return;
  int n_active = 0;
  int active[catalog::kNumChronic];
  for (int g = 0; g < catalog::kNumChronic; ++g) {
    if (ActiveAt(static_cast<Group>(g), day)) active[n_active++] = g;
  }
  int32_t main;
  if (n_active > 0 && rng_.Permille(450)) {
    main = chronic_[active[rng_.Below(n_active)]].code;
  } else {
    main = PickCondition(catalog::kSevere, day);
  }
  Add(Domain::kCondition, main, day, kNoDay, visit);
  // A secondary diagnosis from the chronic list.
  if (n_active > 0 && rng_.Permille(600)) {
    const int32_t code = chronic_[active[rng_.Below(n_active)]].code;
    if (code != main) Add(Domain::kCondition, code, day, kNoDay, visit);
  }
  if (main == t_.o80) {
    AddProcedure(
        rng_.Permille(800) ? catalog::kPxDelivery : catalog::kPxCesarean, day,
        visit);
  } else if (main == t_.i21_9) {
    if (rng_.Permille(600)) AddProcedure(catalog::kPxCardiac, day, visit);
    AddProcedure(catalog::kPxRoutine, day, visit);
  } else if (main == t_.s72_0) {
    if (rng_.Permille(700)) AddProcedure(catalog::kPxHip, day, visit);
  } else if (main == t_.k35_8) {
    if (rng_.Permille(950)) AddProcedure(catalog::kPxAppendectomy, day, visit);
  } else if (main == t_.k80_2) {
    if (rng_.Permille(850)) {
      AddProcedure(catalog::kPxCholecystectomy, day, visit);
    }
  } else if (main == chronic_[catalog::kBreastCancer].code &&
             rng_.Permille(300)) {
    AddProcedure(catalog::kPxMastectomy, day, visit);
  } else if (main == chronic_[catalog::kOsteoarthritis].code && age >= 55 &&
             rng_.Permille(400)) {
    AddProcedure(rng_.Permille(550) ? catalog::kPxKnee : catalog::kPxHip, day,
                 visit);
  } else if (rng_.Permille(300)) {
    AddProcedure(rng_.Permille(500) ? catalog::kPxImaging : catalog::kPxRoutine,
                 day, visit);
  }
  AddLabs(day, visit, /*inpatient=*/true);
  if (t_.flags[main] & catalog::kInfection) {
    Dispense(catalog::kRxAntibiotic, end, false);
  }
}

void PatientBuilder::Dispense(RxClass rx, int32_t start, bool chronic) {
  const int32_t concept = t_.rx[rx].Pick(rng_);
  if (concept == t_.warfarin) warfarin_day_ = std::min(warfarin_day_, start);
  if (rx == catalog::kRxStatin) statin_day_ = std::min(statin_day_, start);
  int32_t supply = 7;
  if (chronic) {
    supply = profile_ == kQc && rng_.Permille(400) ? 90 : 30;
  }
  const uint16_t go_on = ContinuePermille(rx);
  int32_t day = start;
  for (;;) {
    if (day > window_end_) return;
    const int32_t s = Add(Domain::kDrug, concept, day,
                          std::min(day + supply - 1, kLastEventDay), -1);
    if (s < 0) return;
    record_->events[s].days_supply = static_cast<int16_t>(supply);
    record_->events[s].quantity = static_cast<int16_t>(chronic ? supply : 1);
    if (!chronic || !rng_.Permille(go_on)) return;
    day += supply + static_cast<int32_t>(rng_.Below(supply / 3 + 1));
  }
}

void PatientBuilder::Therapies() {
  for (const Therapy& therapy : kTherapies) {
    const Active& a = chronic_[therapy.group];
    if (!a.has || !rng_.Permille(therapy.permille)) continue;
    const int32_t start = a.day + static_cast<int32_t>(rng_.Below(60));
    Dispense(therapy.rx, start, true);
  }
  // Off-label metformin for some obese patients without diabetes
  // (prediabetes), so the drug is not a perfect proxy for the diagnosis.
  if (chronic_[catalog::kObesity].has && !chronic_[catalog::kT2d].has &&
      rng_.Permille(40)) {
    Dispense(
        catalog::kRxT2dFirst,
        chronic_[catalog::kObesity].day + static_cast<int32_t>(rng_.Below(180)),
        true);
  }
  // Contraception for women of child-bearing age; vitamin D for older
  // people (very common in France).
  if (female_ && age_end_ >= 16 && age_end_ <= 50 && rng_.Permille(250)) {
    const int32_t from = std::max(window_start_, birth_day_ + 16 * 365);
    if (from <= window_end_) {
      Dispense(catalog::kRxContraceptive,
               from + static_cast<int32_t>(rng_.Below(
                          static_cast<uint32_t>(window_end_ - from + 1))),
               true);
    }
  }
  if (age_end_ >= 65 && rng_.Permille(profile_ == kFr ? 300 : 180)) {
    const int32_t from = std::max(window_start_, birth_day_ + 60 * 365);
    if (from <= window_end_) {
      Dispense(catalog::kRxVitaminD,
               from + static_cast<int32_t>(rng_.Below(
                          static_cast<uint32_t>(window_end_ - from + 1))),
               true);
    }
  }
}

void PatientBuilder::Build(int64_t person_id, int64_t index) {
  Person& p = record_->person;
  p = Person{};
  p.person_id = person_id;
  p.index = index;

  // Sex: a few unknown, slightly more women.
  const uint32_t sex = rng_.Below(1000);
  p.gender_concept_id = sex < 3 ? 0 : sex < 493 ? 8507 : 8532;
  male_ = p.gender_concept_id == 8507;
  female_ = p.gender_concept_id == 8532;

  // Birth date from the age pyramid at the end of 2024.
  uint32_t total = 0;
  for (uint16_t w : kAgeBandWeight) total += w;
  uint32_t r = rng_.Below(total);
  int band = 0;
  while (r >= kAgeBandWeight[band]) r -= kAgeBandWeight[band++];
  const int age = band * 5 + static_cast<int>(rng_.Below(5));
  birth_.year = 2024 - age;
  birth_.month = rng_.Range(1, 12);
  const CivilDay next_month = CivilFromDays(
      DaysFromCivil(birth_.year, birth_.month, 28) + 4);  // Day 1..4 of next.
  const int days_in_month =
      28 + 4 - next_month.day;  // 28..31 via the overflow into next month.
  birth_.day = rng_.Range(1, days_in_month);
  birth_day_ = DaysFromCivil(birth_.year, birth_.month, birth_.day);
  p.year_of_birth = birth_.year;
  const uint32_t precision = rng_.Below(1000);
  p.month_of_birth = precision < 60 ? 0 : birth_.month;
  p.day_of_birth = precision < 80 ? 0 : birth_.day;

  // Smoking status drives lung disease.
  const int age_band = AgeBand(age);
  if (age >= 18) {
    const uint32_t s = rng_.Below(1000);
    const uint32_t smokers = profile_ == kFr   ? 250
                             : profile_ == kQc ? 160
                                               : 200;
    smoking_ = s < smokers         ? catalog::kSmoker
               : s < smokers + 250 ? catalog::kExSmoker
                                   : catalog::kNeverSmoked;
  }

  // Which chronic conditions this patient has (by the end of the window).
  bool has[catalog::kNumChronic] = {};
  for (int g = 0; g < catalog::kNumChronic; ++g) {
    uint32_t permille = kBasePermille[g][age_band];
    if (permille == 0) continue;
    if (g == catalog::kBreastCancer && !female_) continue;
    if (g == catalog::kProstateCancer && !male_) continue;
    uint64_t x = permille * 100;  // In hundredths of a per mille.
    auto times = [&x](uint32_t percent) { x = x * percent / 100; };
    times(kSitePercent[g][profile_]);
    switch (g) {
      case catalog::kT2d:
        if (has[catalog::kObesity]) times(250);
        if (male_) times(120);
        break;
      case catalog::kHypertension:
        if (has[catalog::kObesity]) times(170);
        break;
      case catalog::kDyslipidemia:
        if (has[catalog::kObesity]) times(140);
        break;
      case catalog::kIhd:
        if (has[catalog::kT2d]) times(180);
        if (has[catalog::kHypertension]) times(170);
        if (has[catalog::kDyslipidemia]) times(170);
        if (smoking_ == catalog::kSmoker) times(170);
        times(male_ ? 160 : 60);
        break;
      case catalog::kAf:
        if (has[catalog::kHypertension]) times(150);
        if (male_) times(120);
        break;
      case catalog::kHeartFailure:
        if (has[catalog::kIhd]) times(400);
        if (has[catalog::kAf]) times(250);
        break;
      case catalog::kCkd:
        if (has[catalog::kT2d] || has[catalog::kT1d]) times(300);
        if (has[catalog::kHypertension]) times(200);
        break;
      case catalog::kCopd:
      case catalog::kLungCancer:
        times(smoking_ == catalog::kSmoker     ? 400
              : smoking_ == catalog::kExSmoker ? 200
                                               : 25);
        break;
      case catalog::kDepression:
      case catalog::kAnxiety:
        times(female_ ? 150 : 60);
        if (g == catalog::kAnxiety && has[catalog::kDepression]) times(250);
        break;
      case catalog::kHypothyroid:
        times(female_ ? 300 : 40);
        break;
      case catalog::kStroke:
        if (has[catalog::kAf]) times(300);
        if (has[catalog::kHypertension]) times(180);
        break;
      default:
        break;
    }
    const uint64_t capped = std::min<uint64_t>(x, 900 * 100);
    has[g] = rng_.Below(100000) < capped;
    if (has[g]) ++chronic_count_;
  }

  // Death: a few percent, more with age and serious disease.
  static constexpr uint16_t kDeathPermille[5] = {1, 3, 10, 35, 140};
  uint32_t death = kDeathPermille[age_band] + 8 * chronic_count_;
  if (has[catalog::kHeartFailure] || has[catalog::kLungCancer] ||
      has[catalog::kDementia]) {
    death += 120;
  }
  window_start_ = std::max(kFirstEventDay, birth_day_);
  window_end_ = kLastEventDay;
  p.death_day = -1;
  if (rng_.Permille(std::min<uint32_t>(death, 700))) {
    const uint32_t span =
        static_cast<uint32_t>(window_end_ - window_start_ + 1);
    // Later dates are likelier (the larger of two uniforms).
    p.death_day = window_start_ + static_cast<int32_t>(std::max(
                                      rng_.Below(span), rng_.Below(span)));
    window_end_ = p.death_day;
  }
  p.observation_start_day = window_start_;
  p.observation_end_day = window_end_;
  age_end_ = AgeAt(window_end_);
  const uint32_t span = static_cast<uint32_t>(window_end_ - window_start_ + 1);

  // Diagnosis dates (earlier dates likelier: prevalent conditions show up
  // soon after data collection starts), each opened by an outpatient visit.
  for (int g = 0; g < catalog::kNumChronic; ++g) {
    if (!has[g]) continue;
    int32_t day = window_start_ + static_cast<int32_t>(std::min(
                                      rng_.Below(span), rng_.Below(span)));
    day = std::max(day, birth_day_ + t_.min_age[g] * 366);
    if (day > window_end_) continue;
    Active& a = chronic_[g];
    a.has = true;
    a.day = day;
    a.code = PickCondition(static_cast<Group>(g), day);
    const int32_t visit = AddVisit(catalog::kOutpatient, day, day);
    Add(Domain::kCondition, a.code, day, kNoDay, visit);
    AddLabs(day, visit, /*inpatient=*/false);
  }

  // Healthcare use: a skewed personal utilisation factor times needs.
  static constexpr uint16_t kUseWeight[5] = {25, 35, 22, 12, 6};
  static constexpr uint16_t kUsePercent[5] = {20, 50, 95, 180, 360};
  uint32_t u = rng_.Below(100);
  int use = 0;
  while (u >= kUseWeight[use]) u -= kUseWeight[use++];
  static constexpr uint16_t kVisitsPerYearTenths[5] = {10, 7, 9, 14, 20};
  const int end_band = AgeBand(age_end_);
  const uint64_t rate_tenths = kVisitsPerYearTenths[end_band] +
                               5 * static_cast<uint64_t>(chronic_count_);
  // Expected encounters in tenths: rate * years * use.
  const uint64_t expected_tenths =
      rate_tenths * span * kUsePercent[use] / (36525ULL * 10);
  uint64_t encounters =
      expected_tenths / 10 + (rng_.Below(10) < expected_tenths % 10 ? 1 : 0);
  encounters = std::min<uint64_t>(encounters, 600);
  for (uint64_t i = 0; i < encounters; ++i) {
    Encounter(window_start_ + static_cast<int32_t>(rng_.Below(span)));
  }

  static constexpr uint16_t kStaysPerThousandYears[5] = {15, 25, 40, 80, 150};
  const uint64_t stay_rate = kStaysPerThousandYears[end_band] +
                             15 * static_cast<uint64_t>(chronic_count_);
  const uint64_t expected_stays_thousandths = stay_rate * span / 365;
  uint64_t stays =
      expected_stays_thousandths / 1000 +
      (rng_.Below(1000) < expected_stays_thousandths % 1000 ? 1 : 0);
  if (p.death_day >= 0 && rng_.Permille(500)) {
    // A final hospital stay shortly before death.
    Stay(std::max(window_start_, p.death_day - rng_.Range(0, 10)));
  }
  stays = std::min<uint64_t>(stays, 60);
  for (uint64_t i = 0; i < stays; ++i) {
    Stay(window_start_ + static_cast<int32_t>(rng_.Below(span)));
  }

  Therapies();

  if (smoking_ >= 0) {
    const int32_t from = std::max(window_start_, birth_day_ + 18 * 366);
    if (from <= window_end_) {
      const int32_t day =
          from + static_cast<int32_t>(
                     rng_.Below(static_cast<uint32_t>(window_end_ - from + 1)));
      Add(Domain::kObservation, t_.obs[smoking_], day, kNoDay, -1);
    }
  }
  if (rng_.Permille(has[catalog::kT2d] ? 350 : 100)) {
    Add(Domain::kObservation, t_.obs[catalog::kFamilyHistoryDiabetes],
        window_start_ + static_cast<int32_t>(rng_.Below(span)), kNoDay, -1);
  }

  Finish(person_id);

  if (p.death_day >= 0) {
    int32_t cause = t_.r99;
    if (chronic_[catalog::kLungCancer].has) {
      cause = chronic_[catalog::kLungCancer].code;
    } else if (chronic_[catalog::kHeartFailure].has) {
      cause = t_.i50_0;
    } else if (chronic_[catalog::kIhd].has) {
      cause = t_.i21_9;
    } else if (chronic_[catalog::kDementia].has) {
      cause = chronic_[catalog::kDementia].code;
    } else if (chronic_[catalog::kCopd].has) {
      cause = t_.j44_1;
    } else if (chronic_[catalog::kStroke].has) {
      cause = t_.i63_9;
    } else if (chronic_[catalog::kColorectalCancer].has) {
      cause = chronic_[catalog::kColorectalCancer].code;
    } else if (chronic_[catalog::kBreastCancer].has) {
      cause = chronic_[catalog::kBreastCancer].code;
    } else {
      const uint32_t c = rng_.Below(100);
      cause = c < 25   ? t_.i21_9
              : c < 45 ? t_.j18_9
              : c < 60 ? t_.i63_9
                       : t_.r99;
    }
    Event e{};
    e.domain = Domain::kDeath;
    e.person_id = person_id;
    e.concept = cause;
    e.start_day = p.death_day;
    e.end_day = kNoDay;
    e.sequence = static_cast<int32_t>(record_->events.size());
    record_->events.push_back(e);
  }
}

void PatientBuilder::ApplySiteCoding() {
  std::vector<Event>& events = record_->events;
  // Until Finish(), an event's sequence is its index and visit_id holds the
  // visit's sequence + 1.
  const int32_t inpatient = t_.visit[catalog::kInpatient];
  std::vector<int32_t>& stays = record_->scratch;  // start, end, ...
  stays.clear();
  for (const Event& e : events) {
    if (e.domain == Domain::kVisit && e.concept == inpatient) {
      stays.push_back(e.start_day);
      stays.push_back(e.end_day);
    }
  }
  auto during_stay = [&stays](int32_t day) {
    for (size_t i = 0; i < stays.size(); i += 2) {
      if (stays[i] <= day && day <= stays[i + 1]) return true;
    }
    return false;
  };
  for (Event& e : events) {
    if (e.domain == Domain::kCondition) {
      // Claims (outpatient and emergency visits) in ICD-9; stays keep
      // ICD-10-CA.
      if (!t_.icd9.empty() && e.visit_id > 0 &&
          events[e.visit_id - 1].concept != inpatient &&
          t_.icd9[e.concept] >= 0) {
        e.concept = t_.icd9[e.concept];
      }
    } else if (e.domain == Domain::kDrug) {
      const int32_t atc = e.concept;
      const bool hospital =
          !t_.hospital_products[atc].empty() && during_stay(e.start_day);
      const WeightedTable& products =
          hospital ? t_.hospital_products[atc] : t_.products[atc];
      if (products.empty()) continue;
      // The same product of a drug for the patient each time.
      Rng pick(MixSeed(product_seed_,
                       static_cast<uint64_t>(atc) * 2 + (hospital ? 1 : 0)));
      e.concept = products.Pick(pick);
    }
  }
}

void PatientBuilder::Finish(int64_t person_id) {
  std::vector<Event>& events = record_->events;
  if (t_.site_coding) ApplySiteCoding();
  std::sort(events.begin(), events.end(), [](const Event& a, const Event& b) {
    if (a.start_day != b.start_day) return a.start_day < b.start_day;
    if (a.domain != b.domain) return a.domain < b.domain;
    return a.sequence < b.sequence;
  });
  std::vector<int32_t>& position = record_->scratch;
  position.assign(events.size(), 0);
  for (size_t i = 0; i < events.size(); ++i) {
    position[events[i].sequence] = static_cast<int32_t>(i);
    events[i].id = person_id * 10000 + static_cast<int64_t>(i) + 1;
    events[i].person_id = person_id;
  }
  for (Event& e : events) {
    if (e.visit_id > 0) e.visit_id = events[position[e.visit_id - 1]].id;
  }
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].sequence = static_cast<int32_t>(i);
  }
}

}  // namespace

void Generator::GeneratePatient(int64_t index, PatientRecord* record) const {
  record->events.clear();
  const uint64_t patient_seed =
      MixSeed(stream_seed_, static_cast<uint64_t>(index));
  Rng rng(patient_seed);
  PatientBuilder builder(*tables_, site_profile_, rng,
                         MixSeed(patient_seed, 0x70726f64756374ULL), record);
  builder.Build(PersonId(index), index);
}

absl::Status Generator::Generate(PatientSink& sink, int64_t begin,
                                 int64_t end) const {
  if (end < 0) end = options_.patients;
  if (begin < 0 || begin > end || end > kMaxPatients) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad patient range [", begin, ", ", end, ")"));
  }
  PatientRecord record;
  record.events.reserve(256);
  for (int64_t i = begin; i < end; ++i) {
    GeneratePatient(i, &record);
    PASSERELLE_RETURN_IF_ERROR(sink.OnPatient(record));
  }
  return absl::OkStatus();
}

}  // namespace passerelle::synth
