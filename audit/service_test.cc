// The AuditService core without a network: who may read, what they see, and
// the remote auditor commands (RunRemoteAuditTool) against honest and
// dishonest servers.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "audit/merkle.h"
#include "audit/records.h"
#include "audit/remote.h"
#include "audit/service_core.h"
#include "audit/tool.h"
#include "common/clock.h"
#include "gtest/gtest.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::passerelle::v1;

constexpr char kAlice[] = "spiffe://passerelle/user/alice";  // Researcher.
constexpr char kBob[] = "spiffe://passerelle/user/bob";      // Audits diab.
constexpr char kCarol[] = "spiffe://passerelle/user/carol";  // Researcher.
constexpr char kDora[] = "spiffe://passerelle/user/dora";    // Federation.
constexpr char kErin[] = "spiffe://passerelle/user/erin";    // Site fr.
constexpr char kGateway[] = "spiffe://passerelle/gateway";
constexpr char kOrigin[] = "passerelle.test/gateway";

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

const absl::Time kT0 = absl::FromUnixSeconds(1795000000);  // 2026-11-18.
constexpr int kEntries = 13;

v1::AuditEntry Entry(int i, const std::string& project,
                     const std::string& caller, v1::AuditDecision decision) {
  v1::AuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Minutes(i)));
  e.set_request_id(absl::StrCat("req-", i));
  e.set_caller(caller);
  e.set_caller_role("researcher");
  e.set_project(project);
  e.set_purpose("DUO:0000006");
  e.set_canonical_query(absl::StrCat("condition icd10:E1", i % 10));
  e.set_decision(decision);
  return e;
}

// A fake transport in front of an honest core: hooks may rewrite answers,
// as a dishonest or compromised server would.
class TamperingReader : public AuditReader {
 public:
  explicit TamperingReader(AuditReader* inner) : inner_(inner) {}

  std::function<void(v1::AuditEntriesResponse*)> on_entries;
  std::function<void(v1::AuditEntriesResponse*)> on_search;
  std::function<void(v1::AuditCheckpointResponse*)> on_checkpoint;
  std::function<void(v1::AuditCheckpointsResponse*)> on_checkpoints;
  std::function<void(v1::AuditInclusionProofResponse*)> on_inclusion;
  std::function<void(v1::AuditConsistencyProofResponse*)> on_consistency;

  absl::StatusOr<v1::AuditEntriesResponse> GetEntries(
      const v1::AuditEntriesRequest& r) override {
    return Hook(inner_->GetEntries(r), on_entries);
  }
  absl::StatusOr<v1::AuditEntriesResponse> SearchEntries(
      const v1::AuditSearchRequest& r) override {
    return Hook(inner_->SearchEntries(r), on_search);
  }
  absl::StatusOr<v1::AuditCheckpointResponse> GetCheckpoint(
      const v1::AuditCheckpointRequest& r) override {
    return Hook(inner_->GetCheckpoint(r), on_checkpoint);
  }
  absl::StatusOr<v1::AuditCheckpointsResponse> ListCheckpoints(
      const v1::AuditCheckpointsRequest& r) override {
    return Hook(inner_->ListCheckpoints(r), on_checkpoints);
  }
  absl::StatusOr<v1::AuditPublicKeyResponse> GetPublicKey(
      const v1::AuditPublicKeyRequest& r) override {
    return inner_->GetPublicKey(r);
  }
  absl::StatusOr<v1::AuditInclusionProofResponse> GetInclusionProof(
      const v1::AuditInclusionProofRequest& r) override {
    return Hook(inner_->GetInclusionProof(r), on_inclusion);
  }
  absl::StatusOr<v1::AuditConsistencyProofResponse> GetConsistencyProof(
      const v1::AuditConsistencyProofRequest& r) override {
    return Hook(inner_->GetConsistencyProof(r), on_consistency);
  }

 private:
  template <typename T>
  static absl::StatusOr<T> Hook(absl::StatusOr<T> r,
                                const std::function<void(T*)>& fn) {
    if (r.ok() && fn) fn(&*r);
    return r;
  }
  AuditReader* const inner_;
};

class AuditServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = fs::temp_directory_path() / "audit_service_test.XXXXXX";
    dir_ = ::mkdtemp(tmpl.data());
    auto policy = policy::Policy::LoadFromSources({{"p.textproto", kPolicy}});
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = *policy;
    auto key = SigningKey::Generate();
    ASSERT_TRUE(key.ok());
    key_ = std::shared_ptr<const SigningKey>(*std::move(key));
    ASSERT_TRUE(
        WriteFileSynced(dir_ + "/log.pub", *key_->PublicKeyPem(), 0644, false)
            .ok());
    AuditLogOptions options;
    options.origin = kOrigin;
    options.signing_key = key_;
    auto log = AuditLog::OpenDirectory(dir_ + "/store", options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    // 0..12: diab and onco entries, a budget read, a repeat, opaque bytes.
    const auto allowed = v1::AUDIT_DECISION_ALLOWED;
    for (int i = 0; i < kEntries; ++i) {
      std::string bytes;
      if (i == 7) {
        bytes = "opaque bytes";
      } else {
        const bool diab = i % 3 != 2;
        v1::AuditEntry e =
            Entry(i, diab ? "diab" : "onco", diab ? kAlice : kCarol,
                  i == 1 ? v1::AUDIT_DECISION_DENIED : allowed);
        if (i == 3) e.set_operation("budget");
        if (i == 5) e.set_repeat_of_index(0);
        bytes = EncodeRecord(e);
      }
      ASSERT_TRUE(log_->Append(bytes).ok());
    }
    authorizer_ =
        std::make_unique<FederationAuditAuthorizer>([this] { return policy_; });
    core_ = std::make_unique<AuditServiceCore>(log_.get(), authorizer_.get());
  }
  void TearDown() override {
    log_.reset();
    fs::remove_all(dir_);
  }

  int Remote(AuditReader& reader, std::vector<std::string> args) {
    out_.str("");
    err_.str("");
    return RunRemoteAuditTool(args, reader, out_, err_);
  }
  std::string Local(std::vector<std::string> args) {
    std::ostringstream out, err;
    args.push_back("--store");
    args.push_back(dir_ + "/store");
    EXPECT_EQ(RunAuditTool(args, out, err), 0) << err.str();
    return out.str();
  }
  std::string Key() const { return dir_ + "/log.pub"; }
  VerifyingKey Public() const {
    return *VerifyingKey::FromRaw(key_->public_key());
  }

  std::string dir_;
  std::shared_ptr<const policy::Policy> policy_;
  std::shared_ptr<const SigningKey> key_;
  std::unique_ptr<AuditLog> log_;
  std::unique_ptr<FederationAuditAuthorizer> authorizer_;
  std::unique_ptr<AuditServiceCore> core_;
  std::ostringstream out_;
  std::ostringstream err_;
};

// Every RPC, for one caller: the status codes.
std::vector<absl::StatusCode> EveryRpc(const AuditServiceCore& core,
                                       const std::string& caller) {
  v1::AuditInclusionProofRequest inclusion;
  inclusion.set_tree_size(1);
  v1::AuditConsistencyProofRequest consistency;
  consistency.set_size1(1);
  return {core.GetEntries(caller, {}).status().code(),
          core.SearchEntries(caller, {}).status().code(),
          core.GetCheckpoint(caller, {}).status().code(),
          core.ListCheckpoints(caller, {}).status().code(),
          core.GetPublicKey(caller, {}).status().code(),
          core.GetInclusionProof(caller, inclusion).status().code(),
          core.GetConsistencyProof(caller, consistency).status().code()};
}

TEST_F(AuditServiceTest, OnlyAuditorsMayCallAnyRpc) {
  const std::vector<absl::StatusCode> denied(
      7, absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(EveryRpc(*core_, kAlice), denied);  // A researcher.
  EXPECT_EQ(EveryRpc(*core_, kCarol), denied);
  EXPECT_EQ(EveryRpc(*core_, kGateway), denied);
  EXPECT_EQ(EveryRpc(*core_, "spiffe://passerelle/user/mallory"), denied);
  EXPECT_EQ(EveryRpc(*core_, ""), std::vector<absl::StatusCode>(
                                      7, absl::StatusCode::kUnauthenticated));
  const std::vector<absl::StatusCode> ok(7, absl::StatusCode::kOk);
  EXPECT_EQ(EveryRpc(*core_, kDora), ok);
  EXPECT_EQ(EveryRpc(*core_, kBob), ok);
  auto st = core_->GetEntries(kAlice, {}).status();
  EXPECT_TRUE(absl::StrContains(st.message(), "is not an auditor")) << st;
  // The remote CLI reports the refusal and fails.
  CoreAuditReader alice(core_.get(), kAlice);
  EXPECT_EQ(Remote(alice, {"verify", "--public-key", Key()}), 1);
  EXPECT_TRUE(absl::StrContains(err_.str(), "PERMISSION_DENIED")) << err_.str();
}

TEST_F(AuditServiceTest, FederationAuditorSeesEveryEntryAsStored) {
  std::vector<FetchedEntry> got;
  CoreAuditReader dora(core_.get(), kDora);
  ASSERT_TRUE(FetchEntries(dora, 0, kEntries, &got).ok());
  ASSERT_EQ(got.size(), static_cast<size_t>(kEntries));
  for (int i = 0; i < kEntries; ++i) {
    EXPECT_FALSE(got[i].withheld);
    EXPECT_EQ(got[i].bytes, *log_->Get(i));
    EXPECT_EQ(got[i].leaf_hash, *log_->LeafHash(i));
  }
}

TEST_F(AuditServiceTest, ProjectAuditorSeesOnlyTheirProject) {
  auto page = core_->GetEntries(kBob, {});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->entries_size(), kEntries);
  EXPECT_EQ(page->tree_size(), static_cast<uint64_t>(kEntries));
  EXPECT_EQ(page->next_index(), static_cast<uint64_t>(kEntries));
  for (const v1::AuditLogEntry& e : page->entries()) {
    const bool diab = e.index() != 7 && e.index() % 3 != 2;
    EXPECT_EQ(e.withheld(), !diab) << e.index();
    if (diab) {
      EXPECT_EQ(e.entry(), *log_->Get(e.index()));
      EXPECT_TRUE(e.leaf_hash().empty());
    } else {
      EXPECT_TRUE(e.entry().empty());  // Nothing of another project.
      EXPECT_EQ(e.leaf_hash(), *log_->LeafHash(e.index()));
    }
  }
  // Search: only diab hits, and asking for onco is refused.
  auto hits = core_->SearchEntries(kBob, {});
  ASSERT_TRUE(hits.ok());
  for (const v1::AuditLogEntry& e : hits->entries()) {
    EXPECT_EQ(ViewOf(*DecodeRecord(e.entry())).project, "diab");
  }
  EXPECT_EQ(hits->entries_size(), 8);
  v1::AuditSearchRequest onco;
  onco.set_project("onco");
  EXPECT_EQ(core_->SearchEntries(kBob, onco).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(core_->SearchEntries(kDora, onco)->entries_size(), 4);

  // The project auditor still verifies the whole tree (by leaf hash for
  // the withheld entries) and exports only their project.
  CoreAuditReader bob(core_.get(), kBob);
  ASSERT_EQ(Remote(bob, {"verify", "--public-key", Key()}), 0)
      << out_.str() << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "5 withheld")) << out_.str();
  ASSERT_EQ(Remote(bob, {"export", "--public-key", Key()}), 0) << err_.str();
  const std::string exported = out_.str();
  EXPECT_EQ(std::count(exported.begin(), exported.end(), '\n'), kEntries);
  EXPECT_FALSE(absl::StrContains(out_.str(), "onco"));
  EXPECT_TRUE(absl::StrContains(out_.str(), "\"withheld\":true"));
  EXPECT_EQ(Remote(bob, {"show", "2", "--public-key", Key()}), 1);
  EXPECT_TRUE(absl::StrContains(err_.str(), "outside your audit scope"));
}

