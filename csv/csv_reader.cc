#include "csv/csv_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace passerelle::csv {
namespace {

absl::Status ErrnoStatus(int err, absl::string_view what,
                         absl::string_view path) {
  std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case EISDIR:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

int64_t CountNewlines(const char* begin, const char* end) {
  return std::count(begin, end, '\n');
}

}  // namespace

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::Open(
    const std::string& path, const CsvReaderOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
#ifdef POSIX_FADV_SEQUENTIAL
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  std::unique_ptr<CsvReader> reader(new CsvReader(path, options, fd));
  PASSERELLE_RETURN_IF_ERROR(reader->Init());
  return reader;
}

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::FromString(
    std::string data, std::string name, const CsvReaderOptions& options) {
  std::unique_ptr<CsvReader> reader(
      new CsvReader(std::move(name), options, /*fd=*/-1));
  reader->capacity_ = std::max<size_t>(data.size(), 1);
  reader->buffer_ = std::make_unique<char[]>(reader->capacity_);
  std::memcpy(reader->buffer_.get(), data.data(), data.size());
  reader->end_ = data.size();
  reader->eof_ = true;
  PASSERELLE_RETURN_IF_ERROR(reader->Init());
  return reader;
}

CsvReader::CsvReader(std::string path, const CsvReaderOptions& options, int fd)
    : path_(std::move(path)), options_(options), fd_(fd) {
  special_[static_cast<unsigned char>(options_.delimiter)] = true;
  special_[static_cast<unsigned char>('\n')] = true;
  special_[static_cast<unsigned char>('\r')] = true;
  fields_.reserve(32);
}

CsvReader::~CsvReader() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status CsvReader::Init() {
  if (options_.delimiter == options_.quote || options_.delimiter == '\n' ||
      options_.delimiter == '\r') {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": invalid CSV delimiter"));
  }
  if (fd_ >= 0) {
    capacity_ = std::max<size_t>(options_.block_size, 64);
    buffer_ = std::make_unique<char[]>(capacity_);
    while (end_ - begin_ < 3 && !eof_) PASSERELLE_RETURN_IF_ERROR(Fill());
  }
  if (end_ - begin_ >= 3 &&
      std::memcmp(buffer_.get() + begin_, "\xEF\xBB\xBF", 3) == 0) {
    begin_ += 3;
  }
  if (!options_.has_header) return absl::OkStatus();
  PASSERELLE_ASSIGN_OR_RETURN(const bool has_record, ReadRecord());
  if (!has_record) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":1: empty file, expected a header line"));
  }
  header_.reserve(fields_.size());
  for (absl::string_view name : fields_) {
    header_.emplace_back(absl::StripAsciiWhitespace(name));
  }
  fields_.clear();
  return absl::OkStatus();
}

absl::Status CsvReader::Fill() {
  if (eof_) return absl::OkStatus();
  // Keep the unparsed tail, moved to the front.
  const size_t tail = end_ - begin_;
  if (begin_ > 0 && tail > 0) {
    std::memmove(buffer_.get(), buffer_.get() + begin_, tail);
  }
  begin_ = 0;
  end_ = tail;
  // A record longer than a quarter of the buffer: grow, within bounds.
  if (capacity_ - end_ < capacity_ / 4) {
    if (end_ > options_.max_record_bytes) {
      // Where the oversized record ends is unknown, so reading cannot resume.
      broken_ = true;
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ":", line_, ": record longer than ",
                       options_.max_record_bytes, " bytes"));
    }
    const size_t new_capacity = capacity_ * 2;
    auto bigger = std::make_unique<char[]>(new_capacity);
    std::memcpy(bigger.get(), buffer_.get(), end_);
    buffer_ = std::move(bigger);
    capacity_ = new_capacity;
  }
  for (;;) {
    const ssize_t n = ::read(fd_, buffer_.get() + end_, capacity_ - end_);
    if (n < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      return ErrnoStatus(errno, "cannot read", path_);
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
    return absl::OkStatus();
  }
}

