// The gateway's request path, independent of gRPC:
//   caller identity -> parse/validate -> policy decision (+ obligations)
//   -> budget reservation (atomic) -> fan-out to nodes (deadline)
//   -> disclosure control per cell -> merge -> audit append (durable)
//   -> response.
// Every request, allowed or not, leaves exactly one audit entry, written
// before anything is returned; if it cannot be written nothing is released.
#ifndef PASSERELLE_GATEWAY_GATEWAY_CORE_H_
#define PASSERELLE_GATEWAY_GATEWAY_CORE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/refusal_counters.h"
#include "common/refusal_limiter.h"
#include "gateway/node_client.h"
#include "gateway/release_cache.h"
#include "passerelle/v1/audit.pb.h"
#include "passerelle/v1/gateway.pb.h"
#include "policy/policy.h"

namespace passerelle::audit {
class AuditLog;
}
namespace passerelle::ledger {
class BudgetLedger;
}
namespace passerelle::privacy {
class NoiseSource;
class RandomSource;
}  // namespace passerelle::privacy

namespace passerelle::gateway {

struct GatewayOptions {
  absl::Duration default_timeout = absl::Seconds(10);
  std::map<std::string, absl::Duration> site_timeouts;
  FanOutOptions fan_out;
  // Counts the requests refused because the noise generator or the
  // request-id random source failed (common/refusal_counters.h). Not owned;
  // may be null.
  RefusalCounters* refusals = nullptr;
};

// Where the gateway appends its audit entries. Thread-safe.
class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Durably appends; returns the entry's index.
  virtual absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) = 0;
};

// Thread-safe. Every pointer must outlive the core.
class GatewayCore {
 public:
  using PolicyProvider = std::function<std::shared_ptr<const policy::Policy>()>;

  // `cache` may be null: no repeat protection (every query costs).
  // `refusal_limiter` may be null: every refusal is recorded in full. Otherwise
  // refusals beyond its per-identity rate are answered RESOURCE_EXHAUSTED
  // and recorded only as one summary entry per identity and period
  // (FlushRefusalSummaries). Refusals after a budget charge are always
  // recorded in full (crash recovery matches charges with entries).
  GatewayCore(GatewayOptions options, PolicyProvider policy,
              ledger::BudgetLedger* ledger, AuditSink* audit,
              privacy::NoiseSource* noise, privacy::RandomSource* ids,
              std::vector<NodeClient*> nodes, Clock* clock,
              ReleaseCache* cache = nullptr,
              RefusalLimiter* refusal_limiter = nullptr);

  // `deadline` is the caller's; node calls never outlive it.
  absl::StatusOr<v1::QueryResponse> Query(const std::string& caller,
                                          const v1::QueryRequest& request,
                                          absl::Time deadline);

  // The per-site crosswalk expansion of the query, before anything runs:
  // the same limits, parsing, policy decision and refusals (audited, and
  // rate-limited by the refusal limiter) as Query, then each site's
  // NodeService.Explain; no budget is reserved or charged and no node reads
  // data. A site that fails or refuses is reported per site, as in Query;
  // an expansion that contradicts the query is refused (gateway/expansion.h).
  // One audit entry, operation "explain", with every site's expansion.
  absl::StatusOr<v1::ExplainResponse> Explain(const std::string& caller,
                                              const v1::QueryRequest& request,
                                              absl::Time deadline);

  // The project's budget as the caller may see it (audited like a query).
  absl::StatusOr<v1::BudgetResponse> Budget(const std::string& caller,
                                            const v1::BudgetRequest& request);

  // Appends one "refusal_summary" entry per identity whose summary period
  // has ended (all pending ones when `all`, at shutdown). Also done on
  // every refusal; the daemon calls it periodically so that a summary is
  // written even when the identity stops sending.
  absl::Status FlushRefusalSummaries(bool all = false);

  // Asks every node for its snapshot version (metadata only, no data), so
  // that a repeated query can be recognised before any budget is reserved;
  // a repeat is served only after each node confirms that snapshot again.
  // Count responses update the same table. Called periodically by the
  // daemon; a node that does not answer is forgotten until it does.
  void RefreshNodeInfo(absl::Time deadline);
  // The snapshot last seen from `site` ("" when unknown).
  std::string KnownSnapshot(const std::string& site) const;

 private:
  absl::StatusOr<std::string> NewRequestId();
  // What Query and Explain share: the request's limits, the query (parsed,
  // or validated when an AST) with its reference date pinned, its canonical
  // form, the policy decision and the nodes of the sites it allows. Fills
  // `entry` as it goes; a refusal is recorded (Refuse) and returned.
  struct Admission {
    v1::Query query;
    std::string canonical;
    std::shared_ptr<const policy::Policy> policy;
    v1::Decision decision;
    std::vector<NodeClient*> clients;
  };
  absl::StatusOr<Admission> Admit(const std::string& caller,
                                  const v1::QueryRequest& request,
                                  absl::Time start, v1::AuditEntry& entry);
  // Appends `entry` (stamped with latency, the status's message as its
  // reason when it has none, reasons bounded) and returns `status`, or the
  // audit failure when the entry could not be written. `limitable`: the
  // refusal is subject to the per-identity rate (none is once budget has
  // been charged).
  absl::Status Refuse(v1::AuditEntry& entry, absl::Time start,
                      absl::Status status, bool limitable = true);
  // audit_->Append after bounding the reasons and checking the entry against
  // limits::kMaxAuditEntryBytes: an entry over it (never expected: every
  // field is bounded on the way in) is replaced by a short FAILED entry and
  // an INTERNAL error is returned, so nothing is released.
  absl::StatusOr<uint64_t> AppendBounded(v1::AuditEntry& entry);
  // The caller hears that the audit log failed, not how: the store's message
  // can name a path. The details go to the gateway's own log.
  static absl::Status AuditUnavailable(const absl::Status& why);

  void NoteSnapshot(const std::string& site, const std::string& snapshot);
  // Asks each node for its snapshot now; true when every one answers with
  // the snapshot in `known`.
  bool NodesStillServe(const std::vector<NodeClient*>& clients,
                       const std::vector<SiteSnapshot>& known,
                       absl::Time deadline);
  absl::StatusOr<v1::QueryResponse> ServeRepeat(
      v1::AuditEntry& entry, absl::Time start, const std::string& request_id,
      const v1::CachedRelease& cached);

  const GatewayOptions options_;
  const PolicyProvider policy_;
  ledger::BudgetLedger* const ledger_;
  AuditSink* const audit_;
  privacy::NoiseSource* const noise_;
  privacy::RandomSource* const ids_;
  std::map<std::string, NodeClient*> nodes_;
  Clock* const clock_;
  ReleaseCache* const cache_;
  RefusalLimiter* const refusal_limiter_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> known_snapshots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_GATEWAY_CORE_H_
