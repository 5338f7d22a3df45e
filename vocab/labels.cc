#include "vocab/labels.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "query/vocabulary.h"
#include "vocab/fold.h"
#include "vocab/sources.h"

namespace passerelle::vocab {
namespace {

constexpr VocabularyInfo kLabelled[] = {
    {"cim10", "CIM-10 (ATIH's French ICD-10, SNDS nomenclatures)"},
    {"icd10cm", "ICD-10-CM FY2018 (CMS/NCHS code titles)"},
    {"icd9cm", "ICD-9-CM v32 (CMS diagnosis titles)"},
    {"atc", "ATC (French: OpenMedic levels 1-5; English: Health Canada DPD)"},
    {"ccam", "CCAM v63 (French procedures, SNDS nomenclatures)"},
    {"cip13", "CIP13 presentations (French BDPM)"},
    {"ucd", "UCD dispensing units (SNDS NU_UCD_R)"},
    {"din", "DIN products (Health Canada DPD brand names)"},
};

}  // namespace

absl::string_view LanguageCode(Language language) {
  return language == Language::kFrench ? "fr" : "en";
}

std::optional<Language> ParseLanguage(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "fr") return Language::kFrench;
  if (lower == "en") return Language::kEnglish;
  return std::nullopt;
}

absl::Span<const VocabularyInfo> LabelledVocabularies() { return kLabelled; }

std::string UnlabelledReason(absl::string_view vocabulary) {
  for (const VocabularyInfo& v : kLabelled) {
    if (query::VocabularyMatches(vocabulary, v.vocabulary)) return "";
  }
  if (vocabulary == "icd10ca") {
    return "ICD-10-CA is CIHI's licensed Canadian modification of ICD-10: no "
           "open labels (its categories are ICD-10's: try icd10:CODE for the "
           "CIM-10 and ICD-10-CM labels)";
  }
  if (vocabulary == "cci") {
    return "CCI (CIHI's Canadian Classification of Health Interventions) has "
           "no openly licensed labels";
  }
  if (vocabulary == "snomed") {
    return "SNOMED CT is licensed (SNOMED International): no open labels";
  }
  if (vocabulary == "rxnorm") {
    return "RxNorm's full release needs a UMLS licence: no labels in the "
           "public nomenclatures";
  }
  if (vocabulary == "loinc") {
    return "LOINC's table (Regenstrief licence) is not among the public "
           "nomenclatures";
  }
  if (vocabulary == "ndc") {
    return "no NDC product file is among the public nomenclatures";
  }
  if (vocabulary == "concept") {
    return "OMOP concept ids need the Athena vocabulary (CONCEPT.csv), which "
           "is not among the public nomenclatures";
  }
  if (query::IsKnownVocabulary(vocabulary)) {
    return absl::StrCat(vocabulary, " has no open label source");
  }
  return absl::StrCat("\"", vocabulary, "\" is not a known vocabulary");
}

std::string LabelKey(absl::string_view vocabulary, absl::string_view code) {
  std::string key = query::NormalizeCode(vocabulary, code);
  if (vocabulary == "ucd" && key.size() == 13 &&
      absl::StartsWith(key, "000000")) {
    key.erase(0, 6);
  }
  return key;
}

