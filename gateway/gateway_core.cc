#include "gateway/gateway_core.h"

#include <algorithm>
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/crash_point.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "gateway/expansion.h"
#include "gateway/noise_prewarm.h"
#include "ledger/ledger.h"
#include "privacy/cost.h"
#include "privacy/disclosure.h"
#include "privacy/random.h"
#include "query/canonical.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/validate.h"

namespace passerelle::gateway {
namespace {

// Length-prefixed, so that no two distinct keys (from a node: untrusted)
// share a string.
std::string KeyString(const v1::CellKey& key) {
  std::string out;
  for (const v1::DimensionValue& v : key.values()) {
    absl::StrAppend(&out, v.dimension().size(), ":", v.dimension(),
                    v.value().size(), ":", v.value(), ";");
  }
  return out;
}

bool SameKey(const v1::CellKey& a, const v1::CellKey& b) {
  if (a.values_size() != b.values_size()) return false;
  for (int i = 0; i < a.values_size(); ++i) {
    if (a.values(i).dimension() != b.values(i).dimension() ||
        a.values(i).value() != b.values(i).value()) {
      return false;
    }
  }
  return true;
}

bool HasSiteDimension(const v1::Query& q) {
  for (const v1::Dimension& d : q.group_by()) {
    if (d.kind() == v1::Dimension::SITE) return true;
  }
  return false;
}

// Puts a node's cells in the order of `keys`; a node that returns a
// different cell set is treated as failed rather than trusted.
absl::StatusOr<std::vector<v1::Cell>> AlignCells(
    const v1::CountResponse& response, std::vector<v1::CellKey> keys) {
  for (const v1::Cell& c : response.cells()) {
    if (c.count() < 0) {
      return absl::DataLossError("node returned a negative count");
    }
  }
  std::vector<v1::Cell> cells;
  cells.reserve(keys.size());
  // Nodes answer in the order of the keys: checked cell by cell, no lookup.
  bool in_order = static_cast<size_t>(response.cells_size()) == keys.size();
  for (size_t i = 0; in_order && i < keys.size(); ++i) {
    in_order = SameKey(response.cells(static_cast<int>(i)).key(), keys[i]);
  }
  if (in_order) {
    for (size_t i = 0; i < keys.size(); ++i) {
      v1::Cell& c = cells.emplace_back();
      *c.mutable_key() = std::move(keys[i]);
      c.set_count(response.cells(static_cast<int>(i)).count());
    }
    return cells;
  }
  std::map<std::string, int64_t> by_key;
  for (const v1::Cell& c : response.cells()) {
    if (!by_key.emplace(KeyString(c.key()), c.count()).second) {
      return absl::DataLossError("node returned a cell twice");
    }
  }
  if (by_key.size() != keys.size()) {
    return absl::DataLossError(absl::StrCat("node returned ", by_key.size(),
                                            " cells, expected ", keys.size()));
  }
  for (v1::CellKey& key : keys) {
    auto it = by_key.find(KeyString(key));
    if (it == by_key.end()) {
      return absl::DataLossError(
          "node returned a cell outside the public domain");
    }
    v1::Cell& c = cells.emplace_back();
    c.set_count(it->second);
    *c.mutable_key() = std::move(key);
  }
  return cells;
}

// Lends the released cells of `response` to `entry` and back: the audit
// entry records exactly the cells released without copying them (both
// messages are on the heap, so each swap exchanges pointers). Calling it a
// second time takes the cells back.
void SwapReleasedCells(v1::QueryResponse& response, v1::AuditEntry& entry) {
  for (int i = 0; i < response.sites_size() && i < entry.sites_size(); ++i) {
    entry.mutable_sites(i)->mutable_released_cells()->Swap(
        response.mutable_sites(i)->mutable_cells());
  }
  entry.mutable_released_cells()->Swap(response.mutable_combined());
}

absl::Duration SiteTimeout(const GatewayOptions& options,
                           const std::string& site) {
  auto t = options.site_timeouts.find(site);
  return t == options.site_timeouts.end() ? options.default_timeout : t->second;
}

const char* SiteStatusName(v1::SiteStatus s) {
  switch (s) {
    case v1::SITE_STATUS_OK:
      return "ok";
    case v1::SITE_STATUS_TIMED_OUT:
      return "timed_out";
    case v1::SITE_STATUS_REFUSED:
      return "refused";
    default:
      return "failed";
  }
}

// Every field of a researcher's request against common/limits.h, before any
// of it is recorded.
absl::Status CheckQueryRequest(const v1::QueryRequest& r) {
  PASSERELLE_RETURN_IF_ERROR(limits::CheckId("project", r.project()));
  PASSERELLE_RETURN_IF_ERROR(
      limits::CheckId("purpose", r.purpose(), limits::kMaxPurposeBytes));
  if (r.sites_size() > limits::kMaxSites) {
    return absl::InvalidArgumentError(
        absl::StrCat("sites names ", r.sites_size(),
                     " sites, over the limit of ", limits::kMaxSites));
  }
  for (int i = 0; i < r.sites_size(); ++i) {
    PASSERELLE_RETURN_IF_ERROR(
        limits::CheckId(absl::StrCat("sites[", i, "]"), r.sites(i)));
  }
  if (r.has_ast()) {
    return limits::CheckSize("query (AST)", r.ast().ByteSizeLong(),
                             limits::kMaxQueryAstBytes);
  }
  return limits::CheckSize("query text", r.text().size(),
                           limits::kMaxQueryTextBytes);
}

// Reasons cut to limits::kMaxReasonBytes each and limits::kMaxReasons in
// all; site reasons (a node's messages) likewise.
void BoundReasons(v1::AuditEntry& entry) {
  auto* reasons = entry.mutable_reasons();
  for (std::string& r : *reasons) {
    if (r.size() > limits::kMaxReasonBytes) r = limits::BoundText(r);
  }
  if (reasons->size() > limits::kMaxReasons) {
    const int omitted = reasons->size() - (limits::kMaxReasons - 1);
    reasons->DeleteSubrange(limits::kMaxReasons - 1, omitted);
    entry.add_reasons(absl::StrCat("[... ", omitted, " more reasons omitted]"));
  }
  for (v1::AuditSiteStatus& site : *entry.mutable_sites()) {
    if (site.reason().size() > limits::kMaxReasonBytes) {
      site.set_reason(limits::BoundText(site.reason()));
    }
  }
}

}  // namespace

void GatewayCore::NoteSnapshot(const std::string& site,
                               const std::string& snapshot) {
  absl::MutexLock lock(&mu_);
  if (snapshot.empty()) {
    known_snapshots_.erase(site);
  } else {
    known_snapshots_[site] = snapshot;
  }
}

std::string GatewayCore::KnownSnapshot(const std::string& site) const {
  absl::MutexLock lock(&mu_);
  auto it = known_snapshots_.find(site);
  return it == known_snapshots_.end() ? "" : it->second;
}

bool GatewayCore::NodesStillServe(const std::vector<NodeClient*>& clients,
                                  const std::vector<SiteSnapshot>& known,
                                  absl::Time deadline) {
  // All sites at once, each within its own timeout: a stalled site costs
  // its timeout once, not the default timeout on top of the fan-out's.
  const absl::Time now = clock_->Now();
  std::vector<absl::StatusOr<v1::NodeInfo>> infos(
      clients.size(), absl::UnknownError("not asked"));
  std::vector<std::thread> askers;
  for (size_t i = 0; i < clients.size(); ++i) {
    const absl::Time by =
        std::min(deadline, now + SiteTimeout(options_, clients[i]->site()));
    askers.emplace_back(
        [&infos, &clients, i, by] { infos[i] = clients[i]->Info(by); });
  }
  for (std::thread& t : askers) t.join();
  bool same = true;
  for (size_t i = 0; i < clients.size(); ++i) {
    NoteSnapshot(clients[i]->site(), infos[i].ok() ? infos[i]->snapshot() : "");
    same &= infos[i].ok() && infos[i]->snapshot() == known[i].snapshot;
  }
  return same;
}

void GatewayCore::RefreshNodeInfo(absl::Time deadline) {
  for (const auto& [site, client] : nodes_) {
    absl::StatusOr<v1::NodeInfo> info = client->Info(deadline);
    NoteSnapshot(site, info.ok() ? info->snapshot() : "");
  }
}

GatewayCore::GatewayCore(GatewayOptions options, PolicyProvider policy,
                         ledger::BudgetLedger* ledger, AuditSink* audit,
                         privacy::NoiseSource* noise,
                         privacy::RandomSource* ids,
                         std::vector<NodeClient*> nodes, Clock* clock,
                         ReleaseCache* cache, RefusalLimiter* refusal_limiter)
    : options_(std::move(options)),
      policy_(std::move(policy)),
      ledger_(ledger),
      audit_(audit),
      noise_(noise),
      ids_(ids),
      clock_(clock),
      cache_(cache),
      refusal_limiter_(refusal_limiter) {
  for (NodeClient* n : nodes) nodes_[n->site()] = n;
}

absl::StatusOr<std::string> GatewayCore::NewRequestId() {
  uint8_t bytes[16];
  absl::Status filled = ids_->Fill(absl::MakeSpan(bytes));
  if (!filled.ok()) {
    CountRefusal(options_.refusals, refusal::kRandomFailure);
    return filled;
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::Status GatewayCore::AuditUnavailable(const absl::Status& why) {
  std::cerr << "passerelle gateway: audit append failed, nothing released: "
            << why.message() << "\n";
  return absl::UnavailableError(
      "audit log unavailable, nothing released (details in the gateway's "
      "log)");
}

absl::StatusOr<uint64_t> GatewayCore::AppendBounded(v1::AuditEntry& entry) {
  BoundReasons(entry);
  size_t size = entry.ByteSizeLong();
  // Expansions are public metadata (the response carries them whole): the
  // entry drops what does not fit, and says so, before the entry as a
  // whole is given up.
  if (size > limits::kMaxAuditEntryBytes &&
      FitExpansions(&entry, limits::kMaxAuditEntryBytes)) {
    size = entry.ByteSizeLong();
  }
  if (size <= limits::kMaxAuditEntryBytes) return audit_->Append(entry);
  v1::AuditEntry small;
  small.set_operation(entry.operation());
  small.set_time_unix_micros(entry.time_unix_micros());
  small.set_request_id(entry.request_id());
  small.set_caller(entry.caller());
  small.set_caller_role(entry.caller_role());
  small.set_project(entry.project());
  small.set_policy_version(entry.policy_version());
  small.set_decision(v1::AUDIT_DECISION_FAILED);
  small.set_epsilon_charged(entry.epsilon_charged());
  small.set_rho_charged(entry.rho_charged());
  small.set_latency_micros(entry.latency_micros());
  const std::string why = absl::StrCat(
      "the audit entry would be ", size, " bytes, over the limit of ",
      limits::kMaxAuditEntryBytes, " bytes; nothing released");
  small.add_reasons(why);
  absl::StatusOr<uint64_t> index = audit_->Append(small);
  if (!index.ok()) return index;
  return absl::InternalError(why);
}

absl::Status GatewayCore::FlushRefusalSummaries(bool all) {
  if (refusal_limiter_ == nullptr) return absl::OkStatus();
  std::vector<RefusalLimiter::Summary> due =
      all ? refusal_limiter_->TakeAll() : refusal_limiter_->TakeDue();
  absl::Status result;
  for (const RefusalLimiter::Summary& s : due) {
    v1::AuditEntry entry;
    entry.set_operation("refusal_summary");
    entry.set_time_unix_micros(absl::ToUnixMicros(s.last));
    entry.set_caller(s.identity);
    entry.set_decision(v1::AUDIT_DECISION_DENIED);
    entry.add_reasons(refusal_limiter_->Describe(s));
    absl::StatusOr<uint64_t> index = AppendBounded(entry);
    if (!index.ok() && result.ok()) result = index.status();
  }
  return result;
}

absl::Status GatewayCore::Refuse(v1::AuditEntry& entry, absl::Time start,
                                 absl::Status status, bool limitable) {
  if (refusal_limiter_ != nullptr) {
    // A failure here shows again on this refusal's own append.
    (void)FlushRefusalSummaries();
    if (limitable && !refusal_limiter_->Admit(entry.caller())) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "too many refused requests from ", entry.caller(),
          "; this refusal is counted in a periodic audit summary instead of "
          "its own entry: ",
          absl::StatusCodeToString(status.code()), ": ",
          limits::BoundText(status.message(), 256)));
    }
  }
  entry.set_latency_micros(absl::ToInt64Microseconds(clock_->Now() - start));
  if (entry.reasons().empty()) entry.add_reasons(std::string(status.message()));
  absl::StatusOr<uint64_t> index = AppendBounded(entry);
  if (!index.ok()) {
    return AuditUnavailable(index.status());
  }
  return status;
}

