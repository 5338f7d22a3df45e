// The researcher/auditor side of the CLI: client configuration (file, then
// flags) and an mTLS channel to the gateway.
#ifndef PASSERELLE_CLI_CLIENT_H_
#define PASSERELLE_CLI_CLIENT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "grpcpp/security/credentials.h"
#include "passerelle/v1/config.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"

namespace passerelle::cli {

// The flags every gateway client takes (values).
inline const std::set<std::string>& ClientFlagNames() {
  static const auto* names = new std::set<std::string>{
      "config", "project",     "gateway",    "ca",       "cert",
      "key",    "server-name", "timeout-ms", "server-id"};
  return *names;
}

// --config FILE (or $PASSERELLE_CONFIG), overridden by --gateway, --ca,
// --cert, --key, --server-name, --project, --server-id.
absl::StatusOr<v1::ClientConfig> ClientConfigFrom(const ParsedFlags& flags);

// mTLS channel credentials with the config's certificate, accepting only a
// server whose identity is config.server_identity() (empty: the gateway's,
// spiffe://<trust domain>/gateway).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const v1::ClientConfig& config);

// A stub over mTLS with the config's certificate (ClientCredentials).
absl::StatusOr<std::unique_ptr<v1::GatewayService::Stub>> NewGatewayStub(
    const v1::ClientConfig& config);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_CLIENT_H_
