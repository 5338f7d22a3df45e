// End to end: real node and gateway processes on loopback with mTLS.
#include "tests/federation.h"

#include <csignal>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace passerelle::testing {
namespace {

class FederationTest : public ::testing::Test {
 protected:
  // A failure here fails every test (rather than letting gtest report them
  // as skipped, which ctest would count as not failing).
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    for (const auto& [site, seed] :
         {std::pair<std::string, int>{"fr", 11}, {"qc", 12}}) {
      absl::StatusOr<CommandResult> gen =
          RunCommand({PasserelleBin(), "generate", "--patients", "3000",
                      "--seed", absl::StrCat(seed), "--site", site, "--out",
                      fed_->Path("data/" + site)});
      if (!gen.ok()) return gen.status();
      if (gen->exit_code != 0) {
        return absl::InternalError(
            absl::StrCat("passerelle generate failed: ", gen->err));
      }
      PASSERELLE_RETURN_IF_ERROR(
          fed_->LoadSite(site, fed_->Path("data/" + site)));
    }
    return absl::OkStatus();
  }
  void SetUp() override { ASSERT_TRUE(setup_->ok()) << *setup_; }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
  }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
};
absl::Status* FederationTest::setup_ = nullptr;
TempDir* FederationTest::dir_ = nullptr;
Federation* FederationTest::fed_ = nullptr;

constexpr char kBreakdown[] = "condition icd10:E11* group by sex, age_band(20)";
constexpr char kTotal[] = "condition icd10:E11* or drug atc:A10*";

TEST_F(FederationTest,
       FederatedCountEqualsSumOfLocalCountsAndPartialNamesSite) {
  // Exact local counts first: a node's store is locked while it serves.
  auto fr = fed_->LocalCounts("fr", kBreakdown);
  auto qc = fed_->LocalCounts("qc", kBreakdown);
  auto fr_total = fed_->LocalCounts("fr", kTotal);
  auto qc_total = fed_->LocalCounts("qc", kTotal);
  ASSERT_TRUE(fr.ok() && qc.ok() && fr_total.ok() && qc_total.ok());
  ASSERT_EQ(fr->size(), 4u * 7u);  // 4 sexes x (0-19 ... 100-119, 120+).
  ASSERT_EQ(fr_total->size(), 1u);
  ASSERT_GT((*fr_total)[0], 0);
  ASSERT_GT((*qc_total)[0], 0);

  ASSERT_TRUE(fed_->StartNode("fr").ok());
  ASSERT_TRUE(fed_->StartNode("qc").ok());
  absl::Status gw = fed_->StartGateway(TestPolicy());
  ASSERT_TRUE(gw.ok()) << gw;

  // Exact mode: thresholds only, so released counts are the true sums.
  v1::QueryResponse total;
  grpc::Status st = fed_->Query("exact", kTotal, &total);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(total.complete());
  ASSERT_EQ(total.sites_size(), 2);
  ASSERT_EQ(total.combined_size(), 1);
  ASSERT_TRUE(total.combined(0).has_count());
  EXPECT_EQ(total.combined(0).count(), (*fr_total)[0] + (*qc_total)[0]);
  EXPECT_EQ(total.combined(0).precision().kind(), v1::Precision::EXACT);

  v1::QueryResponse breakdown;
  st = fed_->Query("exact", kBreakdown, &breakdown);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(breakdown.combined_size(), static_cast<int>(fr->size()));
  int released = 0;
  for (int i = 0; i < breakdown.combined_size(); ++i) {
    const v1::ReleasedCell& c = breakdown.combined(i);
    const int64_t truth = (*fr)[i] + (*qc)[i];
    if (c.has_count()) {
      EXPECT_EQ(c.count(), truth) << c.key().ShortDebugString();
      ++released;
    }
  }
  EXPECT_GT(released, 0);

  // Noised mode: every cell is released with its precision and interval.
  v1::QueryResponse noised;
  st = fed_->Query("noised", kTotal, &noised);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(noised.combined_size(), 1);
  EXPECT_EQ(noised.combined(0).precision().kind(), v1::Precision::NOISED);
  EXPECT_GT(noised.epsilon_charged(), 0);
  if (noised.combined(0).has_count()) {
    EXPECT_LE(noised.combined(0).interval_low(), noised.combined(0).count());
    EXPECT_GE(noised.combined(0).interval_high(), noised.combined(0).count());
  }

  // Bob is a federation auditor, not a researcher: default deny.
  v1::QueryResponse denied;
  st = fed_->Query("exact", kTotal, &denied, "bob");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // A node killed mid-run: the answer is partial and names it.
  fed_->node("qc").Signal(SIGKILL);
  fed_->node("qc").Wait();
  v1::QueryResponse partial;
  st = fed_->Query("exact", kTotal, &partial);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(partial.complete());
  bool named = false;
  for (const v1::SiteResult& s : partial.sites()) {
    if (s.site() == "qc") {
      named = true;
      EXPECT_NE(s.status(), v1::SITE_STATUS_OK);
      EXPECT_FALSE(s.reason().empty());
    } else {
      EXPECT_EQ(s.status(), v1::SITE_STATUS_OK);
    }
  }
  EXPECT_TRUE(named);
  // Exact mode releases nothing from a partial answer (fr's exact count
  // could be subtracted from the complete one).
  EXPECT_EQ(partial.combined_size(), 0);
  bool noted = false;
  for (const std::string& n : partial.notes())
    noted |= n.find("qc") != std::string::npos;
  EXPECT_TRUE(noted);
}

}  // namespace
}  // namespace passerelle::testing
