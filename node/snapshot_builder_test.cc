// SnapshotBuilder against a naive model: every code's posting equals the
// sorted list of its rows, whatever the pattern in which codes come
// together (always, until some row, from some row, with and without values),
// and codes that always come together hold their events once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/snapshot.h"

namespace passerelle::node {
namespace {

struct Entry {
  uint32_t patient;  // Rank in birth order.
  int32_t day;
  uint32_t event;
  double value;
  bool operator<(const Entry& o) const {
    return std::tie(patient, day, event) < std::tie(o.patient, o.day, o.event);
  }
};

// The codes of one test: code c is "c<c>" in vocabulary "v" of conditions.
std::string Code(int c) { return absl::StrCat("c", c); }

const Posting* Find(const Snapshot& snap, int c) {
  auto t = snap.tables.find({static_cast<int>(v1::DOMAIN_CONDITION), "v"});
  if (t == snap.tables.end()) return nullptr;
  const auto& codes = t->second.codes;
  auto it = std::lower_bound(codes.begin(), codes.end(), Code(c));
  if (it == codes.end() || *it != Code(c)) return nullptr;
  return t->second.postings[it - codes.begin()].get();
}

TEST(SnapshotBuilderTest, CodesComingTogetherMatchTheNaiveModel) {
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937 rng(seed);
    const int n_persons = 60;
    SnapshotBuilder builder("fr");
    std::vector<int32_t> birth(n_persons);
    for (int p = 0; p < n_persons; ++p) {
      birth[p] = BirthKey(1930 + static_cast<int>(rng() % 80), 1, 1);
      ASSERT_TRUE(builder.AddPerson(100 + p, birth[p], v1::SEX_FEMALE).ok());
    }
    std::vector<uint32_t> order(n_persons), rank(n_persons);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return birth[a] < birth[b];
    });
    for (uint32_t i = 0; i < order.size(); ++i) rank[order[i]] = i;
    // Pairs (2k, 2k + 1) of codes, each pair in its own pattern:
    //   0: always together; 1: the second leaves at a random row;
    //   2: the first continues alone after the second's last row;
    //   3: the second appears alone once, mid-way; 4: together, values on
    //   some rows; 5: the second joins from a later row (never leads).
    constexpr int kPairs = 6;
    const int rows = 400 + static_cast<int>(rng() % 400);
    // Rows where a pattern must show: the cut, the last rows, the first.
    const int cut = 4 + static_cast<int>(rng() % (rows - 8));
    std::map<int, std::vector<Entry>> want;
    uint32_t event = 0;
    for (int r = 0; r < rows; ++r) {
      int pair = static_cast<int>(rng() % kPairs);
      if (r == 0) pair = 5;  // 10 alone before the cut.
      if (r == 1) pair = 0;
      if (r == 2) pair = 4;
      if (r == 3) pair = 3;         // 6 and 7 together before the cut.
      if (r == cut) pair = 3;       // 7 alone.
      if (r == rows - 3) pair = 5;  // 11 with 10 after the cut.
      if (r == rows - 2) pair = 1;  // 2 alone after the cut.
      if (r == rows - 1) pair = 2;  // 4 alone at the end.
      const int person = static_cast<int>(rng() % n_persons);
      const int32_t day = 17000 + static_cast<int>(rng() % 900);
      double value = std::numeric_limits<double>::quiet_NaN();
      if (pair == 4 && rng() % 3 == 0) value = static_cast<double>(rng() % 50);
      ASSERT_TRUE(builder.BeginEvent(100 + person, day, value).ok());
      ++event;  // The builder numbers rows from 1.
      std::vector<int> codes;
      const int a = 2 * pair, b = 2 * pair + 1;
      switch (pair) {
        case 1:
          codes = r < cut ? std::vector<int>{a, b} : std::vector<int>{a};
          break;
        case 2:
          codes = r < rows - 5 ? std::vector<int>{a, b} : std::vector<int>{a};
          break;
        case 3:
          codes = r == cut ? std::vector<int>{b} : std::vector<int>{a, b};
          break;
        case 5:
          codes = r < cut ? std::vector<int>{a} : std::vector<int>{b, a};
          break;
        default:
          codes = {a, b};
      }
      if (rng() % 2 == 0) std::reverse(codes.begin(), codes.end());
      for (int c : codes) {
        builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(c));
        if (rng() % 5 == 0) {  // The same code twice in a row: kept once.
          builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(c));
        }
        want[c].push_back({rank[person], day, event, value});
      }
    }
    std::shared_ptr<Snapshot> snap = builder.Build("v1", 0);
    for (auto& [c, entries] : want) {
      SCOPED_TRACE(Code(c));
      std::sort(entries.begin(), entries.end());
      const Posting* p = Find(*snap, c);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(p->size(), entries.size());
      const bool any_value =
          std::any_of(entries.begin(), entries.end(),
                      [](const Entry& e) { return !std::isnan(e.value); });
      ASSERT_EQ(p->values.empty(), !any_value);
      for (size_t i = 0; i < entries.size(); ++i) {
        ASSERT_EQ(p->patients[i], entries[i].patient) << i;
        ASSERT_EQ(p->days[i], entries[i].day) << i;
        ASSERT_EQ(p->events[i], entries[i].event) << i;
        if (any_value) {
          ASSERT_EQ(std::isnan(p->values[i]), std::isnan(entries[i].value));
          if (!std::isnan(entries[i].value)) {
            ASSERT_EQ(p->values[i], entries[i].value);
          }
        }
      }
      EXPECT_EQ(
          p->bitmap.cardinality(),
          std::set<uint32_t>(p->patients.begin(), p->patients.end()).size());
    }
    // Codes always in the same rows hold one posting; the others their own.
    auto same = [&](int a, int b) { return Find(*snap, a) == Find(*snap, b); };
    EXPECT_TRUE(same(0, 1));
    EXPECT_TRUE(same(8, 9));
    EXPECT_FALSE(same(2, 3));
    EXPECT_FALSE(same(4, 5));
    EXPECT_FALSE(same(6, 7));
    EXPECT_FALSE(same(10, 11));
  }
}

