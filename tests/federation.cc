#include "tests/federation.h"

#include <csignal>
#include <cstdio>
#include <regex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/node.grpc.pb.h"
#include "tls/tls.h"

namespace passerelle::testing {

// clang-format off
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
// clang-format on

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

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> RawCredentials(
    const std::string& ca_file, const std::string& cert_file,
    const std::string& key_file) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadFile(ca_file);
  if (options.pem_root_certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", ca_file));
  }
  if (!cert_file.empty()) {
    options.pem_cert_chain = ReadFile(cert_file);
    options.pem_private_key = ReadFile(key_file);
    if (options.pem_cert_chain.empty() || options.pem_private_key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", cert_file, " or ", key_file));
    }
  }
  return grpc::SslCredentials(options);
}

absl::Status Federation::MintPki() { return Mint(Path("pki"), {"--local"}); }

absl::Status Federation::Mint(const std::string& dir,
                              const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/bin/bash",
                                   SourceDir() + "/deploy/pki/mint.sh", dir};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("mint.sh failed: ", r->err));
  }
  return absl::OkStatus();
}

absl::Status Federation::LoadSite(const std::string& site,
                                  const std::string& csv_dir,
                                  const std::vector<std::string>& extra_args) {
  std::vector<std::string> argv = {
      PasserelleBin(),       "node",   "load", "--store",
      Path(site + "/store"), "--site", site};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  argv.push_back(csv_dir);
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("node load ", site, " failed: ", r->err));
  }
  return absl::OkStatus();
}

absl::Status Federation::GenerateSite(const std::string& site, int patients,
                                      int seed) {
  const std::string out = Path("data/" + site);
  absl::StatusOr<CommandResult> gen = RunCommand(
      {PasserelleBin(), "generate", "--patients", absl::StrCat(patients),
       "--seed", absl::StrCat(seed), "--site", site, "--out", out});
  if (!gen.ok()) return gen.status();
  if (gen->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("passerelle generate failed: ", gen->err));
  }
  return LoadSite(site, out);
}

absl::StatusOr<std::vector<int64_t>> Federation::LocalCounts(
    const std::string& site, const std::string& query) {
  absl::StatusOr<CommandResult> r =
      RunCommand({PasserelleBin(), "node", "count", "--store",
                  Path(site + "/store"), "--format", "json", query});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(absl::StrCat("node count failed: ", r->err));
  }
  return CountsFromJson(r->out);
}

absl::Status Federation::StartNode(const std::string& site) {
  return StartNode(site, NodeOptions());
}

absl::Status Federation::StartNode(const std::string& site,
                                   const NodeOptions& options) {
  StopNode(site);  // Its store and audit log are locked while it runs.
  const std::string config = Path(site + "/node.textproto");
  std::remove(Path(site + "/port").c_str());
  std::string callers;
  if (options.site_policy.empty()) {
    callers =
        "allowed_callers: \"spiffe://passerelle/gateway\"\nmin_cell_size: 1\n";
  } else {
    WriteFile(Path(site + "/site-policy.textproto"), options.site_policy);
    callers = absl::StrCat("policy_files: \"",
                           Path(site + "/site-policy.textproto"), "\"\n");
  }
  std::string refresh;
  if (options.tls_refresh_interval_sec > 0) {
    refresh = absl::StrCat(" refresh_interval_sec: ",
                           options.tls_refresh_interval_sec);
  }
  WriteFile(
      config,
      absl::StrCat("site: \"", site, "\"\nlisten: \"127.0.0.1:0\"\n",
                   "store_dir: \"", Path(site + "/store"), "\"\n",
                   "audit_dir: \"", Path(site + "/audit"), "\"\n",
                   "audit_key_file: \"", Path(site + "/audit.key"), "\"\n",
                   callers, options.extra_config, "\n", "port_file: \"",
                   Path(site + "/port"), "\"\n", "tls { ca_file: \"",
                   Path("pki/ca.pem"), "\" cert_file: \"",
                   Path("pki/node-" + site + ".pem"), "\" key_file: \"",
                   Path("pki/node-" + site + ".key"), "\"", refresh, " }\n"));
  absl::StatusOr<Process> p =
      Process::Start({PasserelleBin(), "node", "serve", "--config", config},
                     Path(site + "/node.log"));
  if (!p.ok()) return p.status();
  Process& proc = nodes_.emplace(site, *std::move(p)).first->second;
  absl::StatusOr<int> port = WaitForPortFile(Path(site + "/port"), proc);
  if (!port.ok()) return port.status();
  node_ports_[site] = *port;
  return absl::OkStatus();
}

absl::Status Federation::StartGateway(const std::string& policy_text) {
  return StartGateway(policy_text, GatewayOptions());
}

