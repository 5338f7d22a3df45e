#include "gateway/gateway_core.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "common/limits.h"
#include "common/refusal_limiter.h"
#include "gateway/noise_prewarm.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "policy/policy.h"
#include "policy/store.h"
#include "privacy/noise.h"
#include "privacy/seeded_random_for_testing.h"
#include "query/canonical.h"
#include "query/cells.h"
#include "query/parser.h"

namespace passerelle::gateway {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"pb(
  federation {
    id: "test-federation"
    gateway_identity: "spiffe://passerelle/gateway"
    site { id: "fr" }
    site { id: "qc" }
    disclosure {
      min_cell_size: 1
      mechanism: LAPLACE
      epsilon_per_query: 1.0
      exact_mode_allowed: true
    }
    allow {
      domains: [ "condition", "drug" ]
      vocabularies: [ "icd10", "atc" ]
      criteria: [ "sex", "age", "event", "not" ]
      dimensions: [ "sex", "age_band", "site" ]
    }
  }
  project {
    id: "exact"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: EXACT }
  }
  project {
    id: "noised"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: LAPLACE epsilon_per_query: 0.5 }
    budget { epsilon_cap: 6 researcher_epsilon_cap: 6 }
  }
  project {
    id: "onco"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/carol" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr" ]
    disclosure { mechanism: EXACT }
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

constexpr char kAlice[] = "spiffe://passerelle/user/alice";

// A node that answers synchronously: `count(key_index)` per public cell,
// or a fixed error. Counts every call it receives.
class FakeNode : public NodeClient {
 public:
  explicit FakeNode(std::string site) : site_(std::move(site)) {}
  const std::string& site() const override { return site_; }
  void Count(const v1::CountRequest& request, absl::Time,
             CountCallback done) override {
    calls_++;
    {
      absl::MutexLock lock(&mu_);
      last_ = request;
    }
    if (!error_.ok()) return done(error_);
    v1::CountResponse r;
    r.set_site(site_);
    r.set_snapshot(snapshot());
    r.set_audit_index(7);
    std::vector<v1::CellKey> keys =
        query::EnumerateCells(request.query(), {site_});
    for (size_t i = 0; i < keys.size(); ++i) {
      v1::Cell* c = r.add_cells();
      *c->mutable_key() = keys[i];
      c->set_count(base_ + static_cast<int64_t>(i) * step_);
    }
    if (extra_cell_) *r.add_cells() = r.cells(0);
    if (reversed_) {
      std::reverse(r.mutable_cells()->begin(), r.mutable_cells()->end());
    }
    done(r);
  }
  absl::StatusOr<v1::NodeInfo> Info(absl::Time) override {
    info_calls_++;
    if (!error_.ok()) return error_;
    v1::NodeInfo info;
    info.set_site(site_);
    info.set_snapshot(snapshot());
    return info;
  }
  void set_snapshot(std::string s) {
    absl::MutexLock lock(&mu_);
    snapshot_ = std::move(s);
  }
  std::string snapshot() {
    absl::MutexLock lock(&mu_);
    return snapshot_.empty() ? "snap-" + site_ : snapshot_;
  }
  int info_calls() const { return info_calls_.load(); }
  void set_counts(int64_t base, int64_t step) {
    base_ = base;
    step_ = step;
  }
  void fail_with(absl::Status s) { error_ = std::move(s); }
  void duplicate_a_cell() { extra_cell_ = true; }
  void answer_in_reverse_order() { reversed_ = true; }
  int calls() const { return calls_.load(); }
  v1::CountRequest last() {
    absl::MutexLock lock(&mu_);
    return last_;
  }

 private:
  const std::string site_;
  int64_t base_ = 100;
  int64_t step_ = 10;
  absl::Status error_;
  bool extra_cell_ = false;
  bool reversed_ = false;
  std::atomic<int> calls_{0};
  std::atomic<int> info_calls_{0};
  absl::Mutex mu_;
  v1::CountRequest last_ ABSL_GUARDED_BY(mu_);
  std::string snapshot_ ABSL_GUARDED_BY(mu_);
};

class MemoryAudit : public AuditSink {
 public:
  absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) override {
    absl::MutexLock lock(&mu_);
    if (failing_) {
      return absl::UnavailableError(
          "disk full: /var/lib/passerelle/audit/000042.log");
    }
    entries_.push_back(entry);
    return entries_.size() - 1;
  }
  void set_failing(bool f) {
    absl::MutexLock lock(&mu_);
    failing_ = f;
  }
  std::vector<v1::AuditEntry> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  bool failing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<v1::AuditEntry> entries_ ABSL_GUARDED_BY(mu_);
};

