#include "node/snapshot.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace passerelle::node {

// Howard Hinnant's days_from_civil.
int32_t DaysFromCivil(int y, int m, int d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int>(doe) - 719468;
}

void CivilFromDays(int32_t z, int* year, int* month, int* day) {
  z += 719468;
  const int era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int y = static_cast<int>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  *year = y + (m <= 2);
  *month = static_cast<int>(m);
  *day = static_cast<int>(d);
}

namespace {

// Hands the pages of freed memory back to the system: glibc's malloc_trim,
// and when the process allocates with jemalloc (the shipped binary does),
// a purge of every arena (jemalloc otherwise keeps freed pages resident for
// about ten seconds, long enough for the load's freed events and the
// postings built from them to be resident together).
void ReturnFreedMemory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  static const Mallctl mallctl =
      reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  if (mallctl != nullptr) {
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // All arenas.
  }
}

bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

bool ParseDigits(absl::string_view s, int* out) {
  if (s.empty()) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

absl::StatusOr<int32_t> ParseDay(absl::string_view text) {
  absl::string_view s = absl::StripAsciiWhitespace(text);
  int y = 0, m = 0, d = 0;
  bool ok = false;
  if (s.size() >= 10 && s[4] == '-' && s[7] == '-') {
    ok = ParseDigits(s.substr(0, 4), &y) && ParseDigits(s.substr(5, 2), &m) &&
         ParseDigits(s.substr(8, 2), &d) &&
         (s.size() == 10 || s[10] == ' ' || s[10] == 'T');
  } else if (s.size() == 8) {
    ok = ParseDigits(s.substr(0, 4), &y) && ParseDigits(s.substr(4, 2), &m) &&
         ParseDigits(s.substr(6, 2), &d);
  }
  if (!ok || m < 1 || m > 12 || d < 1 || d > DaysInMonth(y, m)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid date \"", s, "\" (expected YYYY-MM-DD)"));
  }
  return DaysFromCivil(y, m, d);
}

std::string CodeMapKey(v1::Domain domain, absl::string_view vocabulary,
                       absl::string_view code) {
  std::string key;
  key.reserve(2 + vocabulary.size() + code.size());
  key.push_back(static_cast<char>('0' + static_cast<int>(domain)));
  key.append(vocabulary.data(), vocabulary.size());
  key.push_back('\0');
  key.append(code.data(), code.size());
  return key;
}

std::vector<std::string> Snapshot::Vocabularies() const {
  std::set<std::string> vocabs;
  for (const auto& [key, table] : tables) vocabs.insert(key.second);
  return {vocabs.begin(), vocabs.end()};
}

void Snapshot::Finish() {
  for (auto& b : sex_bitmaps) b = roaring::Roaring();
  population = roaring::Roaring();
  if (size() > 0) population.addRange(0, size());
  std::vector<uint32_t> per_sex[5];
  for (uint32_t p = 0; p < size(); ++p) {
    per_sex[sex[p] < 5 ? sex[p] : 0].push_back(p);
  }
  for (int s = 0; s < 5; ++s) {
    sex_bitmaps[s].addMany(per_sex[s].size(), per_sex[s].data());
    sex_bitmaps[s].runOptimize();
  }
  absl::flat_hash_set<const Posting*> done;
  for (auto& [key, table] : tables) {
    for (const std::shared_ptr<Posting>& shared : table.postings) {
      if (!done.insert(shared.get()).second) continue;  // Shared: done.
      Posting& posting = *shared;
      posting.bitmap = roaring::Roaring();
      // Patients are sorted, so consecutive duplicates are cheap to skip.
      std::vector<uint32_t> distinct;
      distinct.reserve(posting.patients.size());
      for (uint32_t p : posting.patients) {
        if (distinct.empty() || distinct.back() != p) distinct.push_back(p);
      }
      posting.bitmap.addMany(distinct.size(), distinct.data());
      posting.bitmap.runOptimize();
    }
  }
  deceased.runOptimize();
}

