#include "synth/generator.h"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "synth/catalog.h"
#include "synth/rng.h"
#include "synth/site_codes.h"

namespace passerelle::synth {
namespace {

using ::testing::HasSubstr;

// The clinical-model tests below read ICD-10 / ATC codes, so they ask for
// uniform coding; the site coding has its own tests at the end.
std::unique_ptr<Generator> Make(int64_t patients, uint64_t seed,
                                const std::string& site,
                                Coding coding = Coding::kUniform) {
  GeneratorOptions options;
  options.patients = patients;
  options.seed = seed;
  options.site = site;
  options.coding = coding;
  auto generator = Generator::Create(options);
  EXPECT_TRUE(generator.ok()) << generator.status();
  return generator.ok() ? std::move(*generator) : nullptr;
}

// Collects every patient (copied) from a generation run.
class Collector : public PatientSink {
 public:
  absl::Status OnPatient(const PatientRecord& patient) override {
    patients.push_back(patient);
    return absl::OkStatus();
  }
  std::vector<PatientRecord> patients;
};

// A digest of every field of every event, for determinism checks.
uint64_t Digest(const std::vector<PatientRecord>& patients) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ULL; };
  for (const PatientRecord& p : patients) {
    mix(p.person.person_id);
    mix(p.person.gender_concept_id);
    mix(p.person.year_of_birth);
    mix(p.person.month_of_birth);
    mix(p.person.day_of_birth);
    mix(p.person.death_day);
    for (const Event& e : p.events) {
      mix(static_cast<uint64_t>(e.domain));
      mix(e.id);
      mix(e.person_id);
      mix(e.concept);
      mix(e.start_day);
      mix(e.end_day);
      mix(e.visit_id);
      mix(e.value_scaled);
      mix(e.value_decimals);
      mix(e.days_supply);
    }
  }
  return h;
}

std::vector<PatientRecord> RunAll(const Generator& generator) {
  Collector collector;
  EXPECT_TRUE(generator.Generate(collector).ok());
  return std::move(collector.patients);
}

TEST(RngTest, SplitMix64MatchesReferenceOutput) {
  // Reference values of SplitMix64 from state 0 (Vigna's splitmix64.c).
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(&state), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(SplitMix64(&state), 0x6E789E6AA1B965F4ULL);
}

TEST(RngTest, BoundedDrawsStayInRange) {
  Rng rng(7);
  std::vector<int> counts(10, 0);
  for (int i = 0; i < 10000; ++i) {
    const uint32_t v = rng.Below(10);
    ASSERT_LT(v, 10u);
    ++counts[v];
    const int32_t b = rng.Bell(-5, 5);
    ASSERT_GE(b, -5);
    ASSERT_LE(b, 5);
  }
  for (int c : counts) EXPECT_GT(c, 800);  // Roughly uniform.
}

TEST(CivilDaysTest, RoundTripsAndKnownValues) {
  EXPECT_EQ(DaysFromCivil(1970, 1, 1), 0);
  EXPECT_EQ(DaysFromCivil(2000, 3, 1), 11017);
  EXPECT_EQ(kFirstEventDay, DaysFromCivil(2010, 1, 1));
  for (int32_t d = -800000; d < 800000; d += 997) {
    const CivilDay c = CivilFromDays(d);
    ASSERT_EQ(DaysFromCivil(c.year, c.month, c.day), d);
  }
}

TEST(GeneratorTest, RejectsBadOptionsNamingTheFlag) {
  GeneratorOptions options;
  options.patients = -1;
  auto bad_count = Generator::Create(options);
  EXPECT_EQ(bad_count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_count.status().message(), HasSubstr("--patients"));
  options.patients = 10;
  options.site = "FR!";
  auto bad_site = Generator::Create(options);
  EXPECT_EQ(bad_site.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_site.status().message(), HasSubstr("--site"));
}

