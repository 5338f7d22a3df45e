// A compact index of the labels: a RocksDB store that `passerelle vocab
// index` writes once from the nomenclature files, so that every later
// search or lookup reads pre-parsed labels instead of 34 MB of CSV
// (docs/labels.md gives the measured times).
//
// Layout (keys are ASCII):
//   m:format       "passerelle-vocab-index-1"
//   m:source_dir   the nomenclature directory it was built from
//   m:fingerprint  one line per source file: "file<TAB>size<TAB>mtime_ns",
//                  or "file<TAB>-" for a file that was absent
//   m:sources      one line per SourceReport (tab-separated)
//   t:<vocabulary>:<chunk, 6 digits>
//                  the vocabulary's labelled codes in code order, about
//                  256 KiB per chunk: per code three fields (code, French,
//                  English), each a 4-byte little-endian length and bytes.
#ifndef PASSERELLE_VOCAB_INDEX_H_
#define PASSERELLE_VOCAB_INDEX_H_

#include <string>

#include "absl/status/status.h"
#include "vocab/labels.h"

namespace passerelle::vocab {

// Writes `labels` (loaded from `nomenclature_dir` with every vocabulary)
// into a new index at `index_dir`. The index is built beside it
// (`<index_dir>.tmp-<pid>`), flushed, and exchanged with the old one in one
// renameat2(RENAME_EXCHANGE), so `index_dir` always holds a whole index, the
// old or the new, and a build that fails or is killed leaves the old one as
// it was (a killed build may leave its `.tmp-<pid>` directory behind).
// FailedPrecondition when `index_dir` exists and is not a vocabulary index
// (nothing there is touched); Unavailable for a RocksDB or file-system
// failure (including a file system without RENAME_EXCHANGE).
absl::Status BuildIndex(const Labels& labels,
                        const std::string& nomenclature_dir,
                        const std::string& index_dir);

}  // namespace passerelle::vocab

#endif  // PASSERELLE_VOCAB_INDEX_H_
