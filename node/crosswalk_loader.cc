#include "node/crosswalk_loader.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "csv/csv_reader.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

enum class Form { kPasserelle, kGemForward, kGemBackward, kDpd, kBdpm };

const char* FormName(Form f) {
  switch (f) {
    case Form::kPasserelle:
      return "passerelle";
    case Form::kGemForward:
    case Form::kGemBackward:
      return "gem";
    case Form::kDpd:
      return "dpd";
    case Form::kBdpm:
      return "bdpm";
  }
  return "passerelle";
}

std::string Lower(absl::string_view s) {
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(s));
}

bool HeaderStartsWith(const std::vector<std::string>& header,
                      const std::vector<absl::string_view>& names) {
  if (header.size() < names.size()) return false;
  for (size_t i = 0; i < names.size(); ++i) {
    if (Lower(header[i]) != names[i]) return false;
  }
  return true;
}

absl::StatusOr<Form> DetectForm(const csv::CsvReader& reader) {
  const std::vector<std::string>& h = reader.header();
  static const std::vector<absl::string_view> kPasserelle = {
      "source_vocabulary", "source_code", "target_vocabulary", "target_code",
      "relation"};
  static const std::vector<absl::string_view> kGemTail = {
      "flags",       "approximate", "no_map",
      "combination", "scenario",    "choice_list"};
  if (HeaderStartsWith(h, kPasserelle) &&
      (h.size() == 5 || (h.size() == 6 && Lower(h[5]) == "flags"))) {
    return Form::kPasserelle;
  }
  if (h.size() == 8) {
    std::vector<std::string> tail;
    for (size_t i = 2; i < 8; ++i) tail.push_back(Lower(h[i]));
    const bool gem = std::equal(tail.begin(), tail.end(), kGemTail.begin());
    if (gem && Lower(h[0]) == "icd9cm" && Lower(h[1]) == "icd10cm")
      return Form::kGemForward;
    if (gem && Lower(h[0]) == "icd10cm" && Lower(h[1]) == "icd9cm")
      return Form::kGemBackward;
  }
  if (HeaderStartsWith(h, {"din", "atc"}) && h.size() > 2) return Form::kDpd;
  if (HeaderStartsWith(h, {"cip13", "cip7", "cis", "atc"}) && h.size() > 4)
    return Form::kBdpm;
  return absl::InvalidArgumentError(absl::StrCat(
      reader.path(), ":1: unrecognised crosswalk header \"",
      absl::StrJoin(h, ","),
      "\": expected source_vocabulary,source_code,target_vocabulary,"
      "target_code,relation[,flags] (Passerelle form), a CMS GEM header "
      "(icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
      "choice_list or icd10cm,icd9cm,...), a Health Canada DPD header "
      "(din,atc,...) or a BDPM header (cip13,cip7,cis,atc,...)"));
}

// Reads a code field: normalised, and a trailing '*' taken off (prefix).
void ReadCode(absl::string_view vocab, absl::string_view field,
              std::string* code, bool* prefix) {
  absl::string_view f = absl::StripAsciiWhitespace(field);
  *prefix = absl::ConsumeSuffix(&f, "*");
  *code = query::NormalizeCode(vocab, f);
}

class TableReader {
 public:
  TableReader(const CrosswalkSpec& spec, InvalidCrosswalkRows mode,
              CrosswalkLoadReport* report)
      : spec_(spec), mode_(mode), report_(report) {}

