#include "ledger/ledger.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/units.h"

namespace passerelle::ledger {
namespace {

using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl =
        std::string(base != nullptr ? base : "/tmp") + "/ledger_test_XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_ + "/db"; }

 private:
  std::string path_;
};

privacy::QueryCost Laplace(double epsilon, int sites = 1) {
  privacy::DisclosureParams p;
  p.epsilon = epsilon;
  return privacy::ComputeQueryCost(p, sites).value();
}

privacy::QueryCost Gaussian(double rho, int sites = 1) {
  privacy::DisclosureParams p;
  p.mechanism = privacy::Mechanism::kDiscreteGaussian;
  p.rho = rho;
  return privacy::ComputeQueryCost(p, sites).value();
}

Caps EpsilonCaps(double project, double researcher) {
  v1::Budget b;
  b.set_epsilon_cap(project);
  b.set_researcher_epsilon_cap(researcher);
  return CapsFromBudget(b);
}

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    ledger_.reset();
    absl::StatusOr<std::unique_ptr<BudgetLedger>> l =
        BudgetLedger::Open(dir_.path(), &clock_);
    ASSERT_TRUE(l.ok()) << l.status();
    ledger_ = *std::move(l);
  }
  TempDir dir_;
  FakeClock clock_{kT0};
  std::unique_ptr<BudgetLedger> ledger_;
};

TEST(CapsFromBudgetTest, ConvertsToMicroUnitsWithoutDrift) {
  v1::Budget b;
  b.set_epsilon_cap(0.3);
  b.set_rho_cap(0.1);
  b.set_researcher_epsilon_cap(0.7);
  b.set_reset_period_days(30);
  const Caps caps = CapsFromBudget(b);
  EXPECT_TRUE(caps.error.empty());
  EXPECT_EQ(caps.project_epsilon_micros, 300000);
  EXPECT_EQ(caps.project_rho_micros, 100000);
  EXPECT_EQ(caps.researcher_epsilon_micros, 700000);
  EXPECT_EQ(caps.researcher_rho_micros, 0);
  EXPECT_EQ(caps.reset_period, absl::Hours(24 * 30));
  b.set_rho_cap(-1);
  EXPECT_THAT(CapsFromBudget(b).error, HasSubstr("budget.rho_cap"));
}

TEST_F(LedgerTest, ChargesUntilTheCapThenRefusesNamingTheCap) {
  const Caps caps = EpsilonCaps(1.0, 0);
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<Charge> c =
        ledger_->Reserve("p1", "alice", Laplace(0.1), caps, kT0);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status();
    EXPECT_EQ(c->epsilon_micros, 100000);
  }
  absl::StatusOr<Charge> refused =
      ledger_->Reserve("p1", "alice", Laplace(0.1), caps, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("project \"p1\" epsilon cap 1"));
  EXPECT_THAT(refused.status().message(), HasSubstr("spent 1,"));
  EXPECT_THAT(refused.status().message(), HasSubstr("remaining 0,"));
  absl::StatusOr<BudgetView> view = ledger_->Show("p1");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 1000000);
  EXPECT_EQ(view->project_account.epsilon_remaining_micros, 0);
  EXPECT_FALSE(view->next_reset.has_value());
}

TEST_F(LedgerTest, ResearcherCapIsCheckedInsideTheProject) {
  const Caps caps = EpsilonCaps(1.0, 0.5);
  ASSERT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.2, 2), caps, kT0).ok());
  absl::StatusOr<Charge> refused =
      ledger_->Reserve("p", "alice", Laplace(0.1, 2), caps, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(
      refused.status().message(),
      HasSubstr("researcher \"alice\" in project \"p\" epsilon cap 0.5"));
  EXPECT_THAT(refused.status().message(),
              HasSubstr("spent 0.4, remaining 0.1"));
  // Bob still has his own allowance, and together they hit the project cap.
  ASSERT_TRUE(ledger_->Reserve("p", "bob", Laplace(0.25, 2), caps, kT0).ok());
  absl::StatusOr<Charge> project_full =
      ledger_->Reserve("p", "carol", Laplace(0.1, 2), caps, kT0);
  EXPECT_EQ(project_full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(project_full.status().message(),
              HasSubstr("project \"p\" epsilon cap"));
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->researchers.size(), 2u);
  EXPECT_EQ(view->researchers[0].researcher, "alice");
  EXPECT_EQ(view->researchers[0].epsilon_spent_micros, 400000);
  EXPECT_EQ(view->researchers[0].epsilon_remaining_micros, 100000);
  EXPECT_EQ(view->researchers[1].researcher, "bob");
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 900000);
}

