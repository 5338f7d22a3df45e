#ifndef PASSERELLE_CLI_GENERATE_CMD_H_
#define PASSERELLE_CLI_GENERATE_CMD_H_

#include <string>
#include <vector>

namespace passerelle::cli {

// `passerelle generate --patients N --seed S --site ID --out DIR [--progress]`:
// writes deterministic synthetic patients as OMOP CDM 5.4 CSV files into DIR
// (created if needed). `args` excludes "passerelle generate". Returns the
// process exit code: 0 on success, 2 on a usage error, 1 on a failure.
int RunGenerateCommand(const std::vector<std::string>& args);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_GENERATE_CMD_H_