class GatewayCoreTest : public ::testing::Test {
 protected:
  GatewayCoreTest()
      // Fan-out deadlines and retry backoff are on the real clock (as gRPC's
      // are), so the fake clock starts at real time and never moves.
      : clock_(absl::Now()),
        random_(42),
        ids_(7),
        noise_(&random_),
        fr_("fr"),
        qc_("qc") {}

  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat(
               "gateway_core_test_",
               ::testing::UnitTest::GetInstance()->random_seed(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    auto ledger =
        ledger::BudgetLedger::Open((dir_ / "ledger").string(), &clock_);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    auto policy =
        policy::Policy::LoadFromSources({{"test.textproto", kPolicy}});
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = *policy;
    core_ = std::make_unique<GatewayCore>(
        GatewayOptions{}, [this] { return policy_; }, ledger_.get(), &audit_,
        &noise_, &ids_, std::vector<NodeClient*>{&fr_, &qc_}, &clock_, &cache_);
  }
  void TearDown() override {
    core_.reset();
    ledger_.reset();
    std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<v1::QueryResponse> Ask(const std::string& project,
                                        const std::string& text,
                                        const std::string& caller = kAlice) {
    v1::QueryRequest request;
    request.set_project(project);
    request.set_purpose("DUO:0000006");
    request.set_text(text);
    return core_->Query(caller, request, clock_.Now() + absl::Seconds(5));
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  privacy::testing::SeededRandomSource random_;
  privacy::testing::SeededRandomSource ids_;
  privacy::DirectNoiseSource noise_;
  FakeNode fr_;
  FakeNode qc_;
  MemoryAudit audit_;
  MemoryReleaseCache cache_;
  std::unique_ptr<ledger::BudgetLedger> ledger_;
  std::shared_ptr<const policy::Policy> policy_;
  std::unique_ptr<GatewayCore> core_;
};

TEST_F(GatewayCoreTest, ExactModeMergesCellByCell) {
  fr_.set_counts(100, 10);
  qc_.set_counts(50, 1);
  absl::StatusOr<v1::QueryResponse> r =
      Ask("exact", "condition icd10:E11* group by sex");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->complete());
  ASSERT_EQ(r->sites_size(), 2);
  EXPECT_EQ(r->sites(0).status(), v1::SITE_STATUS_OK);
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_OK);
  EXPECT_EQ(r->sites(0).snapshot(), "snap-fr");
  const size_t cells =
      query::EnumerateCells(
          *query::ParseQuery("condition icd10:E11* group by sex"), {"fr"})
          .size();
  ASSERT_GT(cells, 1u);
  ASSERT_EQ(static_cast<size_t>(r->combined_size()), cells);
  for (size_t i = 0; i < cells; ++i) {
    const v1::ReleasedCell& c = r->combined(static_cast<int>(i));
    ASSERT_TRUE(c.has_count()) << i;
    EXPECT_EQ(c.count(), (100 + 10 * static_cast<int64_t>(i)) +
                             (50 + static_cast<int64_t>(i)))
        << "cell " << i;
    EXPECT_EQ(c.key().DebugString(),
              r->sites(0).cells(static_cast<int>(i)).key().DebugString());
  }
  // The nodes were asked for the parsed query with the site minimum.
  EXPECT_EQ(fr_.calls(), 1);
  EXPECT_EQ(fr_.last().min_cell_size(), 1);
  EXPECT_EQ(fr_.last().request_id(), r->request_id());
  // One audit entry, written before release, with what was released.
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].decision(), v1::AUDIT_DECISION_ALLOWED);
  EXPECT_EQ(entries[0].caller(), kAlice);
  EXPECT_EQ(entries[0].canonical_query(), r->canonical_query());
  EXPECT_FALSE(entries[0].policy_version().empty());
  ASSERT_EQ(entries[0].sites_size(), 2);
  EXPECT_EQ(entries[0].sites(0).node_audit_index(), 7u);
  // The entry holds exactly the released cells (lent to it for the append),
  // and the response still has them.
  ASSERT_EQ(entries[0].released_cells_size(), r->combined_size());
  for (int i = 0; i < r->combined_size(); ++i) {
    EXPECT_EQ(entries[0].released_cells(i).SerializeAsString(),
              r->combined(i).SerializeAsString())
        << "combined cell " << i;
  }
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(r->sites(s).cells_size(), static_cast<int>(cells)) << s;
    ASSERT_EQ(entries[0].sites(s).released_cells_size(),
              r->sites(s).cells_size());
    for (int i = 0; i < r->sites(s).cells_size(); ++i) {
      EXPECT_EQ(entries[0].sites(s).released_cells(i).SerializeAsString(),
                r->sites(s).cells(i).SerializeAsString())
          << "site " << s << " cell " << i;
    }
  }
}

TEST_F(GatewayCoreTest, CellsInAnotherOrderAreMatchedByKey) {
  fr_.set_counts(100, 10);
  qc_.set_counts(50, 1);
  qc_.answer_in_reverse_order();
  absl::StatusOr<v1::QueryResponse> r =
      Ask("exact", "condition icd10:E11* group by sex");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->complete());
  ASSERT_GT(r->combined_size(), 1);
  for (int i = 0; i < r->combined_size(); ++i) {
    // Cell i is fr's 100 + 10i plus qc's 50 + i, whatever order qc used.
    EXPECT_EQ(r->combined(i).count(), 100 + 10 * i + 50 + i) << "cell " << i;
  }
}

TEST_F(GatewayCoreTest, MissingSiteMakesThePartialResultNameIt) {
  qc_.fail_with(absl::DeadlineExceededError("stalled"));
  absl::StatusOr<v1::QueryResponse> r = Ask("exact", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->complete());
  ASSERT_EQ(r->sites_size(), 2);
  EXPECT_EQ(r->sites(1).site(), "qc");
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_TIMED_OUT);
  EXPECT_THAT(r->sites(1).reason(), HasSubstr("stalled"));
  bool named = false;
  for (const std::string& n : r->notes())
    named |= absl::StrContains(n, "PARTIAL: site qc");
  EXPECT_TRUE(named);
  // Exact mode releases nothing partial: fr's exact count could be
  // subtracted from a complete release.
  EXPECT_EQ(r->combined_size(), 0);
  EXPECT_EQ(r->sites(0).cells_size(), 0);
  bool nothing = false;
  for (const std::string& n : r->notes())
    nothing |= absl::StrContains(n, "releases nothing from a partial answer");
  EXPECT_TRUE(nothing);
  ASSERT_EQ(audit_.entries().size(), 1u);
  EXPECT_EQ(audit_.entries()[0].decision(), v1::AUDIT_DECISION_PARTIAL);
  EXPECT_EQ(audit_.entries()[0].released_cells_size(), 0);
}

// A site's refusal reaches the researcher without the location of the site
// policy's rule (its file name could be a path); the gateway's entry keeps it.
TEST_F(GatewayCoreTest, SiteReasonsReachTheCallerWithoutRuleLocations) {
  qc_.fail_with(
      absl::PermissionDeniedError("site qc refuses: deny: purpose not allowed "
                                  "(/etc/passerelle/site-qc.textproto:12)"));
  absl::StatusOr<v1::QueryResponse> r = Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->sites_size(), 2);
  EXPECT_THAT(r->sites(1).reason(), HasSubstr("purpose not allowed"));
  EXPECT_THAT(r->sites(1).reason(),
              ::testing::Not(HasSubstr("site-qc.textproto")));
  for (const std::string& n : r->notes()) {
    EXPECT_THAT(n, ::testing::Not(HasSubstr("site-qc.textproto")));
  }
  ASSERT_EQ(audit_.entries().size(), 1u);
  ASSERT_EQ(audit_.entries()[0].sites_size(), 2);
  EXPECT_THAT(audit_.entries()[0].sites(1).reason(),
              HasSubstr("(/etc/passerelle/site-qc.textproto:12)"));
}

TEST_F(GatewayCoreTest, NoisedPartialResultIsTheOtherSitesOnly) {
  qc_.fail_with(absl::DeadlineExceededError("stalled"));
  absl::StatusOr<v1::QueryResponse> r = Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->complete());
  EXPECT_EQ(r->combined_size(), 1);
  EXPECT_EQ(r->sites(0).cells_size(), 1);
  bool named = false;
  for (const std::string& n : r->notes())
    named |= absl::StrContains(n, "combined counts cover the other sites");
  EXPECT_TRUE(named);
}

