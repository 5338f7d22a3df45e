// Crash recovery at gateway start: reconciles the budget ledger with the
// audit log.
//
// The two are separate RocksDB stores, each written with one synced batch
// per operation: a query's charge is reserved (budget before data) before
// the nodes are asked, and its audit entry is appended only after the
// answers are in (audit before release). A gateway killed between the two
// leaves a charge with no audit entry: spent budget nobody can account for
// and a ledger total above the audit log's.
//
// At start, before anything is served, every unrefunded charge that no
// audit entry records gets one: decision FAILED, a reason beginning
// "interrupted:" naming the charge id, the charge's own time, project,
// researcher and cost. The charge is kept as spent (conservative: whether a
// node computed is unknown, and the budget bounds what MAY have been
// learnt); nothing was released, since the audit entry comes before any
// answer. After recovery the sum of charges equals the sum of
// epsilon_charged (and rho_charged) over the log, and every charge has
// exactly one entry.
//
// Matching. A charge is recorded by the entry of the same request: the
// gateway reserves at the request's start time and writes that same time
// into the entry, so (time in microseconds, project, caller) is the link;
// a recovery entry carries the same triple, so recovery is idempotent.
// Entries that cannot hold a charge are not candidates: DENIED ones (policy
// and budget refusals happen before or at the reservation), repeats of an
// earlier release, and non-query operations. Keys are counted as a
// multiset, so two charges with the same triple need two entries.
// (An explicit charge id in AuditEntry would be a stronger link; the proto
// is not this module's.)
#ifndef PASSERELLE_GATEWAY_RECOVERY_H_
#define PASSERELLE_GATEWAY_RECOVERY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "passerelle/v1/audit.pb.h"

namespace passerelle::audit {
class AuditLog;
}

namespace passerelle::gateway {

struct RecoveryReport {
  uint64_t entries_scanned = 0;  // Gateway entries in the log.
  uint64_t charges = 0;          // Unrefunded charges in the ledger.
  uint64_t matched = 0;          // Charges an existing entry records.
  // Distinct (time, project, caller) keys held while the log is scanned:
  // at most one per unrefunded charge, whatever the log's size (entries are
  // read one at a time).
  uint64_t keys_held = 0;
  // Charges recovery has just recorded, by id, and their entries' indices.
  std::vector<uint64_t> recorded_charge_ids;
  std::vector<uint64_t> recorded_indices;
};

// True when `entry` may record a charge (see Matching above).
bool MayRecordCharge(const v1::AuditEntry& entry);

// The audit entry recovery writes for an unrecorded charge; `now` is the
// recovery's time (in the reason).
v1::AuditEntry InterruptedEntry(const ledger::Charge& charge, absl::Time now);

// Appends an entry for every unrecorded charge. Not thread-safe with
// respect to queries: run it before the gateway serves. An error (a store
// that cannot be read or written) leaves the entries appended so far; the
// gateway must not serve then.
absl::StatusOr<RecoveryReport> ReconcileLedgerWithAudit(
    ledger::BudgetLedger& ledger, audit::AuditLog& log, absl::Time now);

// The daemon's start-up step: ReconcileLedgerWithAudit now, and a line on
// stderr for each charge it recorded.
absl::Status RecoverInterruptedRequests(ledger::BudgetLedger* ledger,
                                        audit::AuditLog* log);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_RECOVERY_H_
