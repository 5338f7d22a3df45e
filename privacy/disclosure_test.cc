#include "privacy/disclosure.h"

#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// Independent checker, by linear algebra. The unknowns are the suppressed
// entries of the table (every site's cells and the combined row); a reader
// knows every released entry, that each cell's combined count is the sum of
// the sites' counts, and (at worst) every margin of every row: the sum over
// any non-empty subset of the dimensions, for each value of the others (the
// whole row's total included). A suppressed entry is determined iff its unit
// vector lies in the span of those relations restricted to the unknowns:
// checked by reducing them to row echelon form modulo a prime (a rational
// combination that isolates an unknown survives modulo any prime that
// divides none of its denominators; two primes are tried). Returns the
// determined entries as "row/cell" (row = site index, or "combined").
constexpr uint64_t kPrimes[] = {(uint64_t{1} << 61) - 1, 1000000007};

uint64_t MulMod(uint64_t a, uint64_t b, uint64_t p) {
  return static_cast<uint64_t>(static_cast<unsigned __int128>(a) * b % p);
}

uint64_t PowMod(uint64_t a, uint64_t e, uint64_t p) {
  uint64_t r = 1;
  for (; e > 0; e >>= 1, a = MulMod(a, a, p)) {
    if (e & 1) r = MulMod(r, a, p);
  }
  return r;
}

std::vector<std::string> DeterminedEntries(const Release& r) {
  std::vector<const std::vector<ReleasedCell>*> rows;
  for (const auto& s : r.per_site) rows.push_back(&s);
  rows.push_back(&r.combined);
  const size_t n = r.combined.size();
  auto name = [&](size_t e) {
    const size_t row = e / n;
    return absl::StrCat(
        row + 1 == rows.size() ? "combined" : absl::StrCat("site", row), "/",
        e % n);
  };
  // Relations over entries (row * n + cell), coefficients +1/-1.
  std::vector<std::map<size_t, int>> relations;
  for (size_t i = 0; i < n; ++i) {
    auto& rel = relations.emplace_back();
    for (size_t row = 0; row + 1 < rows.size(); ++row) rel[row * n + i] = 1;
    rel[(rows.size() - 1) * n + i] = -1;
  }
  const int dims = n == 0 ? 0 : r.combined[0].key().values_size();
  for (size_t row = 0; row < rows.size(); ++row) {
    for (int subset = 1; subset < (1 << dims); ++subset) {
      std::map<std::string, std::map<size_t, int>> margins;
      for (size_t i = 0; i < n; ++i) {
        std::string rest;
        for (int d = 0; d < dims; ++d) {
          if (!((subset >> d) & 1)) {
            rest += (*rows[row])[i].key().values(d).value() + "|";
          }
        }
        margins[rest][row * n + i] = 1;
      }
      for (auto& [rest, rel] : margins) relations.push_back(std::move(rel));
    }
  }
  std::vector<size_t> unknowns;
  std::map<size_t, size_t> column;
  for (size_t row = 0; row < rows.size(); ++row) {
    for (size_t i = 0; i < n; ++i) {
      if (!(*rows[row])[i].has_count()) {
        column[row * n + i] = unknowns.size();
        unknowns.push_back(row * n + i);
      }
    }
  }
  std::set<std::string> determined;
  for (uint64_t p : kPrimes) {
    std::vector<std::vector<uint64_t>> m;
    for (const auto& rel : relations) {
      std::vector<uint64_t> line(unknowns.size(), 0);
      bool any = false;
      for (const auto& [e, coef] : rel) {
        auto it = column.find(e);
        if (it == column.end()) continue;  // Released: known.
        line[it->second] = coef > 0 ? 1 : p - 1;
        any = true;
      }
      if (any) m.push_back(std::move(line));
    }
    // Reduced row echelon form.
    size_t rank = 0;
    for (size_t c = 0; c < unknowns.size() && rank < m.size(); ++c) {
      size_t pivot = rank;
      while (pivot < m.size() && m[pivot][c] == 0) ++pivot;
      if (pivot == m.size()) continue;
      std::swap(m[rank], m[pivot]);
      const uint64_t inv = PowMod(m[rank][c], p - 2, p);
      for (uint64_t& v : m[rank]) v = MulMod(v, inv, p);
      for (size_t i = 0; i < m.size(); ++i) {
        if (i == rank || m[i][c] == 0) continue;
        const uint64_t f = m[i][c];
        for (size_t j = 0; j < unknowns.size(); ++j) {
          m[i][j] = (m[i][j] + p - MulMod(f, m[rank][j], p)) % p;
        }
      }
      ++rank;
    }
    for (size_t i = 0; i < rank; ++i) {
      int nonzero = 0;
      size_t at = 0;
      for (size_t j = 0; j < unknowns.size(); ++j) {
        if (m[i][j] != 0) {
          ++nonzero;
          at = j;
        }
      }
      if (nonzero == 1) determined.insert(name(unknowns[at]));
    }
  }
  return {determined.begin(), determined.end()};
}

