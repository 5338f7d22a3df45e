// The privacy cost of a query, from its declared parameters alone (never
// from data), for the budget reservation that precedes fan-out.
//
// Composition rule. Every contacted site releases its own noisy breakdown
// with the per-query parameter, and a patient may be present at every site,
// so the sites compose sequentially: a query that contacts k sites costs
// k * epsilon (pure DP, discrete Laplace) or k * rho (zCDP, discrete
// Gaussian). Successive queries compose the same way (the ledger adds their
// costs). A pure query is also charged in zCDP terms, rho = epsilon^2 / 2 per
// site (an epsilon-DP mechanism is epsilon^2/2-zCDP), so k * epsilon^2 / 2,
// which is what a rho cap is checked against. A Gaussian query has no finite
// pure epsilon: it cannot be charged against an epsilon cap. Exact mode
// costs nothing (it claims no DP guarantee).
//
// Rounding. The per-site parameter is rounded UP to the 1e-6 grid before
// multiplying (and rho = epsilon^2/2 is rounded up in integers), while the
// noise is calibrated with the parameter rounded DOWN, so the charge is
// never below the privacy actually spent.
#ifndef PASSERELLE_PRIVACY_COST_H_
#define PASSERELLE_PRIVACY_COST_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "privacy/disclosure.h"

namespace passerelle::privacy {

struct QueryCost {
  // True when the query has a pure epsilon cost (discrete Laplace or exact).
  bool pure = true;
  // Totals over the contacted sites, in micro-units (1e-6).
  int64_t epsilon_micros = 0;  // 0 when not pure.
  int64_t rho_micros = 0;
  // The same as doubles, for display and the wire.
  double epsilon = 0;
  double rho = 0;
  int sites = 0;

  std::string DebugString() const;
};

// INVALID_ARGUMENT when the parameters are missing or out of range
// ([1e-6, 100] per site) or sites_contacted < 1.
absl::StatusOr<QueryCost> ComputeQueryCost(const DisclosureParams& params,
                                           int sites_contacted);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_COST_H_
