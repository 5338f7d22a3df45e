#include "policy/store.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::policy {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kSite[] = R"txt(
  site {
    id: "qc"
    callers: ["spiffe://passerelle/gateway"]
    disclosure { min_cell_size: 5 }
  }
)txt";

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "policy_store_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(fs::path(path_) / name, std::ios::trunc) << text;
  }

 private:
  std::string path_;
};

int64_t MinCell(const PolicyStore& store) {
  return store.Current()->FindSite("qc")->disclosure().min_cell_size();
}

TEST(PolicyStoreTest, FailsWhenTheFirstVersionIsInvalid) {
  TempDir dir;
  dir.Write("site-qc.textproto", "site { id: ");
  auto store = PolicyStore::Create({dir.path()});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(store.status().message()),
              HasSubstr("site-qc.textproto:1:"));
}

TEST(PolicyStoreTest, ReloadSwapsAValidVersionAndKeepsTheOldOneOnError) {
  TempDir dir;
  dir.Write("site-qc.textproto", kSite);
  auto created = PolicyStore::Create({dir.path()});
  ASSERT_TRUE(created.ok()) << created.status();
  PolicyStore& store = **created;
  std::shared_ptr<const Policy> v1 = store.Current();
  EXPECT_EQ(MinCell(store), 5);

  dir.Write(
      "site-qc.textproto",
      absl::StrReplaceAll(kSite, {{"min_cell_size: 5", "min_cell_size: 7"}}));
  ASSERT_TRUE(store.Reload().ok());
  EXPECT_EQ(MinCell(store), 7);
  EXPECT_NE(store.Current()->version(), v1->version());
  // A snapshot taken before stays intact for the request holding it.
  EXPECT_EQ(v1->FindSite("qc")->disclosure().min_cell_size(), 5);
  std::string good = store.Current()->version();

  // An invalid version is rejected; the previous one keeps serving.
  dir.Write(
      "site-qc.textproto",
      absl::StrReplaceAll(kSite, {{"min_cell_size: 5", "min_cell_size: -1"}}));
  absl::Status s = store.Reload();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("site-qc.textproto:5:"));
  EXPECT_EQ(store.Current()->version(), good);
  EXPECT_EQ(store.last_error().code(), absl::StatusCode::kInvalidArgument);

  // A file removed from the directory, a file added.
  dir.Write("site-qc.textproto", kSite);
  dir.Write("extra.textproto", "# nothing yet\n");
  ASSERT_TRUE(store.Reload().ok());
  EXPECT_EQ(store.Current()->files().size(), 2u);
  EXPECT_TRUE(store.last_error().ok());
}

TEST(PolicyStoreTest, MaybeReloadSeesChangesAndReportsAnInvalidOneOnce) {
  TempDir dir;
  dir.Write("site-qc.textproto", kSite);
  auto created = PolicyStore::Create({dir.path()});
  ASSERT_TRUE(created.ok());
  PolicyStore& store = **created;

  auto changed = store.MaybeReload();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);

  // Same size, possibly the same modification time: found by content.
  dir.Write(
      "site-qc.textproto",
      absl::StrReplaceAll(kSite, {{"min_cell_size: 5", "min_cell_size: 8"}}));
  changed = store.MaybeReload();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(MinCell(store), 8);
  changed = store.MaybeReload();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);

  dir.Write("site-qc.textproto", "site { id: \"qc\" callers: [] bogus: 1 }");
  changed = store.MaybeReload();
  EXPECT_EQ(changed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MinCell(store), 8);
  // Polling again does not repeat the same error.
  changed = store.MaybeReload();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(MinCell(store), 8);

  // Fixing the file brings the new version in.
  dir.Write("site-qc.textproto", kSite);
  changed = store.MaybeReload();
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(*changed);
  EXPECT_EQ(MinCell(store), 5);
}

TEST(PolicyStoreTest, MissingFileKeepsServing) {
  TempDir dir;
  dir.Write("site-qc.textproto", kSite);
  std::string file = (fs::path(dir.path()) / "site-qc.textproto").string();
  auto created = PolicyStore::Create({file});
  ASSERT_TRUE(created.ok());
  fs::remove(file);
  EXPECT_EQ((*created)->Reload().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*created)->MaybeReload().status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(MinCell(**created), 5);
}

TEST(PolicyStoreTest, ReadersSeeWholeSnapshotsDuringReloads) {
  TempDir dir;
  dir.Write("site-qc.textproto", kSite);
  auto created = PolicyStore::Create({dir.path()});
  ASSERT_TRUE(created.ok());
  PolicyStore& store = **created;
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop.load()) {
      std::shared_ptr<const Policy> p = store.Current();
      int64_t m = p->FindSite("qc")->disclosure().min_cell_size();
      if (m != 5 && m != 6) ++bad;
    }
  });
  for (int i = 0; i < 20; ++i) {
    dir.Write("site-qc.textproto",
              absl::StrReplaceAll(
                  kSite, {{"min_cell_size: 5",
                           i % 2 ? "min_cell_size: 5" : "min_cell_size: 6"}}));
    EXPECT_TRUE(store.Reload().ok());
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace passerelle::policy
