#include "cli/gateway_cmd.h"

#include <iostream>

#include "cli/flags.h"
#include "gateway/gateway_server.h"

namespace passerelle::cli {

int RunGatewayCommand(const std::vector<std::string>& args) {
  constexpr char kUsage[] = "usage: passerelle gateway serve --config FILE\n";
  if (args.empty() || args[0] != "serve") {
    std::cerr << kUsage;
    return 2;
  }
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags({args.begin() + 1, args.end()}, {"config"});
  absl::Status status =
      flags.ok() ? gateway::RunGatewayServerFromFile(flags->Get("config"))
                 : flags.status();
  if (!status.ok()) {
    std::cerr << "passerelle gateway serve: " << status.message() << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace passerelle::cli
