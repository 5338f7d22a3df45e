#include "node/node_server.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "audit/audit_service.h"
#include "audit/log.h"
#include "audit/records.h"
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
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "node/node_service.h"
#include "node/store.h"
#include "passerelle/v1/audit.pb.h"
#include "passerelle/v1/audit_service.grpc.pb.h"
#include "policy/store.h"
#include "tls/config.h"
#include "tls/tls.h"

namespace passerelle::node {
namespace {

// Records each request in the node's own Merkle audit log.
class LogAuditSink : public NodeAuditSink {
 public:
  LogAuditSink(std::string site, audit::AuditLog* log)
      : site_(std::move(site)), log_(log) {}
  absl::StatusOr<uint64_t> Record(NodeAuditRecord& r) override {
    v1::AuditRecord record;
    v1::NodeAuditEntry* e = record.mutable_node();
    e->set_time_unix_micros(absl::ToUnixMicros(r.time));
    e->set_request_id(r.request_id);
    e->set_caller(r.caller);
    e->set_project(r.project);
    e->set_canonical_query(r.canonical_query);
    e->set_snapshot(r.snapshot);
    e->set_site(site_);
    e->set_decision(r.answered ? v1::AUDIT_DECISION_ALLOWED
                               : v1::AUDIT_DECISION_DENIED);
    e->set_reason(r.reason);
    e->set_operation(r.operation);
    *e->mutable_expansion() = r.expansion;
    // The true counts stay at the site: the hashed entry (what the
    // AuditService serves) holds a salted commitment to them, and their
    // opening is stored beside it in the same batch.
    std::string opening;
    if (r.answered && r.operation != "explain") {
      PASSERELLE_ASSIGN_OR_RETURN(std::string salt, audit::NewCellsSalt());
      PASSERELLE_ASSIGN_OR_RETURN(opening,
                                  audit::CommitNodeCells(r.cells, salt, e));
    }
    std::string bytes = record.SerializeAsString();
    if (bytes.size() > limits::kMaxAuditEntryBytes ||
        opening.size() > limits::kMaxAuditEntryBytes) {
      // Never expected (every recorded field is bounded on the way in): a
      // short FAILED record instead, and an error, so nothing is released.
      const std::string why = absl::StrCat(
          "the audit record would be ", std::max(bytes.size(), opening.size()),
          " bytes, over the limit of ", limits::kMaxAuditEntryBytes,
          " bytes; nothing released");
      e->clear_canonical_query();
      e->clear_cells_commitment();
      e->set_decision(v1::AUDIT_DECISION_FAILED);
      e->set_reason(why);
      absl::StatusOr<uint64_t> index = log_->Append(record.SerializeAsString());
      if (!index.ok()) return index;
      return absl::InternalError(why);
    }
    if (!r.answered) return log_->Append(std::move(bytes));
    return log_->Append(std::move(bytes), std::move(opening));
  }

 private:
  const std::string site_;
  audit::AuditLog* const log_;
};

// The site policy from the steward's files (hot reloaded by the store).
class PolicyAuthorizer : public RequestAuthorizer {
 public:
  PolicyAuthorizer(std::string site, policy::PolicyStore* store)
      : site_(std::move(site)), store_(store) {}
  absl::Status Authorize(const std::string& caller,
                         const v1::CountRequest& request,
                         absl::Time now) const override {
    const v1::Decision d =
        store_->Current()->DecideNode(site_, caller, request, now);
    if (d.allow()) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrCat(
        "site ", site_, " refuses: ", absl::StrJoin(d.reasons(), "; ")));
  }
  absl::Status AuthorizeCaller(const std::string& caller) const override {
    const std::shared_ptr<const policy::Policy> p = store_->Current();
    const v1::SitePolicy* sp = p->FindSite(site_);
    if (sp != nullptr && std::find(sp->callers().begin(), sp->callers().end(),
                                   caller) != sp->callers().end()) {
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(
        absl::StrCat("site ", site_, " refuses: caller \"", caller,
                     "\" is not among its callers"));
  }

 private:
  const std::string site_;
  policy::PolicyStore* const store_;
};

// The node service behind the health probe: while the store, snapshot,
// site policy or audit log is unusable nothing is answered (UNAVAILABLE,
// which the gateway retries within its deadline), since an answer could not
// be recorded durably. With PASSERELLE_TRACE_DEADLINES=1 in the environment
// each Count logs how long its caller gave it (the propagated deadline).
class GuardedNodeService : public v1::NodeService::Service {
 public:
  GuardedNodeService(std::string site, NodeServiceImpl* inner,
                     const HealthProbe* health, RefusalCounters* refusals)
      : site_(std::move(site)),
        inner_(inner),
        health_(health),
        refusals_(refusals),
        trace_deadlines_(
            std::getenv("PASSERELLE_TRACE_DEADLINES") != nullptr &&
            std::string(std::getenv("PASSERELLE_TRACE_DEADLINES")) == "1") {}

