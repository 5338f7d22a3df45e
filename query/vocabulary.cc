#include "query/vocabulary.h"

#include <array>

#include "query/limits.h"

namespace passerelle::query {
namespace {

constexpr std::array<absl::string_view, 17> kVocabularies = {
    "icd10",  "icd10cm", "icd10ca", "cim10", "icd9",   "icd9cm",
    "atc",    "ccam",    "cci",     "din",   "cip13",  "ucd",
    "snomed", "rxnorm",  "loinc",   "ndc",   "concept"};

bool IsIcd10Variant(absl::string_view v) {
  return v == "icd10cm" || v == "icd10ca" || v == "cim10";
}

bool IsUpperAlnum(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

}  // namespace

absl::Span<const absl::string_view> KnownVocabularies() {
  return kVocabularies;
}

bool IsKnownVocabulary(absl::string_view vocab) {
  for (absl::string_view v : kVocabularies) {
    if (v == vocab) return true;
  }
  return false;
}

bool IsIcdVocabulary(absl::string_view vocab) {
  return vocab == "icd10" || IsIcd10Variant(vocab) || vocab == "icd9" ||
         vocab == "icd9cm";
}

std::string NormalizeCode(absl::string_view vocab, absl::string_view code) {
  while (!code.empty() && IsSpace(code.front())) code.remove_prefix(1);
  while (!code.empty() && IsSpace(code.back())) code.remove_suffix(1);
  const bool icd = IsIcdVocabulary(vocab);
  std::string out;
  out.reserve(code.size());
  for (char c : code) {
    if (icd && (c == '.' || IsSpace(c))) continue;
    out.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  return out;
}

bool IsValidCode(absl::string_view vocab, absl::string_view code) {
  if (code.empty() || code.size() > kMaxCodeLength) return false;
  if (vocab == "concept") {
    for (char c : code) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  }
  if (IsIcdVocabulary(vocab)) {
    for (char c : code) {
      if (!IsUpperAlnum(c)) return false;
    }
    return true;
  }
  if (!IsUpperAlnum(code.front())) return false;
  for (char c : code) {
    if (!IsUpperAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

bool VocabularyMatches(absl::string_view query_vocab,
                       absl::string_view data_vocab) {
  if (query_vocab == data_vocab) return true;
  if (query_vocab == "icd10") return IsIcd10Variant(data_vocab);
  if (query_vocab == "icd9") return data_vocab == "icd9cm";
  return false;
}

bool VocabularyCovers(absl::string_view wide, absl::string_view narrow) {
  if (wide == narrow) return true;
  if (!IsKnownVocabulary(wide) || !IsKnownVocabulary(narrow)) return false;
  for (absl::string_view d : kVocabularies) {
    if (VocabularyMatches(narrow, d) && !VocabularyMatches(wide, d)) {
      return false;
    }
  }
  return true;
}

}  // namespace passerelle::query
