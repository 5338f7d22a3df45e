#include "privacy/samplers.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

using testing::SeededRandomSource;

// |observed - n p| within 5 standard deviations.
void ExpectFrequency(int hits, int n, double p) {
  const double sd = std::sqrt(n * p * (1 - p));
  EXPECT_NEAR(hits, n * p, 5 * sd + 1) << "p=" << p;
}

TEST(RationalTest, Reduces) {
  absl::StatusOr<Rational> r = MakeRational(1000000, 250000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->num, 4u);
  EXPECT_EQ(r->den, 1u);
}

TEST(RationalTest, RejectsZeroDenominatorAndHugeParts) {
  EXPECT_EQ(MakeRational(1, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeRational(kMaxRationalPart + 1, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MakeRational(2 * kMaxRationalPart, 2).ok());
}

TEST(BernoulliTest, RationalProbability) {
  SeededRandomSource random(11);
  int hits = 0;
  constexpr int kN = 200000;
  for (int i = 0; i < kN; ++i) hits += *SampleBernoulli(random, 1, 3) ? 1 : 0;
  ExpectFrequency(hits, kN, 1.0 / 3);
  EXPECT_EQ(SampleBernoulli(random, 4, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(*SampleBernoulli(random, 5, 5));
  EXPECT_FALSE(*SampleBernoulli(random, 0, 5));
}

TEST(BernoulliExpTest, MatchesExpMinusGamma) {
  SeededRandomSource random(12);
  const std::vector<std::pair<int, int>> gammas = {
      {0, 1}, {1, 2}, {1, 1}, {5, 2}, {7, 3}};
  constexpr int kN = 200000;
  for (const auto& [num, den] : gammas) {
    int hits = 0;
    for (int i = 0; i < kN; ++i) {
      absl::StatusOr<bool> b = SampleBernoulliExp(random, num, den);
      ASSERT_TRUE(b.ok());
      hits += *b ? 1 : 0;
    }
    ExpectFrequency(hits, kN, std::exp(-static_cast<double>(num) / den));
  }
}

TEST(BernoulliExpTest, HugeGammaIsAlmostNeverTrue) {
  SeededRandomSource random(13);
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<bool> b = SampleBernoulliExp(random, 1000000, 3);
    ASSERT_TRUE(b.ok());
    EXPECT_FALSE(*b);
  }
}

TEST(GeometricTest, MeanMatches) {
  SeededRandomSource random(14);
  constexpr int kN = 200000;
  const double q = std::exp(-0.5);  // gamma = 1/2.
  double sum = 0;
  for (int i = 0; i < kN; ++i) {
    absl::StatusOr<uint64_t> g = SampleGeometric(random, Rational{1, 2});
    ASSERT_TRUE(g.ok());
    sum += static_cast<double>(*g);
  }
  const double mean = q / (1 - q);
  const double var = q / ((1 - q) * (1 - q));
  EXPECT_NEAR(sum / kN, mean, 5 * std::sqrt(var / kN));
  EXPECT_EQ(SampleGeometric(random, Rational{0, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DiscreteLaplaceTest, RejectsOutOfRangeScales) {
  SeededRandomSource random(15);
  EXPECT_EQ(SampleDiscreteLaplace(random, Rational{0, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampleDiscreteLaplace(random, Rational{1, 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SampleDiscreteLaplace(random, Rational{kMaxRationalPart + 1, 1})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DiscreteLaplaceTest, SymmetricWithExpectedVariance) {
  SeededRandomSource random(16);
  // t = 5/2: Var = 2 p / (1 - p)^2 with p = e^(-1/t).
  constexpr int kN = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < kN; ++i) {
    absl::StatusOr<int64_t> x = SampleDiscreteLaplace(random, Rational{5, 2});
    ASSERT_TRUE(x.ok());
    sum += static_cast<double>(*x);
    sum2 += static_cast<double>(*x) * static_cast<double>(*x);
  }
  const double p = std::exp(-0.4);
  const double var = 2 * p / ((1 - p) * (1 - p));
  EXPECT_NEAR(sum / kN, 0.0, 5 * std::sqrt(var / kN));
  EXPECT_NEAR(sum2 / kN, var, 0.03 * var);
}

TEST(DiscreteLaplaceTest, TinyScaleIsAlmostAlwaysZero) {
  SeededRandomSource random(17);
  int zeros = 0;
  for (int i = 0; i < 1000; ++i)
    zeros += *SampleDiscreteLaplace(random, Rational{1, 100}) == 0;
  EXPECT_EQ(zeros, 1000);
}

TEST(DiscreteGaussianTest, RejectsOutOfRangeAndHasExpectedVariance) {
  SeededRandomSource random(18);
  EXPECT_EQ(SampleDiscreteGaussian(random, Rational{0, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  constexpr int kN = 200000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < kN; ++i) {
    absl::StatusOr<int64_t> x = SampleDiscreteGaussian(random, Rational{25, 1});
    ASSERT_TRUE(x.ok());
    sum += static_cast<double>(*x);
    sum2 += static_cast<double>(*x) * static_cast<double>(*x);
  }
  // For sigma^2 = 25 the discrete Gaussian's variance equals 25 to ~1e-30.
  EXPECT_NEAR(sum / kN, 0.0, 5 * std::sqrt(25.0 / kN));
  EXPECT_NEAR(sum2 / kN, 25.0, 5 * std::sqrt(2.0 * 625 / kN));
}

TEST(SamplersTest, GeneratorFailureStopsSampling) {
  SeededRandomSource random(19);
  random.FailFromNowOn();
  EXPECT_EQ(SampleDiscreteLaplace(random, Rational{2, 1}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(SampleDiscreteGaussian(random, Rational{2, 1}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(SamplersTest, ExtremesOfTheSupportedRangeStayExact) {
  SeededRandomSource random(21);
  const uint64_t big = kMaxRationalPart;
  for (const Rational& r :
       {Rational{big, 1}, Rational{1, big}, Rational{big - 1, big}}) {
    for (int i = 0; i < 200; ++i) {
      absl::StatusOr<int64_t> l = SampleDiscreteLaplace(random, r);
      ASSERT_TRUE(l.ok()) << RationalToString(r) << ": " << l.status();
      absl::StatusOr<int64_t> g = SampleDiscreteGaussian(random, r);
      ASSERT_TRUE(g.ok()) << RationalToString(r) << ": " << g.status();
      if (r.num == 1) {
        // Scale / variance 2^-40: essentially always 0.
        EXPECT_EQ(*l, 0);
        EXPECT_EQ(*g, 0);
      } else if (r.den == 1) {
        // Scale 2^40 (sigma 2^20): far from 0 almost surely, never absurd.
        EXPECT_LT(std::llabs(*g), int64_t{1} << 27);
      }
    }
  }
}

TEST(SamplersTest, SameSeedSameDraws) {
  SeededRandomSource a(20), b(20);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(*SampleDiscreteGaussian(a, Rational{7, 3}),
              *SampleDiscreteGaussian(b, Rational{7, 3}));
  }
}

}  // namespace
}  // namespace passerelle::privacy