TEST_F(AuditServiceTest, SiteAuditorsOnlyAtTheNode) {
  SiteAuditAuthorizer site("fr", [this] { return policy_; });
  EXPECT_TRUE(site.ScopeOf(kErin)->everything);
  for (const char* who : {kDora, kBob, kAlice, kGateway}) {
    EXPECT_EQ(site.ScopeOf(who).status().code(),
              absl::StatusCode::kPermissionDenied)
        << who;
  }
  EXPECT_EQ(site.ScopeOf("").status().code(),
            absl::StatusCode::kUnauthenticated);
  // A site the policy does not define, and a node without site policy.
  SiteAuditAuthorizer other("qc", [this] { return policy_; });
  EXPECT_EQ(other.ScopeOf(kErin).status().code(),
            absl::StatusCode::kPermissionDenied);
  SiteAuditAuthorizer none("fr", PolicyGetter());
  EXPECT_EQ(none.ScopeOf(kErin).status().code(),
            absl::StatusCode::kPermissionDenied);
  // Erin is nobody at the gateway.
  EXPECT_EQ(authorizer_->ScopeOf(kErin).status().code(),
            absl::StatusCode::kPermissionDenied);
  AuditServiceCore node_core(log_.get(), &site);
  CoreAuditReader erin(&node_core, kErin);
  EXPECT_EQ(Remote(erin, {"verify", "--public-key", Key()}), 0) << out_.str();
}

