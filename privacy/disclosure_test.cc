#include "privacy/disclosure.h"

#include <cmath>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/seeded_random_for_testing.h"

namespace passerelle::privacy {
namespace {

using passerelle::v1::Cell;
using passerelle::v1::CellKey;
using passerelle::v1::Precision;
using passerelle::v1::ReleasedCell;
using ::testing::HasSubstr;

// Returns scripted noise, one vector per Draw call.
class ScriptedNoise : public NoiseSource {
 public:
  explicit ScriptedNoise(std::deque<std::vector<int64_t>> draws)
      : draws_(std::move(draws)) {}
  absl::Status Draw(const NoiseSpec& spec, absl::Span<int64_t> out) override {
    specs.push_back(spec);
    if (draws_.empty()) return absl::UnavailableError("no more noise");
    std::vector<int64_t> d = draws_.front();
    draws_.pop_front();
    if (d.size() != out.size())
      return absl::InternalError("script size mismatch");
    std::copy(d.begin(), d.end(), out.begin());
    return absl::OkStatus();
  }
  std::vector<NoiseSpec> specs;

 private:
  std::deque<std::vector<int64_t>> draws_;
};

CellKey Key(std::vector<std::pair<std::string, std::string>> values) {
  CellKey k;
  for (const auto& [d, v] : values) {
    auto* dv = k.add_values();
    dv->set_dimension(d);
    dv->set_value(v);
  }
  return k;
}

std::vector<CellKey> SexKeys() {
  return {Key({{"sex", "female"}}), Key({{"sex", "male"}}),
          Key({{"sex", "other"}}), Key({{"sex", "unknown"}})};
}

SiteInput Site(const std::string& name, int64_t min,
               const std::vector<CellKey>& keys,
               const std::vector<int64_t>& counts) {
  SiteInput s;
  s.site = name;
  s.site_min_cell_size = min;
  for (size_t i = 0; i < keys.size(); ++i) {
    Cell& c = s.exact.emplace_back();
    *c.mutable_key() = keys[i];
    c.set_count(counts[i]);
  }
  return s;
}

DisclosureParams Laplace(double eps, int64_t fed_min) {
  DisclosureParams p;
  p.epsilon = eps;
  p.federation_min_cell_size = fed_min;
  return p;
}

TEST(ReleaseCellsTest, ThresholdIsDecidedOnTheNoisyValue) {
  const CellKey total = Key({});
  // True 12 with noise -3 is suppressed; true 8 with noise +3 is released.
  ScriptedNoise noise({{-3}, {+3}});
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 10, {total}, {12}), Site("qc", 5, {total}, {8})},
                   Laplace(0.5, 0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  const ReleasedCell& fr = r->per_site[0][0];
  EXPECT_FALSE(fr.has_count());
  EXPECT_EQ(fr.precision().kind(), Precision::SUPPRESSED);
  EXPECT_EQ(fr.precision().threshold(), 10);
  const ReleasedCell& qc = r->per_site[1][0];
  ASSERT_TRUE(qc.has_count());
  EXPECT_EQ(qc.count(), 11);
  EXPECT_EQ(qc.precision().kind(), Precision::NOISED);
  EXPECT_EQ(qc.precision().mechanism(), "discrete_laplace");
  EXPECT_DOUBLE_EQ(qc.precision().epsilon(), 0.5);
  EXPECT_EQ(qc.precision().threshold(), 5);
  // Interval from the exact distribution (t = 2, 95%): 11 +- 5.
  const int64_t h =
      NoiseHalfWidth(LaplaceSpecForEpsilon(0.5).value(), 1, 0.95).value();
  EXPECT_EQ(qc.interval_low(), 11 - h);
  EXPECT_EQ(qc.interval_high(), 11 + h);
  // Combined: 9 + 11 = 20 against the strictest threshold (10).
  const ReleasedCell& combined = r->combined[0];
  ASSERT_TRUE(combined.has_count());
  EXPECT_EQ(combined.count(), 20);
  EXPECT_EQ(combined.precision().threshold(), 10);
  const int64_t h2 =
      NoiseHalfWidth(LaplaceSpecForEpsilon(0.5).value(), 2, 0.95).value();
  EXPECT_EQ(combined.interval_high() - combined.count(), h2);
  EXPECT_GT(h2, h);
}

TEST(ReleaseCellsTest, SiteThresholdIsTheStricterOfSiteAndFederation) {
  const CellKey total = Key({});
  ScriptedNoise noise({{0}, {0}});
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 12, {total}, {11}), Site("qc", 5, {total}, {9})},
                   Laplace(1, 10), noise);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->per_site[0][0].precision().threshold(), 12);
  EXPECT_EQ(r->per_site[0][0].precision().kind(), Precision::SUPPRESSED);
  EXPECT_EQ(r->per_site[1][0].precision().threshold(), 10);
  EXPECT_EQ(r->per_site[1][0].precision().kind(), Precision::SUPPRESSED);
  EXPECT_EQ(r->combined[0].precision().threshold(), 12);
  EXPECT_EQ(r->combined[0].count(), 20);
}

