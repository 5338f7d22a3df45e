// libFuzzer harness: bytes off the wire -> v1::QueryRequest /
// v1::BudgetRequest (ParseFromArray, as gRPC hands them to GatewayService)
// -> GatewayCore::Query / Budget, with the real policy engine, budget ledger
// (RocksDB under /dev/shm), disclosure control, release cache, and two
// in-process data nodes (NodeCore on a small snapshot each, under their
// site policies). Checks what the gateway promises for any input:
//   - every request leaves exactly one audit entry, whose outcome matches
//     the answer, and a refused request releases nothing;
//   - the audit entry holds exactly the cells released;
//   - no released number is below its threshold (without rounding), and a
//     suppressed cell carries no count;
//   - a researcher's budget view shows only their own account;
//   - the ledger's charges add up to the audit log's (checked periodically).
//
// Input: byte 0 = bit 0 message (0 Query, 1 Budget), bits 1-2 caller
// (researcher alice, steward carol, federation auditor dora, stranger), bit
// 3 node qc down, bit 4 node fr answers with a wrong cell set; the rest is
// the serialized message. Seeds: seeds/*.textproto, encoded by
// scripts/fuzz.sh.
#include <stdlib.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/limits.h"
#include "gateway/gateway_core.h"
#include "gateway/node_client.h"
#include "gateway/release_cache.h"
#include "google/protobuf/stubs/logging.h"
#include "ledger/ledger.h"
#include "node/engine.h"
#include "node/fuzz/fuzz_site.h"
#include "node/node_core.h"
#include "passerelle/v1/gateway.pb.h"
#include "policy/policy.h"
#include "privacy/noise.h"
#include "privacy/seeded_random_for_testing.h"

namespace {

namespace v1 = ::passerelle::v1;
namespace gw = ::passerelle::gateway;
namespace node = ::passerelle::node;
namespace fs = std::filesystem;

constexpr char kGateway[] = "spiffe://passerelle/gateway";

constexpr char kPolicy[] = R"pb(
  federation {
    id: "fuzz-federation"
    gateway_identity: "spiffe://passerelle/gateway"
    site { id: "fr" }
    site { id: "qc" }
    member { identity: "spiffe://passerelle/user/dora" role: AUDITOR }
    disclosure {
      min_cell_size: 3
      mechanism: LAPLACE
      epsilon_per_query: 1.0
      exact_mode_allowed: true
    }
    allow {
      domains: [
        "condition",
        "drug",
        "procedure",
        "measurement",
        "visit",
        "observation"
      ]
      vocabularies: [
        "icd10",
        "icd9",
        "atc",
        "ccam",
        "loinc",
        "snomed",
        "concept"
      ]
      criteria: [
        "sex",
        "birth_year",
        "age",
        "deceased",
        "event",
        "sequence",
        "value",
        "window",
        "count",
        "not"
      ]
      dimensions: [ "sex", "age_band", "site" ]
      min_age_band_width: 5
      max_breakdown_cells: 64
    }
  }
  project {
    id: "exact"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    member { identity: "spiffe://passerelle/user/carol" role: STEWARD }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: EXACT }
  }
  project {
    id: "laplace"
    purposes: [ "DUO:0000006", "DUO:0000007" ]
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    member { identity: "spiffe://passerelle/user/bob" role: RESEARCHER }
    member { identity: "spiffe://passerelle/user/carol" role: STEWARD }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: LAPLACE epsilon_per_query: 0.5 rounding: 5 }
    budget { epsilon_cap: 1000000 researcher_epsilon_cap: 1000000 }
  }
  project {
    id: "gauss"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr" ]
    disclosure { mechanism: GAUSSIAN rho_per_query: 0.05 }
    budget { rho_cap: 1000000 reset_period_days: 30 }
  }
  project {
    id: "tiny"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "qc" ]
    budget { epsilon_cap: 2 }
  }
  forbid {
    id: "no-exact-on-qc-drugs"
    exact_mode: true
    sites: [ "qc" ]
    domains: [ "drug" ]
  }
  site {
    id: "fr"
    callers: "spiffe://passerelle/gateway"
    disclosure { min_cell_size: 3 exact_mode_allowed: true }
  }
  site {
    id: "qc"
    callers: "spiffe://passerelle/gateway"
    disclosure { min_cell_size: 5 exact_mode_allowed: true }
    forbid {
      id: "qc-no-site-breakdown"
      dimensions: [ "site" ]
    }
  }
)pb";