TEST_F(AuditServiceTest, SmallPagesStillFetchEverything) {
  AuditServiceLimits limits;
  limits.max_entries = 3;
  limits.max_bytes = 100;  // About one entry per page.
  limits.max_scanned = 2;
  limits.max_notes = 4;
  AuditServiceCore small(log_.get(), authorizer_.get(), limits);
  auto page = small.GetEntries(kDora, {});
  ASSERT_TRUE(page.ok());
  EXPECT_GE(page->entries_size(), 1);
  EXPECT_LE(page->entries_size(), 3);
  EXPECT_EQ(page->next_index(), static_cast<uint64_t>(page->entries_size()));
  auto notes = small.ListCheckpoints(kDora, {});
  ASSERT_TRUE(notes.ok());
  EXPECT_EQ(notes->notes_size(), 4);
  EXPECT_TRUE(notes->more());
  EXPECT_EQ(notes->next_min_size(), 5u);
  CoreAuditReader dora(&small, kDora);
  ASSERT_EQ(Remote(dora, {"verify", "--public-key", Key()}), 0) << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "checkpoints verified: 13"))
      << out_.str();
  ASSERT_EQ(Remote(dora, {"search", "--caller", kCarol}), 0);
  EXPECT_EQ(out_.str(), Local({"search", "--caller", kCarol}));
  // Out of range asks.
  v1::AuditEntriesRequest past;
  past.set_start(kEntries + 1);
  EXPECT_EQ(small.GetEntries(kDora, past).status().code(),
            absl::StatusCode::kOutOfRange);
  v1::AuditCheckpointRequest at;
  at.set_tree_size(kEntries + 5);
  EXPECT_EQ(small.GetCheckpoint(kDora, at).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(AuditServiceTest, WritersServiceSealsTheTailWhenAskedForTheLatest) {
  // A server's log: checkpoints due every 16 entries, so the 13 entries of a
  // fresh log have none until sealed.
  AuditLogOptions options;
  options.origin = kOrigin;
  options.signing_key = key_;
  options.checkpoint_interval = kDefaultCheckpointInterval;
  options.checkpoint_lag = kDefaultCheckpointLag;
  auto log = AuditLog::OpenDirectory(dir_ + "/server", options);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < kEntries; ++i) {
    ASSERT_TRUE((*log)
                    ->Append(EncodeRecord(
                        Entry(i, "diab", kAlice, v1::AUDIT_DECISION_ALLOWED)))
                    .ok());
  }
  AuditServiceCore reader_only(log->get(), authorizer_.get());
  auto none = reader_only.GetCheckpoint(kDora, {});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->note().empty());
  EXPECT_EQ(none->log_size(), static_cast<uint64_t>(kEntries));

  CheckpointSealer sealer(log->get(), absl::ZeroDuration());
  AuditServiceCore writer(log->get(), &sealer, authorizer_.get());
  // A refused caller signs nothing.
  EXPECT_EQ(writer.GetCheckpoint(kAlice, {}).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*log)->UnsignedTail(), static_cast<uint64_t>(kEntries));
  auto latest = writer.GetCheckpoint(kDora, {});
  ASSERT_TRUE(latest.ok()) << latest.status();
  auto cp = ParseCheckpointNote(latest->note());
  ASSERT_TRUE(cp.ok()) << latest->note();
  EXPECT_EQ(cp->size, static_cast<uint64_t>(kEntries));
  EXPECT_EQ((*log)->UnsignedTail(), 0u);
  // The remote verify of the running log now passes.
  CoreAuditReader dora(&writer, kDora);
  EXPECT_EQ(Remote(dora, {"verify", "--public-key", Key()}), 0) << out_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "\nOK\n")) << out_.str();
}

TEST_F(AuditServiceTest, RemoteCommandsPrintWhatTheLocalOnesPrint) {
  CoreAuditReader dora(core_.get(), kDora);
  ASSERT_EQ(Remote(dora, {"verify", "--public-key", Key()}), 0)
      << out_.str() << err_.str();
  EXPECT_TRUE(absl::StrContains(out_.str(), "entries: 13 (13 fetched"));
  EXPECT_TRUE(absl::StrContains(out_.str(), "\nOK\n")) << out_.str();
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{
           {"show", "5"},
           {"show", "7"},
           {"search", "--project", "diab", "--outcome", "allowed"},
           {"search", "--since", "2026-11-18T11:10:00Z"},
           {"export", "--format", "jsonl"},
           {"export", "--format", "fhir"},
           {"proof", "--index", "4", "--size", "9"},
           {"proof", "--index", "12"},
           {"consistency", "--from", "3", "--to", "13"},
           {"consistency", "--from", "6", "--to", "6"},
           {"checkpoint"}}) {
    std::vector<std::string> with_key = cmd;
    with_key.push_back("--public-key");
    with_key.push_back(Key());
    ASSERT_EQ(Remote(dora, with_key), 0) << cmd[0] << ": " << err_.str();
    EXPECT_EQ(out_.str(), Local(cmd)) << cmd[0];
    EXPECT_FALSE(absl::StrContains(err_.str(), "warning")) << err_.str();
    // Without the key: the same output, with a warning.
    ASSERT_EQ(Remote(dora, cmd), 0) << cmd[0] << ": " << err_.str();
    EXPECT_EQ(out_.str(), Local(cmd)) << cmd[0];
    EXPECT_TRUE(absl::StrContains(err_.str(), "warning")) << cmd[0];
  }
  // Budget reads and repeats are rendered.
  ASSERT_EQ(Remote(dora, {"search"}), 0);
  EXPECT_TRUE(absl::StrContains(out_.str(), "\tbudget\t"));
  EXPECT_TRUE(absl::StrContains(out_.str(), "\trepeat_of=0\n"));
  // Usage.
  EXPECT_EQ(Remote(dora, {"verify"}), 2);  // No key: refused, not trusted.
  EXPECT_TRUE(absl::StrContains(err_.str(), "needs --public-key"));
  EXPECT_EQ(Remote(dora, {"verify", "--store", "x", "--public-key", Key()}), 2);
  EXPECT_EQ(Remote(dora, {"crosscheck", "--site", "fr"}), 2);
  EXPECT_EQ(Remote(dora, {"proof"}), 2);
  EXPECT_EQ(Remote(dora, {"show", "99"}), 1);
}