  grpc::Status Count(grpc::ServerContext* context,
                     const v1::CountRequest* request,
                     v1::CountResponse* response) override {
    if (trace_deadlines_) {
      const absl::Time deadline = absl::FromChrono(context->deadline());
      std::string left = "none";
      if (deadline < absl::InfiniteFuture() - absl::Hours(24 * 365)) {
        left = absl::StrCat(absl::ToInt64Milliseconds(deadline - absl::Now()),
                            " ms");
      }
      std::cerr << "passerelle node " << site_ << ": count "
                << request->request_id() << " deadline in " << left << "\n";
    }
    if (!health_->serving()) return NotServing();
    return inner_->Count(context, request, response);
  }
  grpc::Status GetInfo(grpc::ServerContext* context,
                       const v1::NodeInfoRequest* request,
                       v1::NodeInfo* response) override {
    if (!health_->serving()) return NotServing();
    return inner_->GetInfo(context, request, response);
  }
  grpc::Status Explain(grpc::ServerContext* context,
                       const v1::ExplainRequest* request,
                       v1::SiteExpansion* response) override {
    if (!health_->serving()) return NotServing();
    return inner_->Explain(context, request, response);
  }

 private:
  // Callers hear which checks fail, never their details (paths): those are
  // in the node's log. Counted.
  grpc::Status NotServing() const {
    refusals_->Add(refusal::kNotServing);
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        "site " + site_ + " not serving: " + health_->CallerReason());
  }
  const std::string site_;
  NodeServiceImpl* const inner_;
  const HealthProbe* const health_;
  RefusalCounters* const refusals_;
  const bool trace_deadlines_;
};

}  // namespace

absl::Status ValidateNodeConfig(const v1::NodeConfig& c) {
  auto missing = [](absl::string_view field) {
    return absl::InvalidArgumentError(
        absl::StrCat("node config: ", field, " is required"));
  };
  if (c.site().empty()) return missing("site");
  if (c.listen().empty()) return missing("listen");
  PASSERELLE_RETURN_IF_ERROR(
      CheckListenAddress("node config", c.listen(), c.listen_all_interfaces()));
  if (c.store_dir().empty()) return missing("store_dir");
  if (c.audit_dir().empty()) return missing("audit_dir");
  if (c.audit_key_file().empty()) return missing("audit_key_file");
  if (c.tls().ca_file().empty()) return missing("tls.ca_file");
  if (c.tls().cert_file().empty()) return missing("tls.cert_file");
  if (c.tls().key_file().empty()) return missing("tls.key_file");
  if (c.policy_files().empty()) {
    if (c.allowed_callers().empty())
      return missing("allowed_callers (or policy_files)");
    if (c.min_cell_size() < 1) {
      return absl::InvalidArgumentError(
          "node config: min_cell_size must be >= 1");
    }
  }
  return absl::OkStatus();
}

absl::Status RunNodeServerFromFile(const std::string& config_path) {
  if (config_path.empty())
    return absl::InvalidArgumentError("--config is required");
  v1::NodeConfig config;
  PASSERELLE_RETURN_IF_ERROR(LoadTextProtoFile(config_path, &config));
  return RunNodeServer(config);
}

