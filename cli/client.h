// The researcher/auditor side of the CLI: client configuration (file, then
// flags) and an mTLS channel to the gateway.
#ifndef PASSERELLE_CLI_CLIENT_H_
#define PASSERELLE_CLI_CLIENT_H_

#include <memory>

#include "absl/status/statusor.h"
#include "cli/flags.h"
#include "passerelle/v1/config.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"

namespace passerelle::cli {

// The flags every gateway client takes (values).
inline const std::set<std::string>& ClientFlagNames() {
  static const auto* names = new std::set<std::string>{
      "config", "project", "gateway",     "ca",
      "cert",   "key",     "server-name", "timeout-ms"};
  return *names;
}

// --config FILE (or $PASSERELLE_CONFIG), overridden by --gateway, --ca,
// --cert, --key, --server-name, --project.
absl::StatusOr<v1::ClientConfig> ClientConfigFrom(const ParsedFlags& flags);

// A stub over mTLS with the config's certificate.
absl::StatusOr<std::unique_ptr<v1::GatewayService::Stub>> NewGatewayStub(
    const v1::ClientConfig& config);

}  // namespace passerelle::cli

#endif  // PASSERELLE_CLI_CLIENT_H_