TEST_F(AuditServiceTest, KeptCheckpointAndOtherKeys) {
  CoreAuditReader dora(core_.get(), kDora);
  ASSERT_EQ(Remote(dora, {"checkpoint", "--public-key", Key()}), 0);
  ASSERT_TRUE(
      WriteFileSynced(dir_ + "/kept.note", out_.str(), 0644, false).ok());
  ASSERT_TRUE(log_->Append("one more").ok());
  EXPECT_EQ(Remote(dora, {"verify", "--public-key", Key(), "--checkpoint",
                          dir_ + "/kept.note"}),
            0)
      << out_.str();
  // Another key: nothing verifies, the first checkpoint already fails.
  auto other = SigningKey::Generate();
  ASSERT_TRUE(WriteFileSynced(dir_ + "/other.pub", *(*other)->PublicKeyPem(),
                              0644, false)
                  .ok());
  EXPECT_EQ(Remote(dora, {"verify", "--public-key", dir_ + "/other.pub"}), 1);
  EXPECT_TRUE(absl::StrContains(out_.str(), "FAILED: first bad index 0"))
      << out_.str();
  EXPECT_EQ(Remote(dora, {"checkpoint", "--public-key", dir_ + "/other.pub"}),
            1);
  EXPECT_EQ(Remote(dora, {"show", "1", "--public-key", dir_ + "/other.pub"}),
            1);
  // A pinned origin must match.
  EXPECT_EQ(Remote(dora, {"verify", "--public-key", Key(), "--origin",
                          "passerelle.test/elsewhere"}),
            1);
}

// A dishonest server, each way: the client names the first bad index.
struct Lie {
  std::string name;
  std::function<void(TamperingReader*)> apply;
  int64_t first_bad_index;
};

TEST_F(AuditServiceTest, DishonestServersAreCaught) {
  auto flip = [](int index) {
    return [index](TamperingReader* r) {
      r->on_entries = [index](v1::AuditEntriesResponse* p) {
        for (v1::AuditLogEntry& e : *p->mutable_entries()) {
          if (e.index() == static_cast<uint64_t>(index)) {
            e.mutable_entry()->back() ^= 0x01;
          }
        }
      };
    };
  };
  const std::vector<Lie> lies = {
      {"flipped byte in entry 6", flip(6), 6},
      {"flipped byte in entry 0", flip(0), 0},
      {"deleted entry 4 (the rest shifted down)",
       [](TamperingReader* r) {
         r->on_entries = [](v1::AuditEntriesResponse* p) {
           auto* es = p->mutable_entries();
           for (int i = 0; i < es->size(); ++i) {
             if (es->Get(i).index() == 4) {
               es->DeleteSubrange(i, 1);
               break;
             }
           }
           for (v1::AuditLogEntry& e : *es) {
             if (e.index() > 4) e.set_index(e.index() - 1);
           }
         };
       },
       4},
      {"deleted entry 4 (a gap)",
       [](TamperingReader* r) {
         r->on_entries = [](v1::AuditEntriesResponse* p) {
           auto* es = p->mutable_entries();
           for (int i = 0; i < es->size(); ++i) {
             if (es->Get(i).index() == 4) {
               es->DeleteSubrange(i, 1);
               break;
             }
           }
         };
       },
       4},
      {"swapped entries 2 and 9",
       [](TamperingReader* r) {
         r->on_entries = [](v1::AuditEntriesResponse* p) {
           auto* es = p->mutable_entries();
           if (es->size() == kEntries) {
             std::swap(*es->Mutable(2)->mutable_entry(),
                       *es->Mutable(9)->mutable_entry());
           }
         };
       },
       2},
      {"truncated tail (size 10 reported)",
       [](TamperingReader* r) {
         r->on_checkpoint = [](v1::AuditCheckpointResponse* p) {
           p->set_log_size(10);
         };
       },
       10},
      {"replaced latest checkpoint (another key)",
       [](TamperingReader* r) {
         r->on_checkpoint = [](v1::AuditCheckpointResponse* p) {
           Checkpoint forged{kOrigin, kEntries, Sha256("forged")};
           p->set_note(
               *SignCheckpoint(forged, kOrigin, **SigningKey::Generate()));
         };
         r->on_checkpoints = [](v1::AuditCheckpointsResponse* p) {
           p->mutable_notes()->RemoveLast();
         };
       },
       kEntries - 1},
      {"withheld entry 3 with a made-up leaf hash",
       [](TamperingReader* r) {
         r->on_entries = [](v1::AuditEntriesResponse* p) {
           for (v1::AuditLogEntry& e : *p->mutable_entries()) {
             if (e.index() == 3) {
               e.clear_entry();
               e.set_withheld(true);
               e.set_leaf_hash(Sha256("made up"));
             }
           }
         };
       },
       3},
  };
  for (const Lie& lie : lies) {
    SCOPED_TRACE(lie.name);
    CoreAuditReader honest(core_.get(), kDora);
    TamperingReader reader(&honest);
    lie.apply(&reader);
    RemoteVerifySummary summary;
    absl::Status st = VerifyRemote(reader, Public(), {}, "", &summary);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_EQ(summary.first_bad_index,
              static_cast<uint64_t>(lie.first_bad_index))
        << summary.problem;
    EXPECT_EQ(Remote(reader, {"verify", "--public-key", Key()}), 1);
    EXPECT_TRUE(absl::StrContains(
        out_.str(),
        absl::StrCat("FAILED: first bad index ", lie.first_bad_index, ":")))
        << out_.str();
  }
  // An older genuine checkpoint as the latest, the tail and its checkpoints
  // hidden: consistent in itself, so only a checkpoint kept from an earlier
  // audit catches it (as with a store directory).
  {
    const std::string old = **log_->CheckpointAt(9);
    const std::string latest = **log_->LatestCheckpoint();
    CoreAuditReader honest(core_.get(), kDora);
    TamperingReader reader(&honest);
    reader.on_checkpoint = [old](v1::AuditCheckpointResponse* p) {
      p->set_note(old);
      p->set_log_size(9);
    };
    reader.on_checkpoints = [](v1::AuditCheckpointsResponse* p) {
      while (p->notes_size() > 9) p->mutable_notes()->RemoveLast();
    };
    RemoteVerifySummary summary;
    EXPECT_TRUE(VerifyRemote(reader, Public(), {}, "", &summary).ok());
    absl::Status st = VerifyRemote(reader, Public(), {latest}, "", &summary);
    EXPECT_EQ(st.code(), absl::StatusCode::kDataLoss) << st;
    EXPECT_EQ(summary.first_bad_index, 9u);
  }
}

