// The nomenclature files behind each labelled vocabulary and how each is
// read (columns, separator, quirks). Internal to the vocab library.
#ifndef PASSERELLE_VOCAB_SOURCES_H_
#define PASSERELLE_VOCAB_SOURCES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vocab/labels.h"

namespace passerelle::vocab {

// The files of `vocabulary` (a labelled vocabulary), described, with
// `present` set from the file system but nothing read.
std::vector<SourceReport> DescribeSources(absl::string_view vocabulary,
                                          const std::string& dir = "");

// Reads every file of `vocabulary` under `dir` that exists and returns its
// labelled codes sorted by code; one report per file is appended to
// *reports. Within a (vocabulary, language), the first file that labels a
// code wins (IR_CIM_V before MS_CIM_V, ATC level files in level order).
absl::StatusOr<std::vector<CodeLabels>> LoadVocabulary(
    const std::string& dir, absl::string_view vocabulary,
    std::vector<SourceReport>* reports);

// Every nomenclature file (relative path), each once, in a fixed order.
std::vector<std::string> AllSourceFiles();

// A label as the files write it, made presentable: line breaks and runs of
// white space become one space, the ends are trimmed, and a label wholly
// wrapped in a second level of CSV quoting (IR_CIM_V's `"Doigt ""à
// ressort"""`) is unwrapped.
std::string CleanLabel(absl::string_view raw);

// True when `key` (a LabelKey) has the shape of a `vocabulary` code: ATC
// levels 1-5 (A, A10, A10B, A10BA, A10BA02), CCAM four letters and three
// digits, DIN 8 digits, CIP13 13 digits, UCD 7 or 13 digits, otherwise
// query::IsValidCode.
bool HasCodeShape(absl::string_view vocabulary, absl::string_view key);

}  // namespace passerelle::vocab

#endif  // PASSERELLE_VOCAB_SOURCES_H_
