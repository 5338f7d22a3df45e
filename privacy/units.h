// Privacy parameters arrive from policy as doubles; the samplers, the cost
// and the ledger work on integers in micro-units (1e-6) so that decimal
// budgets never drift. Conversions snap to the nearest micro-unit when the
// double is within 1e-6 micro-units of it (so 0.1 is exactly 100000, not
// 100001 because the double 0.1 is 0.1000000000000000055...), and otherwise
// round in the direction that is safe for the caller: DOWN for the epsilon
// or rho the noise is calibrated with (more noise than claimed) and for
// caps, UP for the cost charged.
#ifndef PASSERELLE_PRIVACY_UNITS_H_
#define PASSERELLE_PRIVACY_UNITS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace passerelle::privacy {

inline constexpr int64_t kMicrosPerUnit = 1'000'000;

// Largest value accepted anywhere (1e6 units, i.e. 1e12 micro-units).
inline constexpr double kMaxUnits = 1e6;

// Non-negative finite `value` (named `what` in errors) to micro-units.
absl::StatusOr<int64_t> ToMicrosFloor(double value, const std::string& what);
absl::StatusOr<int64_t> ToMicrosCeil(double value, const std::string& what);

// Micro-units back to a double for display ("0.1" for 100000).
inline double FromMicros(int64_t micros) {
  return static_cast<double>(micros) / static_cast<double>(kMicrosPerUnit);
}

// "0.123456" without trailing zeros.
std::string MicrosToString(int64_t micros);

}  // namespace passerelle::privacy

#endif  // PASSERELLE_PRIVACY_UNITS_H_
