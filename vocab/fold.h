// Folding label text for search: accents, case and punctuation removed, so
// "Diabète sucré", "DIABETE SUCRE" and "diabete-sucre" all fold to
// "diabete sucre". All functions are pure and safe to call from any thread.
#ifndef PASSERELLE_VOCAB_FOLD_H_
#define PASSERELLE_VOCAB_FOLD_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace passerelle::vocab {

// True when `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// Replaces the contents of `out` with the folded form of the UTF-8 `text`:
// ASCII letters lower-cased; Latin letters with diacritics (U+00C0-U+017F)
// replaced by their base letters (é -> e, Œ -> oe, ß -> ss); combining
// accents (U+0300-U+036F) dropped; µ -> u; every other ASCII or Latin-1
// character that is not a letter or a digit, general punctuation
// (U+2000-U+206F) and invalid UTF-8 bytes are word separators; other code
// points (Greek, say) are kept as they are. Words are separated by exactly
// one space, with no space at either end. One pass; `out` keeps its capacity
// so a loop reuses it.
void FoldInto(absl::string_view text, std::string* out);

// FoldInto into a new string.
std::string Fold(absl::string_view text);

// The words of Fold(text), in order.
std::vector<std::string> FoldWords(absl::string_view text);

}  // namespace passerelle::vocab

#endif  // PASSERELLE_VOCAB_FOLD_H_