TEST(GeneratorTest, SameOptionsGiveIdenticalOutput) {
  auto a = Make(1500, 42, "fr");
  auto b = Make(1500, 42, "fr");
  const auto run_a = RunAll(*a);
  const auto run_b = RunAll(*b);
  ASSERT_EQ(run_a.size(), 1500u);
  EXPECT_EQ(Digest(run_a), Digest(run_b));
  // Random access gives the same patient as the sequential run.
  PatientRecord record;
  a->GeneratePatient(777, &record);
  EXPECT_EQ(Digest(std::vector<PatientRecord>{record}),
            Digest(std::vector<PatientRecord>{run_a[777]}));
  // A sub-range is the matching slice.
  Collector slice;
  ASSERT_TRUE(a->Generate(slice, 100, 200).ok());
  ASSERT_EQ(slice.patients.size(), 100u);
  EXPECT_EQ(Digest(slice.patients),
            Digest(std::vector<PatientRecord>(run_a.begin() + 100,
                                              run_a.begin() + 200)));
  // Another seed or site changes the data.
  EXPECT_NE(Digest(RunAll(*Make(1500, 43, "fr"))), Digest(run_a));
  EXPECT_NE(Digest(RunAll(*Make(1500, 42, "qc"))), Digest(run_a));
}

TEST(GeneratorTest, IdsDatesAndReferencesAreConsistent) {
  for (const std::string site : {"fr", "qc", "site-3"}) {
    auto generator = Make(2000, 5, site);
    const auto patients = RunAll(*generator);
    std::set<int64_t> person_ids, event_ids;
    for (const PatientRecord& p : patients) {
      ASSERT_TRUE(person_ids.insert(p.person.person_id).second);
      const int32_t birth =
          DaysFromCivil(p.person.year_of_birth,
                        p.person.month_of_birth ? p.person.month_of_birth : 1,
                        p.person.day_of_birth ? p.person.day_of_birth : 1);
      std::map<int64_t, const Event*> visits;
      for (const Event& e : p.events) {
        if (e.domain == Domain::kVisit) visits[e.id] = &e;
      }
      int deaths = 0;
      for (const Event& e : p.events) {
        EXPECT_EQ(e.person_id, p.person.person_id);
        ASSERT_GE(e.concept, 0);
        ASSERT_LT(e.concept,
                  static_cast<int32_t>(generator->concepts().size()));
        EXPECT_GE(e.start_day, kFirstEventDay);
        EXPECT_LE(e.start_day, kLastEventDay);
        // Month/day may be unknown: compare against the earliest possible
        // birth date in the known year.
        EXPECT_GE(e.start_day, birth - 366);
        if (p.person.death_day >= 0) {
          EXPECT_LE(e.start_day, p.person.death_day);
        }
        if (e.end_day >= 0) {
          EXPECT_GE(e.end_day, e.start_day);
        }
        if (e.domain == Domain::kDeath) {
          ++deaths;
          EXPECT_EQ(e.start_day, p.person.death_day);
          continue;
        }
        EXPECT_TRUE(event_ids.insert(e.id).second) << e.id;
        if (e.visit_id != 0) {
          auto it = visits.find(e.visit_id);
          ASSERT_NE(it, visits.end()) << "dangling visit " << e.visit_id;
          EXPECT_EQ(it->second->start_day, e.start_day);
        }
        const Concept& c = generator->concept_at(e.concept);
        switch (e.domain) {
          case Domain::kMeasurement:
            EXPECT_TRUE(e.has_value);
            EXPECT_EQ(c.vocabulary_id, "LOINC");
            break;
          case Domain::kDrug:
            EXPECT_EQ(c.vocabulary_id, "ATC");
            EXPECT_GT(e.days_supply, 0);
            break;
          case Domain::kVisit:
            EXPECT_EQ(c.vocabulary_id, "Visit");
            break;
          default:
            break;
        }
      }
      EXPECT_EQ(deaths, p.person.death_day >= 0 ? 1 : 0);
    }
  }
}

