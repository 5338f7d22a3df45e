#include "cli/vocab_cmd.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "query/vocabulary.h"
#include "vocab/index.h"
#include "vocab/labels.h"
#include "vocab/search.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    R"(usage: passerelle vocab search [--vocabulary V,...] [--lang fr|en] [--limit N]
                              [--format table|json] TEXT
       passerelle vocab show [--limit N] [--format table|json] VOCAB:CODE[*]...
       passerelle vocab sources [--format table|json]
       passerelle vocab index --index DIR

  Code labels in French and English from the public nomenclatures (CIM-10,
  ICD-10-CM, ICD-9-CM, ATC, CCAM, CIP13, UCD, DIN; docs/labels.md).

  search   codes whose label holds every word of TEXT (accents, case and
           punctuation ignored: diabète = diabete = DIABETE), or whose code
           is TEXT or starts with it; best first: the code itself, codes
           under it, a label equal to TEXT, a label starting with it, then
           the others; shorter (more general) codes first
  show     the labels of a code in both languages where they exist; with a
           trailing *, the codes under it (icd10 shows CIM-10 in French and
           ICD-10-CM in English)
  sources  the nomenclature files, what each gave, and the vocabularies
           with no open labels
  index    reads every nomenclature file once into a compact RocksDB index
           at DIR (replaced whole if it exists) that the other commands read
           instead of the files, much faster

  --nomenclatures DIR  a directory laid out like ../shared/data (crosswalks/
                       and snds/nomenclatures/); default: the environment
                       variable PASSERELLE_NOMENCLATURES
  --index DIR          read (or, for index, write) the index at DIR;
                       default: the environment variable
                       PASSERELLE_VOCAB_INDEX, which search, show and
                       sources prefer to PASSERELLE_NOMENCLATURES
  --vocabulary V,...   search only these vocabularies (icd10 = cim10 and
                       icd10cm, icd9 = icd9cm); repeatable
  --lang fr|en         search only the labels in this language
  --limit N            most results (search: 20, show: 50; at most 10000)
  --format table|json  output (table by default)

Exit status: 0 found, 1 nothing found or a file could not be read, 2 usage.
)";

constexpr int kDefaultShowLimit = 50;
constexpr char kEnvVariable[] = "PASSERELLE_NOMENCLATURES";
constexpr char kIndexVariable[] = "PASSERELLE_VOCAB_INDEX";

int Usage(std::ostream& err, const std::string& message) {
  err << "passerelle vocab: " << message << "\n\n" << kUsage;
  return 2;
}

int Fail(std::ostream& err, absl::string_view message) {
  err << "passerelle vocab: " << message << "\n";
  return 1;
}

struct Common {
  std::string dir;    // The nomenclature files, or
  std::string index;  // an index of them (read instead when set).
  bool json = false;
  int limit = 0;
};

// The flags every subcommand shares; returns an exit code when it fails or
// --help was asked.
std::optional<int> ParseCommon(const ParsedFlags& flags, int default_limit,
                               std::ostream& out, std::ostream& err,
                               Common* common) {
  if (flags.Has("help")) {
    out << kUsage;
    return 0;
  }
  const std::string format = flags.Get("format", "table");
  if (format != "table" && format != "json") {
    return Usage(err, absl::StrCat("--format must be table or json, got \"",
                                   format, "\""));
  }
  common->json = format == "json";
  absl::StatusOr<int64_t> limit = flags.GetInt("limit", default_limit);
  if (!limit.ok()) return Usage(err, std::string(limit.status().message()));
  if (*limit < 1 || *limit > vocab::kMaxSearchLimit) {
    return Usage(err, absl::StrCat("--limit must be between 1 and ",
                                   vocab::kMaxSearchLimit));
  }
  common->limit = static_cast<int>(*limit);
  // An explicit flag wins over the environment; an index over the files.
  auto env = [](const char* name) {
    const char* value = std::getenv(name);
    return std::string(value == nullptr ? "" : value);
  };
  if (flags.Has("index")) {
    common->index = flags.Get("index");
  } else if (flags.Has("nomenclatures")) {
    common->dir = flags.Get("nomenclatures");
  } else {
    common->index = env(kIndexVariable);
    if (common->index.empty()) common->dir = env(kEnvVariable);
  }
  if (common->dir.empty() && common->index.empty()) {
    return Usage(err,
                 "no nomenclature directory: pass --nomenclatures DIR or set "
                 "PASSERELLE_NOMENCLATURES (a directory laid out like "
                 "../shared/data, with crosswalks/ and snds/nomenclatures/), "
                 "or an index built by passerelle vocab index with --index "
                 "DIR or PASSERELLE_VOCAB_INDEX");
  }
  return std::nullopt;
}

