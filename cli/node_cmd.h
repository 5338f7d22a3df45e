#ifndef PASSERELLE_CLI_NODE_CMD_H_
#define PASSERELLE_CLI_NODE_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `passerelle node load|count|info|serve ...`: the site steward's tools on
// their own data (exact, no network) and the node daemon.
int RunNodeCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_NODE_CMD_H_
