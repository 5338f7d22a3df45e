// Settings shared by the synchronous gRPC servers (gateway and nodes).
#ifndef PASSERELLE_COMMON_GRPC_SERVER_H_
#define PASSERELLE_COMMON_GRPC_SERVER_H_

#include "grpcpp/server_builder.h"
#include "grpcpp/support/channel_arguments.h"

namespace passerelle {

// Idle threads a sync server keeps waiting for requests. gRPC's default
// (at most 2) makes a server under concurrent load create and destroy a
// thread for nearly every request (a handler thread that finishes finds
// more than 2 idle threads and exits; the next request finds too few and
// spawns one): measured at the load benchmark's concurrency 16, ~0.85
// clone() per request in each server, ~15% of their CPU. Threads above
// this many idle ones still exit, so a burst does not pin memory forever.
inline constexpr int kSyncServerMaxIdleThreads = 64;

inline void ConfigureSyncServerThreads(grpc::ServerBuilder* builder) {
  builder->SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 2);
  builder->SetSyncServerOption(
      grpc::ServerBuilder::SyncServerOption::MAX_POLLERS,
      kSyncServerMaxIdleThreads);
}

// Channel settings for the federation's own connections (gateway to nodes,
// clients to the gateway): HTTP/2 BDP probing (a PING answered for reads,
// to size flow-control windows) is for long bulk transfers; these calls are
// small unary messages, and the pings cost each side a write and a read.
inline void ApplyLowOverheadChannelArgs(grpc::ChannelArguments* args) {
  args->SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
}
inline void ApplyLowOverheadServerArgs(grpc::ServerBuilder* builder) {
  builder->AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_GRPC_SERVER_H_
