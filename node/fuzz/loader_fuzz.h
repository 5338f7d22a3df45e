// Shared by the loader harnesses (omop, synthea, snds): turns one fuzzer
// input into a site directory, and checks what a load promises.
//
// Input format (text, so seeds are readable and mutations stay useful):
//
//   #option max_rejected=3      optional, before the first file
//   #option lenient_linkage     (snds: link stays whatever their return codes)
//   #file person.csv
//   person_id,gender_concept_id,year_of_birth
//   1,8507,1970
//   #file condition_occurrence.csv
//   ...
//
// A file name keeps only [A-Za-z0-9_.-] (at most 64 characters, no leading
// dot); the bytes after its "#file" line up to the next one are its content.
#ifndef PASSERELLE_NODE_FUZZ_LOADER_FUZZ_H_
#define PASSERELLE_NODE_FUZZ_LOADER_FUZZ_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "node/loader.h"
#include "node/snapshot.h"

namespace passerelle::node::fuzz {

struct FuzzSite {
  std::set<std::string> options;  // "max_rejected=3", "lenient_linkage".
  std::string raw;                // The whole input.
  std::vector<std::pair<std::string, std::string>> files;
};

FuzzSite ParseFuzzSite(absl::string_view input);

// The load options of `site`: max_rejected 8 unless "#option
// max_rejected=N" (0 <= N < 1000) says otherwise.
LoadOptions LoadOptionsFor(const FuzzSite& site);

// A directory (under /dev/shm when present, so a load costs no disk I/O)
// emptied and refilled for each input. Not thread-safe.
class ScratchDir {
 public:
  ScratchDir();
  // Removes every file, then writes `site`'s files.
  void Fill(const FuzzSite& site);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Aborts unless `report` and `status` keep the loader's promises (rejected
// rows within the limit, samples bounded, files named) and, when the load
// succeeded, the snapshot built from `builder` agrees with the report and
// answers a few queries with counts inside the population.
void CheckLoad(const absl::Status& status, const LoadOptions& options,
               const LoadReport& report, SnapshotBuilder* builder);

// Loads the site in `dir` (a fresh builder each call) into `report`.
using LoadFn =
    std::function<absl::Status(const std::string& dir, LoadReport* report)>;

// Person identifiers of `site`: the values of the columns `id_columns`
// (case-insensitive) of every file, kept only when they look like an
// identifier (8+ characters of [A-Za-z0-9_-] with a letter and a digit) and
// occur nowhere in the input outside those columns, nor in the directory
// name. When one of them shows up in `status`, a rejected row's reason or a
// note, the site is loaded again (`load`, refilling `dir`) with that
// identifier renamed; if the new name shows up, the loader echoed it and
// this aborts: the loaders promise that reasons never contain an
// identifier. (The renaming tells a leak from the loader's own words, a
// column name the input happened to use as an identifier.)
void CheckNoIdentifiers(const FuzzSite& site,
                        const std::vector<std::string>& id_columns,
                        ScratchDir* dir, const LoadFn& load,
                        const absl::Status& status, const LoadReport& report);

// Aborts (after printing `what`) when `condition` is false.
void Require(bool condition, const char* what);

}  // namespace passerelle::node::fuzz

#endif  // PASSERELLE_NODE_FUZZ_LOADER_FUZZ_H_
