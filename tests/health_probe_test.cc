// The health probe (common/health_probe.h) on a fake clock, and the
// directory check on real temporary directories.
#include "common/health_probe.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle {
namespace {

using ::testing::HasSubstr;

struct Flip {
  bool serving;
  std::string why;
};

class HealthProbeTest : public ::testing::Test {
 protected:
  HealthProbeTest()
      : clock_(absl::FromUnixSeconds(1'700'000'000)),
        probe_(&clock_, absl::Seconds(5), [this](bool s, const std::string& w) {
          flips_.push_back({s, w});
        }) {
    probe_.AddCheck("audit log", [this] {
      ++audit_runs_;
      return audit_;
    });
    probe_.AddCheck("ledger", [this] { return ledger_; });
  }

  FakeClock clock_;
  HealthProbe probe_;
  std::vector<Flip> flips_;
  absl::Status audit_;
  absl::Status ledger_;
  int audit_runs_ = 0;
};

TEST_F(HealthProbeTest, ProbesOnlyOncePerInterval) {
  EXPECT_TRUE(probe_.MaybeProbe());
  EXPECT_EQ(audit_runs_, 1);
  clock_.Advance(absl::Seconds(4));
  EXPECT_FALSE(probe_.MaybeProbe());
  EXPECT_EQ(audit_runs_, 1);
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(probe_.MaybeProbe());
  EXPECT_EQ(audit_runs_, 2);
}

TEST_F(HealthProbeTest, ReportsFirstVerdictThenOnlyChanges) {
  probe_.MaybeProbe();
  ASSERT_EQ(flips_.size(), 1u);
  EXPECT_TRUE(flips_[0].serving);
  clock_.Advance(absl::Seconds(5));
  probe_.MaybeProbe();
  EXPECT_EQ(flips_.size(), 1u);  // Unchanged: not reported again.

  audit_ = absl::UnavailableError("directory removed");
  clock_.Advance(absl::Seconds(5));
  probe_.MaybeProbe();
  ASSERT_EQ(flips_.size(), 2u);
  EXPECT_FALSE(flips_[1].serving);
  EXPECT_EQ(flips_[1].why, "audit log: directory removed");
  EXPECT_FALSE(probe_.serving());
  EXPECT_EQ(probe_.why(), "audit log: directory removed");

  // A second failure changes the reason: reported, both named.
  ledger_ = absl::UnavailableError("read failed");
  clock_.Advance(absl::Seconds(5));
  probe_.MaybeProbe();
  ASSERT_EQ(flips_.size(), 3u);
  EXPECT_THAT(flips_[2].why, HasSubstr("audit log: directory removed"));
  EXPECT_THAT(flips_[2].why, HasSubstr("ledger: read failed"));

  audit_ = absl::OkStatus();
  ledger_ = absl::OkStatus();
  clock_.Advance(absl::Seconds(5));
  probe_.MaybeProbe();
  ASSERT_EQ(flips_.size(), 4u);
  EXPECT_TRUE(flips_[3].serving);
  EXPECT_EQ(flips_[3].why, "");
  EXPECT_TRUE(probe_.serving());
}

TEST_F(HealthProbeTest, ProbeNowIgnoresTheIntervalAndReturnsTheVerdict) {
  EXPECT_TRUE(probe_.ProbeNow().ok());
  ledger_ = absl::InternalError("corrupt");
  absl::Status st = probe_.ProbeNow();  // No time has passed.
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(st.message(), HasSubstr("ledger: corrupt"));
  EXPECT_EQ(audit_runs_, 2);
}

// Callers hear which checks fail, never the details (which name paths).
TEST_F(HealthProbeTest, CallerReasonNamesChecksOnly) {
  EXPECT_EQ(probe_.CallerReason(), "");
  audit_ = absl::UnavailableError("/var/lib/passerelle/audit: gone");
  ledger_ = absl::UnavailableError("/var/lib/passerelle/ledger: read-only");
  EXPECT_FALSE(probe_.ProbeNow().ok());
  EXPECT_THAT(probe_.why(), HasSubstr("/var/lib/passerelle/audit"));
  EXPECT_EQ(probe_.CallerReason(),
            "unhealthy: audit log; ledger (details in the server's log)");
  EXPECT_EQ(probe_.failing_checks(),
            (std::vector<std::string>{"audit log", "ledger"}));
  audit_ = absl::OkStatus();
  ledger_ = absl::OkStatus();
  EXPECT_TRUE(probe_.ProbeNow().ok());
  EXPECT_TRUE(probe_.failing_checks().empty());
  probe_.SetDraining();
  EXPECT_FALSE(probe_.serving());
  EXPECT_EQ(probe_.CallerReason(),
            "unhealthy: draining (details in the server's log)");
  EXPECT_FALSE(flips_.back().serving);
}

class DirectoryCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat(
               "health_probe_test_", getpid(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "db");
    std::ofstream(dir_ / "db" / "CURRENT") << "MANIFEST-000001\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string db() const { return (dir_ / "db").string(); }
  std::filesystem::path dir_;
};

TEST_F(DirectoryCheckTest, HealthyWhileTheOpenedDirectoryStays) {
  DirectoryCheck check(db());
  EXPECT_TRUE(check().ok()) << check();
}

TEST_F(DirectoryCheckTest, RemovedDirectoryIsUnhealthy) {
  DirectoryCheck check(db());
  std::filesystem::remove_all(db());
  absl::Status st = check();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(st.message(), HasSubstr(db()));
}

TEST_F(DirectoryCheckTest, ReplacedDirectoryIsUnhealthyUntilPutBack) {
  DirectoryCheck check(db());
  std::filesystem::rename(db(), dir_ / "moved");
  std::filesystem::create_directories(db());
  std::ofstream(dir_ / "db" / "CURRENT") << "MANIFEST-000009\n";
  absl::Status st = check();
  EXPECT_THAT(st.message(), HasSubstr("removed or replaced"));
  std::filesystem::remove_all(db());
  std::filesystem::rename(dir_ / "moved", db());
  EXPECT_TRUE(check().ok()) << check();
}

TEST_F(DirectoryCheckTest, MissingMarkerIsUnhealthy) {
  DirectoryCheck check(db());
  std::filesystem::remove(dir_ / "db" / "CURRENT");
  EXPECT_THAT(check().message(), HasSubstr("CURRENT"));
}

TEST_F(DirectoryCheckTest, TooLittleFreeSpaceIsUnhealthy) {
  // No file system has this much free.
  DirectoryCheck check(db(), "CURRENT", uint64_t{1} << 62);
  EXPECT_THAT(check().message(), HasSubstr("bytes free"));
}

}  // namespace
}  // namespace passerelle
