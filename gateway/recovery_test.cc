#include "gateway/recovery.h"

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "audit/log.h"
#include "audit/records.h"
#include "audit/signer.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "privacy/cost.h"

namespace passerelle::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1800000000);

privacy::QueryCost Laplace(double epsilon, int sites) {
  privacy::DisclosureParams p;
  p.epsilon = epsilon;
  return privacy::ComputeQueryCost(p, sites).value();
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string tmpl =
        std::string(base != nullptr ? base : "/tmp") + "/recovery_test_XXXXXX";
    dir_ = mkdtemp(tmpl.data());
    Reopen();
  }
  void TearDown() override {
    ledger_.reset();
    log_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    ledger_.reset();
    log_.reset();
    auto ledger = ledger::BudgetLedger::Open(dir_ + "/ledger", Clock::Real());
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    auto log = audit::AuditLog::Open(dir_ + "/audit", dir_ + "/audit.key",
                                     "passerelle/gateway");
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
  }

  // A reservation as the gateway makes it, at the request's start time.
  ledger::Charge Reserve(const std::string& project, const std::string& who,
                         absl::Time t) {
    absl::StatusOr<ledger::Charge> c =
        ledger_->Reserve(project, who, Laplace(0.5, 2), ledger::Caps(), t);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : ledger::Charge();
  }
  // The gateway's entry for a request started at `t`.
  void Audit(const std::string& project, const std::string& who, absl::Time t,
             v1::AuditDecision decision, double epsilon) {
    v1::AuditEntry e;
    e.set_time_unix_micros(absl::ToUnixMicros(t));
    e.set_request_id("r");
    e.set_caller(who);
    e.set_project(project);
    e.set_decision(decision);
    e.set_epsilon_charged(epsilon);
    ASSERT_TRUE(log_->Append(audit::EncodeRecord(e)).ok());
  }
  std::vector<v1::AuditEntry> Entries() {
    std::vector<v1::AuditEntry> out;
    for (uint64_t i = 0; i < log_->Size(); ++i) {
      auto r = audit::DecodeRecord(log_->Get(i).value());
      EXPECT_TRUE(r.ok());
      if (r.ok()) out.push_back(r->gateway());
    }
    return out;
  }
  double AuditedEpsilon() {
    double sum = 0;
    for (const v1::AuditEntry& e : Entries()) sum += e.epsilon_charged();
    return sum;
  }

  std::string dir_;
  std::unique_ptr<ledger::BudgetLedger> ledger_;
  std::unique_ptr<audit::AuditLog> log_;
};

TEST_F(RecoveryTest, NothingToDoWhenEveryChargeIsAudited) {
  Reserve("p", "alice", kT0);
  Audit("p", "alice", kT0, v1::AUDIT_DECISION_ALLOWED, 1.0);
  Reserve("p", "alice", kT0 + absl::Seconds(1));
  Audit("p", "alice", kT0 + absl::Seconds(1), v1::AUDIT_DECISION_PARTIAL, 1.0);
  auto report = ReconcileLedgerWithAudit(*ledger_, *log_, kT0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->charges, 2u);
  EXPECT_EQ(report->matched, 2u);
  EXPECT_TRUE(report->recorded_charge_ids.empty());
  EXPECT_EQ(log_->Size(), 2u);
}

