#include "node/store.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>

#include "gtest/gtest.h"
#include "node/engine.h"
#include "query/parser.h"
#include "rocksdb/db.h"

namespace passerelle::node {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pstore-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::shared_ptr<Snapshot> Small(const std::string& version, int n_diabetic) {
  SnapshotBuilder b("qc");
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(b.AddPerson(i, BirthKey(1950 + i, 0, 0),
                            i % 2 ? v1::SEX_MALE : v1::SEX_FEMALE)
                    .ok());
  }
  b.FinishPersons();
  for (int i = 0; i < n_diabetic; ++i) {
    EXPECT_TRUE(b.BeginEvent(i, DaysFromCivil(2020, 1, 1 + i), 7.5).ok());
    b.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca", "E119");
    b.AddEventCode(v1::DOMAIN_CONDITION, "concept", "201826");
  }
  return b.Build(version, 1700000000);
}

int64_t CountDiabetic(std::shared_ptr<Snapshot> snap) {
  auto q = query::ParseQuery("condition icd10:E11*");
  EXPECT_TRUE(q.ok());
  auto cells = NewIndexEngine(std::move(snap))->Count(*q);
  EXPECT_TRUE(cells.ok());
  return (*cells)[0].count();
}

// The posting of `code` in table (domain, vocabulary), or null.
const Posting* Find(const Snapshot& snap, v1::Domain domain,
                    const std::string& vocabulary, const std::string& code) {
  auto t = snap.tables.find({static_cast<int>(domain), vocabulary});
  if (t == snap.tables.end()) return nullptr;
  for (size_t i = 0; i < t->second.codes.size(); ++i) {
    if (t->second.codes[i] == code) return t->second.postings[i].get();
  }
  return nullptr;
}

// Ten persons; every diabetic row carries both a vocabulary code and its
// concept id (shared posting); rows of person 9 carry a concept id alone
// for one of them (E109/201254 differ), and measurements carry values.
std::shared_ptr<Snapshot> WithAliases(const std::string& version) {
  SnapshotBuilder b("qc");
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(b.AddPerson(i, BirthKey(1950 + i, 0, 0),
                            i % 2 ? v1::SEX_MALE : v1::SEX_FEMALE)
                    .ok());
  }
  b.FinishPersons();
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  for (int i = 0; i < 9; ++i) {
    for (int k = 0; k <= i % 3; ++k) {
      EXPECT_TRUE(
          b.BeginEvent(i, DaysFromCivil(2020, 1 + k, 1 + i), kNaN).ok());
      b.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca", "E119");
      b.AddEventCode(v1::DOMAIN_CONDITION, "concept", "201826");
      EXPECT_TRUE(b.BeginEvent(i, DaysFromCivil(2021, 1 + k, 1), 5.0 + k).ok());
      b.AddEventCode(v1::DOMAIN_MEASUREMENT, "loinc", "4548-4");
      b.AddEventCode(v1::DOMAIN_MEASUREMENT, "concept", "3004410");
    }
    EXPECT_TRUE(b.BeginEvent(i, DaysFromCivil(2019, 6, 1), kNaN).ok());
    b.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca", "E109");
    if (i != 8) b.AddEventCode(v1::DOMAIN_CONDITION, "concept", "201254");
  }
  return b.Build(version, 1700000000);
}

// Same codes, same columns, same sharing.
void ExpectSameSnapshot(const Snapshot& a, const Snapshot& b) {
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (auto ia = a.tables.begin(), ib = b.tables.begin(); ia != a.tables.end();
       ++ia, ++ib) {
    EXPECT_EQ(ia->first, ib->first);
    ASSERT_EQ(ia->second.codes, ib->second.codes);
    for (size_t c = 0; c < ia->second.codes.size(); ++c) {
      const Posting& pa = *ia->second.postings[c];
      const Posting& pb = *ib->second.postings[c];
      EXPECT_EQ(pa.patients, pb.patients) << ia->second.codes[c];
      EXPECT_EQ(pa.days, pb.days);
      EXPECT_EQ(pa.events, pb.events);
      ASSERT_EQ(pa.values.size(), pb.values.size());
      for (size_t i = 0; i < pa.values.size(); ++i) {
        EXPECT_EQ(std::isnan(pa.values[i]), std::isnan(pb.values[i]));
        if (!std::isnan(pa.values[i])) {
          EXPECT_EQ(pa.values[i], pb.values[i]);
        }
      }
      EXPECT_TRUE(pa.bitmap == pb.bitmap);
    }
  }
  auto shared = [](const Snapshot& s, v1::Domain d, const char* v1,
                   const char* c1, const char* v2, const char* c2) {
    return Find(s, d, v1, c1) == Find(s, d, v2, c2);
  };
  for (const Snapshot* s : {&a, &b}) {
    EXPECT_TRUE(shared(*s, v1::DOMAIN_CONDITION, "icd10ca", "E119", "concept",
                       "201826"));
    EXPECT_TRUE(shared(*s, v1::DOMAIN_MEASUREMENT, "loinc", "4548-4", "concept",
                       "3004410"));
    EXPECT_FALSE(shared(*s, v1::DOMAIN_CONDITION, "icd10ca", "E109", "concept",
                        "201254"));
  }
}

