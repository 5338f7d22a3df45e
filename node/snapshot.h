// The in-memory form of one data snapshot at a node: patient attribute
// columns and, per code, a posting list of events with a compressed bitmap of
// the patients that have it. Built once per load (SnapshotBuilder) or read
// back from the store, then shared read-only by every query.
#ifndef PASSERELLE_NODE_SNAPSHOT_H_
#define PASSERELLE_NODE_SNAPSHOT_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "node/crosswalk.h"
#include "passerelle/v1/query.pb.h"
#include "roaring/roaring.hh"

// Debian 12's CRoaring (0.2.66) declares its C++ class in the global
// namespace; later releases moved it into `roaring`. One spelling here.
#if !defined(ROARING_VERSION_MAJOR) || ROARING_VERSION_MAJOR < 1
namespace roaring {
using Roaring = ::Roaring;
}  // namespace roaring
#endif

namespace passerelle::node {

// Dates inside a node are days since 1970-01-01 (proleptic Gregorian).
int32_t DaysFromCivil(int year, int month, int day);
void CivilFromDays(int32_t days, int* year, int* month, int* day);
// Parses "YYYY-MM-DD" (optionally followed by a time, as in OMOP datetimes)
// or "YYYYMMDD".
absl::StatusOr<int32_t> ParseDay(absl::string_view text);

// A birth date as a lexicographic key y*10000 + m*100 + d. When only the year
// is known, the contract places the birthday on 1 July.
inline int32_t BirthKey(int year, int month, int day) {
  if (month <= 0 || day <= 0) return year * 10000 + 701;
  return year * 10000 + month * 100 + day;
}

// The events of one code, sorted by (patient, day, event).
struct Posting {
  std::vector<uint32_t> patients;
  std::vector<int32_t> days;
  // Ordinal of the source row, so one row carrying several codes of a code
  // set counts once in "at least N times".
  std::vector<uint32_t> events;
  // Numeric values (measurement/observation); empty when the code has none,
  // NaN for rows without a value.
  std::vector<double> values;
  roaring::Roaring bitmap;  // Derived: the distinct patients.
  size_t size() const { return patients.size(); }
};

// The codes of one (domain, vocabulary), sorted so that a prefix is a
// contiguous range. Codes whose postings are identical (an OMOP concept id
// and its vocabulary code, which every row carries together) share one
// Posting object: the events are held once.
struct CodeTable {
  std::vector<std::string> codes;
  std::vector<std::shared_ptr<Posting>> postings;  // Never null.
};

// Finds postings equal in every column to one seen before, so that they can
// be shared. Not thread-safe.
class PostingDeduplicator {
 public:
  // Returns an earlier posting equal to `*p` if there is one (and `p` may be
  // dropped), otherwise remembers and returns `p`.
  std::shared_ptr<Posting> Intern(std::shared_ptr<Posting> p);
  int64_t shared() const { return shared_; }

 private:
  absl::flat_hash_map<uint64_t, std::vector<std::shared_ptr<Posting>>> seen_;
  int64_t shared_ = 0;
};

struct SnapshotMeta {
  std::string site;
  std::string version;
  int64_t loaded_at_unix = 0;
  int64_t persons = 0;
  int64_t events = 0;
};

// Immutable once built; safe to share between threads.
class Snapshot {
 public:
  using TableKey = std::pair<int, std::string>;  // (v1::Domain, vocabulary)

  SnapshotMeta meta;
  // Patients are numbered 0..N-1 in ascending birth-key order, so any age or
  // birth-year range is a contiguous range of patient numbers.
  std::vector<int32_t> birth_keys;
  std::vector<uint8_t> sex;  // v1::Sex
  roaring::Roaring sex_bitmaps[5];
  roaring::Roaring deceased;
  roaring::Roaring population;
  std::map<TableKey, CodeTable> tables;
  // The crosswalk tables loaded with the data (null: none); its id is named
  // by meta.version (node/store.h VersionWithMappingSet).
  std::shared_ptr<const CrosswalkSet> crosswalks;

  uint32_t size() const { return static_cast<uint32_t>(birth_keys.size()); }
  std::vector<std::string> Vocabularies() const;
  // Fills the derived members (bitmaps) from the columns and postings (once
  // per shared posting).
  void Finish();
};

// Accumulates one load. Not thread-safe.
//
// Persons come first (AddPerson); events may follow FinishPersons (as the CSV
// loaders do) or be interleaved with the persons, each after its person (as
// `passerelle generate --into-store` does): patients are numbered in birth
// order at Build time either way. Memory is bounded by the data itself: per
// code, the events are kept in compact column chunks that never move (about
// 12 bytes per event, plus 8 for a value), and Build sorts, moves into the
// snapshot and frees one code at a time. Codes that always come together in
// the same rows (an OMOP concept id and its vocabulary code) hold their
// events once, from the first row on. A code added twice for the same
// source row is kept once.
class SnapshotBuilder {
 public:
  using CodeId = uint32_t;