TEST_F(AuditServiceTest, DishonestProofsAndHitsAreRefused) {
  CoreAuditReader honest(core_.get(), kDora);
  {
    TamperingReader reader(&honest);
    reader.on_inclusion = [](v1::AuditInclusionProofResponse* p) {
      (*p->mutable_proof(0))[0] ^= 0x01;
    };
    EXPECT_EQ(Remote(reader, {"proof", "--index", "4", "--size", "9"}), 1);
    EXPECT_TRUE(out_.str().empty());
    EXPECT_EQ(Remote(reader, {"show", "4", "--public-key", Key()}), 1);
    EXPECT_EQ(Remote(reader, {"search", "--public-key", Key()}), 1);
  }
  {
    // A proof consistent with itself but for another tree: only the signed
    // checkpoint tells.
    TamperingReader reader(&honest);
    reader.on_inclusion = [](v1::AuditInclusionProofResponse* p) {
      InMemoryTree fake;
      for (uint64_t i = 0; i < p->tree_size(); ++i) {
        fake.AppendLeafHash(i == p->index() ? p->leaf_hash()
                                            : Sha256(absl::StrCat(i)));
      }
      auto proof = InclusionProof(fake, p->index(), p->tree_size());
      p->clear_proof();
      for (const std::string& h : *proof) p->add_proof(h);
      p->set_root(fake.Root());
    };
    EXPECT_EQ(Remote(reader, {"proof", "--index", "4", "--size", "9"}), 0);
    EXPECT_EQ(Remote(reader, {"proof", "--index", "4", "--size", "9",
                              "--public-key", Key()}),
              1);
    EXPECT_TRUE(absl::StrContains(err_.str(), "FAILED")) << err_.str();
    EXPECT_EQ(Remote(reader, {"proof", "--index", "4", "--public-key", Key()}),
              1);
  }
  {
    TamperingReader reader(&honest);
    reader.on_consistency = [](v1::AuditConsistencyProofResponse* p) {
      p->set_root1(Sha256("other"));
    };
    EXPECT_EQ(Remote(reader, {"consistency", "--from", "3", "--to", "13"}), 1);
  }
  {
    TamperingReader reader(&honest);
    reader.on_consistency = [](v1::AuditConsistencyProofResponse* p) {
      if (p->size2() == 9) p->mutable_proof()->RemoveLast();
    };
    // --size 9 is anchored to the checkpoint (13) by a consistency proof.
    EXPECT_EQ(Remote(reader, {"proof", "--index", "4", "--size", "9",
                              "--public-key", Key()}),
              0);
    EXPECT_EQ(Remote(reader, {"consistency", "--from", "3", "--to", "9"}), 1);
  }
  {
    // A search hit that does not match the filters.
    TamperingReader reader(&honest);
    reader.on_search = [this](v1::AuditEntriesResponse* p) {
      if (p->entries_size() > 0)
        p->mutable_entries(0)->set_entry(*log_->Get(2));
    };
    EXPECT_EQ(Remote(reader, {"search", "--caller", kAlice}), 1);
    EXPECT_TRUE(absl::StrContains(err_.str(), "does not match")) << err_.str();
  }
  {
    // An entry changed in an export.
    TamperingReader reader(&honest);
    reader.on_entries = [](v1::AuditEntriesResponse* p) {
      for (v1::AuditLogEntry& e : *p->mutable_entries()) {
        if (e.index() == 8) e.mutable_entry()->back() ^= 0x01;
      }
    };
    EXPECT_EQ(Remote(reader, {"export", "--public-key", Key()}), 1);
    EXPECT_TRUE(out_.str().empty());  // Nothing written.
  }
}

