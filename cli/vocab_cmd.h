// `passerelle vocab …`: code labels in French and English from the public
// nomenclatures, and a word search over them (docs/labels.md).
#ifndef PASSERELLE_CLI_VOCAB_CMD_H_
#define PASSERELLE_CLI_VOCAB_CMD_H_

#include <ostream>
#include <string>
#include <vector>

namespace passerelle::cli {

// `args` exclude "passerelle vocab". Prints to stdout/stderr and returns the
// exit code: 0 something found, 1 nothing found or a file could not be read,
// 2 a usage error.
//
//   search [--vocabulary V,...] [--lang fr|en] [--limit N] [--format F] TEXT
//   show [--limit N] [--format F] VOCAB:CODE[*]...
//   sources [--format F]
//   index --index DIR
//
// Every command takes --nomenclatures DIR; without it the directory comes
// from the environment variable PASSERELLE_NOMENCLATURES; --index DIR (or
// PASSERELLE_VOCAB_INDEX) reads the index `index` wrote instead.
int RunVocabCommand(const std::vector<std::string>& args);

// Same, with the streams injected (for tests).
int RunVocabCommand(const std::vector<std::string>& args, std::ostream& out,
                    std::ostream& err);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_VOCAB_CMD_H_
