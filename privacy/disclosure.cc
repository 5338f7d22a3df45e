#include "privacy/disclosure.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "privacy/units.h"

namespace passerelle::privacy {
namespace {

using passerelle::v1::Cell;
using passerelle::v1::CellKey;
using passerelle::v1::Precision;
using passerelle::v1::ReleasedCell;

// Counts above this are refused so sums of counts and noise cannot overflow.
constexpr int64_t kMaxCount = int64_t{1} << 50;
constexpr double kIntervalLevel = 0.95;

std::string KeyText(const CellKey& key) {
  std::string out;
  for (const auto& v : key.values()) {
    absl::StrAppend(&out, v.dimension().size(), ":", v.dimension(),
                    v.value().size(), ":", v.value(), ";");
  }
  return out;
}

absl::Status Validate(const std::vector<SiteInput>& sites,
                      const DisclosureParams& params) {
  if (sites.empty())
    return absl::InvalidArgumentError("no site results to release");
  if (params.federation_min_cell_size < 0) {
    return absl::InvalidArgumentError("federation_min_cell_size is negative");
  }
  if (params.rounding < 0)
    return absl::InvalidArgumentError("rounding is negative");
  if (params.rounding > kMaxCount)
    return absl::InvalidArgumentError("rounding too large");
  std::set<std::string> names;
  const std::vector<Cell>& first = sites[0].exact;
  for (const SiteInput& s : sites) {
    if (!names.insert(s.site).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("site \"", s.site, "\" given twice"));
    }
    if (s.site_min_cell_size < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("site \"", s.site, "\": negative minimum cell size"));
    }
    if (s.exact.size() != first.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "site \"", s.site, "\" has ", s.exact.size(), " cells, site \"",
          sites[0].site, "\" has ", first.size()));
    }
    for (size_t i = 0; i < s.exact.size(); ++i) {
      if (KeyText(s.exact[i].key()) != KeyText(first[i].key())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "site \"", s.site, "\": cell ", i,
            " has a different key from site \"", sites[0].site, "\""));
      }
      if (s.exact[i].count() < 0 || s.exact[i].count() > kMaxCount) {
        return absl::InvalidArgumentError(absl::StrCat(
            "site \"", s.site, "\": cell ", i, " count out of range"));
      }
    }
  }
  std::set<std::string> keys;
  for (const Cell& c : first) {
    if (!keys.insert(KeyText(c.key())).second) {
      return absl::InvalidArgumentError("the same cell key appears twice");
    }
  }
  return absl::OkStatus();
}

int64_t Threshold(const SiteInput& s, const DisclosureParams& params) {
  return std::max(s.site_min_cell_size, params.federation_min_cell_size);
}

int64_t Step(const DisclosureParams& params) {
  return params.rounding > 1 ? params.rounding : 1;
}

// A released (noised or exact) value: clamped at 0, then rounded.
int64_t Shown(int64_t value, int64_t step) {
  const int64_t v = std::max<int64_t>(value, 0);
  return step > 1 ? RoundToMultiple(v, step) : v;
}

ReleasedCell NoisedCell(const CellKey& key, int64_t noisy, int64_t threshold,
                        int64_t half_width, const NoiseSpec& spec,
                        const DisclosureParams& params) {
  ReleasedCell c;
  *c.mutable_key() = key;
  Precision* p = c.mutable_precision();
  p->set_mechanism(MechanismName(spec.mechanism));
  if (spec.mechanism == Mechanism::kDiscreteLaplace) {
    p->set_epsilon(FromMicros(spec.privacy_micros));
  } else {
    p->set_rho(FromMicros(spec.privacy_micros));
  }
  p->set_threshold(threshold);
  const int64_t step = Step(params);
  p->set_rounding(step > 1 ? step : 0);
  if (threshold > 0 && noisy < threshold) {
    p->set_kind(Precision::SUPPRESSED);
    return c;
  }
  p->set_kind(Precision::NOISED);
  const int64_t shown = Shown(noisy, step);
  c.set_count(shown);
  // |shown - noisy| <= step/2 (or shown = 0 > noisy); the interval around
  // `shown` widened by step/2 and clipped at 0 covers the true count with at
  // least the noise interval's probability.
  const int64_t slack = step / 2;  // 0 without rounding.
  c.set_interval_low(std::max<int64_t>(0, shown - half_width - slack));
  c.set_interval_high(shown + half_width + slack);
  return c;
}

