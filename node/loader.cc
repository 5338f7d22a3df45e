#include "node/loader.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "csv/csv_reader.h"
#include "node/snds_loader.h"
#include "node/synthea_loader.h"
#include "node/table_reader.h"

namespace passerelle::node {
namespace {

// The OMOP loader behind the common interface; LoadOmopDirectory does the
// work.
class OmopLoader final : public Loader {
 public:
  absl::string_view name() const override { return "omop"; }
  absl::string_view description() const override {
    return "OMOP CDM 5.3/5.4 CSV (person.csv, condition_occurrence.csv, ...)";
  }
  absl::Status Load(const std::string& dir, const LoadOptions& options,
                    SnapshotBuilder* builder,
                    LoadReport* report) const override {
    return LoadOmopDirectory(dir, options, builder, report);
  }
};

class SyntheaLoader final : public Loader {
 public:
  absl::string_view name() const override { return "synthea"; }
  absl::string_view description() const override {
    return "Synthea CSV export (patients.csv, conditions.csv, ...)";
  }
  absl::Status Load(const std::string& dir, const LoadOptions& options,
                    SnapshotBuilder* builder,
                    LoadReport* report) const override {
    return LoadSyntheaDirectory(dir, options, builder, report);
  }
};

class SndsLoader final : public Loader {
 public:
  absl::string_view name() const override { return "snds"; }
  absl::string_view description() const override {
    return "SNDS extracts (IR_BEN_R, PMSI MCO T_MCOaaB/C/D/A, DCIR "
           "ER_PRS_F/ER_PHA_F)";
  }
  absl::Status Load(const std::string& dir, const LoadOptions& options,
                    SnapshotBuilder* builder,
                    LoadReport* report) const override {
    return LoadSndsDirectory(dir, options, builder, report);
  }
};

}  // namespace

const std::vector<const Loader*>& Loaders() {
  static const auto* const kLoaders = new std::vector<const Loader*>{
      new OmopLoader(), new SyntheaLoader(), new SndsLoader()};
  return *kLoaders;
}

const Loader* FindLoader(absl::string_view format) {
  for (const Loader* loader : Loaders()) {
    if (loader->name() == format) return loader;
  }
  return nullptr;
}

std::string LoaderNamesJoined(absl::string_view separator) {
  std::vector<std::string> names;
  for (const Loader* loader : Loaders()) names.emplace_back(loader->name());
  return absl::StrJoin(names, separator);
}

absl::StatusOr<const Loader*> GetLoader(absl::string_view format) {
  const Loader* loader = FindLoader(format);
  if (loader == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown format \"", format,
                     "\" (known: ", LoaderNamesJoined(", "), ")"));
  }
  return loader;
}

absl::Status RejectCounter::Reject(absl::string_view file, int64_t line,
                                   std::string reason) {
  ++report_->rejected;
  if (report_->rejected_samples.size() < kMaxSamples) {
    report_->rejected_samples.push_back(
        {std::string(file), line, std::move(reason)});
  }
  if (report_->rejected > max_rejected_) {
    const RejectedRow& first = report_->rejected_samples.front();
    return absl::InvalidArgumentError(absl::StrCat(
        "load aborted: more than ", max_rejected_, " rejected rows; first: ",
        first.file, ":", first.line, ": ", first.reason));
  }
  return absl::OkStatus();
}

std::string DayText(int32_t day) {
  int y, m, d;
  CivilFromDays(day, &y, &m, &d);
  return absl::StrFormat("%04d-%02d-%02d", y, m, d);
}

FutureEventCheck::FutureEventCheck(const LoadOptions& options,
                                   LoadReport* report)
    : mode_(options.future_events), report_(report) {
  if (options.load_day.has_value()) {
    load_day_ = *options.load_day;
  } else {
    const absl::CivilDay today =
        absl::ToCivilDay(absl::Now(), absl::UTCTimeZone());
    load_day_ = DaysFromCivil(static_cast<int>(today.year()), today.month(),
                              today.day());
  }
}

bool FutureEventCheck::Keep(absl::string_view file, int64_t line, int32_t day) {
  if (day <= load_day_) return true;
  ++report_->future_events;
  if (report_->future_samples.size() < kMaxSamples) {
    report_->future_samples.push_back(
        {std::string(file), line,
         absl::StrCat("dated ", DayText(day), ", after the load date ",
                      DayText(load_day_))});
  }
  return mode_ != FutureEvents::kReject;
}