TEST_F(LedgerTest, PureQueriesCountAsRhoAgainstARhoCap) {
  v1::Budget b;
  b.set_rho_cap(0.01);
  const Caps caps = CapsFromBudget(b);
  // epsilon = 0.1 at 1 site: rho = 0.005.
  ASSERT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.1), caps, kT0).ok());
  ASSERT_TRUE(ledger_->Reserve("p", "alice", Gaussian(0.005), caps, kT0).ok());
  EXPECT_EQ(ledger_->Reserve("p", "alice", Gaussian(0.000001), caps, kT0)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(LedgerTest, GaussianQueryCannotSpendAPureEpsilonCap) {
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Gaussian(0.01), EpsilonCaps(1.0, 0), kT0);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status().message(), HasSubstr("pure epsilon cap"));
}

TEST_F(LedgerTest, RejectsBadNamesAndCaps) {
  EXPECT_EQ(ledger_->Reserve("", "a", Laplace(1), Caps{}, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ledger_->Reserve("p", std::string("a\0b", 3), Laplace(1), Caps{}, kT0)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  Caps bad;
  bad.error = "budget.epsilon_cap must be a finite number";
  EXPECT_EQ(ledger_->Reserve("p", "a", Laplace(1), bad, kT0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LedgerTest, SurvivesARestart) {
  const Caps caps = EpsilonCaps(1.0, 0);
  absl::StatusOr<Charge> first =
      ledger_->Reserve("p", "alice", Laplace(0.6), caps, kT0);
  ASSERT_TRUE(first.ok());
  Reopen();
  absl::StatusOr<Charge> refused =
      ledger_->Reserve("p", "alice", Laplace(0.6), caps, kT0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  absl::StatusOr<Charge> second =
      ledger_->Reserve("p", "alice", Laplace(0.4), caps, kT0);
  ASSERT_TRUE(second.ok());
  EXPECT_GT(second->id, first->id);
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 1000000);
}

TEST_F(LedgerTest, ConcurrentReservationsAdmitExactlyWhatFits) {
  const Caps caps = EpsilonCaps(1.0, 0);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 5;
  std::atomic<int> admitted{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<Charge> c = ledger_->Reserve("p", absl::StrCat("r", t),
                                                    Laplace(0.1), caps, kT0);
        if (c.ok()) {
          ++admitted;
        } else if (c.status().code() == absl::StatusCode::kResourceExhausted) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(admitted.load(), 10);  // 10 x 0.1 = 1.0 exactly: no drift.
  EXPECT_EQ(refused.load(), kThreads * kPerThread - 10);
  EXPECT_EQ(other.load(), 0);
  absl::StatusOr<ChargeTotals> totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 10);
  EXPECT_EQ(totals->epsilon_micros, 1000000);
}

TEST_F(LedgerTest, RefundGivesBackOnce) {
  const Caps caps = EpsilonCaps(1.0, 0);
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Laplace(1.0), caps, kT0);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(ledger_->Reserve("p", "alice", Laplace(0.5), caps, kT0).ok());
  ASSERT_TRUE(ledger_->Refund(c->id).ok());
  EXPECT_EQ(ledger_->Refund(c->id).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ledger_->Refund(9999).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.5), caps, kT0).ok());
  absl::StatusOr<ChargeTotals> totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 1);
  EXPECT_EQ(totals->refunded, 1);
  EXPECT_EQ(totals->epsilon_micros, 500000);
}

