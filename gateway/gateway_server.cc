#include "gateway/gateway_server.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "audit/audit_service.h"
#include "audit/log.h"
#include "audit/sealer.h"
#include "common/grpc_server.h"
#include "common/health_probe.h"
#include "common/limits.h"
#include "common/listen_address.h"
#include "common/metrics_service.h"
#include "common/refusal_counters.h"
#include "common/refusal_limiter.h"
#include "common/signals.h"
#include "common/status_macros.h"
#include "common/textproto.h"
#include "gateway/gateway_service.h"
#include "gateway/grpc_node_client.h"
#include "gateway/noise_prewarm.h"
#include "gateway/recovery.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "ledger/ledger.h"
#include "passerelle/v1/audit_service.grpc.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "policy/store.h"
#include "privacy/noise.h"
#include "privacy/random.h"
#include "tls/config.h"
#include "tls/tls.h"

namespace passerelle::gateway {
namespace {

class LogAuditSink : public AuditSink {
 public:
  explicit LogAuditSink(audit::AuditLog* log) : log_(log) {}
  absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) override {
    // The record points at the entry for the serialization, not a copy.
    // Serializing reads it only (the cached sizes are mutable by design).
    v1::AuditRecord record;
    record.unsafe_arena_set_allocated_gateway(
        const_cast<v1::AuditEntry*>(&entry));
    std::string bytes = record.SerializeAsString();
    (void)record.unsafe_arena_release_gateway();
    return log_->Append(std::move(bytes));
  }

 private:
  audit::AuditLog* const log_;
};

// The gateway service behind the health probe: while the ledger, policy or
// audit log is unusable nothing is answered (UNAVAILABLE, the failing checks
// named; their details, which may name paths, only in the gateway's log),
// as an answer could not be charged or audited durably. Each such refusal
// is counted.
class GuardedGatewayService : public v1::GatewayService::Service {
 public:
  GuardedGatewayService(GatewayServiceImpl* inner, const HealthProbe* health,
                        RefusalCounters* refusals)
      : inner_(inner), health_(health), refusals_(refusals) {}
  grpc::Status Query(grpc::ServerContext* context,
                     const v1::QueryRequest* request,
                     v1::QueryResponse* response) override {
    if (!health_->serving()) return NotServing();
    return inner_->Query(context, request, response);
  }
  grpc::Status Explain(grpc::ServerContext* context,
                       const v1::QueryRequest* request,
                       v1::ExplainResponse* response) override {
    if (!health_->serving()) return NotServing();
    return inner_->Explain(context, request, response);
  }
  grpc::Status Budget(grpc::ServerContext* context,
                      const v1::BudgetRequest* request,
                      v1::BudgetResponse* response) override {
    if (!health_->serving()) return NotServing();
    return inner_->Budget(context, request, response);
  }

 private:
  grpc::Status NotServing() const {
    refusals_->Add(refusal::kNotServing);
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "gateway not serving: " + health_->CallerReason());
  }
  GatewayServiceImpl* const inner_;
  const HealthProbe* const health_;
  RefusalCounters* const refusals_;
};

}  // namespace

