#include "privacy/units.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace passerelle::privacy {
namespace {

absl::StatusOr<int64_t> ToMicros(double value, const std::string& what,
                                 bool up) {
  if (!std::isfinite(value) || value < 0 || value > kMaxUnits) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a finite number in [0, ", kMaxUnits, "], got ", value));
  }
  const double scaled = value * static_cast<double>(kMicrosPerUnit);
  const double nearest = std::nearbyint(scaled);
  if (std::fabs(scaled - nearest) <= 1e-6) return static_cast<int64_t>(nearest);
  return static_cast<int64_t>(up ? std::ceil(scaled) : std::floor(scaled));
}

}  // namespace

absl::StatusOr<int64_t> ToMicrosFloor(double value, const std::string& what) {
  return ToMicros(value, what, /*up=*/false);
}

absl::StatusOr<int64_t> ToMicrosCeil(double value, const std::string& what) {
  return ToMicros(value, what, /*up=*/true);
}

std::string MicrosToString(int64_t micros) {
  const bool negative = micros < 0;
  const uint64_t m = negative ? -static_cast<uint64_t>(micros) : micros;
  std::string out = absl::StrFormat("%s%d.%06d", negative ? "-" : "",
                                    m / kMicrosPerUnit, m % kMicrosPerUnit);
  while (out.back() == '0') out.pop_back();
  if (out.back() == '.') out.pop_back();
  return out;
}

}  // namespace passerelle::privacy
