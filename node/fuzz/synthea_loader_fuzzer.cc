// libFuzzer harness: bytes -> a Synthea CSV export (patients, conditions,
// medications, procedures, encounters, observations, immunizations,
// allergies, unmapped files) -> the "synthea" loader -> snapshot -> a few
// queries, and no patient Id in any reason, note or error. See
// loader_fuzz.h for the input format; seeds in corpus/synthea/.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "node/fuzz/loader_fuzz.h"
#include "node/loader.h"
#include "node/synthea_loader.h"

namespace fz = ::passerelle::node::fuzz;
namespace node = ::passerelle::node;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fz::ScratchDir* const dir = new fz::ScratchDir();
  const fz::FuzzSite site = fz::ParseFuzzSite(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  dir->Fill(site);

  const node::LoadOptions options = fz::LoadOptionsFor(site);
  const node::Loader* loader = node::FindLoader("synthea");
  fz::Require(loader != nullptr, "no synthea loader registered");
  node::SnapshotBuilder builder("us");
  node::LoadReport report;
  const absl::Status status =
      loader->Load(dir->path(), options, &builder, &report);
  fz::CheckNoIdentifiers(
      site, {"Id", "PATIENT"}, dir,
      [&](const std::string& d, node::LoadReport* r) {
        node::SnapshotBuilder b("us");
        return loader->Load(d, options, &b, r);
      },
      status, report);
  fz::CheckLoad(status, options, report, &builder);

  // The small classifiers the loader leans on, on the input's first line.
  const absl::string_view head =
      absl::string_view(reinterpret_cast<const char*>(data), size)
          .substr(0, 64);
  if (node::IsLoincCode(head)) {
    fz::Require(head.find('-') != absl::string_view::npos,
                "a LOINC code without its check digit");
  }
  (void)node::VocabularyFromSyntheaSystem(head);
  return 0;
}