TEST_F(LedgerTest, BudgetResetsAfterThePeriod) {
  v1::Budget b;
  b.set_epsilon_cap(1.0);
  b.set_reset_period_days(30);
  const Caps caps = CapsFromBudget(b);
  absl::StatusOr<Charge> old =
      ledger_->Reserve("p", "alice", Laplace(1.0), caps, kT0);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(
      ledger_->Reserve("p", "alice", Laplace(0.1), caps, kT0).status().code(),
      absl::StatusCode::kResourceExhausted);
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(view->next_reset.has_value());
  EXPECT_GT(*view->next_reset, kT0);
  EXPECT_LE(*view->next_reset, kT0 + absl::Hours(24 * 30));
  const absl::Time later = *view->next_reset;
  clock_.Set(later);
  view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 0);
  EXPECT_EQ(view->next_reset, later + absl::Hours(24 * 30));
  ASSERT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.3), caps, later).ok());
  // Refunding the old window's charge does not credit the new window.
  ASSERT_TRUE(ledger_->Refund(old->id).ok());
  view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 300000);
}

TEST_F(LedgerTest, ShowUnknownProjectIsNotFound) {
  EXPECT_EQ(ledger_->Show("nobody").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(LedgerTest, ShowUnderGivenCapsWorksBeforeAnyReservation) {
  absl::StatusOr<BudgetView> view = ledger_->Show("new", EpsilonCaps(2.0, 0.5));
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 0);
  EXPECT_EQ(view->project_account.epsilon_remaining_micros, 2000000);
  EXPECT_FALSE(view->project_account.rho_remaining_micros.has_value());
  EXPECT_TRUE(view->researchers.empty());
  ASSERT_TRUE(
      ledger_->Reserve("new", "alice", Laplace(0.2), EpsilonCaps(2.0, 0.5), kT0)
          .ok());
  view = ledger_->Show("new", EpsilonCaps(2.0, 0.5));
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->researchers.size(), 1u);
  EXPECT_EQ(view->researchers[0].epsilon_remaining_micros, 300000);
}

TEST_F(LedgerTest, ListChargesFiltersByProject) {
  ASSERT_TRUE(ledger_->Reserve("a", "x", Laplace(0.1), Caps{}, kT0).ok());
  ASSERT_TRUE(ledger_->Reserve("b", "x", Laplace(0.2), Caps{}, kT0).ok());
  absl::StatusOr<std::vector<Charge>> a = ledger_->ListCharges("a");
  ASSERT_TRUE(a.ok());
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].epsilon_micros, 100000);
  EXPECT_EQ((*a)[0].time, kT0);
  absl::StatusOr<std::vector<Charge>> all = ledger_->ListCharges("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
}

// ---------------------------------------------------------------------------
// Group commit.

// Holds the ledger's next synced write until released, while `queued` more
// reservations queue behind it; `second` is what the hook answers for the
// batch after the held one. Returns the queued reservations' results.
std::vector<absl::StatusOr<Charge>> ReserveBehindAHeldWrite(
    BudgetLedger& ledger, int queued, const Caps& caps,
    const privacy::QueryCost& cost, absl::Status second,
    absl::StatusOr<Charge>* held_result) {
  absl::Notification entered, release;
  std::atomic<int> calls{0};
  ledger.SetWriteHookForTesting([&](size_t) -> absl::Status {
    const int call = calls++;
    if (call == 0) {
      entered.Notify();
      release.WaitForNotification();
      return absl::OkStatus();
    }
    return call == 1 ? second : absl::OkStatus();
  });
  std::thread holder(
      [&] { *held_result = ledger.Reserve("p", "held", cost, caps, kT0); });
  entered.WaitForNotification();
  std::vector<absl::StatusOr<Charge>> results(queued,
                                              absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < queued; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          ledger.Reserve("p", absl::StrCat("r", i % 3), cost, caps, kT0);
    });
  }
  ledger.AwaitQueuedForTesting(queued);
  release.Notify();
  holder.join();
  for (std::thread& t : threads) t.join();
  ledger.SetWriteHookForTesting(nullptr);
  return results;
}

