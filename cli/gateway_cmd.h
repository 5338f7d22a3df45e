#ifndef PASSERELLE_CLI_GATEWAY_CMD_H_
#define PASSERELLE_CLI_GATEWAY_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `passerelle gateway serve --config FILE`: the gateway daemon.
int RunGatewayCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_GATEWAY_CMD_H_
