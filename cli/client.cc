#include "cli/client.h"

#include <cstdlib>

#include "common/status_macros.h"
#include "common/textproto.h"
#include "grpcpp/grpcpp.h"
#include "tls/config.h"
#include "tls/tls.h"

namespace passerelle::cli {

absl::StatusOr<v1::ClientConfig> ClientConfigFrom(const ParsedFlags& flags) {
  v1::ClientConfig config;
  std::string path = flags.Get("config");
  if (path.empty() && std::getenv("PASSERELLE_CONFIG") != nullptr) {
    path = std::getenv("PASSERELLE_CONFIG");
  }
  if (!path.empty())
    PASSERELLE_RETURN_IF_ERROR(LoadTextProtoFile(path, &config));
  if (flags.Has("gateway")) config.set_gateway(flags.Get("gateway"));
  if (flags.Has("server-name"))
    config.set_tls_server_name(flags.Get("server-name"));
  if (flags.Has("ca")) config.mutable_tls()->set_ca_file(flags.Get("ca"));
  if (flags.Has("cert")) config.mutable_tls()->set_cert_file(flags.Get("cert"));
  if (flags.Has("key")) config.mutable_tls()->set_key_file(flags.Get("key"));
  if (flags.Has("project")) config.set_project(flags.Get("project"));
  if (flags.Has("server-id"))
    config.set_server_identity(flags.Get("server-id"));
  if (config.gateway().empty()) {
    return absl::InvalidArgumentError(
        "no gateway address: give --gateway or a --config file");
  }
  return config;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const v1::ClientConfig& config) {
  const tls::TlsFiles files = tls::TlsFilesFrom(config.tls());
  std::string server = config.server_identity();
  if (server.empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(const std::string trust_domain,
                                tls::TrustDomain(files));
    server = tls::GatewayIdentity(trust_domain);
  }
  return tls::MakeChannelCredentials(files, server);
}

absl::StatusOr<std::unique_ptr<v1::GatewayService::Stub>> NewGatewayStub(
    const v1::ClientConfig& config) {
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                              ClientCredentials(config));
  grpc::ChannelArguments args;
  if (!config.tls_server_name().empty()) {
    args.SetSslTargetNameOverride(config.tls_server_name());
  }
  return v1::GatewayService::NewStub(
      grpc::CreateCustomChannel(config.gateway(), creds, args));
}

}  // namespace passerelle::cli
