#include "cli/query_cmd.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
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
    "                        [--key FILE] [--server-name NAME] [--timeout-ms N]\n"
    "                        'QUERY'\n"
    "The config file (protobuf text, see deploy/) defaults to $PASSERELLE_CONFIG.\n";

absl::StatusOr<v1::ClientConfig> ClientConfigFrom(const ParsedFlags& flags) {
  v1::ClientConfig config;
  std::string path = flags.Get("config");
  if (path.empty() && std::getenv("PASSERELLE_CONFIG") != nullptr) {
    path = std::getenv("PASSERELLE_CONFIG");
  }
  if (!path.empty()) PASSERELLE_RETURN_IF_ERROR(LoadTextProtoFile(path, &config));
  if (flags.Has("gateway")) config.set_gateway(flags.Get("gateway"));
  if (flags.Has("server-name")) config.set_tls_server_name(flags.Get("server-name"));
  if (flags.Has("ca")) config.mutable_tls()->set_ca_file(flags.Get("ca"));
  if (flags.Has("cert")) config.mutable_tls()->set_cert_file(flags.Get("cert"));
  if (flags.Has("key")) config.mutable_tls()->set_key_file(flags.Get("key"));
  if (flags.Has("project")) config.set_project(flags.Get("project"));
  if (config.gateway().empty()) {
    return absl::InvalidArgumentError("no gateway address: give --gateway or a --config file");
  }
  return config;
}

absl::Status Run(const ParsedFlags& flags) {
  if (flags.positional.size() != 1) {
    return absl::InvalidArgumentError("expected exactly one QUERY argument");
  }
  PASSERELLE_ASSIGN_OR_RETURN(OutputFormat format, ParseOutputFormat(flags.Get("format")));
  PASSERELLE_ASSIGN_OR_RETURN(v1::ClientConfig config, ClientConfigFrom(flags));
  PASSERELLE_ASSIGN_OR_RETURN(int64_t timeout_ms, flags.GetInt("timeout-ms", 30000));
  tls::TlsFiles files;
  files.ca_file = config.tls().ca_file();
  files.cert_file = config.tls().cert_file();
  files.key_file = config.tls().key_file();
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                              tls::MakeChannelCredentials(files));
  grpc::ChannelArguments args;
  if (!config.tls_server_name().empty()) {
    args.SetSslTargetNameOverride(config.tls_server_name());
  }
  auto stub = v1::GatewayService::NewStub(
      grpc::CreateCustomChannel(config.gateway(), creds, args));

  v1::QueryRequest request;
  request.set_text(flags.positional[0]);
  request.set_project(config.project());
  request.set_purpose(flags.Get("purpose"));
  for (const std::string& s : flags.GetAll("site")) request.add_sites(s);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(timeout_ms));
  v1::QueryResponse response;
  grpc::Status status = stub->Query(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::cout << FormatQueryResponse(response, format);
  return absl::OkStatus();
}

}  // namespace

int RunQueryCommand(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "--help" || args[0] == "help")) {
    std::cout << kUsage;
    return 0;
  }
  absl::StatusOr<ParsedFlags> flags = ParseFlags(
      args, {"config", "format", "project", "purpose", "site", "gateway", "ca",
             "cert", "key", "server-name", "timeout-ms"});
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