// Rows interleaved with persons (as the generator adds them), a code's
// leader dropping out in the very last row, and a code new in a row whose
// other code is not new (no leader).
TEST(SnapshotBuilderTest, LastRowAndOldCodesAreHandled) {
  SnapshotBuilder builder("fr");
  ASSERT_TRUE(builder.AddPerson(1, BirthKey(1950, 1, 1), v1::SEX_MALE).ok());
  ASSERT_TRUE(builder.BeginEventForLastPerson(100, NAN).ok());
  builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(0));
  builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(1));
  ASSERT_TRUE(builder.AddPerson(2, BirthKey(1940, 1, 1), v1::SEX_MALE).ok());
  ASSERT_TRUE(builder.BeginEventForLastPerson(200, NAN).ok());
  builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(0));
  builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(2));  // 0 is not new.
  ASSERT_TRUE(builder.BeginEventForLastPerson(300, NAN).ok());
  builder.AddEventCode(v1::DOMAIN_CONDITION, "v", Code(1));  // Without 0.
  std::shared_ptr<Snapshot> snap = builder.Build("v1", 0);
  const Posting* p0 = Find(*snap, 0);
  const Posting* p1 = Find(*snap, 1);
  const Posting* p2 = Find(*snap, 2);
  ASSERT_TRUE(p0 && p1 && p2);
  // Person 2 is born first: patient 0.
  EXPECT_EQ(p0->patients, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(p0->days, (std::vector<int32_t>{200, 100}));
  EXPECT_EQ(p1->patients, (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(p1->days, (std::vector<int32_t>{300, 100}));
  EXPECT_EQ(p2->patients, (std::vector<uint32_t>{0}));
  EXPECT_NE(p0, p1);
}

}  // namespace
}  // namespace passerelle::node