// Loads the labels of `vocabularies` (all when empty); warns about requested
// files that are absent.
absl::StatusOr<std::unique_ptr<vocab::Labels>> LoadLabels(
    const Common& common, const std::vector<std::string>& vocabularies,
    std::ostream& err) {
  vocab::LoadOptions options;
  options.vocabularies = vocabularies;
  if (!common.index.empty()) {
    std::string stale;
    absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
        vocab::Labels::LoadIndex(common.index, options, &stale);
    if (labels.ok() && !stale.empty()) {
      err << "passerelle vocab: warning: " << common.index << ": " << stale
          << "\n";
    }
    return labels;
  }
  absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
      vocab::Labels::Load(common.dir, options);
  if (!labels.ok()) return labels;
  for (const vocab::SourceReport& s : (*labels)->sources()) {
    if (s.requested && !s.present) {
      err << "passerelle vocab: warning: " << common.dir << "/" << s.file
          << " is missing: no " << s.description << "\n";
    }
  }
  return labels;
}

std::string JsonOrNull(const std::string& s) {
  return s.empty() ? "null" : JsonQuote(s);
}

// `"fr":…,"fr_vocabulary":…,"en":…,"en_vocabulary":…`
std::string JsonLabels(const vocab::CodeLabels& l) {
  std::string out;
  for (vocab::Language lang : vocab::kLanguages) {
    const int i = static_cast<int>(lang);
    const absl::string_view code = vocab::LanguageCode(lang);
    absl::StrAppend(&out, i == 0 ? "" : ",", "\"", code,
                    "\":", JsonOrNull(l.label[i]), ",\"", code,
                    "_vocabulary\":", JsonOrNull(l.source[i]));
  }
  return out;
}

// Table lines of a code's labels: the first line starts with `head` padded
// to `width`, each further language is indented to the same column.
void AppendLabelLines(const vocab::CodeLabels& l, const std::string& head,
                      size_t width, std::optional<vocab::Language> first,
                      std::string* out) {
  std::vector<vocab::Language> order;
  if (first) order.push_back(*first);
  for (vocab::Language lang : vocab::kLanguages) {
    if (!first || lang != *first) order.push_back(lang);
  }
  bool printed = false;
  for (vocab::Language lang : order) {
    const std::string& text = l.text(lang);
    if (text.empty()) continue;
    const std::string lead = printed ? "" : head;
    absl::StrAppend(out, lead, std::string(width - lead.size(), ' '), "  ",
                    vocab::LanguageCode(lang), "  ", text, "\n");
    printed = true;
  }
}

std::vector<std::string> VocabularyList(const ParsedFlags& flags) {
  std::vector<std::string> out;
  for (const std::string& value : flags.GetAll("vocabulary")) {
    for (absl::string_view v : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      out.push_back(absl::AsciiStrToLower(absl::StripAsciiWhitespace(v)));
    }
  }
  return out;
}