TEST(ReleaseCellsTest, EveryCellOfTheDomainIsReleasedIncludingZeros) {
  ScriptedNoise noise({{1, -1, 0, 2}});
  absl::StatusOr<Release> r = ReleaseCells(
      {Site("fr", 0, SexKeys(), {40, 0, 0, 3})}, Laplace(1, 0), noise);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->per_site[0].size(), 4u);
  // Threshold 0: a negative noisy value shows as 0, never suppressed.
  EXPECT_EQ(r->per_site[0][1].count(), 0);
  EXPECT_EQ(r->per_site[0][1].precision().kind(), Precision::NOISED);
  EXPECT_EQ(r->per_site[0][1].interval_low(), 0);
  EXPECT_EQ(r->per_site[0][3].count(), 5);
  EXPECT_EQ(r->combined.size(), 4u);
  EXPECT_EQ(r->combined[0].key().values(0).value(), "female");
}

TEST(ReleaseCellsTest, RoundingComesLastAndWidensTheInterval) {
  DisclosureParams p = Laplace(1, 0);
  p.rounding = 5;
  ScriptedNoise noise(std::deque<std::vector<int64_t>>{{+1}});
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 0, {Key({})}, {22})}, p, noise);
  ASSERT_TRUE(r.ok());
  const ReleasedCell& c = r->per_site[0][0];
  EXPECT_EQ(c.count(), 25);  // 23 rounds to 25.
  EXPECT_EQ(c.precision().rounding(), 5);
  const int64_t h =
      NoiseHalfWidth(LaplaceSpecForEpsilon(1).value(), 1, 0.95).value();
  EXPECT_EQ(c.interval_high(), 25 + h + 2);  // |25 - 23| <= 5/2.
  EXPECT_EQ(RoundToMultiple(-7, 5), -5);
  EXPECT_EQ(RoundToMultiple(12, 10), 10);
  EXPECT_EQ(RoundToMultiple(15, 10), 20);
}

TEST(ReleaseCellsTest, GaussianSaysRhoAndNotesPatientsAtBothSites) {
  DisclosureParams p;
  p.mechanism = Mechanism::kDiscreteGaussian;
  p.rho = 0.125;  // sigma^2 = 4.
  ScriptedNoise noise({{0}, {0}});
  absl::StatusOr<Release> r = ReleaseCells(
      {Site("fr", 0, {Key({})}, {30}), Site("qc", 0, {Key({})}, {30})}, p,
      noise);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(noise.specs[0].parameter.num, 4u);
  EXPECT_EQ(r->per_site[0][0].precision().mechanism(), "discrete_gaussian");
  EXPECT_DOUBLE_EQ(r->per_site[0][0].precision().rho(), 0.125);
  EXPECT_THAT(r->notes,
              ::testing::Contains(HasSubstr("counted once at each site")));
}