namespace {

// A hash of a posting's size and of a sample of its entries (every entry of
// a small posting, about 64 of a large one): equal postings hash equal, and
// unequal ones of the same size rarely do. The full comparison decides.
uint64_t SampleHash(const Posting& p) {
  auto mix = [](uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdULL;
  };
  const size_t n = p.size();
  uint64_t h = mix(n, p.values.empty() ? 0 : 1);
  const size_t step = std::max<size_t>(1, n / 64);
  for (size_t i = 0; i < n; i += step) {
    h = mix(h,
            (uint64_t{p.patients[i]} << 32) | static_cast<uint32_t>(p.days[i]));
    h = mix(h, p.events[i]);
  }
  if (n > 0) {
    h = mix(h, (uint64_t{p.patients[n - 1]} << 32) |
                   static_cast<uint32_t>(p.days[n - 1]));
    h = mix(h, p.events[n - 1]);
  }
  return h;
}

template <typename T>
bool SameColumn(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

bool SamePosting(const Posting& a, const Posting& b) {
  return SameColumn(a.patients, b.patients) && SameColumn(a.days, b.days) &&
         SameColumn(a.events, b.events) && SameColumn(a.values, b.values);
}

}  // namespace

std::shared_ptr<Posting> PostingDeduplicator::Intern(
    std::shared_ptr<Posting> p) {
  std::vector<std::shared_ptr<Posting>>& bucket = seen_[SampleHash(*p)];
  for (const std::shared_ptr<Posting>& q : bucket) {
    // Values compare bitwise: NaNs (rows without a value) are equal.
    if (q.get() == p.get() || SamePosting(*q, *p)) {
      if (q.get() != p.get()) ++shared_;
      return q;
    }
  }
  bucket.push_back(p);
  return p;
}

absl::Status SnapshotBuilder::AddPerson(int64_t source_id, int32_t birth_key,
                                        v1::Sex sex) {
  if (persons_finished_) {
    return absl::FailedPreconditionError("persons already finished");
  }
  if (pending_.size() >= std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError("too many persons for one snapshot");
  }
  if (!index_.emplace(source_id, static_cast<uint32_t>(pending_.size()))
           .second) {
    return absl::AlreadyExistsError(
        absl::StrCat("duplicate person_id ", source_id));
  }
  pending_.push_back({birth_key, static_cast<uint8_t>(sex)});
  death_day_.push_back(std::numeric_limits<int32_t>::min());
  return absl::OkStatus();
}

void SnapshotBuilder::FinishPersons() { persons_finished_ = true; }

bool SnapshotBuilder::HasPerson(int64_t source_id) const {
  return index_.contains(source_id);
}

absl::Status SnapshotBuilder::MarkDeceased(int64_t source_id, int32_t day) {
  auto it = index_.find(source_id);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("person_id ", source_id, " is not in the person table"));
  }
  death_day_[it->second] = day;
  return absl::OkStatus();
}

absl::Status SnapshotBuilder::StartRow(uint32_t pending, int32_t day,
                                       double value) {
  if (event_count_ >= std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError("too many events for one snapshot");
  }
  EndRow();
  cur_patient_ = pending;
  cur_day_ = day;
  cur_value_ = value;
  row_codes_.clear();
  ++event_count_;
  return absl::OkStatus();
}

absl::Status SnapshotBuilder::BeginEvent(int64_t source_person_id, int32_t day,
                                         double value) {
  auto it = index_.find(source_person_id);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat("person_id ", source_person_id,
                                            " is not in the person table"));
  }
  return StartRow(it->second, day, value);
}

absl::Status SnapshotBuilder::BeginEventForLastPerson(int32_t day,
                                                      double value) {
  if (pending_.empty()) {
    return absl::FailedPreconditionError("no person added yet");
  }
  return StartRow(static_cast<uint32_t>(pending_.size() - 1), day, value);
}