  explicit SnapshotBuilder(std::string site) : site_(std::move(site)) {}
  SnapshotBuilder(const SnapshotBuilder&) = delete;
  SnapshotBuilder& operator=(const SnapshotBuilder&) = delete;

  // Persons are identified by the source's id only while loading; the id is
  // never stored.
  absl::Status AddPerson(int64_t source_id, int32_t birth_key, v1::Sex sex);
  // Closes the person list; optional (Build does it). AddPerson fails after.
  void FinishPersons();
  bool HasPerson(int64_t source_id) const;
  absl::Status MarkDeceased(int64_t source_id, int32_t day);

  // Starts a new source row; the codes added until the next call belong to it.
  absl::Status BeginEvent(int64_t source_person_id, int32_t day, double value);
  // The same for the person added last (no lookup by source id).
  absl::Status BeginEventForLastPerson(int32_t day, double value);
  void AddEventCode(v1::Domain domain, absl::string_view vocabulary,
                    absl::string_view code);
  // A handle for a code, for loaders that add the same codes many times.
  CodeId InternCode(v1::Domain domain, absl::string_view vocabulary,
                    absl::string_view code);
  void AddEventCode(CodeId code);

  int64_t persons() const { return static_cast<int64_t>(pending_.size()); }
  int64_t events() const { return event_count_; }

  // Moves everything into a new snapshot; the builder is empty afterwards.
  std::shared_ptr<Snapshot> Build(std::string version, int64_t loaded_at_unix);

 private:
  // A column in chunks of growing size (256 entries up to 64Ki): no
  // reallocation copies, little slack per code.
  template <typename T>
  class ChunkedColumn {
   public:
    void push_back(T v) {
      if (chunks_.empty() ||
          chunks_.back().size() == chunks_.back().capacity()) {
        const size_t cap =
            chunks_.empty()
                ? 256
                : std::min<size_t>(chunks_.back().capacity() * 2, 1 << 16);
        chunks_.emplace_back().reserve(cap);
      }
      chunks_.back().push_back(v);
    }
    template <typename Fn>
    void ForEach(Fn fn) const {
      for (const std::vector<T>& c : chunks_) {
        for (const T& v : c) fn(v);
      }
    }
    // fn(v) for the first n entries only.
    template <typename Fn>
    void ForEachFirst(uint64_t n, Fn fn) const {
      for (const std::vector<T>& c : chunks_) {
        for (const T& v : c) {
          if (n == 0) return;
          --n;
          fn(v);
        }
      }
    }
    void Clear() { std::vector<std::vector<T>>().swap(chunks_); }

   private:
    std::vector<std::vector<T>> chunks_;
  };
  static constexpr CodeId kNoLeader = 0xffffffffu;
  struct CodeAccum {
    std::string key;  // CodeMapKey.
    uint64_t size = 0;
    bool has_values = false;
    // A code first seen in the same row as another (an OMOP concept id and
    // its vocabulary code) is assumed to stay in exactly that code's rows:
    // it holds no events of its own, only its count, and shares its
    // leader's posting. The first row that breaks the assumption (the code
    // without its leader, or the leader without it) gives it a copy of its
    // rows so far (they are the leader's first ones) and its own columns.
    CodeId leader = kNoLeader;
    ChunkedColumn<uint32_t> patients;  // Pending (insertion) person index.
    ChunkedColumn<int32_t> days;
    ChunkedColumn<uint32_t> events;
    ChunkedColumn<double> values;  // Only once a value was seen.
  };
  struct PendingPerson {
    int32_t birth_key;
    uint8_t sex;
  };
  absl::Status StartRow(uint32_t pending, int32_t day, double value);
  // Checks the codes of the row just added that follow a leader.
  void EndRow();
  // Gives `code` (following a leader) its own columns: a copy of the
  // leader's first `from_leader` entries, then the current row when
  // `with_row`.
  void Detach(CodeId code, uint64_t from_leader, bool with_row);
  static void Push(CodeAccum& a, uint64_t index, uint32_t patient, int32_t day,
                   uint32_t event, double value);
  void FillPosting(CodeAccum& accum, const std::vector<uint32_t>& rank,
                   Posting* posting);

  std::string site_;
  std::vector<PendingPerson> pending_;
  absl::flat_hash_map<int64_t, uint32_t> index_;  // Source id -> pending.
  std::vector<int32_t> death_day_;                // By pending index.
  bool persons_finished_ = false;
  int64_t event_count_ = 0;
  // Current row.
  uint32_t cur_patient_ = 0;
  int32_t cur_day_ = 0;
  double cur_value_ = 0;
  std::vector<CodeId> row_codes_;
  absl::flat_hash_map<std::string, CodeId> code_ids_;
  std::vector<std::unique_ptr<CodeAccum>> codes_;
  std::string key_buffer_;
};

// Key of a code inside by_code_-style maps: domain byte, vocabulary, NUL, code.
std::string CodeMapKey(v1::Domain domain, absl::string_view vocabulary,
                       absl::string_view code);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_SNAPSHOT_H_
