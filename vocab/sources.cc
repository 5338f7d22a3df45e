#include "vocab/sources.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "csv/csv_reader.h"
#include "query/vocabulary.h"
#include "vocab/fold.h"

namespace passerelle::vocab {
namespace {

// What a file does when one code appears on several rows.
enum class Duplicates {
  kError,         // The same label again is ignored; another is an error.
  kJoin,          // Distinct labels joined with " / " (DPD brand names).
  kMostFrequent,  // The label most rows give (DPD ATC labels, which vary in
                  // case and spacing from product to product).
};

struct FileSpec {
  absl::string_view vocabulary;
  Language language;
  absl::string_view file;  // Relative to the nomenclature directory.
  char delimiter;
  absl::string_view code_column;
  // Joined with " — " when there are two (denomination — presentation).
  absl::string_view label_columns[2];
  // A blank code means "no code here" (a DPD product with no ATC) rather
  // than a malformed row.
  bool blank_code_ok;
  // Text after white space in the code field is a note kept at the end of
  // the label (IR_CCAM_V63 writes `"JANH798\n[A]"`).
  bool code_note;
  Duplicates duplicates;
  absl::string_view description;
};

#define SNDS(f) "snds/nomenclatures/" f
#define XWALK(f) "crosswalks/" f

const FileSpec kFiles[] = {
    {"cim10",
     Language::kFrench,
     SNDS("IR_CIM_V.csv"),
     ';',
     "CIM_COD",
     {"CIM_LIB", ""},
     false,
     false,
     Duplicates::kError,
     "CIM-10 labels (SNDS IR_CIM_V)"},
    {"cim10",
     Language::kFrench,
     SNDS("MS_CIM_V.csv"),
     ';',
     "CIM_COD",
     {"CIM_LIL", ""},
     false,
     false,
     Duplicates::kError,
     "CIM-10 labels of the PMSI (SNDS MS_CIM_V), for codes IR_CIM_V lacks"},
    {"icd10cm",
     Language::kEnglish,
     XWALK("cms_icd10cm_2018_descriptions.csv"),
     ',',
     "icd10cm",
     {"long_description", ""},
     false,
     false,
     Duplicates::kError,
     "ICD-10-CM FY2018 long titles (CMS)"},
    {"icd9cm",
     Language::kEnglish,
     XWALK("cms_icd9cm_v32_dx_descriptions.csv"),
     ',',
     "icd9cm",
     {"long_description", ""},
     false,
     false,
     Duplicates::kError,
     "ICD-9-CM v32 long diagnosis titles (CMS)"},
    {"atc",
     Language::kFrench,
     SNDS("openmedic_ATC1.csv"),
     ';',
     "ATC1",
     {"Libellé ATC1", ""},
     false,
     false,
     Duplicates::kError,
     "ATC level 1, French (OpenMedic)"},
    {"atc",
     Language::kFrench,
     SNDS("openmedic_ATC2.csv"),
     ';',
     "ATC2",
     {"Libellé ATC2", ""},
     false,
     false,
     Duplicates::kError,
     "ATC level 2, French (OpenMedic)"},
    {"atc",
     Language::kFrench,
     SNDS("openmedic_ATC3.csv"),
     ';',
     "ATC3",
     {"Libellé ATC3", ""},
     false,
     false,
     Duplicates::kError,
     "ATC level 3, French (OpenMedic)"},
    {"atc",
     Language::kFrench,
     SNDS("openmedic_ATC4.csv"),
     ';',
     "ATC4",
     {"Libellé ATC4", ""},
     false,
     false,
     Duplicates::kError,
     "ATC level 4, French (OpenMedic)"},
    {"atc",
     Language::kFrench,
     SNDS("openmedic_ATC5.csv"),
     ';',
     "ATC5",
     {"Libellé ATC5", ""},
     false,
     false,
     Duplicates::kError,
     "ATC level 5, French (OpenMedic)"},
    {"atc",
     Language::kEnglish,
     XWALK("hc_dpd_din_to_atc.csv"),
     ',',
     "atc",
     {"atc_label", ""},
     true,
     false,
     Duplicates::kMostFrequent,
     "ATC English labels (Health Canada DPD, atc_label)"},
    {"ccam",
     Language::kFrench,
     SNDS("IR_CCAM_V63.csv"),
     ';',
     "CAM_PRS_IDE_COD",
     {"CAM_PRS_IDE_LIB", ""},
     false,
     true,
     Duplicates::kError,
     "CCAM v63 procedure labels (SNDS IR_CCAM_V63)"},
    {"cip13",
     Language::kFrench,
     XWALK("fr_bdpm_cip13_to_atc.csv"),
     ',',
     "cip13",
     {"denomination", "presentation_label"},
     false,
     false,
     Duplicates::kError,
     "CIP13 presentations (BDPM denomination and "
     "presentation)"},
    {"ucd",
     Language::kFrench,
     SNDS("NU_UCD_R.csv"),
     ';',
     "UCD_UCD_COD",
     {"UCD_DSN_LIB", "UCD_CND_LIB"},
     false,
     false,
     Duplicates::kError,
     "UCD units (SNDS NU_UCD_R designation and packaging)"},
    {"din",
     Language::kEnglish,
     XWALK("hc_dpd_din_to_atc.csv"),
     ',',
     "din",
     {"brand_name", ""},
     false,
     false,
     Duplicates::kJoin,
     "DIN product brand names (Health Canada DPD)"},
};

#undef SNDS
#undef XWALK

constexpr size_t kMaxInvalidExamples = 5;

bool AllDigits(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return c >= '0' && c <= '9'; });
}
bool AllUpper(absl::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; });
}

