// The statistical checks of privacy.md "How correctness is checked", on a
// seeded source (reproducible) plus one smoke test on OpenSSL's generator.
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "privacy/noise.h"
#include "privacy/random.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

using testing::SeededRandomSource;

// Regularised upper incomplete gamma Q(a, x) (Numerical Recipes 6.2).
double GammaQ(double a, double x) {
  const double gln = std::lgamma(a);
  if (x < a + 1) {
    double ap = a, sum = 1.0 / a, del = sum;
    for (int n = 0; n < 10000; ++n) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (std::fabs(del) < std::fabs(sum) * 1e-15) break;
    }
    return 1.0 - sum * std::exp(-x + a * std::log(x) - gln);
  }
  double b = x + 1 - a, c = 1.0 / 1e-300, d = 1.0 / b, h = d;
  for (int i = 1; i < 10000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (std::fabs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-15) break;
  }
  return std::exp(-x + a * std::log(x) - gln) * h;
}

// p-value of a chi-square goodness-of-fit of `counts` (value -> count)
// against `pmf`, with bins of expected count >= 5 and the tails pooled.
template <typename Pmf>
double ChiSquarePValue(const std::map<int64_t, int64_t>& counts, int64_t n,
                       Pmf pmf) {
  // Central bins: every k whose expected count is >= 5.
  int64_t lo = 0, hi = 0;
  while (pmf(lo - 1) * n >= 5) --lo;
  while (pmf(hi + 1) * n >= 5) ++hi;
  double central_mass = 0;
  double stat = 0;
  int64_t central_count = 0;
  for (int64_t k = lo; k <= hi; ++k) {
    const double e = pmf(k) * n;
    auto it = counts.find(k);
    const double o = it == counts.end() ? 0 : static_cast<double>(it->second);
    stat += (o - e) * (o - e) / e;
    central_mass += pmf(k);
    central_count += static_cast<int64_t>(o);
  }
  int bins = static_cast<int>(hi - lo + 1);
  // Both tails as one bin (symmetric distributions: each tail is small).
  const double e_tail = (1.0 - central_mass) * n;
  const double o_tail = static_cast<double>(n - central_count);
  if (e_tail >= 5) {
    stat += (o_tail - e_tail) * (o_tail - e_tail) / e_tail;
    ++bins;
  }
  return GammaQ((bins - 1) / 2.0, stat / 2.0);
}

std::map<int64_t, int64_t> Histogram(RandomSource& random,
                                     const NoiseSpec& spec, int64_t n) {
  std::map<int64_t, int64_t> counts;
  for (int64_t i = 0; i < n; ++i) {
    absl::StatusOr<int64_t> x = SampleNoise(random, spec);
    EXPECT_TRUE(x.ok()) << x.status();
    ++counts[x.value_or(0)];
  }
  return counts;
}

TEST(ChiSquareTest, HelperMatchesClosedFormsAndRejectsAWrongPmf) {
  // Closed forms: Q(1, x) = e^-x, Q(2, x) = e^-x (1 + x),
  // Q(1/2, x) = erfc(sqrt x); both branches of GammaQ are exercised.
  EXPECT_NEAR(GammaQ(1.0, 2.0), std::exp(-2.0), 1e-12);
  EXPECT_NEAR(GammaQ(2.0, 3.0), 4 * std::exp(-3.0), 1e-12);
  EXPECT_NEAR(GammaQ(2.0, 0.5), 1.5 * std::exp(-0.5), 1e-12);
  EXPECT_NEAR(GammaQ(0.5, 0.7), std::erfc(std::sqrt(0.7)), 1e-12);
  // A fair die's counts pass; a loaded one fails.
  std::map<int64_t, int64_t> fair = {{0, 1000}, {1, 1010}, {2, 990}, {3, 1000}};
  std::map<int64_t, int64_t> loaded = {{0, 1200}, {1, 950}, {2, 900}, {3, 950}};
  auto uniform = [](int64_t k) { return k >= 0 && k < 4 ? 0.25 : 0.0; };
  EXPECT_GT(ChiSquarePValue(fair, 4000, uniform), 0.5);
  EXPECT_LT(ChiSquarePValue(loaded, 4000, uniform), 1e-6);
}

constexpr int64_t kSamples = 1000000;

TEST(DiscreteLaplaceShapeTest, FitsExactPmfAndDetectsThreePercentScaleErrors) {
  // epsilon = 0.5: t = 2.
  absl::StatusOr<NoiseSpec> spec = LaplaceSpecForEpsilon(0.5);
  ASSERT_TRUE(spec.ok());
  const double t =
      static_cast<double>(spec->parameter.num) / spec->parameter.den;
  ASSERT_DOUBLE_EQ(t, 2.0);
  SeededRandomSource random(20201);
  const std::map<int64_t, int64_t> counts = Histogram(random, *spec, kSamples);
  auto laplace = [](double scale) {
    return [scale](int64_t k) {
      return std::tanh(1.0 / (2 * scale)) *
             std::exp(-std::fabs(static_cast<double>(k)) / scale);
    };
  };
  const double p = ChiSquarePValue(counts, kSamples, laplace(t));
  EXPECT_GT(p, 1e-6);
  EXPECT_LT(ChiSquarePValue(counts, kSamples, laplace(t * 0.97)), 1e-6);
  EXPECT_LT(ChiSquarePValue(counts, kSamples, laplace(t * 1.03)), 1e-6);
}