absl::Status RunNodeServer(const v1::NodeConfig& config) {
  PASSERELLE_RETURN_IF_ERROR(ValidateNodeConfig(config));
  PASSERELLE_ASSIGN_OR_RETURN(std::unique_ptr<NodeStore> store,
                              NodeStore::Open(config.store_dir()));
  PASSERELLE_ASSIGN_OR_RETURN(std::shared_ptr<Snapshot> snap,
                              store->LoadCurrent());
  if (snap->meta.site != config.site()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", config.store_dir(), " holds site \"", snap->meta.site,
        "\" but the config says \"", config.site(), "\""));
  }
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<audit::AuditLog> log,
      audit::AuditLog::Open(config.audit_dir(), config.audit_key_file(),
                            absl::StrCat("passerelle/site/", config.site())));
  LogAuditSink sink(config.site(), log.get());
  // Checkpoints are due every 16 entries; the tail is signed every second
  // and at shutdown.
  audit::CheckpointSealer sealer(
      log.get(), absl::Seconds(1),
      [site = config.site()](const absl::Status& s) {
        std::cerr << "passerelle node " << site
                  << ": audit checkpoint not signed: " << s.message() << "\n";
      });
  // The site policy: the steward's files when given, else a fixed allow-list.
  std::unique_ptr<policy::PolicyStore> policies;
  std::unique_ptr<RequestAuthorizer> authorizer;
  if (!config.policy_files().empty()) {
    PASSERELLE_ASSIGN_OR_RETURN(
        policies, policy::PolicyStore::Create({config.policy_files().begin(),
                                               config.policy_files().end()}));
    if (policies->Current()->FindSite(config.site()) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the site policy files define no site \"", config.site(), "\""));
    }
    authorizer =
        std::make_unique<PolicyAuthorizer>(config.site(), policies.get());
  } else {
    authorizer = std::make_unique<AllowListAuthorizer>(
        std::vector<std::string>{config.allowed_callers().begin(),
                                 config.allowed_callers().end()},
        config.min_cell_size());
  }
  // Refusals of callers the site does not answer (and of over-limit
  // requests) are recorded in full up to a per-identity rate, then counted
  // into one summary record per identity and minute.
  RefusalLimiter refusal_limiter(RefusalLimiterOptions(), Clock::Real());
  NodeCore core(config.site(), NewIndexEngine(snap), authorizer.get(), &sink,
                Clock::Real(), &refusal_limiter);
  // Refusals outside the audited path, served by the MetricsService.
  RefusalCounters refusal_counters;
  NodeServiceImpl core_service(&core, &refusal_counters);

  // Health: store (still the directory opened, a snapshot loaded), site
  // policy and audit log, published per service (grpc.health.v1).
  HealthPublisher health_publisher(
      absl::StrCat("passerelle node ", config.site()),
      {"", v1::NodeService::service_full_name(),
       v1::AuditService::service_full_name()});
  HealthProbe health(Clock::Real(), HealthInterval(config.health_interval_ms()),
                     health_publisher.Listener());
  health.AddCheck(
      "store",
      [dir = DirectoryCheck(config.store_dir()), snap, store = store.get(),
       site = config.site()]() -> absl::Status {
        PASSERELLE_RETURN_IF_ERROR(dir());
        if (snap == nullptr || snap->meta.site != site) {
          return absl::UnavailableError("no snapshot of this site loaded");
        }
        return store->CheckReadable(snap->meta.version);
      });
  health.AddCheck("audit log",
                  [dir = DirectoryCheck(config.audit_dir()),
                   log = log.get()]() -> absl::Status {
                    PASSERELLE_RETURN_IF_ERROR(dir());
                    return log->CheckReadable();
                  });
  // A rejected reload keeps the last good site policy serving (logged by
  // the reloader): still SERVING.
  if (policies != nullptr) {
    health.AddCheck(
        "site policy", [&policies, site = config.site()]() -> absl::Status {
          const std::shared_ptr<const policy::Policy> p = policies->Current();
          if (p == nullptr || p->FindSite(site) == nullptr) {
            return absl::UnavailableError("no site policy for " + site);
          }
          return absl::OkStatus();
        });
  }
  GuardedNodeService service(config.site(), &core_service, &health,
                             &refusal_counters);
  MetricsServiceImpl metrics_service(&health, &refusal_counters,
                                     tls::RefusedClientHandshakes);
  // The site's auditors (site policy `auditors`) read the node's own log.
  audit::SiteAuditAuthorizer audit_authorizer(
      config.site(), policies == nullptr ? audit::PolicyGetter() : [&policies] {
        return policies->Current();
      });
  // Every read of the site log is recorded in it before it is answered;
  // node entries hold count commitments, never counts.
  audit::LogReadRecorder read_recorder(log.get(), Clock::Real());
  audit::AuditServiceCore audit_core(log.get(), &sealer, &read_recorder,
                                     &audit_authorizer);
  audit::AuditServiceImpl audit_service(&audit_core, &refusal_counters);

  PASSERELLE_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> creds,
      tls::MakeServerCredentials(tls::TlsFilesFrom(config.tls())));
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
  (void)health.ProbeNow();  // The first verdict before the port is announced.
  if (!config.port_file().empty()) {
    PASSERELLE_RETURN_IF_ERROR(WritePortFile(config.port_file(), port));
  }
  std::cerr << "passerelle node " << config.site() << ": serving snapshot "
            << snap->meta.version << " (" << snap->meta.persons
            << " persons) on port " << port << " with mTLS\n";
  absl::Notification stopping;
  std::thread health_prober([&] { health.RunUntil(&stopping); });
  std::thread reloader([&] {
    while (!stopping.WaitForNotificationWithTimeout(absl::Seconds(2))) {
      absl::Status flushed = core.FlushRefusalSummaries();
      if (!flushed.ok()) {
        std::cerr << "passerelle node " << config.site()
                  << ": refusal summary not recorded: " << flushed.message()
                  << "\n";
      }
      if (policies == nullptr) continue;
      absl::StatusOr<bool> st = policies->MaybeReload();
      if (!st.ok()) {
        std::cerr
            << "passerelle node " << config.site()
            << ": site policy reload rejected, previous version keeps serving: "
            << st.status().message() << "\n";
      }
    }
  });
  const int sig = WaitForTerminationSignal();
  stopping.Notify();
  health_prober.join();  // No probe may mark it SERVING again.
  health.SetDraining();  // Requests still arriving are refused and counted.
  reloader.join();
  std::cerr << "passerelle node " << config.site() << ": signal " << sig
            << ", draining\n";
  server->GetHealthCheckService()->SetServingStatus(false);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  absl::Status flushed = core.FlushRefusalSummaries(/*all=*/true);
  if (!flushed.ok()) {
    std::cerr << "passerelle node " << config.site()
              << ": refusal summary not recorded: " << flushed.message()
              << "\n";
  }
  sealer.Stop();  // The whole log under a signature.
  std::cerr << "passerelle node " << config.site() << ": stopped\n";
  return absl::OkStatus();
}

}  // namespace passerelle::node
