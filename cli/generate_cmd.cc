#include "cli/generate_cmd.h"

#include <chrono>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/flags.h"
#include "node/snapshot.h"
#include "node/store.h"
#include "synth/generator.h"
#include "synth/omop_writer.h"
#include "synth/snapshot_sink.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage: passerelle generate --patients N --seed S --site ID\n"
    "           [--coding site|uniform]\n"
    "           (--out DIR | --into-store STORE_DIR) [--progress]\n"
    "  Generates N synthetic patients of site ID (\"fr\" or \"qc\" profiles;\n"
    "  any other [a-z0-9_-] id gets a neutral one).\n"
    "  --coding site:      (default) each site in its real coding: fr CIM-10,\n"
    "                      CCAM, drugs as CIP13 (UCD in hospital); qc ICD-9\n"
    "                      claims beside ICD-10-CA stays, drugs as DINs.\n"
    "  --coding uniform:   ICD-10 / ATC everywhere (the same patients and\n"
    "                      events; what the benchmarks use).\n"
    "  --out DIR:          OMOP CDM 5.4 CSV files in DIR; the same N, S and "
    "ID\n"
    "                      always give byte-identical files.\n"
    "  --into-store DIR:   straight into a node store (as `passerelle node "
    "load`\n"
    "                      of those CSV files would, without writing them); "
    "the\n"
    "                      new snapshot replaces the current one atomically.\n";

int UsageError(const std::string& message) {
  std::cerr << "passerelle generate: " << message << "\n" << kUsage;
  return 2;
}

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
      .count();
}

int GenerateIntoStore(const synth::Generator& generator, const std::string& dir,
                      bool progress) {
  const std::string& site = generator.options().site;
  auto fail = [](const absl::Status& st) {
    std::cerr << "passerelle generate: " << st.message() << "\n";
    return 1;
  };
  // Open first: a store held by a running node fails before any work.
  absl::StatusOr<std::unique_ptr<node::NodeStore>> store =
      node::NodeStore::Open(dir);
  if (!store.ok()) return fail(store.status());
  const auto start = std::chrono::steady_clock::now();
  node::SnapshotBuilder builder(site);
  synth::FillOptions fill;
  fill.progress = progress;
  if (absl::Status st = synth::FillSnapshot(generator, &builder, fill);
      !st.ok()) {
    return fail(st);
  }
  const double generated = Since(start);
  const int64_t persons = builder.persons(), events = builder.events();
  absl::StatusOr<std::string> version =
      (*store)->NextVersion(site, absl::ToUnixSeconds(absl::Now()));
  if (!version.ok()) return fail(version.status());
  auto build_start = std::chrono::steady_clock::now();
  std::shared_ptr<node::Snapshot> snap =
      builder.Build(*version, absl::ToUnixSeconds(absl::Now()));
  const double built = Since(build_start);
  auto commit_start = std::chrono::steady_clock::now();
  if (absl::Status st = (*store)->Commit(*snap); !st.ok()) return fail(st);
  const double committed = Since(commit_start);
  std::cout << "generated " << persons << " patients, " << events
            << " events for site " << site << " ("
            << synth::CodingName(generator.options().coding)
            << " coding) into store " << dir << " as snapshot " << *version
            << " in " << Since(start) << " s (generate " << generated
            << " s, index " << built << " s, write " << committed << " s)\n";
  return 0;
}

}  // namespace

int RunGenerateCommand(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  auto flags = ParseFlags(
      args, {"patients", "seed", "site", "coding", "out", "into-store"},
      {"progress"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()));
  if (!flags->positional.empty()) {
    return UsageError(
        absl::StrCat("unexpected argument \"", flags->positional[0], "\""));
  }
  for (const char* required : {"patients", "seed", "site"}) {
    if (!flags->Has(required)) {
      return UsageError(absl::StrCat("--", required, " is required"));
    }
  }
  synth::GeneratorOptions options;
  if (!absl::SimpleAtoi(flags->Get("patients"), &options.patients) ||
      options.patients < 0) {
    return UsageError(absl::StrCat("--patients: \"", flags->Get("patients"),
                                   "\" is not a non-negative integer"));
  }
  if (!absl::SimpleAtoi(flags->Get("seed"), &options.seed)) {
    return UsageError(absl::StrCat("--seed: \"", flags->Get("seed"),
                                   "\" is not an unsigned 64-bit integer"));
  }
  options.site = flags->Get("site");
  if (flags->Has("coding") &&
      !synth::ParseCoding(flags->Get("coding"), &options.coding)) {
    return UsageError(absl::StrCat("--coding: \"", flags->Get("coding"),
                                   "\" is not \"site\" or \"uniform\""));
  }
  if (flags->Has("out") == flags->Has("into-store")) {
    return UsageError(
        "exactly one of --out DIR and --into-store DIR is required");
  }
  const bool into_store = flags->Has("into-store");
  const std::string out = flags->Get(into_store ? "into-store" : "out");
  if (out.empty()) {
    return UsageError(absl::StrCat(into_store ? "--into-store" : "--out",
                                   ": the directory must not be empty"));
  }

  auto generator = synth::Generator::Create(options);
  if (!generator.ok()) {
    return UsageError(std::string(generator.status().message()));
  }
  if (into_store)
    return GenerateIntoStore(**generator, out, flags->Has("progress"));
  synth::OmopWriteOptions write_options;
  write_options.progress = flags->Has("progress");
  const auto start = std::chrono::steady_clock::now();
  auto stats = synth::WriteOmopCsv(**generator, out, write_options);
  if (!stats.ok()) {
    std::cerr << "passerelle generate: " << stats.status().message() << "\n";
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  int64_t events = 0;
  for (int64_t rows : stats->rows) events += rows;
  std::cout << "wrote " << stats->persons << " patients, " << events
            << " events, " << stats->concepts << " concepts ("
            << stats->bytes / (1024 * 1024) << " MiB) for site " << options.site
            << " (" << synth::CodingName(options.coding) << " coding) to "
            << out << " in " << seconds << " s\n";
  return 0;
}

}  // namespace passerelle::cli