void ExpectNoDerivableCell(const Release& r) {
  EXPECT_THAT(DeterminedEntries(r), ::testing::IsEmpty());
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
  EXPECT_FALSE(cells[2].precision().complementary());
  // Complementary: the next position on the axis (not the smallest value).
  EXPECT_FALSE(cells[3].has_count());
  EXPECT_EQ(cells[3].precision().kind(), Precision::SUPPRESSED);
  EXPECT_TRUE(cells[3].precision().complementary());
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

// Every shape: one to three sites, no breakdown, one dimension, two.
TEST(ReleaseCellsExactTest, RandomShapesNeverLeaveADerivableCell) {
  testing::SeededRandomSource random(17);
  std::vector<std::vector<CellKey>> shapes = {{Key({})}, SexKeys(), {}};
  for (const char* sex : {"female", "male"}) {
    for (const char* age : {"0-39", "40-79", "80+"}) {
      shapes[2].push_back(Key({{"sex", sex}, {"age_band", age}}));
    }
  }
  ScriptedNoise noise({});
  for (const auto& keys : shapes) {
    for (size_t site_count = 1; site_count <= 3; ++site_count) {
      for (int trial = 0; trial < 60; ++trial) {
        std::vector<SiteInput> sites;
        for (size_t s = 0; s < site_count; ++s) {
          std::vector<int64_t> counts;
          for (size_t i = 0; i < keys.size(); ++i) {
            counts.push_back(
                static_cast<int64_t>(UniformBelow(random, 25).value()));
          }
          sites.push_back(Site(absl::StrCat("s", s), 10, keys, counts));
        }
        absl::StatusOr<Release> r = ReleaseCells(sites, Exact(0), noise);
        ASSERT_TRUE(r.ok()) << r.status();
        ExpectNoDerivableCell(*r);
      }
    }
  }
}

// The widest breakdown (sex x age_band(1): 4 x 111 cells) at five sites,
// about a third of the cells small: released whole (each suppressed cell a
// corner of a suppressed box is checked on the small tables above).
TEST(ReleaseCellsExactTest, WidestBreakdownIsReleased) {
  std::vector<CellKey> keys;
  for (const char* sex : {"female", "male", "other", "unknown"}) {
    for (int age = 0; age <= 110; ++age) {
      keys.push_back(Key({{"sex", sex}, {"age_band", absl::StrCat(age)}}));
    }
  }
  testing::SeededRandomSource random(23);
  std::vector<SiteInput> sites;
  for (int s = 0; s < 5; ++s) {
    std::vector<int64_t> counts;
    for (size_t i = 0; i < keys.size(); ++i) {
      counts.push_back(static_cast<int64_t>(UniformBelow(random, 30).value()));
    }
    sites.push_back(Site(absl::StrCat("s", s), 10, keys, counts));
  }
  ScriptedNoise noise({});
  absl::StatusOr<Release> r = ReleaseCells(sites, Exact(0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  for (size_t s = 0; s < sites.size(); ++s) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (sites[s].exact[i].count() < 10) {
        EXPECT_FALSE(r->per_site[s][i].has_count());
      }
    }
  }
}

// The example: FR = 3 (site minimum 10), QC = 40. The pattern
// protects FR against the combined count in every form the cohort can be
// asked (the gateway releases `group by site` as the sites' rows of this
// same table): FR and QC are withheld, the combined 43 is released.
TEST(ReleaseCellsExactTest, ASiteIsProtectedAgainstTheCombinedCount) {
  ScriptedNoise noise({});
  const std::vector<CellKey> total = {Key({})};
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 10, total, {3}), Site("qc", 5, total, {40})},
                   Exact(0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->per_site[0][0].has_count());
  EXPECT_FALSE(r->per_site[0][0].precision().complementary());
  EXPECT_EQ(r->per_site[0][0].precision().threshold(), 10);
  EXPECT_FALSE(r->per_site[1][0].has_count());
  EXPECT_TRUE(r->per_site[1][0].precision().complementary());
  ASSERT_TRUE(r->combined[0].has_count());
  EXPECT_EQ(r->combined[0].count(), 43);
  ExpectNoDerivableCell(*r);
}

