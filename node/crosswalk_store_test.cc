// The crosswalk set in the node store: stored with its snapshot and read
// back; the snapshot version names it; a missing or altered stored set is
// DATA_LOSS (never a silent loss of mappings); sets of dropped snapshots go.
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/crosswalk_loader.h"
#include "node/store.h"
#include "rocksdb/db.h"

namespace passerelle::node {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "pxstore-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Sub(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

std::shared_ptr<const CrosswalkSet> Set(const TempDir& dir,
                                        const std::string& relation) {
  const std::string path = dir.Sub(absl::StrCat("x-", relation, ".csv"));
  std::ofstream(path) << "source_vocabulary,source_code,target_vocabulary,"
                         "target_code,relation\n"
                         "icd9,250,icd10ca,E11,"
                      << relation << "\ndin,02099233,atc,A10BA02,narrower\n";
  CrosswalkLoadReport report;
  auto set = LoadCrosswalks({path + ",name=ramq"},
                            InvalidCrosswalkRows::kRefuse, &report);
  EXPECT_TRUE(set.ok()) << set.status();
  return *set;
}

std::shared_ptr<Snapshot> Snap(const std::string& version,
                               std::shared_ptr<const CrosswalkSet> set) {
  SnapshotBuilder b("qc");
  EXPECT_TRUE(b.AddPerson(1, BirthKey(1950, 1, 1), v1::SEX_FEMALE).ok());
  b.FinishPersons();
  EXPECT_TRUE(b.BeginEvent(1, DaysFromCivil(2020, 1, 1), 0).ok());
  b.AddEventCode(v1::DOMAIN_CONDITION, "icd9", "250");
  std::shared_ptr<Snapshot> s = b.Build(version, 0);
  s->crosswalks = std::move(set);
  return s;
}

TEST(CrosswalkStoreTest, StoredWithTheSnapshotAndNamedByItsVersion) {
  TempDir dir;
  auto a = Set(dir, "narrower");
  auto b = Set(dir, "broader");
  ASSERT_NE(a->id(), b->id());
  EXPECT_EQ(VersionWithMappingSet("qc-1", a->id()),
            absl::StrCat("qc-1-m", a->id().substr(0, 12)));
  EXPECT_EQ(VersionWithMappingSet("qc-1", ""), "qc-1");
  EXPECT_EQ(MappingSetOfVersion(VersionWithMappingSet("qc-1", a->id())),
            a->id().substr(0, 12));
  EXPECT_EQ(MappingSetOfVersion("qc-20261207T000000Z-3"), "");

  auto store = NodeStore::Open(dir.Sub("store"));
  ASSERT_TRUE(store.ok()) << store.status();
  // A version that does not name its set is refused before anything
  // becomes current.
  EXPECT_FALSE((*store)->Commit(*Snap("qc-1", a)).ok());
  EXPECT_FALSE((*store)->LoadCurrent().ok());
  EXPECT_FALSE(
      (*store)->Commit(*Snap(VersionWithMappingSet("qc-1", b->id()), a)).ok());

  const std::string v1 = VersionWithMappingSet("qc-1", a->id());
  ASSERT_TRUE((*store)->Commit(*Snap(v1, a)).ok());
  auto back = (*store)->LoadCurrent();
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_NE((*back)->crosswalks, nullptr);
  EXPECT_EQ((*back)->crosswalks->id(), a->id());
  EXPECT_EQ((*back)->crosswalks->CanonicalText(), a->CanonicalText());
  EXPECT_EQ((*back)->meta.version, v1);

  // A new load with other tables: the old set is dropped with its snapshot.
  const std::string v2 = VersionWithMappingSet("qc-2", b->id());
  ASSERT_TRUE((*store)->Commit(*Snap(v2, b)).ok());
  back = (*store)->LoadCurrent();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)->crosswalks->id(), b->id());
  EXPECT_FALSE((*store)->ReadCrosswalks(v1).ok());
  // And without tables: none.
  ASSERT_TRUE((*store)->Commit(*Snap("qc-3", nullptr)).ok());
  back = (*store)->LoadCurrent();
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)->crosswalks, nullptr);
}

TEST(CrosswalkStoreTest, MissingOrAlteredSetIsDataLoss) {
  TempDir dir;
  auto a = Set(dir, "narrower");
  const std::string v = VersionWithMappingSet("qc-1", a->id());
  {
    auto store = NodeStore::Open(dir.Sub("store"));
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Commit(*Snap(v, a)).ok());
  }
  // Alter one row behind the store's back.
  {
    rocksdb::DB* db = nullptr;
    rocksdb::Options options;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.Sub("store"), &db).ok());
    std::string value;
    ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "x/" + v, &value).ok());
    value.replace(value.find("E11"), 3, "E12");
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "x/" + v, value).ok());
    delete db;
  }
  {
    auto store = NodeStore::Open(dir.Sub("store"));
    ASSERT_TRUE(store.ok());
    auto back = (*store)->LoadCurrent();
    ASSERT_FALSE(back.ok());
    EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss);
  }
  // Remove it: still DATA_LOSS, naming the set.
  {
    rocksdb::DB* db = nullptr;
    rocksdb::Options options;
    ASSERT_TRUE(rocksdb::DB::Open(options, dir.Sub("store"), &db).ok());
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), "x/" + v).ok());
    delete db;
  }
  auto store = NodeStore::Open(dir.Sub("store"));
  ASSERT_TRUE(store.ok());
  auto back = (*store)->LoadCurrent();
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(back.status().message(),
              HasSubstr("crosswalk tables are missing"));
}

}  // namespace
}  // namespace passerelle::node
