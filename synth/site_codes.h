// The codes each site's real coding uses in place of the catalog's uniform
// ICD-10 / ATC codes (embedded, so generation needs no external files):
//   - WHO ICD-9 as the RAMQ physician claims carry it (3-4 characters, no
//     dot), one per catalog condition code that a claim can hold;
//   - drug products: Health Canada DINs (Quebec), French CIP13 presentations
//     (community pharmacy) and UCD units (hospital), a few per catalog ATC.
// Every code is real. site_codes_test checks each against the public tables
// in ../shared/data (DPD DIN -> ATC, BDPM CIP13 -> ATC, the SNDS UCD
// nomenclature, the CMS ICD-9-CM -> ICD-10-CM GEM).
#ifndef PASSERELLE_SYNTH_SITE_CODES_H_
#define PASSERELLE_SYNTH_SITE_CODES_H_

#include <cstdint>

#include "absl/types/span.h"

namespace passerelle::synth::catalog {

// A WHO ICD-9 code for a catalog condition code (RAMQ billing style: the
// 3-character category, or the 4-character subcategory where physicians
// commonly give it).
struct Icd9Code {
  const char* icd10;  // A catalog condition code, dotted ("E11.9").
  const char* icd9;   // No dot ("250", "4273", "V700").
  const char* name;
  // The ICD-10 category the CMS GEM reaches from this code when it is not
  // the catalog code's own (ICD-10-CM lacks the category, or the GEM maps
  // elsewhere); nullptr otherwise. site_codes_test checks it.
  const char* gem_category;
};

enum ProductVocabulary : uint8_t {
  kDin,    // Health Canada Drug Identification Number, 8 digits.
  kCip13,  // French presentation code, 13 digits.
  kUcd,    // French unit code (hospital dispensing), 13 digits.
};

// One marketed (or formerly marketed) product of a catalog drug.
struct DrugProduct {
  const char* atc;  // The catalog drug (DrugCode::atc).
  ProductVocabulary vocabulary;
  const char* code;
  const char* name;  // Brand or denomination, ASCII.
  uint16_t weight;   // Relative frequency among the drug's products.
  // True when the public table maps `code` to `atc`. False for real codes
  // the public table leaves without ATC (BDPM only gives ATCs for MITM
  // products; no public table maps UCD to ATC): crosswalk queries by ATC do
  // not reach them, as they would not reach them in real data.
  bool mapped;
};

absl::Span<const Icd9Code> Icd9Codes();
absl::Span<const DrugProduct> DrugProducts();

}  // namespace passerelle::synth::catalog

#endif  // PASSERELLE_SYNTH_SITE_CODES_H_
