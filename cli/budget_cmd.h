// `passerelle budget …`: a project's privacy budget, as the gateway's ledger
// holds it, for its researchers, stewards and auditors.
#ifndef PASSERELLE_CLI_BUDGET_CMD_H_
#define PASSERELLE_CLI_BUDGET_CMD_H_

#include <string>
#include <vector>

#include "passerelle/v1/gateway.pb.h"

namespace passerelle::cli {

//   show [--project P] [--format table|json] [client flags]
// `args` exclude "passerelle budget". Returns the exit code (2: usage).
int RunBudgetCommand(const std::vector<std::string>& args);

// The printed forms (exposed for tests).
std::string FormatBudgetTable(const v1::BudgetResponse& r);
std::string FormatBudgetJson(const v1::BudgetResponse& r);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_BUDGET_CMD_H_