  absl::StatusOr<CrosswalkTable> Read() {
    PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<csv::CsvReader> reader,
                                csv::CsvReader::Open(spec_.path));
    PASSERELLE_ASSIGN_OR_RETURN(Form form, DetectForm(*reader));
    table_.form = FormName(form);
    table_.name = spec_.name;
    if (table_.name.empty()) {
      table_.name = std::filesystem::path(spec_.path).filename().string();
      if (absl::EndsWithIgnoreCase(table_.name, ".csv"))
        table_.name.resize(table_.name.size() - 4);
    }
    while (true) {
      absl::StatusOr<bool> more = reader->Next();
      if (!more.ok()) {
        // A malformed record (wrong column count, broken quoting): the
        // message already names file:line.
        if (more.status().code() != absl::StatusCode::kInvalidArgument)
          return more.status();
        std::string msg(more.status().message());
        const std::string where =
            absl::StrCat(spec_.path, ":", reader->line(), ": ");
        if (absl::StartsWith(msg, where)) msg = msg.substr(where.size());
        Invalid(reader->line(), msg);
        continue;
      }
      if (!*more) break;
      line_ = reader->line();
      const auto f = reader->fields();
      switch (form) {
        case Form::kPasserelle:
          Passerelle(f);
          break;
        case Form::kGemForward:
          Gem(f, "icd9cm", "icd10cm");
          break;
        case Form::kGemBackward:
          Gem(f, "icd10cm", "icd9cm");
          break;
        case Form::kDpd:
          Drug(f, "din", f[0], f[1]);
          break;
        case Form::kBdpm:
          Drug(f, "cip13", f[0], f[3]);
          break;
      }
    }
    std::vector<std::pair<std::string, CrosswalkRow>> sorted;
    sorted.reserve(rows_.size());
    for (auto& [line, row] : rows_) sorted.emplace_back(line, std::move(row));
    // rows_ is keyed by the canonical line: already in order.
    table_.rows.reserve(sorted.size());
    for (auto& [line, row] : sorted) table_.rows.push_back(std::move(row));
    return std::move(table_);
  }

 private:
  void Invalid(int64_t line, std::string reason) {
    ++report_->invalid;
    if (mode_ == InvalidCrosswalkRows::kSkip) ++table_.skipped_rows;
    if (report_->invalid_samples.size() < CrosswalkLoadReport::kMaxSamples) {
      report_->invalid_samples.push_back({spec_.path, line, std::move(reason)});
    }
  }

  // Checks and keeps a row; `merge` for the converted forms (a repeated
  // mapping is merged and counted), else a repeated row is invalid.
  void Add(CrosswalkRow row, bool merge) {
    if (!spec_.source_vocabulary.empty()) {
      row.source_vocabulary = spec_.source_vocabulary;
      // Codes are normalised for the vocabulary they are read in.
      row.source_code =
          query::NormalizeCode(row.source_vocabulary, row.source_code);
    }
    absl::Status ok = CheckCrosswalkRow(row);
    if (!ok.ok()) {
      Invalid(line_, std::string(ok.message()));
      return;
    }
    std::string key = row.CanonicalLine();
    auto [it, inserted] = rows_.emplace(std::move(key), std::move(row));
    if (inserted) {
      first_line_[it->first] = line_;
      return;
    }
    if (merge) {
      ++table_.merged_rows;
      return;
    }
    Invalid(line_, absl::StrCat("duplicate of line ", first_line_[it->first]));
  }

  void Passerelle(absl::Span<const absl::string_view> f) {
    CrosswalkRow row;
    row.source_vocabulary = Lower(f[0]);
    row.target_vocabulary = Lower(f[2]);
    if (!query::IsKnownVocabulary(row.source_vocabulary)) {
      return Invalid(line_, absl::StrCat("unknown source vocabulary \"",
                                         row.source_vocabulary, "\""));
    }
    if (!query::IsKnownVocabulary(row.target_vocabulary)) {
      return Invalid(line_, absl::StrCat("unknown target vocabulary \"",
                                         row.target_vocabulary, "\""));
    }
    ReadCode(spec_.source_vocabulary.empty() ? row.source_vocabulary
                                             : spec_.source_vocabulary,
             f[1], &row.source_code, &row.source_prefix);
    bool target_prefix = false;
    ReadCode(row.target_vocabulary, f[3], &row.target_code, &target_prefix);
    if (target_prefix) {
      return Invalid(line_, absl::StrCat("target code \"", f[3],
                                         "\" is a prefix; a target is one "
                                         "code (write one row per target)"));
    }
    const std::string rel = Lower(f[4]);
    if (!ParseRelation(rel, &row.relation)) {
      return Invalid(line_, absl::StrCat("unknown relation \"", rel,
                                         "\" (equivalent, narrower, broader "
                                         "or approximate)"));
    }
    if (f.size() > 5) {
      std::vector<std::string> words;
      for (absl::string_view w : absl::StrSplit(f[5], ';')) {
        std::string word = Lower(w);
        if (word.empty()) continue;
        if (word == "combination") row.combination = true;
        words.push_back(std::move(word));
      }
      row.flags = absl::StrJoin(words, ";");
    }
    Add(std::move(row), /*merge=*/false);
  }

  void Gem(absl::Span<const absl::string_view> f, const char* source,
           const char* target) {
    auto bit = [&](size_t i, const char* what, bool* v) {
      const absl::string_view s = absl::StripAsciiWhitespace(f[i]);
      if (s != "0" && s != "1") {
        Invalid(line_, absl::StrCat(what, " \"", s, "\" is not 0 or 1"));
        return false;
      }
      *v = s == "1";
      return true;
    };
    bool approximate, no_map, combination;
    if (!bit(3, "approximate", &approximate) || !bit(4, "no_map", &no_map) ||
        !bit(5, "combination", &combination)) {
      return;
    }
    const absl::string_view target_field = absl::StripAsciiWhitespace(f[1]);
    if (no_map || target_field == "NoDx") {
      if (no_map != (target_field == "NoDx")) {
        return Invalid(line_, "no_map and the NoDx target disagree");
      }
      ++table_.no_map_rows;
      return;
    }
    CrosswalkRow row;
    row.source_vocabulary = source;
    row.target_vocabulary = target;
    bool prefix = false;
    ReadCode(spec_.source_vocabulary.empty() ? source : spec_.source_vocabulary,
             f[0], &row.source_code, &prefix);
    bool target_prefix = false;
    ReadCode(target, f[1], &row.target_code, &target_prefix);
    if (prefix || target_prefix) {
      return Invalid(line_, "a GEM code cannot end with '*'");
    }
    row.relation = approximate ? Relation::kApproximate : Relation::kEquivalent;
    if (combination) {
      const absl::string_view scenario = absl::StripAsciiWhitespace(f[6]);
      const absl::string_view choice = absl::StripAsciiWhitespace(f[7]);
      int s = 0, c = 0;
      if (!absl::SimpleAtoi(scenario, &s) || !absl::SimpleAtoi(choice, &c) ||
          s < 1 || c < 1 || s > 99 || c > 99) {
        return Invalid(line_, absl::StrCat("combination row with scenario \"",
                                           scenario, "\" and choice_list \"",
                                           choice, "\" (expected 1-99)"));
      }
      row.combination = true;
      row.flags = absl::StrCat("combination;scenario=", s, ";choice=", c);
    }
    Add(std::move(row), /*merge=*/true);
  }

  void Drug(absl::Span<const absl::string_view> f, const char* source,
            absl::string_view code, absl::string_view atc) {
    atc = absl::StripAsciiWhitespace(atc);
    if (atc.empty()) {
      ++table_.no_map_rows;
      return;
    }
    CrosswalkRow row;
    row.source_vocabulary = source;
    row.target_vocabulary = "atc";
    bool prefix = false, target_prefix = false;
    ReadCode(spec_.source_vocabulary.empty() ? source : spec_.source_vocabulary,
             code, &row.source_code, &prefix);
    ReadCode("atc", atc, &row.target_code, &target_prefix);
    if (prefix) return Invalid(line_, "a source code cannot end with '*'");
    if (target_prefix) {
      return Invalid(line_,
                     absl::StrCat("ATC \"", atc, "\" is not a valid atc code"));
    }
    row.relation = Relation::kNarrower;
    (void)f;
    Add(std::move(row), /*merge=*/true);
  }

  const CrosswalkSpec& spec_;
  const InvalidCrosswalkRows mode_;
  CrosswalkLoadReport* const report_;
  CrosswalkTable table_;
  int64_t line_ = 0;
  std::map<std::string, CrosswalkRow> rows_;
  absl::flat_hash_map<std::string, int64_t> first_line_;
};

}  // namespace