SnapshotBuilder::CodeId SnapshotBuilder::InternCode(
    v1::Domain domain, absl::string_view vocabulary, absl::string_view code) {
  key_buffer_.clear();
  key_buffer_.push_back(static_cast<char>('0' + static_cast<int>(domain)));
  key_buffer_.append(vocabulary.data(), vocabulary.size());
  key_buffer_.push_back('\0');
  key_buffer_.append(code.data(), code.size());
  auto it = code_ids_.find(key_buffer_);
  if (it != code_ids_.end()) return it->second;
  const CodeId id = static_cast<CodeId>(codes_.size());
  codes_.push_back(std::make_unique<CodeAccum>());
  codes_.back()->key = key_buffer_;
  code_ids_.emplace(key_buffer_, id);
  return id;
}

void SnapshotBuilder::AddEventCode(v1::Domain domain,
                                   absl::string_view vocabulary,
                                   absl::string_view code) {
  AddEventCode(InternCode(domain, vocabulary, code));
}

void SnapshotBuilder::Push(CodeAccum& a, uint64_t index, uint32_t patient,
                           int32_t day, uint32_t event, double value) {
  a.patients.push_back(patient);
  a.days.push_back(day);
  a.events.push_back(event);
  if (!a.has_values && !std::isnan(value)) {
    for (uint64_t i = 0; i < index; ++i) {
      a.values.push_back(std::numeric_limits<double>::quiet_NaN());
    }
    a.has_values = true;
  }
  if (a.has_values) a.values.push_back(value);
}

void SnapshotBuilder::AddEventCode(CodeId code) {
  // A row lists a code once, however many of its columns carry it.
  for (CodeId c : row_codes_) {
    if (c == code) return;
  }
  CodeAccum& a = *codes_[code];
  if (a.size == 0 && a.leader == kNoLeader) {
    // Its first row: it follows a code of this row that is new as well.
    for (CodeId c : row_codes_) {
      const CodeAccum& l = *codes_[c];
      if (l.leader == kNoLeader && l.size == 1) {
        a.leader = c;
        break;
      }
    }
  }
  row_codes_.push_back(code);
  if (a.leader == kNoLeader) {
    Push(a, a.size, cur_patient_, cur_day_, static_cast<uint32_t>(event_count_),
         cur_value_);
  }
  ++a.size;
}

void SnapshotBuilder::EndRow() {
  for (CodeId c : row_codes_) {
    const CodeAccum& a = *codes_[c];
    if (a.leader == kNoLeader) continue;
    // In every row of its leader so far, and in no other: the leader is in
    // this row and has as many rows.
    const bool with_leader = std::find(row_codes_.begin(), row_codes_.end(),
                                       a.leader) != row_codes_.end();
    if (with_leader && codes_[a.leader]->size == a.size) continue;
    // Its rows before this one are the leader's first ones.
    Detach(c, a.size - 1, true);
  }
}

void SnapshotBuilder::Detach(CodeId code, uint64_t from_leader, bool with_row) {
  CodeAccum& a = *codes_[code];
  const CodeAccum& l = *codes_[a.leader];
  a.leader = kNoLeader;
  std::vector<uint32_t> patients, events;
  std::vector<int32_t> days;
  std::vector<double> values;
  patients.reserve(from_leader);
  l.patients.ForEachFirst(from_leader,
                          [&](uint32_t v) { patients.push_back(v); });
  l.days.ForEachFirst(from_leader, [&](int32_t v) { days.push_back(v); });
  l.events.ForEachFirst(from_leader, [&](uint32_t v) { events.push_back(v); });
  if (l.has_values) {
    l.values.ForEachFirst(from_leader, [&](double v) { values.push_back(v); });
  }
  for (uint64_t i = 0; i < patients.size(); ++i) {
    Push(a, i, patients[i], days[i], events[i],
         values.empty() ? std::numeric_limits<double>::quiet_NaN() : values[i]);
  }
  if (with_row) {
    Push(a, patients.size(), cur_patient_, cur_day_,
         static_cast<uint32_t>(event_count_), cur_value_);
  }
}

