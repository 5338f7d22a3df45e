#include "cli/budget_cmd.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::BudgetResponse Sample() {
  v1::BudgetResponse r;
  r.set_project("diabetes-fr-qc");
  r.set_policy_version("0123456789abcdef");
  v1::BudgetAccount* p = r.mutable_project_account();
  p->set_epsilon_spent(1.5);
  p->set_rho_spent(1.125);
  p->set_epsilon_cap(10);
  p->set_epsilon_remaining(8.5);
  v1::BudgetAccount* a = r.add_researchers();
  a->set_researcher("spiffe://passerelle/user/alice");
  a->set_epsilon_spent(1.5);
  a->set_epsilon_cap(5);
  a->set_epsilon_remaining(3.5);
  r.set_next_reset_unix(1798761600);  // 2027-01-01
  return r;
}

TEST(BudgetFormatTest, TableShowsSpentRemainingAndReset) {
  const std::string t = FormatBudgetTable(Sample());
  EXPECT_THAT(t, HasSubstr("project diabetes-fr-qc (policy 0123456789ab)"));
  EXPECT_THAT(t, HasSubstr("epsilon 8.5 of 10"));
  EXPECT_THAT(t, HasSubstr("spiffe://passerelle/user/alice"));
  EXPECT_THAT(t, HasSubstr("epsilon 3.5 of 5"));
  EXPECT_THAT(t, HasSubstr("next reset: 2027-01-01 00:00 UTC"));
  // No rho cap anywhere: no rho column.
  EXPECT_THAT(t, Not(HasSubstr("rho")));
  for (size_t pos = 0; (pos = t.find(" \n", pos)) != std::string::npos; ++pos) {
    ADD_FAILURE() << "trailing space at offset " << pos;
  }
}

TEST(BudgetFormatTest, RhoColumnAppearsWithARhoCapAndNoCapSaysSo) {
  v1::BudgetResponse r = Sample();
  r.mutable_project_account()->clear_epsilon_cap();
  r.mutable_project_account()->clear_epsilon_remaining();
  r.mutable_project_account()->set_rho_cap(2);
  r.mutable_project_account()->set_rho_remaining(0.875);
  r.mutable_researchers(0)->clear_epsilon_cap();
  r.mutable_researchers(0)->clear_epsilon_remaining();
  r.set_next_reset_unix(0);
  const std::string t = FormatBudgetTable(r);
  EXPECT_THAT(t, HasSubstr("rho spent"));
  EXPECT_THAT(t, HasSubstr("rho 0.875 of 2"));
  EXPECT_THAT(t, HasSubstr("no cap"));
  EXPECT_THAT(t, HasSubstr("next reset: never"));
}

TEST(BudgetFormatTest, JsonUsesNullForAbsentCaps) {
  v1::BudgetResponse r = Sample();
  const std::string j = FormatBudgetJson(r);
  EXPECT_THAT(j, HasSubstr("\"project\": \"diabetes-fr-qc\""));
  EXPECT_THAT(j, HasSubstr("\"epsilon_remaining\": 8.5"));
  EXPECT_THAT(j, HasSubstr("\"rho_cap\": null"));
  EXPECT_THAT(j,
              HasSubstr("\"researcher\": \"spiffe://passerelle/user/alice\""));
  EXPECT_THAT(j, HasSubstr("\"next_reset\": \"2027-01-01 00:00 UTC\""));
  r.set_next_reset_unix(0);
  EXPECT_THAT(FormatBudgetJson(r), HasSubstr("\"next_reset\": null"));
}

TEST(BudgetCommandTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunBudgetCommand({}), 2);
  EXPECT_EQ(RunBudgetCommand({"spend"}), 2);
  EXPECT_EQ(RunBudgetCommand({"show", "--no-such-flag", "x"}), 2);
  EXPECT_EQ(
      RunBudgetCommand({"show", "--gateway", "127.0.0.1:1", "--format", "xml"}),
      2);
  // No project anywhere.
  EXPECT_EQ(RunBudgetCommand({"show", "--gateway", "127.0.0.1:1"}), 2);
}

}  // namespace
}  // namespace passerelle::cli
