#include "node/engine.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "query/cells.h"
#include "query/vocabulary.h"

namespace passerelle::node {
namespace {

using roaring::Roaring;

int32_t ToDay(const v1::Date& d) {
  return DaysFromCivil(d.year(), d.month(), d.day());
}

bool Compare(double value, v1::Comparison op, double number) {
  switch (op) {
    case v1::COMPARISON_EQ:
      return value == number;
    case v1::COMPARISON_LT:
      return value < number;
    case v1::COMPARISON_LE:
      return value <= number;
    case v1::COMPARISON_GT:
      return value > number;
    case v1::COMPARISON_GE:
      return value >= number;
    default:
      return false;
  }
}

class IndexEngine : public CohortEngine {
 public:
  explicit IndexEngine(std::shared_ptr<const Snapshot> snap)
      : snap_(std::move(snap)) {}

  const SnapshotMeta& meta() const override { return snap_->meta; }
  std::vector<std::string> Vocabularies() const override {
    return snap_->Vocabularies();
  }

  absl::StatusOr<std::vector<v1::Cell>> Count(
      const v1::Query& query) const override {
    Context ctx;
    int y, m, d;
    if (query.has_as_of()) {
      y = query.as_of().year();
      m = query.as_of().month();
      d = query.as_of().day();
    } else {
      CivilFromDays(snap_->meta.snapshot_day, &y, &m, &d);
    }
    ctx.ref_year = y;
    ctx.ref_md = m * 100 + d;
    PASSERELLE_ASSIGN_OR_RETURN(Roaring cohort, Eval(query.where(), ctx, 0));
    return Breakdown(query, cohort, ctx);
  }

 private:
  struct Context {
    int ref_year = 0;
    int ref_md = 0;
  };
  // One matching event of an event spec.
  struct Hit {
    uint32_t patient;
    int32_t day;
    uint32_t event;
  };

  static constexpr int kMaxDepth = 256;

  // Patients [first, last) whose birth key lies in [lo, hi].
  Roaring KeyRange(int64_t lo, int64_t hi) const {
    Roaring r;
    if (lo > hi) return r;
    const auto& keys = snap_->birth_keys;
    auto first = std::lower_bound(keys.begin(), keys.end(), lo);
    auto last = std::upper_bound(keys.begin(), keys.end(), hi);
    if (first < last) r.addRange(first - keys.begin(), last - keys.begin());
    return r;
  }

  // The birth key at or below which a patient is at least `age` years old on
  // the reference date: age >= a  <=>  (y, m, d) <= (ref_y - a, ref_m, ref_d).
  static int64_t AgeAtLeastKey(const Context& ctx, int64_t age) {
    return (ctx.ref_year - age) * 10000 + ctx.ref_md;
  }

  // Patients whose age in whole years lies in [lo, hi] (hi < 0: no bound).
  Roaring AgeRange(const Context& ctx, int64_t lo, int64_t hi) const {
    const int64_t max_key = AgeAtLeastKey(ctx, lo);
    const int64_t min_key =
        hi < 0 ? INT32_MIN : AgeAtLeastKey(ctx, hi + 1) + 1;
    return KeyRange(min_key, max_key);
  }

  absl::StatusOr<Roaring> Eval(const v1::Expr& e, const Context& ctx,
                               int depth) const {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError("query nested too deeply");
    }
    switch (e.kind_case()) {
      case v1::Expr::kCriterion:
        return EvalCriterion(e.criterion(), ctx);
      case v1::Expr::kAnd: {
        if (e.and_().terms().empty()) return snap_->population;
        Roaring acc;
        bool first = true;
        for (const v1::Expr& t : e.and_().terms()) {
          PASSERELLE_ASSIGN_OR_RETURN(Roaring r, Eval(t, ctx, depth + 1));
          if (first) {
            acc = std::move(r);
            first = false;
          } else {
            acc &= r;
          }
          if (acc.isEmpty()) break;
        }
        return acc;
      }
      case v1::Expr::kOr: {
        Roaring acc;
        for (const v1::Expr& t : e.or_().terms()) {
          PASSERELLE_ASSIGN_OR_RETURN(Roaring r, Eval(t, ctx, depth + 1));
          acc |= r;
        }
        return acc;
      }
      case v1::Expr::kNot: {
        PASSERELLE_ASSIGN_OR_RETURN(Roaring r, Eval(e.not_(), ctx, depth + 1));
        return snap_->population - r;
      }
      default:
        return absl::InvalidArgumentError("empty expression");
    }
  }

