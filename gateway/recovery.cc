#include "gateway/recovery.h"

#include <iostream>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "audit/log.h"
#include "audit/records.h"
#include "common/status_macros.h"

namespace passerelle::gateway {
namespace {

using Key = std::tuple<int64_t, std::string, std::string>;

Key KeyOf(int64_t time_micros, const std::string& project,
          const std::string& caller) {
  return Key(time_micros, project, caller);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

}  // namespace

bool MayRecordCharge(const v1::AuditEntry& entry) {
  if (!entry.operation().empty() && entry.operation() != "query") return false;
  if (entry.has_repeat_of_index()) return false;
  return entry.decision() == v1::AUDIT_DECISION_ALLOWED ||
         entry.decision() == v1::AUDIT_DECISION_PARTIAL ||
         entry.decision() == v1::AUDIT_DECISION_FAILED;
}

v1::AuditEntry InterruptedEntry(const ledger::Charge& charge, absl::Time now) {
  constexpr double kMicro = 1e-6;
  v1::AuditEntry entry;
  entry.set_operation("query");
  entry.set_time_unix_micros(absl::ToUnixMicros(charge.time));
  // The request's own id, so that a node's entry for it can be matched (a
  // charge from an older ledger has none).
  entry.set_request_id(charge.request_id.empty()
                           ? absl::StrCat("interrupted-charge-", charge.id)
                           : charge.request_id);
  entry.set_caller(charge.researcher);
  entry.set_caller_role("researcher");
  entry.set_project(charge.project);
  entry.set_decision(v1::AUDIT_DECISION_FAILED);
  entry.set_epsilon_charged(static_cast<double>(charge.epsilon_micros) *
                            kMicro);
  entry.set_rho_charged(static_cast<double>(charge.rho_micros) * kMicro);
  entry.add_reasons(absl::StrCat(
      "interrupted: the gateway stopped after reserving budget charge ",
      charge.id, " (", Rfc3339(charge.time),
      ") and before recording the request; recorded at restart (", Rfc3339(now),
      "). Nothing was released; the charge is kept as spent since a node may "
      "have computed"));
  return entry;
}

absl::StatusOr<RecoveryReport> ReconcileLedgerWithAudit(
    ledger::BudgetLedger& ledger, audit::AuditLog& log, absl::Time now) {
  RecoveryReport report;
  // Memory is bounded by the ledger's unrefunded charges, not by the log:
  // the keys of the charges first, then the log read one entry at a time,
  // each entry only counted against a charge's key. (A log of any size, or
  // any number of refused requests, costs no memory here.)
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<ledger::Charge> charges,
                              ledger.ListCharges(""));
  // Per key: unrefunded charges, then entries found (never more than the
  // charges, so a key's count stays bounded too).
  std::map<Key, std::pair<uint64_t, uint64_t>> keys;
  for (const ledger::Charge& c : charges) {
    if (c.refunded) continue;
    ++keys[KeyOf(absl::ToUnixMicros(c.time), c.project, c.researcher)].first;
  }
  report.keys_held = keys.size();
  const uint64_t size = log.Size();
  for (uint64_t i = 0; i < size; ++i) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string bytes, log.Get(i));
    absl::StatusOr<v1::AuditRecord> record = audit::DecodeRecord(bytes);
    bytes.clear();
    if (!record.ok() || !record->has_gateway()) continue;
    ++report.entries_scanned;
    if (keys.empty()) continue;
    const v1::AuditEntry& e = record->gateway();
    if (!MayRecordCharge(e)) continue;
    auto it = keys.find(KeyOf(e.time_unix_micros(), e.project(), e.caller()));
    if (it != keys.end() && it->second.second < it->second.first) {
      ++it->second.second;
    }
  }
  for (const ledger::Charge& c : charges) {
    if (c.refunded) continue;
    ++report.charges;
    auto it =
        keys.find(KeyOf(absl::ToUnixMicros(c.time), c.project, c.researcher));
    if (it != keys.end() && it->second.second > 0) {
      --it->second.second;
      ++report.matched;
      continue;
    }
    PASSERELLE_ASSIGN_OR_RETURN(
        uint64_t index,
        log.Append(audit::EncodeRecord(InterruptedEntry(c, now))));
    report.recorded_charge_ids.push_back(c.id);
    report.recorded_indices.push_back(index);
  }
  return report;
}

absl::Status RecoverInterruptedRequests(ledger::BudgetLedger* ledger,
                                        audit::AuditLog* log) {
  absl::StatusOr<RecoveryReport> report =
      ReconcileLedgerWithAudit(*ledger, *log, absl::Now());
  if (!report.ok()) {
    return absl::Status(
        report.status().code(),
        absl::StrCat(
            "recovery (ledger against audit log) failed, not serving: ",
            report.status().message()));
  }
  std::cerr << "passerelle gateway: recovery: " << report->entries_scanned
            << " audit entries scanned one at a time against "
            << report->charges << " unrefunded budget charges ("
            << report->keys_held << " keys held)\n";
  for (size_t i = 0; i < report->recorded_charge_ids.size(); ++i) {
    std::cerr << "passerelle gateway: recovery: budget charge "
              << report->recorded_charge_ids[i]
              << " had no audit entry (interrupted request); recorded as entry "
              << report->recorded_indices[i] << ", charge kept\n";
  }
  return absl::OkStatus();
}

}  // namespace passerelle::gateway