void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "gateway_request_fuzzer: broken promise: %s\n", what);
  std::abort();
}

class SitePolicyAuthorizer : public node::RequestAuthorizer {
 public:
  SitePolicyAuthorizer(std::string site,
                       std::shared_ptr<const passerelle::policy::Policy> p)
      : site_(std::move(site)), policy_(std::move(p)) {}
  absl::Status Authorize(const std::string& caller,
                         const v1::CountRequest& request,
                         absl::Time now) const override {
    const v1::Decision d = policy_->DecideNode(site_, caller, request, now);
    if (d.allow()) return absl::OkStatus();
    return absl::PermissionDeniedError(absl::StrJoin(d.reasons(), "; "));
  }
  absl::Status AuthorizeCaller(const std::string& caller) const override {
    return caller == kGateway ? absl::OkStatus()
                              : absl::PermissionDeniedError("not the gateway");
  }

 private:
  const std::string site_;
  const std::shared_ptr<const passerelle::policy::Policy> policy_;
};

// A data node in process: the gateway's NodeClient over a NodeCore.
class LocalNode : public gw::NodeClient {
 public:
  LocalNode(std::string site, node::NodeCore* core)
      : site_(std::move(site)), core_(core) {}
  const std::string& site() const override { return site_; }
  void Count(const v1::CountRequest& request, absl::Time,
             CountCallback done) override {
    absl::StatusOr<v1::CountResponse> r = core_->Count(kGateway, request);
    if (fault_ == Fault::kDown) {
      r = absl::InternalError("node down");  // Not retried (not UNAVAILABLE).
    } else if (fault_ == Fault::kLies && r.ok() && r->cells_size() > 0) {
      // A broken or hostile node: a cell too few, or a negative count.
      if (r->cells_size() > 1) {
        r->mutable_cells()->RemoveLast();
      } else {
        r->mutable_cells(0)->set_count(-1);
      }
    }
    done(std::move(r));
  }
  enum class Fault { kNone, kDown, kLies };
  void set_fault(Fault f) { fault_ = f; }
  absl::StatusOr<v1::NodeInfo> Info(absl::Time) override {
    return core_->Info(kGateway);
  }

 private:
  const std::string site_;
  node::NodeCore* const core_;
  Fault fault_ = Fault::kNone;  // Set per input, on the fuzzing thread.
};

class MemoryAudit : public gw::AuditSink {
 public:
  absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) override {
    absl::MutexLock lock(&mu_);
    last_ = entry;
    // The entry shows units; the ledger keeps the same cost in micro-units.
    epsilon_micros_ += std::llround(entry.epsilon_charged() * 1e6);
    rho_micros_ += std::llround(entry.rho_charged() * 1e6);
    if (entry.epsilon_charged() > 0 || entry.rho_charged() > 0) ++charged_;
    return count_++;
  }
  uint64_t count() {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  v1::AuditEntry last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }
  void Totals(int64_t* epsilon_micros, int64_t* rho_micros, int64_t* charged) {
    absl::MutexLock lock(&mu_);
    *epsilon_micros = epsilon_micros_;
    *rho_micros = rho_micros_;
    *charged = charged_;
  }

 private:
  absl::Mutex mu_;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t epsilon_micros_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rho_micros_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t charged_ ABSL_GUARDED_BY(mu_) = 0;
  v1::AuditEntry last_ ABSL_GUARDED_BY(mu_);
};

struct World {
  passerelle::FakeClock clock{absl::Now()};
  passerelle::privacy::testing::SeededRandomSource random{42};
  passerelle::privacy::testing::SeededRandomSource ids{7};
  passerelle::privacy::DirectNoiseSource noise{&random};
  std::shared_ptr<const passerelle::policy::Policy> policy;
  std::unique_ptr<SitePolicyAuthorizer> fr_auth, qc_auth;
  std::unique_ptr<node::NodeCore> fr_core, qc_core;
  std::unique_ptr<LocalNode> fr, qc;
  MemoryAudit audit;
  gw::MemoryReleaseCache cache;
  std::string dir;
  std::unique_ptr<passerelle::ledger::BudgetLedger> ledger;
  std::unique_ptr<gw::GatewayCore> core;
};

