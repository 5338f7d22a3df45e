// libFuzzer harness: bytes off the wire -> v1::CountRequest /
// v1::NodeInfoRequest (ParseFromArray, as gRPC hands them to NodeService)
// -> NodeCore::Count / Info on a small in-memory site, under the site
// policy (Policy::DecideNode, as the daemon's PolicyAuthorizer) or an allow
// list. Checks: one node audit record per Count, answered exactly when OK,
// the answer's cells are the query's cell domain with counts inside the
// population, and a validated AST's canonical text parses back to a query
// with the same text and the same counts (the gateway keys repeats and the
// audit log on that text).
//
// Input: byte 0 = bit 0 message (0 Count, 1 NodeInfo), bits 1-2 caller
// (gateway, a researcher, empty, another node), bit 3 authorizer (0 site
// policy, 1 allow list); the rest is the serialized message. Seeds:
// seeds/*.textproto, encoded by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/limits.h"
#include "google/protobuf/stubs/logging.h"
#include "node/engine.h"
#include "node/fuzz/fuzz_site.h"
#include "node/node_core.h"
#include "passerelle/v1/node.pb.h"
#include "policy/policy.h"
#include "query/canonical.h"
#include "query/cells.h"
#include "query/parser.h"
#include "query/validate.h"

namespace {

namespace v1 = ::passerelle::v1;
namespace node = ::passerelle::node;
namespace q = ::passerelle::query;

constexpr char kGateway[] = "spiffe://passerelle/gateway";
constexpr int kPatients = 48;

constexpr char kSitePolicy[] = R"pb(
  site {
    id: "fr"
    callers: [ "spiffe://passerelle/gateway" ]
    projects: [ "diabetes", "cardio" ]
    disclosure { min_cell_size: 5 }
    allow {
      domains: [ "condition", "drug", "procedure", "measurement", "visit" ]
      vocabularies: [ "icd10", "icd9", "atc", "ccam", "loinc", "snomed" ]
      dimensions: [ "sex", "age_band", "site" ]
      min_age_band_width: 5
      max_breakdown_cells: 64
    }
    forbid {
      id: "no-observation"
      domains: [ "observation" ]
    }
  }
)pb";

void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "node_request_fuzzer: broken promise: %s\n", what);
  std::abort();
}

class PolicyAuthorizer : public node::RequestAuthorizer {
 public:
  explicit PolicyAuthorizer(std::shared_ptr<const passerelle::policy::Policy> p)
      : policy_(std::move(p)) {}
  absl::Status Authorize(const std::string& caller,
                         const v1::CountRequest& request,
                         absl::Time now) const override {
    const v1::Decision d = policy_->DecideNode("fr", caller, request, now);
    if (d.allow()) return absl::OkStatus();
    Require(d.reasons_size() > 0, "a node refusal without a reason");
    return absl::PermissionDeniedError(absl::StrJoin(d.reasons(), "; "));
  }
  absl::Status AuthorizeCaller(const std::string& caller) const override {
    const v1::SitePolicy* sp = policy_->FindSite("fr");
    for (const std::string& c : sp->callers()) {
      if (c == caller) return absl::OkStatus();
    }
    return absl::PermissionDeniedError("not a caller of this site");
  }

 private:
  const std::shared_ptr<const passerelle::policy::Policy> policy_;
};

