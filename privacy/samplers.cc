#include "privacy/samplers.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace passerelle::privacy {
namespace {

using u128 = unsigned __int128;

constexpr u128 kU128Max = ~static_cast<u128>(0);

absl::Status Overflow() {
  return absl::OutOfRangeError(
      "noise sampler: intermediate value out of 128-bit range (a draw far "
      "outside the distribution's support in practice); refusing to release");
}

bool MulOverflows(u128 a, u128 b, u128* out) {
  if (a != 0 && b > kU128Max / a) return true;
  *out = a * b;
  return false;
}

u128 Gcd(u128 a, u128 b) {
  while (b != 0) {
    const u128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Integer square root (floor) of a 64-bit value, integer arithmetic only.
uint64_t ISqrt(uint64_t n) {
  uint64_t lo = 0, hi = uint64_t{1} << 32;  // hi*hi > any uint64_t.
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (static_cast<u128>(mid) * mid <= n) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

absl::Status CheckRational(const Rational& r, const char* what) {
  if (r.den == 0 || r.num == 0 || r.num > kMaxRationalPart ||
      r.den > kMaxRationalPart) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a positive rational with parts in [1, ",
                     kMaxRationalPart, "], got ", RationalToString(r)));
  }
  return absl::OkStatus();
}

// Bernoulli(exp(-gamma)) for gamma = num/den in [0, 1].
absl::StatusOr<bool> BernoulliExpUnit(RandomSource& random, u128 num,
                                      u128 den) {
  u128 k = 1;
  while (true) {
    u128 denk;
    if (MulOverflows(den, k, &denk)) return Overflow();
    absl::StatusOr<bool> a = SampleBernoulli(random, num, denk);
    if (!a.ok()) return a.status();
    if (!*a) break;
    ++k;
  }
  return (k % 2) == 1;
}

}  // namespace

absl::StatusOr<Rational> MakeRational(uint64_t num, uint64_t den) {
  if (den == 0)
    return absl::InvalidArgumentError("rational with denominator 0");
  const uint64_t g = num == 0 ? den : static_cast<uint64_t>(Gcd(num, den));
  Rational r{num / g, den / g};
  if (r.num > kMaxRationalPart || r.den > kMaxRationalPart) {
    return absl::InvalidArgumentError(
        absl::StrCat("rational ", RationalToString(r),
                     " is outside the samplers' supported range"));
  }
  return r;
}

std::string RationalToString(const Rational& r) {
  return absl::StrCat(r.num, "/", r.den);
}

absl::StatusOr<bool> SampleBernoulli(RandomSource& random, u128 num, u128 den) {
  if (den == 0 || num > den) {
    return absl::InvalidArgumentError(
        "Bernoulli probability must be in [0, 1]");
  }
  absl::StatusOr<u128> u = UniformBelow128(random, den);
  if (!u.ok()) return u.status();
  return *u < num;
}

absl::StatusOr<bool> SampleBernoulliExp(RandomSource& random, u128 num,
                                        u128 den) {
  if (den == 0) return absl::InvalidArgumentError("gamma with denominator 0");
  const u128 g = num == 0 ? den : Gcd(num, den);
  num /= g;
  den /= g;
  if (num <= den) return BernoulliExpUnit(random, num, den);
  // exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))).
  const u128 whole = num / den;
  for (u128 i = 0; i < whole; ++i) {
    absl::StatusOr<bool> b = BernoulliExpUnit(random, 1, 1);
    if (!b.ok()) return b.status();
    if (!*b) return false;
  }
  return BernoulliExpUnit(random, num % den, den);
}

absl::StatusOr<uint64_t> SampleGeometric(RandomSource& random,
                                         const Rational& gamma) {
  if (gamma.den == 0 || gamma.num == 0) {
    return absl::InvalidArgumentError("geometric: gamma must be > 0");
  }
  uint64_t k = 0;
  while (true) {
    absl::StatusOr<bool> b = SampleBernoulliExp(random, gamma.num, gamma.den);
    if (!b.ok()) return b.status();
    if (!*b) return k;
    if (k == std::numeric_limits<uint64_t>::max()) return Overflow();
    ++k;
  }
}

absl::StatusOr<int64_t> SampleDiscreteLaplace(RandomSource& random,
                                              const Rational& scale) {
  if (absl::Status s = CheckRational(scale, "discrete Laplace scale");
      !s.ok()) {
    return s;
  }
  // CKS Algorithm 2 with scale t/s: here t = scale.num, s = scale.den.
  const uint64_t t = scale.num;
  const uint64_t s = scale.den;
  while (true) {
    absl::StatusOr<uint64_t> u = UniformBelow(random, t);
    if (!u.ok()) return u.status();
    absl::StatusOr<bool> d = SampleBernoulliExp(random, *u, t);
    if (!d.ok()) return d.status();
    if (!*d) continue;
    absl::StatusOr<uint64_t> v = SampleGeometric(random, Rational{1, 1});
    if (!v.ok()) return v.status();
    u128 x;
    if (MulOverflows(t, *v, &x)) return Overflow();
    x += *u;
    const u128 y = x / s;
    if (y > static_cast<u128>(std::numeric_limits<int64_t>::max())) {
      return Overflow();
    }
    absl::StatusOr<bool> b = SampleBernoulli(random, 1, 2);
    if (!b.ok()) return b.status();
    if (*b && y == 0) continue;
    return *b ? -static_cast<int64_t>(y) : static_cast<int64_t>(y);
  }
}

absl::StatusOr<int64_t> SampleDiscreteGaussian(RandomSource& random,
                                               const Rational& sigma2) {
  if (absl::Status s = CheckRational(sigma2, "discrete Gaussian sigma^2");
      !s.ok()) {
    return s;
  }
  const u128 a = sigma2.num;
  const u128 b = sigma2.den;
  // t = floor(sigma) + 1 = isqrt(floor(sigma^2)) + 1.
  const uint64_t t = ISqrt(sigma2.num / sigma2.den) + 1;
  u128 bt, two_ab, den;
  if (MulOverflows(b, t, &bt) || MulOverflows(2 * a, b, &two_ab) ||
      MulOverflows(two_ab, static_cast<u128>(t) * t, &den)) {
    return Overflow();
  }
  while (true) {
    absl::StatusOr<int64_t> y = SampleDiscreteLaplace(random, Rational{t, 1});
    if (!y.ok()) return y.status();
    const u128 abs_y = *y < 0 ? -static_cast<u128>(*y) : static_cast<u128>(*y);
    // gamma = (|y| - sigma^2/t)^2 / (2 sigma^2) = (|y| b t - a)^2 / (2 a b
    // t^2).
    u128 ybt;
    if (MulOverflows(abs_y, bt, &ybt)) return Overflow();
    const u128 diff = ybt >= a ? ybt - a : a - ybt;
    u128 num;
    if (MulOverflows(diff, diff, &num)) return Overflow();
    absl::StatusOr<bool> c = SampleBernoulliExp(random, num, den);
    if (!c.ok()) return c.status();
    if (*c) return *y;
  }
}

}  // namespace passerelle::privacy
