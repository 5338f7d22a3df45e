#include "privacy/cost.h"

#include <cmath>

#include "gtest/gtest.h"
#include "privacy/noise.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

DisclosureParams LaplaceParams(double epsilon) {
  DisclosureParams p;
  p.epsilon = epsilon;
  return p;
}

TEST(QueryCostTest, LaplaceComposesOverSitesAndConvertsToRho) {
  absl::StatusOr<QueryCost> c = ComputeQueryCost(LaplaceParams(0.1), 2);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->pure);
  EXPECT_EQ(c->epsilon_micros, 200000);  // 0.1 is exactly 100000 per site.
  EXPECT_EQ(c->rho_micros, 10000);       // 2 x 0.1^2 / 2.
  EXPECT_DOUBLE_EQ(c->epsilon, 0.2);
  EXPECT_DOUBLE_EQ(c->rho, 0.01);
  EXPECT_EQ(c->sites, 2);
}

TEST(QueryCostTest, RoundsUpToTheMicroGrid) {
  absl::StatusOr<QueryCost> c = ComputeQueryCost(LaplaceParams(1.0 / 3), 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->epsilon_micros, 333334);
  // rho = 333334^2 / 2e6 = 55555.77... rounded up.
  EXPECT_EQ(c->rho_micros, 55556);
  // A tiny epsilon still costs at least one micro-unit of rho.
  c = ComputeQueryCost(LaplaceParams(0.001), 1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->rho_micros, 1);
}

TEST(QueryCostTest, ChargeIsNeverBelowTheNoiseCalibration) {
  testing::SeededRandomSource random(5);
  for (int i = 0; i < 2000; ++i) {
    const double eps =
        1e-6 + static_cast<double>(UniformBelow(random, 1u << 30).value()) /
                   (1u << 30) * 10.0;
    absl::StatusOr<QueryCost> c = ComputeQueryCost(LaplaceParams(eps), 1);
    absl::StatusOr<NoiseSpec> spec = LaplaceSpecForEpsilon(eps);
    ASSERT_TRUE(c.ok() && spec.ok()) << eps;
    EXPECT_GE(c->epsilon_micros, spec->privacy_micros) << eps;
    // The noise is calibrated at or below the policy value.
    EXPECT_LE(static_cast<double>(spec->privacy_micros) / 1e6,
              eps * (1 + 1e-12));
  }
}

TEST(QueryCostTest, GaussianHasNoPureEpsilon) {
  DisclosureParams p;
  p.mechanism = Mechanism::kDiscreteGaussian;
  p.rho = 0.02;
  p.epsilon = 5;  // Ignored.
  absl::StatusOr<QueryCost> c = ComputeQueryCost(p, 3);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->pure);
  EXPECT_EQ(c->epsilon_micros, 0);
  EXPECT_EQ(c->rho_micros, 60000);
}

TEST(QueryCostTest, ExactModeCostsNothing) {
  DisclosureParams p;
  p.exact_mode = true;
  absl::StatusOr<QueryCost> c = ComputeQueryCost(p, 2);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->epsilon_micros, 0);
  EXPECT_EQ(c->rho_micros, 0);
}

TEST(QueryCostTest, RejectsMissingOrOutOfRangeParameters) {
  for (double bad : {0.0, -1.0, 1e-8, 101.0, std::nan("")}) {
    EXPECT_EQ(ComputeQueryCost(LaplaceParams(bad), 1).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  EXPECT_EQ(ComputeQueryCost(LaplaceParams(1), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  DisclosureParams g;
  g.mechanism = Mechanism::kDiscreteGaussian;
  EXPECT_EQ(ComputeQueryCost(g, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace passerelle::privacy
