// GatewayCore::Explain: a query's per-site crosswalk expansion, before
// anything runs. The request passes the same admission as a query
// (GatewayCore::Admit: limits, parsing, policy, sites; refusals audited and
// rate-limited alike) but reserves no budget and reads no data: each node
// computes its expansion from the query and its crosswalk tables alone.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "gateway/expansion.h"
#include "gateway/gateway_core.h"
#include "policy/policy.h"

namespace passerelle::gateway {
namespace {}  // namespace

absl::StatusOr<v1::ExplainResponse> GatewayCore::Explain(
    const std::string& caller, const v1::QueryRequest& request,
    absl::Time deadline) {
  const absl::Time start = clock_->Now();
  v1::AuditEntry entry;
  entry.set_operation("explain");
  entry.set_time_unix_micros(absl::ToUnixMicros(start));
  entry.set_caller(limits::RecordedIdentity(caller));
  entry.set_decision(v1::AUDIT_DECISION_FAILED);
  PASSERELLE_ASSIGN_OR_RETURN(std::string request_id, NewRequestId());
  entry.set_request_id(request_id);
  PASSERELLE_ASSIGN_OR_RETURN(Admission admitted,
                              Admit(caller, request, start, entry));
  const v1::Obligations& ob = admitted.decision.obligations();

  // No budget: an expansion is a function of the query and the sites'
  // public crosswalk tables, never of the data.
  std::vector<v1::ExplainRequest> requests;
  std::vector<absl::Time> deadlines;
  for (NodeClient* client : admitted.clients) {
    v1::ExplainRequest& r = requests.emplace_back();
    r.set_request_id(request_id);
    *r.mutable_query() = admitted.query;
    r.set_project(ob.project());
    auto timeout = options_.site_timeouts.find(client->site());
    deadlines.push_back(
        std::min(deadline, start + (timeout == options_.site_timeouts.end()
                                        ? options_.default_timeout
                                        : timeout->second)));
  }
  std::vector<ExplainOutcome> outcomes =
      FanOutExplain(admitted.clients, requests, deadlines, options_.fan_out);

  v1::ExplainResponse response;
  response.set_request_id(request_id);
  response.set_canonical_query(admitted.canonical);
  response.set_policy_version(admitted.decision.policy_version());
  bool complete = true;
  for (ExplainOutcome& o : outcomes) {
    std::vector<std::string> notes;
    if (o.state == SiteState::kOk) {
      absl::Status checked =
          CheckSiteExpansion(o.site, admitted.query, &o.expansion, &notes);
      if (!checked.ok()) {
        o.state = SiteState::kFailed;
        o.reason = std::string(checked.message());
        o.expansion.Clear();
        notes.clear();
      } else {
        o.reason = absl::StrJoin(notes, "; ");
      }
    }
    complete &= o.state == SiteState::kOk;
    v1::SiteExplanation* s = response.add_sites();
    s->set_site(o.site);
    s->set_status(ToSiteStatus(o.state));
    // Without the site policy's rule locations, as for a query; the entry
    // keeps the whole reason.
    s->set_reason(policy::WithoutLocations(o.reason));
    v1::AuditSiteStatus* as = entry.add_sites();
    as->set_site(o.site);
    as->set_status(SiteStateName(o.state));
    as->set_reason(o.reason);
    if (o.state == SiteState::kOk) {
      *s->mutable_expansion() = o.expansion;
      *as->mutable_expansion() = std::move(o.expansion);
    }
  }
  entry.set_decision(complete ? v1::AUDIT_DECISION_ALLOWED
                              : v1::AUDIT_DECISION_PARTIAL);
  entry.add_reasons("explain: expansion only; no data read, no budget charged");
  entry.set_latency_micros(absl::ToInt64Microseconds(clock_->Now() - start));
  absl::StatusOr<uint64_t> index = AppendBounded(entry);
  if (!index.ok()) return AuditUnavailable(index.status());
  response.set_audit_index(*index);
  return response;
}

}  // namespace passerelle::gateway
