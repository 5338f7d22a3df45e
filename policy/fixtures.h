// Table-driven policy tests (`passerelle policy test DIR`), in the manner of
// Cedar's ALLOW/DENY folders. DIR/allow/*.textproto hold requests expected
// to be allowed, DIR/deny/*.textproto requests expected to be denied; each
// file is one passerelle.v1.PolicyTestCase in text format.
#ifndef PASSERELLE_POLICY_FIXTURES_H_
#define PASSERELLE_POLICY_FIXTURES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "passerelle/v1/policy.pb.h"
#include "passerelle/v1/query.pb.h"
#include "policy/policy.h"

namespace passerelle::policy {

// Turns cohort language text into an AST. Empty: passerelle::query::ParseQuery.
using QueryParser =
    std::function<absl::StatusOr<passerelle::v1::Query>(absl::string_view)>;

struct FixtureCase {
  std::string path;
  bool expect_allow = false;
  passerelle::v1::PolicyTestCase test;
};

struct FixtureResult {
  const FixtureCase* fixture = nullptr;
  bool passed = false;
  passerelle::v1::Decision decision;
  // Why the case could not run or did not pass.
  std::string failure;
};

// Reads DIR/allow/*.textproto and DIR/deny/*.textproto, sorted. Parse errors
// are INVALID_ARGUMENT listing "file:line:column: message" for each.
absl::StatusOr<std::vector<FixtureCase>> LoadFixtures(const std::string& dir);

// The decision for one case: DecideRole when `role` is set, DecideNode when
// `node_site` is set, Decide otherwise. The query is `query` parsed, or
// `query_ast`; when both are given they must be equal.
absl::StatusOr<passerelle::v1::Decision> EvaluateCase(
    const Policy& policy, const passerelle::v1::PolicyTestCase& test,
    const QueryParser& parser);

// Runs every case; results are in the same order.
std::vector<FixtureResult> RunFixtures(const Policy& policy,
                                       const std::vector<FixtureCase>& cases,
                                       const QueryParser& parser);

}  // namespace passerelle::policy

#endif  // PASSERELLE_POLICY_FIXTURES_H_