// Exact mode decides a cohort's pattern over all of the project's sites:
// naming a subset is refused before any node is asked, and audited.
TEST_F(GatewayCoreTest, ExactModeRefusesASubsetOfSites) {
  v1::QueryRequest request;
  request.set_project("exact");
  request.set_text("condition icd10:E11*");
  request.add_sites("qc");
  absl::StatusOr<v1::QueryResponse> r =
      core_->Query(kAlice, request, clock_.Now() + absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("all of the project's sites"));
  EXPECT_EQ(fr_.calls() + qc_.calls(), 0);
  ASSERT_EQ(audit_.entries().size(), 1u);
  EXPECT_EQ(audit_.entries()[0].decision(), v1::AUDIT_DECISION_DENIED);
  EXPECT_THAT(audit_.entries()[0].reasons(0),
              HasSubstr("all of the project's sites"));
  // Every site, in any order, is the whole project.
  request.clear_sites();
  request.add_sites("qc");
  request.add_sites("fr");
  r = core_->Query(kAlice, request, clock_.Now() + absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->complete());
  // Noised mode may still ask one site.
  request.set_project("noised");
  request.clear_sites();
  request.add_sites("qc");
  EXPECT_TRUE(
      core_->Query(kAlice, request, clock_.Now() + absl::Seconds(5)).ok());
}

// `group by site` is a projection of the same table as the plain query, so
// every form releases the same cell of each site the same way.
TEST_F(GatewayCoreTest, ExactModeReleasesTheSameTableInEveryForm) {
  fr_.set_counts(0, 7);  // female 0 (< 1), male 7, other 14, unknown 21.
  qc_.set_counts(50, 1);
  std::map<std::string, std::string> first;  // site|sex -> shown
  auto shown = [](const v1::ReleasedCell& c) {
    return c.has_count()                   ? absl::StrCat(c.count())
           : c.precision().complementary() ? "suppressed"
                                           : "<k";
  };
  for (const char* text : {"condition icd10:E11* group by sex",
                           "condition icd10:E11* group by sex, site",
                           "condition icd10:E11* group by site, sex"}) {
    absl::StatusOr<v1::QueryResponse> r = Ask("exact", text);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->complete());
    std::map<std::string, std::string> seen;
    for (const v1::SiteResult& s : r->sites()) {
      ASSERT_EQ(s.cells_size(), 4) << text;
      for (const v1::ReleasedCell& c : s.cells()) {
        std::string sex;
        for (const auto& v : c.key().values()) {
          if (v.dimension() == "sex") sex = v.value();
        }
        seen[s.site() + "|" + sex] = shown(c);
      }
    }
    // By site, the combined cells are the sites' own cells.
    for (const v1::ReleasedCell& c : r->combined()) {
      std::string site, sex;
      for (const auto& v : c.key().values()) {
        if (v.dimension() == "sex") sex = v.value();
        if (v.dimension() == "site") site = v.value();
      }
      if (!site.empty()) {
        EXPECT_EQ(seen[site + "|" + sex], shown(c)) << text;
      }
    }
    EXPECT_EQ(seen["fr|female"], "<k") << text;
    EXPECT_EQ(seen["qc|female"], "suppressed") << text;
    if (first.empty()) {
      first = seen;
    } else {
      EXPECT_EQ(seen, first) << text;
    }
  }
}

TEST_F(GatewayCoreTest, RefusingAndFailingSitesAreReportedApart) {
  fr_.fail_with(absl::PermissionDeniedError("below site minimum"));
  qc_.fail_with(absl::InternalError("store corrupt"));
  absl::StatusOr<v1::QueryResponse> r = Ask("exact", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->complete());
  EXPECT_EQ(r->sites(0).status(), v1::SITE_STATUS_REFUSED);
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_FAILED);
  EXPECT_EQ(r->combined_size(), 0);
}

TEST_F(GatewayCoreTest, RetriesOnlyUnavailable) {
  qc_.fail_with(absl::UnavailableError("connection refused"));
  fr_.fail_with(absl::InternalError("boom"));
  absl::StatusOr<v1::QueryResponse> r = Ask("exact", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(qc_.calls(), FanOutOptions{}.max_attempts);
  EXPECT_EQ(fr_.calls(), 1);
}

TEST_F(GatewayCoreTest, InconsistentNodeCellsAreNotTrusted) {
  qc_.duplicate_a_cell();
  absl::StatusOr<v1::QueryResponse> r =
      Ask("exact", "condition icd10:E11* group by sex");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->complete());
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_FAILED);
  EXPECT_THAT(r->sites(1).reason(), HasSubstr("twice"));
}

TEST_F(GatewayCoreTest, DenialContactsNoNodeAndIsAudited) {
  absl::StatusOr<v1::QueryResponse> r =
      Ask("exact", "condition icd10:E11*", "spiffe://passerelle/user/mallory");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(fr_.calls() + qc_.calls(), 0);
  ASSERT_EQ(audit_.entries().size(), 1u);
  EXPECT_EQ(audit_.entries()[0].decision(), v1::AUDIT_DECISION_DENIED);
  EXPECT_FALSE(audit_.entries()[0].reasons().empty());
}

TEST_F(GatewayCoreTest, BadQueryIsInvalidArgumentAndAudited) {
  absl::StatusOr<v1::QueryResponse> r =
      Ask("exact", "condition icd10:E11* and and");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fr_.calls() + qc_.calls(), 0);
  ASSERT_EQ(audit_.entries().size(), 1u);
}

// Every entry the core appended, serialized as the log stores it, within
// the bound.
void ExpectEntriesWithinBound(const std::vector<v1::AuditEntry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) {
    v1::AuditRecord record;
    *record.mutable_gateway() = entries[i];
    EXPECT_LE(record.ByteSizeLong(), limits::kMaxAuditEntryBytes)
        << "entry " << i;
  }
}

