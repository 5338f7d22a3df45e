// A local federation for multi-process tests: minted PKI, node stores,
// node and gateway daemons on loopback with mTLS, and a researcher client.
#ifndef PASSERELLE_TESTS_FEDERATION_H_
#define PASSERELLE_TESTS_FEDERATION_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "passerelle/v1/node.pb.h"
#include "tests/process.h"

namespace passerelle::testing {

// A policy for tests: project "exact" (exact mode, thresholds only, min cell
// size 1) and project "noised" (discrete Laplace, epsilon 0.5, cap 5), both
// with alice as researcher and sites fr and qc.
std::string TestPolicy();

class Federation {
 public:
  explicit Federation(std::string root) : root_(std::move(root)) {}

  // Mints the federation CA and certificates.
  absl::Status MintPki();
  // `passerelle node load` of an OMOP CSV directory into site's store.
  absl::Status LoadSite(const std::string& site, const std::string& csv_dir);
  // Exact local counts from the steward tool (before the node is started).
  absl::StatusOr<std::vector<int64_t>> LocalCounts(const std::string& site,
                                                   const std::string& query);
  absl::Status StartNode(const std::string& site);
  absl::Status StartGateway(const std::string& policy_text);
  Process& node(const std::string& site) { return nodes_.at(site); }

  // alice's (or `user`'s) query through the gateway.
  grpc::Status Query(const std::string& project, const std::string& text,
                     v1::QueryResponse* response,
                     const std::string& user = "alice");

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
