// libFuzzer harness: bytes off the wire -> each AuditService request
// (ParseFromArray, as gRPC hands them to AuditServiceImpl) ->
// AuditServiceCore over a real AuditLog (in-memory store, signed
// checkpoints) holding entries of two projects and of a node. Checks what
// the service promises an auditor, whatever is asked:
//   - non-auditors get PERMISSION_DENIED (UNAUTHENTICATED when anonymous);
//   - entries come back in order, within the page limits, as the exact
//     bytes the log hashed; entries outside the caller's scope are
//     withheld (leaf hash only) and never show up in a search;
//   - search results match the filters;
//   - every inclusion and consistency proof verifies against the roots
//     returned, which are the log's; checkpoints open with the log's key.
//
// Input: byte 0 = bits 0-2 the RPC (GetEntries, SearchEntries,
// GetCheckpoint, ListCheckpoints, GetPublicKey, GetInclusionProof,
// GetConsistencyProof), bits 3-5 the caller, bit 6 small page limits; the
// rest is the serialized request. Seeds: seeds/*.textproto, encoded by
// scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/checkpoint.h"
#include "audit/log.h"
#include "audit/merkle.h"
#include "audit/records.h"
#include "audit/service_core.h"
#include "audit/signer.h"
#include "audit/store.h"
#include "google/protobuf/stubs/logging.h"
#include "passerelle/v1/audit_service.pb.h"
#include "policy/policy.h"

namespace {

namespace v1 = ::passerelle::v1;
namespace audit = ::passerelle::audit;

constexpr char kOrigin[] = "passerelle.fuzz/gateway";

constexpr char kPolicy[] = R"pb(
  federation {
    id: "t"
    gateway_identity: "spiffe://passerelle/gateway"
    site { id: "fr" }
    member { identity: "spiffe://passerelle/user/dora" role: AUDITOR }
    disclosure { min_cell_size: 1 mechanism: EXACT exact_mode_allowed: true }
    allow {
      domains: [ "condition" ]
      vocabularies: [ "icd10" ]
      criteria: [ "event" ]
      dimensions: [ "sex" ]
    }
  }
  project {
    id: "diab"
    purposes: "DUO:0000006"
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr" ]
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    member { identity: "spiffe://passerelle/user/bob" role: AUDITOR }
    disclosure { mechanism: EXACT }
  }
  project {
    id: "onco"
    purposes: "DUO:0000006"
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr" ]
    member { identity: "spiffe://passerelle/user/carol" role: RESEARCHER }
    disclosure { mechanism: EXACT }
  }
  site {
    id: "fr"
    callers: "spiffe://passerelle/gateway"
    auditors: "spiffe://passerelle/user/erin"
    disclosure { min_cell_size: 1 exact_mode_allowed: true }
  }
)pb";

// Callers and which authorizer judges them (0 federation, 1 site "fr").
struct Caller {
  const char* identity;
  int authorizer;
};
constexpr Caller kCallers[] = {
    {"spiffe://passerelle/user/dora", 0},   // Federation auditor: all.
    {"spiffe://passerelle/user/bob", 0},    // Auditor of "diab" only.
    {"spiffe://passerelle/user/alice", 0},  // Researcher: refused.
    {"", 0},                                // Anonymous: refused.
    {"spiffe://passerelle/user/erin", 1},   // Site auditor: all.
    {"spiffe://passerelle/user/erin", 0},   // ... but not at the gateway.
    {"spiffe://passerelle/gateway", 1},     // The gateway: refused.
    {"spiffe://passerelle/user/dora", 1},   // Not a site auditor: refused.
};

void Require(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "audit_request_fuzzer: broken promise: %s\n", what);
  std::abort();
}

