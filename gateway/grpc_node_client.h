// NodeClient over gRPC with mTLS.
#ifndef PASSERELLE_GATEWAY_GRPC_NODE_CLIENT_H_
#define PASSERELLE_GATEWAY_GRPC_NODE_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gateway/node_client.h"
#include "grpcpp/security/credentials.h"

namespace passerelle::gateway {

// `server_name` is checked against the node certificate's SAN (e.g.
// "localhost"); empty uses the host of `address`. `retry` is the fan-out's
// retry policy: the channel's own reconnect backoff is kept below it, so
// that each retry of a call that failed with UNAVAILABLE finds the channel
// ready to connect again (gRPC's defaults, 1 s growing to 120 s, would fail
// every retry at once while the channel waits). `credentials` check the
// node's identity (tls::MakeChannelCredentials with tls::NodeIdentity).
absl::StatusOr<std::unique_ptr<NodeClient>> NewGrpcNodeClient(
    const std::string& site, const std::string& address,
    const std::string& server_name,
    std::shared_ptr<grpc::ChannelCredentials> credentials,
    const FanOutOptions& retry = {});

}  // namespace passerelle::gateway

#endif  // PASSERELLE_GATEWAY_GRPC_NODE_CLIENT_H_
