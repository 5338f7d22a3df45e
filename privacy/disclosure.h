// The disclosure-control step the gateway applies after fan-out: per-site
// noise, thresholds decided on the noisy value, the combined result as the
// sum of the sites' noisy counts, rounding, intervals and precision metadata
// (privacy.md requirements 1, 2, 5, 8, 9). Exact mode (a steward's choice)
// releases exact counts with primary and complementary suppression instead.
#ifndef PASSERELLE_PRIVACY_DISCLOSURE_H_
#define PASSERELLE_PRIVACY_DISCLOSURE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "passerelle/v1/gateway.pb.h"
#include "passerelle/v1/node.pb.h"
#include "privacy/noise.h"

namespace passerelle::privacy {

struct DisclosureParams {
  Mechanism mechanism = Mechanism::kDiscreteLaplace;
  // Per site and per query: epsilon for discrete Laplace, rho for discrete
  // Gaussian (the other one is ignored). Sensitivity is 1 per site.
  double epsilon = 0;
  double rho = 0;
  // The federation's (and project's) minimum cell size.
  int64_t federation_min_cell_size = 0;
  // Released counts are rounded to a multiple of this; 0 or 1: none.
  int64_t rounding = 0;
  // No noise: thresholds on exact values plus complementary suppression; the
  // result carries no DP guarantee.
  bool exact_mode = false;
};

struct SiteInput {
  std::string site;
  int64_t site_min_cell_size = 0;
  // The site's exact counts: the same keys in the same order at every site.
  std::vector<passerelle::v1::Cell> exact;
};

struct Release {
  // In the order of the inputs; cells in the order of the keys.
  std::vector<std::vector<passerelle::v1::ReleasedCell>> per_site;
  std::vector<passerelle::v1::ReleasedCell> combined;
  // Caveats to show with the result.
  std::vector<std::string> notes;
};

// Semantics (noise mode):
//  - each site's cells get independent noise from `noise`; a breakdown has
//    L1 sensitivity 1 per site because a patient is in exactly one cell;
//  - a site's threshold is max(site minimum, federation minimum); a cell
//    whose NOISY value is below it is SUPPRESSED (no count, "< threshold");
//  - combined = sum over sites of the noisy values (post-processing),
//    thresholded at the strictest threshold of the contributing sites;
//  - negative noisy values that are not suppressed (threshold 0) show as 0;
//    rounding to the nearest multiple comes last;
//  - every noised cell has a 95% interval for the true count computed from
//    the exact noise distribution (for combined cells, of the sum of the
//    sites' noises), widened by half the rounding step and clipped at 0.
// Exact mode: no noise; a cell whose exact value is below its row's
// threshold is SUPPRESSED ("< k"). The table is every site's cells plus the
// combined row; complementary suppression (SUPPRESSED with `complementary`
// set, shown as "suppressed") makes every suppressed cell a corner of a
// "box" of suppressed cells (two sites, or a site and the combined row,
// times two values on every dimension), so that none can be derived by any
// linear combination of the released cells, each cell's sum over the sites,
// or any margin of any row (e.g. a site's total). The boxes are chosen from
// positions alone (the fewest new suppressions, ties by a fixed order),
// never from values, and the pattern does not depend on the order of the
// sites or of the dimensions: the caller must give every site of the
// project (a cohort's pattern must hold for every release of it), and the
// cells must be every combination of their dimensions' values.
// Errors: INVALID_ARGUMENT for inconsistent inputs or parameters; any error
// of the noise source (e.g. the generator) is returned and nothing is
// released.
absl::StatusOr<Release> ReleaseCells(const std::vector<SiteInput>& sites,
                                     const DisclosureParams& params,
                                     NoiseSource& noise);

// The noise distribution the parameters select (noise mode only).
absl::StatusOr<NoiseSpec> NoiseSpecFor(const DisclosureParams& params);

// Rounds to the nearest multiple of `step` (> 1), halves away from zero.
int64_t RoundToMultiple(int64_t value, int64_t step);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_DISCLOSURE_H_
