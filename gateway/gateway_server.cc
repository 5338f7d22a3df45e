#include "gateway/gateway_server.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "audit/audit_service.h"
#include "audit/log.h"
#include "common/signals.h"
#include "common/status_macros.h"
#include "common/textproto.h"
#include "gateway/gateway_service.h"
#include "gateway/grpc_node_client.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "ledger/ledger.h"
#include "policy/store.h"
#include "privacy/noise.h"
#include "privacy/random.h"
#include "tls/tls.h"

namespace passerelle::gateway {
namespace {

tls::TlsFiles TlsFilesFrom(const v1::TlsConfig& c) {
  tls::TlsFiles files;
  files.ca_file = c.ca_file();
  files.cert_file = c.cert_file();
  files.key_file = c.key_file();
  files.crl_dir = c.crl_dir();
  if (c.refresh_interval_sec() > 0) {
    files.refresh_interval_sec = c.refresh_interval_sec();
  }
  return files;
}

class LogAuditSink : public AuditSink {
 public:
  explicit LogAuditSink(audit::AuditLog* log) : log_(log) {}
  absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) override {
    v1::AuditRecord record;
    *record.mutable_gateway() = entry;
    return log_->Append(record.SerializeAsString());
  }

 private:
  audit::AuditLog* const log_;
};

absl::Status WritePortFile(const std::string& path, int port) {
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

}  // namespace

absl::Status ValidateGatewayConfig(const v1::GatewayConfig& c) {
  auto missing = [](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat("gateway config: ", field, " is required"));
  };
  if (c.listen().empty()) return missing("listen");
  if (c.ledger_dir().empty()) return missing("ledger_dir");
  if (c.audit_dir().empty()) return missing("audit_dir");
  if (c.audit_key_file().empty()) return missing("audit_key_file");
  if (c.policy_files().empty()) return missing("policy_files");
  if (c.tls().ca_file().empty()) return missing("tls.ca_file");
  if (c.tls().cert_file().empty()) return missing("tls.cert_file");
  if (c.tls().key_file().empty()) return missing("tls.key_file");
  if (c.sites().empty()) return missing("sites");
  std::set<std::string> seen;
  for (int i = 0; i < c.sites_size(); ++i) {
    const v1::SiteEndpoint& s = c.sites(i);
    if (s.site().empty() || s.address().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gateway config: sites[", i, "] needs both site and address"));
    }
    if (!seen.insert(s.site()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("gateway config: site \"", s.site(), "\" listed twice"));
    }
    if (s.timeout_ms() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "gateway config: sites[", i, "].timeout_ms is negative"));
    }
  }
  if (c.default_timeout_ms() < 0) {
    return absl::InvalidArgumentError(
        "gateway config: default_timeout_ms is negative");
  }
  return absl::OkStatus();
}

absl::Status RunGatewayServerFromFile(const std::string& config_path) {
  if (config_path.empty())
    return absl::InvalidArgumentError("--config is required");
  v1::GatewayConfig config;
  PASSERELLE_RETURN_IF_ERROR(LoadTextProtoFile(config_path, &config));
  return RunGatewayServer(config);
}

absl::Status RunGatewayServer(const v1::GatewayConfig& config) {
  PASSERELLE_RETURN_IF_ERROR(ValidateGatewayConfig(config));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<policy::PolicyStore> policies,
      policy::PolicyStore::Create(
          {config.policy_files().begin(), config.policy_files().end()}));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<ledger::BudgetLedger> ledger,
      ledger::BudgetLedger::Open(config.ledger_dir(), Clock::Real()));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<audit::AuditLog> log,
      audit::AuditLog::Open(config.audit_dir(), config.audit_key_file(),
                            "passerelle/gateway"));
  LogAuditSink sink(log.get());
  privacy::OpenSslRandomSource random;
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<privacy::NoiseSource> noise,
                              privacy::NewProductionNoiseSource(&random));

  PASSERELLE_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ChannelCredentials> channel_creds,
      tls::MakeChannelCredentials(TlsFilesFrom(config.tls())));
  GatewayOptions options;
  if (config.default_timeout_ms() > 0) {
    options.default_timeout = absl::Milliseconds(config.default_timeout_ms());
  }
  std::vector<std::unique_ptr<NodeClient>> clients;
  std::vector<NodeClient*> client_ptrs;
  for (const v1::SiteEndpoint& s : config.sites()) {
    PASSERELLE_ASSIGN_OR_RETURN(
        std::unique_ptr<NodeClient> c,
        NewGrpcNodeClient(s.site(), s.address(), s.tls_server_name(),
                          channel_creds));
    client_ptrs.push_back(c.get());
    clients.push_back(std::move(c));
    if (s.timeout_ms() > 0)
      options.site_timeouts[s.site()] = absl::Milliseconds(s.timeout_ms());
  }
  const std::string cache_dir =
      config.release_cache_dir().empty()
          ? std::string(absl::StripSuffix(config.ledger_dir(), "/")) +
                "-releases"
          : config.release_cache_dir();
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<ReleaseCache> cache,
                              OpenRocksDbReleaseCache(cache_dir));
  GatewayCore core(
      options, [&policies] { return policies->Current(); }, ledger.get(), &sink,
      noise.get(), &random, client_ptrs, Clock::Real(), cache.get());
  // Snapshot versions first, so a repeat is recognised from the start.
  core.RefreshNodeInfo(absl::Now() + absl::Seconds(2));
  GatewayServiceImpl service(&core);
  // Auditors (federation-wide, or of a project) read the log over mTLS.
  audit::FederationAuditAuthorizer audit_authorizer(
      [&policies] { return policies->Current(); });
  audit::AuditServiceCore audit_core(log.get(), &audit_authorizer);
  audit::AuditServiceImpl audit_service(&audit_core);

  PASSERELLE_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> creds,
      tls::MakeServerCredentials(TlsFilesFrom(config.tls())));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen(), creds, &port);
  builder.RegisterService(&service);
  builder.RegisterService(&audit_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen()));
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  // Before any thread starts, so a failure returns cleanly.
  if (!config.port_file().empty()) {
    absl::Status written = WritePortFile(config.port_file(), port);
    if (!written.ok()) {
      server->Shutdown();
      return written;
    }
  }

  // Policy hot reload: a changed file is picked up without restart; an
  // invalid new version is logged and the previous one keeps serving.
  absl::Notification stopping;
  const absl::Duration info_interval = absl::Milliseconds(
      config.node_info_interval_ms() > 0 ? config.node_info_interval_ms()
                                         : 5000);
  std::thread info_refresher([&] {
    while (!stopping.WaitForNotificationWithTimeout(info_interval)) {
      core.RefreshNodeInfo(absl::Now() + absl::Seconds(2));
    }
  });
  std::thread reloader([&] {
    while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(2))) {
      absl::StatusOr<bool> st = policies->MaybeReload();
      if (!st.ok()) {
        std::cerr
            << "passerelle gateway: policy reload rejected, previous version "
               "keeps serving: "
            << st.status().message() << "\n";
      }
    }
  });

  std::cerr << "passerelle gateway: serving on port " << port << " with mTLS, "
            << config.sites_size() << " sites, policy "
            << policies->Current()->version().substr(0, 12) << "\n";
  const int sig = WaitForTerminationSignal();
  std::cerr << "passerelle gateway: signal " << sig << ", draining\n";
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  stopping.Notify();
  reloader.join();
  info_refresher.join();
  std::cerr << "passerelle gateway: stopped\n";
  return absl::OkStatus();
}

}  // namespace passerelle::gateway