TEST_F(LedgerTest, QueuedReservationsShareOneSyncedWrite) {
  const Caps caps = EpsilonCaps(100.0, 0);
  absl::StatusOr<Charge> held = absl::UnknownError("not run");
  auto results = ReserveBehindAHeldWrite(*ledger_, 12, caps, Laplace(0.25),
                                         absl::OkStatus(), &held);
  ASSERT_TRUE(held.ok()) << held.status();
  std::set<uint64_t> ids = {held->id};
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    ids.insert(r->id);
  }
  EXPECT_EQ(ids.size(), 13u);
  const BudgetLedger::CommitStats stats = ledger_->Stats();
  EXPECT_EQ(stats.writes, 2u);
  EXPECT_EQ(stats.operations, 13u);
  EXPECT_EQ(stats.largest_batch, 12u);
  EXPECT_EQ(stats.failed_writes, 0u);
  // All of it durable: a reopened ledger has every charge and the sums.
  Reopen();
  absl::StatusOr<ChargeTotals> totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 13);
  EXPECT_EQ(totals->epsilon_micros, 13 * 250000);
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 13 * 250000);
  int64_t researchers = 0;
  for (const Account& a : view->researchers) {
    researchers += a.epsilon_spent_micros;
  }
  EXPECT_EQ(researchers, 13 * 250000);
  // New ids follow the stored ones.
  absl::StatusOr<Charge> next =
      ledger_->Reserve("p", "x", Laplace(0.25), caps, kT0);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->id, *ids.rbegin() + 1);
}

TEST_F(LedgerTest, FailedBatchWriteFailsEveryCallerAndRollsBack) {
  // Room for exactly 10 charges of 0.1.
  const Caps caps = EpsilonCaps(1.0, 0);
  absl::StatusOr<Charge> held = absl::UnknownError("not run");
  auto results =
      ReserveBehindAHeldWrite(*ledger_, 9, caps, Laplace(0.1),
                              absl::UnavailableError("disk on fire"), &held);
  ASSERT_TRUE(held.ok()) << held.status();
  for (const auto& r : results) {
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  }
  EXPECT_EQ(ledger_->Stats().failed_writes, 1u);
  // Only the held charge is recorded, and in memory only it counts: the
  // nine failed ones are back, so nine more fit, and then no more.
  absl::StatusOr<ChargeTotals> totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 1);
  for (int i = 0; i < 9; ++i) {
    absl::StatusOr<Charge> c =
        ledger_->Reserve("p", "again", Laplace(0.1), caps, kT0);
    ASSERT_TRUE(c.ok()) << i << ": " << c.status();
    // The failed batch's ids are given back.
    EXPECT_EQ(c->id, held->id + 1 + i);
  }
  EXPECT_EQ(
      ledger_->Reserve("p", "again", Laplace(0.1), caps, kT0).status().code(),
      absl::StatusCode::kResourceExhausted);
  Reopen();
  totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 10);
  EXPECT_EQ(totals->epsilon_micros, 1000000);
  EXPECT_EQ(ledger_->Show("p")->project_account.epsilon_spent_micros, 1000000);
}

