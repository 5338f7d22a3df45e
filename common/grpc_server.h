// Settings shared by the synchronous gRPC servers (gateway and nodes).
#ifndef PASSERELLE_COMMON_GRPC_SERVER_H_
#define PASSERELLE_COMMON_GRPC_SERVER_H_

#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/limits.h"
#include "grpcpp/health_check_service_interface.h"
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

// Every server's largest accepted request (limits::kMaxReceiveMessageBytes):
// gRPC's default of 4 MiB would let any certificate holder make a server
// parse (and, before the field checks, hold) megabytes per call. Larger
// requests fail with RESOURCE_EXHAUSTED in the transport.
inline void ApplyRequestSizeLimit(grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(limits::kMaxReceiveMessageBytes);
}

// Writes the port a server listens on to `path` (via a renamed temporary,
// so a reader never sees a partial number).
inline absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// Publishes a HealthProbe's verdicts: logs each change as "<who>: health
// ..." and sets every service name's status in the server's
// grpc.health.v1 service once attached (verdicts before that are logged
// only). Thread-safe.
class HealthPublisher {
 public:
  HealthPublisher(std::string who, std::vector<std::string> service_names)
      : who_(std::move(who)), names_(std::move(service_names)) {}

  void Publish(bool serving, const std::string& why) {
    std::cerr << who_ << ": health " << (serving ? "SERVING" : "NOT_SERVING: ")
              << why << "\n";
    absl::MutexLock lock(&mu_);
    if (service_ == nullptr) return;
    for (const std::string& name : names_) {
      service_->SetServingStatus(name, serving);
    }
  }
  // The probe's change callback; the publisher must outlive the probe.
  std::function<void(bool, const std::string&)> Listener() {
    return
        [this](bool serving, const std::string& why) { Publish(serving, why); };
  }
  void Attach(grpc::HealthCheckServiceInterface* service) {
    absl::MutexLock lock(&mu_);
    service_ = service;
  }

 private:
  const std::string who_;
  const std::vector<std::string> names_;
  absl::Mutex mu_;
  grpc::HealthCheckServiceInterface* service_ ABSL_GUARDED_BY(mu_) = nullptr;
};

// A config's health_interval_ms, 5 s when unset.
inline absl::Duration HealthInterval(int interval_ms) {
  return absl::Milliseconds(interval_ms > 0 ? interval_ms : 5000);
}

}  // namespace passerelle

#endif  // PASSERELLE_COMMON_GRPC_SERVER_H_
