// The access policy of the federation and of each site: loading and
// validation of the stewards' files, and decisions (allow or deny, with the
// reasons and the obligations the gateway and the nodes must apply).
//
// Usage (the gateway; hot reload through PolicyStore in policy/store.h):
//
//   auto store = PolicyStore::Create({"/etc/passerelle/policy"});
//   passerelle::v1::Decision d = (*store)->Current()->Decide(request);
//   audit_entry.set_policy_version(d.policy_version());
//   PASSERELLE_RETURN_IF_ERROR(DecisionStatus(d));
//
// Schema and combination rules: proto/passerelle/v1/policy.proto.
#ifndef PASSERELLE_POLICY_POLICY_H_
#define PASSERELLE_POLICY_POLICY_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "passerelle/v1/node.pb.h"
#include "passerelle/v1/policy.pb.h"
#include "passerelle/v1/query.pb.h"

namespace passerelle::policy {

// A researcher's request as the gateway sees it before contacting any node.
struct AccessRequest {
  // The caller's identity from its certificate
  // ("spiffe://passerelle/user/alice").
  std::string identity;
  std::string project;
  // A DUO code; empty: the project's purpose when it has exactly one.
  std::string purpose;
  // Not owned; must outlive the call. Null is denied.
  const passerelle::v1::Query* query = nullptr;
  // Empty: every site the project may query.
  std::vector<std::string> sites;
  absl::Time now;
};

// The noise a decision can oblige the gateway to add: the mechanism and its
// per-query epsilon (LAPLACE) or rho (GAUSSIAN), as in Obligations.
struct NoiseParameters {
  passerelle::v1::Disclosure::Mechanism mechanism =
      passerelle::v1::Disclosure::LAPLACE;
  double epsilon = 0;
  double rho = 0;
  bool operator<(const NoiseParameters& o) const {
    return std::tie(mechanism, epsilon, rho) <
           std::tie(o.mechanism, o.epsilon, o.rho);
  }
  bool operator==(const NoiseParameters& o) const {
    return mechanism == o.mechanism && epsilon == o.epsilon && rho == o.rho;
  }
};

// One file's name and bytes, for loading without touching the disk.
struct PolicySource {
  std::string path;
  std::string contents;
};

// An immutable, validated policy snapshot. Thread-safe: every method is const
// and may be called concurrently.
class Policy {
 public:
  // Loads the files at `paths`; a directory stands for the *.textproto files
  // directly inside it. On any error returns INVALID_ARGUMENT whose message
  // lists every error, one per line, as "file:line:column: message".
  static absl::StatusOr<std::shared_ptr<const Policy>> Load(
      const std::vector<std::string>& paths);
  // Same, from contents already read.
  static absl::StatusOr<std::shared_ptr<const Policy>> LoadFromSources(
      std::vector<PolicySource> sources);

  // Every noise an allowed query can be obliged to (each project's
  // mechanism with the epsilon or rho of each site it may ask, combined with
  // the federation's and the project's as Decide does), sorted, without
  // duplicates; exact-mode projects add none. For prewarming noise pools.
  std::vector<NoiseParameters> NoiseParameterSets() const;

  // The gateway's decision for a researcher's query.
  passerelle::v1::Decision Decide(const AccessRequest& request) const;

  // A node's decision under its own site policy (`site`): the caller must be
  // one of the site's callers, the requested minimum cell size at least the
  // site's, the project served, and the query within the site's scope.
  passerelle::v1::Decision DecideNode(
      absl::string_view site, absl::string_view identity,
      const passerelle::v1::CountRequest& request, absl::Time now) const;

  // Whether `identity` holds `role` for `project` (as a project member or a
  // federation-wide member), for the audit and budget endpoints. An empty
  // `project` asks for the federation-wide role. Project validity dates do
  // not apply: auditors keep access to expired projects.
  passerelle::v1::Decision DecideRole(absl::string_view identity,
                                      passerelle::v1::Member::Role role,
                                      absl::string_view project) const;

  // SHA-256 (lower-case hex) over the loaded files sorted by path: for each
  // file, its size as 8 big-endian bytes then its bytes.
  const std::string& version() const { return version_; }
  // The files loaded, sorted.
  const std::vector<std::string>& files() const { return files_; }
  // Non-fatal findings of validation, "file:line:column: message".
  const std::vector<std::string>& warnings() const { return warnings_; }

  bool has_federation() const { return federation_.has_value(); }
  const passerelle::v1::Federation* federation() const {
    return federation_ ? &*federation_ : nullptr;
  }
  const passerelle::v1::Project* FindProject(absl::string_view id) const;
  // Every project id, sorted (e.g. to find the projects a role holds).
  std::vector<std::string> ProjectIds() const;
  const passerelle::v1::SitePolicy* FindSite(absl::string_view id) const;

 private:
  friend class PolicyBuilder;

  template <typename T>
  struct Located {
    T msg;
    std::string where;        // "federation.textproto:12"
    std::string allow_where;  // Of its `allow` block, if any.
  };

  Policy() = default;

  std::optional<passerelle::v1::Federation> federation_;
  std::string federation_where_;
  std::string federation_allow_where_;
  std::map<std::string, Located<passerelle::v1::Project>, std::less<>>
      projects_;
  std::map<std::string, Located<passerelle::v1::SitePolicy>, std::less<>>
      sites_;
  // Per site id, the location of each of its forbid rules.
  std::map<std::string, std::vector<std::string>, std::less<>>
      site_forbid_where_;
  std::vector<Located<passerelle::v1::ForbidRule>> forbids_;
  std::string version_;
  std::vector<std::string> files_;
  std::vector<std::string> warnings_;
};

// OK when `decision` allows; otherwise a status with the decision's code and
// its deny reasons, for answering the caller.
absl::Status DecisionStatus(const passerelle::v1::Decision& decision);

// The denial as the caller may read it: the deny reasons without where
// their rules are written (" (file:line)"), and, when the caller has no role
// in the project (Decision.outside_project), one reason that does not tell
// whether the project exists. OK when `decision` allows. The full reasons
// belong in the audit log and `policy explain`.
absl::Status CallerStatus(const passerelle::v1::Decision& decision,
                          absl::string_view identity,
                          absl::string_view project);
// `reason` without its " (name:line[:column])" locations.
std::string WithoutLocations(absl::string_view reason);

// Expands directories into the *.textproto files directly inside them
// (sorted); files are kept as given. NOT_FOUND for a missing path.
absl::StatusOr<std::vector<std::string>> ExpandPolicyPaths(
    const std::vector<std::string>& paths);

// Reads the files ExpandPolicyPaths finds, sorted by path.
absl::StatusOr<std::vector<PolicySource>> ReadPolicySources(
    const std::vector<std::string>& paths);

// The version of a policy made of `sources`: see Policy::version().
std::string PolicyVersion(std::vector<PolicySource> sources);

// Parses "YYYY-MM-DD" (midnight UTC) or an RFC 3339 time.
absl::StatusOr<absl::Time> ParsePolicyTime(absl::string_view text);

// "researcher", "steward", "auditor".
std::string RoleName(passerelle::v1::Member::Role role);
std::optional<passerelle::v1::Member::Role> ParseRole(absl::string_view name);

}  // namespace passerelle::policy

#endif  // PASSERELLE_POLICY_POLICY_H_
