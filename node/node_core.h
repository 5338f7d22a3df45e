// The node's request logic, independent of gRPC: who may ask, what may be
// asked, evaluation, and the node's own audit record. The gRPC service in
// node_service.h is a thin adapter over it.
#ifndef PASSERELLE_NODE_NODE_CORE_H_
#define PASSERELLE_NODE_NODE_CORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/refusal_limiter.h"
#include "google/protobuf/repeated_field.h"
#include "node/engine.h"
#include "passerelle/v1/node.pb.h"

namespace passerelle::node {

// Decides whether this site answers a request (site policy). Thread-safe.
class RequestAuthorizer {
 public:
  virtual ~RequestAuthorizer() = default;
  // OK, or PERMISSION_DENIED / INVALID_ARGUMENT with the reason.
  virtual absl::Status Authorize(const std::string& caller,
                                 const v1::CountRequest& request,
                                 absl::Time now) const = 0;
  // Whether `caller` may call this node at all (GetInfo): OK or
  // PERMISSION_DENIED with the reason.
  virtual absl::Status AuthorizeCaller(const std::string& caller) const = 0;
};

// What the node records about each request it answered or refused.
struct NodeAuditRecord {
  absl::Time time;
  std::string request_id;
  std::string caller;
  std::string project;
  std::string canonical_query;
  std::string snapshot;
  bool answered = false;
  std::string reason;  // Why it was refused or failed.
  // True counts: they never leave the site.
  google::protobuf::RepeatedPtrField<v1::Cell> cells;
  // "count" or "explain".
  std::string operation = "count";
  // How the query's codes reached the site's vocabularies (answered
  // requests).
  v1::SiteExpansion expansion;
};

// The node's own tamper-evident log. Thread-safe.
class NodeAuditSink {
 public:
  virtual ~NodeAuditSink() = default;
  // Durably records; returns the entry index. May borrow `record.cells`
  // while it writes (to record them without a copy); they are back in place
  // when it returns.
  virtual absl::StatusOr<uint64_t> Record(NodeAuditRecord& record) = 0;
};

// Thread-safe.
class NodeCore {
 public:
  // `authorizer` and `audit` must outlive the core; `audit` may be null only
  // in tests of the evaluation path. `refusal_limiter` may be null (every
  // refusal recorded in full); otherwise refusals of callers the site does not
  // answer, and of requests over the limits, beyond its per-identity rate
  // are answered RESOURCE_EXHAUSTED and only counted into a periodic
  // summary record (FlushRefusalSummaries).
  NodeCore(std::string site, std::unique_ptr<CohortEngine> engine,
           const RequestAuthorizer* authorizer, NodeAuditSink* audit,
           Clock* clock, RefusalLimiter* refusal_limiter = nullptr);

  // The caller is authorized first: the request's fields are recorded only
  // for a caller the site answers (the gateway), and only once they are
  // within common/limits.h (request id format, project, query size); a
  // refusal before that records the caller and a bounded reason only.
  absl::StatusOr<v1::CountResponse> Count(const std::string& caller,
                                          const v1::CountRequest& request);
  // Records one summary per identity whose refusal summary is due (all
  // pending ones when `all`). Called on every refusal and periodically by
  // the daemon.
  absl::Status FlushRefusalSummaries(bool all = false);
  // The query's crosswalk expansion at the served snapshot, without reading
  // the data: the same caller check, request limits and validation as
  // Count (the gateway's identity only), and its own audit record
  // (operation "explain"). No min_cell_size: nothing is released.
  absl::StatusOr<v1::SiteExpansion> Explain(const std::string& caller,
                                            const v1::ExplainRequest& request);
  // The snapshot's description, for the site's callers only.
  absl::StatusOr<v1::NodeInfo> Info(const std::string& caller) const;
  // Swaps in a new snapshot's engine; in-flight queries finish on the old one.
  void SetEngine(std::unique_ptr<CohortEngine> engine);

 private:
  std::shared_ptr<const CohortEngine> engine() const;

  const std::string site_;
  const RequestAuthorizer* const authorizer_;
  NodeAuditSink* const audit_;
  Clock* const clock_;
  RefusalLimiter* const refusal_limiter_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const CohortEngine> engine_ ABSL_GUARDED_BY(mu_);
};

// The simplest site policy: a fixed list of caller identities and a minimum
// cell size the gateway must promise to apply.
class AllowListAuthorizer : public RequestAuthorizer {
 public:
  AllowListAuthorizer(std::vector<std::string> callers, int64_t min_cell_size)
      : callers_(std::move(callers)), min_cell_size_(min_cell_size) {}
  absl::Status Authorize(const std::string& caller,
                         const v1::CountRequest& request,
                         absl::Time now) const override;
  absl::Status AuthorizeCaller(const std::string& caller) const override;

 private:
  const std::vector<std::string> callers_;
  const int64_t min_cell_size_;
};

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_NODE_CORE_H_