TEST_F(GatewayCoreTest, OversizedFieldsAreRefusedAndRecordedWithinTheBound) {
  const std::string huge(3 * 1024 * 1024, 'A');
  struct Case {
    std::string name;
    std::function<void(v1::QueryRequest&)> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"project", [&](v1::QueryRequest& r) { r.set_project(huge); },
       "project is 3145728 bytes, over the limit of 128 bytes"},
      {"purpose", [&](v1::QueryRequest& r) { r.set_purpose(huge); },
       "purpose is 3145728 bytes, over the limit of 256 bytes"},
      {"text",
       [&](v1::QueryRequest& r) {
         r.set_text("condition icd10:E11* and " + huge);
       },
       "query text is 3145753 bytes, over the limit of 16384 bytes"},
      {"site", [&](v1::QueryRequest& r) { r.add_sites(huge); },
       "sites[0] is 3145728 bytes, over the limit of 128 bytes"},
      {"site with a newline",
       [&](v1::QueryRequest& r) { r.add_sites("fr\nforged line"); },
       "sites[0] contains a control character: \"fr\\nforged line\""},
      {"many sites",
       [&](v1::QueryRequest& r) {
         for (int i = 0; i < 100000; ++i) r.add_sites("fr");
       },
       "sites names 100000 sites, over the limit of 32"},
      {"ast",
       [&](v1::QueryRequest& r) {
         v1::Query q = *query::ParseQuery("condition icd10:E11*");
         for (int i = 0; i < 50000; ++i) *q.add_group_by() = v1::Dimension();
         *r.mutable_ast() = q;
       },
       "query (AST) is"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::QueryRequest request;
    request.set_project("exact");
    request.set_purpose("DUO:0000006");
    request.set_text("condition icd10:E11*");
    c.set(request);
    const size_t before = audit_.entries().size();
    absl::StatusOr<v1::QueryResponse> r =
        core_->Query(kAlice, request, clock_.Now() + absl::Seconds(5));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
    EXPECT_LE(r.status().message().size(), 512u);
    // The refusal is audited, with nothing of the request but the quoted
    // prefix in its reason.
    std::vector<v1::AuditEntry> entries = audit_.entries();
    ASSERT_EQ(entries.size(), before + 1);
    const v1::AuditEntry& e = entries.back();
    EXPECT_EQ(e.decision(), v1::AUDIT_DECISION_FAILED);
    EXPECT_TRUE(e.project().empty());
    EXPECT_TRUE(e.purpose().empty());
    EXPECT_TRUE(e.canonical_query().empty());
    EXPECT_LE(e.ByteSizeLong(), 1024u);
  }
  EXPECT_EQ(fr_.calls() + qc_.calls(), 0);
  // The budget endpoint too.
  v1::BudgetRequest budget;
  budget.set_project(huge);
  absl::StatusOr<v1::BudgetResponse> b = core_->Budget(kAlice, budget);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  ExpectEntriesWithinBound(audit_.entries());
  EXPECT_LE(audit_.entries().back().ByteSizeLong(), 1024u);
  // Alice is still answered.
  EXPECT_TRUE(Ask("exact", "condition icd10:E11*").ok());
}

TEST_F(GatewayCoreTest, DenialReasonsEchoOnlyBoundedInput) {
  // Within the limits but unknown to the policy: the reasons echo at most
  // the 128-byte id, and a caller's long identity is recorded bounded.
  const std::string project(128, 'p');
  const std::string caller =
      "spiffe://passerelle/user/" + std::string(5000, 'm');
  absl::StatusOr<v1::QueryResponse> r =
      Ask(project, "condition icd10:E11*", caller);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_LE(entries[0].caller().size(), limits::kMaxIdentityBytes);
  EXPECT_LE(entries[0].ByteSizeLong(), 4u * limits::kMaxReasonBytes);
  for (const std::string& reason : entries[0].reasons()) {
    EXPECT_LE(reason.size(), limits::kMaxReasonBytes + 40) << reason;
  }
}

TEST_F(GatewayCoreTest, BreakdownsBeyondWhatAnEntryHoldsAreRefusedFirst) {
  // 4 sexes x 111 one-year bands, combined and per site: refused before
  // any budget or node.
  absl::StatusOr<v1::QueryResponse> r =
      Ask("noised", "condition icd10:E11* group by sex, age_band(1)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("over the limit of 384"));
  EXPECT_EQ(fr_.calls() + qc_.calls(), 0);
  // Nothing reserved: the project has no account yet.
  EXPECT_TRUE(absl::IsNotFound(ledger_->Show("noised").status()));
  // The largest breakdowns allowed, with a long cohort definition: their
  // entries stay within the bound.
  std::string codes;
  for (int i = 0; codes.size() < 15000; ++i) {
    absl::StrAppend(&codes, codes.empty() ? "" : ", ", "icd10:E", 11000000 + i);
  }
  for (const std::string by :
       {"sex, age_band(10)", "site, sex, age_band(10)", "age_band(3)",
        "sex, age_band(6)", "sex, age_band(5)", "site, sex, age_band(5)"}) {
    SCOPED_TRACE(by);
    const std::string text =
        absl::StrCat("condition [", codes, "] group by ", by);
    ASSERT_LE(text.size(), limits::kMaxQueryTextBytes);
    for (const std::string project : {"exact", "noised"}) {
      absl::StatusOr<v1::QueryResponse> ok = Ask(project, text);
      ASSERT_TRUE(ok.ok()) << project << ": " << ok.status();
    }
  }
  ExpectEntriesWithinBound(audit_.entries());
  size_t largest = 0;
  for (const v1::AuditEntry& e : audit_.entries()) {
    largest = std::max(largest, e.ByteSizeLong());
  }
  RecordProperty("largest_entry_bytes", static_cast<int>(largest));
}

TEST_F(GatewayCoreTest, RefusalsBeyondTheRateAreSummarizedPerIdentity) {
  RefusalLimiterOptions options;
  options.per_second = 1;
  options.burst = 5;
  options.summary_period = absl::Minutes(1);
  RefusalLimiter refusals(options, &clock_);
  core_ = std::make_unique<GatewayCore>(
      GatewayOptions{}, [this] { return policy_; }, ledger_.get(), &audit_,
      &noise_, &ids_, std::vector<NodeClient*>{&fr_, &qc_}, &clock_, &cache_,
      &refusals);
  const std::string mallory = "spiffe://passerelle/user/mallory";
  int exhausted = 0;
  for (int i = 0; i < 1000; ++i) {
    // Unknown projects (denied) and, now and then, oversized ones (invalid).
    absl::StatusOr<v1::QueryResponse> r =
        Ask(std::string(i % 100 == 1 ? 3 << 20 : 10, 'x'),
            "condition icd10:E11*", mallory);
    ASSERT_FALSE(r.ok());
    if (r.status().code() == absl::StatusCode::kResourceExhausted) {
      ++exhausted;
      EXPECT_LE(r.status().message().size(), 512u);
    }
  }
  EXPECT_EQ(exhausted, 995);
  EXPECT_EQ(audit_.entries().size(), 5u);
  EXPECT_EQ(refusals.aggregated(), 995u);
  // Another identity is not held back by mallory's flood.
  EXPECT_TRUE(Ask("exact", "condition icd10:E11*").ok());
  EXPECT_EQ(audit_.entries().size(), 6u);
  // Once the period is over, one summary entry for all of them.
  clock_.Advance(absl::Minutes(1));
  ASSERT_TRUE(core_->FlushRefusalSummaries().ok());
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 7u);
  EXPECT_EQ(entries.back().operation(), "refusal_summary");
  EXPECT_EQ(entries.back().caller(), mallory);
  EXPECT_EQ(entries.back().decision(), v1::AUDIT_DECISION_DENIED);
  EXPECT_THAT(entries.back().reasons(0), HasSubstr("995 refused requests"));
  ExpectEntriesWithinBound(entries);
  core_.reset();
}

