// `passerelle privacy …`: checks of the privacy machinery an operator or an
// auditor can run by hand.
#ifndef PASSERELLE_CLI_PRIVACY_CMD_H_
#define PASSERELLE_CLI_PRIVACY_CMD_H_

#include <ostream>
#include <string>
#include <vector>

namespace passerelle::cli {

// `args` exclude "passerelle privacy". Prints to stdout/stderr and returns
// the exit code: 0 success, 1 a runtime failure (e.g. the random generator),
// 2 a usage error.
//
//   sample --mechanism laplace|gaussian (--epsilon E | --rho R) --count C --n N
//
// draws N releases of the true count C through the production noise path
// (the gateway's parameter handling, exact samplers, noise pool and OpenSSL
// CSPRNG) and prints one integer C + noise per line, without thresholds or
// rounding, so the distribution can be checked independently.
int RunPrivacyCommand(const std::vector<std::string>& args);

// Same, with the streams injected (for tests).
int RunPrivacyCommand(const std::vector<std::string>& args, std::ostream& out,
                      std::ostream& err);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_PRIVACY_CMD_H_
