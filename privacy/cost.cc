#include "privacy/cost.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "privacy/units.h"

namespace passerelle::privacy {
namespace {

constexpr int64_t kMaxPerSiteMicros = 100 * kMicrosPerUnit;
constexpr int kMaxSites = 1000;

absl::StatusOr<int64_t> PerSite(double value, const char* name) {
  absl::StatusOr<int64_t> micros = ToMicrosCeil(value, name);
  if (!micros.ok()) return micros.status();
  // The same range as the noise calibration (which rounds down): a value the
  // samplers would refuse is refused here, before anything is charged.
  absl::StatusOr<int64_t> floor = ToMicrosFloor(value, name);
  if (!floor.ok()) return floor.status();
  if (*floor < 1 || *micros > kMaxPerSiteMicros) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " per query must be in [0.000001, 100], got ", value));
  }
  return *micros;
}

}  // namespace

std::string QueryCost::DebugString() const {
  return absl::StrCat(
      pure ? absl::StrCat("epsilon=", MicrosToString(epsilon_micros), " ") : "",
      "rho=", MicrosToString(rho_micros), " over ", sites, " site(s)");
}

absl::StatusOr<QueryCost> ComputeQueryCost(const DisclosureParams& params,
                                           int sites_contacted) {
  if (sites_contacted < 1 || sites_contacted > kMaxSites) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a query contacts 1 to ", kMaxSites, " sites, got ", sites_contacted));
  }
  QueryCost cost;
  cost.sites = sites_contacted;
  if (params.exact_mode) return cost;
  if (params.mechanism == Mechanism::kDiscreteLaplace) {
    absl::StatusOr<int64_t> eps = PerSite(params.epsilon, "epsilon");
    if (!eps.ok()) return eps.status();
    // rho = epsilon^2 / 2, in micro-units: eps^2 / (2 * 10^6), rounded up.
    const int64_t rho =
        (*eps * *eps + 2 * kMicrosPerUnit - 1) / (2 * kMicrosPerUnit);
    cost.pure = true;
    cost.epsilon_micros = *eps * sites_contacted;
    cost.rho_micros = rho * sites_contacted;
  } else {
    absl::StatusOr<int64_t> rho = PerSite(params.rho, "rho");
    if (!rho.ok()) return rho.status();
    cost.pure = false;
    cost.epsilon_micros = 0;
    cost.rho_micros = *rho * sites_contacted;
  }
  cost.epsilon = FromMicros(cost.epsilon_micros);
  cost.rho = FromMicros(cost.rho_micros);
  return cost;
}

}  // namespace passerelle::privacy