TEST_F(GatewayCoreTest, BudgetIsReservedBeforeFanOutAndNeverOverspent) {
  int admitted = 0;
  double charged = 0;
  for (int i = 0; i < 10; ++i) {
    // Distinct queries: a repeat would be free.
    absl::StatusOr<v1::QueryResponse> r =
        Ask("noised", absl::StrCat("condition icd10:E1", i, "*"));
    if (r.ok()) {
      admitted++;
      charged += r->epsilon_charged();
      EXPECT_GT(r->epsilon_charged(), 0);
      ASSERT_EQ(r->combined_size(), 1);
      EXPECT_EQ(r->combined(0).precision().kind(), v1::Precision::NOISED);
    } else {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
          << r.status();
    }
  }
  EXPECT_GE(admitted, 1);
  EXPECT_LT(admitted, 10);
  EXPECT_LE(charged, 6.0 + 1e-9);
  // Refused queries reached no node.
  EXPECT_EQ(fr_.calls(), admitted);
  EXPECT_EQ(qc_.calls(), admitted);
  EXPECT_EQ(audit_.entries().size(), 10u);
}

TEST_F(GatewayCoreTest, NoiseChangesReleasedCounts) {
  fr_.set_counts(1000, 0);
  qc_.set_counts(1000, 0);
  bool any_noise = false;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::QueryResponse> r =
        Ask("noised", absl::StrCat("condition icd10:E1", i, "*"));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->combined(0).has_count());
    any_noise |= r->combined(0).count() != 2000;
    EXPECT_LE(r->combined(0).interval_low(), r->combined(0).count());
    EXPECT_GE(r->combined(0).interval_high(), r->combined(0).count());
  }
  EXPECT_TRUE(any_noise) << "four noised releases all equal to the true count";
}

double ProjectSpent(GatewayCore& core, const std::string& caller = kAlice) {
  v1::BudgetRequest request;
  request.set_project("noised");
  absl::StatusOr<v1::BudgetResponse> b = core.Budget(caller, request);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? b->project_account().epsilon_spent() : -1;
}

TEST_F(GatewayCoreTest,
       RepeatReturnsTheSameAnswerAtNoCostWithoutContactingNodes) {
  absl::StatusOr<v1::QueryResponse> first =
      Ask("noised", "condition icd10:E11* group by sex");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->repeat());
  const double cost = first->epsilon_charged();
  ASSERT_GT(cost, 0);
  EXPECT_DOUBLE_EQ(ProjectSpent(*core_), cost);
  // Written differently, same cohort: the canonical form is the key.
  absl::StatusOr<v1::QueryResponse> again =
      Ask("noised", "condition  ICD10:e11*   group by sex");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->repeat());
  EXPECT_EQ(again->first_audit_index(), first->audit_index());
  EXPECT_EQ(again->epsilon_charged(), 0);
  ASSERT_EQ(again->combined_size(), first->combined_size());
  for (int i = 0; i < first->combined_size(); ++i) {
    EXPECT_EQ(again->combined(i).SerializeAsString(),
              first->combined(i).SerializeAsString());
  }
  EXPECT_NE(again->request_id(), first->request_id());
  EXPECT_EQ(fr_.calls(), 1);
  EXPECT_EQ(qc_.calls(), 1);
  EXPECT_DOUBLE_EQ(ProjectSpent(*core_), cost);
  // Audited as its own request, pointing at the first release.
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_GE(entries.size(), 2u);
  const v1::AuditEntry& repeat = entries[again->audit_index()];
  EXPECT_EQ(repeat.decision(), v1::AUDIT_DECISION_ALLOWED);
  ASSERT_TRUE(repeat.has_repeat_of_index());
  EXPECT_EQ(repeat.repeat_of_index(), first->audit_index());
  EXPECT_EQ(repeat.epsilon_charged(), 0);
  EXPECT_EQ(repeat.released_cells_size(), first->combined_size());
}

TEST_F(GatewayCoreTest, NoRepeatWhileASiteIsDownOrChangedUnseen) {
  ASSERT_TRUE(Ask("noised", "condition icd10:E11*").ok());
  // qc goes down before the gateway's periodic refresh notices.
  qc_.fail_with(absl::UnavailableError("connection refused"));
  absl::StatusOr<v1::QueryResponse> r = Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->repeat());
  EXPECT_FALSE(r->complete());
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_FAILED);
  // fr loads a new snapshot, also unseen by the table: checked at the repeat.
  qc_.fail_with(absl::OkStatus());
  core_->RefreshNodeInfo(absl::Now() + absl::Seconds(1));
  ASSERT_TRUE(Ask("noised", "condition icd10:E12*").ok());
  fr_.set_snapshot("snap-fr-2");
  absl::StatusOr<v1::QueryResponse> fresh =
      Ask("noised", "condition icd10:E12*");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_FALSE(fresh->repeat());
  EXPECT_GT(fresh->epsilon_charged(), 0);
}

TEST_F(GatewayCoreTest, NewSnapshotMeansFreshNoiseAndANewCharge) {
  ASSERT_TRUE(Ask("noised", "condition icd10:E11*").ok());
  qc_.set_snapshot("snap-qc-2");
  core_->RefreshNodeInfo(absl::Now() + absl::Seconds(1));
  EXPECT_EQ(core_->KnownSnapshot("qc"), "snap-qc-2");
  absl::StatusOr<v1::QueryResponse> r = Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->repeat());
  EXPECT_GT(r->epsilon_charged(), 0);
  EXPECT_EQ(qc_.calls(), 2);
}