CsvReader::ParseResult CsvReader::ParseRecord() {
  const char* const base = buffer_.get();
  const char* p = base + begin_;
  const char* const e = base + end_;
  const char quote = options_.quote;
  const char delimiter = options_.delimiter;
  int64_t line = line_;

  if (options_.skip_empty_lines) {
    while (p < e && (*p == '\n' || *p == '\r')) {
      if (*p == '\r') {
        if (p + 1 == e && !eof_) break;
        if (p + 1 < e && p[1] == '\n') ++p;
      }
      ++p;
      ++line;
    }
    // Blank lines are consumed for good, even if the record needs more data.
    begin_ = static_cast<size_t>(p - base);
    line_ = line;
  }
  if (p == e) return eof_ ? ParseResult::kEndOfData : ParseResult::kNeedMore;

  fields_.clear();
  escaped_fields_.clear();
  const int64_t start_line = line;
  for (;;) {
    if (p < e && *p == quote) {
      const char* const field_start = p + 1;
      const char* q = field_start;
      bool escaped = false;
      for (;;) {
        const char* hit =
            static_cast<const char*>(std::memchr(q, quote, e - q));
        if (hit == nullptr) {
          if (!eof_) return ParseResult::kNeedMore;
          error_ = "unterminated quoted field (opened on this line)";
          error_line_ = start_line;
          skip_offset_ = end_ - begin_;
          return ParseResult::kError;
        }
        line += CountNewlines(q, hit);
        if (hit + 1 == e && !eof_) return ParseResult::kNeedMore;
        if (hit + 1 < e && hit[1] == quote) {
          escaped = true;
          q = hit + 2;
          continue;
        }
        if (escaped) escaped_fields_.push_back(fields_.size());
        fields_.emplace_back(field_start, hit - field_start);
        p = hit + 1;
        break;
      }
      if (p == e) break;  // End of data right after the closing quote.
      if (*p == delimiter) {
        ++p;
        continue;
      }
      if (*p == '\n' || *p == '\r') goto end_of_line;
      error_ = absl::StrCat("unexpected character '", std::string(1, *p),
                            "' after a closing quote");
      error_line_ = line;
      skip_offset_ = static_cast<size_t>(p - base) - begin_;
      return ParseResult::kError;
    } else {
      const char* const field_start = p;
      while (p < e && !special_[static_cast<unsigned char>(*p)]) ++p;
      if (p == e) {
        if (!eof_) return ParseResult::kNeedMore;
        fields_.emplace_back(field_start, p - field_start);
        break;
      }
      fields_.emplace_back(field_start, p - field_start);
      if (*p == delimiter) {
        ++p;
        continue;
      }
      goto end_of_line;
    }
  }
  // Falls through here only at the end of the data without a line break.
  begin_ = end_;
  line_ = line;
  record_line_ = start_line;
  return ParseResult::kRecord;

end_of_line:
  if (*p == '\r') {
    if (p + 1 == e && !eof_) return ParseResult::kNeedMore;
    if (p + 1 < e && p[1] == '\n') ++p;
  }
  ++p;
  begin_ = static_cast<size_t>(p - base);
  line_ = line + 1;
  record_line_ = start_line;
  return ParseResult::kRecord;
}

void CsvReader::FinishFields() {
  const char quote = options_.quote;
  char* const base = buffer_.get();
  for (size_t index : escaped_fields_) {
    absl::string_view& field = fields_[index];
    char* const start = base + (field.data() - base);
    char* const stop = start + field.size();
    char* out = start;
    for (char* in = start; in < stop; ++in) {
      *out++ = *in;
      if (*in == quote) ++in;  // The second quote of a doubled pair.
    }
    field = absl::string_view(start, out - start);
  }
}

absl::Status CsvReader::SkipLine() {
  size_t pos = begin_ + std::min(skip_offset_, end_ - begin_);
  for (;;) {
    const char* base = buffer_.get();
    const void* hit = std::memchr(base + pos, '\n', end_ - pos);
    if (hit != nullptr) {
      const char* nl = static_cast<const char*>(hit);
      line_ += CountNewlines(base + begin_, nl + 1);
      begin_ = static_cast<size_t>(nl + 1 - base);
      return absl::OkStatus();
    }
    line_ += CountNewlines(base + begin_, base + end_);
    begin_ = end_;
    if (eof_) return absl::OkStatus();
    PASSERELLE_RETURN_IF_ERROR(Fill());
    pos = begin_;
  }
}

absl::StatusOr<bool> CsvReader::ReadRecord() {
  if (broken_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ":", line_,
                     ": reading stopped after an earlier unrecoverable error"));
  }
  if (skip_after_error_) {
    skip_after_error_ = false;
    PASSERELLE_RETURN_IF_ERROR(SkipLine());
  }
  for (;;) {
    switch (ParseRecord()) {
      case ParseResult::kRecord:
        FinishFields();
        return true;
      case ParseResult::kEndOfData:
        fields_.clear();
        return false;
      case ParseResult::kNeedMore:
        // ParseRecord starts the record over after Fill, which moves the
        // buffer's contents (or reallocates it): drop the partial views now,
        // so that a failing Fill (oversized record, I/O error) never leaves
        // stale or dangling views in fields().
        fields_.clear();
        escaped_fields_.clear();
        PASSERELLE_RETURN_IF_ERROR(Fill());
        break;
      case ParseResult::kError:
        fields_.clear();
        record_line_ = error_line_;
        skip_after_error_ = true;
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ":", error_line_, ": ", error_));
    }
  }
}

absl::StatusOr<bool> CsvReader::Next() {
  PASSERELLE_ASSIGN_OR_RETURN(const bool has_record, ReadRecord());
  if (!has_record) return false;
  if (options_.has_header && options_.require_header_width &&
      fields_.size() != header_.size()) {
    const size_t found = fields_.size();
    fields_.clear();
    return ErrorAt(absl::StrCat("expected ", header_.size(),
                                " fields as in the header, found ", found));
  }
  ++records_read_;
  return true;
}

int CsvReader::ColumnIndex(absl::string_view name) const {
  name = absl::StripAsciiWhitespace(name);
  for (size_t i = 0; i < header_.size(); ++i) {
    if (absl::EqualsIgnoreCase(header_[i], name)) return static_cast<int>(i);
  }
  return -1;
}

absl::StatusOr<int> CsvReader::RequireColumn(absl::string_view name) const {
  const int index = ColumnIndex(name);
  if (index < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ":1: missing column \"", name, "\""));
  }
  return index;
}

absl::Status CsvReader::ErrorAt(absl::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat(path_, ":", record_line_, ": ", message));
}

}  // namespace passerelle::csv
