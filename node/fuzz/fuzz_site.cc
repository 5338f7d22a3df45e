#include "node/fuzz/fuzz_site.h"

#include <cstdint>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"
#include "query/vocabulary.h"

namespace passerelle::node::fuzz {

std::shared_ptr<const Snapshot> FuzzSnapshot(const std::string& site,
                                             int patients, int seed) {
  SnapshotBuilder b(site);
  const v1::Sex sexes[] = {v1::SEX_FEMALE, v1::SEX_MALE, v1::SEX_UNKNOWN,
                           v1::SEX_FEMALE, v1::SEX_MALE, v1::SEX_OTHER};
  for (int i = 0; i < patients; ++i) {
    const int k = i * 7 + seed;
    if (!b.AddPerson(i, BirthKey(1930 + k % 80, 1 + k % 12, 1 + k % 28),
                     sexes[k % 6])
             .ok()) {
      std::abort();
    }
  }
  b.FinishPersons();
  const int32_t base = DaysFromCivil(2015, 1, 1);
  auto add = [&](int i, int day, double value, v1::Domain domain,
                 const char* vocab, const char* code) {
    if (!b.BeginEvent(i, base + day, value).ok()) std::abort();
    b.AddEventCode(domain, vocab, query::NormalizeCode(vocab, code));
  };
  const double none = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < patients; ++i) {
    const int k = i * 13 + seed;
    if (k % 3 == 0)
      add(i, k % 1500, none, v1::DOMAIN_CONDITION, "icd10", "E11.9");
    if (k % 4 == 0)
      add(i, k % 1700, none, v1::DOMAIN_CONDITION, "icd10", "I10");
    if (k % 4 == 1)
      add(i, 40 + k % 1700, none, v1::DOMAIN_CONDITION, "icd10", "I10");
    if (k % 5 == 0)
      add(i, 30 + k % 1500, none, v1::DOMAIN_DRUG, "atc", "A10BA02");
    if (k % 6 == 1) add(i, k % 2000, none, v1::DOMAIN_DRUG, "atc", "C09AA05");
    if (k % 2 == 0) {
      add(i, k % 1800, 5.0 + k % 7, v1::DOMAIN_MEASUREMENT, "loinc", "4548-4");
      add(i, 200 + k % 1800, 6.5 + k % 3, v1::DOMAIN_MEASUREMENT, "loinc",
          "4548-4");
    }
    if (k % 7 == 0)
      add(i, k % 1900, none, v1::DOMAIN_PROCEDURE, "ccam", "DEQP003");
    if (k % 8 == 3)
      add(i, k % 1900, none, v1::DOMAIN_VISIT, "snomed", "185349003");
    if (k % 9 == 2)
      add(i, k % 1900, none, v1::DOMAIN_OBSERVATION, "loinc", "72166-2");
    if (k % 10 == 0)
      add(i, k % 1900, none, v1::DOMAIN_CONDITION, "icd9", "250.00");
    if (k % 11 == 0 && !b.MarkDeceased(i, base + 1800 + k % 300).ok()) {
      std::abort();
    }
  }
  return b.Build(absl::StrCat(site, "-fuzz-", seed), 1700000000);
}

}  // namespace passerelle::node::fuzz
