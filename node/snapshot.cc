#include "node/snapshot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

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
  for (auto& [key, table] : tables) {
    for (Posting& posting : table.postings) {
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

absl::Status SnapshotBuilder::AddPerson(int64_t source_id, int32_t birth_key,
                                        v1::Sex sex) {
  if (persons_finished_) {
    return absl::FailedPreconditionError("persons already finished");
  }
  if (!index_.emplace(source_id, 0).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("duplicate person_id ", source_id));
  }
  pending_.push_back({source_id, birth_key, static_cast<uint8_t>(sex)});
  return absl::OkStatus();
}

void SnapshotBuilder::FinishPersons() {
  std::stable_sort(pending_.begin(), pending_.end(),
                   [](const PendingPerson& a, const PendingPerson& b) {
                     return a.birth_key < b.birth_key;
                   });
  for (uint32_t i = 0; i < pending_.size(); ++i) {
    index_[pending_[i].source_id] = i;
  }
  death_day_.assign(pending_.size(), std::numeric_limits<int32_t>::min());
  persons_finished_ = true;
}

bool SnapshotBuilder::HasPerson(int64_t source_id) const {
  return index_.contains(source_id);
}

absl::Status SnapshotBuilder::MarkDeceased(int64_t source_id, int32_t day) {
  auto it = index_.find(source_id);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("person_id ", source_id, " is not in the person table"));
  }
  // A death is not an event of the language: it does not move the snapshot
  // date (the latest event date).
  death_day_[it->second] = day;
  return absl::OkStatus();
}

absl::Status SnapshotBuilder::BeginEvent(int64_t source_person_id, int32_t day,
                                         double value) {
  auto it = index_.find(source_person_id);
  if (it == index_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "person_id ", source_person_id, " is not in the person table"));
  }
  cur_patient_ = it->second;
  cur_day_ = day;
  cur_value_ = value;
  // The first event sets the snapshot date: dates before 1970 are negative.
  max_day_ = event_count_ == 0 ? day : std::max(max_day_, day);
  ++event_count_;
  return absl::OkStatus();
}

void SnapshotBuilder::AddEventCode(v1::Domain domain,
                                   absl::string_view vocabulary,
                                   absl::string_view code) {
  by_code_[CodeMapKey(domain, vocabulary, code)].push_back(
      {cur_patient_, cur_day_, static_cast<uint32_t>(event_count_),
       cur_value_});
}

std::shared_ptr<Snapshot> SnapshotBuilder::Build(std::string version,
                                                 int64_t loaded_at_unix) {
  auto snap = std::make_shared<Snapshot>();
  snap->meta.site = site_;
  snap->meta.version = std::move(version);
  snap->meta.loaded_at_unix = loaded_at_unix;
  snap->meta.persons = static_cast<int64_t>(pending_.size());
  snap->meta.events = event_count_;
  snap->meta.snapshot_day = max_day_;
  snap->birth_keys.reserve(pending_.size());
  snap->sex.reserve(pending_.size());
  for (uint32_t i = 0; i < pending_.size(); ++i) {
    snap->birth_keys.push_back(pending_[i].birth_key);
    snap->sex.push_back(pending_[i].sex);
    if (death_day_[i] != std::numeric_limits<int32_t>::min()) {
      snap->deceased.add(i);
    }
  }
  // Sort the codes so each (domain, vocabulary) table is in code order.
  std::vector<std::string> keys;
  keys.reserve(by_code_.size());
  for (const auto& [key, entries] : by_code_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    std::vector<Entry>& entries = by_code_[key];
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) {
                return std::tie(a.patient, a.day, a.event) <
                       std::tie(b.patient, b.day, b.event);
              });
    const int domain = key[0] - '0';
    const size_t nul = key.find('\0', 1);
    CodeTable& table = snap->tables[{domain, key.substr(1, nul - 1)}];
    table.codes.push_back(key.substr(nul + 1));
    Posting& posting = table.postings.emplace_back();
    bool has_values = false;
    for (const Entry& e : entries) has_values |= !std::isnan(e.value);
    for (const Entry& e : entries) {
      posting.patients.push_back(e.patient);
      posting.days.push_back(e.day);
      posting.events.push_back(e.event);
      if (has_values) posting.values.push_back(e.value);
    }
    std::vector<Entry>().swap(entries);
  }
  by_code_.clear();
  snap->Finish();
  return snap;
}

}  // namespace passerelle::node