int64_t CountOf(std::shared_ptr<Snapshot> snap, const std::string& text) {
  auto q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << text;
  auto cells = NewIndexEngine(std::move(snap))->Count(*q);
  EXPECT_TRUE(cells.ok()) << text;
  return cells.ok() ? (*cells)[0].count() : -1;
}

TEST(NodeStoreTest, CheckReadableNamesWhatIsWrong) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  // Nothing loaded: the current pointer is missing.
  EXPECT_EQ((*store)->CheckReadable().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE((*store)->Commit(*Small("qc-1", 3)).ok());
  EXPECT_TRUE((*store)->CheckReadable().ok());
  // A damaged pointer.
  std::ofstream(dir.path() + "/current-snapshot") << "garbage\n";
  absl::Status bad = (*store)->CheckReadable();
  EXPECT_EQ(bad.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(bad.message().find("current-snapshot:1"), std::string::npos)
      << bad.message();
}

// Opens one snapshot's RocksDB read-write (to damage it), and reseals it
// afterwards so that the seal does not refuse it before the decoder sees it.
class RawSnapshotDb {
 public:
  RawSnapshotDb(const std::string& store_dir, const std::string& version)
      : store_dir_(store_dir), version_(version) {
    auto store = NodeStore::Open(store_dir);
    EXPECT_TRUE(store.ok());
    rocksdb::Status s = rocksdb::DB::Open(
        rocksdb::Options(), (*store)->SnapshotDbDirForTesting(version), &db_);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  ~RawSnapshotDb() {
    delete db_;
    auto store = NodeStore::Open(store_dir_);
    EXPECT_TRUE(store.ok());
    EXPECT_TRUE((*store)->ResealForTesting(version_).ok());
  }
  rocksdb::DB* db() { return db_; }

 private:
  std::string store_dir_, version_;
  rocksdb::DB* db_ = nullptr;
};

TEST(NodeStoreTest, SharedPostingsSurviveRoundTripAsAliases) {
  for (uint32_t chunk : {0u, 2u}) {  // Default, and several chunks a code.
    TempDir dir;
    auto built = WithAliases("qc-20231114T221320Z-1");
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    (*store)->set_posting_chunk_for_testing(chunk);
    ASSERT_TRUE((*store)->Commit(*built).ok());
    auto loaded = (*store)->LoadCurrent();
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ExpectSameSnapshot(*built, **loaded);
    for (const char* q :
         {"condition icd10:E11* at least 2 times",
          "condition concept:201826 at least 3 times",
          "condition [concept:201826, icd10:E11*] at least 2 times",
          "condition concept:201826 before condition icd10:E10* within 30 "
          "days",
          "condition icd10:E10* before measurement concept:3004410 within 800 "
          "days",
          "measurement loinc:4548-4 value > 6"}) {
      EXPECT_EQ(CountOf(built, q), CountOf(*loaded, q)) << q;
    }
  }
}

TEST(NodeStoreTest, Format2StoreIsStillReadWithPostingsShared) {
  TempDir dir;
  auto built = WithAliases("qc-20231114T221320Z-1");
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    (*store)->set_write_format2_for_testing();
    ASSERT_TRUE((*store)->Commit(*built).ok());
  }
  {
    // Format 2 stores every code's columns, and says so.
    RawSnapshotDb raw(dir.path(), "qc-20231114T221320Z-1");
    std::string meta;
    ASSERT_TRUE(
        raw.db()
            ->Get(rocksdb::ReadOptions(), "s/qc-20231114T221320Z-1/meta", &meta)
            .ok());
    EXPECT_NE(meta.find("format=2\n"), std::string::npos);
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto loaded = (*store)->LoadCurrent();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameSnapshot(*built, **loaded);
}

TEST(NodeStoreTest, NewerFormatIsRefusedNamingIt) {
  TempDir dir;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Commit(*Small("qc-1", 2)).ok());
  }
  {
    RawSnapshotDb raw(dir.path(), "qc-1");
    rocksdb::DB* db = raw.db();
    std::string meta;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "s/qc-1/meta", &meta).ok());
    const size_t at = meta.find("format=");
    ASSERT_NE(at, std::string::npos);
    meta = meta.substr(0, at) + "format=9\n";
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "s/qc-1/meta", meta).ok());
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  const absl::Status st = (*store)->LoadCurrent().status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(st.message().find("store format 9"), std::string::npos) << st;
}

