#include "vocab/search.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "query/vocabulary.h"
#include "vocab/fold.h"

namespace passerelle::vocab {
namespace {

// True when `word` occurs in the folded `text` at the start of a word, and
// when `whole`, as a whole word.
bool HasWord(absl::string_view text, absl::string_view word, bool whole) {
  size_t from = 0;
  while (true) {
    const size_t at = text.find(word, from);
    if (at == absl::string_view::npos) return false;
    const size_t end = at + word.size();
    if ((at == 0 || text[at - 1] == ' ') &&
        (!whole || end == text.size() || text[end] == ' ')) {
      return true;
    }
    from = at + 1;
  }
}

// How the folded label `text` matches the query's folded words (`phrase` is
// them joined by single spaces), or nullopt.
std::optional<MatchKind> MatchLabel(absl::string_view text,
                                    const std::vector<std::string>& words,
                                    absl::string_view phrase) {
  if (text == phrase) return MatchKind::kLabelEquals;
  if (absl::StartsWith(text, phrase)) return MatchKind::kLabelStarts;
  bool whole = true;
  for (const std::string& w : words) {
    if (HasWord(text, w, /*whole=*/true)) continue;
    if (!HasWord(text, w, /*whole=*/false)) return std::nullopt;
    whole = false;
  }
  return whole ? MatchKind::kAllWords : MatchKind::kWordPrefixes;
}

struct Candidate {
  MatchKind kind;
  Language language;
  size_t table;  // Index in Labels::tables(), which is the vocabulary order.
  const Labels::Entry* entry;
};

bool Better(const Candidate& a, const Candidate& b) {
  return std::make_tuple(a.kind, a.entry->code.size(), a.table,
                         absl::string_view(a.entry->code)) <
         std::make_tuple(b.kind, b.entry->code.size(), b.table,
                         absl::string_view(b.entry->code));
}

}  // namespace

absl::string_view MatchKindName(MatchKind kind) {
  switch (kind) {
    case MatchKind::kExactCode:
      return "code";
    case MatchKind::kCodePrefix:
      return "code-prefix";
    case MatchKind::kLabelEquals:
      return "label";
    case MatchKind::kLabelStarts:
      return "label-start";
    case MatchKind::kAllWords:
      return "words";
    case MatchKind::kWordPrefixes:
      return "word-prefixes";
  }
  return "?";
}

absl::Status ValidateSearch(absl::string_view query,
                            const SearchOptions& options) {
  if (options.limit < 1 || options.limit > kMaxSearchLimit) {
    return absl::InvalidArgumentError(
        absl::StrCat("the limit must be between 1 and ", kMaxSearchLimit));
  }
  if (query.size() > kMaxSearchBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the search text is longer than ", kMaxSearchBytes, " bytes"));
  }
  for (const std::string& v : options.vocabularies) {
    if (!query::IsKnownVocabulary(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", v, "\" is not a known vocabulary"));
    }
  }
  const std::vector<std::string> words = FoldWords(query);
  if (words.empty()) {
    return absl::InvalidArgumentError(
        "the search text has no word (letters or digits)");
  }
  if (words.size() > kMaxSearchWords) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the search text has more than ", kMaxSearchWords, " words"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SearchResult> Search(const Labels& labels,
                                    absl::string_view query,
                                    const SearchOptions& options) {
  PASSERELLE_RETURN_IF_ERROR(ValidateSearch(query, options));
  const std::vector<std::string> words = FoldWords(query);
  const std::string phrase = absl::StrJoin(words, " ");
  // The query read as a code: one token (dots allowed, `E11.9`).
  const absl::string_view raw = absl::StripAsciiWhitespace(query);
  const bool code_like =
      raw.find_first_of(" \t\r\n") == absl::string_view::npos;

  std::vector<Candidate> matches;
  const std::vector<Labels::Table>& tables = labels.tables();
  for (size_t t = 0; t < tables.size(); ++t) {
    const Labels::Table& table = tables[t];
    if (!options.vocabularies.empty() &&
        std::none_of(options.vocabularies.begin(), options.vocabularies.end(),
                     [&](const std::string& v) {
                       return query::VocabularyMatches(v, table.vocabulary);
                     })) {
      continue;
    }
    const std::string code_key =
        code_like ? LabelKey(table.vocabulary, raw) : std::string();
    for (const Labels::Entry& entry : table.entries) {
      std::optional<Candidate> best;
      if (!code_key.empty()) {
        if (entry.code == code_key) {
          best = Candidate{MatchKind::kExactCode, Language::kFrench, t, &entry};
        } else if (code_key.size() >= 2 &&
                   absl::StartsWith(entry.code, code_key)) {
          best =
              Candidate{MatchKind::kCodePrefix, Language::kFrench, t, &entry};
        }
        if (best) {
          // Shown in the requested language, else the first one it has.
          best->language =
              entry.label[0].empty() ? Language::kEnglish : Language::kFrench;
          if (options.language &&
              !entry.label[static_cast<int>(*options.language)].empty()) {
            best->language = *options.language;
          }
          matches.push_back(*best);
          continue;
        }
      }
      for (Language l : kLanguages) {
        if (options.language && *options.language != l) continue;
        const absl::string_view folded = entry.folded[static_cast<int>(l)];
        if (folded.empty()) continue;
        std::optional<MatchKind> kind = MatchLabel(folded, words, phrase);
        if (kind && (!best || *kind < best->kind)) {
          best = Candidate{*kind, l, t, &entry};
        }
      }
      if (best) matches.push_back(*best);
    }
  }
  SearchResult result;
  result.total = static_cast<int64_t>(matches.size());
  const size_t keep =
      std::min(matches.size(), static_cast<size_t>(options.limit));
  std::partial_sort(matches.begin(), matches.begin() + keep, matches.end(),
                    Better);
  for (size_t i = 0; i < keep; ++i) {
    SearchHit hit;
    hit.vocabulary = tables[matches[i].table].vocabulary;
    hit.kind = matches[i].kind;
    hit.language = matches[i].language;
    hit.labels = tables[matches[i].table].Get(static_cast<size_t>(
        matches[i].entry - tables[matches[i].table].entries.data()));
    result.hits.push_back(std::move(hit));
  }
  return result;
}

}  // namespace passerelle::vocab
