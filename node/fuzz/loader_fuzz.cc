#include "node/fuzz/loader_fuzz.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "csv/csv_reader.h"
#include "node/engine.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/validate.h"

namespace passerelle::node::fuzz {
namespace {

namespace fs = std::filesystem;

std::string CleanName(absl::string_view raw) {
  std::string name;
  for (char c : raw) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
        c == '.' || c == '-') {
      name.push_back(c);
    }
    if (name.size() == 64) break;
  }
  while (!name.empty() && name[0] == '.') name.erase(0, 1);
  return name;
}

size_t Occurrences(absl::string_view haystack, absl::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != absl::string_view::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

bool LooksLikeIdentifier(absl::string_view v) {
  if (v.size() < 8) return false;
  bool letter = false, digit = false;
  for (char c : v) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (absl::ascii_isalpha(u)) {
      letter = true;
    } else if (absl::ascii_isdigit(u)) {
      digit = true;
    } else if (c != '_' && c != '-') {
      return false;
    }
  }
  return letter && digit;
}

// Cells of `text` on `snap`, or nullopt when the text is not a valid query.
std::optional<std::vector<v1::Cell>> Count(const CohortEngine& engine,
                                           const std::string& site,
                                           const char* text) {
  absl::StatusOr<v1::Query> q = query::ParseQuery(text);
  Require(q.ok(), "a fixed query of the harness does not parse");
  if (!query::ValidateQuery(*q).ok()) return std::nullopt;
  absl::StatusOr<std::vector<v1::Cell>> cells = engine.Count(*q);
  Require(cells.ok(), "the engine failed on a valid query");
  Require(cells->size() == query::EnumerateCells(*q, {site}).size(),
          "the engine's cells differ from the query's cell domain");
  return *std::move(cells);
}

}  // namespace

void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "loader fuzzer: broken promise: %s\n", what);
  std::abort();
}

FuzzSite ParseFuzzSite(absl::string_view input) {
  FuzzSite site;
  std::map<std::string, std::string> files;
  std::string* current = nullptr;
  size_t pos = 0;
  while (pos < input.size()) {
    size_t eol = input.find('\n', pos);
    const size_t next = eol == absl::string_view::npos ? input.size() : eol + 1;
    const absl::string_view line = input.substr(pos, next - pos);
    if (absl::StartsWith(line, "#file ")) {
      const std::string name = CleanName(line.substr(6));
      current = name.empty() ? nullptr : &files[name];
      if (current != nullptr) current->clear();
    } else if (current == nullptr && absl::StartsWith(line, "#option ")) {
      site.options.insert(
          std::string(absl::StripAsciiWhitespace(line.substr(8))));
    } else if (current != nullptr) {
      current->append(line.data(), line.size());
    }
    pos = next;
  }
  site.raw = std::string(input);
  site.files.assign(files.begin(), files.end());
  return site;
}

LoadOptions LoadOptionsFor(const FuzzSite& site) {
  LoadOptions options;
  options.max_rejected = 8;
  for (const std::string& o : site.options) {
    int n = 0;
    if (absl::StartsWith(o, "max_rejected=") &&
        absl::SimpleAtoi(absl::string_view(o).substr(13), &n) && n >= 0 &&
        n < 1000) {
      options.max_rejected = n;
    }
  }
  return options;
}