int RunSearch(const std::vector<std::string>& args, std::ostream& out,
              std::ostream& err) {
  absl::StatusOr<ParsedFlags> flags = ParseFlags(
      args, {"nomenclatures", "index", "vocabulary", "lang", "limit", "format"},
      {"help"});
  if (!flags.ok()) return Usage(err, std::string(flags.status().message()));
  Common common;
  if (auto code =
          ParseCommon(*flags, vocab::kDefaultSearchLimit, out, err, &common)) {
    return *code;
  }
  if (flags->positional.empty()) return Usage(err, "search needs a text");
  const std::string text = absl::StrJoin(flags->positional, " ");
  vocab::SearchOptions options;
  options.limit = common.limit;
  if (flags->Has("lang")) {
    options.language = vocab::ParseLanguage(flags->Get("lang"));
    if (!options.language) {
      return Usage(err, absl::StrCat("--lang must be fr or en, got \"",
                                     flags->Get("lang"), "\""));
    }
  }
  // Vocabularies with no open labels are named, not silently searched.
  for (const std::string& v : VocabularyList(*flags)) {
    if (!query::IsKnownVocabulary(v)) {
      return Usage(err, absl::StrCat("--vocabulary: \"", v,
                                     "\" is not a known vocabulary"));
    }
    const std::string reason = vocab::UnlabelledReason(v);
    if (reason.empty()) {
      options.vocabularies.push_back(v);
    } else {
      err << "passerelle vocab: " << v << ": " << reason << "\n";
    }
  }
  if (absl::Status valid = vocab::ValidateSearch(text, options); !valid.ok()) {
    return Usage(err, std::string(valid.message()));
  }
  if (flags->Has("vocabulary") && options.vocabularies.empty()) {
    return Fail(err, "none of the --vocabulary names has labels to search");
  }
  absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
      LoadLabels(common, options.vocabularies, err);
  if (!labels.ok()) return Fail(err, labels.status().message());
  absl::StatusOr<vocab::SearchResult> result =
      vocab::Search(**labels, text, options);
  if (!result.ok()) return Usage(err, std::string(result.status().message()));

  std::string buffer;
  if (common.json) {
    absl::StrAppend(&buffer, "{\"query\":", JsonQuote(text),
                    ",\"total\":", result->total, ",\"hits\":[");
    for (size_t i = 0; i < result->hits.size(); ++i) {
      const vocab::SearchHit& h = result->hits[i];
      absl::StrAppend(
          &buffer, i ? "," : "", "{\"vocabulary\":", JsonQuote(h.vocabulary),
          ",\"code\":", JsonQuote(h.labels.code), ",\"match\":\"",
          vocab::MatchKindName(h.kind), "\",\"lang\":\"",
          vocab::LanguageCode(h.language), "\",", JsonLabels(h.labels), "}");
    }
    buffer += "]}\n";
  } else {
    size_t width = 4;
    std::vector<std::string> heads;
    for (const vocab::SearchHit& h : result->hits) {
      heads.push_back(absl::StrCat(h.vocabulary, ":", h.labels.code));
      width = std::max(width, heads.back().size());
    }
    for (size_t i = 0; i < result->hits.size(); ++i) {
      AppendLabelLines(result->hits[i].labels, heads[i], width,
                       result->hits[i].language, &buffer);
    }
    if (result->total == 0) {
      absl::StrAppend(&buffer, "no code matches \"", text, "\"\n");
    } else if (static_cast<size_t>(result->total) > result->hits.size()) {
      absl::StrAppend(&buffer, result->hits.size(), " of ", result->total,
                      " matches (--limit N for more)\n");
    } else {
      absl::StrAppend(&buffer, result->total,
                      result->total == 1 ? " match\n" : " matches\n");
    }
  }
  out << buffer;
  return result->total == 0 ? 1 : 0;
}

