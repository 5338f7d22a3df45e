// The privacy-budget ledger (privacy.md requirement 6): per project, and per
// researcher within a project, on RocksDB. Amounts are integers in
// micro-units (1e-6) so decimal budgets never drift; a query's cost comes
// from privacy/cost.h (rounded up) and caps are rounded down.
//
// Accounts. Three per reservation, checked together and charged all or
// nothing: the project's, the researcher's within the project, and the
// researcher's federation-wide account (every project). A researcher in N
// projects therefore has N project caps and, when the federation declares
// one, one federation-wide cap over all of them.
//
// Windows. Each account stores the start of its current window with its
// spending. An account's first window is [k P, (k+1) P) from the Unix epoch
// (UTC) that holds the first charge, for the reset period P in force then
// (without one, it starts at the first charge and never ends). A window
// ends at its start plus the reset period in force NOW; the next one starts
// at start + k P (the one that holds now) with nothing spent. A change of
// reset_period_days therefore keeps the current window's start and
// spending and applies the new period from that start: it neither wipes
// the spending (it resets only when the new period says the window is
// over) nor freezes it (a longer period delays the reset by the
// difference, a shorter one brings it forward). Without a reset period
// spending never resets.
//
// Resolution. Amounts are whole micro-units; a positive cap below one
// micro-unit is an error (CapsFromBudget), never "no cap".
#ifndef PASSERELLE_LEDGER_LEDGER_H_
#define PASSERELLE_LEDGER_LEDGER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "passerelle/v1/policy.pb.h"
#include "privacy/cost.h"

namespace rocksdb {
class DB;
}

namespace passerelle::ledger {

// Caps in micro-units; 0 means no cap of that kind. A pure (epsilon) query
// is checked against epsilon caps with its epsilon and against rho caps with
// rho = epsilon^2/2; a zCDP query has no epsilon and is refused where an
// epsilon cap applies.
struct Caps {
  int64_t project_epsilon_micros = 0;
  int64_t project_rho_micros = 0;
  int64_t researcher_epsilon_micros = 0;
  int64_t researcher_rho_micros = 0;
  // Zero: never resets.
  absl::Duration reset_period = absl::ZeroDuration();
  // The researcher's federation-wide caps (across every project) and their
  // own reset period.
  int64_t federation_researcher_epsilon_micros = 0;
  int64_t federation_researcher_rho_micros = 0;
  absl::Duration federation_reset_period = absl::ZeroDuration();
  // Set when the budget the caps came from was invalid; Reserve refuses.
  std::string error;
};

// From a policy budget (doubles in units, rounded DOWN to micro-units). A
// positive cap below one micro-unit sets `error` (Reserve then refuses).
Caps CapsFromBudget(const passerelle::v1::Budget& budget);
// The project's budget and the federation's researcher_budget (only its
// researcher_* caps and reset_period_days are used).
Caps CapsFromBudgets(const passerelle::v1::Budget& project,
                     const passerelle::v1::Budget& federation);

// One recorded reservation.
struct Charge {
  uint64_t id = 0;
  std::string project;
  std::string researcher;
  bool pure = true;
  int64_t epsilon_micros = 0;
  int64_t rho_micros = 0;
  absl::Time time = absl::UnixEpoch();
  // The start of the window it was counted in, per account (a refund gives
  // the budget back only within that window).
  absl::Time project_window = absl::InfinitePast();
  absl::Time researcher_window = absl::InfinitePast();
  absl::Time federation_window = absl::InfinitePast();
  bool refunded = false;
  // The gateway's request id, when the caller gave one: lets a charge whose
  // request was never audited (a crash in between) be recorded under it.
  std::string request_id;
};

// Spending of one account in its current window.
struct Account {
  std::string researcher;  // Empty for the project itself.
  int64_t epsilon_spent_micros = 0;
  int64_t rho_spent_micros = 0;
  int64_t epsilon_cap_micros = 0;  // 0: no cap.
  int64_t rho_cap_micros = 0;      // 0: no cap.
  // cap - spent (never negative); absent when there is no cap.
  std::optional<int64_t> epsilon_remaining_micros;
  std::optional<int64_t> rho_remaining_micros;
  // When the current window ends; absent without a reset period.
  std::optional<absl::Time> next_reset;
};

struct BudgetView {
  std::string project;
  Account project_account;
  std::vector<Account> researchers;  // Sorted by researcher.
  // The same researchers' federation-wide accounts (every project), under
  // the federation's researcher caps.
  std::vector<Account> federation_researchers;
  // Absent when the caps have no reset period.
  std::optional<absl::Time> next_reset;
};

// Sums over recorded charges, for audit cross-checks against the audit log.
struct ChargeTotals {
  int64_t charges = 0;   // Not refunded.
  int64_t refunded = 0;  // Refunded charges (not in the sums).
  int64_t epsilon_micros = 0;
  int64_t rho_micros = 0;
};

// Safe for concurrent use from multiple threads; one instance per store
// (RocksDB locks the directory against a second process). Reservations and
// refunds are decided one at a time in memory (so concurrent queries cannot
// overspend) and group-committed: one synced RocksDB write carries every
// reservation and refund queued while the previous write ran, and each call
// returns once its own is durable.
class BudgetLedger {
 public:
  // Opens the store at `path`, creating it if absent. `clock` (for Show)
  // must outlive the ledger.
  static absl::StatusOr<std::unique_ptr<BudgetLedger>> Open(
      const std::string& path, Clock* clock);
  ~BudgetLedger();
  BudgetLedger(const BudgetLedger&) = delete;
  BudgetLedger& operator=(const BudgetLedger&) = delete;