absl::StatusOr<GatewayCore::Admission> GatewayCore::Admit(
    const std::string& caller, const v1::QueryRequest& request,
    absl::Time start, v1::AuditEntry& entry) {
  // Nothing the caller sent is recorded before it is checked against the
  // limits; a refusal records only a quoted prefix (in its reason).
  absl::Status within = CheckQueryRequest(request);
  if (!within.ok()) return Refuse(entry, start, within);
  entry.set_project(request.project());
  entry.set_purpose(request.purpose());

  // 1. The query: parsed here from text, or validated when sent as an AST.
  v1::Query query;
  if (request.has_ast()) {
    query = request.ast();
    absl::Status valid = query::ValidateQuery(query);
    if (!valid.ok()) return Refuse(entry, start, valid);
  } else {
    absl::StatusOr<v1::Query> parsed = query::ParseQuery(request.text());
    if (!parsed.ok()) return Refuse(entry, start, parsed.status());
    query = *std::move(parsed);
  }
  // Ages are counted on the date of the request (UTC) unless the researcher
  // gave one: pinned before the canonical form (audit, release-cache key) and
  // the fan-out, so every site counts on the same day and no site falls back
  // on a date of its own.
  query::PinReferenceDate(start, &query);
  const std::string canonical = query::CanonicalText(query);
  absl::Status short_enough = limits::CheckSize(
      "canonical query", canonical.size(), limits::kMaxCanonicalQueryBytes);
  if (!short_enough.ok()) return Refuse(entry, start, short_enough);
  entry.set_canonical_query(canonical);

  // 2. Policy: default deny, with the reasons.
  std::shared_ptr<const policy::Policy> policy = policy_();
  if (policy == nullptr) {
    return Refuse(entry, start, absl::UnavailableError("no policy loaded"));
  }
  policy::AccessRequest access;
  access.identity = caller;
  access.project = request.project();
  access.purpose = request.purpose();
  access.query = &query;
  access.sites = {request.sites().begin(), request.sites().end()};
  access.now = start;
  const v1::Decision decision = policy->Decide(access);
  entry.set_policy_version(decision.policy_version());
  entry.set_caller_role(policy::RoleName(decision.obligations().role()));
  const v1::Obligations& ob = decision.obligations();
  if (!decision.allow()) {
    entry.set_decision(v1::AUDIT_DECISION_DENIED);
    for (const std::string& r : decision.reasons()) entry.add_reasons(r);
    // The caller hears the denial without rule locations, and the same
    // words for a project that does not exist and one they are not in.
    return Refuse(entry, start,
                  absl::PermissionDeniedError(
                      policy::CallerStatus(decision, caller, request.project())
                          .message()));
  }
  if (!ob.purpose().empty()) entry.set_purpose(ob.purpose());
  std::vector<NodeClient*> clients;
  for (const v1::SiteObligation& s : ob.sites()) {
    entry.add_sites_requested(s.site());
    auto it = nodes_.find(s.site());
    if (it == nodes_.end()) {
      return Refuse(entry, start,
                    absl::FailedPreconditionError(absl::StrCat(
                        "policy allows site \"", s.site(),
                        "\" but the gateway has no endpoint for it")));
    }
    clients.push_back(it->second);
  }
  if (clients.empty()) {
    entry.set_decision(v1::AUDIT_DECISION_DENIED);
    return Refuse(entry, start, absl::PermissionDeniedError("no site to ask"));
  }
  Admission admitted;
  admitted.query = std::move(query);
  admitted.canonical = canonical;
  admitted.policy = std::move(policy);
  admitted.decision = decision;
  admitted.clients = std::move(clients);
  return admitted;
}