TEST(ReleaseCellsTest, RejectsInconsistentInputs) {
  ScriptedNoise noise({});
  auto code = [&](std::vector<SiteInput> sites, DisclosureParams p) {
    return ReleaseCells(sites, p, noise).status().code();
  };
  const auto keys = SexKeys();
  EXPECT_EQ(code({}, Laplace(1, 0)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({Site("fr", 0, keys, {1, 2, 3, 4}),
                  Site("qc", 0, {keys[0], keys[1]}, {1, 2})},
                 Laplace(1, 0)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      code({Site("fr", 0, keys, {1, 2, 3, 4}),
            Site("qc", 0, {keys[1], keys[0], keys[2], keys[3]}, {1, 2, 3, 4})},
           Laplace(1, 0)),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({Site("fr", 0, keys, {1, 2, 3, 4}),
                  Site("fr", 0, keys, {1, 2, 3, 4})},
                 Laplace(1, 0)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({Site("fr", 0, keys, {1, -2, 3, 4})}, Laplace(1, 0)),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code({Site("fr", 0, keys, {1, 2, 3, 4})}, Laplace(0, 0)),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReleaseCellsTest, NoiseFailureReleasesNothing) {
  ScriptedNoise noise({});
  EXPECT_EQ(ReleaseCells({Site("fr", 0, {Key({})}, {5})}, Laplace(1, 0), noise)
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
}

TEST(ReleaseCellsTest, IntervalsCoverTheTrueCountAtLeast95Percent) {
  testing::SeededRandomSource random(77);
  DirectNoiseSource noise(&random);
  const int kRuns = 4000;
  int site_hits = 0, combined_hits = 0;
  for (int i = 0; i < kRuns; ++i) {
    absl::StatusOr<Release> r = ReleaseCells(
        {Site("fr", 0, {Key({})}, {50}), Site("qc", 0, {Key({})}, {70})},
        Laplace(0.5, 0), noise);
    ASSERT_TRUE(r.ok());
    const ReleasedCell& s = r->per_site[0][0];
    site_hits += s.interval_low() <= 50 && 50 <= s.interval_high();
    const ReleasedCell& c = r->combined[0];
    combined_hits += c.interval_low() <= 120 && 120 <= c.interval_high();
  }
  // Coverage >= 95% minus 4 standard deviations of the estimate.
  const double slack = 4 * std::sqrt(0.95 * 0.05 / kRuns);
  EXPECT_GE(static_cast<double>(site_hits) / kRuns, 0.95 - slack);
  EXPECT_GE(static_cast<double>(combined_hits) / kRuns, 0.95 - slack);
}

// Independent checker: in every relation (a cell across sites + combined;
// each row's total; each line along one dimension), the number of
// suppressed cells is 0 or at least 2.
void ExpectNoDerivableCell(const Release& r) {
  std::vector<const std::vector<ReleasedCell>*> rows;
  for (const auto& s : r.per_site) rows.push_back(&s);
  rows.push_back(&r.combined);
  const size_t n = r.combined.size();
  for (size_t i = 0; i < n; ++i) {
    int suppressed = 0;
    for (const auto* row : rows) suppressed += !(*row)[i].has_count();
    EXPECT_NE(suppressed, 1) << "cell " << i << " across sites";
  }
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const auto& row = *rows[ri];
    int all = 0;
    for (const ReleasedCell& c : row) all += !c.has_count();
    if (n > 1) {
      EXPECT_NE(all, 1) << "row " << ri << " total";
    }
    const int dims = row[0].key().values_size();
    for (int d = 0; d < dims && dims > 1; ++d) {
      std::map<std::string, int> lines;
      for (const ReleasedCell& c : row) {
        std::string rest;
        for (int j = 0; j < dims; ++j) {
          if (j != d) rest += c.key().values(j).value() + "|";
        }
        lines[rest] += !c.has_count();
      }
      for (const auto& [line, count] : lines) {
        EXPECT_NE(count, 1)
            << "row " << ri << " dimension " << d << " line " << line;
      }
    }
  }
}

DisclosureParams Exact(int64_t fed_min) {
  DisclosureParams p;
  p.exact_mode = true;
  p.federation_min_cell_size = fed_min;
  return p;
}

TEST(ReleaseCellsExactTest, ComplementarySuppressionInOneDimension) {
  ScriptedNoise noise({});  // Exact mode never draws noise.
  absl::StatusOr<Release> r = ReleaseCells(
      {Site("fr", 10, SexKeys(), {120, 85, 3, 40})}, Exact(0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto& cells = r->per_site[0];
  EXPECT_EQ(cells[0].count(), 120);
  EXPECT_EQ(cells[0].precision().kind(), Precision::EXACT);
  EXPECT_FALSE(cells[2].has_count());  // Primary: 3 < 10.
  EXPECT_FALSE(
      cells[3].has_count());  // Complementary: the smallest other cell.
  EXPECT_EQ(cells[3].precision().kind(), Precision::SUPPRESSED);
  EXPECT_TRUE(noise.specs.empty());
  EXPECT_THAT(r->notes, ::testing::Contains(
                            HasSubstr("no differential privacy guarantee")));
  ExpectNoDerivableCell(*r);
}

TEST(ReleaseCellsExactTest, AcrossSitesAndTwoDimensions) {
  std::vector<CellKey> keys;
  for (const char* sex : {"female", "male"}) {
    for (const char* age : {"40-49", "50-59", "60-69"}) {
      keys.push_back(Key({{"sex", sex}, {"age_band", age}}));
    }
  }
  ScriptedNoise noise({});
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 10, keys, {50, 60, 4, 45, 70, 80}),
                    Site("qc", 5, keys, {30, 2, 25, 33, 41, 52})},
                   Exact(0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->per_site[0][2].has_count());
  EXPECT_FALSE(r->per_site[1][1].has_count());
  ExpectNoDerivableCell(*r);
  EXPECT_THAT(r->notes,
              ::testing::Contains(HasSubstr("complementary suppression")));
}

TEST(ReleaseCellsExactTest, RandomTablesNeverLeaveADerivableCell) {
  testing::SeededRandomSource random(9);
  std::vector<CellKey> keys;
  for (const char* sex : {"female", "male", "other"}) {
    for (const char* age : {"0-19", "20-39", "40-59", "60+"}) {
      keys.push_back(Key({{"sex", sex}, {"age_band", age}}));
    }
  }
  ScriptedNoise noise({});
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<SiteInput> sites;
    for (const char* name : {"fr", "qc", "be"}) {
      std::vector<int64_t> counts;
      for (size_t i = 0; i < keys.size(); ++i) {
        counts.push_back(
            static_cast<int64_t>(UniformBelow(random, 40).value()));
      }
      sites.push_back(
          Site(name, 5 + static_cast<int64_t>(UniformBelow(random, 6).value()),
               keys, counts));
    }
    absl::StatusOr<Release> r = ReleaseCells(sites, Exact(8), noise);
    ASSERT_TRUE(r.ok());
    ExpectNoDerivableCell(*r);
    // Primary suppression is never skipped.
    for (size_t s = 0; s < sites.size(); ++s) {
      for (size_t i = 0; i < keys.size(); ++i) {
        if (sites[s].exact[i].count() <
            std::max<int64_t>(sites[s].site_min_cell_size, 8)) {
          EXPECT_FALSE(r->per_site[s][i].has_count());
        } else if (r->per_site[s][i].has_count()) {
          EXPECT_EQ(r->per_site[s][i].count(), sites[s].exact[i].count());
        }
      }
    }
  }
}

}  // namespace
}  // namespace passerelle::privacy
