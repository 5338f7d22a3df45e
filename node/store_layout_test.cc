// The store directory's layout (node/store.h): a reader and a writer at
// once, retention that never removes a snapshot in use or the current one,
// seals that refuse damaged snapshots, leftovers of crashes, and the
// migration of the earlier single-RocksDB layout.
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "node/engine.h"
#include "node/snapshot_files.h"
#include "node/store.h"
#include "query/parser.h"
#include "rocksdb/db.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "playout-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::shared_ptr<Snapshot> Small(const std::string& site,
                                const std::string& version, int n_diabetic) {
  SnapshotBuilder b(site);
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(b.AddPerson(i, BirthKey(1950 + i, 0, 0),
                            i % 2 ? v1::SEX_MALE : v1::SEX_FEMALE)
                    .ok());
  }
  b.FinishPersons();
  for (int i = 0; i < n_diabetic; ++i) {
    EXPECT_TRUE(b.BeginEvent(i, DaysFromCivil(2020, 1, 1 + i), 7.5).ok());
    b.AddEventCode(v1::DOMAIN_CONDITION, "icd10ca", "E119");
  }
  return b.Build(version, 1700000000);
}

int64_t CountDiabetic(std::shared_ptr<const Snapshot> snap) {
  auto q = query::ParseQuery("condition icd10:E11*");
  EXPECT_TRUE(q.ok());
  auto cells = NewIndexEngine(std::move(snap))->Count(*q);
  EXPECT_TRUE(cells.ok());
  return cells.ok() ? (*cells)[0].count() : -1;
}

// Commits a snapshot of `n` diabetics and returns its version.
std::string Load(NodeStore& store, int n, const std::string& site = "qc") {
  absl::StatusOr<std::string> v = store.NextVersion(site, 1700000000);
  EXPECT_TRUE(v.ok()) << v.status();
  absl::Status st = store.Commit(*Small(site, *v, n));
  EXPECT_TRUE(st.ok()) << st;
  return *v;
}

std::string SnapshotDir(const TempDir& d, const std::string& v) {
  return d.path() + "/snapshots/" + v;
}

// The largest sealed file of a snapshot (an SST file).
std::string LargestFile(const std::string& dir) {
  std::string best;
  uintmax_t size = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.file_size() > size &&
        e.path().extension() == ".sst") {
      size = e.file_size();
      best = e.path().string();
    }
  }
  return best;
}

TEST(StoreLayoutTest, OneDirectoryPerSnapshotAndAPointer) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  const std::string v1 = Load(**store, 3);
  const std::string v2 = Load(**store, 6);
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v1) + "/SEAL"));
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v2) + "/SEAL"));
  EXPECT_EQ(*(*store)->CurrentVersion(), v2);
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(CountDiabetic(*snap), 6);
  auto list = (*store)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].version, v1);
  EXPECT_FALSE((*list)[0].current);
  EXPECT_TRUE((*list)[1].current);
  EXPECT_TRUE((*list)[1].in_use);  // `snap` holds its lease.
  // A rollback to the kept one, and a version that is not kept.
  ASSERT_TRUE((*store)->MakeCurrent(v1).ok());
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 3);
  EXPECT_EQ((*store)->MakeCurrent("qc-nothing-99").code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ((*store)->MakeCurrent("../../etc").code(),
            absl::StatusCode::kInvalidArgument);
}

// Two handles on one directory behave as two processes (flock(2) locks
// belong to open files): a reader never blocks a load, and nothing a
// reader holds is removed.
TEST(StoreLayoutTest, ALoadRunsBesideAReaderAndPruningSparesWhatIsInUse) {
  TempDir dir;
  auto writer = NodeStore::Open(dir.path());
  auto reader = NodeStore::Open(dir.path());
  ASSERT_TRUE(writer.ok() && reader.ok());
  const std::string v1 = Load(**writer, 1);
  auto held = (*reader)->OpenCurrent();
  ASSERT_TRUE(held.ok()) << held.status();
  const std::string v2 = Load(**writer, 2);
  const std::string v3 = Load(**writer, 3);
  EXPECT_EQ(CountDiabetic(held->snapshot), 1);  // Still reads v1.
  // Keep nothing old: v2 goes, v1 is in use, v3 is current.
  auto pruned = (*writer)->Prune(0);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->removed, std::vector<std::string>{v2});
  EXPECT_EQ(pruned->in_use, std::vector<std::string>{v1});
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v1)));
  EXPECT_FALSE(fs::exists(SnapshotDir(dir, v2)));
  EXPECT_EQ(CountDiabetic(held->snapshot), 1);
  // Released (the engine and the handle both): now it goes.
  int released = 0;
  (*reader)->set_on_release([&released] { ++released; });
  held = absl::UnknownError("dropped");
  pruned = (*writer)->Prune(0);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->removed, std::vector<std::string>{v1});
  EXPECT_FALSE(fs::exists(SnapshotDir(dir, v1)));
  // The current one is never removed.
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v3)));
  EXPECT_EQ(CountDiabetic(*(*reader)->LoadCurrent()), 3);
  EXPECT_GE(released, 1);
}