absl::StatusOr<v1::QueryResponse> GatewayCore::Query(
    const std::string& caller, const v1::QueryRequest& request,
    absl::Time deadline) {
  const absl::Time start = clock_->Now();
  // On the heap, as the response is: the released cells are lent to it for
  // the audit append (SwapReleasedCells).
  v1::AuditEntry entry;
  entry.set_time_unix_micros(absl::ToUnixMicros(start));
  entry.set_caller(limits::RecordedIdentity(caller));
  entry.set_decision(v1::AUDIT_DECISION_FAILED);
  PASSERELLE_ASSIGN_OR_RETURN(std::string request_id, NewRequestId());
  entry.set_request_id(request_id);
  PASSERELLE_ASSIGN_OR_RETURN(Admission admitted,
                              Admit(caller, request, start, entry));
  v1::Query& query = admitted.query;
  const std::string& canonical = admitted.canonical;
  const std::shared_ptr<const policy::Policy>& policy = admitted.policy;
  const v1::Decision& decision = admitted.decision;
  const v1::Obligations& ob = decision.obligations();
  const std::vector<NodeClient*>& clients = admitted.clients;
  // The entry records every released cell (combined and per site): a
  // breakdown with more than it may hold is refused before any budget.
  {
    const size_t cells = query::CountCells(query, clients.size()) +
                         clients.size() * query::CountCells(query, 1);
    if (cells > limits::kMaxReleasedCells) {
      return Refuse(
          entry, start,
          absl::InvalidArgumentError(absl::StrCat(
              "the breakdown would release ", cells,
              " cells (combined and per site) from ", clients.size(),
              " sites, over the limit of ", limits::kMaxReleasedCells,
              " an audit entry records; use fewer dimensions or wider "
              "bands")));
    }
  }
  // Exact mode decides a cohort's suppression pattern over all of the
  // project's sites at once: a subset's exact counts could be subtracted
  // from the combined count of an earlier release.
  if (ob.exact_mode() && !request.sites().empty()) {
    const v1::Project* project = policy->FindProject(ob.project());
    const std::set<std::string> asked(request.sites().begin(),
                                      request.sites().end());
    std::set<std::string> all;
    if (project != nullptr)
      all = {project->sites().begin(), project->sites().end()};
    if (asked != all) {
      const std::string reason = absl::StrCat(
          "deny: project ", ob.project(),
          " uses exact mode, which releases a cohort only over all of the "
          "project's sites (",
          absl::StrJoin(all, ", "), "); this request names ",
          absl::StrJoin(asked, ", "),
          " (ask without naming sites, or name them all)");
      entry.set_decision(v1::AUDIT_DECISION_DENIED);
      entry.add_reasons(reason);
      return Refuse(entry, start, absl::PermissionDeniedError(reason));
    }
  }

  // 3. Budget before data: the cost comes from the parameters alone.
  // The same parameters the policy's noise was prewarmed with.
  const privacy::DisclosureParams params = DisclosureParamsFor(ob);

  // Repeat protection: the same query under the same parameters and node
  // snapshots gets the answer already released, at no cost and without
  // contacting any node.
  if (cache_ != nullptr) {
    std::vector<SiteSnapshot> known;
    bool all_known = true;
    for (size_t i = 0; i < clients.size(); ++i) {
      const std::string snap = KnownSnapshot(clients[i]->site());
      all_known &= !snap.empty();
      known.push_back({clients[i]->site(),
                       ob.sites(static_cast<int>(i)).min_cell_size(), snap});
    }
    if (all_known) {
      absl::StatusOr<std::optional<v1::CachedRelease>> hit =
          cache_->Get(ReleaseKey(ob.project(), canonical, ob, known));
      // An unreadable cache is a miss: the query is charged like a new one.
      // Before answering from it, every node must still be up and hold the
      // same snapshot (metadata only, no data): a repeat is never served
      // for a site that is down or has new data.
      if (hit.ok() && hit->has_value() &&
          NodesStillServe(clients, known, deadline)) {
        return ServeRepeat(entry, start, request_id, **hit);
      }
    }
  }

  absl::StatusOr<privacy::QueryCost> cost =
      privacy::ComputeQueryCost(params, static_cast<int>(clients.size()));
  if (!cost.ok()) return Refuse(entry, start, cost.status());
  absl::StatusOr<ledger::Charge> charge = ledger_->Reserve(
      ob.project(), caller, *cost,
      ledger::CapsFromBudgets(ob.budget(), ob.federation_budget()), start,
      request_id);
  if (!charge.ok()) {
    entry.set_decision(v1::AUDIT_DECISION_DENIED);
    return Refuse(entry, start, charge.status());
  }
  entry.set_epsilon_charged(cost->epsilon);
  entry.set_rho_charged(cost->rho);
  PASSERELLE_CRASH_POINT("gateway.query.after_reserve");

  // 4. Fan-out under the caller's deadline and each site's own timeout.
  std::vector<v1::CountRequest> requests;
  std::vector<absl::Time> deadlines;
  for (size_t i = 0; i < clients.size(); ++i) {
    v1::CountRequest& r = requests.emplace_back();
    r.set_request_id(request_id);
    *r.mutable_query() = query;
    r.set_project(ob.project());
    r.set_min_cell_size(ob.sites(static_cast<int>(i)).min_cell_size());
    // From the query's start: time spent confirming a repeat counts too.
    deadlines.push_back(
        std::min(deadline, start + SiteTimeout(options_, clients[i]->site())));
  }
  std::vector<SiteOutcome> outcomes =
      FanOut(clients, requests, deadlines, options_.fan_out);
  PASSERELLE_CRASH_POINT("gateway.query.after_fanout");

  // 5. Disclosure control per cell, per site and combined.
  v1::QueryResponse response;
  response.set_request_id(request_id);
  response.set_canonical_query(canonical);
  response.set_policy_version(decision.policy_version());
  response.set_epsilon_charged(cost->epsilon);
  response.set_rho_charged(cost->rho);
  std::vector<std::string> all_sites;
  for (NodeClient* c : clients) all_sites.push_back(c->site());
  std::vector<privacy::SiteInput> inputs;
  std::vector<int> input_site;  // Index into outcomes.
  bool complete = true;
  const bool by_site = HasSiteDimension(query);
  // What each site says about its crosswalk expansion (checked: a node
  // that contradicts the query is treated as failed, as for its cells).
  std::vector<std::string> expansion_notes;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    SiteOutcome& o = outcomes[i];
    if (o.state == SiteState::kOk) {
      std::vector<std::string> cut;
      absl::Status expansion = CheckSiteExpansion(
          o.site, query, o.response.mutable_expansion(), &cut);
      if (expansion.ok()) {
        for (std::string& n : cut) expansion_notes.push_back(std::move(n));
        for (std::string& n : UnreachedNotes(o.site, o.response.expansion())) {
          expansion_notes.push_back(std::move(n));
        }
      } else {
        o.state = SiteState::kFailed;
        o.reason = std::string(expansion.message());
      }
    }
    if (o.state == SiteState::kOk) {
      absl::StatusOr<std::vector<v1::Cell>> cells = AlignCells(
          o.response, query::EnumerateCells(query, {clients[i]->site()}));
      if (cells.ok()) {
        privacy::SiteInput& in = inputs.emplace_back();
        in.site = o.site;
        in.site_min_cell_size = ob.sites(static_cast<int>(i)).min_cell_size();
        in.exact = *std::move(cells);
        input_site.push_back(static_cast<int>(i));
      } else {
        o.state = SiteState::kFailed;
        o.reason = std::string(cells.status().message());
      }
    }
    if (o.state != SiteState::kOk) complete = false;
  }
  std::vector<std::vector<v1::ReleasedCell>> per_site(outcomes.size());
  std::vector<v1::ReleasedCell> combined;
  std::vector<std::string> notes;
  if (params.exact_mode && !complete) {
    // The present sites' exact counts could be subtracted from an earlier
    // complete release (or a later one): nothing exact is released.
    notes.push_back(
        "EXACT MODE: a site is missing, and exact mode releases nothing from "
        "a partial answer (the other sites' exact counts could be subtracted "
        "from a complete release); ask again when every site answers.");
  } else if (params.exact_mode) {
    // One table for every form of the cohort: the cells without the `site`
    // dimension, every site of the project; `group by site` is a projection
    // of it (each site's row), so it releases what the plain query does.
    std::vector<std::vector<v1::CellKey>> keys(inputs.size());
    for (size_t g = 0; g < inputs.size(); ++g) {
      for (v1::Cell& c : inputs[g].exact) {
        keys[g].push_back(c.key());
        if (!by_site) continue;
        v1::CellKey stripped;
        for (const v1::DimensionValue& v : c.key().values()) {
          if (v.dimension() != "site") *stripped.add_values() = v;
        }
        *c.mutable_key() = std::move(stripped);
      }
    }
    absl::StatusOr<privacy::Release> release =
        privacy::ReleaseCells(inputs, params, *noise_);
    if (!release.ok()) return Refuse(entry, start, release.status());
    std::map<std::string, v1::ReleasedCell> by_key;
    for (size_t g = 0; g < inputs.size(); ++g) {
      std::vector<v1::ReleasedCell>& cells = release->per_site[g];
      for (size_t j = 0; j < cells.size(); ++j) {
        *cells[j].mutable_key() = keys[g][j];
        if (by_site) by_key[KeyString(keys[g][j])] = cells[j];
      }
      per_site[input_site[g]] = std::move(cells);
    }
    if (by_site) {
      for (const v1::CellKey& key : query::EnumerateCells(query, all_sites)) {
        auto it = by_key.find(KeyString(key));
        if (it != by_key.end()) combined.push_back(std::move(it->second));
      }
    } else {
      combined = std::move(release->combined);
    }
    notes = std::move(release->notes);
  } else if (!inputs.empty()) {
    // With a `site` dimension each site fills only its own cells: release
    // each site alone and lay the results side by side.
    std::vector<std::vector<privacy::SiteInput>> groups;
    if (by_site) {
      for (privacy::SiteInput& in : inputs) groups.push_back({std::move(in)});
    } else {
      groups.push_back(std::move(inputs));
    }
    size_t next = 0;
    std::map<std::string, v1::ReleasedCell> combined_by_key;
    for (const auto& group : groups) {
      absl::StatusOr<privacy::Release> release =
          privacy::ReleaseCells(group, params, *noise_);
      if (!release.ok()) {
        CountRefusal(options_.refusals, refusal::kNoiseFailure);
        // Budget stays charged: the nodes were reached. Always recorded in
        // full: recovery matches the charge with this entry.
        return Refuse(entry, start, release.status(), /*limitable=*/false);
      }
      for (size_t g = 0; g < group.size(); ++g, ++next) {
        per_site[input_site[next]] = std::move(release->per_site[g]);
      }
      for (v1::ReleasedCell& c : release->combined) {
        combined_by_key[KeyString(c.key())] = std::move(c);
      }
      for (std::string& n : release->notes) {
        if (std::find(notes.begin(), notes.end(), n) == notes.end()) {
          notes.push_back(std::move(n));
        }
      }
    }
    for (const v1::CellKey& key : query::EnumerateCells(query, all_sites)) {
      auto it = combined_by_key.find(KeyString(key));
      if (it != combined_by_key.end())
        combined.push_back(std::move(it->second));
    }
  }
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const SiteOutcome& o = outcomes[i];
    // The caller reads a site's reason without where its rules are written
    // (a site policy's file and line); the entry keeps it whole.
    const std::string caller_reason = policy::WithoutLocations(o.reason);
    v1::SiteResult* s = response.add_sites();
    s->set_site(o.site);
    s->set_status(ToSiteStatus(o.state));
    s->set_reason(caller_reason);
    if (o.state == SiteState::kOk) s->set_snapshot(o.response.snapshot());
    for (v1::ReleasedCell& c : per_site[i]) *s->add_cells() = std::move(c);
    v1::AuditSiteStatus* as = entry.add_sites();
    as->set_site(o.site);
    as->set_status(SiteStateName(o.state));
    as->set_reason(o.reason);
    if (o.state == SiteState::kOk) {
      as->set_snapshot(o.response.snapshot());
      as->set_node_audit_index(o.response.audit_index());
      *s->mutable_expansion() = o.response.expansion();
      *as->mutable_expansion() = o.response.expansion();
    }
    if (o.state != SiteState::kOk) {
      notes.push_back(absl::StrCat(
          "PARTIAL: site ", o.site, " is missing (", SiteStateName(o.state),
          ": ", caller_reason, ")",
          params.exact_mode ? "; nothing is released (exact mode)"
                            : "; combined counts cover the other sites only"));
    }
  }
  for (std::string& n : expansion_notes) notes.push_back(std::move(n));
  response.set_complete(complete);
  for (v1::ReleasedCell& c : combined) *response.add_combined() = std::move(c);
  for (std::string& n : notes) response.add_notes(std::move(n));

  // 6. Audit before release.
  entry.set_decision(complete ? v1::AUDIT_DECISION_ALLOWED
                              : v1::AUDIT_DECISION_PARTIAL);
  entry.set_latency_micros(absl::ToInt64Microseconds(clock_->Now() - start));
  PASSERELLE_CRASH_POINT("gateway.query.before_audit");
  SwapReleasedCells(response, entry);
  absl::StatusOr<uint64_t> index = AppendBounded(entry);
  SwapReleasedCells(response, entry);
  if (!index.ok()) {
    return AuditUnavailable(index.status());
  }
  PASSERELLE_CRASH_POINT("gateway.query.after_audit");
  response.set_audit_index(*index);
  for (const SiteOutcome& o : outcomes) {
    if (o.state == SiteState::kOk) NoteSnapshot(o.site, o.response.snapshot());
  }
  if (cache_ != nullptr && complete) {
    std::vector<SiteSnapshot> actual;
    for (size_t i = 0; i < outcomes.size(); ++i) {
      actual.push_back({outcomes[i].site,
                        ob.sites(static_cast<int>(i)).min_cell_size(),
                        outcomes[i].response.snapshot()});
    }
    // The response is lent to the cached release (a swap, not a copy) and
    // taken back once written.
    v1::CachedRelease release;
    release.mutable_response()->Swap(&response);
    release.set_first_audit_index(*index);
    release.set_released_unix_micros(entry.time_unix_micros());
    // Already released and audited: a failed write only loses the discount.
    (void)cache_->Put(ReleaseKey(ob.project(), canonical, ob, actual), release);
    response.Swap(release.mutable_response());
  }
  PASSERELLE_CRASH_POINT("gateway.query.before_reply");
  return response;
}

