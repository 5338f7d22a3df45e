// A fast streaming CSV reader (RFC 4180 plus the usual real-world variants).
//
// The reader pulls large blocks from the file and hands out each record as
// string_view fields pointing into its own buffer, so reading a row does not
// allocate. Supported: quoted fields, doubled quotes inside quotes, delimiters
// and line breaks inside quotes, LF / CRLF / CR line endings, a configurable
// delimiter (';' for SNDS extracts), and a UTF-8 byte-order mark at the start.
//
// Errors are absl::Status values whose message names "path:line", where line
// is the 1-based physical line on which the offending record starts.
#ifndef PASSERELLE_CSV_CSV_READER_H_
#define PASSERELLE_CSV_CSV_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace passerelle::csv {

struct CsvReaderOptions {
  // Field separator: ',' for OMOP CSV, ';' for SNDS, '\t' for Athena files.
  char delimiter = ',';
  // Quote character.
  char quote = '"';
  // Whether the first record is a header. If false, header() is empty and
  // ColumnIndex() always returns -1.
  bool has_header = true;
  // If true, a record whose field count differs from the header's is an
  // error (InvalidArgument naming file:line). Ignored without a header.
  bool require_header_width = true;
  // Lines that are completely empty are skipped (they still count for line
  // numbers).
  bool skip_empty_lines = true;
  // Bytes read from the file per read(2) call.
  size_t block_size = size_t{1} << 20;
  // A single record larger than this is an error rather than unbounded
  // memory growth.
  size_t max_record_bytes = size_t{64} << 20;
};

// Reads one CSV file record by record.
//
// A CsvReader is not thread-safe; use one reader per thread. Field views
// returned by field()/fields() stay valid only until the next call to Next().
class CsvReader {
 public:
  // Opens `path` and, if options.has_header, reads the header record.
  // NotFound if the file does not exist; InvalidArgument if the header is
  // malformed or the file is empty while a header is expected.
  static absl::StatusOr<std::unique_ptr<CsvReader>> Open(
      const std::string& path, const CsvReaderOptions& options = {});

  // Reads from an in-memory copy of `data`; `name` stands in for the path in
  // error messages.
  static absl::StatusOr<std::unique_ptr<CsvReader>> FromString(
      std::string data, std::string name, const CsvReaderOptions& options = {});

  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Header names as written (surrounding ASCII whitespace removed).
  const std::vector<std::string>& header() const { return header_; }

  // Index of the header column whose name equals `name` ignoring ASCII case
  // and surrounding whitespace, or -1 if there is none.
  int ColumnIndex(absl::string_view name) const;

  // Like ColumnIndex, but a missing column is an InvalidArgument error that
  // names the file and the column.
  absl::StatusOr<int> RequireColumn(absl::string_view name) const;

  // Advances to the next record. Returns true if a record was read, false at
  // the end of the file, or an InvalidArgument error naming file:line for a
  // malformed record (unterminated quote, text after a closing quote, wrong
  // field count, record too large) or an Internal error for an I/O failure.
  // After a malformed record the reader resumes at the next line, so a caller
  // may count rejected rows and keep going; after an error it cannot resume
  // from (a record over max_record_bytes, an I/O error) every later call
  // fails with FailedPrecondition, so such a loop always ends.
  absl::StatusOr<bool> Next();

  // The current record's fields (valid until the next call to Next()).
  absl::Span<const absl::string_view> fields() const { return fields_; }
  size_t num_fields() const { return fields_.size(); }
  // The i-th field, or an empty view if the record has fewer fields.
  absl::string_view field(size_t i) const {
    return i < fields_.size() ? fields_[i] : absl::string_view();
  }

  // 1-based physical line on which the current record starts (the header is
  // line 1 of a file without leading blank lines).
  int64_t line() const { return record_line_; }

  // Number of data records returned so far (the header is not counted).
  int64_t records_read() const { return records_read_; }

  // The path given to Open (or the name given to FromString).
  const std::string& path() const { return path_; }

  // InvalidArgument("path:line: message") for the current record, so callers
  // report their own semantic errors (a bad date, say) the same way.
  absl::Status ErrorAt(absl::string_view message) const;

 private:
  enum class ParseResult { kRecord, kNeedMore, kEndOfData, kError };

  CsvReader(std::string path, const CsvReaderOptions& options, int fd);

  absl::Status Init();
  // Reads more bytes after moving the unparsed tail to the buffer's start.
  absl::Status Fill();
  ParseResult ParseRecord();
  // Skips to just after the next line break (error recovery).
  absl::Status SkipLine();
  // Unescapes doubled quotes of the pending quoted fields in place.
  void FinishFields();
  absl::StatusOr<bool> ReadRecord();

  const std::string path_;
  const CsvReaderOptions options_;
  int fd_;  // -1 for in-memory data.
  bool eof_ = false;

  std::unique_ptr<char[]> buffer_;
  size_t capacity_ = 0;
  size_t begin_ = 0;  // First unparsed byte.
  size_t end_ = 0;    // One past the last valid byte.

  bool special_[256] = {};
  std::vector<absl::string_view> fields_;
  // Indexes into fields_ of quoted fields that contain doubled quotes.
  std::vector<size_t> escaped_fields_;

  std::vector<std::string> header_;
  int64_t line_ = 1;         // Physical line at begin_.
  int64_t record_line_ = 0;  // Line where the current record starts.
  int64_t records_read_ = 0;
  // Parse error detail, set when ParseRecord returns kError.
  std::string error_;
  int64_t error_line_ = 0;
  // Offset from begin_ of the offending byte; recovery resumes after the
  // first line break from there.
  size_t skip_offset_ = 0;
  bool skip_after_error_ = false;
  // Set after an error the reader cannot resume from (an oversized record,
  // an I/O error): every later Next() fails with FailedPrecondition.
  bool broken_ = false;
};

}  // namespace passerelle::csv

#endif  // PASSERELLE_CSV_CSV_READER_H_