absl::StatusOr<CrosswalkSpec> ParseCrosswalkSpec(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ',');
  CrosswalkSpec spec;
  spec.path = std::string(parts[0]);
  if (spec.path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--crosswalk \"", text,
                     "\": expected PATH[,source=VOCAB][,name=NAME]"));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    absl::string_view p = parts[i];
    if (absl::ConsumePrefix(&p, "source=")) {
      spec.source_vocabulary = absl::AsciiStrToLower(p);
      if (!query::IsKnownVocabulary(spec.source_vocabulary)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--crosswalk \"", text, "\": unknown vocabulary \"", p, "\""));
      }
    } else if (absl::ConsumePrefix(&p, "name=")) {
      spec.name = std::string(p);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--crosswalk \"", text, "\": unknown option \"", p,
                       "\" (expected PATH[,source=VOCAB][,name=NAME])"));
    }
  }
  return spec;
}

absl::StatusOr<CrosswalkTable> ReadCrosswalkTable(const CrosswalkSpec& spec,
                                                  InvalidCrosswalkRows mode,
                                                  CrosswalkLoadReport* report) {
  TableReader reader(spec, mode, report);
  return reader.Read();
}

absl::StatusOr<std::shared_ptr<const CrosswalkSet>> LoadCrosswalks(
    const std::vector<std::string>& specs, InvalidCrosswalkRows mode,
    CrosswalkLoadReport* report) {
  std::vector<CrosswalkTable> tables;
  for (const std::string& text : specs) {
    PASSERELLE_ASSIGN_OR_RETURN(CrosswalkSpec spec, ParseCrosswalkSpec(text));
    PASSERELLE_ASSIGN_OR_RETURN(CrosswalkTable table,
                                ReadCrosswalkTable(spec, mode, report));
    tables.push_back(std::move(table));
  }
  if (report->invalid > 0 && mode == InvalidCrosswalkRows::kRefuse) {
    std::vector<std::string> lines;
    for (const RejectedRow& r : report->invalid_samples) {
      lines.push_back(absl::StrCat(r.file, ":", r.line, ": ", r.reason));
    }
    const int64_t more =
        report->invalid - static_cast<int64_t>(report->invalid_samples.size());
    return absl::InvalidArgumentError(absl::StrCat(
        report->invalid, " invalid crosswalk rows; nothing was loaded",
        " (--crosswalk-invalid skip loads the valid rows and lists these):\n",
        absl::StrJoin(lines, "\n"),
        more > 0 ? absl::StrCat("\n... and ", more, " more") : ""));
  }
  return CrosswalkSet::Make(std::move(tables));
}

}  // namespace passerelle::node