TEST(NodeStoreTest, AliasOfUnknownCodeIsDataLoss) {
  TempDir dir;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Commit(*Small("qc-1", 2)).ok());
  }
  {
    // "1concept\0201826" sorts first and holds the columns: point the alias
    // "1icd10ca\0E119" at a code that does not exist.
    RawSnapshotDb raw(dir.path(), "qc-1");
    rocksdb::DB* db = raw.db();
    std::string key = "s/qc-1/c/1icd10ca";
    key.push_back('\0');
    key += "E119";
    key.push_back('\0');
    key += "00000000";
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    ASSERT_FALSE(value.empty());
    EXPECT_EQ(static_cast<uint8_t>(value[0]), 0xA3);  // An alias.
    value.resize(value.size() - 1);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadCurrent().status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(PostingDeduplicatorTest, SharesOnlyEqualPostings) {
  auto make = [](std::vector<uint32_t> patients, std::vector<int32_t> days,
                 std::vector<uint32_t> events, std::vector<double> values) {
    auto p = std::make_shared<Posting>();
    p->patients = std::move(patients);
    p->days = std::move(days);
    p->events = std::move(events);
    p->values = std::move(values);
    return p;
  };
  const double kNaN = std::numeric_limits<double>::quiet_NaN();
  PostingDeduplicator dedup;
  auto a = make({1, 2, 2}, {10, 11, 12}, {0, 1, 2}, {});
  EXPECT_EQ(dedup.Intern(a), a);
  EXPECT_EQ(dedup.Intern(make({1, 2, 2}, {10, 11, 12}, {0, 1, 2}, {})), a);
  EXPECT_EQ(dedup.Intern(a), a);  // Itself: not counted as shared.
  // Any column differing, or values present on one side only: not shared.
  for (auto other : {make({1, 2, 3}, {10, 11, 12}, {0, 1, 2}, {}),
                     make({1, 2, 2}, {10, 11, 13}, {0, 1, 2}, {}),
                     make({1, 2, 2}, {10, 11, 12}, {0, 1, 3}, {}),
                     make({1, 2, 2}, {10, 11, 12}, {0, 1, 2}, {1, 2, 3})}) {
    EXPECT_NE(dedup.Intern(other), a);
  }
  auto v = make({4, 5}, {1, 2}, {7, 8}, {kNaN, 2.5});
  EXPECT_EQ(dedup.Intern(v), v);
  EXPECT_EQ(dedup.Intern(make({4, 5}, {1, 2}, {7, 8}, {kNaN, 2.5})), v);
  EXPECT_NE(dedup.Intern(make({4, 5}, {1, 2}, {7, 8}, {kNaN, 2.75})), v);
  EXPECT_EQ(dedup.shared(), 2);
  // A large posting whose difference lies between the sampled entries.
  std::vector<uint32_t> pats(10000), evs(10000);
  std::vector<int32_t> ds(10000);
  for (uint32_t i = 0; i < 10000; ++i) {
    pats[i] = i / 3;
    evs[i] = i;
    ds[i] = static_cast<int32_t>(i % 97);
  }
  auto big = make(pats, ds, evs, {});
  EXPECT_EQ(dedup.Intern(big), big);
  ds[5001] += 1;
  EXPECT_NE(dedup.Intern(make(pats, ds, evs, {})), big);
  ds[5001] -= 1;
  EXPECT_EQ(dedup.Intern(make(pats, ds, evs, {})), big);
}

TEST(NodeStoreTest, EmptyStoreSaysNothingLoaded) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadCurrent().status().code(),
            absl::StatusCode::kNotFound);
}