  // Atomically checks the project's, the researcher's and the researcher's
  // federation-wide caps and records the charge on all three accounts
  // (durably: its batch's synced write) before returning; a cap exceeded
  // on any account charges none.
  // RESOURCE_EXHAUSTED when a cap would be exceeded (the message names the cap,
  // what is spent and what remains); FAILED_PRECONDITION for a zCDP query
  // against an epsilon cap; INVALID_ARGUMENT for bad names, costs or caps;
  // UNAVAILABLE if the store cannot be written (nothing is recorded then, and
  // the reservation no longer counts against the caps; its charge id may be
  // skipped).
  absl::StatusOr<Charge> Reserve(const std::string& project,
                                 const std::string& researcher,
                                 const privacy::QueryCost& cost,
                                 const Caps& caps, absl::Time now,
                                 const std::string& request_id = "");

  // Gives a charge back. Only for a query that reached no node (a query that
  // touched data stays charged even if it failed later). NOT_FOUND for an
  // unknown id, FAILED_PRECONDITION if already refunded. A charge from an
  // earlier window is marked refunded without changing the current window.
  // The budget comes back only once the refund is durable; UNAVAILABLE if
  // it cannot be written (the charge stays charged).
  absl::Status Refund(uint64_t charge_id);

  // Spending and remaining budget of the project and each of its
  // researchers now, under the caps of the project's latest reservation.
  absl::StatusOr<BudgetView> Show(const std::string& project);
  // The same under the given caps (e.g. the current policy's); a project
  // without any reservation shows nothing spent.
  absl::StatusOr<BudgetView> Show(const std::string& project, const Caps& caps);

  // All recorded charges of `project` ("" for every project), oldest first.
  absl::StatusOr<std::vector<Charge>> ListCharges(const std::string& project);
  // Their sums (all windows).
  absl::StatusOr<ChargeTotals> SumCharges(const std::string& project);

  // Group-commit counters, for tests and diagnosis.
  struct CommitStats {
    uint64_t writes = 0;         // Synced writes that succeeded.
    uint64_t failed_writes = 0;  // Synced writes that failed.
    uint64_t operations = 0;     // Reservations and refunds they carried.
    uint64_t largest_batch = 0;  // Most operations in one write.
  };
  CommitStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // Test seam: called by the writer, without the lock, with the number of
  // operations in the batch, in place of the RocksDB write when it returns
  // an error (the batch fails and nothing is written); OK lets the write
  // go ahead. Set it before any concurrent use.
  void SetWriteHookForTesting(std::function<absl::Status(size_t)> hook)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until at least `n` operations wait for the next write.
  void AwaitQueuedForTesting(size_t n) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Op;
  struct State;
  BudgetLedger(std::unique_ptr<rocksdb::DB> db, Clock* clock, uint64_t next_id);
  absl::StatusOr<BudgetView> ShowLocked(const std::string& project,
                                        const Caps& caps)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues `op` and returns once it is durable or has failed (op->status).
  void Commit(Op* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes one batch from the queue (called by the leader).
  void WriteOneBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool DoneOrIdle(Op* op) ABSL_NO_THREAD_SAFETY_ANALYSIS;

  std::unique_ptr<rocksdb::DB> db_;
  Clock* const clock_;
  mutable absl::Mutex mu_;
  // Accounts in memory (durable and with queued reservations), the queue
  // and the counters.
  std::unique_ptr<State> state_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace passerelle::ledger

#endif  // PASSERELLE_LEDGER_LEDGER_H_