TEST_F(RecoveryTest, RecordsEachUnauditedChargeOnceAndKeepsItSpent) {
  const ledger::Charge audited = Reserve("p", "alice", kT0);
  Audit("p", "alice", kT0, v1::AUDIT_DECISION_ALLOWED, 1.0);
  // Interrupted after the reservation: no entry.
  const ledger::Charge lost1 = Reserve("p", "bob", kT0 + absl::Seconds(1));
  // Same time and caller as an entry that cannot hold a charge (a denial,
  // a repeat, a budget view): still unrecorded.
  const ledger::Charge lost2 = Reserve("q", "alice", kT0 + absl::Seconds(2));
  Audit("q", "alice", kT0 + absl::Seconds(2), v1::AUDIT_DECISION_DENIED, 0);
  {
    v1::AuditEntry repeat;
    repeat.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Seconds(2)));
    repeat.set_caller("alice");
    repeat.set_project("q");
    repeat.set_decision(v1::AUDIT_DECISION_ALLOWED);
    repeat.set_repeat_of_index(0);
    ASSERT_TRUE(log_->Append(audit::EncodeRecord(repeat)).ok());
    v1::AuditEntry budget = repeat;
    budget.clear_repeat_of_index();
    budget.set_operation("budget");
    ASSERT_TRUE(log_->Append(audit::EncodeRecord(budget)).ok());
  }
  // Two charges with the same triple and only one entry: one is lost.
  Reserve("p", "carol", kT0 + absl::Seconds(3));
  const ledger::Charge lost3 = Reserve("p", "carol", kT0 + absl::Seconds(3));
  Audit("p", "carol", kT0 + absl::Seconds(3), v1::AUDIT_DECISION_FAILED, 1.0);
  // A refunded charge spent nothing: nothing to record.
  const ledger::Charge refunded = Reserve("p", "dan", kT0 + absl::Seconds(4));
  ASSERT_TRUE(ledger_->Refund(refunded.id).ok());

  const uint64_t before = log_->Size();
  const absl::Time now = kT0 + absl::Hours(1);
  auto report = ReconcileLedgerWithAudit(*ledger_, *log_, now);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->charges, 5u);
  EXPECT_EQ(report->matched, 2u);
  EXPECT_THAT(report->recorded_charge_ids,
              ElementsAre(lost1.id, lost2.id, lost3.id));
  EXPECT_THAT(report->recorded_indices,
              ElementsAre(before, before + 1, before + 2));
  ASSERT_EQ(log_->Size(), before + 3);

  const std::vector<v1::AuditEntry> entries = Entries();
  const v1::AuditEntry& e = entries[before];
  EXPECT_EQ(e.decision(), v1::AUDIT_DECISION_FAILED);
  EXPECT_EQ(e.caller(), "bob");
  EXPECT_EQ(e.project(), "p");
  EXPECT_EQ(e.time_unix_micros(), absl::ToUnixMicros(lost1.time));
  EXPECT_DOUBLE_EQ(e.epsilon_charged(), 1.0);
  EXPECT_TRUE(MayRecordCharge(e));
  ASSERT_EQ(e.reasons_size(), 1);
  EXPECT_THAT(e.reasons(0), HasSubstr("interrupted:"));
  EXPECT_THAT(e.reasons(0),
              HasSubstr(absl::StrCat("budget charge ", lost1.id, " ")));
  EXPECT_FALSE(e.request_id().empty());
  EXPECT_EQ(e.released_cells_size(), 0);

  // The sums agree: ledger charges (micro-units) and the log's costs.
  auto totals = ledger_->SumCharges("");
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->charges, 5);
  EXPECT_NEAR(AuditedEpsilon(), totals->epsilon_micros * 1e-6, 1e-9);
  // The budget stays spent.
  auto view = ledger_->Show("p", ledger::Caps());
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->project_account.epsilon_spent_micros, 4000000);

  // The log still verifies, and a second run (after a restart) adds nothing.
  auto key = log_->StoredPublicKey();
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(log_->Verify(*key).ok());
  Reopen();
  auto again = ReconcileLedgerWithAudit(*ledger_, *log_, now);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->recorded_charge_ids.empty());
  EXPECT_EQ(again->matched, 5u);
  EXPECT_EQ(log_->Size(), before + 3);
}

TEST_F(RecoveryTest, TheRecordedEntryCarriesTheRequestIdTheChargeWasMadeFor) {
  auto c = ledger_->Reserve("p", "alice", Laplace(0.5, 2), ledger::Caps(), kT0,
                            "req-42");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->request_id, "req-42");
  const ledger::Charge anonymous = Reserve("p", "bob", kT0);  // No id given.
  Reopen();  // The id is read back from the store, not kept in memory.
  auto report = ReconcileLedgerWithAudit(*ledger_, *log_, kT0);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::vector<v1::AuditEntry> entries = Entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].request_id(), "req-42");
  EXPECT_EQ(entries[1].request_id(),
            absl::StrCat("interrupted-charge-", anonymous.id));
}

TEST_F(RecoveryTest, TheStartUpStepRecordsAndReportsOk) {
  Reserve("p", "alice", kT0);
  EXPECT_TRUE(RecoverInterruptedRequests(ledger_.get(), log_.get()).ok());
  EXPECT_EQ(log_->Size(), 1u);
  EXPECT_TRUE(RecoverInterruptedRequests(ledger_.get(), log_.get()).ok());
  EXPECT_EQ(log_->Size(), 1u);
}

// A log flooded with failed entries (which may record a charge, so each is
// looked at) costs recovery no memory: it holds one key per unrefunded
// charge, and still matches and records exactly as before.
TEST_F(RecoveryTest, MemoryIsBoundedByTheChargesNotTheLog) {
  Reserve("p", "alice", kT0);
  Audit("p", "alice", kT0, v1::AUDIT_DECISION_ALLOWED, 1.0);
  for (int i = 0; i < 300; ++i) {
    Audit(std::string(100, 'f'), "mallory", kT0 + absl::Milliseconds(i),
          v1::AUDIT_DECISION_FAILED, 0);
  }
  const ledger::Charge lost = Reserve("p", "bob", kT0 + absl::Seconds(9));
  auto report = ReconcileLedgerWithAudit(*ledger_, *log_, kT0);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->entries_scanned, 301u);
  EXPECT_EQ(report->charges, 2u);
  EXPECT_EQ(report->keys_held, 2u);
  EXPECT_EQ(report->matched, 1u);
  EXPECT_THAT(report->recorded_charge_ids, ElementsAre(lost.id));
}

}  // namespace
}  // namespace passerelle::gateway
