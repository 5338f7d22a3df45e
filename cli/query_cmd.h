#ifndef PASSERELLE_CLI_QUERY_CMD_H_
#define PASSERELLE_CLI_QUERY_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `passerelle query [--format table|json|csv] [--project P] 'QUERY'`: a
// researcher's federated count through the gateway over mTLS.
int RunQueryCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_QUERY_CMD_H_
