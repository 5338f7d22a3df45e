// Exact mode's suppression pattern holds for every release of a cohort
// (privacy.md requirement 5), against a real federation: FR has 3 patients
// with type 2 diabetes (site minimum 10), QC has 40. The attacker asks `X`,
// then `X group by site`, then `X` of QC alone, then `X` while FR is down,
// hoping one release shows QC's 40 while another shows the combined 43
// (43 - 40 = 3, FR's suppressed count).
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

constexpr char kCohort[] = "condition icd10:E11*";

// An OMOP CSV directory: `with` patients with E11.9, `without` with I10.
void WriteSite(const std::string& dir, int with, int without) {
  std::string person = "person_id,gender_concept_id,year_of_birth\n";
  std::string condition =
      "person_id,condition_concept_id,condition_start_date,"
      "condition_source_value,condition_source_concept_id\n";
  for (int p = 1; p <= with + without; ++p) {
    absl::StrAppend(&person, p, ",", p % 2 == 0 ? 8532 : 8507, ",1960\n");
    absl::StrAppend(&condition, p, ",", p <= with ? "2000000001" : "2000000003",
                    ",2020-01-05,", p <= with ? "E11.9" : "I10", ",",
                    p <= with ? "2000000001" : "2000000003", "\n");
  }
  WriteFile(dir + "/person.csv", person);
  WriteFile(dir + "/concept.csv",
            "concept_id,vocabulary_id,concept_code\n"
            "2000000001,ICD10CM,E11.9\n"
            "2000000003,ICD10CM,I10\n");
  WriteFile(dir + "/condition_occurrence.csv", condition);
}

// The test policy with FR's site minimum raised to 10.
std::string PolicyWithFrMinimum10() {
  const std::string from =
      "id: \"fr\"\n  callers: \"spiffe://passerelle/gateway\"\n"
      "  disclosure { min_cell_size: 1 ";
  const std::string to =
      "id: \"fr\"\n  callers: \"spiffe://passerelle/gateway\"\n"
      "  disclosure { min_cell_size: 10 ";
  std::string policy = TestPolicy();
  const size_t at = policy.find(from);
  if (at != std::string::npos) policy.replace(at, from.size(), to);
  return policy;
}

// Everything the attacker has seen, by row ("fr", "qc", "combined").
struct Seen {
  std::map<std::string, std::vector<int64_t>> released;
  int suppressed = 0;

  void Add(const std::string& row, const v1::ReleasedCell& c) {
    if (c.has_count()) {
      released[row].push_back(c.count());
    } else {
      ++suppressed;
    }
  }
  void Add(const v1::QueryResponse& r) {
    for (const v1::SiteResult& s : r.sites()) {
      for (const v1::ReleasedCell& c : s.cells()) Add(s.site(), c);
    }
    for (const v1::ReleasedCell& c : r.combined()) {
      std::string row = "combined";
      for (const v1::DimensionValue& v : c.key().values()) {
        if (v.dimension() == "site") row = v.value();  // A site's own cell.
      }
      Add(row, c);
    }
  }
  // FR's count, released or derivable as combined - QC.
  std::optional<int64_t> Fr() const {
    auto fr = released.find("fr");
    if (fr != released.end()) return fr->second[0];
    auto qc = released.find("qc");
    auto all = released.find("combined");
    if (qc != released.end() && all != released.end()) {
      return all->second[0] - qc->second[0];
    }
    return std::nullopt;
  }
};

class ExactModeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    WriteSite(fed_->Path("data/fr"), 3, 20);
    WriteSite(fed_->Path("data/qc"), 40, 20);
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("fr", fed_->Path("data/fr")));
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("qc", fed_->Path("data/qc")));
    absl::StatusOr<std::vector<int64_t>> fr = fed_->LocalCounts("fr", kCohort);
    absl::StatusOr<std::vector<int64_t>> qc = fed_->LocalCounts("qc", kCohort);
    if (!fr.ok()) return fr.status();
    if (!qc.ok()) return qc.status();
    if (*fr != std::vector<int64_t>{3} || *qc != std::vector<int64_t>{40}) {
      return absl::InternalError("the fixture's counts are not FR 3, QC 40");
    }
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("fr"));
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("qc"));
    return fed_->StartGateway(PolicyWithFrMinimum10());
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
absl::Status* ExactModeTest::setup_ = nullptr;
TempDir* ExactModeTest::dir_ = nullptr;
Federation* ExactModeTest::fed_ = nullptr;