class MemoryStore : public audit::LogStore {
 public:
  absl::StatusOr<std::optional<std::string>> Get(
      absl::string_view key) const override {
    absl::MutexLock lock(&mu_);
    auto it = kv_.find(std::string(key));
    if (it == kv_.end()) return std::nullopt;
    return it->second;
  }
  absl::Status Commit(const std::vector<KeyValue>& puts) override {
    absl::MutexLock lock(&mu_);
    for (const KeyValue& kv : puts) kv_[kv.first] = kv.second;
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<KeyValue>> Last(
      absl::string_view prefix) const override {
    absl::MutexLock lock(&mu_);
    std::optional<KeyValue> last;
    for (auto it = kv_.lower_bound(std::string(prefix));
         it != kv_.end() && absl::StartsWith(it->first, prefix); ++it) {
      last = *it;
    }
    return last;
  }
  absl::Status Scan(
      absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn)
      const override {
    absl::MutexLock lock(&mu_);
    for (auto it = kv_.lower_bound(std::string(prefix));
         it != kv_.end() && absl::StartsWith(it->first, prefix); ++it) {
      if (!fn(it->first, it->second)) break;
    }
    return absl::OkStatus();
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, std::string> kv_ ABSL_GUARDED_BY(mu_);
};

struct World {
  std::shared_ptr<const passerelle::policy::Policy> policy;
  std::unique_ptr<audit::AuditLog> log;
  std::optional<audit::VerifyingKey> key;
  std::unique_ptr<audit::FederationAuditAuthorizer> federation;
  std::unique_ptr<audit::SiteAuditAuthorizer> site;
  // [authorizer][small limits]
  std::unique_ptr<audit::AuditServiceCore> cores[2][2];
  std::vector<std::string> projects;  // Per entry ("" for node entries).
};

const absl::Time kT0 = absl::FromUnixSeconds(1795000000);

World& GetWorld() {
  static World* const w = [] {
    auto* w = new World();
    auto policy = passerelle::policy::Policy::LoadFromSources(
        {{"fuzz.textproto", kPolicy}});
    Require(policy.ok(), "the harness's policy does not load");
    w->policy = *policy;
    auto signing = audit::SigningKey::FromSeed(std::string(32, '\x2a'));
    Require(signing.ok(), "no signing key");
    auto key = audit::VerifyingKey::FromRaw((*signing)->public_key());
    Require(key.ok(), "no verifying key");
    w->key = *key;
    audit::AuditLogOptions options;
    options.origin = kOrigin;
    options.signing_key =
        std::shared_ptr<const audit::SigningKey>(std::move(*signing));
    options.checkpoint_interval = 2;
    auto log = audit::AuditLog::Open(std::make_unique<MemoryStore>(), options);
    Require(log.ok(), "cannot open the log");
    w->log = *std::move(log);
    for (int i = 0; i < 21; ++i) {
      std::string bytes;
      if (i % 5 == 4) {
        v1::NodeAuditEntry n;
        n.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Minutes(i)));
        n.set_request_id(absl::StrCat("req-", i));
        n.set_caller("spiffe://passerelle/gateway");
        n.set_project("diab");
        bytes = audit::EncodeRecord(n);
        w->projects.push_back("diab");
      } else {
        v1::AuditEntry e;
        e.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Minutes(i)));
        e.set_request_id(absl::StrCat("req-", i));
        e.set_caller(i % 2 ? "spiffe://passerelle/user/alice"
                           : "spiffe://passerelle/user/carol");
        e.set_caller_role("researcher");
        const std::string project = i % 3 ? "diab" : "onco";
        e.set_project(project);
        e.set_canonical_query(absl::StrCat("condition icd10:E1", i % 10));
        e.set_decision(i % 4 == 0 ? v1::AUDIT_DECISION_DENIED
                                  : v1::AUDIT_DECISION_ALLOWED);
        e.set_operation(i % 7 == 0 ? "budget" : "query");
        bytes = audit::EncodeRecord(e);
        w->projects.push_back(project);
      }
      Require(w->log->Append(bytes).ok(), "append failed");
    }
    Require(w->log->SignCheckpoint().ok(), "cannot sign a checkpoint");
    auto getter = [w] { return w->policy; };
    w->federation = std::make_unique<audit::FederationAuditAuthorizer>(getter);
    w->site = std::make_unique<audit::SiteAuditAuthorizer>("fr", getter);
    audit::AuditServiceLimits small;
    small.max_entries = 4;
    small.max_bytes = 300;
    small.max_scanned = 7;
    small.max_notes = 3;
    for (int a = 0; a < 2; ++a) {
      const audit::AuditAuthorizer* auth =
          a == 0
              ? static_cast<const audit::AuditAuthorizer*>(w->federation.get())
              : w->site.get();
      w->cores[a][0] =
          std::make_unique<audit::AuditServiceCore>(w->log.get(), auth);
      w->cores[a][1] =
          std::make_unique<audit::AuditServiceCore>(w->log.get(), auth, small);
    }
    return w;
  }();
  return *w;
}

