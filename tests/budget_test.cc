// End to end: the privacy budget of a project through real gateway and node
// processes. It falls by exactly the stated cost, refuses at the cap before
// any node is contacted, survives a gateway restart, and a repeat costs
// nothing (also after the restart). The ledger's total equals the audit
// log's.
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

class BudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    fed_ = std::make_unique<Federation>(dir_->path());
    absl::Status s = Prepare();
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override {
    fed_.reset();
    dir_.reset();
  }
  absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    for (const auto& [site, seed] :
         {std::pair<std::string, int>{"fr", 21}, {"qc", 22}}) {
      absl::StatusOr<CommandResult> gen =
          RunCommand({PasserelleBin(), "generate", "--patients", "1500",
                      "--seed", absl::StrCat(seed), "--site", site, "--out",
                      fed_->Path("data/" + site)});
      if (!gen.ok()) return gen.status();
      if (gen->exit_code != 0)
        return absl::InternalError("generate failed: " + gen->err);
      PASSERELLE_RETURN_IF_ERROR(
          fed_->LoadSite(site, fed_->Path("data/" + site)));
      PASSERELLE_RETURN_IF_ERROR(fed_->StartNode(site));
    }
    return fed_->StartGateway(TestPolicy());
  }

  // Epsilon spent by the project, as the gateway reports it.
  double Spent() {
    v1::BudgetResponse b;
    grpc::Status st = fed_->Budget("noised", &b);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return b.project_account().epsilon_spent();
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Federation> fed_;
};

TEST_F(BudgetTest, FallsByTheStatedCostRefusesAtTheCapAndSurvivesARestart) {
  // TestPolicy: project "noised", epsilon 0.5 per site and query, caps 5.
  v1::BudgetResponse before;
  grpc::Status st = fed_->Budget("noised", &before);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(before.project_account().epsilon_spent(), 0);
  ASSERT_TRUE(before.project_account().has_epsilon_remaining());
  EXPECT_DOUBLE_EQ(before.project_account().epsilon_remaining(), 5);

  v1::QueryResponse first;
  st = fed_->Query("noised", "condition icd10:E11* group by sex", &first);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(first.complete());
  const double cost = first.epsilon_charged();
  EXPECT_DOUBLE_EQ(cost, 1.0);  // 0.5 at each of two sites
  EXPECT_DOUBLE_EQ(Spent(), cost);

  // The same cohort written differently: same cells, no charge.
  v1::QueryResponse repeat;
  st = fed_->Query("noised", "condition ICD10:e11*  group by sex", &repeat);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(repeat.repeat());
  EXPECT_EQ(repeat.epsilon_charged(), 0);
  ASSERT_EQ(repeat.combined_size(), first.combined_size());
  for (int i = 0; i < first.combined_size(); ++i) {
    EXPECT_EQ(repeat.combined(i).SerializeAsString(),
              first.combined(i).SerializeAsString());
  }
  EXPECT_DOUBLE_EQ(Spent(), cost);

  // Distinct queries until the cap: exactly 5 fit, the sixth is refused.
  int admitted = 1;
  for (int i = 0; i < 6; ++i) {
    v1::QueryResponse r;
    st = fed_->Query("noised", absl::StrCat("drug atc:A1", i, "*"), &r);
    if (st.ok()) {
      ++admitted;
      EXPECT_DOUBLE_EQ(r.epsilon_charged(), 1.0);
    } else {
      EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << st.error_message();
      EXPECT_NE(st.error_message().find("cap"), std::string::npos)
          << st.error_message();
    }
  }
  EXPECT_EQ(admitted, 5);
  EXPECT_DOUBLE_EQ(Spent(), 5.0);

  // A restart keeps the ledger and the released answers.
  ASSERT_TRUE(fed_->StartGateway(TestPolicy()).ok());
  EXPECT_DOUBLE_EQ(Spent(), 5.0);
  v1::QueryResponse refused;
  st = fed_->Query("noised", "drug atc:A19*", &refused);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << st.error_message();
  v1::QueryResponse after_restart;
  st = fed_->Query("noised", "condition icd10:E11* group by sex",
                   &after_restart);
  ASSERT_TRUE(st.ok()) << "a repeat is free even with the budget spent: "
                       << st.error_message();
  EXPECT_TRUE(after_restart.repeat());
  EXPECT_EQ(after_restart.combined(0).SerializeAsString(),
            first.combined(0).SerializeAsString());

  // The ledger's total equals the charges in the gateway's audit log.
  fed_->StopGateway();
  absl::StatusOr<CommandResult> exported =
      RunCommand({PasserelleBin(), "audit", "export", "--format", "jsonl",
                  "--store", fed_->Path("gateway/audit")});
  ASSERT_TRUE(exported.ok()) << exported.status();
  ASSERT_EQ(exported->exit_code, 0) << exported->err;
  double audited = 0;
  int entries = 0;
  static const std::regex re("\"epsilon_charged\": ?([0-9.eE+-]+)");
  for (auto it =
           std::sregex_iterator(exported->out.begin(), exported->out.end(), re);
       it != std::sregex_iterator(); ++it) {
    double v = 0;
    ASSERT_TRUE(absl::SimpleAtod((*it)[1].str(), &v));
    audited += v;
    ++entries;
  }
  EXPECT_GT(entries, 0) << exported->out.substr(0, 500);
  EXPECT_DOUBLE_EQ(audited, 5.0);
}

TEST_F(BudgetTest, OnlyMembersSeeTheBudget) {
  v1::BudgetResponse b;
  grpc::Status st = fed_->Budget("noised", &b, "carol");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  st = fed_->Budget("no-such-project", &b);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
}

}  // namespace
}  // namespace passerelle::testing