TEST_F(GatewayCoreTest, OtherParametersAreNotARepeat) {
  ASSERT_TRUE(Ask("noised", "condition icd10:E11*").ok());
  absl::StatusOr<v1::QueryResponse> other_project =
      Ask("exact", "condition icd10:E11*");
  ASSERT_TRUE(other_project.ok()) << other_project.status();
  EXPECT_FALSE(other_project->repeat());
  absl::StatusOr<v1::QueryResponse> other_query =
      Ask("noised", "condition icd10:E10*");
  ASSERT_TRUE(other_query.ok()) << other_query.status();
  EXPECT_FALSE(other_query->repeat());
  EXPECT_EQ(fr_.calls(), 3);
}

TEST_F(GatewayCoreTest, PartialResultsAreNotReusedOnceTheSiteIsBack) {
  qc_.fail_with(absl::InternalError("down"));
  absl::StatusOr<v1::QueryResponse> partial =
      Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(partial.ok()) << partial.status();
  EXPECT_FALSE(partial->complete());
  qc_.fail_with(absl::OkStatus());
  core_->RefreshNodeInfo(absl::Now() + absl::Seconds(1));
  absl::StatusOr<v1::QueryResponse> full =
      Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_TRUE(full->complete());
  EXPECT_FALSE(full->repeat());
}

TEST_F(GatewayCoreTest, BudgetShowsWhatWasChargedToMembersOnly) {
  EXPECT_DOUBLE_EQ(ProjectSpent(*core_), 0);
  absl::StatusOr<v1::QueryResponse> r = Ask("noised", "condition icd10:E11*");
  ASSERT_TRUE(r.ok()) << r.status();
  v1::BudgetRequest request;
  request.set_project("noised");
  absl::StatusOr<v1::BudgetResponse> b = core_->Budget(kAlice, request);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_DOUBLE_EQ(b->project_account().epsilon_spent(), r->epsilon_charged());
  ASSERT_TRUE(b->project_account().has_epsilon_remaining());
  EXPECT_DOUBLE_EQ(b->project_account().epsilon_remaining(),
                   6 - r->epsilon_charged());
  ASSERT_EQ(b->researchers_size(), 1);
  EXPECT_EQ(b->researchers(0).researcher(), kAlice);
  EXPECT_EQ(b->next_reset_unix(), 0);

  absl::StatusOr<v1::BudgetResponse> outsider =
      core_->Budget("spiffe://passerelle/user/mallory", request);
  ASSERT_FALSE(outsider.ok());
  EXPECT_EQ(outsider.status().code(), absl::StatusCode::kPermissionDenied);
  // Every budget request (the first read, alice's, mallory's) is audited.
  int budget_entries = 0;
  for (const v1::AuditEntry& e : audit_.entries())
    budget_entries += e.operation() == "budget";
  EXPECT_EQ(budget_entries, 3);
}

// The federation-wide cap per researcher: reserved with the project's caps
// (a query over it is refused, naming it, and charges nothing) and shown by
// the budget endpoint.
TEST_F(GatewayCoreTest, FederationWideResearcherCapIsReservedAndShown) {
  std::string text = kPolicy;
  const std::string allow = "    allow {\n      domains";
  ASSERT_NE(text.find(allow), std::string::npos);
  text.replace(
      text.find(allow), allow.size(),
      "    researcher_budget { researcher_epsilon_cap: 1.5 }\n" + allow);
  auto policy = policy::Policy::LoadFromSources({{"test.textproto", text}});
  ASSERT_TRUE(policy.ok()) << policy.status();
  policy_ = *policy;
  // Two sites at 0.5: 1 per query.
  ASSERT_TRUE(Ask("noised", "condition icd10:E11*").ok());
  absl::StatusOr<v1::QueryResponse> over =
      Ask("noised", "condition icd10:E11* group by sex");
  ASSERT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over.status().message(),
              HasSubstr("across all projects (federation-wide "
                        "researcher_budget) epsilon cap 1.5 would be exceeded: "
                        "spent 1, remaining 0.5"));
  EXPECT_DOUBLE_EQ(ProjectSpent(*core_), 1);
  v1::BudgetRequest request;
  request.set_project("noised");
  absl::StatusOr<v1::BudgetResponse> b = core_->Budget(kAlice, request);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(b->federation_researchers_size(), 1);
  EXPECT_EQ(b->federation_researchers(0).researcher(), kAlice);
  EXPECT_DOUBLE_EQ(b->federation_researchers(0).epsilon_spent(), 1);
  EXPECT_DOUBLE_EQ(b->federation_researchers(0).epsilon_remaining(), 0.5);
  ASSERT_EQ(b->federation_next_reset_unix_size(), 1);
  EXPECT_EQ(b->federation_next_reset_unix(0), 0);
}

TEST_F(GatewayCoreTest, AuditFailureReleasesNothing) {
  audit_.set_failing(true);
  absl::StatusOr<v1::QueryResponse> r = Ask("exact", "condition icd10:E11*");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("nothing released"));
  // The store's message (a path) stays in the gateway's own log.
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::Not(HasSubstr("/var/lib")));
}

// A random source that always fails (the noise generator's, or the
// request ids').
class FailingRandom : public privacy::RandomSource {
 public:
  absl::Status Fill(absl::Span<uint8_t>) override {
    return absl::UnavailableError("generator failed");
  }
};

