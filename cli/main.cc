// `passerelle`: one binary, subcommands by role.
#include <iostream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cli/audit_cmd.h"
#include "cli/budget_cmd.h"
#include "cli/gateway_cmd.h"
#include "cli/generate_cmd.h"
#include "cli/node_cmd.h"
#include "cli/policy_cmd.h"
#include "cli/privacy_cmd.h"
#include "cli/query_cmd.h"
#include "cli/vocab_cmd.h"
#include "common/signals.h"

namespace {

constexpr char kUsage[] =
    "passerelle: federated health-data cohort counts (France - Quebec)\n"
    "\n"
    "researchers:\n"
    "  passerelle query [--format table|json|csv] [--project P] 'QUERY'\n"
    "  passerelle budget show [--project P] [--format table|json]\n"
    "  passerelle vocab search|show|sources ...   (code labels, fr/en)\n"
    "site stewards and operators:\n"
    "  passerelle generate --patients N --seed S --site ID --out DIR\n"
    "  passerelle node load --store DIR --site ID [--format omop|synthea|snds] "
    "[--future-events keep|reject] DIR\n"
    "  passerelle node count --store DIR [--format table|json|csv] 'QUERY'\n"
    "  passerelle node info --store DIR\n"
    "  passerelle node serve --config FILE\n"
    "  passerelle gateway serve --config FILE\n"
    "policy stewards:\n"
    "  passerelle policy check FILE...\n"
    "  passerelle policy explain --as IDENTITY --project P 'QUERY'\n"
    "  passerelle policy test DIR\n"
    "auditors:\n"
    "  passerelle audit verify|show|search|export|proof|consistency --store "
    "DIR ...\n"
    "  passerelle audit verify|show|search|export|proof|consistency\n"
    "                   (--config FILE | --gateway HOST:PORT | --node "
    "HOST:PORT) --public-key F\n"
    "privacy checks:\n"
    "  passerelle privacy sample --mechanism laplace|gaussian (--epsilon E | "
    "--rho R)\n"
    "                            --count C --n N\n"
    "\n"
    "Each command prints its own usage with --help. Cohort language:\n"
    "  condition icd10:E11* and age between 40 and 65 group by sex, "
    "age_band(10)\n";

}  // namespace

int main(int argc, char** argv) {
  // Daemons wait for SIGTERM/SIGINT synchronously; block them before any
  // thread exists so every thread inherits the mask.
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex keeps a
  // lock graph for deadlock detection (a debugging aid, off in release
  // builds of Abseil): about 5% of a server's CPU under load. The unit
  // tests keep it; the shipped binary runs as a release build would.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::vector<std::string> all(argv + 1, argv + argc);
  if (all.empty() || all[0] == "help" || all[0] == "--help" || all[0] == "-h") {
    std::cout << kUsage;
    return all.empty() ? 2 : 0;
  }
  const std::string group = all[0];
  const std::vector<std::string> args(all.begin() + 1, all.end());
  const bool daemon = !args.empty() && args[0] == "serve";
  if (daemon) passerelle::BlockTerminationSignals();
  using namespace passerelle::cli;
  if (group == "query") return RunQueryCommand(args);
  if (group == "budget") return RunBudgetCommand(args);
  if (group == "node") return RunNodeCommand(args);
  if (group == "gateway") return RunGatewayCommand(args);
  if (group == "generate") return RunGenerateCommand(args);
  if (group == "policy") return RunPolicyCommand(args);
  if (group == "audit") return RunAuditCommand(args);
  if (group == "privacy") return RunPrivacyCommand(args);
  if (group == "vocab") return RunVocabCommand(args);
  if (group == "version" || group == "--version") {
    std::cout << "passerelle 0.1.0\n";
    return 0;
  }
  std::cerr << "passerelle: unknown command \"" << group << "\"\n\n" << kUsage;
  return 2;
}