absl::StatusOr<Release> ReleaseNoised(const std::vector<SiteInput>& sites,
                                      const DisclosureParams& params,
                                      NoiseSource& noise) {
  absl::StatusOr<NoiseSpec> spec = NoiseSpecFor(params);
  if (!spec.ok()) return spec.status();
  const int k = static_cast<int>(sites.size());
  absl::StatusOr<int64_t> half1 = NoiseHalfWidth(*spec, 1, kIntervalLevel);
  if (!half1.ok()) return half1.status();
  absl::StatusOr<int64_t> half_k = NoiseHalfWidth(*spec, k, kIntervalLevel);
  if (!half_k.ok()) return half_k.status();
  const size_t n = sites[0].exact.size();

  Release release;
  std::vector<int64_t> sum(n, 0);
  int64_t combined_threshold = 0;
  std::vector<int64_t> draws(n);
  for (const SiteInput& s : sites) {
    absl::Status st = noise.Draw(*spec, absl::MakeSpan(draws));
    if (!st.ok()) return st;
    const int64_t threshold = Threshold(s, params);
    combined_threshold = std::max(combined_threshold, threshold);
    std::vector<ReleasedCell>& out = release.per_site.emplace_back();
    for (size_t i = 0; i < n; ++i) {
      const int64_t noisy = s.exact[i].count() + draws[i];
      sum[i] += noisy;
      out.push_back(NoisedCell(s.exact[i].key(), noisy, threshold, *half1,
                               *spec, params));
    }
  }
  std::fill(draws.begin(), draws.end(), 0);
  for (size_t i = 0; i < n; ++i) {
    release.combined.push_back(NoisedCell(sites[0].exact[i].key(), sum[i],
                                          combined_threshold, *half_k, *spec,
                                          params));
  }
  const std::string param =
      spec->mechanism == Mechanism::kDiscreteLaplace
          ? absl::StrCat("epsilon=", MicrosToString(spec->privacy_micros))
          : absl::StrCat("rho=", MicrosToString(spec->privacy_micros));
  release.notes.push_back(absl::StrCat(
      "Each site's counts carry independent ", MechanismName(spec->mechanism),
      " noise (", param,
      " per site, sensitivity 1); cells whose noisy count is "
      "below the minimum cell size are shown as \"< k\"; intervals are 95% "
      "intervals for the true count from the noise distribution."));
  if (k > 1) {
    release.notes.push_back(
        "Combined counts add the sites' noisy counts. A patient present at "
        "more than one site is counted once at each site, so combined counts "
        "may count a person more than once.");
  }
  return release;
}

// The breakdown of exact mode as a grid: its axes (one per dimension, by
// dimension name, so that `group by a, b` and `group by b, a` are the same
// grid), each axis's values in the order of their first appearance, and
// where each of the caller's cells sits.
struct Grid {
  std::vector<size_t> sizes;        // Per axis.
  std::vector<size_t> strides;      // Per axis, mixed radix.
  std::vector<size_t> cell_at;      // Grid position -> the caller's cell.
  std::vector<size_t> position_of;  // The caller's cell -> grid position.
};

absl::StatusOr<Grid> GridOf(const std::vector<Cell>& cells) {
  Grid grid;
  const size_t n = cells.size();
  if (n == 0) return grid;
  const CellKey& first = cells[0].key();
  const int dims = first.values_size();
  std::vector<int> axes(static_cast<size_t>(dims));
  for (int d = 0; d < dims; ++d) axes[static_cast<size_t>(d)] = d;
  std::sort(axes.begin(), axes.end(), [&](int a, int b) {
    return first.values(a).dimension() < first.values(b).dimension();
  });
  for (size_t a = 1; a < axes.size(); ++a) {
    if (first.values(axes[a]).dimension() ==
        first.values(axes[a - 1]).dimension()) {
      return absl::InvalidArgumentError(
          absl::StrCat("exact mode: dimension \"",
                       first.values(axes[a]).dimension(), "\" given twice"));
    }
  }
  std::vector<std::map<std::string, size_t>> values(axes.size());
  std::vector<std::vector<size_t>> coords(n, std::vector<size_t>(axes.size()));
  for (size_t i = 0; i < n; ++i) {
    const CellKey& key = cells[i].key();
    if (key.values_size() != dims) {
      return absl::InvalidArgumentError(
          absl::StrCat("exact mode: cell ", i, " has ", key.values_size(),
                       " dimensions, cell 0 has ", dims));
    }
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& v = key.values(axes[a]);
      if (v.dimension() != first.values(axes[a]).dimension()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "exact mode: cell ", i, " has dimension \"", v.dimension(),
            "\" where cell 0 has \"", first.values(axes[a]).dimension(), "\""));
      }
      coords[i][a] =
          values[a].emplace(v.value(), values[a].size()).first->second;
    }
  }
  size_t product = 1;
  grid.sizes.resize(axes.size());
  grid.strides.resize(axes.size());
  for (size_t a = axes.size(); a-- > 0;) {
    grid.strides[a] = product;
    grid.sizes[a] = values[a].size();
    product *= grid.sizes[a];  // <= n^dims; checked against n below.
    if (product > n) break;
  }
  if (product != n) {
    return absl::InvalidArgumentError(
        "exact mode: the cells are not every combination of their "
        "dimensions' values (complementary suppression needs the whole "
        "breakdown)");
  }
  grid.cell_at.assign(n, n);
  grid.position_of.resize(n);
  for (size_t i = 0; i < n; ++i) {
    size_t pos = 0;
    for (size_t a = 0; a < axes.size(); ++a)
      pos += coords[i][a] * grid.strides[a];
    // Keys are distinct (Validate), so positions are too.
    grid.cell_at[pos] = i;
    grid.position_of[i] = pos;
  }
  return grid;
}