class MemoryAudit : public node::NodeAuditSink {
 public:
  absl::StatusOr<uint64_t> Record(node::NodeAuditRecord& r) override {
    absl::MutexLock lock(&mu_);
    last_ = r;
    return ++count_;
  }
  uint64_t count() {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  node::NodeAuditRecord last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  absl::Mutex mu_;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  node::NodeAuditRecord last_ ABSL_GUARDED_BY(mu_);
};

struct Site {
  std::shared_ptr<const node::Snapshot> snapshot;
  std::unique_ptr<node::CohortEngine> engine;  // For the reparsed queries.
  MemoryAudit audit;
  passerelle::FakeClock clock{absl::FromUnixSeconds(1780000000)};
  std::unique_ptr<PolicyAuthorizer> by_policy;
  node::AllowListAuthorizer by_list{{kGateway}, 5};
  std::unique_ptr<node::NodeCore> policy_core;
  std::unique_ptr<node::NodeCore> list_core;
};

Site& GetSite() {
  static Site* const site = [] {
    auto* s = new Site();
    s->snapshot = node::fuzz::FuzzSnapshot("fr", kPatients, 1);
    s->engine = node::NewIndexEngine(s->snapshot);
    auto policy = passerelle::policy::Policy::LoadFromSources(
        {{"site-fr.textproto", kSitePolicy}});
    Require(policy.ok(), "the harness's site policy does not load");
    s->by_policy = std::make_unique<PolicyAuthorizer>(*policy);
    s->policy_core = std::make_unique<node::NodeCore>(
        "fr", node::NewIndexEngine(s->snapshot), s->by_policy.get(), &s->audit,
        &s->clock);
    s->list_core = std::make_unique<node::NodeCore>(
        "fr", node::NewIndexEngine(s->snapshot), &s->by_list, &s->audit,
        &s->clock);
    return s;
  }();
  return *site;
}

// Canonical text is a faithful name for a validated query.
void CheckCanonical(const v1::Query& query, const std::vector<v1::Cell>* cells,
                    const node::CohortEngine& engine) {
  const std::string text = q::CanonicalText(query);
  absl::StatusOr<v1::Query> back = q::ParseQuery(text);
  if (!back.ok()) {
    std::fprintf(stderr, "canonical text: %s\nerror: %s\n", text.c_str(),
                 back.status().ToString().c_str());
  }
  Require(back.ok(), "the canonical text of a valid query does not parse");
  Require(q::CanonicalText(*back) == text,
          "canonical text changes when parsed back");
  Require(q::ValidateQuery(*back).ok(),
          "the canonical text of a valid query is not valid");
  if (cells == nullptr) return;
  absl::StatusOr<std::vector<v1::Cell>> again = engine.Count(*back);
  Require(again.ok(), "the reparsed query fails on the engine");
  Require(again->size() == cells->size(), "reparsed query: other cells");
  for (size_t i = 0; i < cells->size(); ++i) {
    Require((*again)[i].SerializeAsString() == (*cells)[i].SerializeAsString(),
            "the canonical text counts differently from the query");
  }
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
  Site& site = GetSite();
  const uint8_t head = data[0];
  static const char* const kCallers[] = {kGateway,
                                         "spiffe://passerelle/user/alice", "",
                                         "spiffe://passerelle/node/qc"};
  const std::string caller = kCallers[(head >> 1) & 3];
  node::NodeCore& core = (head & 8) ? *site.list_core : *site.policy_core;

  if (head & 1) {
    v1::NodeInfoRequest request;
    if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
    absl::StatusOr<v1::NodeInfo> info = core.Info(caller);
    Require(info.ok() == (caller == kGateway), "GetInfo: wrong callers");
    if (info.ok()) {
      Require(info->site() == "fr" &&
                  info->snapshot() == site.snapshot->meta.version,
              "GetInfo: wrong site or snapshot");
    }
    return 0;
  }

  v1::CountRequest request;
  if (!request.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  const uint64_t before = site.audit.count();
  absl::StatusOr<v1::CountResponse> response = core.Count(caller, request);
  Require(site.audit.count() == before + 1,
          "a Count without exactly one node audit record");
  const node::NodeAuditRecord record = site.audit.last();
  Require(record.answered == response.ok(), "audit record: wrong outcome");
  // The request's fields are recorded only for a caller the site answers
  // and only within common/limits.h; otherwise none of them is.
  const bool within =
      caller == kGateway &&
      passerelle::limits::CheckRequestId("request_id", request.request_id())
          .ok() &&
      passerelle::limits::CheckId("project", request.project()).ok() &&
      request.query().ByteSizeLong() <= passerelle::limits::kMaxQueryAstBytes;
  Require(record.caller == caller, "audit record: wrong caller");
  if (within) {
    Require(record.request_id == request.request_id() &&
                record.project == request.project(),
            "audit record: wrong request fields");
  } else {
    Require(record.request_id.empty() && record.project.empty() &&
                record.canonical_query.empty(),
            "audit record: fields of an unauthorized or over-limit request");
  }
  Require(record.reason.size() <= passerelle::limits::kMaxReasonBytes + 64 &&
              record.canonical_query.size() <=
                  passerelle::limits::kMaxCanonicalQueryBytes,
          "audit record: unbounded reason or query");

  const bool valid = q::ValidateQuery(request.query()).ok();
  if (!response.ok()) {
    Require(!record.reason.empty(), "a refusal without a reason");
    const absl::StatusCode code = response.status().code();
    Require(code != absl::StatusCode::kInternal &&
                code != absl::StatusCode::kUnknown &&
                code != absl::StatusCode::kDataLoss,
            "Count failed with an internal error");
    if (valid) CheckCanonical(request.query(), nullptr, *site.engine);
    return 0;
  }
  Require(valid, "answered a query that does not validate");
  Require(caller == kGateway, "answered a caller that is not the gateway");
  Require(request.min_cell_size() >= 5, "answered below the site minimum");
  Require(response->site() == "fr" &&
              response->snapshot() == site.snapshot->meta.version,
          "answer: wrong site or snapshot");
  const std::vector<v1::CellKey> keys =
      q::EnumerateCells(request.query(), {"fr"});
  Require(static_cast<size_t>(response->cells_size()) == keys.size(),
          "answer: not the query's cell domain");
  std::vector<v1::Cell> cells;
  int64_t sum = 0;
  for (int i = 0; i < response->cells_size(); ++i) {
    const v1::Cell& c = response->cells(i);
    Require(c.key().SerializeAsString() == keys[i].SerializeAsString(),
            "answer: cells out of order");
    Require(c.count() >= 0 && c.count() <= kPatients,
            "answer: a count outside [0, population]");
    sum += c.count();
    cells.push_back(c);
  }
  Require(sum <= kPatients, "answer: cells add up to more than the patients");
  Require(static_cast<size_t>(record.cells.size()) == cells.size(),
          "audit record: other cells");
  CheckCanonical(request.query(), &cells, *site.engine);
  return 0;
}