TEST(GeneratorTest, SitesNeverShareIdsAndUseTheirVocabularies) {
  auto fr = Make(100, 1, "fr");
  auto qc = Make(100, 1, "qc");
  EXPECT_NE(fr->PersonId(0), qc->PersonId(0));
  EXPECT_LT(fr->PersonId(99), qc->PersonId(0));
  std::map<std::string, std::set<std::string>> fr_vocab, qc_vocab;
  std::map<std::string, int64_t> fr_atc_ids, qc_atc_ids;
  for (const Concept& c : fr->concepts()) {
    fr_vocab[std::string(c.domain_id)].insert(std::string(c.vocabulary_id));
    if (c.vocabulary_id == "ATC")
      fr_atc_ids[std::string(c.code)] = c.concept_id;
    if (c.vocabulary_id != "Visit") {
      EXPECT_GE(c.concept_id, 2'000'000'000);
    }
  }
  for (const Concept& c : qc->concepts()) {
    qc_vocab[std::string(c.domain_id)].insert(std::string(c.vocabulary_id));
    if (c.vocabulary_id == "ATC")
      qc_atc_ids[std::string(c.code)] = c.concept_id;
  }
  EXPECT_EQ(fr_vocab["Condition"], std::set<std::string>{"CIM10"});
  EXPECT_EQ(qc_vocab["Condition"], std::set<std::string>{"ICD10CA"});
  EXPECT_EQ(fr_vocab["Procedure"], std::set<std::string>{"CCAM"});
  EXPECT_EQ(qc_vocab["Procedure"], std::set<std::string>{"SNOMED"});
  EXPECT_EQ(fr_vocab["Drug"], std::set<std::string>{"ATC"});
  EXPECT_EQ(fr_vocab["Measurement"], std::set<std::string>{"LOINC"});
  // Shared vocabularies get the same ids at both sites.
  EXPECT_EQ(fr_atc_ids, qc_atc_ids);
  EXPECT_TRUE(fr_atc_ids.count("A10BA02"));
  // Concepts are sorted by id and ids are unique.
  for (size_t i = 1; i < fr->concepts().size(); ++i) {
    EXPECT_LT(fr->concepts()[i - 1].concept_id, fr->concepts()[i].concept_id);
  }
}

struct Summary {
  int64_t patients = 0, events = 0, deceased = 0, year_only = 0, unknown = 0;
  int64_t t2d = 0, t2d_metformin = 0, other = 0, other_metformin = 0;
  double hba1c_t2d = 0, hba1c_other = 0;
  int64_t hba1c_t2d_n = 0, hba1c_other_n = 0;
  std::map<std::string, int64_t> code_counts;
};

Summary Summarize(const Generator& generator) {
  Summary s;
  for (const PatientRecord& p : RunAll(generator)) {
    ++s.patients;
    s.events += static_cast<int64_t>(p.events.size());
    if (p.person.death_day >= 0) ++s.deceased;
    if (p.person.month_of_birth == 0) ++s.year_only;
    if (p.person.gender_concept_id == 0) ++s.unknown;
    bool t2d = false, metformin = false;
    double hba1c = 0;
    int n = 0;
    for (const Event& e : p.events) {
      const Concept& c = generator.concept_at(e.concept);
      if (e.domain == Domain::kCondition) {
        ++s.code_counts[std::string(c.code)];
        if (absl::StartsWith(c.code, "E11")) t2d = true;
      }
      if (e.domain == Domain::kDrug && c.code == "A10BA02") metformin = true;
      if (e.domain == Domain::kMeasurement && c.code == "4548-4") {
        hba1c += e.value();
        ++n;
      }
    }
    if (t2d) {
      ++s.t2d;
      s.t2d_metformin += metformin;
      if (n > 0) s.hba1c_t2d += hba1c / n, ++s.hba1c_t2d_n;
    } else {
      ++s.other;
      s.other_metformin += metformin;
      if (n > 0) s.hba1c_other += hba1c / n, ++s.hba1c_other_n;
    }
  }
  return s;
}

TEST(GeneratorTest, DistributionsAreSkewedAndClinicallyPlausible) {
  auto fr = Make(8000, 11, "fr");
  const Summary s = Summarize(*fr);
  const double mean_events = static_cast<double>(s.events) / s.patients;
  EXPECT_GT(mean_events, 20);
  EXPECT_LT(mean_events, 45);
  const double deceased = static_cast<double>(s.deceased) / s.patients;
  EXPECT_GT(deceased, 0.01);
  EXPECT_LT(deceased, 0.10);
  EXPECT_GT(s.year_only, 0);
  EXPECT_GT(s.unknown, 0);
  // Diabetes: metformin far likelier, HbA1c higher.
  ASSERT_GT(s.t2d, 100);
  const double metformin_t2d = static_cast<double>(s.t2d_metformin) / s.t2d;
  const double metformin_other =
      static_cast<double>(s.other_metformin) / s.other;
  EXPECT_GT(metformin_t2d, 0.5);
  EXPECT_GT(metformin_t2d, 10 * metformin_other);
  ASSERT_GT(s.hba1c_t2d_n, 0);
  ASSERT_GT(s.hba1c_other_n, 0);
  EXPECT_GT(s.hba1c_t2d / s.hba1c_t2d_n, s.hba1c_other / s.hba1c_other_n + 1.0);
  // Zipf-like skew: the most frequent code is far more frequent than the
  // median one.
  std::vector<int64_t> counts;
  for (const auto& [code, n] : s.code_counts) counts.push_back(n);
  std::sort(counts.rbegin(), counts.rend());
  ASSERT_GT(counts.size(), 50u);
  EXPECT_GT(counts.front(), 20 * counts[counts.size() / 2]);
}

TEST(GeneratorTest, SitesDifferInPrevalence) {
  const Summary fr = Summarize(*Make(8000, 3, "fr"));
  const Summary qc = Summarize(*Make(8000, 3, "qc"));
  // Type 2 diabetes and obesity are more prevalent in the Quebec profile.
  EXPECT_GT(qc.t2d, fr.t2d * 11 / 10);
  EXPECT_GT(qc.code_counts.at("E66.9"), fr.code_counts.at("E66.9"));
}

class FailingSink : public PatientSink {
 public:
  absl::Status OnPatient(const PatientRecord&) override {
    return ++calls == 3 ? absl::ResourceExhaustedError("disk full")
                        : absl::OkStatus();
  }
  int calls = 0;
};

TEST(GeneratorTest, SinkErrorStopsGeneration) {
  auto generator = Make(100, 1, "fr");
  FailingSink sink;
  const absl::Status status = generator->Generate(sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(sink.calls, 3);
  EXPECT_EQ(generator->Generate(sink, 5, 2).code(),
            absl::StatusCode::kInvalidArgument);
}

// A digest of the concept table (ids, codes, vocabularies).
uint64_t ConceptDigest(const Generator& generator) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](absl::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
  };
  for (const Concept& c : generator.concepts()) {
    mix(std::to_string(c.concept_id));
    mix(c.code);
    mix(c.vocabulary_id);
    mix(c.domain_id);
  }
  return h;
}

