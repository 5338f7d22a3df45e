#include "node/node_core.h"

#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "common/crash_point.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "query/canonical.h"
#include "query/validate.h"

namespace passerelle::node {
namespace {

// The fields of a caller's request against common/limits.h.
template <typename Request>
absl::Status CheckCountRequest(const Request& r) {
  PASSERELLE_RETURN_IF_ERROR(
      limits::CheckRequestId("request_id", r.request_id()));
  PASSERELLE_RETURN_IF_ERROR(limits::CheckId("project", r.project()));
  return limits::CheckSize("query (AST)", r.query().ByteSizeLong(),
                           limits::kMaxQueryAstBytes);
}

}  // namespace

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
                   Clock* clock, RefusalLimiter* refusal_limiter)
    : site_(std::move(site)),
      authorizer_(authorizer),
      audit_(audit),
      clock_(clock),
      refusal_limiter_(refusal_limiter),
      engine_(std::move(engine)) {}

absl::Status NodeCore::FlushRefusalSummaries(bool all) {
  if (refusal_limiter_ == nullptr || audit_ == nullptr) return absl::OkStatus();
  std::vector<RefusalLimiter::Summary> due =
      all ? refusal_limiter_->TakeAll() : refusal_limiter_->TakeDue();
  absl::Status result;
  for (const RefusalLimiter::Summary& s : due) {
    NodeAuditRecord record;
    record.time = s.last;
    record.caller = s.identity;
    record.snapshot = engine()->meta().version;
    record.reason =
        absl::StrCat("refusal summary: ", refusal_limiter_->Describe(s));
    absl::StatusOr<uint64_t> index = audit_->Record(record);
    if (!index.ok() && result.ok()) result = index.status();
  }
  return result;
}

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
  record.caller = limits::RecordedIdentity(caller);
  record.snapshot = eng->meta().version;

  // Who asks first, then whether what they sent is within the limits;
  // only then is any of it recorded. Refusals up to here are rate-limited.
  absl::Status status = authorizer_->AuthorizeCaller(caller);
  if (status.ok()) status = CheckCountRequest(request);
  const bool limitable = !status.ok();
  // A query without `as of` (the gateway always sets it) counts ages on
  // this node's date (UTC), recorded in the audit's canonical query.
  const v1::Query* query = &request.query();
  v1::Query pinned;
  if (status.ok()) {
    record.request_id = request.request_id();
    record.project = request.project();
    if (!query->has_as_of()) {
      pinned = *query;
      query::PinReferenceDate(record.time, &pinned);
      query = &pinned;
    }
    status = query::ValidateQuery(*query);
  }
  if (status.ok()) {
    std::string canonical = query::CanonicalText(*query);
    status = limits::CheckSize("canonical query", canonical.size(),
                               limits::kMaxCanonicalQueryBytes);
    if (status.ok()) record.canonical_query = std::move(canonical);
  }
  if (status.ok()) {
    status = authorizer_->Authorize(caller, request, record.time);
  }
  absl::StatusOr<std::vector<v1::Cell>> cells =
      status.ok() ? eng->CountExpanded(*query, &record.expansion)
                  : absl::StatusOr<std::vector<v1::Cell>>(status);
  if (cells.ok()) {
    record.answered = true;
    // Moved into the response once audited.
    record.cells.Reserve(static_cast<int>(cells->size()));
    for (v1::Cell& cell : *cells) record.cells.Add(std::move(cell));
  } else {
    record.reason = limits::BoundText(cells.status().ToString());
  }
  if (refusal_limiter_ != nullptr && audit_ != nullptr) {
    // A failure here shows again on this request's own record.
    (void)FlushRefusalSummaries();
    if (limitable && !refusal_limiter_->Admit(record.caller)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "site ", site_, ": too many refused requests from ", record.caller,
          "; this refusal is counted in a periodic audit summary instead of "
          "its own record: ",
          limits::BoundText(cells.status().ToString(), 256)));
    }
  }
  uint64_t audit_index = 0;
  if (audit_ != nullptr) {
    PASSERELLE_CRASH_POINT("node.count.before_audit");
    absl::StatusOr<uint64_t> index = audit_->Record(record);
    if (!index.ok()) {
      // Audit before release: without a durable record nothing leaves.
      // The store's message can name a path: it goes to the node's own
      // log, not to the caller.
      std::cerr << "passerelle node: site " << site_
                << ": audit append failed, nothing released: "
                << index.status().message() << "\n";
      return absl::UnavailableError(absl::StrCat(
          "site ", site_,
          " audit log unavailable, nothing released (details in the node's "
          "log)"));
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
  *response.mutable_expansion() = std::move(record.expansion);
  return response;
}

absl::StatusOr<v1::SiteExpansion> NodeCore::Explain(
    const std::string& caller, const v1::ExplainRequest& request) {
  const std::shared_ptr<const CohortEngine> eng = engine();
  NodeAuditRecord record;
  record.operation = "explain";
  record.time = clock_->Now();
  record.caller = limits::RecordedIdentity(caller);
  record.snapshot = eng->meta().version;
  absl::Status status = authorizer_->AuthorizeCaller(caller);
  if (status.ok()) status = CheckCountRequest(request);
  const bool limitable = !status.ok();
  if (status.ok()) {
    record.request_id = request.request_id();
    record.project = request.project();
    status = query::ValidateQuery(request.query());
  }
  if (status.ok()) {
    std::string canonical = query::CanonicalText(request.query());
    status = limits::CheckSize("canonical query", canonical.size(),
                               limits::kMaxCanonicalQueryBytes);
    if (status.ok()) record.canonical_query = std::move(canonical);
  }
  if (status.ok()) {
    // The tables and the vocabularies held only: no data is read.
    record.expansion = eng->Explain(request.query());
    record.answered = true;
  } else {
    record.reason = limits::BoundText(status.ToString());
  }
  if (refusal_limiter_ != nullptr && audit_ != nullptr) {
    (void)FlushRefusalSummaries();
    if (limitable && !refusal_limiter_->Admit(record.caller)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "site ", site_, ": too many refused requests from ", record.caller,
          "; this refusal is counted in a periodic audit summary instead of "
          "its own record: ",
          limits::BoundText(status.ToString(), 256)));
    }
  }
  if (audit_ != nullptr) {
    absl::StatusOr<uint64_t> index = audit_->Record(record);
    if (!index.ok()) {
      std::cerr << "passerelle node: site " << site_
                << ": audit append failed, nothing released: "
                << index.status().message() << "\n";
      return absl::UnavailableError(absl::StrCat(
          "site ", site_,
          " audit log unavailable, nothing released (details in the node's "
          "log)"));
    }
  }
  if (!status.ok()) return status;
  return std::move(record.expansion);
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
  if (std::shared_ptr<const CrosswalkSet> set = eng->crosswalks()) {
    set->Describe(&info);
  }
  return info;
}

}  // namespace passerelle::node