SourceReport Describe(const FileSpec& spec, const std::string& dir) {
  SourceReport r;
  r.vocabulary = std::string(spec.vocabulary);
  r.language = spec.language;
  r.file = std::string(spec.file);
  r.description = std::string(spec.description);
  if (!dir.empty()) {
    std::error_code ec;
    r.present = std::filesystem::is_regular_file(
        std::filesystem::path(dir) / std::string(spec.file), ec);
  }
  return r;
}

// One labelled row of one file.
struct Row {
  std::string key;
  std::string label;
  int64_t line;
};

// Reads one file's labelled rows (in file order) into *rows; `report` gets
// the counts.
absl::Status ReadFile(const std::string& path, const FileSpec& spec,
                      SourceReport* report, std::vector<Row>* rows) {
  csv::CsvReaderOptions options;
  options.delimiter = spec.delimiter;
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<csv::CsvReader> reader,
                              csv::CsvReader::Open(path, options));
  PASSERELLE_ASSIGN_OR_RETURN(const int code_col,
                              reader->RequireColumn(spec.code_column));
  std::vector<int> label_cols;
  for (absl::string_view name : spec.label_columns) {
    if (name.empty()) continue;
    PASSERELLE_ASSIGN_OR_RETURN(const int col, reader->RequireColumn(name));
    label_cols.push_back(col);
  }
  while (true) {
    PASSERELLE_ASSIGN_OR_RETURN(const bool more, reader->Next());
    if (!more) break;
    ++report->rows;
    // The columns used must be UTF-8 (a cp1252 export would otherwise give
    // labels no search can match).
    bool utf8 = IsValidUtf8(reader->field(code_col));
    for (int col : label_cols) utf8 = utf8 && IsValidUtf8(reader->field(col));
    if (!utf8) {
      return reader->ErrorAt(
          "text that is not UTF-8 (nomenclature files are read as UTF-8)");
    }
    absl::string_view code_text =
        absl::StripAsciiWhitespace(reader->field(code_col));
    std::string note;
    if (spec.code_note) {
      const size_t space = code_text.find_first_of(" \t\r\n");
      if (space != absl::string_view::npos) {
        note = CleanLabel(code_text.substr(space));
        code_text = code_text.substr(0, space);
      }
    }
    if (code_text.empty()) {
      if (spec.blank_code_ok) {
        ++report->blank;
        continue;
      }
      return reader->ErrorAt(
          absl::StrCat("blank code in column ", spec.code_column));
    }
    std::string key = LabelKey(spec.vocabulary, code_text);
    if (!HasCodeShape(spec.vocabulary, key)) {
      ++report->invalid;
      if (report->invalid_examples.size() < kMaxInvalidExamples) {
        report->invalid_examples.push_back(
            absl::StrCat(report->file, ":", reader->line(), ": ", code_text));
      }
      continue;
    }
    std::string label;
    for (int col : label_cols) {
      const std::string part = CleanLabel(reader->field(col));
      if (part.empty()) continue;
      if (!label.empty()) label += " — ";
      label += part;
    }
    if (!note.empty() && !label.empty()) absl::StrAppend(&label, " ", note);
    if (label.empty()) {
      ++report->blank;
      continue;
    }
    rows->push_back({std::move(key), std::move(label), reader->line()});
  }
  return absl::OkStatus();
}

// Turns one file's rows into one label per code, sorted by code, applying
// the file's rule for codes on several rows.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> OnePerCode(
    const std::string& path, const FileSpec& spec, std::vector<Row> rows) {
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.key < b.key; });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(rows.size());
  for (size_t i = 0; i < rows.size();) {
    size_t j = i + 1;
    while (j < rows.size() && rows[j].key == rows[i].key) ++j;
    // rows[i, j) share a code, in file order.
    std::string label = std::move(rows[i].label);
    switch (spec.duplicates) {
      case Duplicates::kError:
        for (size_t k = i + 1; k < j; ++k) {
          if (rows[k].label != label) {
            return absl::InvalidArgumentError(absl::StrCat(
                path, ":", rows[k].line, ": code ", rows[k].key,
                " already has another label (line ", rows[i].line, ")"));
          }
        }
        break;
      case Duplicates::kJoin: {
        std::vector<absl::string_view> parts = {label};
        std::string joined = label;
        for (size_t k = i + 1; k < j; ++k) {
          if (std::find(parts.begin(), parts.end(), rows[k].label) ==
              parts.end()) {
            parts.push_back(rows[k].label);
            absl::StrAppend(&joined, " / ", rows[k].label);
          }
        }
        label = std::move(joined);
        break;
      }
      case Duplicates::kMostFrequent: {
        // The label most rows give; on a tie, the first in the file.
        size_t best = i, best_count = 0;
        for (size_t k = i; k < j; ++k) {
          const std::string& text = k == i ? label : rows[k].label;
          size_t count = 0;
          for (size_t m = i; m < j; ++m) {
            if ((m == i ? label : rows[m].label) == text) ++count;
          }
          if (count > best_count) {
            best = k;
            best_count = count;
          }
          // Groups are small (a few dozen DPD products per ATC code at most).
          if (best_count * 2 > j - i) break;
        }
        if (best != i) label = rows[best].label;
        break;
      }
    }
    out.emplace_back(std::move(rows[i].key), std::move(label));
    i = j;
  }
  return out;
}

}  // namespace