// A site's cell in a breakdown is protected against the site's other cells
// (its total is a margin) and against the combined row at once.
TEST(ReleaseCellsExactTest, ASitesCellIsProtectedInsideABreakdown) {
  ScriptedNoise noise({});
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 10, SexKeys(), {3, 30, 12, 15}),
                    Site("qc", 5, SexKeys(), {40, 50, 60, 70})},
                   Exact(0), noise);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->per_site[0][0].has_count());
  ExpectNoDerivableCell(*r);
  int suppressed = 0;
  for (const auto& row : {r->per_site[0], r->per_site[1], r->combined}) {
    for (const ReleasedCell& c : row) suppressed += !c.has_count();
  }
  EXPECT_EQ(suppressed, 4);  // One box: two rows x two sexes.
}

// The suppressed positions depend on which cells are below the minimum,
// never on the values of the others.
TEST(ReleaseCellsExactTest, ProtectingCellsDoNotDependOnReleasedValues) {
  std::vector<CellKey> keys;
  for (const char* sex : {"female", "male", "other"}) {
    for (const char* age : {"0-19", "20-39", "40-59", "60+"}) {
      keys.push_back(Key({{"sex", sex}, {"age_band", age}}));
    }
  }
  // Cells below 10 at these positions (the values of all vary from trial to
  // trial).
  const std::set<size_t> small_fr = {1, 6};
  const std::set<size_t> small_qc = {6, 11};
  testing::SeededRandomSource random(5);
  ScriptedNoise noise({});
  std::vector<std::string> first;
  for (int trial = 0; trial < 20; ++trial) {
    auto counts = [&](const std::set<size_t>& small) {
      std::vector<int64_t> out;
      for (size_t i = 0; i < keys.size(); ++i) {
        const int64_t v =
            static_cast<int64_t>(UniformBelow(random, 1000).value());
        // Below 5 at both sites: the combined cell is below 10 too.
        out.push_back(small.count(i) ? v % 5 : 20 + v);
      }
      return out;
    };
    absl::StatusOr<Release> r =
        ReleaseCells({Site("fr", 10, keys, counts(small_fr)),
                      Site("qc", 10, keys, counts(small_qc))},
                     Exact(0), noise);
    ASSERT_TRUE(r.ok()) << r.status();
    ExpectNoDerivableCell(*r);
    std::vector<std::string> pattern;
    for (const auto& row : {r->per_site[0], r->per_site[1], r->combined}) {
      std::string line;
      for (const ReleasedCell& c : row) {
        line += c.has_count() ? "." : c.precision().complementary() ? "c" : "p";
      }
      pattern.push_back(line);
    }
    if (trial == 0) {
      first = pattern;
      EXPECT_NE(first[0].find('c'), std::string::npos);
    } else {
      EXPECT_EQ(pattern, first) << "trial " << trial;
    }
  }
}

