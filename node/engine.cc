#include "node/engine.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/container/flat_hash_map.h"
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
      : snap_(std::move(snap)) {
    BuildPrefixUnions();
  }

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
    PASSERELLE_ASSIGN_OR_RETURN(Bits cohort, Eval(query.where(), ctx, 0));
    return Breakdown(query, cohort.get(), ctx);
  }

 private:
  struct Context {
    int ref_year = 0;
    int ref_md = 0;
  };
  static constexpr int kMaxDepth = 256;

  // A set of patients that is either computed for this query or borrowed
  // from the snapshot or the index (a code's bitmap, a sex), so that a
  // criterion costs no copy until an operator combines it.
  class Bits {
   public:
    explicit Bits(Roaring owned) : owned_(std::move(owned)) {}
    static Bits Borrow(const Roaring* r) {
      Bits b{Roaring()};
      b.borrowed_ = r;
      return b;
    }
    const Roaring& get() const { return borrowed_ ? *borrowed_ : owned_; }

   private:
    Roaring owned_;
    const Roaring* borrowed_ = nullptr;
  };

  // The patients [first, last) whose birth key lies in [lo, hi].
  std::pair<uint32_t, uint32_t> KeyBounds(int64_t lo, int64_t hi) const {
    if (lo > hi) return {0, 0};
    const auto& keys = snap_->birth_keys;
    auto first = std::lower_bound(keys.begin(), keys.end(), lo);
    auto last = std::upper_bound(keys.begin(), keys.end(), hi);
    if (first >= last) return {0, 0};
    return {static_cast<uint32_t>(first - keys.begin()),
            static_cast<uint32_t>(last - keys.begin())};
  }

  // Patients whose birth key lies in [lo, hi].
  Roaring KeyRange(int64_t lo, int64_t hi) const {
    Roaring r;
    const auto [first, last] = KeyBounds(lo, hi);
    if (first < last) r.addRange(first, last);
    return r;
  }

  // The birth key at or below which a patient is at least `age` years old on
  // the reference date: age >= a  <=>  (y, m, d) <= (ref_y - a, ref_m, ref_d).
  static int64_t AgeAtLeastKey(const Context& ctx, int64_t age) {
    return (ctx.ref_year - age) * 10000 + ctx.ref_md;
  }

  // Patients whose age in whole years lies in [lo, hi] (hi < 0: no bound).
  std::pair<uint32_t, uint32_t> AgeBounds(const Context& ctx, int64_t lo,
                                          int64_t hi) const {
    const int64_t max_key = AgeAtLeastKey(ctx, lo);
    const int64_t min_key =
        hi < 0 ? INT32_MIN : AgeAtLeastKey(ctx, hi + 1) + 1;
    return KeyBounds(min_key, max_key);
  }
  Roaring AgeRange(const Context& ctx, int64_t lo, int64_t hi) const {
    Roaring r;
    const auto [first, last] = AgeBounds(ctx, lo, hi);
    if (first < last) r.addRange(first, last);
    return r;
  }

  absl::StatusOr<Bits> Eval(const v1::Expr& e, const Context& ctx,
                            int depth) const {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError("query nested too deeply");
    }
    switch (e.kind_case()) {
      case v1::Expr::kCriterion:
        return EvalCriterion(e.criterion(), ctx);
      case v1::Expr::kAnd: {
        const auto& terms = e.and_().terms();
        if (terms.empty()) return Bits::Borrow(&snap_->population);
        PASSERELLE_ASSIGN_OR_RETURN(Bits first, Eval(terms[0], ctx, depth + 1));
        if (terms.size() == 1) return first;
        Roaring acc;
        for (int i = 1; i < terms.size(); ++i) {
          PASSERELLE_ASSIGN_OR_RETURN(Bits r, Eval(terms[i], ctx, depth + 1));
          if (i == 1) {
            acc = first.get() & r.get();  // No copy of either side.
          } else {
            acc &= r.get();
          }
          if (acc.isEmpty()) break;
        }
        return Bits(std::move(acc));
      }
      case v1::Expr::kOr: {
        const auto& terms = e.or_().terms();
        if (terms.empty()) return Bits(Roaring());
        std::vector<Bits> parts;
        parts.reserve(terms.size());
        for (const v1::Expr& t : terms) {
          PASSERELLE_ASSIGN_OR_RETURN(Bits r, Eval(t, ctx, depth + 1));
          parts.push_back(std::move(r));
        }
        if (parts.size() == 1) return std::move(parts[0]);
        std::vector<const Roaring*> bitmaps;
        for (const Bits& b : parts) bitmaps.push_back(&b.get());
        return Bits(Union(bitmaps));
      }
      case v1::Expr::kNot: {
        PASSERELLE_ASSIGN_OR_RETURN(Bits r, Eval(e.not_(), ctx, depth + 1));
        return Bits(snap_->population - r.get());
      }
      default:
        return absl::InvalidArgumentError("empty expression");
    }
  }

  absl::StatusOr<Bits> EvalCriterion(const v1::Criterion& c,
                                     const Context& ctx) const {
    switch (c.kind_case()) {
      case v1::Criterion::kSex: {
        const int s = static_cast<int>(c.sex());
        if (s < 1 || s > 4) return absl::InvalidArgumentError("bad sex value");
        return Bits::Borrow(&snap_->sex_bitmaps[s]);
      }
      case v1::Criterion::kBirthYear: {
        const int64_t lo =
            c.birth_year().has_min() ? c.birth_year().min() * 10000LL : INT32_MIN;
        const int64_t hi = c.birth_year().has_max()
                               ? c.birth_year().max() * 10000LL + 9999
                               : INT32_MAX;
        return Bits(KeyRange(lo, hi));
      }
      case v1::Criterion::kAge: {
        const int64_t lo = c.age().has_min() ? c.age().min() : 0;
        const int64_t hi = c.age().has_max() ? c.age().max() : -1;
        return Bits(AgeRange(ctx, lo, hi));
      }
      case v1::Criterion::kDeceased:
        return Bits::Borrow(&snap_->deceased);
      case v1::Criterion::kEvent:
        return EvalEvent(c.event());
      case v1::Criterion::kSequence: {
        PASSERELLE_ASSIGN_OR_RETURN(Roaring r, EvalSequence(c.sequence()));
        return Bits(std::move(r));
      }
      default:
        return absl::InvalidArgumentError("empty criterion");
    }
  }

  // The union of many bitmaps in one pass (CRoaring's or_many: bitset
  // accumulators rather than a merge of sorted arrays per input, which is
  // quadratic when a code prefix spans many codes).
  static Roaring Union(std::vector<const Roaring*>& bitmaps) {
    if (bitmaps.empty()) return Roaring();
    if (bitmaps.size() == 1) return *bitmaps[0];
    return Roaring::fastunion(bitmaps.size(), bitmaps.data());
  }

  // The codes [lo, hi) of `table` that `code` matches: a range, since the
  // codes are sorted.
  static std::pair<size_t, size_t> CodeRange(const CodeTable& table,
                                             const std::string& code,
                                             bool prefix) {
    const auto& codes = table.codes;
    auto lo = std::lower_bound(codes.begin(), codes.end(), code);
    auto hi = lo;
    if (prefix) {
      hi = std::partition_point(lo, codes.end(), [&](const std::string& c) {
        return absl::string_view(c).substr(0, code.size()) == code;
      });
    } else if (hi != codes.end() && *hi == code) {
      ++hi;
    }
    return {static_cast<size_t>(lo - codes.begin()),
            static_cast<size_t>(hi - codes.begin())};
  }

  static uint64_t RangeKey(size_t lo, size_t hi) {
    return (static_cast<uint64_t>(lo) << 32) | static_cast<uint64_t>(hi);
  }

  // The per-prefix index: for every code prefix of every table that spans
  // two codes or more, the union of their bitmaps, keyed by the prefix's
  // code range (prefixes spanning the same codes share one). Built once per
  // snapshot; its size is at most one bitmap per code.
  void BuildPrefixUnions() {
    for (const auto& [key, table] : snap_->tables) {
      absl::flat_hash_map<uint64_t, Roaring>& unions = prefix_unions_[&table];
      for (const std::string& code : table.codes) {
        for (size_t len = 1; len < code.size(); ++len) {
          const std::string prefix = code.substr(0, len);
          const auto [lo, hi] = CodeRange(table, prefix, true);
          if (hi - lo < 2 || unions.contains(RangeKey(lo, hi))) continue;
          std::vector<const Roaring*> bitmaps;
          for (size_t c = lo; c < hi; ++c) bitmaps.push_back(&table.postings[c].bitmap);
          Roaring u = Union(bitmaps);
          u.shrinkToFit();
          unions.emplace(RangeKey(lo, hi), std::move(u));
        }
      }
    }
  }

  // Calls fn(table, lo, hi) for every range of codes the spec's set matches
  // (one per code of the set and matching table).
  template <typename Fn>
  void ForEachCodeRange(const v1::EventSpec& spec, Fn fn) const {
    const int domain = static_cast<int>(spec.domain());
    auto begin = snap_->tables.lower_bound({domain, std::string()});
    for (const v1::Code& code : spec.codes()) {
      for (auto it = begin; it != snap_->tables.end() && it->first.first == domain;
           ++it) {
        if (!query::VocabularyMatches(code.vocabulary(), it->first.second)) {
          continue;
        }
        const auto [lo, hi] = CodeRange(it->second, code.code(), code.prefix());
        if (lo < hi) fn(it->second, lo, hi);
      }
    }
  }

  // The members of `r` in increasing order (one bulk extraction: iterating
  // a bitmap value by value costs more than the posting walks it drives).
  static std::vector<uint32_t> Members(const Roaring& r) {
    std::vector<uint32_t> out(r.cardinality());
    if (!out.empty()) r.toUint32Array(out.data());
    return out;
  }

  // Calls fn(posting) for every posting whose code matches the spec's set.
  template <typename Fn>
  void ForEachPosting(const v1::EventSpec& spec, Fn fn) const {
    ForEachCodeRange(spec, [&](const CodeTable& table, size_t lo, size_t hi) {
      for (size_t c = lo; c < hi; ++c) fn(table.postings[c]);
    });
  }

  // The bitmaps whose union is the set of patients with an event of the
  // spec's codes: one per matched code range (from the prefix index when it
  // spans several codes).
  std::vector<const Roaring*> SpecBitmaps(const v1::EventSpec& spec) const {
    std::vector<const Roaring*> bitmaps;
    ForEachCodeRange(spec, [&](const CodeTable& table, size_t lo, size_t hi) {
      if (hi - lo == 1) {
        bitmaps.push_back(&table.postings[lo].bitmap);
        return;
      }
      auto t = prefix_unions_.find(&table);
      if (t != prefix_unions_.end()) {
        auto u = t->second.find(RangeKey(lo, hi));
        if (u != t->second.end()) {
          bitmaps.push_back(&u->second);
          return;
        }
      }
      for (size_t c = lo; c < hi; ++c) bitmaps.push_back(&table.postings[c].bitmap);
    });
    return bitmaps;
  }

  // The postings of an event spec, walked patient by patient: for each
  // patient asked for (in increasing order), the matching events (day
  // window, value) of every posting of the set. Each posting is sorted by
  // (patient, day, event), so a cursor per posting only moves forward, by
  // galloping: a patient costs O(log gap) per posting, whatever the posting
  // sizes, and nothing is materialised or sorted beyond one patient's
  // events.
  class SpecEvents {
   public:
    SpecEvents(const IndexEngine& engine, const v1::EventSpec& spec,
               int32_t from, int32_t to)
        : from_(from), to_(to), has_value_(spec.has_value()) {
      if (has_value_) {
        op_ = spec.value().op();
        number_ = spec.value().number();
      }
      std::vector<const Roaring*> bitmaps;
      engine.ForEachPosting(spec, [&](const Posting& p) {
        if (p.size() == 0) return;
        if (has_value_ && p.values.empty()) return;  // No value: never matches.
        cursors_.push_back({&p, 0});
        bitmaps.push_back(&p.bitmap);
      });
      // Without a value condition every matched posting counts: the prefix
      // index gives the same union from fewer bitmaps.
      if (!has_value_) bitmaps = engine.SpecBitmaps(spec);
      patients_ = Union(bitmaps);
    }

    // The events of one posting of `of`, with its day window and value
    // condition.
    SpecEvents(const SpecEvents& of, const Posting* posting)
        : from_(of.from_),
          to_(of.to_),
          has_value_(of.has_value_),
          op_(of.op_),
          number_(of.number_),
          cursors_{{posting, 0}},
          patients_(posting->bitmap) {}

    // The matched postings (those that can hold a matching event).
    std::vector<const Posting*> postings() const {
      std::vector<const Posting*> out;
      for (const Cursor& c : cursors_) out.push_back(c.posting);
      return out;
    }

    // Back to the first patient.
    void Rewind() {
      for (Cursor& c : cursors_) c.i = 0;
    }

    // Every patient with at least one event of a matching code (before the
    // window and value conditions).
    const Roaring& patients() const { return patients_; }

    // Calls fn(day) for each of `patient`'s matching events in (day, event)
    // order, each event once (a row carrying several codes of the set counts
    // once), until fn returns false. Patients must be asked for in
    // increasing order. With one posting the events are read in place and
    // the walk stops where fn does; with several they are merged first.
    // kDistinct = false may repeat an event (one memory stream less, for
    // callers that only ask whether some event exists).
    template <bool kDistinct = true, typename Fn>
    void Visit(uint32_t patient, Fn fn) {
      if (cursors_.size() != 1) {
        Collect(patient, &buf_);
        for (const auto& [day, event] : buf_) {
          if (!fn(day)) return;
        }
        return;
      }
      Cursor& c = cursors_[0];
      const Posting& p = *c.posting;
      Seek(&c, patient);
      bool any = false;
      uint32_t last_event = 0;
      for (; c.i < p.size() && p.patients[c.i] == patient; ++c.i) {
        if (kDistinct) {
          if (any && p.events[c.i] == last_event) continue;  // Duplicate.
        }
        if (!Matches(p, c.i)) continue;
        if (kDistinct) {
          any = true;
          last_event = p.events[c.i];
        }
        if (!fn(p.days[c.i])) return;
      }
    }

    // The (day, event) pairs of `patient`'s matching events, sorted by
    // (day, event), each event once. Patients must be asked for in
    // increasing order.
    void Collect(uint32_t patient, std::vector<std::pair<int32_t, uint32_t>>* out) {
      out->clear();
      for (Cursor& c : cursors_) {
        const Posting& p = *c.posting;
        Seek(&c, patient);
        for (; c.i < p.size() && p.patients[c.i] == patient; ++c.i) {
          if (Matches(p, c.i)) out->emplace_back(p.days[c.i], p.events[c.i]);
        }
      }
      if (cursors_.size() > 1) std::sort(out->begin(), out->end());
      // The same event always has the same day: duplicates are adjacent.
      out->erase(std::unique(out->begin(), out->end(),
                             [](const auto& a, const auto& b) {
                               return a.second == b.second;
                             }),
                 out->end());
    }

   private:
    struct Cursor {
      const Posting* posting;
      size_t i;
    };
    // Entry i of p lies in the day window and meets the value condition.
    bool Matches(const Posting& p, size_t i) const {
      const int32_t day = p.days[i];
      if (day < from_ || day > to_) return false;
      return !has_value_ ||
             (!std::isnan(p.values[i]) && Compare(p.values[i], op_, number_));
    }
    // Moves the cursor to the first entry whose patient is >= `patient`.
    static void Seek(Cursor* c, uint32_t patient) {
      const std::vector<uint32_t>& v = c->posting->patients;
      const size_t n = v.size();
      size_t lo = c->i;
      if (lo >= n || v[lo] >= patient) return;
      // The next patients asked for are usually a run or two ahead: a short
      // linear probe stays in the cache lines being read; beyond it, gallop.
      for (const size_t end = std::min(n, lo + 32); lo + 1 < end;) {
        if (v[++lo] >= patient) {
          c->i = lo;
          return;
        }
      }
      if (lo + 1 >= n) {
        c->i = n;
        return;
      }
      // v[lo] < patient: gallop to a bound hi with v[hi] >= patient (or n).
      size_t step = 1, hi = lo + 1;
      while (hi < n && v[hi] < patient) {
        lo = hi;
        step *= 2;
        hi = lo + step;
      }
      if (hi > n) hi = n;
      c->i = std::lower_bound(v.begin() + lo + 1, v.begin() + hi, patient) -
             v.begin();
    }

    int32_t from_, to_;
    bool has_value_;
    v1::Comparison op_ = v1::COMPARISON_UNSPECIFIED;
    double number_ = 0;
    std::vector<Cursor> cursors_;
    Roaring patients_;
    std::vector<std::pair<int32_t, uint32_t>> buf_;
  };

  absl::StatusOr<Bits> EvalEvent(const v1::EventCriterion& ev) const {
    const v1::EventSpec& spec = ev.event();
    const size_t min_count = static_cast<size_t>(std::max(1, ev.min_count()));
    if (!ev.has_window() && min_count == 1 && !spec.has_value()) {
      // The common case: a union of per-code bitmaps, no posting scan.
      std::vector<const Roaring*> bitmaps = SpecBitmaps(spec);
      if (bitmaps.size() == 1) return Bits::Borrow(bitmaps[0]);
      return Bits(Union(bitmaps));
    }
    int32_t from = INT32_MIN, to = INT32_MAX;
    if (ev.has_window()) {
      from = ToDay(ev.window().start());
      to = ToDay(ev.window().end());
    }
    SpecEvents events(*this, spec, from, to);
    std::vector<uint32_t> patients;
    for (uint32_t patient : Members(events.patients())) {
      size_t n = 0;
      events.Visit(patient, [&](int32_t) { return ++n < min_count; });
      if (n >= min_count) patients.push_back(patient);
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return Bits(std::move(r));
  }

  absl::StatusOr<Roaring> EvalSequence(const v1::SequenceCriterion& seq) const {
    SpecEvents a(*this, seq.first(), INT32_MIN, INT32_MAX);
    SpecEvents b(*this, seq.second(), INT32_MIN, INT32_MAX);
    const int64_t within = seq.has_within() ? seq.within_days() : INT64_MAX;
    // Only patients with events on both sides can qualify.
    const Roaring both = a.patients() & b.patients();
    std::vector<int32_t> da;
    // Whether `patient` has an a-event and a b-event 0..within days after.
    auto qualifies = [&](SpecEvents& as, uint32_t patient) {
      da.clear();
      as.Visit<false>(patient, [&](int32_t day) {
        da.push_back(day);
        return true;
      });
      if (da.empty()) return false;
      // Both sides come in day order: for each b, the latest a on or before
      // it gives the smallest non-negative gap. The walk over b stops at the
      // first match.
      size_t k = 0;
      bool found = false;
      b.Visit<false>(patient, [&](int32_t day) {
        while (k + 1 < da.size() && da[k + 1] <= day) ++k;
        found = da[k] <= day && static_cast<int64_t>(day) - da[k] <= within;
        return !found;
      });
      return found;
    };
    std::vector<const Posting*> first = a.postings();
    if (first.size() <= 1) {
      std::vector<uint32_t> patients;
      for (uint32_t patient : Members(both)) {
        if (qualifies(a, patient)) patients.push_back(patient);
      }
      Roaring r;
      r.addMany(patients.size(), patients.data());
      return r;
    }
    // Several codes on the first side: the sequence holds when it holds for
    // one of them, so each code's posting is walked alone (in place, no
    // merge), largest first, over the patients not found yet.
    std::stable_sort(first.begin(), first.end(),
                     [](const Posting* x, const Posting* y) {
                       return x->bitmap.cardinality() > y->bitmap.cardinality();
                     });
    Roaring found;
    std::vector<uint32_t> patients;
    for (const Posting* posting : first) {
      Roaring candidates = posting->bitmap & both;
      candidates -= found;
      if (candidates.isEmpty()) continue;
      SpecEvents one(a, posting);
      b.Rewind();
      patients.clear();
      for (uint32_t patient : Members(candidates)) {
        if (qualifies(one, patient)) patients.push_back(patient);
      }
      Roaring r;
      r.addMany(patients.size(), patients.data());
      found |= r;
    }
    return found;
  }

  // Patients in [first, last) (patient numbers) that `r` holds.
  static uint64_t CountInRange(const Roaring& r, uint32_t first, uint32_t last) {
    if (first >= last) return 0;
    return r.rank(last - 1) - (first > 0 ? r.rank(first - 1) : 0);
  }

  absl::StatusOr<std::vector<v1::Cell>> Breakdown(const v1::Query& query,
                                                  const Roaring& cohort,
                                                  const Context& ctx) const {
    // Each dimension contributes, per value in cell order, either a bitmap
    // (sex, site) or a contiguous range of patient numbers (age bands:
    // patients are numbered in birth order).
    struct Dim {
      std::vector<const Roaring*> sets;
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      size_t size() const { return sets.empty() ? ranges.size() : sets.size(); }
    };
    std::vector<Dim> dims;
    for (const v1::Dimension& dim : query.group_by()) {
      Dim& values = dims.emplace_back();
      switch (dim.kind()) {
        case v1::Dimension::SEX:
          for (int s = 1; s <= 4; ++s) values.sets.push_back(&snap_->sex_bitmaps[s]);
          break;
        case v1::Dimension::AGE_BAND: {
          const int w = dim.width();
          const int bands = query::AgeBandCount(w);
          for (int b = 0; b < bands; ++b) {
            const int64_t hi = b + 1 == bands ? -1 : int64_t{b + 1} * w - 1;
            values.ranges.push_back(AgeBounds(ctx, int64_t{b} * w, hi));
          }
          break;
        }
        case v1::Dimension::SITE:
          values.sets.push_back(&snap_->population);
          break;
        default:
          return absl::InvalidArgumentError("unknown breakdown dimension");
      }
    }
    std::vector<v1::CellKey> keys =
        query::EnumerateCells(query, {snap_->meta.site});
    std::vector<int64_t> counts(keys.size(), 0);
    if (dims.empty()) {
      if (counts.size() != 1) return absl::InternalError("cell count mismatch");
      counts[0] = static_cast<int64_t>(cohort.cardinality());
    } else {
      // Cells are row-major (the last dimension varies fastest). The last
      // age-band dimension is counted by rank on the intersection of the
      // other dimensions' values: two rank lookups per band instead of an
      // intersection per cell.
      size_t total = 1;
      std::vector<size_t> stride(dims.size(), 1);
      for (size_t d = dims.size(); d-- > 0;) {
        stride[d] = total;
        total *= dims[d].size();
      }
      if (total != keys.size()) return absl::InternalError("cell count mismatch");
      int rank_dim = -1;
      for (size_t d = 0; d < dims.size(); ++d) {
        if (!dims[d].ranges.empty()) rank_dim = static_cast<int>(d);
      }
      // Odometer over the other dimensions.
      std::vector<size_t> idx(dims.size(), 0);
      while (true) {
        size_t base = 0;
        // The intersection of the cohort with this combination's values
        // (no copy of the cohort when every other dimension is the rank's).
        Roaring r;
        const Roaring* acc = &cohort;
        for (size_t d = 0; d < dims.size(); ++d) {
          if (static_cast<int>(d) == rank_dim) continue;
          base += idx[d] * stride[d];
          Roaring range;
          const Roaring* value = &range;
          if (!dims[d].sets.empty()) {
            value = dims[d].sets[idx[d]];
          } else {
            const auto [first, last] = dims[d].ranges[idx[d]];
            if (first < last) range.addRange(first, last);
          }
          if (acc == &cohort) {
            r = cohort & *value;
            acc = &r;
          } else if (!r.isEmpty()) {
            r &= *value;
          }
        }
        if (rank_dim >= 0) {
          const Dim& ages = dims[rank_dim];
          for (size_t b = 0; b < ages.ranges.size(); ++b) {
            counts[base + b * stride[rank_dim]] = static_cast<int64_t>(
                CountInRange(*acc, ages.ranges[b].first, ages.ranges[b].second));
          }
        } else {
          counts[base] = static_cast<int64_t>(acc->cardinality());
        }
        // Next combination of the non-rank dimensions.
        size_t d = dims.size();
        while (d-- > 0) {
          if (static_cast<int>(d) == rank_dim) continue;
          if (++idx[d] < dims[d].size()) break;
          idx[d] = 0;
        }
        if (d == static_cast<size_t>(-1)) break;
      }
    }
    std::vector<v1::Cell> cells;
    cells.reserve(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      v1::Cell& cell = cells.emplace_back();
      *cell.mutable_key() = std::move(keys[k]);
      cell.set_count(counts[k]);
    }
    return cells;
  }

  std::shared_ptr<const Snapshot> snap_;
  absl::flat_hash_map<const CodeTable*, absl::flat_hash_map<uint64_t, Roaring>>
      prefix_unions_;
};

}  // namespace

std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot) {
  return std::make_unique<IndexEngine>(std::move(snapshot));
}

}  // namespace passerelle::node
