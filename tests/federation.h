// A local federation for multi-process tests: minted PKI, node stores,
// node and gateway daemons on loopback with mTLS, and a researcher client.
#ifndef PASSERELLE_TESTS_FEDERATION_H_
#define PASSERELLE_TESTS_FEDERATION_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/security/credentials.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "passerelle/v1/node.pb.h"
#include "tests/process.h"

namespace passerelle::testing {

// The identities the test PKI (mint.sh's defaults) gives the servers.
inline constexpr char kGatewayId[] = "spiffe://passerelle/gateway";
inline std::string NodeId(const std::string& site) {
  return "spiffe://passerelle/site/" + site + "/node";
}

// A policy for tests: project "exact" (exact mode, thresholds only, min cell
// size 1) and project "noised" (discrete Laplace, epsilon 0.5, cap 5), both
// with alice as researcher and sites fr and qc.
std::string TestPolicy();

// What a node is started with beyond the defaults.
struct NodeOptions {
  // Non-empty: the node loads this site policy (written to
  // <site>/site-policy.textproto, hot reloaded) instead of the fixed
  // allow-list (the gateway's identity, minimum cell size 1).
  std::string site_policy;
  // TLS file refresh interval; 0: the daemon's default.
  unsigned tls_refresh_interval_sec = 0;
  // More node config fields, in text format (e.g. "snapshots_kept: 1").
  std::string extra_config;
};

// What the gateway is started with beyond the policy.
struct GatewayOptions {
  std::string crl_dir;  // Hashed CRL directory; empty: no revocation check.
  unsigned tls_refresh_interval_sec = 0;  // 0: the daemon's default.
  // Site -> the address the gateway is configured to dial for it, instead
  // of that site's node (e.g. another site's node, to pose as it).
  std::map<std::string, std::string> site_address;
};

// Plain gRPC SSL channel credentials from PEM files, without any local check,
// so a test can present a certificate Passerelle's own TLS library would
// refuse to load (foreign CA, expired). Empty cert and key: no client
// certificate at all.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> RawCredentials(
    const std::string& ca_file, const std::string& cert_file,
    const std::string& key_file);

class Federation {
 public:
  explicit Federation(std::string root) : root_(std::move(root)) {}

  // Mints the federation CA and certificates.
  absl::Status MintPki();
  // deploy/pki/mint.sh DIR ARGS... (e.g. {"--revoke", "alice"} on Path("pki"),
  // or a second, foreign PKI in another directory).
  absl::Status Mint(const std::string& dir,
                    const std::vector<std::string>& args);
  // `passerelle node load` of an OMOP CSV directory into site's store, with
  // `extra_args` (e.g. {"--future-events", "keep"}).
  absl::Status LoadSite(const std::string& site, const std::string& csv_dir,
                        const std::vector<std::string>& extra_args = {});
  // `passerelle generate` of `patients` synthetic patients (seed `seed`) as
  // CSV into Path("data/<site>"), then LoadSite of that directory.
  absl::Status GenerateSite(const std::string& site, int patients, int seed);
  // Exact local counts from the steward tool (before the node is started).
  absl::StatusOr<std::vector<int64_t>> LocalCounts(const std::string& site,
                                                   const std::string& query);
  // (Re)starts a node; a node already running for `site` is stopped first.
  absl::Status StartNode(const std::string& site);
  absl::Status StartNode(const std::string& site, const NodeOptions& options);
  // (Re)starts the gateway with the nodes started so far; its policy file is
  // PolicyFile(). A gateway already running is stopped first.
  absl::Status StartGateway(const std::string& policy_text);
  absl::Status StartGateway(const std::string& policy_text,
                            const GatewayOptions& options);
  Process& node(const std::string& site) { return nodes_.at(site); }
  Process& gateway() { return *gateway_; }
  // "127.0.0.1:<port>" of a running node or of the gateway ("gateway").
  std::string Address(const std::string& process) const;
  // SIGKILLs and reaps the node or the gateway (nothing if not running).
  void StopNode(const std::string& site);
  void StopGateway();
  void StopAll();
  std::string PolicyFile() const { return Path("gateway/policy.textproto"); }

  // alice's (or `user`'s) query through the gateway.
  grpc::Status Query(const std::string& project, const std::string& text,
                     v1::QueryResponse* response,
                     const std::string& user = "alice");
  // The same with any credentials, over a connection of its own (a fresh
  // TLS handshake). `server_cert_pem`, when given, receives the certificate
  // the gateway presented.
  grpc::Status QueryWith(
      const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      const std::string& project, const std::string& text,
      v1::QueryResponse* response, std::string* server_cert_pem = nullptr,
      const std::vector<std::string>& sites = {});
  // Credentials of pki/<name>.pem through Passerelle's TLS library, for a
  // server that must prove `server` (the gateway's identity by default).
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
      const std::string& name, const std::string& server = kGatewayId);
  // `user`'s view of the project's privacy budget.
  grpc::Status Budget(const std::string& project, v1::BudgetResponse* response,
                      const std::string& user = "alice");
  // A Count call straight to a node (not through the gateway).
  grpc::Status CountAtNode(
      const std::string& site,
      const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      const v1::CountRequest& request, v1::CountResponse* response);
  // A GetInfo call straight to a node.
  grpc::Status InfoAtNode(
      const std::string& site,
      const std::shared_ptr<grpc::ChannelCredentials>& credentials,
      v1::NodeInfo* info);

  std::string Path(const std::string& name) const { return root_ + "/" + name; }

 private:
  std::string root_;
  std::map<std::string, Process> nodes_;
  std::map<std::string, int> node_ports_;
  std::unique_ptr<Process> gateway_;
  int gateway_port_ = 0;
};

// Counts of a `node count --format json` output, in cell order.
std::vector<int64_t> CountsFromJson(const std::string& json);

}  // namespace passerelle::testing

#endif  // PASSERELLE_TESTS_FEDERATION_H_
