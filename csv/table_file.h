// Finding a table's file in a data directory regardless of file-name case.
#ifndef PASSERELLE_CSV_TABLE_FILE_H_
#define PASSERELLE_CSV_TABLE_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::csv {

// Returns the path of the file in `dir` named `table` + `extension`, compared
// ignoring ASCII case: FindTableFile(dir, "person") finds person.csv,
// PERSON.csv or PERSON.CSV. If `table` already ends with `extension` (any
// case) it is not added twice. Errors: NotFound if `dir` has no such file (or
// `dir` is not a readable directory), InvalidArgument if several files match
// (e.g. both person.csv and PERSON.csv), since picking one would be a guess.
absl::StatusOr<std::string> FindTableFile(const std::string& dir,
                                          absl::string_view table,
                                          absl::string_view extension = ".csv");

}  // namespace passerelle::csv

#endif  // PASSERELLE_CSV_TABLE_FILE_H_
