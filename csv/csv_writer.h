// A small buffered CSV writer with RFC 4180 quoting.
//
// Fields are appended one by one (Text, Int, Decimal, Double, Date, Empty)
// and a row is closed with EndRow(). Text fields are quoted only when they
// contain the delimiter, a quote, CR or LF; quotes inside are doubled. Output
// goes to a large internal buffer and is written with write(2) when it
// fills, so writing a row does not allocate.
#ifndef PASSERELLE_CSV_CSV_WRITER_H_
#define PASSERELLE_CSV_CSV_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace passerelle::csv {

struct CsvWriterOptions {
  char delimiter = ',';
  // Line ending: "\n" by default, "\r\n" if true.
  bool crlf = false;
  // Bytes buffered before a write(2).
  size_t buffer_size = size_t{1} << 20;
};

// Writes one CSV file.
//
// A CsvWriter is not thread-safe; use one writer per thread. Write errors are
// sticky: they are reported by status() and Close(), and later writes are
// dropped.
class CsvWriter {
 public:
  // Creates (or truncates) `path`.
  static absl::StatusOr<std::unique_ptr<CsvWriter>> Create(
      const std::string& path, const CsvWriterOptions& options = {});

  // Appends the output to `*out` (which must outlive the writer) on each
  // flush and on Close().
  static std::unique_ptr<CsvWriter> ToString(
      std::string* out, const CsvWriterOptions& options = {});

  // Flushes and closes, ignoring errors: call Close() to see them.
  ~CsvWriter();
  CsvWriter(const CsvWriter&) = delete;
  CsvWriter& operator=(const CsvWriter&) = delete;

  // A text field, quoted if needed.
  void Text(absl::string_view value);
  // A field known to need no quoting (caller's promise; not checked).
  void Raw(absl::string_view value);
  void Int(int64_t value);
  // `scaled / 10^decimals` printed exactly with `decimals` digits after the
  // point, e.g. Decimal(73, 1) -> "7.3", Decimal(-5, 2) -> "-0.05".
  void Decimal(int64_t scaled, int decimals);
  // Shortest representation that reads back to the same double.
  void Double(double value);
  // "YYYY-MM-DD".
  void Date(int year, int month, int day);
  // An empty field (NULL in OMOP CSV).
  void Empty();
  // Ends the current row.
  void EndRow();
  // A whole row of text fields.
  void Row(std::initializer_list<absl::string_view> fields);

  // Bytes accepted so far (including those still buffered).
  int64_t bytes_written() const {
    return flushed_ + static_cast<int64_t>(used_);
  }

  // Writes out the buffer.
  absl::Status Flush();
  // Flushes and closes the file. Idempotent.
  absl::Status Close();
  // The first write error, if any.
  const absl::Status& status() const { return status_; }

 private:
  CsvWriter(std::string path, int fd, std::string* out,
            const CsvWriterOptions& options);

  // Ensures `n` free bytes in the buffer, flushing or growing it.
  char* Reserve(size_t n);
  void Separator() {
    if (row_started_) buffer_[used_++] = options_.delimiter;
    row_started_ = true;
  }

  const std::string path_;
  int fd_;            // -1 when writing to a string or after Close().
  std::string* out_;  // Non-null when writing to a string.
  const CsvWriterOptions options_;
  std::unique_ptr<char[]> buffer_;
  size_t capacity_;
  size_t used_ = 0;
  int64_t flushed_ = 0;
  bool row_started_ = false;
  bool closed_ = false;
  bool needs_quote_[256] = {};
  absl::Status status_;
};

}  // namespace passerelle::csv

#endif  // PASSERELLE_CSV_CSV_WRITER_H_
