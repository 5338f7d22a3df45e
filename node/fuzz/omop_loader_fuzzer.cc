// libFuzzer harness: bytes -> an OMOP CDM export (person, death, concept,
// the event tables, an optional vocabulary rules file) -> the "omop" loader
// -> snapshot -> a few queries. See loader_fuzz.h for the input format;
// seeds in corpus/omop/. Run through scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "absl/strings/string_view.h"
#include "node/fuzz/loader_fuzz.h"
#include "node/loader.h"

namespace fz = ::passerelle::node::fuzz;
namespace node = ::passerelle::node;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fz::ScratchDir* const dir = new fz::ScratchDir();
  const fz::FuzzSite site = fz::ParseFuzzSite(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  dir->Fill(site);

  node::LoadOptions options = fz::LoadOptionsFor(site);
  for (const auto& [name, contents] : site.files) {
    if (name == "rules.txt") {
      options.vocabulary_rules_file =
          (std::filesystem::path(dir->path()) / name).string();
    }
  }
  const node::Loader* loader = node::FindLoader("omop");
  fz::Require(loader != nullptr, "no omop loader registered");
  node::SnapshotBuilder builder("qc");
  node::LoadReport report;
  const absl::Status status =
      loader->Load(dir->path(), options, &builder, &report);
  fz::CheckLoad(status, options, report, &builder);
  return 0;
}
