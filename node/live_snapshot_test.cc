// The live switch without processes (tests/live_snapshot_test.cc runs it
// across real ones): a new current snapshot is served after one Check,
// queries holding the old engine finish on it, it is removed only once
// released, and a snapshot of another site, damaged, or truncated is
// refused while the old one keeps serving.
#include "node/live_snapshot.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "node/store.h"
#include "query/parser.h"

namespace passerelle::node {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "plive-XXXXXX").string();
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
    EXPECT_TRUE(b.AddPerson(i, BirthKey(1950 + i, 0, 0), v1::SEX_FEMALE).ok());
  }
  b.FinishPersons();
  for (int i = 0; i < n_diabetic; ++i) {
    EXPECT_TRUE(b.BeginEvent(i, DaysFromCivil(2020, 1, 1 + i), 7.5).ok());
    b.AddEventCode(v1::DOMAIN_CONDITION, "icd10", "E119");
  }
  return b.Build(version, 1700000000);
}

int64_t Count(const CohortEngine& engine) {
  auto q = query::ParseQuery("condition icd10:E11*");
  EXPECT_TRUE(q.ok());
  auto cells = engine.Count(*q);
  EXPECT_TRUE(cells.ok()) << cells.status();
  return cells.ok() ? (*cells)[0].count() : -1;
}

class LiveSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = NodeStore::Open(dir_.path());
    ASSERT_TRUE(s.ok());
    store_ = *std::move(s);
    auto w = NodeStore::Open(dir_.path());  // The loader: another "process".
    ASSERT_TRUE(w.ok());
    loader_ = *std::move(w);
    first_ = Load(1);
  }
  std::string Load(int n, const std::string& site = "fr") {
    auto v = loader_->NextVersion(site, 1700000000);
    EXPECT_TRUE(v.ok());
    EXPECT_TRUE(loader_->Commit(*Small(site, *v, n)).ok());
    return *v;
  }
  std::unique_ptr<LiveSnapshot> Start(int kept) {
    LiveSnapshotOptions o;
    o.site = "fr";
    o.snapshots_kept = kept;
    o.log = [this](const std::string& line) { log_ += line + "\n"; };
    o.count_refused = [this] { ++counted_; };
    auto live = std::make_unique<LiveSnapshot>(store_.get(), o, &clock_);
    auto engine = live->OpenInitial();
    EXPECT_TRUE(engine.ok()) << engine.status();
    serving_ = *engine;
    live->set_install([this](std::shared_ptr<const CohortEngine> e) {
      serving_ = std::move(e);
    });
    return live;
  }

  TempDir dir_;
  FakeClock clock_{absl::FromUnixSeconds(1700000000)};
  std::unique_ptr<NodeStore> store_, loader_;
  std::string first_;
  std::shared_ptr<const CohortEngine> serving_;
  std::string log_;
  int counted_ = 0;
};

TEST_F(LiveSnapshotTest, SwitchesAndTheOldFinishesThenGoes) {
  auto live = Start(/*kept=*/1);
  EXPECT_EQ(Count(*serving_), 1);
  ASSERT_TRUE(live->Check().ok());  // Nothing new: nothing changes.
  EXPECT_EQ(live->switches(), 0);

  std::shared_ptr<const CohortEngine> in_flight = serving_;  // A query.
  const std::string second = Load(2);
  ASSERT_TRUE(live->Check().ok()) << log_;
  EXPECT_EQ(live->switches(), 1);
  EXPECT_EQ(live->served_version(), second);
  EXPECT_EQ(serving_->meta().version, second);
  EXPECT_EQ(Count(*serving_), 2);
  // The query in flight still reads the old snapshot, whose files stay.
  EXPECT_EQ(Count(*in_flight), 1);
  EXPECT_TRUE(fs::exists(dir_.path() + "/snapshots/" + first_));
  ASSERT_TRUE(live->Check().ok());
  EXPECT_TRUE(fs::exists(dir_.path() + "/snapshots/" + first_));
  // It ends: the next check removes the old snapshot (keeping 1: only the
  // current).
  in_flight.reset();
  ASSERT_TRUE(live->Check().ok());
  EXPECT_FALSE(fs::exists(dir_.path() + "/snapshots/" + first_));
  EXPECT_TRUE(fs::exists(dir_.path() + "/snapshots/" + second));
  EXPECT_TRUE(live->CheckReadable().ok());
}

TEST_F(LiveSnapshotTest, BadSnapshotsAreRefusedAndTheOldKeepsServing) {
  auto live = Start(/*kept=*/2);
  // Another site's data in this store.
  const std::string other = Load(5, "qc");
  absl::Status st = live->Check();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_EQ(live->served_version(), first_);
  EXPECT_EQ(Count(*serving_), 1);
  EXPECT_EQ(counted_, 1);
  EXPECT_NE(
      log_.find("snapshot " + other + " refused, " + first_ + " keeps serving"),
      std::string::npos)
      << log_;
  EXPECT_TRUE(live->CheckReadable().ok());  // Still healthy.
  // Not tried again while the pointer names it...
  EXPECT_TRUE(live->Check().ok());
  EXPECT_EQ(counted_, 1);
  // ... until retry_refused_after.
  clock_.Advance(absl::Minutes(6));
  EXPECT_FALSE(live->Check().ok());
  EXPECT_EQ(counted_, 2);

  // A damaged file in a snapshot of this site: the SHA-256 says so.
  const std::string damaged = Load(6);
  for (const auto& e : fs::recursive_directory_iterator(
           dir_.path() + "/snapshots/" + damaged)) {
    if (e.path().extension() == ".sst") {
      std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(e.file_size() / 2));
      f.write("\xff\xff\xff\xff", 4);
    }
  }
  st = live->Check();
  EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
  EXPECT_EQ(counted_, 3);
  EXPECT_EQ(Count(*serving_), 1);

  // Then a good one switches.
  const std::string good = Load(7);
  ASSERT_TRUE(live->Check().ok()) << log_;
  EXPECT_EQ(live->served_version(), good);
  EXPECT_EQ(Count(*serving_), 7);
  // Kept 2: the current one and the newest old one (the damaged one); the
  // first and the other site's are gone.
  EXPECT_FALSE(fs::exists(dir_.path() + "/snapshots/" + first_));
  EXPECT_FALSE(fs::exists(dir_.path() + "/snapshots/" + other));
  EXPECT_TRUE(fs::exists(dir_.path() + "/snapshots/" + damaged));
}

TEST_F(LiveSnapshotTest, AtStartAnotherSiteIsRefused) {
  const std::string other = Load(5, "qc");
  LiveSnapshotOptions o;
  o.site = "fr";
  LiveSnapshot live(store_.get(), o, &clock_);
  auto engine = live.OpenInitial();
  EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(engine.status().message().find("\"qc\""), std::string::npos);
}

}  // namespace
}  // namespace passerelle::node