// Every AuditService RPC is recorded in the log it reads, before it answers:
// who, which RPC, which range; refusals too; a peer without identity is
// refused unrecorded (the servers count it).
TEST_F(AuditServiceTest, EveryReadIsRecordedInTheLogItReads) {
  FakeClock clock(kT0 + absl::Hours(1));
  LogReadRecorder recorder(log_.get(), &clock);
  AuditServiceCore core(log_.get(), /*sealer=*/nullptr, &recorder,
                        authorizer_.get());
  const uint64_t before = log_->Size();
  EXPECT_EQ(EveryRpc(core, kDora),
            std::vector<absl::StatusCode>(7, absl::StatusCode::kOk));
  EXPECT_EQ(
      EveryRpc(core, kAlice),
      std::vector<absl::StatusCode>(7, absl::StatusCode::kPermissionDenied));
  EXPECT_EQ(EveryRpc(core, ""), std::vector<absl::StatusCode>(
                                    7, absl::StatusCode::kUnauthenticated));
  ASSERT_EQ(log_->Size(), before + 14);
  const std::vector<std::string> rpcs = {
      "GetEntries",         "SearchEntries", "GetCheckpoint",
      "ListCheckpoints",    "GetPublicKey",  "GetInclusionProof",
      "GetConsistencyProof"};
  for (uint64_t i = 0; i < 14; ++i) {
    auto record = DecodeRecord(*log_->Get(before + i));
    ASSERT_TRUE(record.ok() && record->has_read()) << i;
    const v1::AuditReadEntry& read = record->read();
    EXPECT_EQ(read.caller(), i < 7 ? kDora : kAlice) << i;
    EXPECT_EQ(read.rpc(), rpcs[i % 7]) << i;
    EXPECT_EQ(read.decision(),
              i < 7 ? v1::AUDIT_DECISION_ALLOWED : v1::AUDIT_DECISION_DENIED)
        << i;
    EXPECT_EQ(read.time_unix_micros(),
              absl::ToUnixMicros(kT0 + absl::Hours(1)));
  }
  // The range asked is recorded (bounded integers only).
  v1::AuditEntriesRequest page;
  page.set_start(2);
  page.set_end(9);
  ASSERT_TRUE(core.GetEntries(kDora, page).ok());
  auto last = DecodeRecord(*log_->Get(log_->Size() - 1));
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->read().start(), 2u);
  EXPECT_EQ(last->read().end(), 9u);
  // The answer already covers its own read entry.
  auto checkpoint = core.GetCheckpoint(kDora, {});
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(checkpoint->log_size(), log_->Size());
  // A very long identity is cut to the bound.
  const std::string long_id(10000, 'x');
  (void)core.GetPublicKey(long_id, {});
  auto cut = DecodeRecord(*log_->Get(log_->Size() - 1));
  ASSERT_TRUE(cut.ok());
  EXPECT_EQ(cut->read().caller().size(), kMaxReadCallerBytes);
  // Read entries are outside every project: a project auditor sees them
  // withheld; `search` lists them as kind "read".
  auto bobs = core.GetEntries(kBob, page);
  ASSERT_TRUE(bobs.ok());
  auto tail = core.GetEntries(kBob, [&] {
    v1::AuditEntriesRequest r;
    r.set_start(before);
    r.set_end(before + 1);
    return r;
  }());
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->entries_size(), 1);
  EXPECT_TRUE(tail->entries(0).withheld());
  EXPECT_TRUE(absl::StrContains(Local({"search", "--caller", kDora}),
                                "\tread\tGetEntries\tallowed\t"));
}

// A read that cannot be recorded is not answered.
TEST_F(AuditServiceTest, AnUnrecordedReadIsNotAnswered) {
  class FailingRecorder : public AuditReadRecorder {
   public:
    absl::Status Record(v1::AuditReadEntry) override {
      return absl::UnavailableError("disk full");
    }
  } recorder;
  AuditServiceCore core(log_.get(), nullptr, &recorder, authorizer_.get());
  EXPECT_EQ(EveryRpc(core, kDora),
            std::vector<absl::StatusCode>(7, absl::StatusCode::kUnavailable));
}

