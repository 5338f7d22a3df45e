#include "privacy/disclosure.h"

#include <algorithm>
#include <limits>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
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

// The key text without dimension `d` (a margin's line).
std::string KeyTextWithout(const CellKey& key, int d) {
  std::string out;
  for (int i = 0; i < key.values_size(); ++i) {
    if (i == d) continue;
    const auto& v = key.values(i);
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

// Exact mode: primary suppression on exact values, then complementary
// suppression over every linear relation a reader could know.
absl::StatusOr<Release> ReleaseExact(const std::vector<SiteInput>& sites,
                                     const DisclosureParams& params) {
  const size_t k = sites.size();
  const size_t n = sites[0].exact.size();
  const size_t rows = k + 1;  // Sites, then the combined row.
  std::vector<std::vector<int64_t>> value(rows, std::vector<int64_t>(n, 0));
  std::vector<int64_t> threshold(rows, 0);
  for (size_t r = 0; r < k; ++r) {
    threshold[r] = Threshold(sites[r], params);
    threshold[k] = std::max(threshold[k], threshold[r]);
    for (size_t i = 0; i < n; ++i) {
      value[r][i] = sites[r].exact[i].count();
      value[k][i] += value[r][i];
    }
  }
  std::vector<std::vector<bool>> suppressed(rows, std::vector<bool>(n, false));
  int primary = 0;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t i = 0; i < n; ++i) {
      if (value[r][i] < threshold[r]) {
        suppressed[r][i] = true;
        ++primary;
      }
    }
  }
  // Relations: a cell across the sites and the combined row; within each
  // row, every line along one dimension (its sum is a margin another query
  // can ask for) and the whole row (its sum is the total).
  using Member = std::pair<size_t, size_t>;
  std::vector<std::vector<Member>> relations;
  for (size_t i = 0; i < n; ++i) {
    std::vector<Member>& rel = relations.emplace_back();
    for (size_t r = 0; r < rows; ++r) rel.emplace_back(r, i);
  }
  const int dims = n == 0 ? 0 : sites[0].exact[0].key().values_size();
  for (size_t r = 0; r < rows; ++r) {
    if (n > 1) {
      std::vector<Member>& all = relations.emplace_back();
      for (size_t i = 0; i < n; ++i) all.emplace_back(r, i);
    }
    for (int d = 0; d < dims && dims > 1; ++d) {
      std::map<std::string, std::vector<Member>> lines;
      for (size_t i = 0; i < n; ++i) {
        lines[KeyTextWithout(sites[0].exact[i].key(), d)].emplace_back(r, i);
      }
      for (auto& [line, members] : lines)
        relations.push_back(std::move(members));
    }
  }
  int secondary = 0;
  for (bool changed = true; changed;) {
    changed = false;
    for (const std::vector<Member>& rel : relations) {
      if (rel.size() < 2) continue;
      int count = 0;
      for (const Member& m : rel)
        count += suppressed[m.first][m.second] ? 1 : 0;
      if (count != 1) continue;
      // Suppress the smallest other cell of the relation.
      const Member* best = nullptr;
      for (const Member& m : rel) {
        if (suppressed[m.first][m.second]) continue;
        if (best == nullptr ||
            value[m.first][m.second] < value[best->first][best->second]) {
          best = &m;
        }
      }
      suppressed[best->first][best->second] = true;
      ++secondary;
      changed = true;
    }
  }
  const int64_t step = Step(params);
  Release release;
  auto make = [&](size_t r, size_t i) {
    ReleasedCell c;
    *c.mutable_key() = sites[0].exact[i].key();
    Precision* p = c.mutable_precision();
    p->set_threshold(threshold[r]);
    p->set_rounding(step > 1 ? step : 0);
    if (suppressed[r][i]) {
      p->set_kind(Precision::SUPPRESSED);
    } else {
      p->set_kind(Precision::EXACT);
      c.set_count(Shown(value[r][i], step));
    }
    return c;
  };
  for (size_t r = 0; r < k; ++r) {
    std::vector<ReleasedCell>& out = release.per_site.emplace_back();
    for (size_t i = 0; i < n; ++i) out.push_back(make(r, i));
  }
  for (size_t i = 0; i < n; ++i) release.combined.push_back(make(k, i));
  release.notes.push_back(
      "EXACT MODE: no noise was added; this result carries no differential "
      "privacy guarantee. Cells below the minimum cell size are shown as "
      "\"< k\", and further cells are suppressed (complementary suppression) "
      "so that no suppressed cell can be derived from a total or a margin.");
  if (secondary > 0) {
    release.notes.push_back(absl::StrCat(
        secondary, " cell(s) were suppressed only to protect ", primary,
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
