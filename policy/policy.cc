// Decisions (Policy::Decide, DecideNode, DecideRole).
#include "policy/policy.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "policy/query_features.h"

namespace passerelle::policy {

namespace v1 = ::passerelle::v1;

namespace {

using StrList = google::protobuf::RepeatedPtrField<std::string>;

// The strictest (smallest positive) of two per-query privacy parameters; 0
// means "not set at this level".
void TightenPrivacy(double& cur, double v) {
  if (v > 0 && (cur <= 0 || v < cur)) cur = v;
}

bool Contains(const StrList& list, absl::string_view v) {
  return std::find(list.begin(), list.end(), v) != list.end();
}

std::string MechanismName(v1::Disclosure::Mechanism m) {
  switch (m) {
    case v1::Disclosure::LAPLACE:
      return "LAPLACE";
    case v1::Disclosure::GAUSSIAN:
      return "GAUSSIAN";
    case v1::Disclosure::EXACT:
      return "EXACT";
    default:
      return "unspecified";
  }
}

// One level of the policy that may restrict a query.
struct Level {
  std::string name;   // "federation", "project diabetes-fr-qc", "site fr"
  std::string where;  // "federation.textproto:12"
  const v1::Scope* scope;
  // At the federation level a list is complete (empty allows nothing); at
  // other levels an empty list does not narrow.
  bool complete;
};

bool ListAllows(const Level& level, const StrList& list,
                absl::string_view value, bool vocabulary) {
  if (list.empty()) return !level.complete;
  for (const std::string& allowed : list) {
    if (vocabulary ? VocabularyCovers(allowed, value) : allowed == value) {
      return true;
    }
  }
  return false;
}

// Everything a forbid rule may look at. Unknown values (absent optionals,
// empty strings) never make a condition hold.
struct MatchContext {
  std::string identity;
  std::string project;
  std::string purpose;
  std::vector<std::string> sites;
  const QueryFeatures* features = nullptr;
  std::optional<int64_t> min_cell_size;
  std::optional<double> epsilon;
  std::optional<double> rho;
  std::optional<bool> exact_mode;
  std::optional<v1::Member::Role> role;
};

bool AnyIn(const StrList& list, const std::vector<std::string>& values) {
  for (const std::string& v : values) {
    if (Contains(list, v)) return true;
  }
  return false;
}

bool AnyIn(const StrList& list, const std::set<std::string>& values) {
  return AnyIn(list, std::vector<std::string>(values.begin(), values.end()));
}

// Whether every condition of `r` holds in `c`.
bool ForbidMatches(const v1::ForbidRule& r, const MatchContext& c) {
  if (!r.identities().empty() && !Contains(r.identities(), c.identity)) {
    return false;
  }
  if (!r.projects().empty() && !Contains(r.projects(), c.project)) return false;
  if (!r.purposes().empty() && !Contains(r.purposes(), c.purpose)) return false;
  if (!r.sites().empty() && !AnyIn(r.sites(), c.sites)) return false;
  if (!r.roles().empty()) {
    if (!c.role) return false;
    if (std::find(r.roles().begin(), r.roles().end(), *c.role) ==
        r.roles().end()) {
      return false;
    }
  }
  bool needs_features = !r.domains().empty() || !r.vocabularies().empty() ||
                        !r.criteria().empty() || !r.dimensions().empty();
  if (needs_features && c.features == nullptr) return false;
  if (!r.domains().empty() && !AnyIn(r.domains(), c.features->domains)) {
    return false;
  }
  if (!r.criteria().empty() && !AnyIn(r.criteria(), c.features->criteria)) {
    return false;
  }
  if (!r.dimensions().empty() &&
      !AnyIn(r.dimensions(), c.features->dimensions)) {
    return false;
  }
  if (!r.vocabularies().empty()) {
    // A rule on a family covers its variants, and a query naming a family
    // reaches every variant, so either direction holds.
    bool hit = false;
    for (const std::string& used : c.features->vocabularies) {
      for (const std::string& v : r.vocabularies()) {
        if (VocabularyCovers(v, used) || VocabularyCovers(used, v)) hit = true;
      }
    }
    if (!hit) return false;
  }
  if (r.min_cell_size_below() > 0 &&
      !(c.min_cell_size && *c.min_cell_size < r.min_cell_size_below())) {
    return false;
  }
  if (r.epsilon_above() > 0 && !(c.epsilon && *c.epsilon > r.epsilon_above())) {
    return false;
  }
  if (r.rho_above() > 0 && !(c.rho && *c.rho > r.rho_above())) return false;
  if (r.has_exact_mode() &&
      !(c.exact_mode && *c.exact_mode == r.exact_mode())) {
    return false;
  }
  return true;
}

std::string ForbidReason(const v1::ForbidRule& r, const std::string& where,
                         absl::string_view scope) {
  return absl::StrCat("deny: forbid ", r.id(), scope, " (", where, "): ",
                      r.description().empty() ? "matched" : r.description());
}

// Checks the query's features against every level; appends deny reasons.
void CheckScopes(const QueryFeatures& f, const std::vector<Level>& levels,
                 std::vector<std::string>& deny) {
  for (const Level& l : levels) {
    if (l.scope == nullptr) continue;
    const v1::Scope& s = *l.scope;
    auto refuse = [&](absl::string_view kind, absl::string_view value) {
      deny.push_back(absl::StrCat("deny: ", kind, " \"", value,
                                  "\" is not allowed by ", l.name, " (",
                                  l.where, ")"));
    };
    for (const std::string& d : f.domains) {
      if (!ListAllows(l, s.domains(), d, false)) refuse("domain", d);
    }
    for (const std::string& v : f.vocabularies) {
      if (!ListAllows(l, s.vocabularies(), v, true)) refuse("vocabulary", v);
    }
    for (const std::string& c : f.criteria) {
      if (!ListAllows(l, s.criteria(), c, false)) refuse("criterion kind", c);
    }
    std::set<std::string> dims(f.dimensions.begin(), f.dimensions.end());
    for (const std::string& d : dims) {
      if (!ListAllows(l, s.dimensions(), d, false)) {
        refuse("breakdown dimension", d);
      }
    }
    for (int32_t w : f.age_band_widths) {
      if (s.min_age_band_width() > 0 && w < s.min_age_band_width()) {
        deny.push_back(absl::StrCat("deny: age_band(", w, ") is narrower than ",
                                    l.name, "'s min_age_band_width ",
                                    s.min_age_band_width(), " (", l.where,
                                    ")"));
      }
    }
  }
}

// Dimensions every level allows, sorted.
std::vector<std::string> AllowedDimensions(const std::vector<Level>& levels) {
  std::vector<std::string> out;
  for (const std::string& d : KnownDimensions()) {
    bool ok = true;
    for (const Level& l : levels) {
      if (l.scope != nullptr &&
          !ListAllows(l, l.scope->dimensions(), d, false)) {
        ok = false;
      }
      if (l.scope == nullptr && l.complete) ok = false;
    }
    if (ok) out.push_back(d);
  }
  return out;
}

// Smallest positive max_breakdown_cells (0: none).
int64_t MaxCells(const std::vector<Level>& levels, const Level** binding) {
  int64_t max = 0;
  for (const Level& l : levels) {
    if (l.scope == nullptr || l.scope->max_breakdown_cells() <= 0) continue;
    if (max == 0 || l.scope->max_breakdown_cells() < max) {
      max = l.scope->max_breakdown_cells();
      *binding = &l;
    }
  }
  return max;
}

void Finish(v1::Decision& d, std::vector<std::string>& deny,
            std::vector<std::string>& permit) {
  d.set_allow(deny.empty());
  if (deny.empty() && permit.empty()) {
    // Default deny: nothing permitted it.
    d.set_allow(false);
    deny.push_back("deny: no rule permits this request (default deny)");
  }
  if (d.allow()) {
    d.set_code(static_cast<int>(absl::StatusCode::kOk));
  } else if (d.code() == 0) {
    d.set_code(static_cast<int>(absl::StatusCode::kPermissionDenied));
  }
  for (std::string& r : deny) d.add_reasons(std::move(r));
  for (std::string& r : permit) d.add_reasons(std::move(r));
}

}  // namespace

const v1::Project* Policy::FindProject(absl::string_view id) const {
  auto it = projects_.find(id);
  return it == projects_.end() ? nullptr : &it->second.msg;
}

std::vector<std::string> Policy::ProjectIds() const {
  std::vector<std::string> ids;
  for (const auto& [id, unused] : projects_) ids.push_back(id);
  return ids;
}

const v1::SitePolicy* Policy::FindSite(absl::string_view id) const {
  auto it = sites_.find(id);
  return it == sites_.end() ? nullptr : &it->second.msg;
}

std::vector<NoiseParameters> Policy::NoiseParameterSets() const {
  std::set<NoiseParameters> out;
  if (!federation_) return {};
  const v1::Disclosure& fd = federation_->disclosure();
  for (const auto& [id, located] : projects_) {
    const v1::Project& project = located.msg;
    const v1::Disclosure& pd = project.disclosure();
    NoiseParameters base;
    base.mechanism = pd.mechanism() != v1::Disclosure::MECHANISM_UNSPECIFIED
                         ? pd.mechanism()
                         : fd.mechanism();
    if (base.mechanism != v1::Disclosure::LAPLACE &&
        base.mechanism != v1::Disclosure::GAUSSIAN) {
      continue;  // Exact mode: no noise.
    }
    double eps = fd.epsilon_per_query(), rho = fd.rho_per_query();
    TightenPrivacy(eps, pd.epsilon_per_query());
    TightenPrivacy(rho, pd.rho_per_query());
    // As Decide: a query's value is the strictest of the federation's, the
    // project's and each site's it asks; the strictest over a set of sites
    // is one site's (or none's), so one value per site covers every subset.
    for (const std::string& site : project.sites()) {
      auto sit = sites_.find(site);
      if (sit == sites_.end()) continue;  // Denied: no site policy.
      const v1::SitePolicy& sp = sit->second.msg;
      if (!sp.projects().empty() && !Contains(sp.projects(), project.id())) {
        continue;  // Denied: the site does not serve the project.
      }
      NoiseParameters n = base;
      double site_eps = eps, site_rho = rho;
      TightenPrivacy(site_eps, sp.disclosure().epsilon_per_query());
      TightenPrivacy(site_rho, sp.disclosure().rho_per_query());
      if (n.mechanism == v1::Disclosure::LAPLACE) n.epsilon = site_eps;
      if (n.mechanism == v1::Disclosure::GAUSSIAN) n.rho = site_rho;
      out.insert(n);
    }
  }
  return {out.begin(), out.end()};
}

v1::Decision Policy::Decide(const AccessRequest& req) const {
  v1::Decision d;
  d.set_policy_version(version_);
  v1::Obligations& ob = *d.mutable_obligations();
  std::vector<std::string> deny, permit;

  if (!federation_) {
    deny.push_back("deny: no federation policy is loaded (default deny)");
    Finish(d, deny, permit);
    return d;
  }
  const v1::Federation& fed = *federation_;
  if (req.identity.empty()) {
    deny.push_back("deny: the caller has no identity");
    d.set_code(static_cast<int>(absl::StatusCode::kUnauthenticated));
    Finish(d, deny, permit);
    return d;
  }

  // Who is asking, in which project and role.
  auto pit = projects_.find(req.project);
  bool known_identity = false;
  for (const auto& [id, p] : projects_) {
    for (const v1::Member& m : p.msg.member()) {
      if (m.identity() == req.identity) known_identity = true;
    }
  }
  for (const v1::Member& m : fed.member()) {
    if (m.identity() == req.identity) known_identity = true;
  }
  if (!known_identity) {
    deny.push_back(absl::StrCat("deny: unknown identity \"", req.identity,
                                "\": not a member of any project (default "
                                "deny)"));
  }
  if (pit == projects_.end()) {
    deny.push_back(absl::StrCat("deny: unknown project \"", req.project, "\""));
    d.set_outside_project(true);
    Finish(d, deny, permit);
    return d;
  }
  const v1::Project& project = pit->second.msg;
  const std::string& pwhere = pit->second.where;
  ob.set_project(project.id());
  std::set<v1::Member::Role> roles;
  for (const v1::Member& m : project.member()) {
    if (m.identity() == req.identity) roles.insert(m.role());
  }
  if (roles.empty()) {
    if (known_identity) {
      deny.push_back(absl::StrCat("deny: \"", req.identity,
                                  "\" is not a member of project ",
                                  project.id(), " (", pwhere, ")"));
    }
    d.set_outside_project(true);
    Finish(d, deny, permit);
    return d;
  }
  if (roles.count(v1::Member::RESEARCHER) == 0) {
    std::vector<std::string> names;
    for (auto r : roles) names.push_back(RoleName(r));
    deny.push_back(absl::StrCat("deny: \"", req.identity, "\" is ",
                                absl::StrJoin(names, " and "), " of project ",
                                project.id(), " (", pwhere,
                                "); only researchers may run queries"));
    ob.set_role(*roles.begin());
    Finish(d, deny, permit);
    return d;
  }
  ob.set_role(v1::Member::RESEARCHER);
  permit.push_back(absl::StrCat("permit: \"", req.identity,
                                "\" is a researcher of project ", project.id(),
                                " (", pwhere, ")"));

  // Validity dates (UTC, inclusive).
  {
    absl::CivilDay from, until;
    bool valid = true;
    if (!project.valid_from().empty() &&
        absl::ParseCivilTime(project.valid_from(), &from) &&
        req.now < absl::FromCivil(from, absl::UTCTimeZone())) {
      deny.push_back(absl::StrCat("deny: project ", project.id(),
                                  " is not valid before ", project.valid_from(),
                                  " (", pwhere, ")"));
      valid = false;
    }
    if (absl::ParseCivilTime(project.valid_until(), &until) &&
        req.now >= absl::FromCivil(until + 1, absl::UTCTimeZone())) {
      deny.push_back(absl::StrCat("deny: project ", project.id(),
                                  " expired after ", project.valid_until(),
                                  " (", pwhere, ")"));
      valid = false;
    }
    if (valid) {
      permit.push_back(absl::StrCat(
          "permit: project ", project.id(), " is valid ",
          project.valid_from().empty() ? "" : "from " + project.valid_from(),
          project.valid_from().empty() ? "" : " ", "until ",
          project.valid_until()));
    }
  }

  // Purpose.
  std::string purpose = req.purpose;
  if (purpose.empty() && project.purposes().size() == 1) {
    purpose = project.purposes(0);
  }
  ob.set_purpose(purpose);
  if (purpose.empty()) {
    deny.push_back(absl::StrCat("deny: project ", project.id(),
                                " has several purposes (",
                                absl::StrJoin(project.purposes(), ", "),
                                "); the request must declare one"));
  } else if (!Contains(project.purposes(), purpose)) {
    deny.push_back(absl::StrCat(
        "deny: purpose ", purpose, " is not approved for project ",
        project.id(), " (approved: ", absl::StrJoin(project.purposes(), ", "),
        "; ", pwhere, ")"));
  } else {
    permit.push_back(absl::StrCat("permit: purpose ", purpose,
                                  " is approved for project ", project.id()));
  }

  // Sites.
  std::vector<std::string> sites;
  for (const std::string& s :
       req.sites.empty() ? std::vector<std::string>(project.sites().begin(),
                                                    project.sites().end())
                         : req.sites) {
    if (std::find(sites.begin(), sites.end(), s) == sites.end()) {
      sites.push_back(s);
    }
  }
  std::set<std::string> fed_sites;
  for (const v1::SiteRef& s : fed.site()) fed_sites.insert(s.id());
  std::vector<const Located<v1::SitePolicy>*> site_policies;
  for (const std::string& s : sites) {
    if (fed_sites.count(s) == 0) {
      deny.push_back(absl::StrCat("deny: unknown site \"", s, "\" (",
                                  federation_where_, ")"));
      continue;
    }
    if (!Contains(project.sites(), s)) {
      deny.push_back(absl::StrCat("deny: project ", project.id(),
                                  " may not query site ", s, " (", pwhere,
                                  ")"));
      continue;
    }
    auto sit = sites_.find(s);
    if (sit == sites_.end()) {
      deny.push_back(absl::StrCat("deny: no site policy for site ", s,
                                  " is loaded at the gateway"));
      continue;
    }
    const v1::SitePolicy& sp = sit->second.msg;
    if (!sp.projects().empty() && !Contains(sp.projects(), project.id())) {
      deny.push_back(absl::StrCat("deny: site ", s, " does not serve project ",
                                  project.id(), " (", sit->second.where, ")"));
      continue;
    }
    site_policies.push_back(&sit->second);
  }
  if (sites.empty()) deny.push_back("deny: no site to query");

  // The levels that may restrict the query.
  std::vector<Level> levels;
  levels.push_back(Level{"the federation", federation_allow_where_,
                         fed.has_allow() ? &fed.allow() : nullptr, true});
  if (project.has_allow()) {
    levels.push_back(Level{absl::StrCat("project ", project.id()),
                           pit->second.allow_where, &project.allow(), false});
  }
  for (const auto* sp : site_policies) {
    if (sp->msg.has_allow()) {
      levels.push_back(Level{absl::StrCat("site ", sp->msg.id()),
                             sp->allow_where, &sp->msg.allow(), false});
    }
  }
  for (const std::string& dim : AllowedDimensions(levels)) {
    ob.add_allowed_dimensions(dim);
  }
  const Level* binding = nullptr;
  ob.set_max_breakdown_cells(MaxCells(levels, &binding));

  QueryFeatures features;
  bool have_features = false;
  if (req.query == nullptr) {
    deny.push_back("deny: no query");
    d.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  } else {
    absl::StatusOr<QueryFeatures> f = ExtractFeatures(*req.query);
    if (!f.ok()) {
      deny.push_back(
          absl::StrCat("deny: invalid query: ", f.status().message()));
      d.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
    } else {
      features = *std::move(f);
      have_features = true;
      size_t before = deny.size();
      CheckScopes(features, levels, deny);
      absl::StatusOr<int64_t> cells =
          BreakdownCells(*req.query, static_cast<int64_t>(fed_sites.size()));
      if (cells.ok()) {
        ob.set_breakdown_cells(*cells);
        if (ob.max_breakdown_cells() > 0 && *cells > ob.max_breakdown_cells()) {
          deny.push_back(absl::StrCat(
              "deny: the breakdown has ", *cells, " cells, more than ",
              binding->name, "'s max_breakdown_cells ",
              ob.max_breakdown_cells(), " (", binding->where, ")"));
        }
      }
      if (deny.size() == before) {
        permit.push_back(absl::StrCat(
            "permit: the query's domains, vocabularies, criteria and "
            "dimensions are allowed (",
            ob.breakdown_cells(), " cell", ob.breakdown_cells() == 1 ? "" : "s",
            ")"));
      }
    }
  }

  // Disclosure: the strictest value of every level wins.
  const v1::Disclosure& fd = fed.disclosure();
  const v1::Disclosure& pd = project.disclosure();
  int64_t fed_min = std::max(fd.min_cell_size(), pd.min_cell_size());
  ob.set_federation_min_cell_size(fed_min);
  int64_t overall_min = fed_min;
  v1::Disclosure::Mechanism mech =
      pd.mechanism() != v1::Disclosure::MECHANISM_UNSPECIFIED ? pd.mechanism()
                                                              : fd.mechanism();
  double eps = fd.epsilon_per_query();
  double rho = fd.rho_per_query();
  auto tighten = TightenPrivacy;
  tighten(eps, pd.epsilon_per_query());
  tighten(rho, pd.rho_per_query());
  int64_t rounding = std::max(fd.rounding(), pd.rounding());
  bool exact_ok = fd.exact_mode_allowed() &&
                  (!pd.has_exact_mode_allowed() || pd.exact_mode_allowed());
  for (const auto* sp : site_policies) {
    const v1::Disclosure& sd = sp->msg.disclosure();
    int64_t smin = std::max(fed_min, sd.min_cell_size());
    v1::SiteObligation* so = ob.add_sites();
    so->set_site(sp->msg.id());
    so->set_min_cell_size(smin);
    overall_min = std::max(overall_min, smin);
    tighten(eps, sd.epsilon_per_query());
    tighten(rho, sd.rho_per_query());
    rounding = std::max(rounding, sd.rounding());
    if (sd.mechanism() != v1::Disclosure::MECHANISM_UNSPECIFIED &&
        sd.mechanism() != mech) {
      deny.push_back(absl::StrCat("deny: site ", sp->msg.id(), " requires ",
                                  MechanismName(sd.mechanism()),
                                  " but the project uses ", MechanismName(mech),
                                  " (", sp->where, ")"));
    }
    if (mech == v1::Disclosure::EXACT && sd.has_exact_mode_allowed() &&
        !sd.exact_mode_allowed()) {
      deny.push_back(absl::StrCat("deny: site ", sp->msg.id(),
                                  " does not allow exact mode (", sp->where,
                                  ")"));
    }
  }
  ob.set_min_cell_size(overall_min);
  ob.set_mechanism(mech);
  ob.set_exact_mode(mech == v1::Disclosure::EXACT);
  if (mech == v1::Disclosure::LAPLACE) ob.set_epsilon_per_query(eps);
  if (mech == v1::Disclosure::GAUSSIAN) ob.set_rho_per_query(rho);
  ob.set_rounding(rounding);
  if (project.has_budget()) *ob.mutable_budget() = project.budget();
  if (fed.has_researcher_budget()) {
    *ob.mutable_federation_budget() = fed.researcher_budget();
  }
  if (mech == v1::Disclosure::EXACT && !exact_ok) {
    deny.push_back(absl::StrCat("deny: project ", project.id(),
                                " uses exact mode, which the federation or "
                                "the project does not allow (",
                                pwhere, ")"));
  }

  // Forbid rules override every permit.
  MatchContext ctx;
  ctx.identity = req.identity;
  ctx.project = project.id();
  ctx.purpose = purpose;
  ctx.sites = sites;
  ctx.features = have_features ? &features : nullptr;
  int64_t smallest_min = fed_min;
  for (const auto& so : ob.sites()) {
    smallest_min = std::min(smallest_min, so.min_cell_size());
  }
  ctx.min_cell_size = smallest_min;
  if (mech == v1::Disclosure::LAPLACE) {
    ctx.epsilon = eps;
    ctx.rho = eps * eps / 2;
  }
  if (mech == v1::Disclosure::GAUSSIAN) ctx.rho = rho;
  ctx.exact_mode = mech == v1::Disclosure::EXACT;
  ctx.role = v1::Member::RESEARCHER;
  for (const auto& rule : forbids_) {
    if (ForbidMatches(rule.msg, ctx)) {
      deny.push_back(ForbidReason(rule.msg, rule.where, ""));
    }
  }
  for (const auto* sp : site_policies) {
    const std::vector<std::string>& wheres =
        site_forbid_where_.find(sp->msg.id())->second;
    MatchContext site_ctx = ctx;
    for (const auto& so : ob.sites()) {
      if (so.site() == sp->msg.id())
        site_ctx.min_cell_size = so.min_cell_size();
    }
    for (int i = 0; i < sp->msg.forbid().size(); ++i) {
      if (ForbidMatches(sp->msg.forbid(i), site_ctx)) {
        deny.push_back(ForbidReason(sp->msg.forbid(i), wheres[i],
                                    absl::StrCat(" of site ", sp->msg.id())));
      }
    }
  }

  Finish(d, deny, permit);
  return d;
}

v1::Decision Policy::DecideNode(absl::string_view site,
                                absl::string_view identity,
                                const v1::CountRequest& req,
                                absl::Time now) const {
  v1::Decision d;
  d.set_policy_version(version_);
  v1::Obligations& ob = *d.mutable_obligations();
  ob.set_project(req.project());
  std::vector<std::string> deny, permit;

  auto sit = sites_.find(site);
  if (sit == sites_.end()) {
    deny.push_back(absl::StrCat("deny: no site policy for site \"", site,
                                "\" is loaded at this node (default deny)"));
    Finish(d, deny, permit);
    return d;
  }
  const v1::SitePolicy& sp = sit->second.msg;
  const std::string& swhere = sit->second.where;
  if (identity.empty()) {
    d.set_code(static_cast<int>(absl::StatusCode::kUnauthenticated));
  }
  if (identity.empty() || !Contains(sp.callers(), identity)) {
    deny.push_back(absl::StrCat("deny: caller \"", identity,
                                "\" is not among site ", sp.id(),
                                "'s callers (", swhere, ")"));
    Finish(d, deny, permit);
    return d;
  }
  permit.push_back(absl::StrCat("permit: \"", identity,
                                "\" is a caller of site ", sp.id(), " (",
                                swhere, ")"));
  if (!sp.projects().empty() && !Contains(sp.projects(), req.project())) {
    deny.push_back(absl::StrCat("deny: site ", sp.id(),
                                " does not serve project \"", req.project(),
                                "\" (", swhere, ")"));
  }

  // With the federation's files loaded too, the node checks the project.
  int64_t site_min = sp.disclosure().min_cell_size();
  int64_t site_count = 1;
  if (federation_) {
    site_count = federation_->site().size();
    site_min = std::max(site_min, federation_->disclosure().min_cell_size());
    auto pit = projects_.find(req.project());
    if (pit == projects_.end()) {
      deny.push_back(
          absl::StrCat("deny: unknown project \"", req.project(), "\""));
    } else {
      const v1::Project& p = pit->second.msg;
      site_min = std::max(site_min, p.disclosure().min_cell_size());
      if (!Contains(p.sites(), sp.id())) {
        deny.push_back(absl::StrCat("deny: project ", p.id(),
                                    " may not query site ", sp.id(), " (",
                                    pit->second.where, ")"));
      }
      absl::CivilDay from, until;
      if (!p.valid_from().empty() &&
          absl::ParseCivilTime(p.valid_from(), &from) &&
          now < absl::FromCivil(from, absl::UTCTimeZone())) {
        deny.push_back(absl::StrCat("deny: project ", p.id(),
                                    " is not valid before ", p.valid_from()));
      }
      if (absl::ParseCivilTime(p.valid_until(), &until) &&
          now >= absl::FromCivil(until + 1, absl::UTCTimeZone())) {
        deny.push_back(absl::StrCat("deny: project ", p.id(), " expired after ",
                                    p.valid_until()));
      }
    }
  }
  if (req.min_cell_size() < site_min || req.min_cell_size() <= 0) {
    deny.push_back(absl::StrCat("deny: requested min_cell_size ",
                                req.min_cell_size(), " is below site ", sp.id(),
                                "'s minimum ", std::max<int64_t>(site_min, 1),
                                " (", swhere, ")"));
  }
  v1::SiteObligation* so = ob.add_sites();
  so->set_site(sp.id());
  so->set_min_cell_size(std::max(site_min, req.min_cell_size()));
  ob.set_min_cell_size(so->min_cell_size());
  ob.set_rounding(sp.disclosure().rounding());

  std::vector<Level> levels;
  if (sp.has_allow()) {
    levels.push_back(Level{absl::StrCat("site ", sp.id()),
                           sit->second.allow_where, &sp.allow(), false});
  }
  for (const std::string& dim : AllowedDimensions(levels)) {
    ob.add_allowed_dimensions(dim);
  }
  const Level* binding = nullptr;
  ob.set_max_breakdown_cells(MaxCells(levels, &binding));
  QueryFeatures features;
  bool have_features = false;
  absl::StatusOr<QueryFeatures> f = ExtractFeatures(req.query());
  if (!f.ok()) {
    deny.push_back(absl::StrCat("deny: invalid query: ", f.status().message()));
    d.set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  } else {
    features = *std::move(f);
    have_features = true;
    size_t before = deny.size();
    CheckScopes(features, levels, deny);
    absl::StatusOr<int64_t> cells = BreakdownCells(req.query(), site_count);
    if (cells.ok()) {
      ob.set_breakdown_cells(*cells);
      if (ob.max_breakdown_cells() > 0 && *cells > ob.max_breakdown_cells()) {
        deny.push_back(absl::StrCat(
            "deny: the breakdown has ", *cells, " cells, more than site ",
            sp.id(), "'s max_breakdown_cells ", ob.max_breakdown_cells(), " (",
            swhere, ")"));
      }
    }
    if (deny.size() == before) {
      permit.push_back(absl::StrCat("permit: the query is within site ",
                                    sp.id(), "'s allowed scope"));
    }
  }

  MatchContext ctx;
  ctx.identity = std::string(identity);
  ctx.project = req.project();
  ctx.sites = {sp.id()};
  ctx.features = have_features ? &features : nullptr;
  ctx.min_cell_size = req.min_cell_size();
  const std::vector<std::string>& wheres =
      site_forbid_where_.find(sp.id())->second;
  for (int i = 0; i < sp.forbid().size(); ++i) {
    if (ForbidMatches(sp.forbid(i), ctx)) {
      deny.push_back(ForbidReason(sp.forbid(i), wheres[i],
                                  absl::StrCat(" of site ", sp.id())));
    }
  }
  Finish(d, deny, permit);
  return d;
}

v1::Decision Policy::DecideRole(absl::string_view identity,
                                v1::Member::Role role,
                                absl::string_view project) const {
  v1::Decision d;
  d.set_policy_version(version_);
  d.mutable_obligations()->set_role(role);
  d.mutable_obligations()->set_project(std::string(project));
  std::vector<std::string> deny, permit;
  if (identity.empty()) {
    deny.push_back("deny: the caller has no identity");
    d.set_code(static_cast<int>(absl::StatusCode::kUnauthenticated));
    Finish(d, deny, permit);
    return d;
  }
  if (federation_) {
    for (const v1::Member& m : federation_->member()) {
      if (m.identity() == identity && m.role() == role) {
        permit.push_back(absl::StrCat("permit: \"", identity, "\" is a ",
                                      RoleName(role), " of the federation (",
                                      federation_where_, ")"));
      }
    }
  }
  if (!project.empty()) {
    auto pit = projects_.find(project);
    if (pit == projects_.end()) {
      deny.push_back(absl::StrCat("deny: unknown project \"", project, "\""));
    } else if (permit.empty()) {
      for (const v1::Member& m : pit->second.msg.member()) {
        if (m.identity() == identity && m.role() == role) {
          permit.push_back(absl::StrCat("permit: \"", identity, "\" is a ",
                                        RoleName(role), " of project ", project,
                                        " (", pit->second.where, ")"));
        }
      }
    }
  }
  if (permit.empty() && deny.empty()) {
    deny.push_back(absl::StrCat("deny: \"", identity, "\" does not have the ",
                                RoleName(role), " role in ",
                                project.empty()
                                    ? std::string("the federation")
                                    : absl::StrCat("project ", project),
                                " (default deny)"));
  }
  Finish(d, deny, permit);
  return d;
}

std::string WithoutLocations(absl::string_view reason) {
  // A location is " (name:line)" or " (name:line:column)": no space or
  // parenthesis inside, a colon followed by digits.
  std::string out;
  size_t i = 0;
  while (i < reason.size()) {
    if (reason.compare(i, 2, " (") == 0) {
      const size_t close = reason.find(')', i + 2);
      if (close != absl::string_view::npos) {
        const absl::string_view inside = reason.substr(i + 2, close - i - 2);
        const size_t colon = inside.find(':');
        bool location =
            !inside.empty() && colon != absl::string_view::npos && colon > 0 &&
            colon + 1 < inside.size() &&
            inside.find_first_of(" ()\"") == absl::string_view::npos;
        if (location) {
          for (char c : inside.substr(colon + 1)) {
            if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) &&
                c != ':') {
              location = false;
            }
          }
        }
        if (location) {
          i = close + 1;
          continue;
        }
      }
    }
    out.push_back(reason[i]);
    ++i;
  }
  return out;
}

