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
#include "absl/time/time.h"
#include "common/clock.h"
#include "gateway/node_client.h"
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
}

namespace passerelle::gateway {

struct GatewayOptions {
  absl::Duration default_timeout = absl::Seconds(10);
  std::map<std::string, absl::Duration> site_timeouts;
  FanOutOptions fan_out;
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

  GatewayCore(GatewayOptions options, PolicyProvider policy,
              ledger::BudgetLedger* ledger, AuditSink* audit,
              privacy::NoiseSource* noise, privacy::RandomSource* ids,
              std::vector<NodeClient*> nodes, Clock* clock);

  // `deadline` is the caller's; node calls never outlive it.
  absl::StatusOr<v1::QueryResponse> Query(const std::string& caller,
                                          const v1::QueryRequest& request,
                                          absl::Time deadline);

 private:
  absl::StatusOr<std::string> NewRequestId();
  // Appends `entry` (stamped with latency) and returns `status`, or the
  // audit failure when the entry could not be written.
  absl::Status Refuse(v1::AuditEntry& entry, absl::Time start,
                      absl::Status status);

  const GatewayOptions options_;
  const PolicyProvider policy_;
  ledger::BudgetLedger* const ledger_;
  AuditSink* const audit_;
  privacy::NoiseSource* const noise_;
  privacy::RandomSource* const ids_;
  std::map<std::string, NodeClient*> nodes_;
  Clock* const clock_;
};

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_GATEWAY_CORE_H_