absl::Status ValidateGatewayConfig(const v1::GatewayConfig& c) {
  auto missing = [](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat("gateway config: ", field, " is required"));
  };
  if (c.listen().empty()) return missing("listen");
  PASSERELLE_RETURN_IF_ERROR(CheckListenAddress("gateway config", c.listen(),
                                                c.listen_all_interfaces()));
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
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"health_interval_ms",
                                    c.health_interval_ms()},
        {"node_info_interval_ms", c.node_info_interval_ms()},
        {"retry_max_attempts", c.retry_max_attempts()},
        {"retry_initial_backoff_ms", c.retry_initial_backoff_ms()},
        {"retry_max_backoff_ms", c.retry_max_backoff_ms()}}) {
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("gateway config: ", name, " is negative"));
    }
  }
  if (c.retry_initial_backoff_ms() > 0 && c.retry_max_backoff_ms() > 0 &&
      c.retry_max_backoff_ms() < c.retry_initial_backoff_ms()) {
    return absl::InvalidArgumentError(
        "gateway config: retry_max_backoff_ms is below "
        "retry_initial_backoff_ms");
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
  privacy::OpenSslRandomSource random;
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<privacy::NoiseSource> noise,
                              privacy::NewProductionNoiseSource(&random));
  // Every noise distribution the policy can produce is drawn ahead before
  // the policy serves, at start and on each reload (privacy.md 11).
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<policy::PolicyStore> policies,
      NewPrewarmedPolicyStore(
          {config.policy_files().begin(), config.policy_files().end()},
          noise.get()));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<ledger::BudgetLedger> ledger,
      ledger::BudgetLedger::Open(config.ledger_dir(), Clock::Real()));
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<audit::AuditLog> log,
      audit::AuditLog::Open(config.audit_dir(), config.audit_key_file(),
                            "passerelle/gateway"));
  PASSERELLE_RETURN_IF_ERROR(
      RecoverInterruptedRequests(ledger.get(), log.get()));
  LogAuditSink sink(log.get());
  // Checkpoints are due every 16 entries; the tail is signed every second
  // and at shutdown.
  audit::CheckpointSealer sealer(
      log.get(), absl::Seconds(1), [](const absl::Status& s) {
        std::cerr << "passerelle gateway: audit checkpoint not signed: "
                  << s.message() << "\n";
      });
  const tls::TlsFiles tls_files = tls::TlsFilesFrom(config.tls());
  PASSERELLE_ASSIGN_OR_RETURN(const std::string trust_domain,
                              tls::TrustDomain(tls_files));
  // Refusals outside the audited path, served by the MetricsService.
  RefusalCounters refusal_counters;
  GatewayOptions options;
  options.refusals = &refusal_counters;
  if (config.default_timeout_ms() > 0) {
    options.default_timeout = absl::Milliseconds(config.default_timeout_ms());
  }
  if (config.retry_max_attempts() > 0) {
    options.fan_out.max_attempts = config.retry_max_attempts();
  }
  if (config.retry_initial_backoff_ms() > 0) {
    options.fan_out.initial_backoff =
        absl::Milliseconds(config.retry_initial_backoff_ms());
  }
  if (config.retry_max_backoff_ms() > 0) {
    options.fan_out.max_backoff =
        absl::Milliseconds(config.retry_max_backoff_ms());
  }
  options.fan_out.max_backoff =
      std::max(options.fan_out.max_backoff, options.fan_out.initial_backoff);
  std::vector<std::unique_ptr<NodeClient>> clients;
  std::vector<NodeClient*> client_ptrs;
  for (const v1::SiteEndpoint& s : config.sites()) {
    // Each site's channel accepts only that site's node identity: another
    // server of the federation at this address fails the handshake, and the
    // site is reported failed with the reason.
    PASSERELLE_ASSIGN_OR_RETURN(
        std::shared_ptr<grpc::ChannelCredentials> channel_creds,
        tls::MakeChannelCredentials(tls_files,
                                    tls::NodeIdentity(trust_domain, s.site())));
    PASSERELLE_ASSIGN_OR_RETURN(
        std::unique_ptr<NodeClient> c,
        NewGrpcNodeClient(s.site(), s.address(), s.tls_server_name(),
                          channel_creds, options.fan_out));
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
  // Refusals are recorded in full up to a per-identity rate, then counted
  // into one summary entry per identity and minute.
  RefusalLimiter refusal_limiter(RefusalLimiterOptions(), Clock::Real());
  GatewayCore core(
      options, [&policies] { return policies->Current(); }, ledger.get(), &sink,
      noise.get(), &random, client_ptrs, Clock::Real(), cache.get(),
      &refusal_limiter);
  // Snapshot versions first, so a repeat is recognised from the start.
  core.RefreshNodeInfo(absl::Now() + absl::Seconds(2));
  GatewayServiceImpl core_service(&core, &refusal_counters);

  // Health: the ledger, the audit log and the policy must be usable; the
  // verdict is published per service (grpc.health.v1) and the gateway
  // answers nothing while it is NOT_SERVING. The release cache is not
  // checked: losing it only costs a repeat its discount.
  HealthPublisher health_publisher("passerelle gateway",
                                   {"", v1::GatewayService::service_full_name(),
                                    v1::AuditService::service_full_name()});
  HealthProbe health(Clock::Real(), HealthInterval(config.health_interval_ms()),
                     health_publisher.Listener());
  health.AddCheck("audit log",
                  [dir = DirectoryCheck(config.audit_dir()),
                   log = log.get()]() -> absl::Status {
                    PASSERELLE_RETURN_IF_ERROR(dir());
                    return log->CheckReadable();
                  });
  health.AddCheck("ledger",
                  [dir = DirectoryCheck(config.ledger_dir()),
                   ledger = ledger.get()]() -> absl::Status {
                    PASSERELLE_RETURN_IF_ERROR(dir());
                    // One point read (a project no policy can name has no
                    // account).
                    absl::StatusOr<ledger::BudgetView> v =
                        ledger->Show("passerelle-health");
                    if (!v.ok() && !absl::IsNotFound(v.status()))
                      return v.status();
                    return absl::OkStatus();
                  });
  // A rejected reload keeps the last good policy serving (logged by the
  // reloader): still SERVING. Only no policy at all is unhealthy.
  health.AddCheck("policy", [&policies]() -> absl::Status {
    if (policies->Current() == nullptr) {
      return absl::UnavailableError("no policy loaded");
    }
    return absl::OkStatus();
  });
  GuardedGatewayService service(&core_service, &health, &refusal_counters);
  MetricsServiceImpl metrics_service(&health, &refusal_counters,
                                     tls::RefusedClientHandshakes);
  // Auditors (federation-wide, or of a project) read the log over mTLS.
  audit::FederationAuditAuthorizer audit_authorizer(
      [&policies] { return policies->Current(); });
  // Every read of the log is recorded in it before it is answered.
  audit::LogReadRecorder read_recorder(log.get(), Clock::Real());
  audit::AuditServiceCore audit_core(log.get(), &sealer, &read_recorder,
                                     &audit_authorizer);
  audit::AuditServiceImpl audit_service(&audit_core, &refusal_counters);

  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                              tls::MakeServerCredentials(tls_files));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.listen(), creds, &port);
  ConfigureSyncServerThreads(&builder);
  ApplyLowOverheadServerArgs(&builder);
  ApplyRequestSizeLimit(&builder);
  builder.RegisterService(&service);
  builder.RegisterService(&audit_service);
  builder.RegisterService(&metrics_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen()));
  }
  health_publisher.Attach(server->GetHealthCheckService());
  // The first verdict before the port is announced.
  (void)health.ProbeNow();
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
  std::thread health_prober([&] { health.RunUntil(&stopping); });
  std::thread reloader([&] {
    while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(2))) {
      absl::Status flushed = core.FlushRefusalSummaries();
      if (!flushed.ok()) {
        std::cerr << "passerelle gateway: refusal summary not recorded: "
                  << flushed.message() << "\n";
      }
      absl::StatusOr<bool> st = policies->MaybeReload();
      if (st.ok() && *st) {
        // Pools of distributions the new version no longer produces go.
        noise->Retain(PolicyNoiseSpecs(*policies->Current()));
      }
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
  // In-flight queries finish: the grace covers the longest site timeout.
  absl::Duration grace = options.default_timeout;
  for (const auto& [site, timeout] : options.site_timeouts) {
    grace = std::max(grace, timeout);
  }
  grace += absl::Seconds(2);
  std::cerr << "passerelle gateway: signal " << sig << ", draining (up to "
            << absl::FormatDuration(grace) << ")\n";
  stopping.Notify();
  health_prober.join();  // No probe may mark it SERVING again.
  health.SetDraining();  // Requests still arriving are refused and counted.
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  absl::Status flushed = core.FlushRefusalSummaries(/*all=*/true);
  if (!flushed.ok()) {
    std::cerr << "passerelle gateway: refusal summary not recorded: "
              << flushed.message() << "\n";
  }
  sealer.Stop();  // The whole log under a signature.
  reloader.join();
  info_refresher.join();
  std::cerr << "passerelle gateway: stopped\n";
  return absl::OkStatus();
}

}  // namespace passerelle::gateway