TEST(StoreLayoutTest, RetentionKeepsTheMostRecentOldSnapshots) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  std::vector<std::string> v;
  for (int i = 1; i <= 4; ++i) v.push_back(Load(**store, i));
  auto pruned = (*store)->Prune(1);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->removed.size(), 2u);
  EXPECT_FALSE(fs::exists(SnapshotDir(dir, v[0])));
  EXPECT_FALSE(fs::exists(SnapshotDir(dir, v[1])));
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v[2])));
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v[3])));
  // After a rollback the newer one is the "old" one kept.
  ASSERT_TRUE((*store)->MakeCurrent(v[2]).ok());
  pruned = (*store)->Prune(0);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->removed, std::vector<std::string>{v[3]});
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 3);
}

// While another writer holds the store, a prune does nothing and says so
// (a node tries again later); a load waits for it.
TEST(StoreLayoutTest, PruneNeverWaitsForAnotherWriter) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  const std::string v1 = Load(**store, 1);
  Load(**store, 2);
  absl::StatusOr<FileLock> other = FileLock::Acquire(
      dir.path() + "/writer.lock", FileLock::Mode::kExclusive, false, true);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ((*store)->Prune(0).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, v1)));
  other = absl::UnknownError("released");
  auto pruned = (*store)->Prune(0);
  ASSERT_TRUE(pruned.ok());
  EXPECT_FALSE(fs::exists(SnapshotDir(dir, v1)));
}

TEST(StoreLayoutTest, DamagedSnapshotsAreRefusedNamingTheFile) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  const std::string good = Load(**store, 2);
  SnapshotOpenOptions full;
  full.verify_contents = true;
  ASSERT_TRUE((*store)->OpenSnapshot(good, full).ok());

  // One byte flipped inside a data file: sizes match, the SHA-256 does not.
  const std::string flipped = Load(**store, 3);
  const std::string sst = LargestFile(SnapshotDir(dir, flipped));
  ASSERT_FALSE(sst.empty());
  {
    std::fstream f(sst, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(40);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    f.seekp(40);
    f.write(&c, 1);
  }
  absl::Status st = (*store)->OpenSnapshot(flipped, full).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find(fs::path(sst).filename().string()),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("checksum"), std::string::npos) << st;

  // Truncated: refused even without reading the contents.
  const std::string truncated = Load(**store, 4);
  const std::string sst2 = LargestFile(SnapshotDir(dir, truncated));
  fs::resize_file(sst2, fs::file_size(sst2) / 2);
  st = (*store)->OpenSnapshot(truncated).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("truncated"), std::string::npos) << st;

  // A seal edited by hand (its own checksum no longer matches).
  const std::string edited = Load(**store, 5);
  {
    const std::string seal = SnapshotDir(dir, edited) + "/SEAL";
    std::string text = *ReadSmallFile(seal);
    text.replace(text.find("site qc"), 7, "site fr");
    std::ofstream(seal, std::ios::trunc) << text;
  }
  st = (*store)->OpenSnapshot(edited).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("SEAL:"), std::string::npos) << st;

  // The seal removed: never completely written.
  const std::string unsealed = Load(**store, 6);
  fs::remove(SnapshotDir(dir, unsealed) + "/SEAL");
  st = (*store)->OpenSnapshot(unsealed).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;

  // None of that touched the good one.
  auto opened = (*store)->OpenSnapshot(good, full);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(CountDiabetic(opened->snapshot), 2);
}

TEST(StoreLayoutTest, ADamagedPointerIsDataLossWithItsFile) {
  TempDir dir;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  Load(**store, 1);
  std::ofstream(dir.path() + "/current-snapshot", std::ios::trunc)
      << "passerelle node store 1\ncurrent ../../x\n";
  absl::Status st = (*store)->LoadCurrent().status();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_NE(st.message().find("current-snapshot:1"), std::string::npos) << st;
}

