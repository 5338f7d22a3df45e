#include "cli/generate_cmd.h"

#include <chrono>
#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/flags.h"
#include "synth/generator.h"
#include "synth/omop_writer.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage: passerelle generate --patients N --seed S --site ID --out DIR "
    "[--progress]\n"
    "  Writes N synthetic patients of site ID (\"fr\" or \"qc\" profiles; any\n"
    "  other [a-z0-9_-] id gets a neutral one) as OMOP CDM 5.4 CSV files into\n"
    "  DIR. The same N, S and ID always give byte-identical files.\n";

int UsageError(const std::string& message) {
  std::cerr << "passerelle generate: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int RunGenerateCommand(const std::vector<std::string>& args) {
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
  }
  auto flags =
      ParseFlags(args, {"patients", "seed", "site", "out"}, {"progress"});
  if (!flags.ok()) return UsageError(std::string(flags.status().message()));
  if (!flags->positional.empty()) {
    return UsageError(
        absl::StrCat("unexpected argument \"", flags->positional[0], "\""));
  }
  for (const char* required : {"patients", "seed", "site", "out"}) {
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
  const std::string out = flags->Get("out");
  if (out.empty()) return UsageError("--out: the directory must not be empty");

  auto generator = synth::Generator::Create(options);
  if (!generator.ok()) {
    return UsageError(std::string(generator.status().message()));
  }
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
            << " to " << out << " in " << seconds << " s\n";
  return 0;
}

}  // namespace passerelle::cli