ScratchDir::ScratchDir() {
  const fs::path base = fs::is_directory("/dev/shm")
                            ? fs::path("/dev/shm")
                            : fs::temp_directory_path();
  std::string tmpl = (base / "passerelle-loader-fuzz-XXXXXX").string();
  Require(mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
  path_ = tmpl;
  // Removed at exit, also when libFuzzer stops on a finding.
  static std::string* to_remove = new std::string(path_);
  std::atexit([] { fs::remove_all(*to_remove); });
}

void ScratchDir::Fill(const FuzzSite& site) {
  for (const fs::directory_entry& e : fs::directory_iterator(path_)) {
    fs::remove_all(e.path());
  }
  for (const auto& [name, contents] : site.files) {
    std::ofstream out(fs::path(path_) / name, std::ios::binary);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    Require(static_cast<bool>(out), "cannot write a scratch file");
  }
}

void CheckLoad(const absl::Status& status, const LoadOptions& options,
               const LoadReport& report, SnapshotBuilder* builder) {
  Require(report.rejected >= 0 && report.persons >= 0 && report.events >= 0,
          "negative report counts");
  Require(report.rejected_samples.size() <= RejectCounter::kMaxSamples,
          "more rejected-row samples than the limit");
  Require(
      static_cast<int64_t>(report.rejected_samples.size()) <= report.rejected,
      "more samples than rejected rows");
  for (const RejectedRow& r : report.rejected_samples) {
    Require(!r.file.empty() && r.line >= 1 && !r.reason.empty(),
            "a rejected row without file, line or reason");
  }
  if (!status.ok()) {
    Require(!status.message().empty(), "a failed load without a message");
    return;  // The builder is discarded by the caller.
  }
  Require(report.rejected <= options.max_rejected,
          "a load succeeded with more rejected rows than allowed");
  std::shared_ptr<Snapshot> snap = builder->Build("fuzz", 0);
  Require(static_cast<int64_t>(snap->size()) == report.persons,
          "snapshot size differs from the reported persons");
  Require(snap->meta.events == report.events,
          "snapshot events differ from the reported events");
  Require(snap->birth_keys.size() == snap->sex.size(), "ragged person columns");
  for (size_t i = 1; i < snap->birth_keys.size(); ++i) {
    Require(snap->birth_keys[i - 1] <= snap->birth_keys[i],
            "patients not in birth-key order");
  }
  for (const auto& [key, table] : snap->tables) {
    Require(table.codes.size() == table.postings.size(), "ragged code table");
    for (size_t i = 0; i < table.postings.size(); ++i) {
      const Posting& p = *table.postings[i];
      Require(i == 0 || table.codes[i - 1] < table.codes[i],
              "codes not sorted");
      Require(p.days.size() == p.size() && p.events.size() == p.size() &&
                  (p.values.empty() || p.values.size() == p.size()),
              "ragged posting");
      for (uint32_t patient : p.patients) {
        Require(patient < snap->size(), "an event of an unknown patient");
      }
    }
  }

  std::unique_ptr<CohortEngine> engine = NewIndexEngine(snap);
  const std::string site = snap->meta.site;
  const int64_t n = snap->size();
  auto dead = Count(*engine, site, "deceased");
  auto alive = Count(*engine, site, "not deceased");
  if (dead && alive) {
    Require((*dead)[0].count() + (*alive)[0].count() == n,
            "deceased + not deceased != population");
  }
  for (const char* text : {
           "sex = female group by age_band(10)",
           "condition icd10:E11* or drug atc:A10* group by sex",
           "measurement loinc:4548-4 value >= 7",
           "condition cim10:E11* before drug atc:A10BA02 within 365 days",
           "procedure ccam:DEQP003 or condition snomed:44054006 at least 2 "
           "times",
           "observation concept:4275495 or visit concept:9201",
       }) {
    auto cells = Count(*engine, site, text);
    if (!cells) continue;
    for (const v1::Cell& c : *cells) {
      Require(c.count() >= 0 && c.count() <= n,
              "a count outside [0, population]");
    }
  }
}

void CheckNoIdentifiers(const FuzzSite& site,
                        const std::vector<std::string>& id_columns,
                        ScratchDir* dir, const LoadFn& load,
                        const absl::Status& status, const LoadReport& report) {
  // Occurrences of each candidate inside identifier fields.
  std::map<std::string, size_t> in_fields;
  for (const auto& [name, contents] : site.files) {
    const std::string path = (fs::path(dir->path()) / name).string();
    absl::StatusOr<char> delimiter = SniffDelimiter(path);
    if (!delimiter.ok()) continue;
    csv::CsvReaderOptions options;
    options.delimiter = *delimiter;
    options.require_header_width = false;
    auto reader = csv::CsvReader::FromString(contents, name, options);
    if (!reader.ok()) continue;
    std::vector<int> columns;
    for (const std::string& c : id_columns) {
      const int i = (*reader)->ColumnIndex(c);
      if (i >= 0) columns.push_back(i);
    }
    if (columns.empty()) continue;
    for (int guard = 0; guard < (1 << 20); ++guard) {
      absl::StatusOr<bool> next = (*reader)->Next();
      if (next.ok() && !*next) break;
      if (!next.ok()) {
        if (next.status().code() == absl::StatusCode::kFailedPrecondition)
          break;
        continue;
      }
      for (int i : columns) {
        const std::string field(
            absl::StripAsciiWhitespace((*reader)->field(i)));
        if (LooksLikeIdentifier(field)) ++in_fields[field];
      }
    }
  }
  auto texts = [](const absl::Status& st, const LoadReport& r) {
    std::vector<std::string> out = {std::string(st.message())};
    for (const RejectedRow& row : r.rejected_samples) out.push_back(row.reason);
    for (const std::string& note : r.notes) out.push_back(note);
    return out;
  };
  const std::vector<std::string> said = texts(status, report);
  for (const auto& entry : in_fields) {
    const std::string& id = entry.first;
    // Counted once per field; a field holding only the id holds it once.
    if (Occurrences(site.raw, id) != entry.second) continue;
    if (absl::StrContains(dir->path(), id)) continue;
    bool suspect = false;
    for (const std::string& t : said) suspect |= absl::StrContains(t, id);
    if (!suspect) continue;
    // The loader's own text (a column name, say) may equal the value: load
    // again with the identifier renamed; a leak shows the new name.
    std::string renamed = "Q7" + std::string(id.size() - 2, 'x');
    for (char c = 'a'; absl::StrContains(site.raw, renamed); ++c) {
      renamed = "Q7" + std::string(id.size() - 2, c);
    }
    FuzzSite other = site;
    for (auto& file : other.files) {
      file.second = absl::StrReplaceAll(file.second, {{id, renamed}});
    }
    dir->Fill(other);
    LoadReport other_report;
    const absl::Status other_status = load(dir->path(), &other_report);
    for (const std::string& t : texts(other_status, other_report)) {
      if (absl::StrContains(t, renamed)) {
        std::fprintf(stderr, "identifier \"%s\" (renamed \"%s\") in: %s\n",
                     id.c_str(), renamed.c_str(), t.c_str());
        Require(false, "a load message contains a person identifier");
      }
    }
  }
}

}  // namespace passerelle::node::fuzz
