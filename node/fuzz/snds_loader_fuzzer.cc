// libFuzzer harness: bytes -> an SNDS extract (IR_BEN_R, the PMSI MCO
// tables of a year, DCIR ER_PRS_F / ER_PHA_F, IR_PHA_R) -> LoadSndsDirectory
// (with and without the linkage return-code rule: "#option
// lenient_linkage") -> snapshot -> a few queries, and no beneficiary
// identifier in any reason, note or error. Also the SNDS date parsers on the
// input's first line. See loader_fuzz.h for the format; seeds in
// corpus/snds/.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "node/fuzz/loader_fuzz.h"
#include "node/snapshot.h"
#include "node/snds_loader.h"

namespace fz = ::passerelle::node::fuzz;
namespace node = ::passerelle::node;

namespace {

// A parsed day must print back as a real calendar date.
void CheckDay(const absl::StatusOr<int32_t>& day) {
  if (!day.ok()) return;
  int y = 0, m = 0, d = 0;
  node::CivilFromDays(*day, &y, &m, &d);
  fz::Require(m >= 1 && m <= 12 && d >= 1 && d <= 31,
              "a parsed date is not a calendar date");
  fz::Require(node::DaysFromCivil(y, m, d) == *day,
              "days <-> civil date do not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static fz::ScratchDir* const dir = new fz::ScratchDir();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const fz::FuzzSite site = fz::ParseFuzzSite(input);
  dir->Fill(site);

  const node::LoadOptions options = fz::LoadOptionsFor(site);
  node::SndsOptions snds;
  snds.require_valid_linkage_codes = site.options.count("lenient_linkage") == 0;
  node::SnapshotBuilder builder("fr");
  node::LoadReport report;
  const absl::Status status =
      node::LoadSndsDirectory(dir->path(), options, &builder, &report, snds);
  fz::CheckNoIdentifiers(
      site, {"BEN_NIR_PSA", "NIR_ANO_17"}, dir,
      [&](const std::string& d, node::LoadReport* r) {
        node::SnapshotBuilder b("fr");
        return node::LoadSndsDirectory(d, options, &b, r, snds);
      },
      status, report);
  fz::CheckLoad(status, options, report, &builder);

  const absl::string_view head = input.substr(0, input.find('\n'));
  CheckDay(node::ParseSndsDate(head));
  CheckDay(node::ParseDdmmyyyy(head));
  CheckDay(node::ParseDay(head));
  return 0;
}