absl::Status CallerStatus(const v1::Decision& decision,
                          absl::string_view identity,
                          absl::string_view project) {
  if (decision.allow()) return absl::OkStatus();
  absl::StatusCode code = static_cast<absl::StatusCode>(decision.code());
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kPermissionDenied;
  if (decision.outside_project()) {
    return absl::Status(
        code, absl::StrCat("\"", identity, "\" is not a member of project \"",
                           project, "\", or there is no such project"));
  }
  std::vector<std::string> deny;
  for (const std::string& r : decision.reasons()) {
    if (absl::StartsWith(r, "deny: ")) deny.push_back(WithoutLocations(r));
  }
  return absl::Status(code, absl::StrJoin(deny, "; "));
}

absl::Status DecisionStatus(const v1::Decision& decision) {
  if (decision.allow()) return absl::OkStatus();
  std::vector<std::string> deny;
  for (const std::string& r : decision.reasons()) {
    if (absl::StartsWith(r, "deny: ")) deny.push_back(r.substr(6));
  }
  absl::StatusCode code = static_cast<absl::StatusCode>(decision.code());
  if (code == absl::StatusCode::kOk) code = absl::StatusCode::kPermissionDenied;
  return absl::Status(code, absl::StrJoin(deny, "; "));
}

}  // namespace passerelle::policy