TEST_F(LedgerTest, ManyThreadsNeverOverspendProjectOrResearcherCaps) {
  // Project cap 2.0 (200 charges of 0.01); each of 4 researchers 0.6 (60).
  const Caps caps = EpsilonCaps(2.0, 0.6);
  constexpr int kThreads = 16;
  constexpr int kPerThread = 25;  // 400 attempts.
  std::atomic<int> admitted{0}, refused{0}, other{0};
  std::vector<std::atomic<int>> admitted_by(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<Charge> c = ledger_->Reserve(
            "p", absl::StrCat("r", t % 4), Laplace(0.01), caps, kT0);
        if (c.ok()) {
          ++admitted;
          ++admitted_by[t % 4];
        } else if (c.status().code() == absl::StatusCode::kResourceExhausted) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // 4 x 60 = 240 > 200: the project cap binds, and each researcher <= 60.
  EXPECT_EQ(admitted.load(), 200);
  EXPECT_EQ(refused.load(), kThreads * kPerThread - 200);
  EXPECT_EQ(other.load(), 0);
  for (auto& a : admitted_by) EXPECT_LE(a.load(), 60);
  const BudgetLedger::CommitStats stats = ledger_->Stats();
  EXPECT_EQ(stats.operations, 200u);
  EXPECT_LE(stats.writes, 200u);
  Reopen();
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 2000000);
  for (const Account& a : view->researchers) {
    EXPECT_EQ(a.epsilon_spent_micros,
              10000 * admitted_by[a.researcher.back() - '0'].load());
  }
}

TEST_F(LedgerTest, RefundCountsOnlyOnceDurable) {
  const Caps caps = EpsilonCaps(1.0, 0);
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Laplace(1.0), caps, kT0);
  ASSERT_TRUE(c.ok());
  // A refund whose write fails gives nothing back.
  ledger_->SetWriteHookForTesting(
      [](size_t) { return absl::UnavailableError("injected"); });
  EXPECT_EQ(ledger_->Refund(c->id).code(), absl::StatusCode::kUnavailable);
  ledger_->SetWriteHookForTesting(nullptr);
  EXPECT_EQ(
      ledger_->Reserve("p", "alice", Laplace(0.5), caps, kT0).status().code(),
      absl::StatusCode::kResourceExhausted);
  // While a refund is being written, its budget is not yet available, and a
  // second refund of the same charge is refused.
  absl::Notification entered, release;
  ledger_->SetWriteHookForTesting([&](size_t) {
    entered.Notify();
    release.WaitForNotification();
    return absl::OkStatus();
  });
  absl::Status refunded = absl::UnknownError("not run");
  std::thread refunder([&] { refunded = ledger_->Refund(c->id); });
  entered.WaitForNotification();
  EXPECT_EQ(
      ledger_->Reserve("p", "alice", Laplace(0.5), caps, kT0).status().code(),
      absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ledger_->Refund(c->id).code(),
            absl::StatusCode::kFailedPrecondition);
  release.Notify();
  refunder.join();
  ledger_->SetWriteHookForTesting(nullptr);
  ASSERT_TRUE(refunded.ok()) << refunded;
  EXPECT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.5), caps, kT0).ok());
  Reopen();
  absl::StatusOr<ChargeTotals> totals = ledger_->SumCharges("p");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 1);
  EXPECT_EQ(totals->refunded, 1);
  EXPECT_EQ(ledger_->Show("p")->project_account.epsilon_spent_micros, 500000);
}

}  // namespace
}  // namespace passerelle::ledger