// The vocabularies labels come from for `vocabulary`, per language, e.g.
// "French: cim10; English: icd10cm".
std::string LabelSourcesLine(const vocab::Labels& labels,
                             absl::string_view vocabulary) {
  std::vector<std::string> parts;
  for (vocab::Language lang : vocab::kLanguages) {
    std::vector<std::string> names;
    for (const vocab::SourceReport& s : labels.sources()) {
      if (s.language == lang && s.present &&
          query::VocabularyMatches(vocabulary, s.vocabulary) &&
          std::find(names.begin(), names.end(), s.vocabulary) == names.end()) {
        names.push_back(s.vocabulary);
      }
    }
    parts.push_back(absl::StrCat(
        lang == vocab::Language::kFrench ? "French: " : "English: ",
        names.empty() ? "none" : absl::StrJoin(names, ", ")));
  }
  return absl::StrJoin(parts, "; ");
}

int RunShow(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(args, {"nomenclatures", "index", "limit", "format"}, {"help"});
  if (!flags.ok()) return Usage(err, std::string(flags.status().message()));
  Common common;
  if (auto code = ParseCommon(*flags, kDefaultShowLimit, out, err, &common)) {
    return *code;
  }
  if (flags->positional.empty()) return Usage(err, "show needs VOCAB:CODE");
  struct Wanted {
    std::string vocabulary, code;
    bool prefix;
  };
  std::vector<Wanted> wanted;
  std::vector<std::string> vocabularies;
  for (const std::string& arg : flags->positional) {
    const size_t colon = arg.find(':');
    if (colon == std::string::npos) {
      return Usage(err, absl::StrCat("\"", arg,
                                     "\" is not VOCAB:CODE (e.g. icd10:E11 "
                                     "or atc:A10BA*)"));
    }
    Wanted w;
    w.vocabulary = absl::AsciiStrToLower(arg.substr(0, colon));
    absl::string_view code =
        absl::StripAsciiWhitespace(absl::string_view(arg).substr(colon + 1));
    w.prefix = absl::ConsumeSuffix(&code, "*");
    w.code = query::NormalizeCode(w.vocabulary, code);
    if (!query::IsKnownVocabulary(w.vocabulary)) {
      return Usage(err, absl::StrCat("\"", w.vocabulary,
                                     "\" is not a known vocabulary"));
    }
    if (w.code.empty() && !w.prefix) {
      return Usage(err, absl::StrCat("\"", arg, "\" has no code"));
    }
    if (vocab::UnlabelledReason(w.vocabulary).empty()) {
      vocabularies.push_back(w.vocabulary);
    }
    wanted.push_back(std::move(w));
  }
  std::unique_ptr<vocab::Labels> labels;
  if (!vocabularies.empty()) {
    absl::StatusOr<std::unique_ptr<vocab::Labels>> loaded =
        LoadLabels(common, vocabularies, err);
    if (!loaded.ok()) return Fail(err, loaded.status().message());
    labels = std::move(*loaded);
  }
  std::string buffer;
  bool found_any = false;
  if (common.json) buffer += "[";
  for (size_t n = 0; n < wanted.size(); ++n) {
    const Wanted& w = wanted[n];
    const std::string asked =
        absl::StrCat(w.vocabulary, ":", w.code, w.prefix ? "*" : "");
    const std::string reason = vocab::UnlabelledReason(w.vocabulary);
    if (common.json && n > 0) buffer += ",";
    if (!reason.empty()) {
      if (common.json) {
        absl::StrAppend(&buffer, "{\"query\":", JsonQuote(asked),
                        ",\"labelled\":false,\"reason\":", JsonQuote(reason),
                        "}");
      } else {
        absl::StrAppend(&buffer, asked, ": no labels: ", reason, "\n");
      }
      continue;
    }
    std::vector<vocab::CodeLabels> codes;
    int64_t total = 0;
    int64_t under = 0;
    if (w.prefix) {
      codes = labels->Under(w.vocabulary, w.code,
                            static_cast<size_t>(common.limit), &total);
    } else {
      std::optional<vocab::CodeLabels> one = labels->Find(w.vocabulary, w.code);
      if (one) {
        codes.push_back(std::move(*one));
        total = 1;
      }
      labels->Under(w.vocabulary, w.code, 0, &under);
      if (one) --under;  // The code itself.
    }
    found_any = found_any || total > 0;
    const std::string sources = LabelSourcesLine(*labels, w.vocabulary);
    if (common.json) {
      absl::StrAppend(&buffer, "{\"query\":", JsonQuote(asked),
                      ",\"labelled\":true,\"label_sources\":",
                      JsonQuote(sources), ",\"total\":", total);
      if (!w.prefix) absl::StrAppend(&buffer, ",\"codes_under\":", under);
      buffer += ",\"codes\":[";
      for (size_t i = 0; i < codes.size(); ++i) {
        absl::StrAppend(&buffer, i ? "," : "",
                        "{\"code\":", JsonQuote(codes[i].code), ",",
                        JsonLabels(codes[i]), "}");
      }
      buffer += "]}";
      continue;
    }
    absl::StrAppend(&buffer, n > 0 ? "\n" : "", asked, "  (", sources, ")\n");
    size_t width = 4;
    for (const vocab::CodeLabels& c : codes) {
      width = std::max(width, c.code.size());
    }
    for (const vocab::CodeLabels& c : codes) {
      AppendLabelLines(c, c.code, width, std::nullopt, &buffer);
    }
    if (total == 0) {
      absl::StrAppend(
          &buffer, w.prefix ? "no labelled code starts with " : "no label for ",
          w.code, "\n");
    } else if (w.prefix && static_cast<size_t>(total) > codes.size()) {
      absl::StrAppend(&buffer, codes.size(), " of ", total,
                      " codes (--limit N for more)\n");
    } else if (w.prefix) {
      absl::StrAppend(&buffer, total, total == 1 ? " code\n" : " codes\n");
    }
    if (!w.prefix && under > 0) {
      absl::StrAppend(&buffer, under, under == 1 ? " code" : " codes",
                      " under it: passerelle vocab show ", w.vocabulary, ":",
                      w.code, "*\n");
    }
  }
  if (common.json) buffer += "]\n";
  out << buffer;
  return found_any ? 0 : 1;
}

