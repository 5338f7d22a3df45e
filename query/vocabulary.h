// Code vocabularies of the cohort language: their canonical names, how codes
// are normalised, and which query vocabulary matches which data vocabulary.
// All functions are pure and safe to call from any thread.
#ifndef PASSERELLE_QUERY_VOCABULARY_H_
#define PASSERELLE_QUERY_VOCABULARY_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace passerelle::query {

// Every canonical vocabulary name (lower case), in a fixed order: icd10,
// icd10cm, icd10ca, cim10, icd9, icd9cm, atc, ccam, snomed, rxnorm, loinc,
// ndc, concept.
absl::Span<const absl::string_view> KnownVocabularies();

// True for a canonical (lower-case) vocabulary name. Case-sensitive on
// purpose: ASTs carry canonical names; the parser lower-cases what users type.
bool IsKnownVocabulary(absl::string_view vocab);

// True for the ICD-10 family (icd10, icd10cm, icd10ca, cim10) and ICD-9
// (icd9, icd9cm): vocabularies whose codes ignore dots and spaces.
bool IsIcdVocabulary(absl::string_view vocab);

// The normal form of a code: ASCII upper case, surrounding whitespace
// trimmed, and for ICD vocabularies every dot and space removed ("e11.9" ->
// "E119", "I10    " -> "I10"). One pass, one allocation: loaders call it per
// row.
std::string NormalizeCode(absl::string_view vocab, absl::string_view code);

// True when `code` is a well-formed normalised code of `vocab`: non-empty, at
// most kMaxCodeLength characters, [A-Z0-9] for ICD vocabularies, digits for
// `concept`, otherwise [A-Z0-9] followed by [A-Z0-9._-].
bool IsValidCode(absl::string_view vocab, absl::string_view code);

// True when a query code of `query_vocab` matches rows coded in `data_vocab`:
// icd10 matches icd10, icd10cm, icd10ca and cim10; icd9 matches icd9 and
// icd9cm; any other vocabulary matches only itself.
bool VocabularyMatches(absl::string_view query_vocab,
                       absl::string_view data_vocab);

// True when every data vocabulary matched by `narrow` is also matched by
// `wide` (e.g. icd10 covers icd10cm).
bool VocabularyCovers(absl::string_view wide, absl::string_view narrow);

}  // namespace passerelle::query

#endif  // PASSERELLE_QUERY_VOCABULARY_H_
