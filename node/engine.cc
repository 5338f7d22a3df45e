#include "node/engine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "query/canonical.h"
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
  IndexEngine(std::shared_ptr<const Snapshot> snap,
              const IndexEngineOptions& options)
      : snap_(std::move(snap)),
        options_(options),
        clock_(options.clock != nullptr ? options.clock : Clock::Real()),
        crosswalk_index_(snap_->crosswalks, SiteVocabularies(*snap_)) {
    BuildPrefixUnions();
    BuildRepeatBitmaps();
    // The most frequent of the four sexes of the cells (see Breakdown).
    for (int sx = 2; sx <= 4; ++sx) {
      if (snap_->sex_bitmaps[sx].cardinality() >
          snap_->sex_bitmaps[largest_sex_].cardinality()) {
        largest_sex_ = sx;
      }
    }
  }

  const SnapshotMeta& meta() const override { return snap_->meta; }
  std::vector<std::string> Vocabularies() const override {
    return snap_->Vocabularies();
  }

  v1::SiteExpansion Explain(const v1::Query& query) const override {
    v1::SiteExpansion e;
    crosswalk_index_.Expand(query, snap_->meta.site, nullptr, &e);
    return e;
  }

  std::shared_ptr<const CrosswalkSet> crosswalks() const override {
    return snap_->crosswalks;
  }

  absl::StatusOr<std::vector<v1::Cell>> Count(
      const v1::Query& query) const override {
    return CountExpanded(query, nullptr);
  }

  absl::StatusOr<std::vector<v1::Cell>> CountExpanded(
      const v1::Query& written, v1::SiteExpansion* expansion) const override {
    // The mapped site codes join the event specs' code sets; everything
    // below reads the expanded query as if they had been written.
    v1::Query expanded;
    const v1::Query& query =
        crosswalk_index_.Expand(written, snap_->meta.site, &expanded, expansion)
            ? expanded
            : written;
    // The reference date for ages: the query's, else today on the engine's
    // clock; never a date of the data (privacy.md requirement 1).
    const v1::Date ref =
        query.has_as_of() ? query.as_of() : query::UtcDate(clock_->Now());
    Context ctx;
    ctx.ref_year = ref.year();
    ctx.ref_md = ref.month() * 100 + ref.day();
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

  // The events of a set of postings as a sequence needs them: the distinct
  // (patient, day) pairs of all of them, sorted, by patient. A sequence
  // holds for a patient with one of the postings iff it holds with the
  // union of their days, so a timeline stands for the set (and for one
  // posting, without its repeated days and with its run ends found once).
  struct Timeline {
    std::vector<uint32_t> patients;  // Distinct, increasing.
    // Patient r's days are days[starts[r], starts[r + 1]) (increasing).
    std::vector<uint32_t> starts;
    std::vector<int32_t> days;
    size_t bytes() const {
      return (patients.size() + starts.size()) * sizeof(uint32_t) +
             days.size() * sizeof(int32_t);
    }
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
    const int64_t min_key = hi < 0 ? INT32_MIN : AgeAtLeastKey(ctx, hi + 1) + 1;
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
        if (terms.size() == 1) return Eval(terms[0], ctx, depth + 1);
        // The terms that cost nothing to evaluate (a borrowed bitmap or a
        // range of patient numbers) are intersected first, smallest first,
        // so that each intersection works on the smallest input available;
        // the others follow in order, stopping once nothing is left.
        std::vector<Bits> cheap;
        std::vector<int> costly;
        for (int i = 0; i < terms.size(); ++i) {
          if (!IsCheap(terms[i])) {
            costly.push_back(i);
            continue;
          }
          PASSERELLE_ASSIGN_OR_RETURN(Bits r, Eval(terms[i], ctx, depth + 1));
          cheap.push_back(std::move(r));
        }
        std::vector<std::pair<uint64_t, const Roaring*>> order;
        for (const Bits& b : cheap)
          order.emplace_back(b.get().cardinality(), &b.get());
        std::stable_sort(
            order.begin(), order.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
        Roaring acc;
        bool started = false;
        if (order.size() == 1 && costly.empty()) return std::move(cheap[0]);
        if (order.size() >= 2) {
          acc = *order[0].second & *order[1].second;  // No copy of either.
          for (size_t k = 2; k < order.size() && !acc.isEmpty(); ++k) {
            acc &= *order[k].second;
          }
          started = true;
        }
        const Roaring* single = order.size() == 1 ? order[0].second : nullptr;
        for (int i : costly) {
          if (started && acc.isEmpty()) break;
          PASSERELLE_ASSIGN_OR_RETURN(Bits r, Eval(terms[i], ctx, depth + 1));
          if (started) {
            acc &= r.get();
          } else if (single != nullptr) {
            acc = *single & r.get();
            started = true;
          } else {
            acc = r.get();
            started = true;
          }
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

  // Whether evaluating `e` only borrows a bitmap, builds a range of patient
  // numbers or unites per-code bitmaps (no posting scan).
  static bool IsCheap(const v1::Expr& e) {
    if (e.kind_case() != v1::Expr::kCriterion) return false;
    switch (e.criterion().kind_case()) {
      case v1::Criterion::kSex:
      case v1::Criterion::kBirthYear:
      case v1::Criterion::kAge:
      case v1::Criterion::kDeceased:
        return true;
      case v1::Criterion::kEvent: {
        // The common case of EvalEvent: per-code bitmaps (one union at most).
        const v1::EventCriterion& ev = e.criterion().event();
        return !ev.has_window() && ev.min_count() <= 1 &&
               !ev.event().has_value();
      }
      default:
        return false;
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
        const int64_t lo = c.birth_year().has_min()
                               ? c.birth_year().min() * 10000LL
                               : INT32_MIN;
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
          for (size_t c = lo; c < hi; ++c)
            bitmaps.push_back(&table.postings[c]->bitmap);
          Roaring u = Union(bitmaps);
          u.shrinkToFit();
          unions.emplace(RangeKey(lo, hi), std::move(u));
        }
      }
    }
  }

  // "At least N times" for one code, N = 2..kRepeatLevels + 1, is a bitmap
  // lookup: per posting, the patients with at least 2, 3, ... distinct
  // events of it (nested subsets of its bitmap, about as large together as
  // the per-code bitmaps).
  static constexpr size_t kRepeatLevels = 7;
  void BuildRepeatBitmaps() {
    std::vector<std::vector<uint32_t>> members(kRepeatLevels);
    for (const auto& [key, table] : snap_->tables) {
      for (const std::shared_ptr<Posting>& shared : table.postings) {
        const Posting& p = *shared;
        if (repeat_bitmaps_.contains(&p)) continue;  // Shared posting.
        for (auto& m : members) m.clear();
        const uint32_t* pat = p.patients.data();
        const uint32_t* ev = p.events.data();
        const size_t n = p.size();
        for (size_t i = 0; i < n;) {
          // Distinct events of the patient's run (duplicates are adjacent),
          // counted up to kRepeatLevels + 1.
          size_t end = i + 1, distinct = 1;
          for (; end < n && pat[end] == pat[i]; ++end) {
            distinct += ev[end] != ev[end - 1];
          }
          const size_t top = std::min(distinct, kRepeatLevels + 1);
          for (size_t c = 2; c <= top; ++c) members[c - 2].push_back(pat[i]);
          i = end;
        }
        std::vector<Roaring>& levels = repeat_bitmaps_[&p];
        levels.resize(kRepeatLevels);
        for (size_t l = 0; l < kRepeatLevels; ++l) {
          levels[l].addMany(members[l].size(), members[l].data());
          levels[l].runOptimize();
          levels[l].shrinkToFit();
        }
      }
    }
  }

  // The patients with at least `min_count` distinct events of the spec when
  // its codes are one posting and min_count has a repeat bitmap; null
  // otherwise.
  const Roaring* RepeatBitmap(const v1::EventSpec& spec,
                              size_t min_count) const {
    if (min_count < 2 || min_count > kRepeatLevels + 1) return nullptr;
    const Posting* only = nullptr;
    bool single = true;
    ForEachPosting(spec, [&](const Posting& p) {
      if (p.size() == 0) return;
      if (only != nullptr && only != &p) single = false;
      only = &p;
    });
    if (!single || only == nullptr) return nullptr;
    auto it = repeat_bitmaps_.find(only);
    if (it == repeat_bitmaps_.end()) return nullptr;
    return &it->second[min_count - 2];
  }

  // Whether posting p lists each event once (no two adjacent entries with
  // the same patient and event: duplicates would be adjacent), so that a
  // patient's entry count is its event count. Found on first use (one pass
  // over the posting) and remembered.
  bool UniqueEvents(const Posting& p) const {
    {
      absl::MutexLock lock(&unique_mu_);
      auto it = unique_events_.find(&p);
      if (it != unique_events_.end()) return it->second;
    }
    const uint32_t* pat = p.patients.data();
    const uint32_t* ev = p.events.data();
    bool dup = false;
    for (size_t i = 1; i < p.size(); ++i) {
      dup |= (pat[i] == pat[i - 1]) & (ev[i] == ev[i - 1]);
    }
    absl::MutexLock lock(&unique_mu_);
    unique_events_[&p] = !dup;
    return !dup;
  }

  // Calls fn(table, lo, hi) for every range of codes the spec's set matches
  // (one per code of the set and matching table).
  template <typename Fn>
  void ForEachCodeRange(const v1::EventSpec& spec, Fn fn) const {
    const int domain = static_cast<int>(spec.domain());
    auto begin = snap_->tables.lower_bound({domain, std::string()});
    for (const v1::Code& code : spec.codes()) {
      for (auto it = begin;
           it != snap_->tables.end() && it->first.first == domain; ++it) {
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
      for (size_t c = lo; c < hi; ++c) fn(*table.postings[c]);
    });
  }

  // The bitmaps whose union is the set of patients with an event of the
  // spec's codes: one per matched code range (from the prefix index when it
  // spans several codes).
  std::vector<const Roaring*> SpecBitmaps(const v1::EventSpec& spec) const {
    std::vector<const Roaring*> bitmaps;
    ForEachCodeRange(spec, [&](const CodeTable& table, size_t lo, size_t hi) {
      if (hi - lo == 1) {
        bitmaps.push_back(&table.postings[lo]->bitmap);
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
      for (size_t c = lo; c < hi; ++c)
        bitmaps.push_back(&table.postings[c]->bitmap);
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
      if (bitmaps.size() == 1) {
        patients_ = bitmaps[0];  // Borrowed: no copy.
      } else {
        union_ = Union(bitmaps);
        patients_ = &union_;
      }
    }
    SpecEvents(const SpecEvents&) = delete;
    SpecEvents& operator=(const SpecEvents&) = delete;

    // Every patient with at least one event of a matching code (before the
    // window and value conditions).
    const Roaring& patients() const { return *patients_; }

    size_t cursor_count() const { return cursors_.size(); }
    bool has_value() const { return has_value_; }
    bool has_window() const { return from_ != INT32_MIN || to_ != INT32_MAX; }
    const Posting& posting(size_t k) const { return *cursors_[k].posting; }

    // The entries [first, last) of `patient` in posting k (empty when it has
    // none), before the window and value conditions. Patients must be asked
    // for in increasing order; the cursor moves past the run.
    std::pair<size_t, size_t> Run(size_t k, uint32_t patient) {
      Cursor& c = cursors_[k];
      Seek(&c, patient);
      const std::vector<uint32_t>& v = c.posting->patients;
      size_t end = c.i;
      while (end < v.size() && v[end] == patient) ++end;
      const std::pair<size_t, size_t> run{c.i, end};
      c.i = end;
      return run;
    }

    // Appends the days of the matching entries of posting k in [first, last).
    void AppendDays(size_t k, std::pair<size_t, size_t> run,
                    std::vector<int32_t>* out) const {
      const Posting& p = *cursors_[k].posting;
      for (size_t i = run.first; i < run.second; ++i) {
        if (Matches(p, i)) out->push_back(p.days[i]);
      }
    }

    // Appends the event ids of the matching entries of posting k in
    // [first, last).
    void AppendEvents(size_t k, std::pair<size_t, size_t> run,
                      std::vector<uint32_t>* out) const {
      const Posting& p = *cursors_[k].posting;
      for (size_t i = run.first; i < run.second; ++i) {
        if (Matches(p, i)) out->push_back(p.events[i]);
      }
    }

    // The number of distinct matching events of posting k in [first, last),
    // counting no further than `enough`.
    size_t CountEvents(size_t k, std::pair<size_t, size_t> run,
                       size_t enough) const {
      const Posting& p = *cursors_[k].posting;
      size_t n = 0;
      bool any = false;
      uint32_t last_event = 0;
      for (size_t i = run.first; i < run.second && n < enough; ++i) {
        // The same event always has the same day: duplicates are adjacent.
        if (any && p.events[i] == last_event) continue;
        if (!Matches(p, i)) continue;
        any = true;
        last_event = p.events[i];
        ++n;
      }
      return n;
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
    Roaring union_;
    const Roaring* patients_ = &union_;
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
    if (!ev.has_window() && !spec.has_value()) {
      if (const Roaring* r = RepeatBitmap(spec, min_count)) {
        return Bits::Borrow(r);
      }
    }
    int32_t from = INT32_MIN, to = INT32_MAX;
    if (ev.has_window()) {
      from = ToDay(ev.window().start());
      to = ToDay(ev.window().end());
    }
    SpecEvents events(*this, spec, from, to);
    std::vector<uint32_t> patients;
    if (events.cursor_count() == 1) {
      CountOnePosting(events, min_count, &patients);
    } else {
      RepeatScratch scratch;
      for (uint32_t patient : Members(events.patients())) {
        if (HasEvents(events, patient, min_count, &scratch)) {
          patients.push_back(patient);
        }
      }
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return Bits(std::move(r));
  }

  // The patients with at least `min_count` distinct matching events of the
  // single posting of `events`: one sequential pass over the posting (every
  // patient of it is asked for anyway), no bitmap extraction and no seeks.
  void CountOnePosting(const SpecEvents& events, size_t min_count,
                       std::vector<uint32_t>* out) const {
    const Posting& p = events.posting(0);
    const uint32_t* pat = p.patients.data();
    const size_t n = p.size();
    const bool plain = !events.has_window() && !events.has_value();
    if (plain && UniqueEvents(p)) {
      // Entry i starts a patient's run when the entry before it is another
      // patient's, and that run holds min_count events or more when entry
      // i + min_count - 1 is still the same patient's. No branch per entry:
      // the run lengths are unpredictable.
      const size_t m = min_count;
      if (n < m || m == 0) return;
      out->resize(p.bitmap.cardinality() + 1);
      uint32_t* o = out->data();
      size_t k = 0;
      o[k] = pat[0];
      k += pat[m - 1] == pat[0];
      const size_t cap = out->size() - 1;
      size_t i = 1;
      for (; i + m - 1 < n && k < cap; ++i) {
        o[k] = pat[i];
        k += (pat[i - 1] != pat[i]) & (pat[i + m - 1] == pat[i]);
      }
      if (i + m - 1 >= n) {
        out->resize(k);
        return;
      }
      out->clear();  // The bitmap does not match the posting: scan below.
    }
    size_t i = 0;
    while (i < n) {
      const uint32_t patient = pat[i];
      size_t end = i + 1;
      while (end < n && pat[end] == patient) ++end;
      if (end - i >= min_count) {
        // Without conditions, the run's entries are the patient's events
        // unless one event is listed twice (adjacent equal event ids).
        bool hit;
        if (plain) {
          size_t distinct = 1;
          const uint32_t* ev = p.events.data();
          for (size_t k = i + 1; k < end && distinct < min_count; ++k) {
            distinct += ev[k] != ev[k - 1];
          }
          hit = distinct >= min_count;
        } else {
          hit = events.CountEvents(0, {i, end}, min_count) >= min_count;
        }
        if (hit) out->push_back(patient);
      }
      i = end;
    }
  }

  // Whether `patient` has at least `min_count` distinct matching events
  // over the postings of `events` (patients asked for in increasing order).
  // One posting reaching the count decides; fewer entries than the count in
  // all of them together rules it out; otherwise the events are merged.
  struct RepeatScratch {
    std::vector<std::pair<size_t, size_t>> runs;
    std::vector<uint32_t> events;
  };
  static bool HasEvents(SpecEvents& events, uint32_t patient, size_t min_count,
                        RepeatScratch* scratch) {
    size_t total = 0;
    bool decided = false;
    auto& runs = scratch->runs;
    runs.clear();
    for (size_t k = 0; k < events.cursor_count(); ++k) {
      const auto run = events.Run(k, patient);
      runs.push_back(run);
      if (decided || run.first == run.second) continue;
      total += run.second - run.first;
      if (events.CountEvents(k, run, min_count) >= min_count) decided = true;
    }
    if (decided) return true;
    if (total < min_count) return false;
    // Merged, with the window and value conditions.
    auto& merged = scratch->events;
    merged.clear();
    for (size_t k = 0; k < events.cursor_count(); ++k) {
      events.AppendEvents(k, runs[k], &merged);
    }
    std::sort(merged.begin(), merged.end());
    return static_cast<size_t>(std::unique(merged.begin(), merged.end()) -
                               merged.begin()) >= min_count;
  }

  // Whether some day of a (sorted) has a day of b (sorted) 0..within days
  // on or after it. Both pointers only move forward.
  static bool AnyWithin(const int32_t* a, size_t na, const int32_t* b,
                        size_t nb, int64_t within) {
    size_t k = 0;
    for (size_t i = 0; i < na; ++i) {
      const int32_t day = a[i];
      while (k < nb && b[k] < day) ++k;
      if (k == nb) return false;
      if (static_cast<int64_t>(b[k]) - day <= within) return true;
    }
    return false;
  }

  // A sequence without value conditions whose second side is one posting:
  // each posting of the first side is read in order, whole (patient runs of
  // days), with one forward cursor on the second side's posting per first-
  // side posting; the first side's postings are taken largest first and a
  // patient already found is skipped. Sequential reads only, except the
  // second side's gallops over patients it lacks.
  Roaring SequenceByPosting(const SpecEvents& a, const Posting& b,
                            int64_t within) const {
    std::vector<const Posting*> first;
    for (size_t k = 0; k < a.cursor_count(); ++k)
      first.push_back(&a.posting(k));
    std::stable_sort(first.begin(), first.end(),
                     [](const Posting* x, const Posting* y) {
                       return x->size() > y->size();
                     });
    std::vector<uint64_t> found((snap_->size() + 63) / 64, 0);
    const uint32_t* bp = b.patients.data();
    const int32_t* bd = b.days.data();
    const size_t bn = b.size();
    for (const Posting* posting : first) {
      const uint32_t* ap = posting->patients.data();
      const int32_t* ad = posting->days.data();
      const size_t an = posting->size();
      size_t j = 0;  // Second-side cursor.
      for (size_t i = 0; i < an;) {
        const uint32_t patient = ap[i];
        size_t end = i + 1;
        while (end < an && ap[end] == patient) ++end;
        if (patient < snap_->size() &&
            !(found[patient >> 6] >> (patient & 63) & 1)) {
          j = SeekPatient(bp, bn, j, patient);
          size_t bend = j;
          while (bend < bn && bp[bend] == patient) ++bend;
          if (bend > j &&
              AnyWithin(ad + i, end - i, bd + j, bend - j, within)) {
            found[patient >> 6] |= uint64_t{1} << (patient & 63);
          }
          j = bend;
        }
        i = end;
      }
    }
    std::vector<uint32_t> patients;
    for (size_t w = 0; w < found.size(); ++w) {
      for (uint64_t bits = found[w]; bits != 0; bits &= bits - 1) {
        patients.push_back(
            static_cast<uint32_t>(w * 64 + __builtin_ctzll(bits)));
      }
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return r;
  }

  // A sequence without value conditions whose second side is one posting
  // and whose first side has a few: the candidates (patients on both sides)
  // in increasing order, with a forward cursor per posting kept in local
  // arrays; a first-side posting without the candidate costs a comparison.
  // The days are read in place. Many candidates are split into consecutive
  // ranges checked by parallel threads (each with its own cursors; the
  // snapshot is read-only), options_.parallel_sequence_candidates at least
  // each.
  static constexpr size_t kMaxParallel = 4;
  Roaring SequenceByPatient(std::vector<const Posting*> order, const Posting& b,
                            const Roaring& both, int64_t within) const {
    // Largest posting first: it is the likeliest to hold the candidate and
    // to decide it, and the others are not consulted once it is decided
    // (their cursors catch up by seeking).
    std::stable_sort(order.begin(), order.end(),
                     [](const Posting* x, const Posting* y) {
                       return x->size() > y->size();
                     });
    return CheckCandidates(
        both, [&](uint32_t* c, size_t n, std::vector<uint32_t>* rejected) {
          return SequenceRange(order, b, c, n, within, rejected);
        });
  }

  // A sequence whose sides are timelines (see Timeline): per candidate, its
  // run of distinct days on each side is found by one forward seek over
  // distinct patients and read in place.
  Roaring SequenceByTimeline(const Timeline& a, const Timeline& b,
                             const Roaring& both, int64_t within) const {
    return CheckCandidates(
        both, [&](uint32_t* c, size_t n, std::vector<uint32_t>* rejected) {
          return TimelineRange(a, b, c, n, within, rejected);
        });
  }

  // The members of `both` that check(c, n, rejected) finds, where check
  // moves the candidates found among c[0..n) (increasing) to its front, in
  // order, returns their number, and appends the others to *rejected (no
  // list as long as the candidates is allocated). Many candidates are split
  // into consecutive ranges checked by parallel threads,
  // options_.parallel_sequence_candidates at least each.
  template <typename Check>
  Roaring CheckCandidates(const Roaring& both, const Check& check) const {
    std::vector<uint32_t> members = Members(both);
    const size_t cores = std::max(1u, std::thread::hardware_concurrency());
    const size_t per_part = options_.parallel_sequence_candidates;
    const size_t parts =
        per_part == 0
            ? 1
            : std::max<size_t>(1, std::min({kMaxParallel, cores,
                                            members.size() / per_part}));
    // Per range: the number found (at the range's front) and the rejected.
    std::vector<size_t> found(parts, 0);
    std::vector<std::vector<uint32_t>> rejected(parts);
    auto bounds = [&](size_t part) {
      return std::pair<size_t, size_t>(members.size() * part / parts,
                                       members.size() * (part + 1) / parts);
    };
    auto run = [&](size_t part) {
      const auto [lo, hi] = bounds(part);
      found[part] = check(members.data() + lo, hi - lo, &rejected[part]);
    };
    if (parts == 1) {
      run(0);
    } else {
      std::vector<std::thread> threads;
      for (size_t part = 1; part < parts; ++part) {
        threads.emplace_back(run, part);
      }
      run(0);
      for (std::thread& t : threads) t.join();
    }
    size_t n_found = 0, n_rejected = 0;
    for (size_t part = 0; part < parts; ++part) {
      n_found += found[part];
      n_rejected += rejected[part].size();
    }
    // Most candidates usually qualify: the result is built from whichever
    // of the found and the rejected candidates are fewer.
    Roaring r;
    if (n_rejected < n_found) {
      for (size_t part = 0; part < parts; ++part) {
        r.addMany(rejected[part].size(), rejected[part].data());
      }
      return both - r;
    }
    for (size_t part = 0; part < parts; ++part) {
      r.addMany(found[part], members.data() + bounds(part).first);
    }
    return r;
  }

  // SequenceByTimeline's check of the candidates c[0..n) (increasing, each
  // on both timelines), as CheckCandidates asks.
  static size_t TimelineRange(const Timeline& a, const Timeline& b, uint32_t* c,
                              size_t n, int64_t within,
                              std::vector<uint32_t>* rejected) {
    const uint32_t* ap = a.patients.data();
    const uint32_t* bp = b.patients.data();
    const size_t an = a.patients.size();
    const size_t bn = b.patients.size();
    const uint32_t* as = a.starts.data();
    const uint32_t* bs = b.starts.data();
    const int32_t* ad = a.days.data();
    const int32_t* bd = b.days.data();
    size_t i = 0, j = 0, f = 0;
    for (size_t m = 0; m < n; ++m) {
      const uint32_t patient = c[m];
      i = SeekPatient(ap, an, i, patient);
      j = SeekPatient(bp, bn, j, patient);
      // Every candidate is on both sides; checked rather than assumed.
      const bool hit = i < an && j < bn && ap[i] == patient &&
                       bp[j] == patient &&
                       AnyWithin(ad + as[i], as[i + 1] - as[i], bd + bs[j],
                                 bs[j + 1] - bs[j], within);
      if (hit) {
        c[f++] = patient;  // f <= m: c[m] has been read.
      } else {
        rejected->push_back(patient);
      }
    }
    return f;
  }

  // SequenceByPatient's check of the candidates c[0..n) (increasing), with
  // cursors starting at the beginning of each posting, as CheckCandidates
  // asks.
  static size_t SequenceRange(const std::vector<const Posting*>& first,
                              const Posting& b, uint32_t* c, size_t n,
                              int64_t within, std::vector<uint32_t>* rejected) {
    const size_t na = first.size();
    std::vector<const uint32_t*> ap(na);
    std::vector<const int32_t*> ad(na);
    std::vector<size_t> ai(na, 0), an(na);
    // The patient at each cursor (UINT32_MAX past the end), side by side:
    // a candidate is checked against all of them in one cache line.
    std::vector<uint32_t> next(na);
    for (size_t k = 0; k < na; ++k) {
      ap[k] = first[k]->patients.data();
      ad[k] = first[k]->days.data();
      an[k] = first[k]->size();
      next[k] = an[k] > 0 ? ap[k][0] : UINT32_MAX;
    }
    const uint32_t* bp = b.patients.data();
    const int32_t* bd = b.days.data();
    const size_t bn = b.size();
    size_t j = 0, f = 0;
    for (size_t m = 0; m < n; ++m) {
      const uint32_t patient = c[m];
      j = SeekPatient(bp, bn, j, patient);
      const size_t bend = RunEnd(bp, bn, j, patient);
      bool hit = false;
      for (size_t k = 0; k < na; ++k) {
        if (next[k] > patient) continue;
        size_t i = ai[k];
        if (next[k] < patient) i = SeekPatient(ap[k], an[k], i, patient);
        const size_t end = RunEnd(ap[k], an[k], i, patient);
        ai[k] = end;
        next[k] = end < an[k] ? ap[k][end] : UINT32_MAX;
        if (end > i) {
          hit = AnyWithin(ad[k] + i, end - i, bd + j, bend - j, within);
          if (hit) break;
        }
      }
      j = bend;
      if (hit) {
        c[f++] = patient;  // f <= m: c[m] has been read.
      } else {
        rejected->push_back(patient);
      }
    }
    return f;
  }

  // The end of the run of `patient` that starts at i in v[0..n) (v sorted,
  // v[i] >= patient or i == n): the entries equal to it are counted eight
  // at a time without a branch per entry (run lengths are unpredictable;
  // most runs are shorter than eight).
  static size_t RunEnd(const uint32_t* v, size_t n, size_t i,
                       uint32_t patient) {
    while (i + 8 <= n) {
      size_t c = 0;
      for (size_t t = 0; t < 8; ++t) c += v[i + t] == patient;
      i += c;
      if (c < 8) return i;
    }
    while (i < n && v[i] == patient) ++i;
    return i;
  }

  // The first index at or after `i` of v[0..n) whose patient is >=
  // `patient` (v sorted): the entry at i, then the next 16 counted without
  // a branch per entry, then galloping.
  static size_t SeekPatient(const uint32_t* v, size_t n, size_t i,
                            uint32_t patient) {
    // Already there: the usual case when most of a posting's patients are
    // asked for in turn.
    if (i < n && v[i] >= patient) return i;
    if (i + 16 <= n) {
      size_t c = 0;
      for (size_t t = 0; t < 16; ++t) c += v[i + t] < patient;
      if (c < 16) return i + c;
      i += 16;
    } else {
      for (; i < n; ++i) {
        if (v[i] >= patient) return i;
      }
    }
    if (i >= n) return n;
    size_t lo = i, step = 1, hi = i;  // v[lo - 1] < patient.
    while (hi < n && v[hi] < patient) {
      lo = hi + 1;
      step *= 2;
      hi = lo + step;
    }
    if (hi > n) hi = n;
    return static_cast<size_t>(std::lower_bound(v + lo, v + hi, patient) - v);
  }

  absl::StatusOr<Roaring> EvalSequence(const v1::SequenceCriterion& seq) const {
    SpecEvents a(*this, seq.first(), INT32_MIN, INT32_MAX);
    SpecEvents b(*this, seq.second(), INT32_MIN, INT32_MAX);
    const int64_t within = seq.has_within() ? seq.within_days() : INT64_MAX;
    // Only patients with events on both sides can qualify. They are visited
    // once each, in increasing order, with one forward-only cursor per
    // posting of either side: every posting is read at most once, in order.
    const Roaring both = a.patients() & b.patients();
    if (!a.has_value() && !b.has_value()) {
      // Each side as its timeline when the budget allows: one cursor per
      // side per candidate, no run ends to find.
      const std::shared_ptr<const Timeline> a_line = SideTimeline(a);
      const std::shared_ptr<const Timeline> b_line =
          a_line == nullptr ? nullptr : SideTimeline(b);
      if (a_line != nullptr && b_line != nullptr) {
        return SequenceByTimeline(*a_line, *b_line, both, within);
      }
      if (b.cursor_count() == 1) {
        // Many first-side codes (a wide prefix): each posting read whole,
        // rather than a cursor per code consulted for every candidate.
        if (a.cursor_count() > 32)
          return SequenceByPosting(a, b.posting(0), within);
        std::vector<const Posting*> first;
        for (size_t k = 0; k < a.cursor_count(); ++k) {
          first.push_back(&a.posting(k));
        }
        return SequenceByPatient(std::move(first), b.posting(0), both, within);
      }
    }
    // The second side's days of one patient: read in place from a single
    // posting without a value condition, otherwise gathered (and sorted when
    // several postings are merged).
    const bool b_in_place = b.cursor_count() == 1 && !b.has_value();
    const bool a_in_place = !a.has_value();
    std::vector<int32_t> b_days, a_days;
    std::vector<uint32_t> patients;
    for (uint32_t patient : Members(both)) {
      const int32_t* bd = nullptr;
      size_t bn = 0;
      if (b_in_place) {
        const auto run = b.Run(0, patient);
        bd = b.posting(0).days.data() + run.first;
        bn = run.second - run.first;
      } else {
        b_days.clear();
        for (size_t k = 0; k < b.cursor_count(); ++k) {
          b.AppendDays(k, b.Run(k, patient), &b_days);
        }
        if (b.cursor_count() > 1) std::sort(b_days.begin(), b_days.end());
        bd = b_days.data();
        bn = b_days.size();
      }
      bool found = false;
      // Each posting of the first side alone: the sequence holds when it
      // holds for one of them (no merge needed). Cursors that do not hold
      // the patient cost one comparison.
      for (size_t k = 0; k < a.cursor_count(); ++k) {
        const auto run = a.Run(k, patient);
        if (found || run.first == run.second || bn == 0) continue;
        if (a_in_place) {
          found = AnyWithin(a.posting(k).days.data() + run.first,
                            run.second - run.first, bd, bn, within);
        } else {
          a_days.clear();
          a.AppendDays(k, run, &a_days);
          found = AnyWithin(a_days.data(), a_days.size(), bd, bn, within);
        }
      }
      if (found) patients.push_back(patient);
    }
    Roaring r;
    r.addMany(patients.size(), patients.data());
    return r;
  }

  // The timeline of a sequence side without a value condition (see
  // Timeline); null when it has one or the budget allows none.
  std::shared_ptr<const Timeline> SideTimeline(const SpecEvents& side) const {
    if (side.has_value() || side.cursor_count() == 0) return nullptr;
    std::vector<const Posting*> postings;
    for (size_t k = 0; k < side.cursor_count(); ++k) {
      postings.push_back(&side.posting(k));
    }
    return GetTimeline(std::move(postings));
  }

  // The timeline of the given postings, built on first use and kept while
  // options_.sequence_timeline_budget_bytes allows (null when it does not).
  std::shared_ptr<const Timeline> GetTimeline(
      std::vector<const Posting*> postings) const {
    std::sort(postings.begin(), postings.end());
    postings.erase(std::unique(postings.begin(), postings.end()),
                   postings.end());
    size_t entries = 0;
    for (const Posting* p : postings) entries += p->size();
    // At most: a patient and a start per entry, and its day.
    const size_t bound = entries * 3 * sizeof(uint32_t) + sizeof(uint32_t);
    const size_t budget = options_.sequence_timeline_budget_bytes;
    absl::MutexLock lock(&timeline_mu_);
    auto it = timelines_.find(postings);
    if (it != timelines_.end()) return it->second;
    if (bound > budget / 4 || bound > budget - timeline_bytes_) return nullptr;
    std::shared_ptr<const Timeline> t = BuildTimeline(postings);
    timeline_bytes_ += t->bytes();
    timelines_.emplace(std::move(postings), t);
    return t;
  }

  // The timeline of one posting: one pass (it is sorted by (patient, day)).
  static std::shared_ptr<const Timeline> OnePostingTimeline(const Posting& p) {
    auto t = std::make_shared<Timeline>();
    const uint32_t* pat = p.patients.data();
    const int32_t* day = p.days.data();
    const size_t n = p.size();
    t->days.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      if (i == 0 || pat[i] != pat[i - 1]) {
        t->patients.push_back(pat[i]);
        t->starts.push_back(static_cast<uint32_t>(t->days.size()));
      } else if (day[i] == day[i - 1]) {
        continue;  // The same day again.
      }
      t->days.push_back(day[i]);
    }
    t->starts.push_back(static_cast<uint32_t>(t->days.size()));
    t->patients.shrink_to_fit();
    t->starts.shrink_to_fit();
    t->days.shrink_to_fit();
    return t;
  }

  // The distinct (patient, day) pairs of the postings, in order: each
  // posting is sorted by (patient, day), so their keys are merged pairwise
  // (log2 of the number of postings passes) rather than sorted.
  static std::shared_ptr<const Timeline> BuildTimeline(
      const std::vector<const Posting*>& postings) {
    if (postings.size() == 1) return OnePostingTimeline(*postings[0]);
    // (patient, day) as one unsigned key ordered like the pair: the day's
    // sign bit flipped.
    std::vector<uint64_t> keys;
    std::vector<size_t> bounds{0};
    for (const Posting* p : postings) {
      for (size_t i = 0; i < p->size(); ++i) {
        keys.push_back((static_cast<uint64_t>(p->patients[i]) << 32) |
                       (static_cast<uint32_t>(p->days[i]) ^ 0x80000000u));
      }
      bounds.push_back(keys.size());
    }
    std::vector<uint64_t> buffer(keys.size());
    while (bounds.size() > 2) {
      std::vector<size_t> next{0};
      for (size_t s = 0; s + 1 < bounds.size(); s += 2) {
        const size_t lo = bounds[s];
        const size_t mid = bounds[s + 1];
        const size_t hi = s + 2 < bounds.size() ? bounds[s + 2] : mid;
        std::merge(keys.begin() + lo, keys.begin() + mid, keys.begin() + mid,
                   keys.begin() + hi, buffer.begin() + lo);
        next.push_back(hi);
      }
      keys.swap(buffer);
      bounds = std::move(next);
    }
    std::vector<uint64_t>().swap(buffer);
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    auto t = std::make_shared<Timeline>();
    t->days.resize(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      const uint32_t patient = static_cast<uint32_t>(keys[i] >> 32);
      if (i == 0 || patient != static_cast<uint32_t>(keys[i - 1] >> 32)) {
        t->patients.push_back(patient);
        t->starts.push_back(static_cast<uint32_t>(i));
      }
      t->days[i] =
          static_cast<int32_t>(static_cast<uint32_t>(keys[i]) ^ 0x80000000u);
    }
    t->starts.push_back(static_cast<uint32_t>(keys.size()));
    t->patients.shrink_to_fit();
    t->starts.shrink_to_fit();
    return t;
  }

  // Patients in [first, last) (patient numbers) that `r` holds.
  static uint64_t CountInRange(const Roaring& r, uint32_t first,
                               uint32_t last) {
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
          for (int s = 1; s <= 4; ++s)
            values.sets.push_back(&snap_->sex_bitmaps[s]);
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
      if (total != keys.size())
        return absl::InternalError("cell count mismatch");
      int rank_dim = -1;
      for (size_t d = 0; d < dims.size(); ++d) {
        if (!dims[d].ranges.empty()) rank_dim = static_cast<int>(d);
      }
      // The cohort's count per value of the rank dimension (one value when
      // there is none).
      auto value_counts = [&](const Roaring& r, std::vector<int64_t>* out) {
        out->clear();
        if (rank_dim < 0) {
          out->push_back(static_cast<int64_t>(r.cardinality()));
          return;
        }
        for (const auto& [first, last] : dims[rank_dim].ranges) {
          out->push_back(static_cast<int64_t>(CountInRange(r, first, last)));
        }
      };
      int sex_dim = -1;
      for (size_t d = 0; d < dims.size(); ++d) {
        if (query.group_by(static_cast<int>(d)).kind() == v1::Dimension::SEX) {
          sex_dim = static_cast<int>(d);
        }
      }
      if (sex_dim >= 0 && dims.size() == (rank_dim >= 0 ? 2u : 1u)) {
        // Sex alone or with one age-band dimension: the sexes partition the
        // population, so the most frequent sex is counted as the cohort
        // minus the others (one intersection fewer, the largest one).
        std::vector<int64_t> total, part;
        value_counts(cohort, &total);
        std::vector<int64_t> rest = total;
        for (int sx = 0; sx <= 4; ++sx) {
          if (sx == largest_sex_) continue;
          const Roaring& set = snap_->sex_bitmaps[sx];
          if (set.isEmpty()) {
            part.assign(total.size(), 0);
          } else {
            value_counts(cohort & set, &part);
          }
          for (size_t v = 0; v < total.size(); ++v) {
            rest[v] -= part[v];
            if (sx >= 1) {
              counts[(sx - 1) * stride[sex_dim] +
                     (rank_dim >= 0 ? v * stride[rank_dim] : 0)] = part[v];
            }
          }
        }
        for (size_t v = 0; v < total.size(); ++v) {
          counts[(largest_sex_ - 1) * stride[sex_dim] +
                 (rank_dim >= 0 ? v * stride[rank_dim] : 0)] = rest[v];
        }
        return Cells(std::move(keys), counts);
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
            counts[base + b * stride[rank_dim]] =
                static_cast<int64_t>(CountInRange(*acc, ages.ranges[b].first,
                                                  ages.ranges[b].second));
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
    return Cells(std::move(keys), counts);
  }

  static std::vector<v1::Cell> Cells(std::vector<v1::CellKey> keys,
                                     const std::vector<int64_t>& counts) {
    std::vector<v1::Cell> cells;
    cells.reserve(keys.size());
    for (size_t k = 0; k < keys.size(); ++k) {
      v1::Cell& cell = cells.emplace_back();
      *cell.mutable_key() = std::move(keys[k]);
      cell.set_count(counts[k]);
    }
    return cells;
  }

  // The vocabularies of the snapshot's code tables, per domain.
  static CrosswalkIndex::SiteVocabularies SiteVocabularies(const Snapshot& s) {
    CrosswalkIndex::SiteVocabularies out;
    for (const auto& [key, table] : s.tables)
      out[key.first].push_back(key.second);
    return out;
  }

  std::shared_ptr<const Snapshot> snap_;
  const IndexEngineOptions options_;
  Clock* const clock_;
  // The target-side index of the snapshot's crosswalks (built at open).
  const CrosswalkIndex crosswalk_index_;
  int largest_sex_ = 1;  // In 1..4.
  mutable absl::Mutex unique_mu_;
  mutable absl::flat_hash_map<const Posting*, bool> unique_events_
      ABSL_GUARDED_BY(unique_mu_);
  absl::flat_hash_map<const CodeTable*, absl::flat_hash_map<uint64_t, Roaring>>
      prefix_unions_;
  // Per posting, kRepeatLevels bitmaps: level l holds the patients with at
  // least l + 2 distinct events of it.
  absl::flat_hash_map<const Posting*, std::vector<Roaring>> repeat_bitmaps_;
  // Merged sequence timelines (see Timeline), by their sorted postings.
  mutable absl::Mutex timeline_mu_;
  mutable absl::flat_hash_map<std::vector<const Posting*>,
                              std::shared_ptr<const Timeline>>
      timelines_ ABSL_GUARDED_BY(timeline_mu_);
  mutable size_t timeline_bytes_ ABSL_GUARDED_BY(timeline_mu_) = 0;
};

}  // namespace

std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot) {
  return NewIndexEngine(std::move(snapshot), IndexEngineOptions());
}

std::unique_ptr<CohortEngine> NewIndexEngine(
    std::shared_ptr<const Snapshot> snapshot,
    const IndexEngineOptions& options) {
  return std::make_unique<IndexEngine>(std::move(snapshot), options);
}

}  // namespace passerelle::node