// The same table given with the sites, or the dimensions, in another order
// gets the same pattern cell for cell: `group by sex, age_band` and
// `group by age_band, sex` (and any order of sites) release the same.
TEST(ReleaseCellsExactTest, PatternDoesNotDependOnTheOrderOfSitesOrDims) {
  const std::vector<const char*> sexes = {"female", "male", "other"};
  const std::vector<const char*> ages = {"0-19", "20-39", "40-59"};
  const std::vector<int64_t> fr = {3, 40, 50, 60, 7, 80, 90, 100, 110};
  const std::vector<int64_t> qc = {30, 40, 2, 60, 70, 80, 90, 5, 110};
  std::vector<CellKey> sex_age, age_sex;
  std::vector<int64_t> fr_t, qc_t;
  for (size_t s = 0; s < sexes.size(); ++s) {
    for (size_t a = 0; a < ages.size(); ++a) {
      sex_age.push_back(Key({{"sex", sexes[s]}, {"age_band", ages[a]}}));
    }
  }
  for (size_t a = 0; a < ages.size(); ++a) {
    for (size_t s = 0; s < sexes.size(); ++s) {
      age_sex.push_back(Key({{"age_band", ages[a]}, {"sex", sexes[s]}}));
      fr_t.push_back(fr[s * ages.size() + a]);
      qc_t.push_back(qc[s * ages.size() + a]);
    }
  }
  ScriptedNoise noise({});
  absl::StatusOr<Release> a =
      ReleaseCells({Site("fr", 10, sex_age, fr), Site("qc", 10, sex_age, qc)},
                   Exact(0), noise);
  absl::StatusOr<Release> b = ReleaseCells(
      {Site("qc", 10, age_sex, qc_t), Site("fr", 10, age_sex, fr_t)}, Exact(0),
      noise);
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectNoDerivableCell(*a);
  auto shown = [](const ReleasedCell& c) {
    return c.has_count()                   ? absl::StrCat(c.count())
           : c.precision().complementary() ? "c"
                                           : "p";
  };
  for (size_t s = 0; s < sexes.size(); ++s) {
    for (size_t g = 0; g < ages.size(); ++g) {
      const size_t i = s * ages.size() + g;
      const size_t j = g * sexes.size() + s;
      EXPECT_EQ(shown(a->per_site[0][i]), shown(b->per_site[1][j])) << i;
      EXPECT_EQ(shown(a->per_site[1][i]), shown(b->per_site[0][j])) << i;
      EXPECT_EQ(shown(a->combined[i]), shown(b->combined[j])) << i;
    }
  }
}

TEST(ReleaseCellsExactTest, CellsThatAreNotAWholeBreakdownAreRefused) {
  ScriptedNoise noise({});
  const std::vector<CellKey> keys = {Key({{"sex", "female"}, {"age", "1"}}),
                                     Key({{"sex", "male"}, {"age", "2"}})};
  absl::StatusOr<Release> r =
      ReleaseCells({Site("fr", 10, keys, {3, 40})}, Exact(0), noise);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("every combination"));
}

// The checker is not vacuous: it finds a cell that a margin gives away,
// and one that only a combination of lines gives away (every line there has
// zero or two or more suppressed cells).
TEST(ReleaseCellsExactTest, CheckerFindsDerivableCells) {
  Release one;
  one.per_site.emplace_back();
  for (const CellKey& k : SexKeys()) {
    ReleasedCell c;
    *c.mutable_key() = k;
    c.set_count(20);
    one.per_site[0].push_back(c);
    one.combined.push_back(c);
  }
  one.per_site[0][1].clear_count();
  one.combined[1].clear_count();
  EXPECT_THAT(DeterminedEntries(one),
              ::testing::ElementsAre("combined/1", "site0/1"));

  // One site, a 4 x 4 grid, the combined row suppressed where the site is:
  // two 2 x 2 blocks joined by the cell (1, 2). Every line has 0 or at
  // least 2 suppressed cells, yet (1, 2) follows from the line sums (it is
  // the only link between the blocks).
  Release grid;
  grid.per_site.emplace_back();
  for (int a = 0; a < 4; ++a) {
    for (int b = 0; b < 4; ++b) {
      ReleasedCell c;
      *c.mutable_key() = Key({{"x", absl::StrCat(a)}, {"y", absl::StrCat(b)}});
      c.set_count(20);
      grid.per_site[0].push_back(c);
      grid.combined.push_back(c);
    }
  }
  for (int i : {0, 1, 4, 5, 6, 10, 11, 14, 15}) {
    grid.per_site[0][i].clear_count();
    grid.combined[i].clear_count();
  }
  EXPECT_THAT(DeterminedEntries(grid),
              ::testing::ElementsAre("combined/6", "site0/6"));
}

}  // namespace
}  // namespace passerelle::privacy