absl::Status Federation::StartGateway(const std::string& policy_text,
                                      const GatewayOptions& options) {
  StopGateway();  // Its ledger and audit log are locked while it runs.
  std::remove(Path("gateway/port").c_str());
  WriteFile(PolicyFile(), policy_text);
  std::string tls_extra;
  if (!options.crl_dir.empty()) {
    absl::StrAppend(&tls_extra, " crl_dir: \"", options.crl_dir, "\"");
  }
  if (options.tls_refresh_interval_sec > 0) {
    absl::StrAppend(&tls_extra, " refresh_interval_sec: ",
                    options.tls_refresh_interval_sec);
  }
  std::string config = absl::StrCat(
      "listen: \"127.0.0.1:0\"\nport_file: \"", Path("gateway/port"), "\"\n",
      "ledger_dir: \"", Path("gateway/ledger"), "\"\n", "audit_dir: \"",
      Path("gateway/audit"), "\"\n", "audit_key_file: \"",
      Path("gateway/audit.key"), "\"\n", "default_timeout_ms: 5000\n",
      "policy_files: \"", PolicyFile(), "\"\n", "tls { ca_file: \"",
      Path("pki/ca.pem"), "\" cert_file: \"", Path("pki/gateway.pem"),
      "\" key_file: \"", Path("pki/gateway.key"), "\"", tls_extra, " }\n");
  for (const auto& [site, port] : node_ports_) {
    auto moved = options.site_address.find(site);
    absl::StrAppend(&config, "sites { site: \"", site, "\" address: \"",
                    moved != options.site_address.end()
                        ? moved->second
                        : absl::StrCat("127.0.0.1:", port),
                    "\" tls_server_name: \"localhost\" }\n");
  }
  WriteFile(Path("gateway/gateway.textproto"), config);
  absl::StatusOr<Process> p =
      Process::Start({PasserelleBin(), "gateway", "serve", "--config",
                      Path("gateway/gateway.textproto")},
                     Path("gateway/gateway.log"));
  if (!p.ok()) return p.status();
  gateway_ = std::make_unique<Process>(*std::move(p));
  absl::StatusOr<int> port = WaitForPortFile(Path("gateway/port"), *gateway_);
  if (!port.ok()) return port.status();
  gateway_port_ = *port;
  return absl::OkStatus();
}

std::string Federation::Address(const std::string& process) const {
  if (process == "gateway") return absl::StrCat("127.0.0.1:", gateway_port_);
  auto it = node_ports_.find(process);
  return it == node_ports_.end() ? "" : absl::StrCat("127.0.0.1:", it->second);
}

void Federation::StopNode(const std::string& site) {
  auto it = nodes_.find(site);
  if (it == nodes_.end()) return;
  it->second.Signal(SIGKILL);
  it->second.Wait();
  // `site` may be the key of `it` (StopAll passes it): erase by it last.
  node_ports_.erase(site);
  nodes_.erase(it);
}

void Federation::StopGateway() {
  if (gateway_ == nullptr) return;
  gateway_->Signal(SIGKILL);
  gateway_->Wait();
  gateway_.reset();
  gateway_port_ = 0;
}

void Federation::StopAll() {
  StopGateway();
  while (!nodes_.empty()) {
    const std::string site = nodes_.begin()->first;  // A copy: StopNode erases.
    StopNode(site);
  }
}

namespace {

// Each call gets its own connection (no subchannel shared with earlier
// calls), so every call performs a fresh TLS handshake.
std::shared_ptr<grpc::Channel> FreshChannel(
    int port, const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                   credentials, args);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
Federation::Credentials(const std::string& name, const std::string& server) {
  tls::TlsFiles files;
  files.ca_file = Path("pki/ca.pem");
  files.cert_file = Path("pki/" + name + ".pem");
  files.key_file = Path("pki/" + name + ".key");
  return tls::MakeChannelCredentials(files, server);
}

grpc::Status Federation::Query(const std::string& project,
                               const std::string& text,
                               v1::QueryResponse* response,
                               const std::string& user) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      Credentials(user);
  if (!creds.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        std::string(creds.status().message()));
  }
  return QueryWith(*creds, project, text, response);
}

grpc::Status Federation::QueryWith(
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const std::string& project, const std::string& text,
    v1::QueryResponse* response, std::string* server_cert_pem,
    const std::vector<std::string>& sites) {
  auto stub =
      v1::GatewayService::NewStub(FreshChannel(gateway_port_, credentials));
  v1::QueryRequest request;
  request.set_text(text);
  request.set_project(project);
  for (const std::string& s : sites) request.add_sites(s);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  grpc::Status status = stub->Query(&context, request, response);
  if (server_cert_pem != nullptr) {
    server_cert_pem->clear();
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    if (auth != nullptr) {
      for (const grpc::string_ref& v :
           auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME)) {
        server_cert_pem->assign(v.data(), v.size());
      }
    }
  }
  return status;
}

grpc::Status Federation::Budget(const std::string& project,
                                v1::BudgetResponse* response,
                                const std::string& user) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      Credentials(user);
  if (!creds.ok()) {
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        std::string(creds.status().message()));
  }
  auto stub = v1::GatewayService::NewStub(FreshChannel(gateway_port_, *creds));
  v1::BudgetRequest request;
  request.set_project(project);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  return stub->Budget(&context, request, response);
}

grpc::Status Federation::CountAtNode(
    const std::string& site,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const v1::CountRequest& request, v1::CountResponse* response) {
  auto it = node_ports_.find(site);
  if (it == node_ports_.end()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "node " + site + " is not running");
  }
  auto stub = v1::NodeService::NewStub(FreshChannel(it->second, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  return stub->Count(&context, request, response);
}

grpc::Status Federation::InfoAtNode(
    const std::string& site,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    v1::NodeInfo* info) {
  auto it = node_ports_.find(site);
  if (it == node_ports_.end()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "node " + site + " is not running");
  }
  auto stub = v1::NodeService::NewStub(FreshChannel(it->second, credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  return stub->GetInfo(&context, v1::NodeInfoRequest(), info);
}

}  // namespace passerelle::testing
