// Code labels in French and English from the public nomenclatures.
//
// A nomenclature directory is laid out like the project's public data
// (../shared/data): `snds/nomenclatures/` (CIM-10, CCAM, UCD and ATC labels
// in French, `;`-separated) and `crosswalks/` (ICD-10-CM and ICD-9-CM titles,
// Health Canada's DPD and the French BDPM, `,`-separated). Labels are keyed by
// the project's vocabulary names and normalised codes (query/vocabulary.h),
// so a caller holding a (vocabulary, code) pair from a query or a result
// finds its labels directly:
//
//   absl::StatusOr<std::unique_ptr<Labels>> labels = Labels::Load(dir);
//   std::optional<CodeLabels> l = (*labels)->Find("icd10", "E11.9");
//   // l->fr() == "Diabète sucré de type 2, sans complication" (cim10)
//   // l->en() == "Type 2 diabetes mellitus without complications" (icd10cm)
//   (*labels)->Describe("atc", "A10BA02", Language::kFrench);  // "METFORMINE"
//
// Labels::LoadIndex reads the same from an index (vocab/index.h), faster.
// Vocabularies with no open label source (icd10ca, cci, RAMQ's icd9, WHO
// icd10 outside CIM-10, snomed, rxnorm, loinc, ndc, concept) have no labels;
// UnlabelledReason() says why. docs/labels.md is the user's guide.
#ifndef PASSERELLE_VOCAB_LABELS_H_
#define PASSERELLE_VOCAB_LABELS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace passerelle::vocab {

enum class Language { kFrench = 0, kEnglish = 1 };
inline constexpr std::array<Language, 2> kLanguages = {Language::kFrench,
                                                       Language::kEnglish};

// "fr" or "en".
absl::string_view LanguageCode(Language language);
// Parses "fr" or "en" (any case).
std::optional<Language> ParseLanguage(absl::string_view text);

// One labelled vocabulary: its canonical name and where its labels come from.
struct VocabularyInfo {
  absl::string_view vocabulary;  // "cim10"
  absl::string_view title;       // "CIM-10 (ATIH, French ICD-10)"
};

// Vocabularies that have open labels, in a fixed order (the order search
// results of equal rank are listed in): cim10, icd10cm, icd9cm, atc, ccam,
// cip13, ucd, din.
absl::Span<const VocabularyInfo> LabelledVocabularies();

// For a known vocabulary with no open label source, the reason in one
// sentence (e.g. ICD-10-CA is licensed by CIHI); empty for a labelled
// vocabulary or a family that reaches one (icd10, icd9).
std::string UnlabelledReason(absl::string_view vocabulary);

// The key a code is labelled under: query::NormalizeCode, and for `ucd` a
// 13-digit code of six leading zeros and a 7-digit UCD (how NU_UCD_R writes
// UCD7) is keyed by the 7 digits.
std::string LabelKey(absl::string_view vocabulary, absl::string_view code);

// A code's labels. A language with no label has an empty string; `source`
// names the vocabulary each label comes from (for the icd10 family, French
// from cim10 and English from icd10cm).
struct CodeLabels {
  std::string code;
  std::array<std::string, 2> label;
  std::array<std::string, 2> source;

  const std::string& fr() const { return label[0]; }
  const std::string& en() const { return label[1]; }
  const std::string& text(Language l) const {
    return label[static_cast<int>(l)];
  }
};

// What one nomenclature file gave (`passerelle vocab sources`).
struct SourceReport {
  std::string vocabulary;
  Language language = Language::kFrench;
  std::string file;         // Relative to the nomenclature directory.
  std::string description;  // What the file is, in a few words.
  bool requested = false;   // Its vocabulary was asked for.
  bool present = false;     // The file exists (read only when requested).
  int64_t rows = 0;         // Data rows read.
  int64_t labelled = 0;     // Codes that took their label from this file.
  // Rows without a label: blank code where the file allows it (a DPD
  // product with no ATC), blank label.
  int64_t blank = 0;
  // Rows whose code is not a well-formed code of the vocabulary (e.g. ATIH's
  // CIM-10 extensions `F55+0`, the DPD's `L04AA40*`): not labelled, since no
  // query or site data can carry them; the first few as "file:line: code".
  int64_t invalid = 0;
  std::vector<std::string> invalid_examples;
};