namespace passerelle::ledger {
namespace {

Caps ResetCaps(double epsilon_cap, int days) {
  v1::Budget b;
  b.set_epsilon_cap(epsilon_cap);
  b.set_reset_period_days(days);
  return CapsFromBudget(b);
}

// The start of the window of length `days` (from the epoch) holding `t`.
absl::Time AlignedStart(absl::Time t, int days) {
  const absl::Duration p = absl::Hours(24) * days;
  absl::Duration rem;
  return absl::UnixEpoch() +
         p * absl::IDivDuration(t - absl::UnixEpoch(), p, &rem);
}

// A positive cap below one micro-unit rounded down to 0, which the ledger
// read as "no cap": unlimited spending.
TEST(CapsFromBudgetTest, PositiveCapBelowTheResolutionIsAnErrorNotNoCap) {
  for (const char* field : {"epsilon_cap", "rho_cap", "researcher_epsilon_cap",
                            "researcher_rho_cap"}) {
    SCOPED_TRACE(field);
    v1::Budget b;
    b.set_epsilon_cap(1.0);
    b.GetReflection()->SetDouble(&b, b.GetDescriptor()->FindFieldByName(field),
                                 5e-7);
    const Caps caps = CapsFromBudget(b);
    EXPECT_THAT(caps.error, HasSubstr("below the ledger's resolution"));
    EXPECT_THAT(caps.error, HasSubstr(field));
  }
  v1::Budget fed;
  fed.set_researcher_epsilon_cap(5e-7);
  v1::Budget project;
  project.set_epsilon_cap(1.0);
  EXPECT_THAT(CapsFromBudgets(project, fed).error,
              HasSubstr("federation researcher_budget.researcher_epsilon_cap"));
  // One micro-unit exactly is a cap.
  v1::Budget tiny;
  tiny.set_rho_cap(1e-6);
  EXPECT_EQ(CapsFromBudget(tiny).error, "");
  EXPECT_EQ(CapsFromBudget(tiny).project_rho_micros, 1);
}

TEST_F(LedgerTest, ReserveRefusesACapBelowTheResolution) {
  v1::Budget b;
  b.set_epsilon_cap(1.0);
  b.set_rho_cap(5e-7);  // Rounds to 0 micro-units.
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Laplace(0.001), CapsFromBudget(b), kT0);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("budget.rho_cap"));
}

// Shortening reset_period_days (30 -> 7) used to wipe the spending at once:
// windows were numbered from the epoch with the period in force, so the
// same instant fell in a "later" window.
TEST_F(LedgerTest, ShorterResetPeriodKeepsTheCurrentWindowsSpending) {
  const absl::Time start = AlignedStart(kT0, 30);
  const absl::Time t1 = start + absl::Hours(2);
  ASSERT_TRUE(
      ledger_->Reserve("p", "alice", Laplace(0.8), ResetCaps(1.0, 30), t1)
          .ok());
  const Caps weekly = ResetCaps(1.0, 7);
  const absl::Time t2 = t1 + absl::Hours(1);
  clock_.Set(t2);
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Laplace(0.5), weekly, t2);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted)
      << "the change of period wiped the spending";
  absl::StatusOr<BudgetView> view = ledger_->Show("p", weekly);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 800000);
  // The new period runs from the window's stored start.
  EXPECT_EQ(view->next_reset, start + absl::Hours(24 * 7));
  // Just before: still spent; at start + 7 days: a new window.
  const absl::Time before = start + absl::Hours(24 * 7) - absl::Seconds(1);
  EXPECT_EQ(ledger_->Reserve("p", "alice", Laplace(0.5), weekly, before)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  const absl::Time after = start + absl::Hours(24 * 7);
  ASSERT_TRUE(ledger_->Reserve("p", "alice", Laplace(0.5), weekly, after).ok());
  clock_.Set(after);
  view = ledger_->Show("p", weekly);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 500000);
  EXPECT_EQ(view->next_reset, after + absl::Hours(24 * 7));
}

// Lengthening reset_period_days (7 -> 30) used to freeze the spending: the
// stored window's number was larger than any the new period would reach for
// years, so the window never ended.
TEST_F(LedgerTest, LongerResetPeriodEndsTheWindowAtItsNewLength) {
  const absl::Time start = AlignedStart(kT0, 7);
  ASSERT_TRUE(ledger_
                  ->Reserve("p", "alice", Laplace(1.0), ResetCaps(1.0, 7),
                            start + absl::Hours(1))
                  .ok());
  const Caps monthly = ResetCaps(1.0, 30);
  // Past the old 7-day end, within the new 30 days: still spent.
  const absl::Time day10 = start + absl::Hours(24 * 10);
  EXPECT_EQ(ledger_->Reserve("p", "alice", Laplace(0.5), monthly, day10)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  // From start + 30 days: reset.
  const absl::Time day31 = start + absl::Hours(24 * 31);
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p", "alice", Laplace(0.5), monthly, day31);
  ASSERT_TRUE(c.ok()) << "the change of period froze the spending: "
                      << c.status();
  // The window is [start + 30 days, start + 60 days), kept across a reopen.
  Reopen();
  clock_.Set(day31);
  absl::StatusOr<BudgetView> view = ledger_->Show("p");
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 500000);
  EXPECT_EQ(view->next_reset, start + absl::Hours(24 * 60));
}