TEST(NodeStoreTest, CommitThenReloadGivesSameAnswers) {
  TempDir dir;
  std::string version;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    auto v = (*store)->NextVersion("qc", 1700000000);
    ASSERT_TRUE(v.ok());
    version = *v;
    ASSERT_TRUE((*store)->Commit(*Small(version, 4)).ok());
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.version, version);
  EXPECT_EQ((*snap)->meta.site, "qc");
  EXPECT_EQ((*snap)->size(), 10u);
  EXPECT_EQ(CountDiabetic(*snap), 4);
  EXPECT_EQ((*snap)->Vocabularies(),
            (std::vector<std::string>{"concept", "icd10ca"}));
}

TEST(NodeStoreTest, VersionsIncreaseAndNewSnapshotReplacesOld) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto v1 = (*store)->NextVersion("qc", 1700000000);
  auto v2 = (*store)->NextVersion("qc", 1700000000);
  ASSERT_TRUE(v1.ok() && v2.ok());
  EXPECT_NE(*v1, *v2);
  ASSERT_TRUE((*store)->Commit(*Small(*v1, 3)).ok());
  ASSERT_TRUE((*store)->Commit(*Small(*v2, 6)).ok());
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->meta.version, *v2);
  EXPECT_EQ(CountDiabetic(*snap), 6);
}

TEST(NodeStoreTest, InterruptedLoadLeavesPreviousSnapshotServing) {
  TempDir dir;
  std::string good;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    good = *(*store)->NextVersion("qc", 1);
    ASSERT_TRUE((*store)->Commit(*Small(good, 2)).ok());
  }
  // Simulate loads killed before their switch: a snapshot being written
  // (.partial), and one complete but never sealed.
  std::filesystem::create_directories(dir.path() +
                                      "/snapshots/qc-partial-9.partial/db");
  std::ofstream(dir.path() + "/snapshots/qc-partial-9.partial/db/CURRENT")
      << "MANIFEST-000001\n";
  std::filesystem::create_directories(dir.path() +
                                      "/snapshots/qc-unsealed-8/db");
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.version, good);
  EXPECT_EQ(CountDiabetic(*snap), 2);
  // Neither can be made current.
  EXPECT_FALSE((*store)->MakeCurrent("qc-unsealed-8").ok());
  // The next commit sweeps the leftovers.
  auto next = (*store)->NextVersion("qc", 2);
  ASSERT_TRUE((*store)->Commit(*Small(*next, 5)).ok());
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 5);
  EXPECT_FALSE(
      std::filesystem::exists(dir.path() + "/snapshots/qc-partial-9.partial"));
  EXPECT_FALSE(
      std::filesystem::exists(dir.path() + "/snapshots/qc-unsealed-8"));
}

TEST(NodeStoreTest, FailedCommitAndScratchLeftoversLeavePreviousServing) {
  TempDir dir;
  std::string good;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    good = *(*store)->NextVersion("qc", 1);
    ASSERT_TRUE((*store)->Commit(*Small(good, 3)).ok());
    // A commit that fails half-way (here: a ragged posting, found after
    // other codes were written) changes nothing.
    std::shared_ptr<Snapshot> bad = Small(*(*store)->NextVersion("qc", 2), 4);
    bad->tables.rbegin()->second.postings.back()->days.pop_back();
    EXPECT_FALSE((*store)->Commit(*bad).ok());
    EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 3);
  }
  // A load killed while writing its files leaves them in the scratch
  // directory: ignored by the open, swept by the next commit.
  const std::string scratch =
      dir.path() + "/snapshots/qc-x-7.partial/ingest.tmp";
  std::filesystem::create_directories(scratch);
  std::ofstream(scratch + "/000000.sst") << "partial";
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.version, good);
  EXPECT_EQ(CountDiabetic(*snap), 3);
  auto next = (*store)->NextVersion("qc", 3);
  ASSERT_TRUE((*store)->Commit(*Small(*next, 5)).ok());
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 5);
  EXPECT_FALSE(std::filesystem::exists(scratch));
}

TEST(NodeStoreTest, CorruptPostingIsDataLossNotCrash) {
  TempDir dir;
  std::string version;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    version = *(*store)->NextVersion("qc", 1);
    ASSERT_TRUE((*store)->Commit(*Small(version, 2)).ok());
  }
  {
    RawSnapshotDb raw(dir.path(), version);
    rocksdb::DB* db = raw.db();
    // The concept id sorts before its vocabulary code and holds the
    // columns the two share.
    std::string key = "s/" + version + "/c/1concept";
    key.push_back('\0');
    key += "201826";
    key.push_back('\0');
    key += "00000000";  // The first (here the only) chunk of the posting.
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    value.resize(value.size() - 3);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadCurrent().status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace passerelle::node
