#include "node/node_core.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "query/canonical.h"
#include "query/validate.h"

namespace passerelle::node {

absl::Status AllowListAuthorizer::AuthorizeCaller(
    const std::string& caller) const {
  if (std::find(callers_.begin(), callers_.end(), caller) == callers_.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("caller ", caller, " is not allowed by this site"));
  }
  return absl::OkStatus();
}

absl::Status AllowListAuthorizer::Authorize(const std::string& caller,
                                            const v1::CountRequest& request,
                                            absl::Time) const {
  PASSERELLE_RETURN_IF_ERROR(AuthorizeCaller(caller));
  if (request.min_cell_size() < min_cell_size_) {
    return absl::PermissionDeniedError(
        absl::StrCat("requested minimum cell size ", request.min_cell_size(),
                     " is below this site's minimum of ", min_cell_size_));
  }
  return absl::OkStatus();
}

NodeCore::NodeCore(std::string site, std::unique_ptr<CohortEngine> engine,
                   const RequestAuthorizer* authorizer, NodeAuditSink* audit,
                   Clock* clock)
    : site_(std::move(site)),
      authorizer_(authorizer),
      audit_(audit),
      clock_(clock),
      engine_(std::move(engine)) {}

std::shared_ptr<const CohortEngine> NodeCore::engine() const {
  absl::MutexLock lock(&mu_);
  return engine_;
}

void NodeCore::SetEngine(std::unique_ptr<CohortEngine> engine) {
  absl::MutexLock lock(&mu_);
  engine_ = std::move(engine);
}

absl::StatusOr<v1::CountResponse> NodeCore::Count(
    const std::string& caller, const v1::CountRequest& request) {
  const std::shared_ptr<const CohortEngine> eng = engine();
  NodeAuditRecord record;
  record.time = clock_->Now();
  record.request_id = request.request_id();
  record.caller = caller;
  record.project = request.project();
  record.snapshot = eng->meta().version;

  // A query without `as of` (the gateway always sets it) counts ages on
  // this node's date (UTC), recorded in the audit's canonical query.
  const v1::Query* query = &request.query();
  v1::Query pinned;
  if (!query->has_as_of()) {
    pinned = *query;
    query::PinReferenceDate(record.time, &pinned);
    query = &pinned;
  }
  absl::Status status = query::ValidateQuery(*query);
  if (status.ok()) {
    record.canonical_query = query::CanonicalText(*query);
    status = authorizer_->Authorize(caller, request, record.time);
  }
  absl::StatusOr<std::vector<v1::Cell>> cells =
      status.ok() ? eng->Count(*query)
                  : absl::StatusOr<std::vector<v1::Cell>>(status);
  if (cells.ok()) {
    record.answered = true;
    // Moved into the response once audited.
    record.cells.Reserve(static_cast<int>(cells->size()));
    for (v1::Cell& cell : *cells) record.cells.Add(std::move(cell));
  } else {
    record.reason = cells.status().ToString();
  }
  uint64_t audit_index = 0;
  if (audit_ != nullptr) {
    PASSERELLE_CRASH_POINT("node.count.before_audit");
    absl::StatusOr<uint64_t> index = audit_->Record(record);
    if (!index.ok()) {
      // Audit before release: without a durable record nothing leaves.
      return absl::UnavailableError(
          absl::StrCat("site ", site_,
                       " audit log unavailable: ", index.status().message()));
    }
    audit_index = *index;
    PASSERELLE_CRASH_POINT("node.count.after_audit");
  }
  if (!cells.ok()) return cells.status();
  v1::CountResponse response;
  response.set_site(site_);
  response.set_snapshot(eng->meta().version);
  response.set_audit_index(audit_index);
  response.mutable_cells()->Swap(&record.cells);  // Both on the heap: O(1).
  return response;
}

absl::StatusOr<v1::NodeInfo> NodeCore::Info(const std::string& caller) const {
  // Nodes answer the gateway only, GetInfo included.
  PASSERELLE_RETURN_IF_ERROR(authorizer_->AuthorizeCaller(caller));
  const std::shared_ptr<const CohortEngine> eng = engine();
  v1::NodeInfo info;
  info.set_site(site_);
  info.set_snapshot(eng->meta().version);
  info.set_loaded_at_unix(eng->meta().loaded_at_unix);
  for (const std::string& v : eng->Vocabularies()) info.add_vocabularies(v);
  return info;
}

}  // namespace passerelle::node