// Adding a reset period to a budget that never reset: the window opened at
// the first charge and ends one new period later.
TEST_F(LedgerTest, ResetPeriodAddedLaterRunsFromTheFirstCharge) {
  ASSERT_TRUE(
      ledger_->Reserve("p", "alice", Laplace(1.0), ResetCaps(1.0, 0), kT0)
          .ok());
  const Caps monthly = ResetCaps(1.0, 30);
  EXPECT_EQ(ledger_
                ->Reserve("p", "alice", Laplace(0.5), monthly,
                          kT0 + absl::Hours(24 * 29))
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ledger_
                  ->Reserve("p", "alice", Laplace(0.5), monthly,
                            kT0 + absl::Hours(24 * 30))
                  .ok());
}

Caps WithFederationCap(Caps caps, double researcher_epsilon_cap) {
  v1::Budget project;
  project.set_epsilon_cap(privacy::FromMicros(caps.project_epsilon_micros));
  project.set_researcher_epsilon_cap(
      privacy::FromMicros(caps.researcher_epsilon_micros));
  v1::Budget fed;
  fed.set_researcher_epsilon_cap(researcher_epsilon_cap);
  return CapsFromBudgets(project, fed);
}

// A researcher in N projects has N caps; the federation-wide cap bounds the
// sum, reserved all or nothing with the project's caps.
TEST_F(LedgerTest, FederationWideResearcherCapSpansProjectsAllOrNothing) {
  const Caps caps = WithFederationCap(EpsilonCaps(10.0, 1.0), 1.5);
  ASSERT_TRUE(ledger_->Reserve("p1", "alice", Laplace(1.0), caps, kT0).ok());
  ASSERT_TRUE(ledger_->Reserve("p2", "alice", Laplace(0.5), caps, kT0).ok());
  // p2's own caps (10 and 1) would allow it; the federation-wide 1.5 not.
  absl::StatusOr<Charge> c =
      ledger_->Reserve("p2", "alice", Laplace(0.25), caps, kT0);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(),
              HasSubstr("researcher \"alice\" across all projects"));
  EXPECT_THAT(c.status().message(), HasSubstr("spent 1.5"));
  // Nothing was charged anywhere.
  absl::StatusOr<BudgetView> view = ledger_->Show("p2", caps);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 500000);
  ASSERT_EQ(view->researchers.size(), 1u);
  EXPECT_EQ(view->researchers[0].epsilon_spent_micros, 500000);
  ASSERT_EQ(view->federation_researchers.size(), 1u);
  EXPECT_EQ(view->federation_researchers[0].researcher, "alice");
  EXPECT_EQ(view->federation_researchers[0].epsilon_spent_micros, 1500000);
  EXPECT_EQ(view->federation_researchers[0].epsilon_remaining_micros, 0);
  // Another researcher is not affected.
  EXPECT_TRUE(ledger_->Reserve("p2", "bob", Laplace(1.0), caps, kT0).ok());
  // A refund gives the federation-wide budget back too.
  absl::StatusOr<std::vector<Charge>> charges = ledger_->ListCharges("p1");
  ASSERT_TRUE(charges.ok());
  ASSERT_EQ(charges->size(), 1u);
  ASSERT_TRUE(ledger_->Refund((*charges)[0].id).ok());
  EXPECT_TRUE(ledger_->Reserve("p2", "alice", Laplace(0.25), caps, kT0).ok());
  // Survives a reopen.
  Reopen();
  EXPECT_EQ(
      ledger_->Reserve("p1", "alice", Laplace(1.0), caps, kT0).status().code(),
      absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace passerelle::ledger