TEST_F(GatewayCoreTest, GeneratorFailuresAreCountedAndAudited) {
  FailingRandom failing;
  privacy::DirectNoiseSource broken_noise(&failing);
  RefusalCounters counters;
  GatewayOptions options;
  options.refusals = &counters;
  GatewayCore core(
      options, [this] { return policy_; }, ledger_.get(), &audit_,
      &broken_noise, &ids_, std::vector<NodeClient*>{&fr_, &qc_}, &clock_,
      &cache_);
  v1::QueryRequest request;
  request.set_project("noised");
  request.set_purpose("DUO:0000006");
  request.set_text("condition icd10:E11*");
  absl::StatusOr<v1::QueryResponse> r =
      core.Query(kAlice, request, clock_.Now() + absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(counters.Get(refusal::kNoiseFailure), 1u);
  ASSERT_EQ(audit_.entries().size(), 1u);
  EXPECT_EQ(audit_.entries()[0].decision(), v1::AUDIT_DECISION_FAILED);

  // No request id: refused before anything, counted.
  GatewayCore no_ids(
      options, [this] { return policy_; }, ledger_.get(), &audit_, &noise_,
      &failing, std::vector<NodeClient*>{&fr_, &qc_}, &clock_, &cache_);
  EXPECT_FALSE(
      no_ids.Query(kAlice, request, clock_.Now() + absl::Seconds(5)).ok());
  EXPECT_EQ(counters.Get(refusal::kRandomFailure), 1u);
  EXPECT_EQ(counters.Snapshot().size(), 2u);
}

// Whoever is not a member of a project hears the same denial whether the
// project exists or not; the audit entry keeps the precise reasons. No
// denial names where a rule is written.
TEST_F(GatewayCoreTest, NonMembersCannotTellWhichProjectsExist) {
  const std::string carol = "spiffe://passerelle/user/carol";  // In onco.
  const std::string mallory = "spiffe://passerelle/user/mallory";
  for (const std::string& caller : {carol, mallory}) {
    absl::StatusOr<v1::QueryResponse> existing =
        Ask("exact", "condition icd10:E11*", caller);
    absl::StatusOr<v1::QueryResponse> missing =
        Ask("exacto", "condition icd10:E11*", caller);
    ASSERT_FALSE(existing.ok());
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(existing.status().code(), missing.status().code());
    EXPECT_EQ(absl::StrReplaceAll(existing.status().message(),
                                  {{"\"exact\"", "\"P\""}}),
              absl::StrReplaceAll(missing.status().message(),
                                  {{"\"exacto\"", "\"P\""}}))
        << caller;
    EXPECT_THAT(existing.status().message(),
                HasSubstr("or there is no such project"));
  }
  // The log says which.
  const std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_THAT(absl::StrJoin(entries[0].reasons(), "; "),
              HasSubstr("is not a member of project exact (test.textproto:"));
  EXPECT_THAT(absl::StrJoin(entries[1].reasons(), "; "),
              HasSubstr("unknown project \"exacto\""));
  // The budget endpoint too.
  v1::BudgetRequest budget;
  budget.set_project("noised");
  absl::StatusOr<v1::BudgetResponse> b1 = core_->Budget(carol, budget);
  budget.set_project("noisy");
  absl::StatusOr<v1::BudgetResponse> b2 = core_->Budget(carol, budget);
  ASSERT_FALSE(b1.ok());
  ASSERT_FALSE(b2.ok());
  EXPECT_EQ(
      absl::StrReplaceAll(b1.status().message(), {{"\"noised\"", "\"P\""}}),
      absl::StrReplaceAll(b2.status().message(), {{"\"noisy\"", "\"P\""}}));
  // A member's denial: the reason, without the rule's file and line.
  absl::StatusOr<v1::QueryResponse> alice =
      Ask("exact", "procedure ccam:ABCD123");
  ASSERT_FALSE(alice.ok());
  EXPECT_THAT(alice.status().message(), HasSubstr("deny: "));
  EXPECT_THAT(std::string(alice.status().message()),
              ::testing::Not(HasSubstr("test.textproto")));
  EXPECT_THAT(absl::StrJoin(audit_.entries().back().reasons(), "; "),
              HasSubstr("test.textproto:"));
}

// Forwards to a NoisePool and records, for each Prewarm during a reload,
// which policy version was serving then.
class WatchedNoise : public privacy::NoiseSource {
 public:
  explicit WatchedNoise(privacy::NoisePool* pool) : pool_(pool) {}
  absl::Status Draw(const privacy::NoiseSpec& spec,
                    absl::Span<int64_t> out) override {
    return pool_->Draw(spec, out);
  }
  absl::Status Prewarm(const privacy::NoiseSpec& spec) override {
    absl::MutexLock lock(&mu_);
    if (store_ != nullptr) {
      serving_at_prewarm_[spec.Key()] = store_->Current()->version();
    }
    return pool_->Prewarm(spec);
  }
  void Retain(const std::vector<privacy::NoiseSpec>& keep) override {
    pool_->Retain(keep);
  }
  void Watch(const policy::PolicyStore* store) {
    absl::MutexLock lock(&mu_);
    store_ = store;
  }
  std::map<std::string, std::string> serving_at_prewarm() {
    absl::MutexLock lock(&mu_);
    return serving_at_prewarm_;
  }

 private:
  privacy::NoisePool* const pool_;
  absl::Mutex mu_;
  const policy::PolicyStore* store_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::map<std::string, std::string> serving_at_prewarm_ ABSL_GUARDED_BY(mu_);
};

// Every distribution an allowed decision of `p` can oblige is prewarmed in
// `pool` (asked of Decide itself, not of the enumeration).
void ExpectEveryDecisionPrewarmed(const policy::Policy& p,
                                  const privacy::NoisePool& pool,
                                  size_t capacity) {
  absl::StatusOr<v1::Query> q = query::ParseQuery("condition icd10:E11*");
  ASSERT_TRUE(q.ok());
  int noised = 0;
  for (const std::string& project : p.ProjectIds()) {
    for (const std::vector<std::string>& sites :
         std::vector<std::vector<std::string>>{{"fr"}, {"qc"}, {"fr", "qc"}}) {
      policy::AccessRequest r;
      r.identity = kAlice;
      r.project = project;
      r.purpose = "DUO:0000006";
      r.query = &*q;
      r.sites = sites;
      r.now = absl::Now();
      const v1::Decision d = p.Decide(r);
      if (!d.allow() || d.obligations().exact_mode()) continue;
      ++noised;
      absl::StatusOr<privacy::NoiseSpec> spec =
          privacy::NoiseSpecFor(DisclosureParamsFor(d.obligations()));
      ASSERT_TRUE(spec.ok()) << spec.status();
      EXPECT_TRUE(pool.Prewarmed(*spec)) << project << " " << spec->Key();
      EXPECT_EQ(pool.Ready(*spec), capacity) << project << " " << spec->Key();
    }
  }
  EXPECT_GT(noised, 0);
}

// Pools were created on a query's first draw: the first queries of every
// distribution waited for their samples (and were padded), so the answer
// time showed whether anyone had used that epsilon before.
TEST(GatewayNoisePrewarmTest, EveryDistributionIsWarmAtStartAndAfterReload) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      absl::StrCat("gateway_prewarm_test_",
                   ::testing::UnitTest::GetInstance()->random_seed());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "policy.textproto").string();
  std::ofstream(file) << kPolicy;

  privacy::testing::SeededRandomSource random(11);
  privacy::NoisePoolOptions options;
  options.capacity = 256;
  options.refill_batch = 64;
  options.sleep = [](absl::Duration) {};
  privacy::NoisePool pool(&random, options);
  WatchedNoise noise(&pool);
  absl::StatusOr<std::unique_ptr<policy::PolicyStore>> store =
      NewPrewarmedPolicyStore({file}, &noise);
  ASSERT_TRUE(store.ok()) << store.status();
  noise.Watch(store->get());
  const std::string first_version = (*store)->Current()->version();

  // Before any query.
  ASSERT_FALSE(PolicyNoiseSpecs(*(*store)->Current()).empty());
  for (const privacy::NoiseSpec& spec : PolicyNoiseSpecs(*(*store)->Current()))
    EXPECT_TRUE(pool.Prewarmed(spec)) << spec.Key();
  ExpectEveryDecisionPrewarmed(*(*store)->Current(), pool, options.capacity);

  FakeClock clock(absl::Now());
  privacy::testing::SeededRandomSource ids(3);
  FakeNode fr("fr"), qc("qc");
  MemoryAudit audit;
  auto ledger = ledger::BudgetLedger::Open((dir / "ledger").string(), &clock);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  GatewayCore core(
      GatewayOptions{}, [&store] { return (*store)->Current(); }, ledger->get(),
      &audit, &noise, &ids, {&fr, &qc}, &clock);
  auto ask = [&](const std::string& project) {
    v1::QueryRequest request;
    request.set_project(project);
    request.set_purpose("DUO:0000006");
    request.set_text("condition icd10:E11* group by sex");
    return core.Query(kAlice, request, clock.Now() + absl::Seconds(5));
  };
  ASSERT_TRUE(ask("noised").ok());
  EXPECT_EQ(pool.unprewarmed_draws(), 0);
  EXPECT_EQ(pool.slow_path_calls(), 0);

  // A reload adds a project with a new epsilon, and a site with its own.
  std::string next = kPolicy;
  next += R"pb(
    project {
      id: "new-epsilon"
      purposes: "DUO:0000006"
      member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
      valid_from: "2020-01-01"
      valid_until: "2099-12-31"
      sites: [ "fr", "qc" ]
      disclosure { mechanism: LAPLACE epsilon_per_query: 0.125 }
      budget { epsilon_cap: 6 }
    }
  )pb";
  std::ofstream(file, std::ios::trunc) << next;
  ASSERT_TRUE((*store)->Reload().ok()) << (*store)->last_error();
  ASSERT_NE((*store)->Current()->version(), first_version);
  absl::StatusOr<privacy::NoiseSpec> new_spec =
      privacy::LaplaceSpecForEpsilon(0.125);
  ASSERT_TRUE(new_spec.ok());
  // Prewarmed while the previous version still served.
  EXPECT_EQ(noise.serving_at_prewarm()[new_spec->Key()], first_version);
  ExpectEveryDecisionPrewarmed(*(*store)->Current(), pool, options.capacity);
  ASSERT_TRUE(ask("new-epsilon").ok());
  ASSERT_TRUE(ask("noised").ok());
  EXPECT_EQ(pool.unprewarmed_draws(), 0);
  EXPECT_EQ(pool.slow_path_calls(), 0);

  // A reload that drops the project: its pool goes, the others stay warm.
  std::ofstream(file, std::ios::trunc) << kPolicy;
  ASSERT_TRUE((*store)->Reload().ok());
  noise.Retain(PolicyNoiseSpecs(*(*store)->Current()));
  EXPECT_FALSE(pool.Prewarmed(*new_spec));
  ExpectEveryDecisionPrewarmed(*(*store)->Current(), pool, options.capacity);
  std::filesystem::remove_all(dir);
}

