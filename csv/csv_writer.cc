#include "csv/csv_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace passerelle::csv {

absl::StatusOr<std::unique_ptr<CsvWriter>> CsvWriter::Create(
    const std::string& path, const CsvWriterOptions& options) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    std::string message =
        absl::StrCat("cannot create ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(message);
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(message);
    }
    return absl::InternalError(message);
  }
  return std::unique_ptr<CsvWriter>(new CsvWriter(path, fd, nullptr, options));
}

std::unique_ptr<CsvWriter> CsvWriter::ToString(
    std::string* out, const CsvWriterOptions& options) {
  return std::unique_ptr<CsvWriter>(
      new CsvWriter("<string>", -1, out, options));
}

CsvWriter::CsvWriter(std::string path, int fd, std::string* out,
                     const CsvWriterOptions& options)
    : path_(std::move(path)),
      fd_(fd),
      out_(out),
      options_(options),
      capacity_(std::max<size_t>(options.buffer_size, 256)) {
  buffer_ = std::make_unique<char[]>(capacity_);
  needs_quote_[static_cast<unsigned char>(options_.delimiter)] = true;
  needs_quote_[static_cast<unsigned char>('"')] = true;
  needs_quote_[static_cast<unsigned char>('\n')] = true;
  needs_quote_[static_cast<unsigned char>('\r')] = true;
}

CsvWriter::~CsvWriter() { (void)Close(); }

char* CsvWriter::Reserve(size_t n) {
  if (capacity_ - used_ < n) {
    (void)Flush();
    if (capacity_ - used_ < n) {
      // A field larger than the whole buffer: grow to fit it.
      size_t new_capacity = capacity_;
      while (new_capacity - used_ < n) new_capacity *= 2;
      auto bigger = std::make_unique<char[]>(new_capacity);
      std::memcpy(bigger.get(), buffer_.get(), used_);
      buffer_ = std::move(bigger);
      capacity_ = new_capacity;
    }
  }
  return buffer_.get() + used_;
}

void CsvWriter::Text(absl::string_view value) {
  bool quote = false;
  size_t quotes = 0;
  for (char c : value) {
    if (needs_quote_[static_cast<unsigned char>(c)]) {
      quote = true;
      if (c == '"') ++quotes;
    }
  }
  if (!quote) {
    Raw(value);
    return;
  }
  Reserve(value.size() + quotes + 3);
  Separator();
  char* p = buffer_.get() + used_;
  *p++ = '"';
  for (char c : value) {
    *p++ = c;
    if (c == '"') *p++ = '"';
  }
  *p++ = '"';
  used_ = static_cast<size_t>(p - buffer_.get());
}

void CsvWriter::Raw(absl::string_view value) {
  Reserve(value.size() + 1);
  Separator();
  if (!value.empty())
    std::memcpy(buffer_.get() + used_, value.data(), value.size());
  used_ += value.size();
}

void CsvWriter::Int(int64_t value) {
  Reserve(21);
  Separator();
  char* p = buffer_.get() + used_;
  used_ =
      static_cast<size_t>(std::to_chars(p, p + 20, value).ptr - buffer_.get());
}

void CsvWriter::Decimal(int64_t scaled, int decimals) {
  if (decimals <= 0) {
    Int(scaled);
    return;
  }
  Reserve(48);
  Separator();
  char* p = buffer_.get() + used_;
  uint64_t magnitude = scaled < 0 ? 0 - static_cast<uint64_t>(scaled)
                                  : static_cast<uint64_t>(scaled);
  if (scaled < 0) *p++ = '-';
  uint64_t divisor = 1;
  for (int i = 0; i < decimals && i < 19; ++i) divisor *= 10;
  p = std::to_chars(p, p + 20, magnitude / divisor).ptr;
  *p++ = '.';
  uint64_t fraction = magnitude % divisor;
  for (int i = decimals - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + fraction % 10);
    fraction /= 10;
  }
  p += decimals;
  used_ = static_cast<size_t>(p - buffer_.get());
}

void CsvWriter::Double(double value) {
  Reserve(33);
  Separator();
  char* p = buffer_.get() + used_;
  used_ =
      static_cast<size_t>(std::to_chars(p, p + 32, value).ptr - buffer_.get());
}

void CsvWriter::Date(int year, int month, int day) {
  Reserve(12);
  Separator();
  char* p = buffer_.get() + used_;
  if (year < 0 || year > 9999) {
    p = std::to_chars(p, p + 6, year).ptr;
  } else {
    p[0] = static_cast<char>('0' + year / 1000);
    p[1] = static_cast<char>('0' + year / 100 % 10);
    p[2] = static_cast<char>('0' + year / 10 % 10);
    p[3] = static_cast<char>('0' + year % 10);
    p += 4;
  }
  p[0] = '-';
  p[1] = static_cast<char>('0' + month / 10 % 10);
  p[2] = static_cast<char>('0' + month % 10);
  p[3] = '-';
  p[4] = static_cast<char>('0' + day / 10 % 10);
  p[5] = static_cast<char>('0' + day % 10);
  used_ = static_cast<size_t>(p + 6 - buffer_.get());
}

void CsvWriter::Empty() {
  Reserve(1);
  Separator();
}

void CsvWriter::EndRow() {
  Reserve(2);
  if (options_.crlf) buffer_[used_++] = '\r';
  buffer_[used_++] = '\n';
  row_started_ = false;
}

void CsvWriter::Row(std::initializer_list<absl::string_view> fields) {
  for (absl::string_view field : fields) Text(field);
  EndRow();
}

absl::Status CsvWriter::Flush() {
  if (used_ == 0) return status_;
  if (!status_.ok() || closed_) {
    used_ = 0;
    return status_.ok() ? absl::FailedPreconditionError(
                              absl::StrCat(path_, ": writer is closed"))
                        : status_;
  }
  if (out_ != nullptr) {
    out_->append(buffer_.get(), used_);
  } else {
    const char* p = buffer_.get();
    size_t left = used_;
    while (left > 0) {
      const ssize_t n = ::write(fd_, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        status_ = absl::InternalError(
            absl::StrCat("cannot write ", path_, ": ", std::strerror(errno)));
        break;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
  }
  flushed_ += static_cast<int64_t>(used_);
  used_ = 0;
  return status_;
}

absl::Status CsvWriter::Close() {
  if (closed_) return status_;
  (void)Flush();
  closed_ = true;
  if (fd_ >= 0) {
    if (::close(fd_) != 0 && status_.ok()) {
      status_ = absl::InternalError(
          absl::StrCat("cannot close ", path_, ": ", std::strerror(errno)));
    }
    fd_ = -1;
  }
  return status_;
}

}  // namespace passerelle::csv