absl::StatusOr<v1::QueryResponse> GatewayCore::ServeRepeat(
    v1::AuditEntry& entry, absl::Time start, const std::string& request_id,
    const v1::CachedRelease& cached) {
  v1::QueryResponse response = cached.response();
  response.set_request_id(request_id);
  response.set_epsilon_charged(0);
  response.set_rho_charged(0);
  response.set_repeat(true);
  response.set_first_audit_index(cached.first_audit_index());
  response.add_notes(absl::StrCat(
      "REPEAT: the same query under the same parameters and data snapshots was "
      "released "
      "before (audit entry #",
      cached.first_audit_index(), ", ",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                       absl::FromUnixMicros(cached.released_unix_micros()),
                       absl::UTCTimeZone()),
      "): the same answer is returned and no budget is charged"));
  entry.set_decision(v1::AUDIT_DECISION_ALLOWED);
  entry.set_repeat_of_index(cached.first_audit_index());
  entry.add_reasons("repeat of an earlier release; no budget charged");
  for (const v1::SiteResult& s : response.sites()) {
    entry.add_sites_requested(s.site());
    v1::AuditSiteStatus* as = entry.add_sites();
    as->set_site(s.site());
    as->set_status(SiteStatusName(s.status()));
    as->set_reason(s.reason());
    as->set_snapshot(s.snapshot());
    *as->mutable_expansion() = s.expansion();
  }
  entry.set_latency_micros(absl::ToInt64Microseconds(clock_->Now() - start));
  SwapReleasedCells(response, entry);
  absl::StatusOr<uint64_t> index = AppendBounded(entry);
  SwapReleasedCells(response, entry);
  if (!index.ok()) {
    return AuditUnavailable(index.status());
  }
  response.set_audit_index(*index);
  return response;
}

