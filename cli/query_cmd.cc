#include "cli/query_cmd.h"

#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/flags.h"
#include "cli/format.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/textproto.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/config.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "tls/tls.h"
#include "vocab/labels.h"

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage: passerelle query [--config FILE] [--format table|json|csv]\n"
    "                        [--project P] [--purpose DUO:...] [--site S]...\n"
    "                        [--gateway HOST:PORT] [--ca FILE] [--cert FILE]\n"
    "                        [--key FILE] [--server-name NAME] [--timeout-ms "
    "N]\n"
    "                        [--server-id SPIFFE_ID]\n"
    "                        [--nomenclatures DIR | --vocab-index DIR]\n"
    "                        [--lang fr|en] 'QUERY'\n"
    "       passerelle query [same flags] --explain 'QUERY'\n"
    "--explain shows how each site would match the query's codes (its\n"
    "crosswalk expansion) without counting anything: no budget is charged.\n"
    "The server must prove the gateway's identity (or --server-id's).\n"
    "With --nomenclatures (or $PASSERELLE_NOMENCLATURES), or --vocab-index\n"
    "(or $PASSERELLE_VOCAB_INDEX), the query's codes are shown with their\n"
    "labels (docs/labels.md), in --lang (or $PASSERELLE_LANG; default fr).\n"
    "The config file (protobuf text, see deploy/) defaults to "
    "$PASSERELLE_CONFIG.\n";

// The flag's value, else the environment variable's, else "".
std::string FlagOrEnv(const ParsedFlags& flags, const char* flag,
                      const char* env) {
  if (flags.Has(flag)) return flags.Get(flag);
  const char* v = std::getenv(env);
  return v == nullptr ? "" : v;
}

// Labels for the expansion lines' codes, read from the public
// nomenclatures when the researcher names them; null when none is named.
// A directory named by a flag that cannot be read is an error; one named
// only by the environment gives a warning and no labels.
absl::StatusOr<std::unique_ptr<vocab::Labels>> LoadLabels(
    const ParsedFlags& flags) {
  const std::string index =
      FlagOrEnv(flags, "vocab-index", "PASSERELLE_VOCAB_INDEX");
  const std::string dir =
      FlagOrEnv(flags, "nomenclatures", "PASSERELLE_NOMENCLATURES");
  if (index.empty() && dir.empty()) return std::unique_ptr<vocab::Labels>();
  absl::StatusOr<std::unique_ptr<vocab::Labels>> labels =
      !index.empty() ? vocab::Labels::LoadIndex(index)
                     : vocab::Labels::Load(dir);
  if (labels.ok()) return labels;
  const bool explicit_flag =
      flags.Has(!index.empty() ? "vocab-index" : "nomenclatures");
  if (explicit_flag) return labels.status();
  std::cerr << "passerelle query: warning: no code labels: "
            << labels.status().message() << "\n";
  return std::unique_ptr<vocab::Labels>();
}

absl::Status Run(const ParsedFlags& flags) {
  const bool explain = flags.Has("explain");
  if (explain && !flags.positional.empty()) {
    return absl::InvalidArgumentError(
        "--explain takes the QUERY as its value; no other QUERY argument");
  }
  if (!explain && flags.positional.size() != 1) {
    return absl::InvalidArgumentError("expected exactly one QUERY argument");
  }
  PASSERELLE_ASSIGN_OR_RETURN(OutputFormat format,
                              ParseOutputFormat(flags.Get("format")));
  PASSERELLE_ASSIGN_OR_RETURN(v1::ClientConfig config, ClientConfigFrom(flags));
  PASSERELLE_ASSIGN_OR_RETURN(int64_t timeout_ms,
                              flags.GetInt("timeout-ms", 30000));
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<v1::GatewayService::Stub> stub,
                              NewGatewayStub(config));

  v1::QueryRequest request;
  request.set_text(explain ? flags.Get("explain") : flags.positional[0]);
  request.set_project(config.project());
  request.set_purpose(flags.Get("purpose"));
  for (const std::string& s : flags.GetAll("site")) request.add_sites(s);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(timeout_ms));
  const std::string lang_text = FlagOrEnv(flags, "lang", "PASSERELLE_LANG");
  const std::optional<vocab::Language> lang =
      vocab::ParseLanguage(lang_text.empty() ? "fr" : lang_text);
  if (!lang.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lang \"", lang_text, "\" must be fr or en"));
  }
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<vocab::Labels> labels,
                              LoadLabels(flags));
  FormatOptions options;
  if (labels != nullptr) {
    // A code of the query as the expansion names it: "icd10:E11*".
    options.code_labels = [&labels, lang](const std::string& code) {
      const size_t colon = code.find(':');
      if (colon == std::string::npos) return std::string();
      std::string c = code.substr(colon + 1);
      if (!c.empty() && c.back() == '*') c.pop_back();
      return labels->Describe(code.substr(0, colon), c, *lang);
    };
  }
  if (explain) {
    v1::ExplainResponse response;
    grpc::Status status = stub->Explain(&context, request, &response);
    if (!status.ok()) return FromGrpcStatus(status);
    std::cout << FormatExplainResponse(response, format, options);
    return absl::OkStatus();
  }
  v1::QueryResponse response;
  grpc::Status status = stub->Query(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::cout << FormatQueryResponse(response, format, options);
  return absl::OkStatus();
}

}  // namespace

int RunQueryCommand(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "help")) {
    std::cout << kUsage;
    return 0;
  }
  std::set<std::string> names = ClientFlagNames();
  names.insert({"format", "purpose", "site", "explain", "nomenclatures",
                "vocab-index", "lang"});
  absl::StatusOr<ParsedFlags> flags = ParseFlags(args, names);
  absl::Status status = flags.ok() ? Run(*flags) : flags.status();
  if (!status.ok()) {
    std::cerr << "passerelle query: " << absl::StatusCodeToString(status.code())
              << ": " << status.message() << "\n";
    if (status.code() == absl::StatusCode::kInvalidArgument && !flags.ok()) {
      std::cerr << kUsage;
    }
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace passerelle::cli
