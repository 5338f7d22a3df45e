// One interface over the site formats a node can load ("omop", "synthea",
// "snds"), a registry by format name, and the helpers the loaders share:
// rejected-row accounting with a limit, and CSV tables read by column name
// with the field separator taken from the header line.
//
// A loader only fills a SnapshotBuilder. The caller builds and commits the
// snapshot (NodeStore::Commit) when Load returned OK; on any error the
// builder is discarded, so a failed load never reaches the store and the
// previous snapshot keeps serving.
#ifndef PASSERELLE_NODE_LOADER_H_
#define PASSERELLE_NODE_LOADER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "node/omop_loader.h"  // LoadOptions, LoadReport, RejectedRow.
#include "node/snapshot.h"

namespace passerelle::csv {
class CsvReader;
}

namespace passerelle::node {

// A site format. Implementations hold no state: one instance serves any
// number of concurrent loads (each with its own builder and report).
class Loader {
 public:
  virtual ~Loader() = default;
  // The format name used by `passerelle node load --format`.
  virtual absl::string_view name() const = 0;
  // One line for usage text.
  virtual absl::string_view description() const = 0;
  // Reads `dir` into `builder` and fills `report`. Rejected rows are counted
  // (with file, line and reason); more than options.max_rejected of them, a
  // missing required table or column, or an unreadable file fail the load.
  virtual absl::Status Load(const std::string& dir, const LoadOptions& options,
                            SnapshotBuilder* builder,
                            LoadReport* report) const = 0;
};

// Every registered loader, in a fixed order (omop, synthea, snds).
const std::vector<const Loader*>& Loaders();
// The loader of `format` (exact, lower case), or nullptr.
const Loader* FindLoader(absl::string_view format);
// Like FindLoader, but an unknown format is an InvalidArgument error that
// lists the known ones.
absl::StatusOr<const Loader*> GetLoader(absl::string_view format);
// "omop|synthea|snds".
std::string LoaderNamesJoined(absl::string_view separator);

// ---------------------------------------------------------------------------
// Helpers shared by the loaders.

// Counts rejected rows into a LoadReport (keeping the first samples) and
// fails once their number exceeds options.max_rejected. Not thread-safe.
class RejectCounter {
 public:
  static constexpr size_t kMaxSamples = 20;
  RejectCounter(const LoadOptions& options, LoadReport* report)
      : max_rejected_(options.max_rejected), report_(report) {}
  // OK while within the limit; InvalidArgument naming the limit and the
  // first rejected row once over it.
  absl::Status Reject(absl::string_view file, int64_t line, std::string reason);

 private:
  int64_t max_rejected_;
  LoadReport* report_;
};

// Applies LoadOptions::future_events to the event rows of one load and
// fills the report's future_events and future_samples. Not thread-safe.
class FutureEventCheck {
 public:
  static constexpr size_t kMaxSamples = 20;
  FutureEventCheck(const LoadOptions& options, LoadReport* report);
  // Whether the event row at file:line dated `day` is loaded: a row dated
  // after the load date is counted, and left out only under kReject.
  bool Keep(absl::string_view file, int64_t line, int32_t day);
  // At the end of a load: FAILED_PRECONDITION naming the count, the load
  // date, the first row and the choice to make when rows dated after the
  // load date were found under kUnset; OK otherwise.
  absl::Status Finish() const;
  int32_t load_day() const { return load_day_; }

 private:
  int32_t load_day_;
  FutureEvents mode_;
  LoadReport* report_;
};

// "YYYY-MM-DD" of a day number.
std::string DayText(int32_t day);

// A column a loader reads: the first of `names` present in the header
// (case-insensitive) is used. A missing required column fails Open with an
// error naming the file and the column.
struct ColumnSpec {
  std::vector<std::string> names;
  bool required = true;
};

// One CSV table read by column name. The separator is taken from the header
// line: the most frequent of ',', ';', '\t' and '|' outside quotes (',' when
// none), so comma exports and the ';' extracts of SNDS read alike. Not
// thread-safe.
class SourceTable {
 public:
  using RowFn = std::function<absl::Status(
      const std::vector<absl::string_view>& fields, int64_t line)>;

  static absl::StatusOr<SourceTable> Open(
      const std::string& path, const std::vector<ColumnSpec>& columns);
  SourceTable(SourceTable&&) noexcept;
  SourceTable& operator=(SourceTable&&) noexcept;
  ~SourceTable();

  // Whether column `i` of the spec was found in the header.
  bool has(size_t i) const { return indexes_[i] >= 0; }
  // The header name used for column `i` ("" when absent).
  const std::string& column(size_t i) const { return names_[i]; }
  const std::string& path() const { return path_; }
  char delimiter() const { return delimiter_; }

  // Calls `row` for each record with the spec's columns in order (absent
  // optional columns read as empty). A malformed record (wrong field count,
  // broken quoting) is rejected through `rejects`; an error from `row` or
  // from `rejects` stops the read and is returned.
  absl::Status ForEach(const RowFn& row, RejectCounter* rejects);

 private:
  SourceTable(std::string path, char delimiter,
              std::unique_ptr<csv::CsvReader> reader, std::vector<int> indexes,
              std::vector<std::string> names);

  std::string path_;
  char delimiter_;
  std::unique_ptr<csv::CsvReader> reader_;
  std::vector<int> indexes_;
  std::vector<std::string> names_;
};

// The separator of the CSV file at `path`, from its first line (see
// SourceTable). NOT_FOUND when the file cannot be read.
absl::StatusOr<char> SniffDelimiter(const std::string& path);

// The file `name`.csv in `dir` in any letter case, "" when there is none;
// INVALID_ARGUMENT when several files match (a guess would be wrong).
absl::StatusOr<std::string> FindOptionalTable(const std::string& dir,
                                              absl::string_view name);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_LOADER_H_