int RunSources(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(args, {"nomenclatures", "index", "format"}, {"help"});
  if (!flags.ok()) return Usage(err, std::string(flags.status().message()));
  Common common;
  if (auto code = ParseCommon(*flags, 1, out, err, &common)) return *code;
  if (!flags->positional.empty()) {
    return Usage(err, absl::StrCat("unexpected argument \"",
                                   flags->positional[0], "\""));
  }
  absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
      LoadLabels(common, {}, err);
  if (!labels.ok()) return Fail(err, labels.status().message());
  std::vector<std::pair<std::string, std::string>> unlabelled;
  for (absl::string_view v : query::KnownVocabularies()) {
    const std::string reason = vocab::UnlabelledReason(v);
    if (!reason.empty()) unlabelled.emplace_back(std::string(v), reason);
  }
  std::string buffer;
  if (common.json) {
    buffer += "{\"files\":[";
    bool first = true;
    for (const vocab::SourceReport& s : (*labels)->sources()) {
      absl::StrAppend(
          &buffer, first ? "" : ",",
          "{\"vocabulary\":", JsonQuote(s.vocabulary), ",\"lang\":\"",
          vocab::LanguageCode(s.language), "\",\"file\":", JsonQuote(s.file),
          ",\"description\":", JsonQuote(s.description),
          ",\"present\":", s.present ? "true" : "false", ",\"rows\":", s.rows,
          ",\"labelled\":", s.labelled, ",\"blank\":", s.blank,
          ",\"invalid\":", s.invalid, ",\"invalid_examples\":[",
          absl::StrJoin(s.invalid_examples, ",",
                        [](std::string* o, const std::string& e) {
                          o->append(JsonQuote(e));
                        }),
          "]}");
      first = false;
    }
    buffer += "],\"unlabelled\":[";
    for (size_t i = 0; i < unlabelled.size(); ++i) {
      absl::StrAppend(&buffer, i ? "," : "",
                      "{\"vocabulary\":", JsonQuote(unlabelled[i].first),
                      ",\"reason\":", JsonQuote(unlabelled[i].second), "}");
    }
    buffer += "]}\n";
  } else {
    absl::StrAppend(&buffer,
                    common.index.empty() ? "nomenclatures: " : "index: ",
                    common.index.empty() ? common.dir : common.index, "\n");
    for (const vocab::SourceReport& s : (*labels)->sources()) {
      absl::StrAppend(&buffer, s.vocabulary, " ",
                      vocab::LanguageCode(s.language), "  ", s.file, ": ");
      if (!s.present) {
        absl::StrAppend(&buffer, "MISSING (", s.description, ")\n");
        continue;
      }
      absl::StrAppend(&buffer, s.labelled, " codes labelled from ", s.rows,
                      " rows");
      if (s.blank > 0) absl::StrAppend(&buffer, ", ", s.blank, " blank");
      if (s.invalid > 0) {
        absl::StrAppend(&buffer, ", ", s.invalid,
                        " not valid codes (not labelled), e.g. ",
                        absl::StrJoin(s.invalid_examples, "; "));
      }
      buffer += "\n";
    }
    buffer += "no open labels:\n";
    for (const auto& [v, reason] : unlabelled) {
      absl::StrAppend(&buffer, "  ", v, ": ", reason, "\n");
    }
  }
  out << buffer;
  return 0;
}