// Complementary suppression by boxes. Entries are (row, grid position);
// rows are the sites then the combined row. What a reader may know, at
// worst: every released entry, each cell's combined = sum of the sites'
// (whatever form the cohort is asked in), and every sum along any axis of
// any row (a margin another query could release). Flip the sign of the
// combined row and every one of these says "the sum along one axis of a
// (1 + dims)-dimensional table is known", so the table can change without
// changing anything known by any multiple of a box: two values on every
// axis, +1/-1 on alternate corners (+1/+1 on a site and the combined row).
// Every suppressed entry is made a corner of a box whose corners are all
// suppressed, so each one can move while everything known stays: none is
// determined by linear combination of what is released. Boxes are chosen
// from positions alone: the fewest new suppressions, ties broken by a fixed
// order (other sites first, in order after the entry's own, the combined row
// last; on each axis the next values cyclically). Never by values.
// Returns the entries suppressed (row-major: row * cells + position).
std::vector<bool> SuppressionPattern(size_t rows, const Grid& grid,
                                     const std::vector<bool>& primary) {
  const size_t n = grid.cell_at.size();
  const size_t sites = rows - 1;
  std::vector<bool> suppressed = primary;
  std::vector<bool> covered(rows * n, false);
  // Axes with one value carry no relation of their own: boxes stay on them.
  std::vector<size_t> axes;
  for (size_t a = 0; a < grid.sizes.size(); ++a) {
    if (grid.sizes[a] > 1) axes.push_back(a);
  }
  const size_t corners = size_t{1} << (axes.size() + 1);
  std::vector<size_t> corner_entries(corners);
  std::vector<size_t> best(corners);
  for (size_t e = 0; e < rows * n; ++e) {
    if (!suppressed[e] || covered[e]) continue;
    const size_t row = e / n;
    const size_t pos = e % n;
    std::vector<size_t> coord(grid.sizes.size());
    for (size_t a = 0; a < grid.sizes.size(); ++a) {
      coord[a] = (pos / grid.strides[a]) % grid.sizes[a];
    }
    std::vector<size_t> partner_rows;
    if (row < sites) {
      for (size_t j = 1; j < sites; ++j) {
        partner_rows.push_back((row + j) % sites);
      }
      partner_rows.push_back(sites);
    } else {
      for (size_t j = 0; j < sites; ++j) partner_rows.push_back(j);
    }
    // Odometer over (partner row, partner value on each axis).
    std::vector<size_t> choice(axes.size() + 1, 0);
    size_t best_cost = corners + 1;
    for (bool more = true; more;) {
      const size_t other_row = partner_rows[choice[0]];
      size_t cost = 0;
      for (size_t c = 0; c < corners; ++c) {
        size_t r = (c & 1) ? other_row : row;
        size_t p = pos;
        for (size_t x = 0; x < axes.size(); ++x) {
          if ((c >> (x + 1)) & 1) {
            const size_t a = axes[x];
            const size_t v = (coord[a] + 1 + choice[x + 1]) % grid.sizes[a];
            p = p - coord[a] * grid.strides[a] + v * grid.strides[a];
          }
        }
        corner_entries[c] = r * n + p;
        cost += suppressed[r * n + p] ? 0 : 1;
      }
      if (cost < best_cost) {
        best_cost = cost;
        best = corner_entries;
        if (cost == 0) break;
      }
      more = false;
      for (size_t x = choice.size(); x-- > 0;) {
        const size_t limit =
            x == 0 ? partner_rows.size() : grid.sizes[axes[x - 1]] - 1;
        if (++choice[x] < limit) {
          more = true;
          break;
        }
        choice[x] = 0;
      }
    }
    for (size_t c : best) {
      suppressed[c] = true;
      covered[c] = true;
    }
  }
  return suppressed;
}

