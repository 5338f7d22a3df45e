#include "tests/fault_harness.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"
#include "tls/tls.h"

namespace passerelle::testing {
namespace {

std::string Tls(Federation& fed, const std::string& name) {
  return absl::StrCat("tls { ca_file: \"", fed.Path("pki/ca.pem"),
                      "\" cert_file: \"", fed.Path("pki/" + name + ".pem"),
                      "\" key_file: \"", fed.Path("pki/" + name + ".key"),
                      "\" }\n");
}

absl::StatusOr<Daemon> Launch(const std::vector<std::string>& prefix,
                              std::vector<std::string> argv,
                              const std::string& log,
                              const std::string& port_file) {
  std::vector<std::string> full = prefix;
  full.insert(full.end(), argv.begin(), argv.end());
  absl::StatusOr<Process> p = Process::Start(full, log);
  if (!p.ok()) return p.status();
  Daemon d;
  d.process = std::make_unique<Process>(*std::move(p));
  absl::StatusOr<int> port = WaitForPortFile(port_file, *d.process);
  if (!port.ok()) {
    return absl::Status(port.status().code(),
                        absl::StrCat(port.status().message(), "\n--- log ---\n",
                                     d.process->Log()));
  }
  d.port = *port;
  return d;
}

}  // namespace

absl::StatusOr<Daemon> StartNodeDaemon(Federation& fed, const std::string& site,
                                       const DaemonSpec& spec,
                                       const std::string& site_policy_file) {
  const std::string config = fed.Path(site + "/node-h.textproto");
  const std::string port_file = fed.Path(site + "/port");
  std::remove(port_file.c_str());
  const std::string callers =
      site_policy_file.empty()
          ? "allowed_callers: \"spiffe://passerelle/gateway\"\n"
            "min_cell_size: 1\n"
          : absl::StrCat("policy_files: \"", site_policy_file, "\"\n");
  WriteFile(config, absl::StrCat(
                        "site: \"", site, "\"\nlisten: \"", spec.listen, "\"\n",
                        "store_dir: \"", fed.Path(site + "/store"), "\"\n",
                        "audit_dir: \"", fed.Path(site + "/audit"), "\"\n",
                        "audit_key_file: \"", fed.Path(site + "/audit.key"),
                        "\"\n", callers, "port_file: \"", port_file, "\"\n",
                        "health_interval_ms: ", spec.health_interval_ms, "\n",
                        Tls(fed, "node-" + site)));
  absl::StatusOr<Daemon> d = Launch(
      spec.prefix, {PasserelleBin(), "node", "serve", "--config", config},
      fed.Path(site + "/node.log"), port_file);
  if (d.ok()) d->identity = NodeId(site);
  return d;
}

absl::StatusOr<Daemon> StartGatewayDaemon(Federation& fed,
                                          const std::string& policy_text,
                                          const GatewaySpec& spec) {
  const std::string port_file = fed.Path("gateway/port");
  std::remove(port_file.c_str());
  WriteFile(fed.PolicyFile(), policy_text);
  std::string config = absl::StrCat(
      "listen: \"", spec.listen, "\"\nport_file: \"", port_file, "\"\n",
      "ledger_dir: \"", fed.Path("gateway/ledger"), "\"\n", "audit_dir: \"",
      fed.Path("gateway/audit"), "\"\n", "audit_key_file: \"",
      fed.Path("gateway/audit.key"), "\"\n", "policy_files: \"",
      fed.PolicyFile(), "\"\n", "default_timeout_ms: ", spec.default_timeout_ms,
      "\n", "health_interval_ms: ", spec.health_interval_ms, "\n",
      "node_info_interval_ms: ", spec.node_info_interval_ms, "\n",
      "retry_max_attempts: ", spec.retry_max_attempts, "\n",
      "retry_initial_backoff_ms: ", spec.retry_initial_backoff_ms, "\n",
      "retry_max_backoff_ms: ", spec.retry_max_backoff_ms, "\n",
      Tls(fed, "gateway"));
  for (const SiteSpec& s : spec.sites) {
    absl::StrAppend(
        &config, "sites { site: \"", s.site, "\" address: \"", s.address,
        "\" tls_server_name: \"localhost\" timeout_ms: ", s.timeout_ms, " }\n");
  }
  const std::string path = fed.Path("gateway/gateway-h.textproto");
  WriteFile(path, config);
  absl::StatusOr<Daemon> d = Launch(
      spec.prefix, {PasserelleBin(), "gateway", "serve", "--config", path},
      fed.Path("gateway/gateway.log"), port_file);
  if (d.ok()) d->identity = kGatewayId;
  return d;
}

std::shared_ptr<grpc::ChannelCredentials> UserCredentials(
    Federation& fed, const std::string& user, const std::string& server) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
      fed.Credentials(user, server);
  return c.ok() ? *c : nullptr;
}

namespace {

std::shared_ptr<grpc::Channel> Channel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, creds, args);
}

}  // namespace

grpc::Status QueryAt(const std::string& address,
                     const std::shared_ptr<grpc::ChannelCredentials>& creds,
                     const std::string& project, const std::string& text,
                     absl::Duration deadline, v1::QueryResponse* response) {
  if (creds == nullptr) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "no credentials");
  }
  auto stub = v1::GatewayService::NewStub(Channel(address, creds));
  v1::QueryRequest request;
  request.set_text(text);
  request.set_project(project);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return stub->Query(&context, request, response);
}

absl::StatusOr<int> HealthAt(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds,
    const std::string& service) {
  if (creds == nullptr) return absl::InternalError("no credentials");
  grpc::GenericStub stub(Channel(address, creds));
  // HealthCheckRequest { string service = 1; }, encoded by hand.
  std::string bytes;
  if (!service.empty()) {
    bytes.push_back(0x0a);
    bytes.push_back(static_cast<char>(service.size()));
    bytes += service;
  }
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer reply;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &reply, [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  std::vector<grpc::Slice> slices;
  if (!reply.Dump(&slices).ok()) return absl::InternalError("bad reply");
  std::string out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // HealthCheckResponse { ServingStatus status = 1; }: absent means 0.
  if (out.empty()) return 0;
  if (out.size() < 2 || out[0] != 0x08) {
    return absl::InternalError("unexpected health reply");
  }
  return static_cast<int>(out[1]);
}

bool WaitUntil(const std::function<bool()>& pred, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (true) {
    if (pred()) return true;
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

int CountInLog(const Process& process, const std::string& needle) {
  const std::string log = process.Log();
  int n = 0;
  for (size_t at = log.find(needle); at != std::string::npos;
       at = log.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

bool WaitForLog(const Process& process, const std::string& needle,
                absl::Duration timeout, int count) {
  return WaitUntil([&] { return CountInLog(process, needle) >= count; },
                   timeout);
}

const v1::SiteResult* FindSite(const v1::QueryResponse& response,
                               const std::string& site) {
  for (const v1::SiteResult& s : response.sites()) {
    if (s.site() == site) return &s;
  }
  return nullptr;
}

}  // namespace passerelle::testing
