#include "tests/federation.h"

#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tls/tls.h"

namespace passerelle::testing {

std::string TestPolicy() {
  return R"pb(
federation {
  id: "test-federation"
  gateway_identity: "spiffe://passerelle/gateway"
  site { id: "fr" }
  site { id: "qc" }
  member { identity: "spiffe://passerelle/user/bob" role: AUDITOR }
  disclosure {
    min_cell_size: 1
    mechanism: LAPLACE
    epsilon_per_query: 1.0
    exact_mode_allowed: true
  }
  allow {
    domains: ["condition", "drug", "procedure", "measurement", "visit", "observation"]
    vocabularies: ["icd10", "icd9", "atc", "loinc", "ccam", "snomed", "ndc", "concept", "rxnorm"]
    criteria: ["sex", "birth_year", "age", "deceased", "event", "sequence", "value", "window", "count", "not"]
    dimensions: ["sex", "age_band", "site"]
  }
}
project {
  id: "exact"
  purposes: "DUO:0000006"
  member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
  valid_from: "2020-01-01"
  valid_until: "2099-12-31"
  sites: ["fr", "qc"]
  disclosure { mechanism: EXACT }
}
project {
  id: "noised"
  purposes: "DUO:0000006"
  member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
  valid_from: "2020-01-01"
  valid_until: "2099-12-31"
  sites: ["fr", "qc"]
  disclosure { mechanism: LAPLACE epsilon_per_query: 0.5 }
  budget { epsilon_cap: 5 researcher_epsilon_cap: 5 }
}
site {
  id: "fr"
  callers: "spiffe://passerelle/gateway"
  disclosure { min_cell_size: 1 exact_mode_allowed: true }
}
site {
  id: "qc"
  callers: "spiffe://passerelle/gateway"
  disclosure { min_cell_size: 1 exact_mode_allowed: true }
}
)pb";
}

std::vector<int64_t> CountsFromJson(const std::string& json) {
  std::vector<int64_t> counts;
  static const std::regex re("\"count\": (-?[0-9]+)");
  for (auto it = std::sregex_iterator(json.begin(), json.end(), re);
       it != std::sregex_iterator(); ++it) {
    int64_t v;
    if (absl::SimpleAtoi((*it)[1].str(), &v)) counts.push_back(v);
  }
  return counts;
}

absl::Status Federation::MintPki() {
  absl::StatusOr<CommandResult> r = RunCommand(
      {"/bin/bash", SourceDir() + "/deploy/pki/mint.sh", Path("pki")});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("mint.sh failed: ", r->err));
  }
  return absl::OkStatus();
}

absl::Status Federation::LoadSite(const std::string& site,
                                  const std::string& csv_dir) {
  absl::StatusOr<CommandResult> r =
      RunCommand({PasserelleBin(), "node", "load", "--store", Path(site + "/store"),
                  "--site", site, csv_dir});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("node load ", site, " failed: ", r->err));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> Federation::LocalCounts(
    const std::string& site, const std::string& query) {
  absl::StatusOr<CommandResult> r =
      RunCommand({PasserelleBin(), "node", "count", "--store", Path(site + "/store"),
                  "--format", "json", query});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("node count failed: ", r->err));
  }
  return CountsFromJson(r->out);
}

absl::Status Federation::StartNode(const std::string& site) {
  const std::string config = Path(site + "/node.textproto");
  std::remove(Path(site + "/port").c_str());
  WriteFile(config, absl::StrCat(
      "site: \"", site, "\"\nlisten: \"127.0.0.1:0\"\n",
      "store_dir: \"", Path(site + "/store"), "\"\n",
      "audit_dir: \"", Path(site + "/audit"), "\"\n",
      "audit_key_file: \"", Path(site + "/audit.key"), "\"\n",
      "allowed_callers: \"spiffe://passerelle/gateway\"\nmin_cell_size: 1\n",
      "port_file: \"", Path(site + "/port"), "\"\n",
      "tls { ca_file: \"", Path("pki/ca.pem"), "\" cert_file: \"",
      Path("pki/node-" + site + ".pem"), "\" key_file: \"",
      Path("pki/node-" + site + ".key"), "\" }\n"));
  absl::StatusOr<Process> p = Process::Start(
      {PasserelleBin(), "node", "serve", "--config", config}, Path(site + "/node.log"));
  if (!p.ok()) return p.status();
  nodes_.erase(site);
  Process& proc = nodes_.emplace(site, *std::move(p)).first->second;
  absl::StatusOr<int> port = WaitForPortFile(Path(site + "/port"), proc);
  if (!port.ok()) return port.status();
  node_ports_[site] = *port;
  return absl::OkStatus();
}

absl::Status Federation::StartGateway(const std::string& policy_text) {
  WriteFile(Path("gateway/policy.textproto"), policy_text);
  std::string config = absl::StrCat(
      "listen: \"127.0.0.1:0\"\nport_file: \"", Path("gateway/port"), "\"\n",
      "ledger_dir: \"", Path("gateway/ledger"), "\"\n",
      "audit_dir: \"", Path("gateway/audit"), "\"\n",
      "audit_key_file: \"", Path("gateway/audit.key"), "\"\n",
      "default_timeout_ms: 5000\n",
      "policy_files: \"", Path("gateway/policy.textproto"), "\"\n",
      "tls { ca_file: \"", Path("pki/ca.pem"), "\" cert_file: \"",
      Path("pki/gateway.pem"), "\" key_file: \"", Path("pki/gateway.key"), "\" }\n");
  for (const auto& [site, port] : node_ports_) {
    absl::StrAppend(&config, "sites { site: \"", site, "\" address: \"127.0.0.1:",
                    port, "\" tls_server_name: \"localhost\" }\n");
  }
  WriteFile(Path("gateway/gateway.textproto"), config);
  absl::StatusOr<Process> p = Process::Start(
      {PasserelleBin(), "gateway", "serve", "--config", Path("gateway/gateway.textproto")},
      Path("gateway/gateway.log"));
  if (!p.ok()) return p.status();
  gateway_ = std::make_unique<Process>(*std::move(p));
  absl::StatusOr<int> port = WaitForPortFile(Path("gateway/port"), *gateway_);
  if (!port.ok()) return port.status();
  gateway_port_ = *port;
  return absl::OkStatus();
}

grpc::Status Federation::Query(const std::string& project,
                               const std::string& text,
                               v1::QueryResponse* response,
                               const std::string& user) {
  tls::TlsFiles files;
  files.ca_file = Path("pki/ca.pem");
  files.cert_file = Path("pki/" + user + ".pem");
  files.key_file = Path("pki/" + user + ".key");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      tls::MakeChannelCredentials(files);
  if (!creds.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string(creds.status().message()));
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto stub = v1::GatewayService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", gateway_port_), *creds, args));
  v1::QueryRequest request;
  request.set_text(text);
  request.set_project(project);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return stub->Query(&context, request, response);
}

}  // namespace passerelle::testing
