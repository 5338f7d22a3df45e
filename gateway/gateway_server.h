// The gateway daemon: policy (hot reloaded), budget ledger, audit log, node
// clients and the gRPC server with mTLS, until SIGTERM/SIGINT.
#ifndef PASSERELLE_GATEWAY_GATEWAY_SERVER_H_
#define PASSERELLE_GATEWAY_GATEWAY_SERVER_H_

#include <string>

#include "absl/status/status.h"
#include "passerelle/v1/config.pb.h"

namespace passerelle::gateway {

absl::Status ValidateGatewayConfig(const v1::GatewayConfig& config);
// The caller must have blocked SIGTERM and SIGINT (common/signals.h).
absl::Status RunGatewayServer(const v1::GatewayConfig& config);
absl::Status RunGatewayServerFromFile(const std::string& config_path);

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_GATEWAY_SERVER_H_
