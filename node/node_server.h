// The node daemon: store, engine, site policy, audit log and the gRPC server
// with mTLS, until SIGTERM/SIGINT.
#ifndef PASSERELLE_NODE_NODE_SERVER_H_
#define PASSERELLE_NODE_NODE_SERVER_H_

#include <string>

#include "absl/status/status.h"
#include "passerelle/v1/config.pb.h"

namespace passerelle::node {

// Validates the configuration, naming the first bad field.
absl::Status ValidateNodeConfig(const v1::NodeConfig& config);

// Runs until a termination signal; the caller must have blocked SIGTERM and
// SIGINT (common/signals.h) before any thread started.
absl::Status RunNodeServer(const v1::NodeConfig& config);
absl::Status RunNodeServerFromFile(const std::string& config_path);

}  // namespace passerelle::node

#endif  // PASSERELLE_NODE_NODE_SERVER_H_