absl::StatusOr<std::unique_ptr<Labels>> Labels::Load(
    const std::string& dir, const LoadOptions& options) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("nomenclature directory \"", dir,
                     "\" does not exist or is not a directory"));
  }
  // Which labelled vocabularies are asked for.
  std::vector<bool> wanted(std::size(kLabelled), options.vocabularies.empty());
  for (const std::string& v : options.vocabularies) {
    if (!query::IsKnownVocabulary(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", v, "\" is not a known vocabulary"));
    }
    for (size_t i = 0; i < std::size(kLabelled); ++i) {
      if (query::VocabularyMatches(v, kLabelled[i].vocabulary)) {
        wanted[i] = true;
      }
    }
  }
  std::unique_ptr<Labels> labels(new Labels());
  std::vector<std::string> missing;
  bool any_present = false;
  for (size_t i = 0; i < std::size(kLabelled); ++i) {
    const absl::string_view vocabulary = kLabelled[i].vocabulary;
    std::vector<SourceReport> reports;
    Table table;
    if (wanted[i]) {
      PASSERELLE_ASSIGN_OR_RETURN(std::vector<CodeLabels> codes,
                                  LoadVocabulary(dir, vocabulary, &reports));
      table = MakeTable(vocabulary, codes);
    } else {
      reports = DescribeSources(vocabulary, dir);
    }
    for (SourceReport& r : reports) {
      r.requested = wanted[i];
      if (r.requested && r.present) any_present = true;
      if (r.requested && !r.present) {
        missing.push_back((std::filesystem::path(dir) / r.file).string());
      }
      labels->sources_.push_back(std::move(r));
    }
    if (wanted[i]) labels->tables_.push_back(std::move(table));
  }
  if (!missing.empty() && (options.require_all_files || !any_present)) {
    return absl::NotFoundError(
        absl::StrCat("nomenclature file", missing.size() > 1 ? "s" : "",
                     " missing: ", absl::StrJoin(missing, ", "),
                     any_present ? ""
                                 : " (the directory must be laid out like "
                                   "../shared/data: crosswalks/ and "
                                   "snds/nomenclatures/)"));
  }
  return labels;
}

const Labels::Table* Labels::table(absl::string_view vocabulary) const {
  for (const Table& t : tables_) {
    if (t.vocabulary == vocabulary) return &t;
  }
  return nullptr;
}

namespace {

// The first entry of `table` whose code is not less than `key`.
std::vector<Labels::Entry>::const_iterator LowerBound(
    const Labels::Table& table, absl::string_view key) {
  return std::lower_bound(
      table.entries.begin(), table.entries.end(), key,
      [](const Labels::Entry& e, absl::string_view k) { return e.code < k; });
}

// Copies the labels `entry` has that `out` lacks.
void FillFrom(const Labels::Entry& entry, absl::string_view vocabulary,
              CodeLabels* out) {
  for (Language l : kLanguages) {
    const int i = static_cast<int>(l);
    if (out->label[i].empty() && !entry.label[i].empty()) {
      out->label[i] = std::string(entry.label[i]);
      out->source[i] = std::string(vocabulary);
    }
  }
}

void PutField(absl::string_view field, std::string* out) {
  const uint32_t n = static_cast<uint32_t>(field.size());
  const char len[4] = {
      static_cast<char>(n & 0xFF), static_cast<char>((n >> 8) & 0xFF),
      static_cast<char>((n >> 16) & 0xFF), static_cast<char>((n >> 24) & 0xFF)};
  out->append(len, 4);
  out->append(field.data(), field.size());
}

bool GetField(absl::string_view* in, absl::string_view* field) {
  if (in->size() < 4) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(in->data());
  const uint32_t n =
      p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
  if (in->size() - 4 < n) return false;
  *field = in->substr(4, n);
  in->remove_prefix(4 + n);
  return true;
}

constexpr size_t kChunkBytes = 256 * 1024;

}  // namespace

CodeLabels Labels::Table::Get(size_t i) const {
  CodeLabels out;
  out.code = std::string(entries[i].code);
  FillFrom(entries[i], vocabulary, &out);
  return out;
}

Labels::Table Labels::MakeTable(absl::string_view vocabulary,
                                const std::vector<CodeLabels>& codes) {
  Table table;
  table.vocabulary = std::string(vocabulary);
  std::string chunk;
  std::string folded;
  auto flush = [&] {
    if (chunk.empty()) return;
    table.chunks.push_back(
        std::make_unique<const std::string>(std::move(chunk)));
    chunk.clear();
  };
  for (const CodeLabels& c : codes) {
    PutField(c.code, &chunk);
    PutField(c.label[0], &chunk);
    PutField(c.label[1], &chunk);
    for (const std::string& label : c.label) {
      FoldInto(label, &folded);
      PutField(folded, &chunk);
    }
    if (chunk.size() >= kChunkBytes) flush();
  }
  flush();
  // This code wrote the chunks just now: they parse.
  ParseChunks(&table).IgnoreError();
  return table;
}

