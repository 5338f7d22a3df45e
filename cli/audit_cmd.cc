#include "cli/audit_cmd.h"

#include <chrono>
#include <iostream>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "audit/remote.h"
#include "audit/tool.h"
#include "cli/client.h"
#include "cli/flags.h"
#include "common/grpc_status.h"
#include "grpcpp/grpcpp.h"
#include "passerelle/v1/audit_service.grpc.pb.h"
#include "tls/config.h"
#include "tls/tls.h"

namespace passerelle::cli {
namespace {

// The AuditService over an mTLS channel: one RPC per call, with a deadline.
class GrpcAuditReader : public audit::AuditReader {
 public:
  GrpcAuditReader(std::unique_ptr<v1::AuditService::Stub> stub,
                  absl::Duration timeout)
      : stub_(std::move(stub)), timeout_(timeout) {}

  absl::StatusOr<v1::AuditEntriesResponse> GetEntries(
      const v1::AuditEntriesRequest& r) override {
    return Call(&v1::AuditService::Stub::GetEntries, r);
  }
  absl::StatusOr<v1::AuditEntriesResponse> SearchEntries(
      const v1::AuditSearchRequest& r) override {
    return Call(&v1::AuditService::Stub::SearchEntries, r);
  }
  absl::StatusOr<v1::AuditCheckpointResponse> GetCheckpoint(
      const v1::AuditCheckpointRequest& r) override {
    return Call(&v1::AuditService::Stub::GetCheckpoint, r);
  }
  absl::StatusOr<v1::AuditCheckpointsResponse> ListCheckpoints(
      const v1::AuditCheckpointsRequest& r) override {
    return Call(&v1::AuditService::Stub::ListCheckpoints, r);
  }
  absl::StatusOr<v1::AuditPublicKeyResponse> GetPublicKey(
      const v1::AuditPublicKeyRequest& r) override {
    return Call(&v1::AuditService::Stub::GetPublicKey, r);
  }
  absl::StatusOr<v1::AuditInclusionProofResponse> GetInclusionProof(
      const v1::AuditInclusionProofRequest& r) override {
    return Call(&v1::AuditService::Stub::GetInclusionProof, r);
  }
  absl::StatusOr<v1::AuditConsistencyProofResponse> GetConsistencyProof(
      const v1::AuditConsistencyProofRequest& r) override {
    return Call(&v1::AuditService::Stub::GetConsistencyProof, r);
  }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::AuditService::Stub::*method)(grpc::ClientContext*,
                                                     const Request&, Response*),
      const Request& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout_));
    Response response;
    grpc::Status st = (stub_.get()->*method)(&context, request, &response);
    if (!st.ok()) return FromGrpcStatus(st);
    return response;
  }

  const std::unique_ptr<v1::AuditService::Stub> stub_;
  const absl::Duration timeout_;
};

// The flags that pick and reach a server, as the other client commands
// take them ("--project" stays a search filter here); --node is --gateway
// under the name that reads right for a node's address, with --node-site
// naming the site whose node must answer there.
const std::set<std::string>& ConnectionFlags() {
  static const auto* names = new std::set<std::string>{
      "config", "gateway", "node",        "node-site",  "ca",
      "cert",   "key",     "server-name", "timeout-ms", "server-id"};
  return *names;
}

// Splits `args` into connection flags (with their values) and the rest.
void SplitArgs(const std::vector<std::string>& args,
               std::vector<std::string>* connection,
               std::vector<std::string>* rest) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (absl::StartsWith(a, "--")) {
      std::string name = a.substr(2);
      const bool inline_value = name.find('=') != std::string::npos;
      if (inline_value) name = name.substr(0, name.find('='));
      if (ConnectionFlags().count(name) > 0) {
        connection->push_back(a);
        if (!inline_value && i + 1 < args.size()) {
          connection->push_back(args[++i]);
        }
        continue;
      }
    }
    rest->push_back(a);
  }
}

absl::StatusOr<std::unique_ptr<v1::AuditService::Stub>> NewAuditStub(
    const v1::ClientConfig& config) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      ClientCredentials(config);
  if (!creds.ok()) return creds.status();
  grpc::ChannelArguments args;
  if (!config.tls_server_name().empty()) {
    args.SetSslTargetNameOverride(config.tls_server_name());
  }
  return v1::AuditService::NewStub(
      grpc::CreateCustomChannel(config.gateway(), *creds, args));
}

}  // namespace

// The logic lives in audit/tool.h and audit/remote.h, unit-tested without
// the binary; here only the choice of store or server and the channel.
int RunAuditCommand(const std::vector<std::string>& args) {
  std::vector<std::string> connection, rest;
  SplitArgs(args, &connection, &rest);
  bool has_store = false;
  for (const std::string& a : rest) {
    if (a == "--store" || absl::StartsWith(a, "--store=")) has_store = true;
  }
  const bool remote =
      !connection.empty() ||
      (!has_store && std::getenv("PASSERELLE_CONFIG") != nullptr &&
       !rest.empty() && rest[0] != "help" && rest[0] != "--help");
  if (!remote) return audit::RunAuditTool(args, std::cout, std::cerr);
  if (has_store) {
    std::cerr << "passerelle audit: give either --store DIR or a server "
                 "(--config, --gateway or --node), not both\n";
    return 2;
  }
  absl::StatusOr<ParsedFlags> flags = ParseFlags(connection, ConnectionFlags());
  if (!flags.ok()) {
    std::cerr << "passerelle audit: " << flags.status().message() << "\n";
    return 2;
  }
  if (flags->Has("node")) {
    if (flags->Has("gateway")) {
      std::cerr << "passerelle audit: give --gateway or --node, not both\n";
      return 2;
    }
    if (!flags->Has("node-site") && !flags->Has("server-id")) {
      std::cerr << "passerelle audit: --node needs --node-site SITE (the node "
                   "must prove spiffe://<trust domain>/site/SITE/node)\n";
      return 2;
    }
    flags->values["gateway"] = flags->GetAll("node");
  } else if (flags->Has("node-site")) {
    std::cerr << "passerelle audit: --node-site goes with --node\n";
    return 2;
  }
  absl::StatusOr<v1::ClientConfig> config = ClientConfigFrom(*flags);
  if (!config.ok()) {
    std::cerr << "passerelle audit: " << config.status().message() << "\n";
    return 2;
  }
  if (flags->Has("node-site") && !flags->Has("server-id")) {
    // The node's identity in the trust domain of the client's certificate
    // (or the configured one).
    absl::StatusOr<std::string> trust_domain =
        tls::TrustDomain(tls::TlsFilesFrom(config->tls()));
    if (!trust_domain.ok()) {
      std::cerr << "passerelle audit: " << trust_domain.status().message()
                << "\n";
      return 1;
    }
    config->set_server_identity(
        tls::NodeIdentity(*trust_domain, flags->Get("node-site")));
  }
  absl::StatusOr<int64_t> timeout_ms = flags->GetInt("timeout-ms", 30000);
  if (!timeout_ms.ok() || *timeout_ms <= 0) {
    std::cerr << "passerelle audit: --timeout-ms must be a positive integer\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<v1::AuditService::Stub>> stub =
      NewAuditStub(*config);
  if (!stub.ok()) {
    std::cerr << "passerelle audit: " << stub.status().message() << "\n";
    return 1;
  }
  GrpcAuditReader reader(*std::move(stub), absl::Milliseconds(*timeout_ms));
  return audit::RunRemoteAuditTool(rest, reader, std::cout, std::cerr);
}

}  // namespace passerelle::cli