World& GetWorld() {
  static World* const w = [] {
    auto* w = new World();
    auto policy = passerelle::policy::Policy::LoadFromSources(
        {{"fuzz.textproto", kPolicy}});
    if (!policy.ok())
      std::fprintf(stderr, "%s\n", policy.status().ToString().c_str());
    Require(policy.ok(), "the harness's policy does not load");
    w->policy = *policy;
    w->fr_auth = std::make_unique<SitePolicyAuthorizer>("fr", w->policy);
    w->qc_auth = std::make_unique<SitePolicyAuthorizer>("qc", w->policy);
    w->fr_core = std::make_unique<node::NodeCore>(
        "fr", node::NewIndexEngine(node::fuzz::FuzzSnapshot("fr", 40, 1)),
        w->fr_auth.get(), nullptr, &w->clock);
    w->qc_core = std::make_unique<node::NodeCore>(
        "qc", node::NewIndexEngine(node::fuzz::FuzzSnapshot("qc", 30, 2)),
        w->qc_auth.get(), nullptr, &w->clock);
    w->fr = std::make_unique<LocalNode>("fr", w->fr_core.get());
    w->qc = std::make_unique<LocalNode>("qc", w->qc_core.get());
    const fs::path base = fs::is_directory("/dev/shm")
                              ? fs::path("/dev/shm")
                              : fs::temp_directory_path();
    std::string tmpl = (base / "passerelle-gateway-fuzz-XXXXXX").string();
    Require(mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    w->dir = tmpl;
    static std::string* to_remove = new std::string(w->dir);
    std::atexit([] { fs::remove_all(*to_remove); });
    auto ledger =
        passerelle::ledger::BudgetLedger::Open(w->dir + "/ledger", &w->clock);
    Require(ledger.ok(), "cannot open the ledger");
    w->ledger = *std::move(ledger);
    gw::GatewayOptions options;
    options.default_timeout = absl::Seconds(5);
    w->core = std::make_unique<gw::GatewayCore>(
        options, [w] { return w->policy; }, w->ledger.get(), &w->audit,
        &w->noise, &w->ids,
        std::vector<gw::NodeClient*>{w->fr.get(), w->qc.get()}, &w->clock,
        &w->cache);
    w->core->RefreshNodeInfo(absl::Now() + absl::Seconds(5));
    return w;
  }();
  return *w;
}

void CheckCell(const v1::ReleasedCell& c) {
  const v1::Precision& p = c.precision();
  if (p.kind() == v1::Precision::SUPPRESSED) {
    Require(!c.has_count(), "a suppressed cell with a count");
    return;
  }
  Require(c.has_count(), "a released cell without a count");
  Require(c.count() >= 0, "a negative released count");
  if (p.rounding() <= 1) {
    Require(c.count() >= p.threshold(), "a released count below its threshold");
  }
}

void CheckQuery(World& w, const absl::StatusOr<v1::QueryResponse>& r,
                const v1::AuditEntry& entry, uint64_t index) {
  Require(entry.ByteSizeLong() <= passerelle::limits::kMaxAuditEntryBytes,
          "an audit entry over the size bound");
  if (!r.ok()) {
    Require(entry.decision() == v1::AUDIT_DECISION_DENIED ||
                entry.decision() == v1::AUDIT_DECISION_FAILED,
            "a refused query audited as answered");
    Require(entry.released_cells_size() == 0,
            "a refused query's audit entry holds released cells");
    Require(entry.reasons_size() > 0, "a refused query without a reason");
    return;
  }
  Require(entry.decision() == (r->complete() ? v1::AUDIT_DECISION_ALLOWED
                                             : v1::AUDIT_DECISION_PARTIAL),
          "the audit outcome differs from the answer");
  Require(r->audit_index() == index, "the answer names another audit entry");
  Require(entry.canonical_query() == r->canonical_query(),
          "the audit entry names another query");
  Require(entry.released_cells_size() == r->combined_size(),
          "the audit entry does not hold the released cells");
  for (int i = 0; i < r->combined_size(); ++i) {
    Require(entry.released_cells(i).SerializeAsString() ==
                r->combined(i).SerializeAsString(),
            "the audit entry's cells differ from the released ones");
    CheckCell(r->combined(i));
  }
  for (const v1::SiteResult& s : r->sites()) {
    for (const v1::ReleasedCell& c : s.cells()) CheckCell(c);
  }
  if (r->repeat()) {
    Require(r->epsilon_charged() == 0 && r->rho_charged() == 0,
            "a repeat was charged");
  }
  Require(entry.epsilon_charged() == r->epsilon_charged() &&
              entry.rho_charged() == r->rho_charged(),
          "the audit entry's charge differs from the answer's");
  (void)w;
}

// The budget promise: what the ledger charged is exactly what the audit log
// says was charged (zero-cost exact releases are ledger charges too).
void CheckLedgerAgainstAudit(World& w) {
  absl::StatusOr<passerelle::ledger::ChargeTotals> totals =
      w.ledger->SumCharges("");
  Require(totals.ok(), "cannot sum the ledger");
  int64_t epsilon_micros = 0, rho_micros = 0, charged = 0;
  w.audit.Totals(&epsilon_micros, &rho_micros, &charged);
  Require(totals->refunded == 0, "a charge was refunded");
  Require(charged <= totals->charges,
          "more charged audit entries than ledger charges");
  Require(totals->epsilon_micros == epsilon_micros,
          "the ledger's epsilon differs from the audit log's");
  Require(totals->rho_micros == rho_micros,
          "the ledger's rho differs from the audit log's");
}

// With PASSERELLE_FUZZ_STATS set, how the queries ended is printed at exit
// (to see that fuzzed inputs get past the first checks).
void CountOutcome(const std::string& outcome) {
  static std::map<std::string, int64_t>* const counts = [] {
    auto* m = new std::map<std::string, int64_t>();
    if (std::getenv("PASSERELLE_FUZZ_STATS") != nullptr) {
      std::atexit([] {
        for (const auto& [k, v] : *counts) {
          std::fprintf(stderr, "queries %s: %lld\n", k.c_str(),
                       static_cast<long long>(v));
        }
      });
    }
    return m;
  }();
  ++(*counts)[outcome];
}

}  // namespace