TEST(GeneratorCodingTest, ParsesAndNamesCodings) {
  Coding coding = Coding::kUniform;
  EXPECT_TRUE(ParseCoding("site", &coding));
  EXPECT_EQ(coding, Coding::kSite);
  EXPECT_EQ(CodingName(coding), "site");
  EXPECT_TRUE(ParseCoding("uniform", &coding));
  EXPECT_EQ(coding, Coding::kUniform);
  EXPECT_EQ(CodingName(coding), "uniform");
  for (const char* bad : {"", "Site", "icd10", "uniform "}) {
    EXPECT_FALSE(ParseCoding(bad, &coding)) << bad;
  }
  EXPECT_EQ(GeneratorOptions().coding, Coding::kSite);
}

// Uniform coding is what the benchmarks measure: its output must not move.
// The digests were taken from the generator before site coding existed.
TEST(GeneratorCodingTest, UniformCodingIsUnchanged) {
  const std::map<std::string, std::pair<uint64_t, uint64_t>> golden = {
      {"fr", {0x65224ec51e9bc1faULL, 0x3bb371a65416b435ULL}},
      {"qc", {0xb38c2a8d1c748676ULL, 0x9b88a07c92ca0aa6ULL}},
      {"site-3", {0xc96998d9da9b69d5ULL, 0x68aa799c90b8928bULL}}};
  for (const auto& [site, digests] : golden) {
    auto g = Make(300, 20240601, site, Coding::kUniform);
    EXPECT_EQ(Digest(RunAll(*g)), digests.first) << site;
    EXPECT_EQ(ConceptDigest(*g), digests.second) << site;
  }
}