  absl::StatusOr<Roaring> EvalCriterion(const v1::Criterion& c,
                                        const Context& ctx) const {
    switch (c.kind_case()) {
      case v1::Criterion::kSex: {
        const int s = static_cast<int>(c.sex());
        if (s < 1 || s > 4) return absl::InvalidArgumentError("bad sex value");
        return snap_->sex_bitmaps[s];
      }
      case v1::Criterion::kBirthYear: {
        const int64_t lo =
            c.birth_year().has_min() ? c.birth_year().min() * 10000LL : INT32_MIN;
        const int64_t hi = c.birth_year().has_max()
                               ? c.birth_year().max() * 10000LL + 9999
                               : INT32_MAX;
        return KeyRange(lo, hi);
      }
      case v1::Criterion::kAge: {
        const int64_t lo = c.age().has_min() ? c.age().min() : 0;
        const int64_t hi = c.age().has_max() ? c.age().max() : -1;
        return AgeRange(ctx, lo, hi);
      }
      case v1::Criterion::kDeceased:
        return snap_->deceased;
      case v1::Criterion::kEvent:
        return EvalEvent(c.event());
      case v1::Criterion::kSequence:
        return EvalSequence(c.sequence());
      default:
        return absl::InvalidArgumentError("empty criterion");
    }
  }

  // Calls fn(posting) for every posting whose code matches the spec's set.
  template <typename Fn>
  void ForEachPosting(const v1::EventSpec& spec, Fn fn) const {
    const int domain = static_cast<int>(spec.domain());
    auto begin = snap_->tables.lower_bound({domain, std::string()});
    for (const v1::Code& code : spec.codes()) {
      for (auto it = begin; it != snap_->tables.end() && it->first.first == domain;
           ++it) {
        if (!query::VocabularyMatches(code.vocabulary(), it->first.second)) {
          continue;
        }
        const CodeTable& table = it->second;
        auto lo = std::lower_bound(table.codes.begin(), table.codes.end(),
                                   code.code());
        auto hi = lo;
        if (code.prefix()) {
          while (hi != table.codes.end() &&
                 absl::string_view(*hi).substr(0, code.code().size()) ==
                     code.code()) {
            ++hi;
          }
        } else if (hi != table.codes.end() && *hi == code.code()) {
          ++hi;
        }
        for (auto c = lo; c != hi; ++c) {
          fn(table.postings[c - table.codes.begin()]);
        }
      }
    }
  }

