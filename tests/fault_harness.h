// Helpers for the fault and network-namespace tests: node and gateway
// daemons started with configurations the plain Federation harness does not
// write (site addresses pointing at a TcpProxy, per-site timeouts, retry
// and health settings, a command prefix such as `ip netns exec NS`), and
// clients that call them with a chosen deadline.
#ifndef PASSERELLE_TESTS_FAULT_HARNESS_H_
#define PASSERELLE_TESTS_FAULT_HARNESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "tests/federation.h"
#include "tests/process.h"

namespace passerelle::testing {

struct DaemonSpec {
  std::string listen = "127.0.0.1:0";
  int health_interval_ms = 100;
  std::vector<std::string> prefix;  // Runs prefix + argv (e.g. ip netns exec).
};

struct SiteSpec {
  std::string site;
  std::string address;  // host:port the gateway dials.
  int timeout_ms = 0;   // 0: the gateway default.
};

struct GatewaySpec : DaemonSpec {
  std::vector<SiteSpec> sites;
  int default_timeout_ms = 5000;
  int retry_max_attempts = 0;  // 0: the daemon's defaults.
  int retry_initial_backoff_ms = 0;
  int retry_max_backoff_ms = 0;
  int node_info_interval_ms = 60000;  // Keeps background calls out of counts.
};

// A daemon and the port it announced.
struct Daemon {
  std::unique_ptr<Process> process;
  int port = 0;
  std::string identity;  // The SPIFFE ID its certificate carries.
};

// Starts `passerelle node serve` for `site` over fed's store, PKI and audit
// paths (the fixed allow-list of the gateway's identity, min cell size 1,
// or `site_policy_file` when given).
absl::StatusOr<Daemon> StartNodeDaemon(
    Federation& fed, const std::string& site, const DaemonSpec& spec,
    const std::string& site_policy_file = "");
// Starts `passerelle gateway serve` with `policy_text` (written to
// fed.PolicyFile()) and the sites of `spec`.
absl::StatusOr<Daemon> StartGatewayDaemon(Federation& fed,
                                          const std::string& policy_text,
                                          const GatewaySpec& spec);

// alice's credentials (or `user`'s), through Passerelle's TLS library,
// for a server with identity `server` (the gateway by default).
std::shared_ptr<grpc::ChannelCredentials> UserCredentials(
    Federation& fed, const std::string& user = "alice",
    const std::string& server = kGatewayId);

// A Query at `address` (server name "localhost") within `deadline`.
grpc::Status QueryAt(const std::string& address,
                     const std::shared_ptr<grpc::ChannelCredentials>& creds,
                     const std::string& project, const std::string& text,
                     absl::Duration deadline, v1::QueryResponse* response);

// grpc.health.v1.Health/Check of `service` at `address`: 1 SERVING,
// 2 NOT_SERVING, 3 SERVICE_UNKNOWN (the proto's enum), or the call's error.
absl::StatusOr<int> HealthAt(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds,
    const std::string& service);
inline constexpr int kServing = 1;
inline constexpr int kNotServing = 2;

// Polls `pred` every 20 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout);
// Waits until the process's log contains `needle` (at least `count` times).
bool WaitForLog(const Process& process, const std::string& needle,
                absl::Duration timeout, int count = 1);
int CountInLog(const Process& process, const std::string& needle);

// The site result of `site` in `response`, or null.
const v1::SiteResult* FindSite(const v1::QueryResponse& response,
                               const std::string& site);

}  // namespace passerelle::testing

#endif  // PASSERELLE_TESTS_FAULT_HARNESS_H_