namespace {

v1::BudgetAccount ToAccount(const ledger::Account& a) {
  constexpr double kMicro = 1e-6;
  v1::BudgetAccount out;
  out.set_researcher(a.researcher);
  out.set_epsilon_spent(static_cast<double>(a.epsilon_spent_micros) * kMicro);
  out.set_rho_spent(static_cast<double>(a.rho_spent_micros) * kMicro);
  if (a.epsilon_cap_micros > 0)
    out.set_epsilon_cap(static_cast<double>(a.epsilon_cap_micros) * kMicro);
  if (a.rho_cap_micros > 0)
    out.set_rho_cap(static_cast<double>(a.rho_cap_micros) * kMicro);
  if (a.epsilon_remaining_micros) {
    out.set_epsilon_remaining(static_cast<double>(*a.epsilon_remaining_micros) *
                              kMicro);
  }
  if (a.rho_remaining_micros) {
    out.set_rho_remaining(static_cast<double>(*a.rho_remaining_micros) *
                          kMicro);
  }
  return out;
}

}  // namespace

absl::StatusOr<v1::BudgetResponse> GatewayCore::Budget(
    const std::string& caller, const v1::BudgetRequest& request) {
  const absl::Time start = clock_->Now();
  v1::AuditEntry entry;
  entry.set_operation("budget");
  entry.set_time_unix_micros(absl::ToUnixMicros(start));
  entry.set_caller(limits::RecordedIdentity(caller));
  entry.set_decision(v1::AUDIT_DECISION_FAILED);
  PASSERELLE_ASSIGN_OR_RETURN(std::string request_id, NewRequestId());
  entry.set_request_id(request_id);
  absl::Status within = limits::CheckId("project", request.project());
  if (!within.ok()) return Refuse(entry, start, within);
  entry.set_project(request.project());
  if (request.project().empty()) {
    return Refuse(entry, start,
                  absl::InvalidArgumentError("budget: project is required"));
  }
  std::shared_ptr<const policy::Policy> policy = policy_();
  if (policy == nullptr) {
    return Refuse(entry, start, absl::UnavailableError("no policy loaded"));
  }
  entry.set_policy_version(policy->version());
  const v1::Project* project = policy->FindProject(request.project());
  // Stewards and auditors see every researcher; a researcher sees the
  // project and their own account.
  v1::Member::Role role = v1::Member::ROLE_UNSPECIFIED;
  std::vector<std::string> reasons;
  for (v1::Member::Role r :
       {v1::Member::STEWARD, v1::Member::AUDITOR, v1::Member::RESEARCHER}) {
    v1::Decision d = policy->DecideRole(caller, r, request.project());
    if (d.allow()) {
      role = r;
      break;
    }
    for (const std::string& reason : d.reasons()) reasons.push_back(reason);
  }
  if (project == nullptr || role == v1::Member::ROLE_UNSPECIFIED) {
    entry.set_decision(v1::AUDIT_DECISION_DENIED);
    if (reasons.empty())
      reasons.push_back("not a member of project " + request.project());
    for (const std::string& r : reasons) entry.add_reasons(r);
    // The same words whether the project exists or not (the reasons above,
    // in the audit entry, say which).
    return Refuse(
        entry, start,
        absl::PermissionDeniedError(absl::StrCat(
            "budget of project \"", request.project(), "\": \"", caller,
            "\" is not a member of it, or there is no such "
            "project")));
  }
  entry.set_caller_role(policy::RoleName(role));
  const v1::Budget federation_budget =
      policy->federation() != nullptr
          ? policy->federation()->researcher_budget()
          : v1::Budget();
  absl::StatusOr<ledger::BudgetView> view = ledger_->Show(
      request.project(),
      ledger::CapsFromBudgets(project->budget(), federation_budget));
  if (!view.ok()) return Refuse(entry, start, view.status());
  v1::BudgetResponse response;
  response.set_project(view->project);
  response.set_policy_version(policy->version());
  *response.mutable_project_account() = ToAccount(view->project_account);
  for (const ledger::Account& a : view->researchers) {
    if (role == v1::Member::RESEARCHER && a.researcher != caller) continue;
    *response.add_researchers() = ToAccount(a);
  }
  // Federation-wide accounts (spending across every project), when the
  // federation caps them: the project's stewards and auditors see its
  // researchers', a researcher their own.
  for (const ledger::Account& a : view->federation_researchers) {
    if (policy->federation() == nullptr ||
        !policy->federation()->has_researcher_budget()) {
      break;
    }
    if (role == v1::Member::RESEARCHER && a.researcher != caller) continue;
    *response.add_federation_researchers() = ToAccount(a);
    response.add_federation_next_reset_unix(
        a.next_reset ? absl::ToUnixSeconds(*a.next_reset) : 0);
  }
  if (view->next_reset)
    response.set_next_reset_unix(absl::ToUnixSeconds(*view->next_reset));
  entry.set_decision(v1::AUDIT_DECISION_ALLOWED);
  entry.set_latency_micros(absl::ToInt64Microseconds(clock_->Now() - start));
  absl::StatusOr<uint64_t> index = AppendBounded(entry);
  if (!index.ok()) {
    return AuditUnavailable(index.status());
  }
  return response;
}

}  // namespace passerelle::gateway
