// Reads the columns a loader needs from one CSV table, by header name.
#ifndef PASSERELLE_NODE_TABLE_READER_H_
#define PASSERELLE_NODE_TABLE_READER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::csv {
class CsvReader;
}

namespace passerelle::node {

// Not thread-safe.
class TableReader {
 public:
  using RowFn = std::function<absl::Status(
      const std::vector<absl::string_view>& fields, int64_t line)>;
  using RejectFn =
      std::function<absl::Status(int64_t line, std::string reason)>;

  // `columns` are looked up case-insensitively; a missing required column is
  // an error naming the file, a missing optional one reads as empty.
  static absl::StatusOr<TableReader> Open(
      const std::string& path, const std::vector<std::string>& columns,
      const std::vector<bool>& required);
  TableReader(TableReader&&) noexcept;
  ~TableReader();

  // Calls `row` for each record with the requested columns in order. A
  // malformed record goes to `reject` (which fails the load when it returns
  // an error); an error from `row` stops the read.
  absl::Status ForEach(const RowFn& row, const RejectFn& reject);

  const std::string& path() const { return path_; }

 private:
  TableReader(std::string path, std::unique_ptr<csv::CsvReader> reader,
              std::vector<int> indexes);

  std::string path_;
  std::unique_ptr<csv::CsvReader> reader_;
  std::vector<int> indexes_;
};

// The file `name`.csv in `dir`, any letter case (person.csv, PERSON.csv);
// NOT_FOUND when absent, INVALID_ARGUMENT when several files match.
absl::StatusOr<std::string> FindTable(const std::string& dir,
                                      absl::string_view name);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_TABLE_READER_H_
