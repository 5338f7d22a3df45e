// Word search over code labels in French and English.
//
// The query and every label are folded (vocab/fold.h): `diabète`, `diabete`
// and `DIABETE` are the same word. A code matches when every query word is
// the start of a word of one of its labels (all in the same language), or
// when the query is the code itself or the start of it. Results are ranked:
// exact code, code prefix, label equal to the query, label starting with the
// query's words, every word whole, every word a prefix; within a rank,
// shorter codes (general categories) first, then the vocabulary order of
// LabelledVocabularies(), then the code.
#ifndef PASSERELLE_VOCAB_SEARCH_H_
#define PASSERELLE_VOCAB_SEARCH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vocab/labels.h"

namespace passerelle::vocab {

inline constexpr int kDefaultSearchLimit = 20;
inline constexpr int kMaxSearchLimit = 10000;
// Longest query text accepted, and most words in it.
inline constexpr size_t kMaxSearchBytes = 1024;
inline constexpr size_t kMaxSearchWords = 32;

enum class MatchKind {
  kExactCode = 0,
  kCodePrefix = 1,
  kLabelEquals = 2,
  kLabelStarts = 3,
  kAllWords = 4,
  kWordPrefixes = 5,
};

// "code", "code-prefix", "label", "label-start", "words", "word-prefixes".
absl::string_view MatchKindName(MatchKind kind);

struct SearchOptions {
  // Query vocabularies to search (a family name searches its members);
  // empty searches every loaded vocabulary.
  std::vector<std::string> vocabularies;
  // Only labels in this language (a code match ignores it).
  std::optional<Language> language;
  int limit = kDefaultSearchLimit;
};

struct SearchHit {
  std::string vocabulary;  // The labelled vocabulary (cim10, not icd10).
  MatchKind kind = MatchKind::kWordPrefixes;
  // The language of the label that matched (for a code match, the first
  // language the code has a label in).
  Language language = Language::kFrench;
  CodeLabels labels;  // Both languages where the code has them.
};

struct SearchResult {
  std::vector<SearchHit> hits;  // At most options.limit, best first.
  int64_t total = 0;            // Every code that matched.
};

// Searches the loaded labels. InvalidArgument for a query with no word
// (after folding) or over kMaxSearchBytes / kMaxSearchWords, a limit
// outside [1, kMaxSearchLimit], or an unknown vocabulary.
absl::StatusOr<SearchResult> Search(const Labels& labels,
                                    absl::string_view query,
                                    const SearchOptions& options = {});

// The checks Search makes on its arguments, for a caller that wants to
// refuse a bad query before loading any file.
absl::Status ValidateSearch(absl::string_view query,
                            const SearchOptions& options);

}  // namespace passerelle::vocab

#endif  // PASSERELLE_VOCAB_SEARCH_H_