std::string CleanLabel(absl::string_view raw) {
  absl::string_view s = absl::StripAsciiWhitespace(raw);
  std::string unquoted;
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') {
    // A second level of CSV quoting: unwrap it and undouble its quotes.
    absl::string_view inner = s.substr(1, s.size() - 2);
    for (size_t i = 0; i < inner.size(); ++i) {
      unquoted.push_back(inner[i]);
      if (inner[i] == '"' && i + 1 < inner.size() && inner[i + 1] == '"') ++i;
    }
    s = unquoted;
  }
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
        c == '\v') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

bool HasCodeShape(absl::string_view vocabulary, absl::string_view key) {
  if (vocabulary == "atc") {
    // A, A10, A10B, A10BA, A10BA02.
    const size_t n = key.size();
    if (n != 1 && n != 3 && n != 4 && n != 5 && n != 7) return false;
    if (!AllUpper(key.substr(0, 1))) return false;
    if (n >= 3 && !AllDigits(key.substr(1, 2))) return false;
    if (n >= 4 && !AllUpper(key.substr(3, 1))) return false;
    if (n >= 5 && !AllUpper(key.substr(4, 1))) return false;
    if (n == 7 && !AllDigits(key.substr(5, 2))) return false;
    return true;
  }
  if (vocabulary == "ccam") {
    return key.size() == 7 && AllUpper(key.substr(0, 4)) &&
           AllDigits(key.substr(4));
  }
  if (vocabulary == "din") return key.size() == 8 && AllDigits(key);
  if (vocabulary == "cip13") return key.size() == 13 && AllDigits(key);
  if (vocabulary == "ucd") {
    return (key.size() == 7 || key.size() == 13) && AllDigits(key);
  }
  return query::IsValidCode(vocabulary, key);
}

std::vector<std::string> AllSourceFiles() {
  std::vector<std::string> out;
  for (const FileSpec& spec : kFiles) {
    if (std::find(out.begin(), out.end(), spec.file) == out.end()) {
      out.push_back(std::string(spec.file));
    }
  }
  return out;
}

std::vector<SourceReport> DescribeSources(absl::string_view vocabulary,
                                          const std::string& dir) {
  std::vector<SourceReport> out;
  for (const FileSpec& spec : kFiles) {
    if (spec.vocabulary == vocabulary) out.push_back(Describe(spec, dir));
  }
  return out;
}

absl::StatusOr<std::vector<CodeLabels>> LoadVocabulary(
    const std::string& dir, absl::string_view vocabulary,
    std::vector<SourceReport>* reports) {
  std::vector<CodeLabels> codes;
  for (const FileSpec& spec : kFiles) {
    if (spec.vocabulary != vocabulary) continue;
    SourceReport report = Describe(spec, dir);
    if (report.present) {
      const std::string path =
          (std::filesystem::path(dir) / std::string(spec.file)).string();
      std::vector<Row> rows;
      PASSERELLE_RETURN_IF_ERROR(ReadFile(path, spec, &report, &rows));
      PASSERELLE_ASSIGN_OR_RETURN(auto file,
                                  OnePerCode(path, spec, std::move(rows)));
      // Merge the file's sorted codes into the sorted codes so far; a label
      // an earlier file gave in the same language stays.
      const int lang = static_cast<int>(spec.language);
      std::vector<CodeLabels> merged;
      merged.reserve(codes.size() + file.size());
      size_t a = 0, b = 0;
      while (a < codes.size() || b < file.size()) {
        if (b == file.size() ||
            (a < codes.size() && codes[a].code < file[b].first)) {
          merged.push_back(std::move(codes[a++]));
          continue;
        }
        if (a == codes.size() || file[b].first < codes[a].code) {
          merged.emplace_back();
          merged.back().code = std::move(file[b].first);
        } else {
          merged.push_back(std::move(codes[a++]));
        }
        CodeLabels& entry = merged.back();
        if (entry.label[lang].empty()) {
          entry.label[lang] = std::move(file[b].second);
          entry.source[lang] = std::string(vocabulary);
          ++report.labelled;
        }
        ++b;
      }
      codes = std::move(merged);
    }
    reports->push_back(std::move(report));
  }
  return codes;
}

}  // namespace passerelle::vocab