struct LoadOptions {
  // Vocabularies to load (query vocabularies: `icd10` loads cim10 and
  // icd10cm); empty loads every labelled vocabulary. A vocabulary with no
  // open labels is not an error (it simply has none).
  std::vector<std::string> vocabularies;
  // When true, a requested file that is absent is a NotFound error naming
  // it; otherwise it is reported (SourceReport.present) and its labels are
  // missing. Load fails either way when no requested file is present.
  bool require_all_files = false;
};

// The labels of the loaded vocabularies, in memory. Immutable once loaded,
// so safe for concurrent use from any number of threads.
class Labels {
 public:
  // One labelled code: views into its table's storage. `folded` is each
  // label's Fold() (vocab/fold.h), kept so a search folds nothing.
  struct Entry {
    absl::string_view code;
    std::array<absl::string_view, 2> label;   // fr, en; empty when none.
    std::array<absl::string_view, 2> folded;  // Fold(label[i]).
  };

  // One vocabulary's labelled codes, sorted by code. The entries point into
  // `chunks`: records of five fields (code, French, English, their folded
  // forms), each a 4-byte little-endian length and its bytes, about 256 KiB
  // per chunk, which is also how the index stores them (vocab/index.h).
  struct Table {
    std::string vocabulary;
    std::vector<Entry> entries;
    std::vector<std::unique_ptr<const std::string>> chunks;

    // Entry i as a CodeLabels (a copy, with this vocabulary as the source
    // of each label it has).
    CodeLabels Get(size_t i) const;
  };

  // Encodes `codes` (sorted by code, unique) into a table.
  static Table MakeTable(absl::string_view vocabulary,
                         const std::vector<CodeLabels>& codes);
  // Fills table->entries from table->chunks, checking every record (lengths
  // within the chunk, codes of the vocabulary's shape and strictly
  // increasing); the error names the chunk.
  static absl::Status ParseChunks(Table* table);

  // Reads the nomenclature files of the requested vocabularies under `dir`.
  // Errors: NotFound if `dir` is not a directory, holds none of the
  // requested files, or (with require_all_files) lacks one of them;
  // InvalidArgument naming "file:line: reason" for a malformed file (a
  // missing column, a wrong field count, an unterminated quote, a blank code
  // or label where the file must have one, text that is not UTF-8, one code
  // given two different labels in the same file); InvalidArgument for an
  // unknown vocabulary name.
  static absl::StatusOr<std::unique_ptr<Labels>> Load(
      const std::string& dir, const LoadOptions& options = {});

  // Reads the requested vocabularies from an index written by BuildIndex
  // (vocab/index.h) instead of the files. NotFound when `index_dir` holds no
  // index; FailedPrecondition for an index of another format; DataLoss
  // naming the key for a damaged one (rebuild it). When the files the index
  // was built from have changed since (size or modification time), or are
  // no longer there, *stale (if given) describes it; the index is used
  // anyway.
  static absl::StatusOr<std::unique_ptr<Labels>> LoadIndex(
      const std::string& index_dir, const LoadOptions& options = {},
      std::string* stale = nullptr);

  // The labels of `code` in `vocabulary` (normalised with LabelKey), or
  // nullopt when neither language has one. A family vocabulary takes each
  // language from the first labelled member that has it (icd10: cim10 for
  // French, icd10cm for English; icd9: icd9cm).
  std::optional<CodeLabels> Find(absl::string_view vocabulary,
                                 absl::string_view code) const;

  // The one label to print beside `code` (a results table, an explain
  // line): in `preferred` when the code has one, else in the other
  // language, else "".
  std::string Describe(absl::string_view vocabulary, absl::string_view code,
                       Language preferred) const;

  // The labelled codes of `vocabulary` (a family merges its members by
  // code) that start with `prefix` (normalised; empty for all), in code
  // order: at most `limit`, with the number there are in *total.
  std::vector<CodeLabels> Under(absl::string_view vocabulary,
                                absl::string_view prefix, size_t limit,
                                int64_t* total) const;

  // The loaded tables, in LabelledVocabularies() order.
  const std::vector<Table>& tables() const { return tables_; }
  // The table of `vocabulary` (exact name), or nullptr.
  const Table* table(absl::string_view vocabulary) const;
  // Every nomenclature file known, requested or not.
  const std::vector<SourceReport>& sources() const { return sources_; }

 private:
  Labels() = default;

  std::vector<Table> tables_;
  std::vector<SourceReport> sources_;
};

}  // namespace passerelle::vocab

#endif  // PASSERELLE_VOCAB_LABELS_H_