TEST(GeneratorCodingTest, SitesWithoutARealCodingIgnoreIt) {
  auto site = Make(300, 9, "site-3", Coding::kSite);
  auto uniform = Make(300, 9, "site-3", Coding::kUniform);
  EXPECT_EQ(Digest(RunAll(*site)), Digest(RunAll(*uniform)));
  EXPECT_EQ(ConceptDigest(*site), ConceptDigest(*uniform));
}

// The ATC a product code stands for, from the embedded table.
std::map<std::pair<std::string, std::string>, std::string> ProductAtcs() {
  std::map<std::pair<std::string, std::string>, std::string> atc;
  for (const catalog::DrugProduct& d : catalog::DrugProducts()) {
    const char* vocabulary = d.vocabulary == catalog::kDin     ? "DIN"
                             : d.vocabulary == catalog::kCip13 ? "CIP13"
                                                               : "UCD";
    atc[{vocabulary, d.code}] = d.atc;
  }
  return atc;
}

// Site coding recodes the very same patients: every event is the uniform
// run's event (ids, dates, visits, values) with its code replaced by the
// site's code for it, by the rules in generator.h.
TEST(GeneratorCodingTest, SiteCodingRecodesTheSamePatientsAndEvents) {
  std::map<std::string, std::string> icd9_of;
  for (const catalog::Icd9Code& c : catalog::Icd9Codes()) {
    icd9_of[c.icd10] = c.icd9;
  }
  const auto product_atc = ProductAtcs();
  for (const std::string site : {"fr", "qc"}) {
    SCOPED_TRACE(site);
    auto uniform = Make(3000, 77, site, Coding::kUniform);
    auto coded = Make(3000, 77, site, Coding::kSite);
    const auto u = RunAll(*uniform);
    const auto s = RunAll(*coded);
    ASSERT_EQ(u.size(), s.size());
    std::map<std::string, int64_t> vocabularies;  // Of conditions and drugs.
    int64_t hospital_units = 0;
    for (size_t p = 0; p < u.size(); ++p) {
      ASSERT_EQ(u[p].person.person_id, s[p].person.person_id);
      ASSERT_EQ(u[p].person.death_day, s[p].person.death_day);
      ASSERT_EQ(u[p].events.size(), s[p].events.size());
      std::map<int64_t, const Event*> visits;
      for (const Event& e : s[p].events) {
        if (e.domain == Domain::kVisit) visits[e.id] = &e;
      }
      auto during_stay = [&](int32_t day) {
        for (const auto& [id, v] : visits) {
          if (coded->concept_at(v->concept).code == "IP" &&
              v->start_day <= day && day <= v->end_day) {
            return true;
          }
        }
        return false;
      };
      std::map<std::string, std::set<std::string>> products_of_atc;
      for (size_t i = 0; i < u[p].events.size(); ++i) {
        const Event& a = u[p].events[i];
        const Event& b = s[p].events[i];
        ASSERT_EQ(a.domain, b.domain);
        ASSERT_EQ(a.id, b.id);
        ASSERT_EQ(a.start_day, b.start_day);
        ASSERT_EQ(a.end_day, b.end_day);
        ASSERT_EQ(a.visit_id, b.visit_id);
        ASSERT_EQ(a.value_scaled, b.value_scaled);
        ASSERT_EQ(a.days_supply, b.days_supply);
        const Concept& ca = uniform->concept_at(a.concept);
        const Concept& cb = coded->concept_at(b.concept);
        const std::string code_a(ca.code), code_b(cb.code);
        if (b.domain == Domain::kCondition) {
          ++vocabularies[std::string(cb.vocabulary_id)];
          const bool claim =
              b.visit_id != 0 &&
              coded->concept_at(visits.at(b.visit_id)->concept).code != "IP";
          if (site == "qc" && claim) {
            EXPECT_EQ(cb.vocabulary_id, "ICD9") << code_a;
            EXPECT_EQ(code_b, icd9_of.at(code_a));
          } else {
            EXPECT_EQ(cb.concept_id, ca.concept_id) << code_a;
          }
        } else if (b.domain == Domain::kDrug) {
          ++vocabularies[std::string(cb.vocabulary_id)];
          EXPECT_EQ(ca.vocabulary_id, "ATC");
          const std::string vocabulary(cb.vocabulary_id);
          EXPECT_EQ(product_atc.at({vocabulary, code_b}), code_a)
              << vocabulary << " " << code_b;
          if (site == "qc") {
            EXPECT_EQ(vocabulary, "DIN");
          } else if (vocabulary == "UCD") {
            EXPECT_TRUE(during_stay(b.start_day)) << code_b;
            ++hospital_units;
          } else {
            EXPECT_EQ(vocabulary, "CIP13");
            products_of_atc[code_a].insert(code_b);
          }
          if (site == "qc") products_of_atc[code_a].insert(code_b);
        } else {
          EXPECT_EQ(cb.concept_id, ca.concept_id);
        }
      }
      // A patient keeps one product of each drug at the pharmacy.
      for (const auto& [atc, products] : products_of_atc) {
        EXPECT_EQ(products.size(), 1u) << atc;
      }
    }
    if (site == "qc") {
      EXPECT_GT(vocabularies["ICD9"], vocabularies["ICD10CA"]);
      EXPECT_GT(vocabularies["ICD10CA"], 0);
      EXPECT_GT(vocabularies["DIN"], 0);
      EXPECT_EQ(vocabularies["ATC"], 0);
    } else {
      EXPECT_GT(vocabularies["CIM10"], 0);
      EXPECT_GT(vocabularies["CIP13"], 0);
      EXPECT_GT(hospital_units, 0);
      EXPECT_EQ(vocabularies["ATC"], 0);
    }
  }
}

TEST(GeneratorCodingTest, ProductsVaryAcrossPatients) {
  // Metformin reaches several DINs across Quebec's patients, weighted.
  auto qc = Make(3000, 5, "qc", Coding::kSite);
  std::map<std::string, int64_t> metformin;
  const auto product_atc = ProductAtcs();
  for (const PatientRecord& p : RunAll(*qc)) {
    for (const Event& e : p.events) {
      const Concept& c = qc->concept_at(e.concept);
      if (e.domain == Domain::kDrug &&
          product_atc.at({"DIN", std::string(c.code)}) == "A10BA02") {
        ++metformin[std::string(c.code)];
      }
    }
  }
  EXPECT_GE(metformin.size(), 2u);
}

}  // namespace
}  // namespace passerelle::synth