// Protobuf logs every string field with invalid UTF-8 (the parse then fails,
// as it does in the server); the log only slows the fuzzer down.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  World& w = GetWorld();
  static const char* const kCallers[] = {
      "spiffe://passerelle/user/alice", "spiffe://passerelle/user/carol",
      "spiffe://passerelle/user/dora", "spiffe://passerelle/user/mallory"};
  const uint8_t head = data[0];
  const std::string caller = kCallers[(head >> 1) & 3];
  w.qc->set_fault((head & 8) ? LocalNode::Fault::kDown
                             : LocalNode::Fault::kNone);
  w.fr->set_fault((head & 16) ? LocalNode::Fault::kLies
                              : LocalNode::Fault::kNone);
  const uint64_t before = w.audit.count();

  if (head & 1) {
    v1::BudgetRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    absl::StatusOr<v1::BudgetResponse> r = w.core->Budget(caller, request);
    Require(w.audit.count() == before + 1,
            "a budget request without exactly one audit entry");
    const v1::AuditEntry entry = w.audit.last();
    Require(entry.operation() == "budget",
            "budget audited as another operation");
    Require((entry.decision() == v1::AUDIT_DECISION_ALLOWED) == r.ok(),
            "budget: the audit outcome differs from the answer");
    if (r.ok() && caller == kCallers[0]) {
      for (const v1::BudgetAccount& a : r->researchers()) {
        Require(a.researcher() == caller,
                "a researcher sees another researcher's account");
      }
    }
    if (r.ok()) {
      Require(r->project() == request.project(), "budget of another project");
    }
    return 0;
  }

  v1::QueryRequest request;
  if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  absl::StatusOr<v1::QueryResponse> r =
      w.core->Query(caller, request, absl::Now() + absl::Seconds(5));
  Require(w.audit.count() == before + 1,
          "a query without exactly one audit entry");
  CheckQuery(w, r, w.audit.last(), before);
  CountOutcome(r.ok() ? (r->repeat()     ? "repeat"
                         : r->complete() ? "answered"
                                         : "partial")
                      : absl::StatusCodeToString(r.status().code()));
  static int calls = 0;
  if (++calls % 64 == 0) CheckLedgerAgainstAudit(w);
  return 0;
}
