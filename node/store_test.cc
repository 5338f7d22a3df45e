#include "node/store.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

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
  {
    // Simulate a load killed before its switch: keys of a new version exist
    // but CURRENT still names the old one.
    rocksdb::DB* db;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), &db).ok());
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), "s/qc-partial-9/meta", "site=qc\n")
            .ok());
    ASSERT_TRUE(
        db->Put(rocksdb::WriteOptions(), "s/qc-partial-9/p/0000000000", "x")
            .ok());
    delete db;
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.version, good);
  EXPECT_EQ(CountDiabetic(*snap), 2);
  // The next commit sweeps the leftovers.
  auto next = (*store)->NextVersion("qc", 2);
  ASSERT_TRUE((*store)->Commit(*Small(*next, 5)).ok());
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 5);
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
    bad->tables.rbegin()->second.postings.back().days.pop_back();
    EXPECT_FALSE((*store)->Commit(*bad).ok());
    EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 3);
  }
  // A load killed while writing its files leaves them in the scratch
  // directory: ignored by the open, swept by the next commit.
  std::filesystem::create_directories(dir.path() + "/ingest.tmp");
  std::ofstream(dir.path() + "/ingest.tmp/000000.sst") << "partial";
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.version, good);
  EXPECT_EQ(CountDiabetic(*snap), 3);
  auto next = (*store)->NextVersion("qc", 3);
  ASSERT_TRUE((*store)->Commit(*Small(*next, 5)).ok());
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 5);
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/ingest.tmp"));
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
    rocksdb::DB* db;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), &db).ok());
    std::string key = "s/" + version + "/c/1icd10ca";
    key.push_back('\0');
    key += "E119";
    key.push_back('\0');
    key += "00000000";  // The first (here the only) chunk of the posting.
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), key, &value).ok());
    value.resize(value.size() - 3);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
    delete db;
  }
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadCurrent().status().code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace passerelle::node