absl::Status FutureEventCheck::Finish() const {
  if (mode_ != FutureEvents::kUnset || report_->future_events == 0) {
    return absl::OkStatus();
  }
  const RejectedRow& first = report_->future_samples.front();
  return absl::FailedPreconditionError(absl::StrCat(
      report_->future_events, " events are dated after the load date ",
      DayText(load_day_), " (first: ", first.file, ":", first.line, ": ",
      first.reason,
      "); the load is refused. Choose --future-events keep (e.g. an extract "
      "whose dates are shifted into the future on purpose; query it with "
      "`as of`) or --future-events reject (leave those rows out)"));
}

absl::StatusOr<char> SniffDelimiter(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string line;
  std::getline(in, line);
  const char kCandidates[] = {',', ';', '\t', '|'};
  int counts[4] = {0, 0, 0, 0};
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    if (quoted) continue;
    for (int i = 0; i < 4; ++i) counts[i] += c == kCandidates[i];
  }
  int best = 0;
  for (int i = 1; i < 4; ++i) {
    if (counts[i] > counts[best]) best = i;
  }
  return kCandidates[best];
}

SourceTable::SourceTable(std::string path, char delimiter,
                         std::unique_ptr<csv::CsvReader> reader,
                         std::vector<int> indexes,
                         std::vector<std::string> names)
    : path_(std::move(path)),
      delimiter_(delimiter),
      reader_(std::move(reader)),
      indexes_(std::move(indexes)),
      names_(std::move(names)) {}
SourceTable::SourceTable(SourceTable&&) noexcept = default;
SourceTable& SourceTable::operator=(SourceTable&&) noexcept = default;
SourceTable::~SourceTable() = default;

absl::StatusOr<SourceTable> SourceTable::Open(
    const std::string& path, const std::vector<ColumnSpec>& columns) {
  absl::StatusOr<char> delimiter = SniffDelimiter(path);
  if (!delimiter.ok()) return delimiter.status();
  csv::CsvReaderOptions options;
  options.delimiter = *delimiter;
  absl::StatusOr<std::unique_ptr<csv::CsvReader>> reader =
      csv::CsvReader::Open(path, options);
  if (!reader.ok()) return reader.status();
  std::vector<int> indexes;
  std::vector<std::string> names;
  for (const ColumnSpec& column : columns) {
    int index = -1;
    for (const std::string& name : column.names) {
      index = (*reader)->ColumnIndex(name);
      if (index >= 0) break;
    }
    names.push_back(index < 0 ? std::string() : (*reader)->header()[index]);
    if (index < 0 && column.required) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": required column \"", absl::StrJoin(column.names, "\" or \""),
          "\" is missing"));
    }
    indexes.push_back(index);
  }
  return SourceTable(path, *delimiter, *std::move(reader), std::move(indexes),
                     std::move(names));
}

absl::Status SourceTable::ForEach(const RowFn& row, RejectCounter* rejects) {
  std::vector<absl::string_view> fields(indexes_.size());
  while (true) {
    absl::StatusOr<bool> next = reader_->Next();
    if (!next.ok()) {
      if (next.status().code() != absl::StatusCode::kInvalidArgument) {
        return next.status();
      }
      // The reader's message already reads "path:line: ..."; keep the reason.
      std::string reason(next.status().message());
      const std::string prefix =
          absl::StrCat(path_, ":", reader_->line(), ": ");
      if (absl::StartsWith(reason, prefix)) reason.erase(0, prefix.size());
      absl::Status st = rejects->Reject(path_, reader_->line(), reason);
      if (!st.ok()) return st;
      continue;
    }
    if (!*next) return absl::OkStatus();
    for (size_t i = 0; i < indexes_.size(); ++i) {
      fields[i] =
          indexes_[i] < 0 ? absl::string_view() : reader_->field(indexes_[i]);
    }
    absl::Status st = row(fields, reader_->line());
    if (!st.ok()) return st;
  }
}

absl::StatusOr<std::string> FindOptionalTable(const std::string& dir,
                                              absl::string_view name) {
  absl::StatusOr<std::string> path = FindTable(dir, name);
  if (!path.ok() && path.status().code() == absl::StatusCode::kNotFound) {
    return std::string();
  }
  return path;
}

}  // namespace passerelle::node
