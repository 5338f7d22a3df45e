#include "node/table_reader.h"

#include "absl/strings/str_cat.h"
#include "csv/csv_reader.h"
#include "csv/table_file.h"

namespace passerelle::node {

TableReader::TableReader(std::string path,
                         std::unique_ptr<csv::CsvReader> reader,
                         std::vector<int> indexes)
    : path_(std::move(path)),
      reader_(std::move(reader)),
      indexes_(std::move(indexes)) {}
TableReader::TableReader(TableReader&&) noexcept = default;
TableReader::~TableReader() = default;

absl::StatusOr<TableReader> TableReader::Open(
    const std::string& path, const std::vector<std::string>& columns,
    const std::vector<bool>& required) {
  csv::CsvReaderOptions options;
  absl::StatusOr<std::unique_ptr<csv::CsvReader>> reader =
      csv::CsvReader::Open(path, options);
  if (!reader.ok()) return reader.status();
  std::vector<int> indexes;
  for (size_t i = 0; i < columns.size(); ++i) {
    const int index = (*reader)->ColumnIndex(columns[i]);
    if (index < 0 && required[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": required column \"", columns[i], "\" is missing"));
    }
    indexes.push_back(index);
  }
  return TableReader(path, *std::move(reader), std::move(indexes));
}

absl::Status TableReader::ForEach(const RowFn& row, const RejectFn& reject) {
  std::vector<absl::string_view> fields(indexes_.size());
  while (true) {
    absl::StatusOr<bool> next = reader_->Next();
    if (!next.ok()) {
      if (next.status().code() != absl::StatusCode::kInvalidArgument) {
        return next.status();
      }
      absl::Status st =
          reject(reader_->line(), std::string(next.status().message()));
      if (!st.ok()) return st;
      continue;
    }
    if (!*next) return absl::OkStatus();
    for (size_t i = 0; i < indexes_.size(); ++i) {
      fields[i] = indexes_[i] < 0
                      ? absl::string_view()
                      : absl::string_view(reader_->field(indexes_[i]));
    }
    absl::Status st = row(fields, reader_->line());
    if (!st.ok()) return st;
  }
}

absl::StatusOr<std::string> FindTable(const std::string& dir,
                                      absl::string_view name) {
  return csv::FindTableFile(dir, name);
}

}  // namespace passerelle::node
