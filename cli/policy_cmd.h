// `passerelle policy …`: the data steward's tools (check, explain, test,
// version). See docs/steward.md.
#ifndef PASSERELLE_CLI_POLICY_CMD_H_
#define PASSERELLE_CLI_POLICY_CMD_H_

#include <ostream>
#include <string>
#include <vector>

#include "policy/fixtures.h"

namespace passerelle::cli {

// `args` exclude "passerelle policy". Prints to stdout/stderr and returns the
// exit code: 0 success (for explain: allowed), 1 a check failed, a fixture
// did not match or (explain) the request is denied, 2 a usage error or an
// unreadable input.
int RunPolicyCommand(const std::vector<std::string>& args);

// Same, with the query parser and the streams injected (for tests). An empty
// `parser` means passerelle::query::ParseQuery.
int RunPolicyCommand(const std::vector<std::string>& args,
                     const policy::QueryParser& parser, std::ostream& out,
                     std::ostream& err);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_POLICY_CMD_H_