absl::Status Labels::ParseChunks(Table* table) {
  table->entries.clear();
  size_t bytes = 0;
  for (const auto& chunk : table->chunks) bytes += chunk->size();
  table->entries.reserve(bytes / 64);
  for (size_t c = 0; c < table->chunks.size(); ++c) {
    absl::string_view in = *table->chunks[c];
    auto bad = [&](absl::string_view what) {
      return absl::DataLossError(
          absl::StrCat("chunk ", c, " of ", table->vocabulary, " ", what));
    };
    while (!in.empty()) {
      Entry e;
      if (!GetField(&in, &e.code) || !GetField(&in, &e.label[0]) ||
          !GetField(&in, &e.label[1]) || !GetField(&in, &e.folded[0]) ||
          !GetField(&in, &e.folded[1])) {
        return bad("is truncated");
      }
      if (!HasCodeShape(table->vocabulary, e.code) ||
          (!table->entries.empty() && !(table->entries.back().code < e.code))) {
        return bad("holds a code out of order or malformed");
      }
      table->entries.push_back(e);
    }
  }
  return absl::OkStatus();
}

std::optional<CodeLabels> Labels::Find(absl::string_view vocabulary,
                                       absl::string_view code) const {
  std::optional<CodeLabels> out;
  for (const Table& t : tables_) {
    if (!query::VocabularyMatches(vocabulary, t.vocabulary)) continue;
    const std::string key = LabelKey(t.vocabulary, code);
    auto it = LowerBound(t, key);
    if (it == t.entries.end() || it->code != key) continue;
    if (!out) {
      out.emplace();
      out->code = key;
    }
    FillFrom(*it, t.vocabulary, &*out);
  }
  return out;
}

std::string Labels::Describe(absl::string_view vocabulary,
                             absl::string_view code, Language preferred) const {
  std::optional<CodeLabels> labels = Find(vocabulary, code);
  if (!labels) return "";
  const std::string& first = labels->text(preferred);
  return first.empty() ? labels->label[1 - static_cast<int>(preferred)] : first;
}

std::vector<CodeLabels> Labels::Under(absl::string_view vocabulary,
                                      absl::string_view prefix, size_t limit,
                                      int64_t* total) const {
  // The matching range of each member table, merged by code.
  struct Cursor {
    const Table* table;
    std::vector<Entry>::const_iterator it, end;
  };
  std::vector<Cursor> cursors;
  for (const Table& t : tables_) {
    if (!query::VocabularyMatches(vocabulary, t.vocabulary)) continue;
    const std::string key = LabelKey(t.vocabulary, prefix);
    auto begin = LowerBound(t, key);
    auto end = begin;
    while (end != t.entries.end() && absl::StartsWith(end->code, key)) ++end;
    if (begin != end) cursors.push_back({&t, begin, end});
  }
  std::vector<CodeLabels> out;
  int64_t count = 0;
  while (true) {
    const absl::string_view* next = nullptr;
    for (const Cursor& c : cursors) {
      if (c.it != c.end && (next == nullptr || c.it->code < *next)) {
        next = &c.it->code;
      }
    }
    if (next == nullptr) break;
    const absl::string_view code = *next;
    ++count;
    const bool keep = out.size() < limit;
    if (keep) {
      out.emplace_back();
      out.back().code = std::string(code);
    }
    for (Cursor& c : cursors) {
      if (c.it == c.end || c.it->code != code) continue;
      if (keep) FillFrom(*c.it, c.table->vocabulary, &out.back());
      ++c.it;
    }
  }
  if (total != nullptr) *total = count;
  return out;
}

}  // namespace passerelle::vocab
