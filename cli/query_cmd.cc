#include "cli/query_cmd.h"

#include <cstdlib>
#include <iostream>

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

namespace passerelle::cli {
namespace {

constexpr char kUsage[] =
    "usage: passerelle query [--config FILE] [--format table|json|csv]\n"
    "                        [--project P] [--purpose DUO:...] [--site S]...\n"
    "                        [--gateway HOST:PORT] [--ca FILE] [--cert FILE]\n"
    "                        [--key FILE] [--server-name NAME] [--timeout-ms "
    "N]\n"
    "                        [--server-id SPIFFE_ID] 'QUERY'\n"
    "       passerelle query [same flags] --explain 'QUERY'\n"
    "--explain shows how each site would match the query's codes (its\n"
    "crosswalk expansion) without counting anything: no budget is charged.\n"
    "The server must prove the gateway's identity (or --server-id's).\n"
    "The config file (protobuf text, see deploy/) defaults to "
    "$PASSERELLE_CONFIG.\n";

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
  // Vocabulary labels hook (FormatOptions::code_labels): unset, codes are
  // shown without labels.
  const FormatOptions options;
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
  names.insert({"format", "purpose", "site", "explain"});
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