  // Events matching the spec (codes, value) and the day window, sorted by
  // (patient, day, event) and without duplicate events.
  std::vector<Hit> Hits(const v1::EventSpec& spec, int32_t from,
                        int32_t to) const {
    std::vector<Hit> hits;
    const bool has_value = spec.has_value();
    ForEachPosting(spec, [&](const Posting& p) {
      for (size_t i = 0; i < p.size(); ++i) {
        if (p.days[i] < from || p.days[i] > to) continue;
        if (has_value) {
          if (p.values.empty() || std::isnan(p.values[i]) ||
              !Compare(p.values[i], spec.value().op(), spec.value().number())) {
            continue;
          }
        }
        hits.push_back({p.patients[i], p.days[i], p.events[i]});
      }
    });
    std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
      return std::tie(a.patient, a.day, a.event) <
             std::tie(b.patient, b.day, b.event);
    });
    hits.erase(std::unique(hits.begin(), hits.end(),
                           [](const Hit& a, const Hit& b) {
                             return a.patient == b.patient && a.event == b.event;
                           }),
               hits.end());
    return hits;
  }

  absl::StatusOr<Roaring> EvalEvent(const v1::EventCriterion& ev) const {
    const v1::EventSpec& spec = ev.event();
    const int min_count = std::max(1, ev.min_count());
    if (!ev.has_window() && min_count == 1 && !spec.has_value()) {
      // The common case: a union of per-code bitmaps, no posting scan.
      Roaring acc;
      ForEachPosting(spec, [&](const Posting& p) { acc |= p.bitmap; });
      return acc;
    }
    int32_t from = INT32_MIN, to = INT32_MAX;
    if (ev.has_window()) {
      from = ToDay(ev.window().start());
      to = ToDay(ev.window().end());
    }
    std::vector<Hit> hits = Hits(spec, from, to);
    std::vector<uint32_t> patients;
    for (size_t i = 0; i < hits.size();) {
      size_t j = i;
      while (j < hits.size() && hits[j].patient == hits[i].patient) ++j;
      if (static_cast<int>(j - i) >= min_count) patients.push_back(hits[i].patient);
      i = j;
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return r;
  }

  absl::StatusOr<Roaring> EvalSequence(const v1::SequenceCriterion& seq) const {
    std::vector<Hit> a = Hits(seq.first(), INT32_MIN, INT32_MAX);
    std::vector<Hit> b = Hits(seq.second(), INT32_MIN, INT32_MAX);
    const int64_t within = seq.has_within() ? seq.within_days() : INT64_MAX;
    std::vector<uint32_t> patients;
    size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
      const uint32_t pa = a[i].patient, pb = b[j].patient;
      if (pa < pb) {
        ++i;
        continue;
      }
      if (pb < pa) {
        ++j;
        continue;
      }
      size_t ie = i, je = j;
      while (ie < a.size() && a[ie].patient == pa) ++ie;
      while (je < b.size() && b[je].patient == pa) ++je;
      // Both runs are sorted by day: for each b, the latest a on or before
      // it gives the smallest non-negative gap.
      bool found = false;
      size_t k = i;
      for (size_t l = j; l < je && !found; ++l) {
        while (k + 1 < ie && a[k + 1].day <= b[l].day) ++k;
        if (a[k].day <= b[l].day &&
            static_cast<int64_t>(b[l].day) - a[k].day <= within) {
          found = true;
        }
      }
      if (found) patients.push_back(pa);
      i = ie;
      j = je;
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return r;
  }

  absl::StatusOr<std::vector<v1::Cell>> Breakdown(const v1::Query& query,
                                                  const Roaring& cohort,
                                                  const Context& ctx) const {
    // Each dimension contributes one bitmap per value, in cell order.
    std::vector<std::vector<Roaring>> dims;
    for (const v1::Dimension& dim : query.group_by()) {
      std::vector<Roaring>& values = dims.emplace_back();
      switch (dim.kind()) {
        case v1::Dimension::SEX:
          for (int s = 1; s <= 4; ++s) values.push_back(snap_->sex_bitmaps[s]);
          break;
        case v1::Dimension::AGE_BAND: {
          const int w = dim.width();
          const int bands = query::AgeBandCount(w);
          for (int b = 0; b < bands; ++b) {
            const int64_t hi = b + 1 == bands ? -1 : int64_t{b + 1} * w - 1;
            values.push_back(AgeRange(ctx, int64_t{b} * w, hi));
          }
          break;
        }
        case v1::Dimension::SITE:
          values.push_back(snap_->population);
          break;
        default:
          return absl::InvalidArgumentError("unknown breakdown dimension");
      }
    }
    std::vector<v1::CellKey> keys =
        query::EnumerateCells(query, {snap_->meta.site});
    std::vector<v1::Cell> cells;
    cells.reserve(keys.size());
    // Walk the cross product in the same (row-major) order as EnumerateCells.
    std::vector<size_t> idx(dims.size(), 0);
    for (const v1::CellKey& key : keys) {
      v1::Cell& cell = cells.emplace_back();
      *cell.mutable_key() = key;
      if (dims.empty()) {
        cell.set_count(static_cast<int64_t>(cohort.cardinality()));
      } else {
        Roaring r = cohort & dims[0][idx[0]];
        for (size_t d = 1; d < dims.size() && !r.isEmpty(); ++d) {
          r &= dims[d][idx[d]];
        }
        cell.set_count(static_cast<int64_t>(r.cardinality()));
        for (size_t d = dims.size(); d-- > 0;) {
          if (++idx[d] < dims[d].size()) break;
          idx[d] = 0;
        }
      }
    }
    return cells;
  }

  std::shared_ptr<const Snapshot> snap_;
};

}  // namespace

std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot) {
  return std::make_unique<IndexEngine>(std::move(snapshot));
}

}  // namespace passerelle::node
