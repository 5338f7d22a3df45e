#include "cli/budget_cmd.h"

#include <chrono>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage: passerelle budget show [--project P] [--format table|json]\n"
    "                              [--config FILE] [--gateway HOST:PORT] [--ca "
    "FILE]\n"
    "                              [--cert FILE] [--key FILE] [--server-name "
    "NAME]\n"
    "                              [--server-id SPIFFE_ID]\n"
    "Spent and remaining privacy budget of the project (members only; a\n"
    "researcher sees the project and their own account).\n";

std::string Amount(double v) { return absl::StrFormat("%.6g", v); }

std::string Remaining(const v1::BudgetAccount& a) {
  if (a.has_epsilon_remaining()) {
    return absl::StrCat("epsilon ", Amount(a.epsilon_remaining()), " of ",
                        Amount(a.epsilon_cap()));
  }
  if (a.has_rho_remaining()) {
    return absl::StrCat("rho ", Amount(a.rho_remaining()), " of ",
                        Amount(a.rho_cap()));
  }
  return "no cap";
}

std::string AccountJson(const v1::BudgetAccount& a) {
  auto opt = [](bool has, double v) {
    return has ? Amount(v) : std::string("null");
  };
  return absl::StrCat(
      "{\"researcher\": ",
      a.researcher().empty() ? "null" : JsonQuote(a.researcher()),
      ", \"epsilon_spent\": ", Amount(a.epsilon_spent()),
      ", \"rho_spent\": ", Amount(a.rho_spent()),
      ", \"epsilon_cap\": ", opt(a.has_epsilon_cap(), a.epsilon_cap()),
      ", \"epsilon_remaining\": ",
      opt(a.has_epsilon_remaining(), a.epsilon_remaining()),
      ", \"rho_cap\": ", opt(a.has_rho_cap(), a.rho_cap()),
      ", \"rho_remaining\": ", opt(a.has_rho_remaining(), a.rho_remaining()),
      "}");
}

std::string ResetText(const v1::BudgetResponse& r) {
  if (r.next_reset_unix() == 0) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M UTC",
                          absl::FromUnixSeconds(r.next_reset_unix()),
                          absl::UTCTimeZone());
}

absl::Status Show(const ParsedFlags& flags) {
  if (!flags.positional.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget show takes no positional argument, got \"",
                     flags.positional[0], "\""));
  }
  const std::string format = flags.Get("format", "table");
  if (format != "table" && format != "json") {
    return absl::InvalidArgumentError(
        absl::StrCat("--format: \"", format, "\" is not one of table, json"));
  }
  PASSERELLE_ASSIGN_OR_RETURN(v1::ClientConfig config, ClientConfigFrom(flags));
  if (config.project().empty()) {
    return absl::InvalidArgumentError(
        "no project: give --project or set it in the config");
  }
  PASSERELLE_ASSIGN_OR_RETURN(int64_t timeout_ms,
                              flags.GetInt("timeout-ms", 10000));
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<v1::GatewayService::Stub> stub,
                              NewGatewayStub(config));
  v1::BudgetRequest request;
  request.set_project(config.project());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(timeout_ms));
  v1::BudgetResponse response;
  grpc::Status status = stub->Budget(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::cout << (format == "json" ? FormatBudgetJson(response)
                                 : FormatBudgetTable(response));
  return absl::OkStatus();
}

}  // namespace

std::string FormatBudgetTable(const v1::BudgetResponse& r) {
  std::string out = absl::StrCat("project ", r.project(), " (policy ",
                                 r.policy_version().substr(0, 12), ")\n\n");
  // Pure-DP spending also counts as rho = epsilon^2/2 against rho caps;
  // the rho column is shown only where a rho cap exists.
  bool rho = r.project_account().has_rho_cap();
  for (const v1::BudgetAccount& a : r.researchers()) rho |= a.has_rho_cap();
  for (const v1::BudgetAccount& a : r.federation_researchers())
    rho |= a.has_rho_cap();
  auto row = [rho](const std::string& name, const v1::BudgetAccount& a) {
    std::vector<std::string> out = {name, Amount(a.epsilon_spent())};
    if (rho) out.push_back(Amount(a.rho_spent()));
    out.push_back(Remaining(a));
    return out;
  };
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"account", "epsilon spent"});
  if (rho) rows[0].push_back("rho spent");
  rows[0].push_back("remaining");
  rows.push_back(row("project", r.project_account()));
  for (const v1::BudgetAccount& a : r.researchers())
    rows.push_back(row(a.researcher(), a));
  // The federation-wide cap: the same researcher across every project.
  for (const v1::BudgetAccount& a : r.federation_researchers())
    rows.push_back(row(a.researcher() + " (all projects)", a));
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  for (size_t k = 0; k < rows.size(); ++k) {
    std::string line;
    for (size_t i = 0; i < rows[k].size(); ++i) {
      const std::string& cell = rows[k][i];
      const std::string pad(width[i] - cell.size(), ' ');
      // Text left, numbers right.
      const bool text = i == 0 || i + 1 == rows[k].size();
      absl::StrAppend(&line, text ? cell + pad : pad + cell,
                      i + 1 < rows[k].size() ? "  " : "");
    }
    line = std::string(absl::StripTrailingAsciiWhitespace(line));
    absl::StrAppend(&out, line, "\n");
    if (k == 0) absl::StrAppend(&out, std::string(line.size(), '-'), "\n");
  }
  absl::StrAppend(&out, "\nnext reset: ", ResetText(r), "\n");
  for (int i = 0; i < r.federation_researchers_size() &&
                  i < r.federation_next_reset_unix_size();
       ++i) {
    const int64_t t = r.federation_next_reset_unix(i);
    absl::StrAppend(
        &out, "next reset of ", r.federation_researchers(i).researcher(),
        " (all projects): ",
        t == 0
            ? std::string("never")
            : absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::FromUnixSeconds(t),
                               absl::UTCTimeZone()),
        "\n");
  }
  return out;
}

std::string FormatBudgetJson(const v1::BudgetResponse& r) {
  std::string researchers;
  for (const v1::BudgetAccount& a : r.researchers()) {
    absl::StrAppend(&researchers, researchers.empty() ? "" : ", ",
                    AccountJson(a));
  }
  std::string federation;
  for (const v1::BudgetAccount& a : r.federation_researchers()) {
    absl::StrAppend(&federation, federation.empty() ? "" : ", ",
                    AccountJson(a));
  }
  return absl::StrCat(
      "{\"project\": ", JsonQuote(r.project()),
      ", \"policy_version\": ", JsonQuote(r.policy_version()),
      ", \"project_account\": ", AccountJson(r.project_account()),
      ", \"researchers\": [", researchers, "]",
      r.federation_researchers().empty()
          ? std::string()
          : absl::StrCat(", \"federation_researchers\": [", federation, "]"),
      ", \"next_reset\": ",
      r.next_reset_unix() == 0 ? "null" : JsonQuote(ResetText(r)), "}\n");
}

int RunBudgetCommand(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "show") {
    std::cerr << "passerelle budget: unknown command \"" << args[0] << "\"\n"
              << kUsage;
    return 2;
  }
  std::set<std::string> names = ClientFlagNames();
  names.insert("format");
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(std::vector<std::string>(args.begin() + 1, args.end()), names);
  absl::Status status = flags.ok() ? Show(*flags) : flags.status();
  if (!status.ok()) {
    std::cerr << "passerelle budget show: "
              << absl::StatusCodeToString(status.code()) << ": "
              << status.message() << "\n";
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace passerelle::cli