template <typename T>
bool Parse(T* message, const uint8_t* data, size_t size) {
  return message->ParseFromArray(data, static_cast<int>(size));
}

void CheckRefusal(const absl::Status& status, const Caller& caller) {
  if (caller.identity[0] == '\0') {
    Require(status.code() == absl::StatusCode::kUnauthenticated ||
                status.code() == absl::StatusCode::kPermissionDenied,
            "an anonymous caller was not refused");
  } else {
    Require(status.code() == absl::StatusCode::kPermissionDenied,
            "a non-auditor was not refused");
  }
}

// The entries of an answer: in order, in the log, in scope or withheld.
void CheckEntries(const World& w, const v1::AuditEntriesResponse& r,
                  const audit::AuditScope& scope, uint64_t start, uint32_t max,
                  bool search) {
  Require(r.tree_size() <= w.log->Size(), "tree_size beyond the log");
  Require(static_cast<uint32_t>(r.entries_size()) <= max,
          "more entries than the page limit");
  uint64_t previous = 0;
  for (int i = 0; i < r.entries_size(); ++i) {
    const v1::AuditLogEntry& e = r.entries(i);
    Require(e.index() >= start && e.index() < r.tree_size(),
            "an entry outside the range asked");
    Require(i == 0 || e.index() > previous, "entries out of order");
    if (!search && i > 0) {
      Require(e.index() == previous + 1, "a gap in a range answer");
    }
    previous = e.index();
    absl::StatusOr<std::string> leaf = w.log->LeafHash(e.index());
    Require(leaf.ok(), "no leaf hash for a returned entry");
    const bool in_scope = scope.Covers(w.projects[e.index()]);
    if (e.withheld()) {
      Require(!search, "a search returned a withheld entry");
      Require(!in_scope, "an entry in scope was withheld");
      Require(e.entry().empty(), "a withheld entry with content");
      Require(e.leaf_hash() == *leaf, "a withheld entry's leaf hash is wrong");
    } else {
      Require(in_scope, "an entry outside the caller's scope was disclosed");
      Require(audit::HashLeaf(e.entry()) == *leaf,
              "an entry's bytes are not the ones the log hashed");
    }
  }
  if (r.entries_size() > 0) {
    Require(r.next_index() > previous, "next_index does not move on");
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
  World& w = GetWorld();
  const uint8_t head = data[0];
  const Caller& caller = kCallers[(head >> 3) & 7];
  const bool small = (head & 64) != 0;
  const audit::AuditServiceCore& core = *w.cores[caller.authorizer][small];
  const uint32_t max_entries = small ? 4 : 1000;
  absl::StatusOr<audit::AuditScope> scope =
      caller.authorizer == 0 ? w.federation->ScopeOf(caller.identity)
                             : w.site->ScopeOf(caller.identity);
  const uint8_t* body = data + 1;
  const size_t n = size - 1;

  switch (head & 7) {
    case 0: {
      v1::AuditEntriesRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.GetEntries(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok()) return 0;
      CheckEntries(w, *r, *scope, req.start(),
                   req.max_entries() ? std::min(req.max_entries(), max_entries)
                                     : max_entries,
                   false);
      if (r->entries_size() > 0) {
        Require(r->entries(0).index() == req.start(),
                "a range answer does not start where asked");
      }
      return 0;
    }
    case 1: {
      v1::AuditSearchRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.SearchEntries(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok()) return 0;
      CheckEntries(w, *r, *scope, req.start(),
                   req.max_entries() ? std::min(req.max_entries(), max_entries)
                                     : max_entries,
                   true);
      audit::RecordFilter filter;
      if (req.has_caller()) filter.caller = req.caller();
      if (req.has_project()) filter.project = req.project();
      if (req.has_since_unix_micros()) {
        filter.since = absl::FromUnixMicros(req.since_unix_micros());
      }
      if (req.has_until_unix_micros()) {
        filter.until = absl::FromUnixMicros(req.until_unix_micros());
      }
      if (req.outcome() != v1::AUDIT_DECISION_UNSPECIFIED) {
        filter.outcome = req.outcome();
      }
      for (const v1::AuditLogEntry& e : r->entries()) {
        auto record = audit::DecodeRecord(e.entry());
        Require(record.ok(), "a search returned an undecodable entry");
        Require(audit::Matches(*record, filter),
                "a search returned an entry that does not match");
      }
      return 0;
    }
    case 2: {
      v1::AuditCheckpointRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.GetCheckpoint(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok() || r->note().empty()) return 0;
      auto cp = audit::OpenCheckpoint(r->note(), kOrigin, *w.key);
      Require(cp.ok(), "a checkpoint that does not open with the log's key");
      Require(cp->size <= r->log_size(), "a checkpoint beyond the log");
      if (req.tree_size() != 0) {
        Require(cp->size == req.tree_size(), "a checkpoint of another size");
      }
      auto root = w.log->RootAt(cp->size);
      Require(root.ok() && *root == cp->root_hash,
              "a checkpoint whose root is not the log's");
      return 0;
    }
    case 3: {
      v1::AuditCheckpointsRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.ListCheckpoints(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok()) return 0;
      const uint32_t limit = small ? 3 : 1000;
      Require(static_cast<uint32_t>(r->notes_size()) <=
                  (req.max_notes() ? std::min(req.max_notes(), limit) : limit),
              "more checkpoints than the page limit");
      uint64_t previous = 0;
      for (const std::string& note : r->notes()) {
        auto cp = audit::OpenCheckpoint(note, kOrigin, *w.key);
        Require(cp.ok(), "a listed checkpoint does not open");
        Require(cp->size >= req.min_size() &&
                    (req.max_size() == 0 || cp->size <= req.max_size()),
                "a listed checkpoint outside the sizes asked");
        Require(cp->size > previous || previous == 0,
                "checkpoints out of order");
        previous = cp->size;
      }
      return 0;
    }
    case 4: {
      v1::AuditPublicKeyRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.GetPublicKey(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      Require(r.ok() && r->origin() == kOrigin, "public key: wrong origin");
      return 0;
    }
    case 5: {
      v1::AuditInclusionProofRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.GetInclusionProof(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok()) return 0;
      Require(r->index() == req.index(), "a proof for another index");
      Require(req.tree_size() == 0 || r->tree_size() == req.tree_size(),
              "a proof for another tree size");
      auto root = w.log->RootAt(r->tree_size());
      Require(root.ok() && *root == r->root(), "a proof against another root");
      Require(w.log->LeafHash(r->index()).value_or("") == r->leaf_hash(),
              "a proof for another leaf");
      std::vector<std::string> proof(r->proof().begin(), r->proof().end());
      Require(audit::VerifyInclusion(r->leaf_hash(), r->index(), r->tree_size(),
                                     proof, r->root())
                  .ok(),
              "an inclusion proof that does not verify");
      return 0;
    }
    case 6: {
      v1::AuditConsistencyProofRequest req;
      if (!Parse(&req, body, n)) return 0;
      auto r = core.GetConsistencyProof(caller.identity, req);
      if (!scope.ok()) return CheckRefusal(r.status(), caller), 0;
      if (!r.ok()) return 0;
      Require(r->size1() == req.size1(), "a proof from another size");
      auto root1 = w.log->RootAt(r->size1());
      auto root2 = w.log->RootAt(r->size2());
      Require(root1.ok() && root2.ok() && *root1 == r->root1() &&
                  *root2 == r->root2(),
              "a consistency proof against other roots");
      std::vector<std::string> proof(r->proof().begin(), r->proof().end());
      if (r->size1() > 0) {
        Require(audit::VerifyConsistency(r->size1(), r->size2(), proof,
                                         r->root1(), r->root2())
                    .ok(),
                "a consistency proof that does not verify");
      }
      return 0;
    }
    default:
      return 0;
  }
}