// Without `as of`, ages are counted on the date of the request (UTC): the
// gateway pins it before the canonical form, the release-cache key and the
// fan-out, so every site gets the same date and none falls back on a date of
// its own (let alone one taken from its data). A researcher's `as of` is kept.
TEST_F(GatewayCoreTest, ReferenceDateIsPinnedOnceForEverySite) {
  const std::string text = "condition icd10:E11* group by age_band(10)";
  const v1::Date today = query::UtcDate(clock_.Now());
  const std::string today_text = absl::StrFormat("%04d-%02d-%02d", today.year(),
                                                 today.month(), today.day());
  absl::StatusOr<v1::QueryResponse> first = Ask("noised", text);
  ASSERT_TRUE(first.ok()) << first.status();
  for (FakeNode* node : {&fr_, &qc_}) {
    const v1::CountRequest sent = node->last();
    ASSERT_TRUE(sent.query().has_as_of()) << node->site();
    EXPECT_EQ(sent.query().as_of().SerializeAsString(),
              today.SerializeAsString())
        << node->site();
  }
  EXPECT_EQ(first->canonical_query(),
            absl::StrCat(text, " as of ", today_text));
  EXPECT_EQ(audit_.entries().back().canonical_query(),
            first->canonical_query());
  // The same day, the same cohort: a repeat (the date is part of the key).
  absl::StatusOr<v1::QueryResponse> again = Ask("noised", text);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->repeat());
  EXPECT_EQ(fr_.calls(), 1);
  // A day later it is another query: other ages, a new charge, the new date
  // at every site.
  clock_.Advance(absl::Hours(24));
  absl::StatusOr<v1::QueryResponse> tomorrow = Ask("noised", text);
  ASSERT_TRUE(tomorrow.ok()) << tomorrow.status();
  EXPECT_FALSE(tomorrow->repeat());
  EXPECT_GT(tomorrow->epsilon_charged(), 0);
  EXPECT_NE(tomorrow->canonical_query(), first->canonical_query());
  const v1::Date next = query::UtcDate(clock_.Now());
  EXPECT_NE(next.SerializeAsString(), today.SerializeAsString());
  for (FakeNode* node : {&fr_, &qc_}) {
    EXPECT_EQ(node->last().query().as_of().SerializeAsString(),
              next.SerializeAsString())
        << node->site();
  }
  // The researcher's own date is kept, sent as given and cached under it.
  const std::string dated = absl::StrCat(text, " as of 2020-02-29");
  absl::StatusOr<v1::QueryResponse> given = Ask("noised", dated);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(given->canonical_query(), dated);
  for (FakeNode* node : {&fr_, &qc_}) {
    const v1::Date sent = node->last().query().as_of();
    EXPECT_EQ(sent.year(), 2020) << node->site();
    EXPECT_EQ(sent.month(), 2) << node->site();
    EXPECT_EQ(sent.day(), 29) << node->site();
  }
  clock_.Advance(absl::Hours(24));
  absl::StatusOr<v1::QueryResponse> given_again = Ask("noised", dated);
  ASSERT_TRUE(given_again.ok()) << given_again.status();
  EXPECT_TRUE(given_again->repeat());
}

}  // namespace
}  // namespace passerelle::gateway