// A node's log: entries hold a salted commitment to the counts, whose
// opening stays beside the entry (sidecar, never served). An entry that
// holds counts in its hashed bytes (written before commitments) is served
// withheld. Remote verification works on what is served; the site opens
// the commitments locally.
TEST_F(AuditServiceTest, NodeCountsNeverLeaveThroughTheService) {
  AuditLogOptions options;
  options.origin = "passerelle/site/fr";
  options.signing_key = key_;
  auto opened = AuditLog::OpenDirectory(dir_ + "/node", options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<AuditLog> node = *std::move(opened);
  auto cell = [](int64_t count) {
    v1::Cell c;
    c.set_count(count);
    return c;
  };
  // 0: legacy, counts in the hashed bytes.
  v1::NodeAuditEntry legacy;
  legacy.set_request_id("old");
  legacy.set_decision(v1::AUDIT_DECISION_ALLOWED);
  *legacy.add_cells() = cell(3);
  ASSERT_TRUE(node->Append(EncodeRecord(legacy)).ok());
  // 1..4: counts 1, 2, 3, 4 under commitments.
  for (int64_t n = 1; n <= 4; ++n) {
    v1::AuditRecord record;
    v1::NodeAuditEntry* e = record.mutable_node();
    e->set_request_id(absl::StrCat("r", n));
    e->set_decision(v1::AUDIT_DECISION_ALLOWED);
    google::protobuf::RepeatedPtrField<v1::Cell> cells;
    *cells.Add() = cell(n);
    auto salt = NewCellsSalt();
    ASSERT_TRUE(salt.ok());
    auto opening = CommitNodeCells(cells, *salt, e);
    ASSERT_TRUE(opening.ok()) << opening.status();
    EXPECT_EQ(cells.size(), 1);  // Given back.
    EXPECT_EQ(e->cells_size(), 0);
    ASSERT_TRUE(
        node->Append(record.SerializeAsString(), *std::move(opening)).ok());
  }
  auto site_policy = policy_;
  SiteAuditAuthorizer authorizer("fr", [site_policy] { return site_policy; });
  FakeClock clock(kT0);
  LogReadRecorder recorder(node.get(), &clock);
  AuditServiceCore core(node.get(), nullptr, &recorder, &authorizer);
  CoreAuditReader erin(&core, kErin);

  std::vector<FetchedEntry> got;
  ASSERT_TRUE(FetchEntries(erin, 0, 5, &got).ok());
  ASSERT_EQ(got.size(), 5u);
  EXPECT_TRUE(got[0].withheld);  // The legacy entry: leaf hash only.
  EXPECT_TRUE(got[0].bytes.empty());
  for (size_t i = 1; i < 5; ++i) {
    ASSERT_FALSE(got[i].withheld) << i;
    auto record = DecodeRecord(got[i].bytes);
    ASSERT_TRUE(record.ok());
    EXPECT_EQ(record->node().cells_size(), 0) << i;
    EXPECT_EQ(record->node().cells_commitment().size(), 32u) << i;
    // Nothing served is the opening or contains it.
    auto sidecar = node->Sidecar(i);
    ASSERT_TRUE(sidecar.ok() && sidecar->has_value());
    EXPECT_FALSE(absl::StrContains(got[i].bytes, **sidecar)) << i;
  }
  auto search = core.SearchEntries(kErin, {});
  ASSERT_TRUE(search.ok());
  for (const v1::AuditLogEntry& e : search->entries()) {
    EXPECT_NE(e.index(), 0u);
    auto record = DecodeRecord(e.entry());
    ASSERT_TRUE(record.ok());
    if (record->has_node()) {
      EXPECT_EQ(record->node().cells_size(), 0);
    }
  }
  // Remote verification passes on what is served.
  RemoteVerifySummary summary;
  EXPECT_TRUE(VerifyRemote(erin, Public(), {}, "", &summary).ok())
      << summary.problem;
  EXPECT_EQ(summary.withheld, 1u);
  // Each of those reads was recorded, naming erin.
  int reads = 0;
  for (uint64_t i = 5; i < node->Size(); ++i) {
    auto record = DecodeRecord(*node->Get(i));
    ASSERT_TRUE(record.ok() && record->has_read());
    EXPECT_EQ(record->read().caller(), kErin);
    ++reads;
  }
  EXPECT_GE(reads, 4);
  // Locally the site opens every commitment and sees the counts.
  for (int64_t n = 1; n <= 4; ++n) {
    auto record = DecodeRecord(*node->Get(n));
    auto opening = OpenNodeCells(record->node(), **node->Sidecar(n));
    ASSERT_TRUE(opening.ok()) << opening.status();
    ASSERT_EQ(opening->cells_size(), 1);
    EXPECT_EQ(opening->cells(0).count(), n);
    EXPECT_EQ(opening->salt().size(), kCellsSaltSize);
  }
  auto shown = ShowEntry(*node, 2);
  ASSERT_TRUE(shown.ok());
  EXPECT_TRUE(absl::StrContains(*shown, "\"cells_opening\"")) << *shown;
  EXPECT_TRUE(absl::StrContains(*shown, "\"count\": \"2\"")) << *shown;
  uint64_t count = 0;
  EXPECT_TRUE(OpenCommitments(*node, &count).ok());
  EXPECT_EQ(count, 4u);
  // Changed counts no longer open the commitment.
  v1::NodeCellsOpening forged =
      *OpenNodeCells(DecodeRecord(*node->Get(3))->node(), **node->Sidecar(3));
  forged.mutable_cells(0)->set_count(30);
  EXPECT_EQ(OpenNodeCells(DecodeRecord(*node->Get(3))->node(),
                          forged.SerializeAsString())
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace passerelle::audit