// Exact mode: primary suppression on exact values, then complementary
// suppression decided over the whole table (SuppressionPattern). The table
// and its pattern depend on neither the order of the sites nor the order
// of the dimensions, so every form of the same cohort over the same sites
// and data gets the same pattern.
absl::StatusOr<Release> ReleaseExact(const std::vector<SiteInput>& sites,
                                     const DisclosureParams& params) {
  const size_t k = sites.size();
  const size_t n = sites[0].exact.size();
  const size_t rows = k + 1;  // Sites by name, then the combined row.
  std::vector<size_t> order(k);
  for (size_t r = 0; r < k; ++r) order[r] = r;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return sites[a].site < sites[b].site; });
  PASSERELLE_ASSIGN_OR_RETURN(Grid grid, GridOf(sites[0].exact));
  // By row and grid position.
  std::vector<int64_t> value(rows * n, 0);
  std::vector<int64_t> threshold(rows, 0);
  for (size_t r = 0; r < k; ++r) {
    const SiteInput& s = sites[order[r]];
    threshold[r] = Threshold(s, params);
    threshold[k] = std::max(threshold[k], threshold[r]);
    for (size_t i = 0; i < n; ++i) {
      const size_t p = grid.position_of[i];
      value[r * n + p] = s.exact[i].count();
      value[k * n + p] += s.exact[i].count();
    }
  }
  std::vector<bool> primary(rows * n, false);
  int primaries = 0;
  for (size_t e = 0; e < rows * n; ++e) {
    if (value[e] < threshold[e / n]) {
      primary[e] = true;
      ++primaries;
    }
  }
  const std::vector<bool> suppressed = SuppressionPattern(rows, grid, primary);
  int secondary = 0;
  for (size_t e = 0; e < rows * n; ++e) {
    secondary += suppressed[e] && !primary[e] ? 1 : 0;
  }
  const int64_t step = Step(params);
  Release release;
  auto make = [&](size_t r, size_t i) {
    const size_t e = r * n + grid.position_of[i];
    ReleasedCell c;
    *c.mutable_key() = sites[0].exact[i].key();
    Precision* p = c.mutable_precision();
    p->set_threshold(threshold[r]);
    p->set_rounding(step > 1 ? step : 0);
    if (suppressed[e]) {
      p->set_kind(Precision::SUPPRESSED);
      p->set_complementary(!primary[e]);
    } else {
      p->set_kind(Precision::EXACT);
      c.set_count(Shown(value[e], step));
    }
    return c;
  };
  release.per_site.resize(k);
  for (size_t r = 0; r < k; ++r) {
    std::vector<ReleasedCell>& out = release.per_site[order[r]];
    for (size_t i = 0; i < n; ++i) out.push_back(make(r, i));
  }
  for (size_t i = 0; i < n; ++i) release.combined.push_back(make(k, i));
  release.notes.push_back(
      "EXACT MODE: no noise was added; this result carries no differential "
      "privacy guarantee. Cells below the minimum cell size are shown as "
      "\"< k\"; further cells are shown as \"suppressed\" (complementary "
      "suppression) so that no suppressed cell can be derived from the "
      "released cells, totals or margins of this cohort and breakdown, in "
      "any form it is asked (by site or not). The pattern is decided over "
      "all of the project's sites at once.");
  if (secondary > 0) {
    release.notes.push_back(absl::StrCat(
        secondary, " cell(s) were suppressed only to protect ", primaries,
        " cell(s) below the minimum (complementary suppression)."));
  }
  if (k > 1) {
    release.notes.push_back(
        "Combined counts add the sites' counts. A patient present at more "
        "than one site is counted once at each site, so combined counts may "
        "count a person more than once.");
  }
  return release;
}

}  // namespace

int64_t RoundToMultiple(int64_t value, int64_t step) {
  if (step <= 1) return value;
  const int64_t mag = value < 0 ? -value : value;
  const int64_t rounded = ((mag + step / 2) / step) * step;
  return value < 0 ? -rounded : rounded;
}

absl::StatusOr<NoiseSpec> NoiseSpecFor(const DisclosureParams& params) {
  if (params.mechanism == Mechanism::kDiscreteGaussian) {
    return GaussianSpecForRho(params.rho);
  }
  return LaplaceSpecForEpsilon(params.epsilon);
}

absl::StatusOr<Release> ReleaseCells(const std::vector<SiteInput>& sites,
                                     const DisclosureParams& params,
                                     NoiseSource& noise) {
  absl::Status valid = Validate(sites, params);
  if (!valid.ok()) return valid;
  if (params.exact_mode) return ReleaseExact(sites, params);
  return ReleaseNoised(sites, params, noise);
}

}  // namespace passerelle::privacy