TEST_F(ExactModeTest, NoSecondReleaseRecoversASuppressedSite) {
  Seen seen;

  // 1. X: FR's 3 is below 10; QC is withheld to protect it (shown as
  //    "suppressed", not "< k"), the combined 43 is released.
  v1::QueryResponse total;
  grpc::Status st = fed_->Query("exact", kCohort, &total);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(total.complete());
  ASSERT_EQ(total.sites_size(), 2);
  for (const v1::SiteResult& s : total.sites()) {
    ASSERT_EQ(s.cells_size(), 1);
    EXPECT_FALSE(s.cells(0).has_count()) << s.site();
    EXPECT_EQ(s.cells(0).precision().complementary(), s.site() == "qc");
  }
  ASSERT_EQ(total.combined_size(), 1);
  ASSERT_TRUE(total.combined(0).has_count());
  EXPECT_EQ(total.combined(0).count(), 43);
  seen.Add(total);

  // 2. X group by site: the same table, so the same cells are withheld.
  v1::QueryResponse by_site;
  st = fed_->Query("exact", absl::StrCat(kCohort, " group by site"), &by_site);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(by_site.complete());
  for (const v1::SiteResult& s : by_site.sites()) {
    ASSERT_EQ(s.cells_size(), 1);
    EXPECT_FALSE(s.cells(0).has_count()) << s.site();
  }
  ASSERT_EQ(by_site.combined_size(), 2);
  for (const v1::ReleasedCell& c : by_site.combined()) {
    EXPECT_FALSE(c.has_count()) << c.key().ShortDebugString();
  }
  seen.Add(by_site);

  // 3. X of QC alone: refused (exact mode releases a cohort only over all of
  //    the project's sites), with the reason.
  auto creds = fed_->Credentials("alice");
  ASSERT_TRUE(creds.ok()) << creds.status();
  v1::QueryResponse qc_only;
  st = fed_->QueryWith(*creds, "exact", kCohort, &qc_only, nullptr, {"qc"});
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("all of the project's sites"),
            std::string::npos)
      << st.error_message();
  seen.Add(qc_only);
  // Naming every site is the same as naming none.
  v1::QueryResponse both;
  st = fed_->QueryWith(*creds, "exact", kCohort, &both, nullptr, {"qc", "fr"});
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(both.combined_size(), 1);
  EXPECT_EQ(both.combined(0).count(), 43);
  seen.Add(both);

  // 4. X while FR is down: partial, and nothing exact is released.
  fed_->StopNode("fr");
  for (const std::string& text :
       {std::string(kCohort), absl::StrCat(kCohort, " group by site")}) {
    v1::QueryResponse partial;
    st = fed_->Query("exact", text, &partial);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(partial.complete());
    EXPECT_EQ(partial.combined_size(), 0);
    bool named = false;
    for (const v1::SiteResult& s : partial.sites()) {
      EXPECT_EQ(s.cells_size(), 0) << s.site();
      if (s.site() == "fr") {
        named = true;
        EXPECT_NE(s.status(), v1::SITE_STATUS_OK);
      }
    }
    EXPECT_TRUE(named);
    bool noted = false;
    for (const std::string& n : partial.notes()) {
      noted |=
          n.find("releases nothing from a partial answer") != std::string::npos;
    }
    EXPECT_TRUE(noted);
    seen.Add(partial);
  }

  // Nothing seen gives FR's count away.
  EXPECT_EQ(seen.Fr(), std::nullopt) << "FR's 3 recovered";
  EXPECT_EQ(seen.released.count("qc"), 0u);
}

}  // namespace
}  // namespace passerelle::testing