// What crashes leave (the kills themselves are in tests/crash_safety_test):
// a partial snapshot, a sealed one never made current, a half-removed one
// in trash/, a pointer's temporary file. The store opens on the current
// snapshot and the next writer removes the rest.
TEST(StoreLayoutTest, CrashLeftoversNeitherServeNorStay) {
  TempDir dir;
  std::string current, orphan;
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok());
    current = Load(**store, 2);
    orphan = Load(**store, 7);
    ASSERT_TRUE((*store)->MakeCurrent(current).ok());
  }
  fs::create_directories(dir.path() + "/snapshots/qc-x-9.partial/db");
  std::ofstream(dir.path() + "/snapshots/qc-x-9.partial/db/000001.sst") << "x";
  fs::create_directories(dir.path() + "/trash/qc-x-3/db");
  std::ofstream(dir.path() + "/current-snapshot.tmp") << "passerelle node";
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 2);
  auto pruned = (*store)->Prune(1);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_TRUE(pruned->removed.empty());  // The orphan is the one old kept.
  EXPECT_EQ(pruned->leftovers.size(), 3u);
  EXPECT_FALSE(fs::exists(dir.path() + "/snapshots/qc-x-9.partial"));
  EXPECT_FALSE(fs::exists(dir.path() + "/trash/qc-x-3"));
  EXPECT_FALSE(fs::exists(dir.path() + "/current-snapshot.tmp"));
  EXPECT_TRUE(fs::exists(SnapshotDir(dir, orphan)));
}

// A store of the earlier layout: one RocksDB at the top, snapshots under
// key prefixes, CURRENT and SEQ keys.
void MakeEarlierStore(const std::string& dir, const std::string& version,
                      int n) {
  TempDir scratch;
  auto store = NodeStore::Open(scratch.path());
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Commit(*Small("qc", version, n)).ok());
  fs::copy((*store)->SnapshotDbDirForTesting(version), dir,
           fs::copy_options::recursive);
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir, &db).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "CURRENT", version).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "SEQ", "7").ok());
  delete db;
}

TEST(StoreLayoutTest, TheEarlierLayoutIsMigratedOnOpen) {
  TempDir dir;
  MakeEarlierStore(dir.path(), "qc-20231114T221320Z-7", 4);
  ASSERT_TRUE(fs::exists(dir.path() + "/CURRENT"));
  {
    auto store = NodeStore::Open(dir.path());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(*(*store)->CurrentVersion(), "qc-20231114T221320Z-7");
    EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 4);
    // The sequence goes on from the earlier store's.
    auto next = (*store)->NextVersion("qc", 1700000000);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(VersionSequence(*next), 8);
  }
  // Nothing of the earlier layout is left at the top.
  for (const auto& e : fs::directory_iterator(dir.path())) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "snapshots" || name == "current-snapshot" ||
                name == "sequence" || name == "writer.lock")
        << name;
  }
  SnapshotOpenOptions full;
  full.verify_contents = true;
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->OpenSnapshot("qc-20231114T221320Z-7", full).ok());
}

// A migration interrupted after the snapshot moved but before the pointer:
// the next open finishes it.
TEST(StoreLayoutTest, AnInterruptedMigrationIsFinishedByTheNextOpen) {
  TempDir dir;
  const std::string v = "qc-20231114T221320Z-7";
  MakeEarlierStore(dir.path(), v, 4);
  // Simulated: a checkpoint left half-written.
  fs::create_directories(dir.path() + "/snapshots/" + v + ".partial/db");
  auto store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 4);
  EXPECT_FALSE(fs::exists(dir.path() + "/CURRENT"));
}

TEST(StoreLayoutTest, AnEarlierStoreStillOpenElsewhereIsNotMigrated) {
  TempDir dir;
  MakeEarlierStore(dir.path(), "qc-20231114T221320Z-7", 4);
  rocksdb::DB* held = nullptr;  // An earlier build's node serving it.
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), dir.path(), &held).ok());
  auto store = NodeStore::Open(dir.path());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("stop"), std::string::npos)
      << store.status();
  delete held;
  // Stopped: the next open migrates.
  store = NodeStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(CountDiabetic(*(*store)->LoadCurrent()), 4);
}

}  // namespace
}  // namespace passerelle::node
