// libFuzzer harness for the streaming CSV reader every loader reads through:
// untrusted bytes -> CsvReader (from a file, in blocks as small as 64 bytes,
// and from memory) -> records, checked against each other and against a
// CsvWriter round trip. Aborts on any broken promise.
//
// Input: byte 0 chooses the options (bits 0-1 the delimiter , ; TAB |;
// bit 2 no header; bit 3 header width not enforced; bit 4 empty lines kept),
// byte 1 the file reader's block size (64 + byte), the rest is the file.
// Run through scripts/fuzz.sh, or by hand (new inputs go to the first
// directory, so the seeds stay as written):
//   build-fuzz/csv/fuzz/csv_reader_fuzzer -max_total_time=60 /tmp/new \
//     csv/fuzz/corpus
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "csv/csv_reader.h"
#include "csv/csv_writer.h"

namespace {

namespace csv = ::passerelle::csv;

struct Record {
  bool ok = false;
  absl::StatusCode code = absl::StatusCode::kOk;
  int64_t line = 0;
  std::vector<std::string> fields;
  bool operator==(const Record& o) const {
    return ok == o.ok && code == o.code && line == o.line && fields == o.fields;
  }
};

struct Parse {
  absl::StatusCode open = absl::StatusCode::kOk;
  std::vector<std::string> header;
  std::vector<Record> records;
};

#define FUZZ_CHECK(condition) CheckImpl(condition, #condition, __LINE__)
void CheckImpl(bool condition, const char* what, int line) {
  if (condition) return;
  std::fprintf(stderr, "csv_reader_fuzzer.cc:%d: broken promise: %s\n", line,
               what);
  std::abort();
}

// Every record and error until the end (or until the reader cannot go on).
Parse ReadAll(absl::StatusOr<std::unique_ptr<csv::CsvReader>> reader) {
  Parse out;
  if (!reader.ok()) {
    out.open = reader.status().code();
    return out;
  }
  csv::CsvReader& r = **reader;
  out.header = r.header();
  int64_t last_line = 0;
  int64_t records = 0;
  // Each call consumes at least one byte or ends, so this bound is generous.
  for (int guard = 0; guard < (1 << 20); ++guard) {
    absl::StatusOr<bool> next = r.Next();
    Record rec;
    if (!next.ok()) {
      // Errors are InvalidArgument (malformed row) or FailedPrecondition
      // (after an unrecoverable one); a FailedPrecondition is final.
      const absl::StatusCode code = next.status().code();
      FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                 code == absl::StatusCode::kFailedPrecondition);
      FUZZ_CHECK(r.num_fields() == 0);
      rec.code = code;
      out.records.push_back(rec);
      if (code == absl::StatusCode::kFailedPrecondition) return out;
      continue;
    }
    if (!*next) {
      FUZZ_CHECK(r.records_read() == records);
      return out;
    }
    ++records;
    FUZZ_CHECK(r.records_read() == records);
    FUZZ_CHECK(r.line() >= 1 && r.line() >= last_line);
    last_line = r.line();
    rec.ok = true;
    rec.line = r.line();
    for (absl::string_view f : r.fields()) rec.fields.emplace_back(f);
    FUZZ_CHECK(r.field(r.num_fields()).empty());
    out.records.push_back(std::move(rec));
  }
  std::abort();  // Next() never reached the end.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  csv::CsvReaderOptions options;
  options.delimiter = ",;\t|"[flags & 3];
  options.has_header = (flags & 4) == 0;
  options.require_header_width = (flags & 8) == 0;
  options.skip_empty_lines = (flags & 16) == 0;
  options.block_size = 64 + data[1];
  options.max_record_bytes = size_t{1} << 20;
  const std::string bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

  // From a file, read in small blocks (records straddle block ends).
  const int fd = memfd_create("csv_fuzz", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(write(fd, bytes.data(), bytes.size()) ==
             static_cast<ssize_t>(bytes.size()));
  const std::string path = absl::StrCat("/proc/self/fd/", fd);
  const Parse from_file = ReadAll(csv::CsvReader::Open(path, options));

  // From memory: the very same records and errors, whatever the blocks.
  const Parse from_memory =
      ReadAll(csv::CsvReader::FromString(bytes, path, options));
  FUZZ_CHECK(from_file.open == from_memory.open);
  FUZZ_CHECK(from_file.header == from_memory.header);
  FUZZ_CHECK(from_file.records == from_memory.records);

  // A tiny record limit: the file reader must fail cleanly, never loop.
  csv::CsvReaderOptions tight = options;
  tight.max_record_bytes = 1 + data[1] % 128;
  (void)ReadAll(csv::CsvReader::Open(path, tight));
  close(fd);

  // The records that parsed, written back with CsvWriter, read back the same.
  if (from_memory.open != absl::StatusCode::kOk) return 0;
  std::string written;
  std::vector<std::vector<std::string>> expected;
  {
    csv::CsvWriterOptions wo;
    wo.delimiter = options.delimiter;
    wo.buffer_size = 64;
    std::unique_ptr<csv::CsvWriter> w = csv::CsvWriter::ToString(&written, wo);
    for (const Record& rec : from_memory.records) {
      if (!rec.ok) continue;
      if (rec.fields.size() == 1 && rec.fields[0].empty()) {
        w->Raw("\"\"");  // A lone empty field would be an empty line.
      } else {
        for (const std::string& f : rec.fields) w->Text(f);
      }
      w->EndRow();
      expected.push_back(rec.fields);
    }
    FUZZ_CHECK(w->Close().ok());
  }
  // A leading byte-order mark would be taken as the file's, not the field's.
  if (written.rfind("\xEF\xBB\xBF", 0) == 0) return 0;
  csv::CsvReaderOptions reread;
  reread.delimiter = options.delimiter;
  reread.has_header = false;
  const Parse again =
      ReadAll(csv::CsvReader::FromString(written, "rewritten", reread));
  FUZZ_CHECK(again.open == absl::StatusCode::kOk);
  FUZZ_CHECK(again.records.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    FUZZ_CHECK(again.records[i].ok);
    FUZZ_CHECK(again.records[i].fields == expected[i]);
  }
  return 0;
}