namespace {

// (patient, day) in one integer that sorts like the pair.
inline uint64_t PatientKey(uint32_t patient) { return uint64_t{patient} << 32; }
inline uint32_t DayBits(int32_t day) {
  return static_cast<uint32_t>(day) ^ 0x80000000u;
}

struct SortRec {
  uint64_t key;
  uint32_t event;
};
struct SortRecValue {
  uint64_t key;
  uint32_t event;
  double value;
};

// A segment of records of one patient, already in (day, row) order.
struct Run {
  uint32_t patient;
  uint32_t begin;
  uint32_t end;
};

// The order of `*recs` by (patient, day, row), as runs to read in turn.
// Events arrive grouped by source patient and in order within it (as the
// generator and most exports write them), so usually only the runs need
// sorting (a few per patient, not one per event); otherwise everything is
// sorted.
template <typename R>
std::vector<Run> SortRecs(std::vector<R>* recs) {
  auto less = [](const R& a, const R& b) {
    return a.key < b.key || (a.key == b.key && a.event < b.event);
  };
  const uint32_t n = static_cast<uint32_t>(recs->size());
  std::vector<Run> runs;
  bool in_order = true;
  for (uint32_t i = 0; i < n;) {
    const uint32_t patient = static_cast<uint32_t>((*recs)[i].key >> 32);
    uint32_t j = i + 1;
    while (j < n && static_cast<uint32_t>((*recs)[j].key >> 32) == patient &&
           less((*recs)[j - 1], (*recs)[j])) {
      ++j;
    }
    if (!runs.empty() && runs.back().patient >= patient) in_order = false;
    runs.push_back({patient, i, j});
    i = j;
  }
  if (in_order) return {{0, 0, n}};
  std::sort(runs.begin(), runs.end(),
            [](const Run& a, const Run& b) { return a.patient < b.patient; });
  for (size_t k = 1; k < runs.size(); ++k) {
    if (runs[k].patient == runs[k - 1].patient) {
      // A patient in several runs: sort the records themselves.
      std::vector<Run>().swap(runs);
      std::sort(recs->begin(), recs->end(), less);
      return {{0, 0, n}};
    }
  }
  return runs;
}

}  // namespace

void SnapshotBuilder::FillPosting(CodeAccum& a,
                                  const std::vector<uint32_t>& rank,
                                  Posting* posting) {
  const size_t n = a.size;
  auto fill = [&](auto& recs) {
    recs.resize(n);
    size_t i = 0;
    a.patients.ForEach(
        [&](uint32_t p) { recs[i++].key = PatientKey(rank[p]); });
    a.patients.Clear();
    i = 0;
    a.days.ForEach([&](int32_t d) { recs[i++].key |= DayBits(d); });
    a.days.Clear();
    i = 0;
    a.events.ForEach([&](uint32_t e) { recs[i++].event = e; });
    a.events.Clear();
  };
  auto emit = [&](const auto& recs, const std::vector<Run>& runs) {
    posting->patients.reserve(n);
    posting->days.reserve(n);
    posting->events.reserve(n);
    for (const Run& run : runs) {
      for (uint32_t i = run.begin; i < run.end; ++i) {
        const auto& r = recs[i];
        posting->patients.push_back(static_cast<uint32_t>(r.key >> 32));
        posting->days.push_back(
            static_cast<int32_t>(static_cast<uint32_t>(r.key) ^ 0x80000000u));
        posting->events.push_back(r.event);
      }
    }
  };
  if (a.has_values) {
    std::vector<SortRecValue> recs;
    fill(recs);
    size_t i = 0;
    a.values.ForEach([&](double v) { recs[i++].value = v; });
    a.values.Clear();
    const std::vector<Run> runs = SortRecs(&recs);
    emit(recs, runs);
    posting->values.reserve(n);
    for (const Run& run : runs) {
      for (uint32_t k = run.begin; k < run.end; ++k) {
        posting->values.push_back(recs[k].value);
      }
    }
  } else {
    std::vector<SortRec> recs;
    fill(recs);
    emit(recs, SortRecs(&recs));
  }
}