int RunIndex(const std::vector<std::string>& args, std::ostream& out,
             std::ostream& err) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(args, {"nomenclatures", "index"}, {"help"});
  if (!flags.ok()) return Usage(err, std::string(flags.status().message()));
  if (flags->Has("help")) {
    out << kUsage;
    return 0;
  }
  if (!flags->positional.empty()) {
    return Usage(err, absl::StrCat("unexpected argument \"",
                                   flags->positional[0], "\""));
  }
  auto pick = [&](const char* flag, const char* variable) {
    if (flags->Has(flag)) return flags->Get(flag);
    const char* value = std::getenv(variable);
    return std::string(value == nullptr ? "" : value);
  };
  Common common;
  common.dir = pick("nomenclatures", kEnvVariable);
  const std::string index = pick("index", kIndexVariable);
  if (common.dir.empty()) {
    return Usage(err,
                 "index needs the nomenclature directory: --nomenclatures DIR "
                 "or PASSERELLE_NOMENCLATURES");
  }
  if (index.empty()) {
    return Usage(err,
                 "index needs where to write: --index DIR or "
                 "PASSERELLE_VOCAB_INDEX");
  }
  absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
      LoadLabels(common, {}, err);
  if (!labels.ok()) return Fail(err, labels.status().message());
  absl::Status built = vocab::BuildIndex(**labels, common.dir, index);
  if (!built.ok()) return Fail(err, built.message());
  size_t codes = 0;
  for (const vocab::Labels::Table& t : (*labels)->tables()) {
    codes += t.entries.size();
  }
  out << "indexed " << codes << " labelled codes of "
      << (*labels)->tables().size() << " vocabularies from " << common.dir
      << " into " << index << "\n";
  return 0;
}

}  // namespace

int RunVocabCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err) {
  if (args.empty()) return Usage(err, "missing command");
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    out << kUsage;
    return 0;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "search") return RunSearch(rest, out, err);
  if (args[0] == "show") return RunShow(rest, out, err);
  if (args[0] == "sources") return RunSources(rest, out, err);
  if (args[0] == "index") return RunIndex(rest, out, err);
  return Usage(err, absl::StrCat("unknown command \"", args[0], "\""));
}

int RunVocabCommand(const std::vector<std::string>& args) {
  return RunVocabCommand(args, std::cout, std::cerr);
}

}  // namespace passerelle::cli