TEST(DiscreteLaplaceShapeTest, FitsAtANonIntegerScale) {
  // epsilon = 0.3: t = 10/3, a scale with a non-trivial denominator.
  absl::StatusOr<NoiseSpec> spec = LaplaceSpecForEpsilon(0.3);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->parameter.num, 10u);
  EXPECT_EQ(spec->parameter.den, 3u);
  SeededRandomSource random(20202);
  const int64_t n = 300000;
  const std::map<int64_t, int64_t> counts = Histogram(random, *spec, n);
  const double t = 10.0 / 3.0;
  EXPECT_GT(
      ChiSquarePValue(counts, n,
                      [t](int64_t k) {
                        return std::tanh(1.0 / (2 * t)) *
                               std::exp(-std::fabs(static_cast<double>(k)) / t);
                      }),
      1e-6);
}

// Discrete Gaussian pmf for sigma^2 = s2, normalised over a wide support.
std::function<double(int64_t)> GaussianPmf(double s2) {
  double z = 0;
  const int64_t m = static_cast<int64_t>(std::ceil(std::sqrt(s2) * 12)) + 2;
  for (int64_t k = -m; k <= m; ++k)
    z += std::exp(-static_cast<double>(k * k) / (2 * s2));
  return [s2, z](int64_t k) {
    return std::exp(-static_cast<double>(k * k) / (2 * s2)) / z;
  };
}

TEST(DiscreteGaussianShapeTest, FitsExactPmfAndDetectsScaleErrors) {
  // rho = 0.05: sigma^2 = 10.
  absl::StatusOr<NoiseSpec> spec = GaussianSpecForRho(0.05);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->parameter.num, 10u);
  EXPECT_EQ(spec->parameter.den, 1u);
  SeededRandomSource random(20203);
  const std::map<int64_t, int64_t> counts = Histogram(random, *spec, kSamples);
  EXPECT_GT(ChiSquarePValue(counts, kSamples, GaussianPmf(10.0)), 1e-6);
  EXPECT_LT(ChiSquarePValue(counts, kSamples, GaussianPmf(10.0 * 0.95)), 1e-6);
  EXPECT_LT(ChiSquarePValue(counts, kSamples, GaussianPmf(10.0 * 1.05)), 1e-6);
}

// Wilson score interval for a proportion.
struct Interval {
  double low, high;
};
Interval Wilson(int64_t hits, int64_t n, double z) {
  const double p = static_cast<double>(hits) / n;
  const double z2 = z * z;
  const double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const double half =
      z * std::sqrt(p * (1 - p) / n + z2 / (4.0 * n * n)) / (1 + z2 / n);
  return {centre - half, centre + half};
}

// Lower confidence bound (z = 5) of ln P[Y >= c+1 | c+1] - ln P[Y >= c+1 | c]
// where Y = count + noise, from `n` releases of each neighbour.
double EpsilonLowerBound(RandomSource& random, const NoiseSpec& spec, int64_t c,
                         int64_t n) {
  int64_t hits_high = 0, hits_low = 0;
  for (int64_t i = 0; i < n; ++i) {
    hits_high += (c + 1 + SampleNoise(random, spec).value()) >= c + 1;
    hits_low += (c + SampleNoise(random, spec).value()) >= c + 1;
  }
  const Interval high = Wilson(hits_high, n, 5.0);
  const Interval low = Wilson(hits_low, n, 5.0);
  return std::log(high.low) - std::log(low.high);
}

TEST(EpsilonClaimTest, NeighbouringCountsDoNotExceedClaimedEpsilon) {
  for (double epsilon : {0.1, 0.5, 1.0}) {
    absl::StatusOr<NoiseSpec> spec = LaplaceSpecForEpsilon(epsilon);
    ASSERT_TRUE(spec.ok());
    SeededRandomSource random(static_cast<uint64_t>(epsilon * 1000) + 5);
    const double bound = EpsilonLowerBound(random, *spec, /*c=*/10, 500000);
    EXPECT_LE(bound, epsilon) << "epsilon " << epsilon;
    // The event is the worst case for discrete Laplace (ratio exactly
    // e^epsilon), so the bound is also close to the claim: the test has power.
    EXPECT_GT(bound, epsilon * 0.8) << "epsilon " << epsilon;
  }
}

TEST(EpsilonClaimTest, DetectsNoiseWeakerThanClaimed) {
  // Noise calibrated for epsilon = 0.7 but claimed as 0.5: caught.
  absl::StatusOr<NoiseSpec> weaker = LaplaceSpecForEpsilon(0.7);
  ASSERT_TRUE(weaker.ok());
  SeededRandomSource random(99);
  EXPECT_GT(EpsilonLowerBound(random, *weaker, 10, 500000), 0.5);
}

TEST(OpenSslSmokeTest, ProductionPathHasExpectedMoments) {
  OpenSslRandomSource random;
  absl::StatusOr<std::unique_ptr<NoiseSource>> noise =
      NewProductionNoiseSource(&random);
  ASSERT_TRUE(noise.ok());
  absl::StatusOr<NoiseSpec> spec = LaplaceSpecForEpsilon(0.5);
  ASSERT_TRUE(spec.ok());
  // Prewarmed: the draws come from the pool filled off the request path.
  ASSERT_TRUE((*noise)->Prewarm(*spec).ok());
  std::vector<int64_t> draws(16000);
  ASSERT_TRUE((*noise)->Draw(*spec, absl::MakeSpan(draws)).ok());
  double sum = 0, sum2 = 0;
  for (int64_t x : draws) {
    sum += static_cast<double>(x);
    sum2 += static_cast<double>(x) * static_cast<double>(x);
  }
  const double p = std::exp(-0.5);
  const double var = 2 * p / ((1 - p) * (1 - p));
  const double n = static_cast<double>(draws.size());
  EXPECT_NEAR(sum / n, 0.0, 6 * std::sqrt(var / n));
  EXPECT_NEAR(sum2 / n, var, 0.1 * var);
}

}  // namespace
}  // namespace passerelle::privacy