std::shared_ptr<Snapshot> SnapshotBuilder::Build(std::string version,
                                                 int64_t loaded_at_unix) {
  persons_finished_ = true;
  EndRow();
  row_codes_.clear();
  // A code whose leader had rows after its last one holds the leader's
  // first rows.
  for (CodeId id = 0; id < codes_.size(); ++id) {
    const CodeAccum& a = *codes_[id];
    if (a.leader != kNoLeader && codes_[a.leader]->size != a.size) {
      Detach(id, a.size, false);
    }
  }
  auto snap = std::make_shared<Snapshot>();
  snap->meta.site = site_;
  snap->meta.version = std::move(version);
  snap->meta.loaded_at_unix = loaded_at_unix;
  snap->meta.persons = static_cast<int64_t>(pending_.size());
  snap->meta.events = event_count_;
  // Patients are numbered in birth order (ties in insertion order).
  const uint32_t n = static_cast<uint32_t>(pending_.size());
  std::vector<uint32_t> rank(n);
  {
    std::vector<uint32_t> order(n);
    for (uint32_t i = 0; i < n; ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return pending_[a].birth_key < pending_[b].birth_key;
    });
    snap->birth_keys.reserve(n);
    snap->sex.reserve(n);
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t src = order[i];
      rank[src] = i;
      snap->birth_keys.push_back(pending_[src].birth_key);
      snap->sex.push_back(pending_[src].sex);
      if (death_day_[src] != std::numeric_limits<int32_t>::min()) {
        snap->deceased.add(i);
      }
    }
  }
  std::vector<PendingPerson>().swap(pending_);
  std::vector<int32_t>().swap(death_day_);
  index_ = {};
  code_ids_ = {};
  // Codes in key order, so each (domain, vocabulary) table is in code order;
  // each code's events are freed as soon as its posting is filled.
  std::vector<CodeId> order(codes_.size());
  for (CodeId i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](CodeId a, CodeId b) {
    return codes_[a]->key < codes_[b]->key;
  });
  size_t freed = 0;
  PostingDeduplicator dedup;
  // The posting of every code filled so far that others follow.
  std::vector<std::shared_ptr<Posting>> filled(codes_.size());
  std::vector<CodeId> leader_of(codes_.size(), kNoLeader);
  for (CodeId id = 0; id < codes_.size(); ++id) {
    leader_of[id] = codes_[id]->leader;
  }
  auto fill = [&](CodeId id) {
    if (filled[id] != nullptr) return filled[id];
    CodeAccum& accum = *codes_[id];
    freed += accum.size * (12 + (accum.has_values ? 8 : 0));
    auto posting = std::make_shared<Posting>();
    FillPosting(accum, rank, posting.get());
    // A code whose events are exactly another's shares that code's posting.
    filled[id] = dedup.Intern(std::move(posting));
    return filled[id];
  };
  for (CodeId id : order) {
    const std::string key = codes_[id]->key;
    const int domain = key[0] - '0';
    const size_t nul = key.find('\0', 1);
    CodeTable& table = snap->tables[{domain, key.substr(1, nul - 1)}];
    table.codes.push_back(key.substr(nul + 1));
    // A code that follows another shares its posting (its rows are the
    // leader's). Each code's columns are freed as its posting is filled.
    table.postings.push_back(
        fill(leader_of[id] != kNoLeader ? leader_of[id] : id));
    // The freed chunks are scattered through the heap, too small for the
    // postings that follow: hand their pages back so that the peak stays
    // about one copy of the events.
    if (freed >= (size_t{256} << 20)) {
      ReturnFreedMemory();
      freed = 0;
    }
  }
  codes_.clear();
  snap->Finish();
  return snap;
}

}  // namespace passerelle::node
