// The gateway's handling of crosswalk expansions: a node's expansion is
// checked against the query before it reaches the researcher, the audit
// entry or the release cache (gateway/expansion.h), and Explain runs the
// query's admission without budget or data.
#include "gateway/expansion.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/limits.h"
#include "common/refusal_limiter.h"
#include "gateway/gateway_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "policy/policy.h"
#include "privacy/noise.h"
#include "privacy/seeded_random_for_testing.h"
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
      criteria: [ "sex", "age", "event", "sequence", "not" ]
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
constexpr char kBob[] = "spiffe://passerelle/user/bob";
constexpr char kQuery[] =
    "condition icd10:E11* before drug atc:A10BA02 group by sex";
const std::string kMappingSet(64, 'a');

v1::Query Parsed(const std::string& text,
                 v1::CodeMatching matching = v1::CODE_MATCHING_MAPPED) {
  absl::StatusOr<v1::Query> q = query::ParseQuery(text);
  EXPECT_TRUE(q.ok()) << q.status();
  v1::Query out = q.ok() ? *q : v1::Query();
  out.set_code_matching(matching);
  return out;
}

v1::CodeExpansion Gem() {
  v1::CodeExpansion e;
  e.set_code("icd10:E11*");
  e.set_domain(v1::DOMAIN_CONDITION);
  e.set_site_vocabulary("icd9");
  e.set_crosswalk("gem-icd9cm-icd10cm");
  e.set_source_codes(48);
  e.set_rows(99);
  e.set_equivalent_rows(40);
  e.set_approximate_rows(59);
  e.set_combination_rows(3);
  for (const char* c : {"25000", "25002", "25010"})
    e.add_sample_source_codes(c);
  return e;
}

v1::CodeExpansion Dpd() {
  v1::CodeExpansion e;
  e.set_code("atc:A10BA02");
  e.set_domain(v1::DOMAIN_DRUG);
  e.set_site_vocabulary("din");
  e.set_crosswalk("hc_dpd_din_to_atc");
  e.set_source_codes(31);
  e.set_rows(31);
  e.set_narrower_rows(31);
  e.add_sample_source_codes("02099233");
  return e;
}

// What an honest Quebec node says for kQuery.
v1::SiteExpansion QcExpansion() {
  v1::SiteExpansion x;
  x.set_site("qc");
  x.set_mapping_set(kMappingSet);
  *x.add_codes() = Gem();
  *x.add_codes() = Dpd();
  x.add_unreached("condition: icd9cm");
  return x;
}

// ---------------------------------------------------------------------
// CheckSiteExpansion on its own.

TEST(CheckSiteExpansionTest, AnHonestExpansionPassesUnchanged) {
  v1::SiteExpansion x = QcExpansion();
  std::vector<std::string> notes;
  ASSERT_TRUE(CheckSiteExpansion("qc", Parsed(kQuery), &x, &notes).ok());
  EXPECT_EQ(x.SerializeAsString(), QcExpansion().SerializeAsString());
  EXPECT_TRUE(notes.empty());
  // Nothing reported is accepted too (a node that reports nothing).
  v1::SiteExpansion none;
  EXPECT_TRUE(CheckSiteExpansion("qc", Parsed(kQuery), &none, &notes).ok());
  // A direct match of the query's own vocabulary family needs no crosswalk.
  v1::SiteExpansion direct;
  direct.set_site("fr");
  v1::CodeExpansion* d = direct.add_codes();
  d->set_code("icd10:E11*");
  d->set_domain(v1::DOMAIN_CONDITION);
  d->set_site_vocabulary("cim10");
  EXPECT_TRUE(CheckSiteExpansion("fr", Parsed(kQuery), &direct, &notes).ok());
}

struct Lie {
  const char* name;
  std::function<void(v1::SiteExpansion*)> tell;
  const char* reason;  // A substring of the refusal.
};

TEST(CheckSiteExpansionTest, AnExpansionThatContradictsTheQueryIsRefused) {
  const std::vector<Lie> lies = {
      {"another site's name", [](v1::SiteExpansion* x) { x->set_site("fr"); },
       "site is not \"qc\""},
      {"another code matching",
       [](v1::SiteExpansion* x) {
         x->set_code_matching(v1::CODE_MATCHING_EQUIVALENT);
       },
       "code_matching"},
      {"a mapping set that is no hash",
       [](v1::SiteExpansion* x) { x->set_mapping_set("not-a-hash"); },
       "mapping_set"},
      {"a code the query does not hold",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_code("icd10:C50*");
       },
       "is not a code of the query"},
      {"a code in another domain",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_domain(v1::DOMAIN_DRUG);
       },
       "is not a code of the query in domain drug"},
      {"an unknown vocabulary",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_site_vocabulary("\x1b[31mred");
       },
       "is not a known vocabulary"},
      {"a direct match the vocabulary cannot make",
       [](v1::SiteExpansion* x) { x->mutable_codes(0)->clear_crosswalk(); },
       "does not match it"},
      {"a crosswalk name with control characters",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_crosswalk("gem\nforged line");
       },
       "crosswalk"},
      {"a crosswalk name over the limit",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_crosswalk(std::string(500, 'g'));
       },
       "crosswalk"},
      {"a negative count",
       [](v1::SiteExpansion* x) { x->mutable_codes(0)->set_source_codes(-1); },
       "source_codes is -1"},
      {"an implausible count",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_source_codes(int64_t{1} << 62);
       },
       "source_codes is"},
      {"rows that do not add up",
       [](v1::SiteExpansion* x) { x->mutable_codes(0)->set_rows(100); },
       "counts 100 rows, but 99 by relation"},
      {"more combination rows than rows",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(1)->set_combination_rows(32);
       },
       "in combinations"},
      {"a sample that is no code of its vocabulary",
       [](v1::SiteExpansion* x) {
         x->mutable_codes(0)->set_sample_source_codes(1, "<script>");
       },
       "sample_source_codes[1] is not a valid icd9 code"},
      {"an unreached entry of another form",
       [](v1::SiteExpansion* x) { x->set_unreached(0, "everything"); },
       "unreached[0]"},
      {"an unreached domain the query does not ask about",
       [](v1::SiteExpansion* x) { x->set_unreached(0, "procedure: cci"); },
       "names a domain the query does not ask about"},
      {"an unreached unknown vocabulary",
       [](v1::SiteExpansion* x) { x->set_unreached(0, "condition: xyz"); },
       "is not a known vocabulary"},
  };
  for (const Lie& lie : lies) {
    v1::SiteExpansion x = QcExpansion();
    lie.tell(&x);
    std::vector<std::string> notes;
    absl::Status st = CheckSiteExpansion("qc", Parsed(kQuery), &x, &notes);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << lie.name;
    EXPECT_THAT(st.message(), HasSubstr(lie.reason)) << lie.name;
    // What is quoted back is escaped and short.
    EXPECT_FALSE(absl::StrContains(st.message(), "\n")) << lie.name;
    EXPECT_FALSE(absl::StrContains(st.message(), "\x1b")) << lie.name;
    EXPECT_LT(st.message().size(), 400u) << lie.name;
  }
}

TEST(CheckSiteExpansionTest, TheQuerysCodeMatchingBindsTheRows) {
  // `codes exact`: no crosswalk may have been used.
  v1::SiteExpansion x = QcExpansion();
  x.set_code_matching(v1::CODE_MATCHING_EXACT);
  std::vector<std::string> notes;
  absl::Status st = CheckSiteExpansion(
      "qc", Parsed(kQuery, v1::CODE_MATCHING_EXACT), &x, &notes);
  EXPECT_THAT(st.message(), HasSubstr("codes exact"));
  // `codes equivalent`: no broader or approximate row.
  x = QcExpansion();
  x.set_code_matching(v1::CODE_MATCHING_EQUIVALENT);
  st = CheckSiteExpansion("qc", Parsed(kQuery, v1::CODE_MATCHING_EQUIVALENT),
                          &x, &notes);
  EXPECT_THAT(st.message(), HasSubstr("codes equivalent"));
  x.mutable_codes()->DeleteSubrange(0, 1);  // The DPD rows are narrower.
  EXPECT_TRUE(CheckSiteExpansion("qc",
                                 Parsed(kQuery, v1::CODE_MATCHING_EQUIVALENT),
                                 &x, &notes)
                  .ok());
}

TEST(CheckSiteExpansionTest, AnOversizedExpansionIsCutAndSaysSo) {
  v1::SiteExpansion x = QcExpansion();
  for (int i = 0; i < 1000; ++i) {
    v1::CodeExpansion* c = x.add_codes();
    *c = Dpd();
    for (int j = 0; j < 30; ++j) c->add_sample_source_codes("02242974");
  }
  for (int i = 0; i < 500; ++i) x.add_unreached("drug: cip13");
  const size_t sent = x.ByteSizeLong();
  std::vector<std::string> notes;
  ASSERT_TRUE(CheckSiteExpansion("qc", Parsed(kQuery), &x, &notes).ok());
  EXPECT_LE(x.codes_size(), kMaxCodeExpansions);
  EXPECT_LE(x.unreached_size(), kMaxUnreached);
  for (const v1::CodeExpansion& c : x.codes()) {
    EXPECT_LE(c.sample_source_codes_size(), kMaxExpansionSamples);
  }
  EXPECT_LE(x.ByteSizeLong(), kMaxSiteExpansionBytes);
  EXPECT_GT(sent, 4 * kMaxSiteExpansionBytes);
  // The first entries are the ones kept, and every cut is said.
  EXPECT_EQ(x.codes(0).code(), "icd10:E11*");
  const std::string all = absl::StrJoin(notes, "\n");
  EXPECT_THAT(all, HasSubstr("reported 1002 code expansions; the first 256"));
  EXPECT_THAT(all, HasSubstr("reported 501 unreached vocabularies"));
  EXPECT_THAT(all, HasSubstr("more than 20 sample codes"));
  EXPECT_THAT(all, HasSubstr("over the gateway's limit of 32768"));
  // Garbage is refused even when hidden behind many honest entries.
  x = QcExpansion();
  for (int i = 0; i < 100; ++i) *x.add_codes() = Dpd();
  x.mutable_codes(99)->set_site_vocabulary("not-a-vocabulary");
  EXPECT_FALSE(CheckSiteExpansion("qc", Parsed(kQuery), &x, &notes).ok());
}

TEST(FitExpansionsTest, AnEntryIsBroughtUnderTheLimitExpansionsFirst) {
  v1::AuditEntry entry;
  entry.set_canonical_query(std::string(50000, 'q'));
  for (const char* site : {"fr", "qc", "be"}) {
    v1::AuditSiteStatus* s = entry.add_sites();
    s->set_site(site);
    v1::SiteExpansion* x = s->mutable_expansion();
    x->set_site(site);
    for (int i = 0; i < 150; ++i) {
      v1::CodeExpansion* c = x->add_codes();
      *c = Gem();
      for (int j = 0; j < 17; ++j) c->add_sample_source_codes("25093");
    }
  }
  ASSERT_GT(entry.ByteSizeLong(), limits::kMaxAuditEntryBytes);
  ASSERT_TRUE(FitExpansions(&entry, limits::kMaxAuditEntryBytes));
  EXPECT_LE(entry.ByteSizeLong(), limits::kMaxAuditEntryBytes);
  EXPECT_EQ(entry.canonical_query().size(), 50000u);
  ASSERT_EQ(entry.reasons_size(), 1);
  EXPECT_THAT(entry.reasons(0), HasSubstr("sample codes left out"));
  // Samples went first; the sites kept comparable shares of the rest.
  for (const v1::AuditSiteStatus& s : entry.sites()) {
    EXPECT_GT(s.expansion().codes_size(), 0) << s.site();
    EXPECT_LT(s.expansion().codes_size(), 150) << s.site();
    EXPECT_EQ(s.expansion().codes(0).sample_source_codes_size(), 0);
    EXPECT_THAT(entry.reasons(0), HasSubstr(absl::StrCat(s.site(), ": ")));
  }
  // An entry within the limit is left alone.
  v1::AuditEntry small;
  *small.add_sites()->mutable_expansion() = QcExpansion();
  const std::string before = small.SerializeAsString();
  EXPECT_TRUE(FitExpansions(&small, limits::kMaxAuditEntryBytes));
  EXPECT_EQ(small.SerializeAsString(), before);
  // Without expansions there is nothing to cut.
  v1::AuditEntry huge;
  huge.set_canonical_query(std::string(70000, 'q'));
  EXPECT_FALSE(FitExpansions(&huge, limits::kMaxAuditEntryBytes));
}

// ---------------------------------------------------------------------
// Through the gateway core.

// A node that answers counts (every cell 100) and explains with a fixed
// expansion, or fails with a fixed error.
class ExpandingNode : public NodeClient {
 public:
  explicit ExpandingNode(std::string site) : site_(std::move(site)) {}
  const std::string& site() const override { return site_; }
  void Count(const v1::CountRequest& request, absl::Time,
             CountCallback done) override {
    ++counts_;
    v1::CountResponse r;
    r.set_site(site_);
    r.set_snapshot("snap-" + site_);
    r.set_audit_index(3);
    for (const v1::CellKey& key :
         query::EnumerateCells(request.query(), {site_})) {
      v1::Cell* c = r.add_cells();
      *c->mutable_key() = key;
      c->set_count(100);
    }
    *r.mutable_expansion() = expansion();
    done(r);
  }
  absl::StatusOr<v1::NodeInfo> Info(absl::Time) override {
    v1::NodeInfo info;
    info.set_site(site_);
    info.set_snapshot("snap-" + site_);
    return info;
  }
  absl::StatusOr<v1::SiteExpansion> Explain(const v1::ExplainRequest& request,
                                            absl::Time) override {
    ++explains_;
    absl::MutexLock lock(&mu_);
    last_explain_ = request;
    if (!explain_error_.ok()) return explain_error_;
    return expansion_;
  }
  void set_expansion(v1::SiteExpansion x) {
    absl::MutexLock lock(&mu_);
    expansion_ = std::move(x);
  }
  v1::SiteExpansion expansion() {
    absl::MutexLock lock(&mu_);
    return expansion_;
  }
  void fail_explain(absl::Status s) {
    absl::MutexLock lock(&mu_);
    explain_error_ = std::move(s);
  }
  v1::ExplainRequest last_explain() {
    absl::MutexLock lock(&mu_);
    return last_explain_;
  }
  int counts() const { return counts_.load(); }
  int explains() const { return explains_.load(); }

 private:
  const std::string site_;
  std::atomic<int> counts_{0};
  std::atomic<int> explains_{0};
  absl::Mutex mu_;
  v1::SiteExpansion expansion_ ABSL_GUARDED_BY(mu_);
  absl::Status explain_error_ ABSL_GUARDED_BY(mu_);
  v1::ExplainRequest last_explain_ ABSL_GUARDED_BY(mu_);
};

class MemoryAudit : public AuditSink {
 public:
  absl::StatusOr<uint64_t> Append(const v1::AuditEntry& entry) override {
    absl::MutexLock lock(&mu_);
    if (failing_) return absl::UnavailableError("disk full: /var/audit/1.log");
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

class ExpansionCoreTest : public ::testing::Test {
 protected:
  ExpansionCoreTest()
      : clock_(absl::Now()),
        random_(11),
        ids_(5),
        noise_(&random_),
        fr_("fr"),
        qc_("qc") {}

  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat(
               "gateway_expansion_test_",
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
    v1::SiteExpansion fr;
    fr.set_site("fr");
    fr.set_mapping_set(std::string(64, 'b'));
    fr_.set_expansion(fr);
    qc_.set_expansion(QcExpansion());
    MakeCore(nullptr);
  }
  void MakeCore(RefusalLimiter* limiter) {
    core_ = std::make_unique<GatewayCore>(
        GatewayOptions{}, [this] { return policy_; }, ledger_.get(), &audit_,
        &noise_, &ids_, std::vector<NodeClient*>{&fr_, &qc_}, &clock_, &cache_,
        limiter);
  }
  void TearDown() override {
    core_.reset();
    ledger_.reset();
    std::filesystem::remove_all(dir_);
  }

  v1::QueryRequest Request(const std::string& project,
                           const std::string& text = kQuery) {
    v1::QueryRequest request;
    request.set_project(project);
    request.set_purpose("DUO:0000006");
    request.set_text(text);
    return request;
  }
  absl::StatusOr<v1::QueryResponse> Ask(const std::string& project,
                                        const std::string& text = kQuery) {
    return core_->Query(kAlice, Request(project, text),
                        clock_.Now() + absl::Seconds(5));
  }
  absl::StatusOr<v1::ExplainResponse> Explain(
      const std::string& project, const std::string& caller = kAlice) {
    return core_->Explain(caller, Request(project),
                          clock_.Now() + absl::Seconds(5));
  }
  int64_t EpsilonSpentMicros(const std::string& project) {
    absl::StatusOr<ledger::BudgetView> view = ledger_->Show(project);
    if (absl::IsNotFound(view.status())) return 0;  // Nothing reserved.
    EXPECT_TRUE(view.ok()) << view.status();
    return view.ok() ? view->project_account.epsilon_spent_micros : -1;
  }

  std::filesystem::path dir_;
  FakeClock clock_;
  privacy::testing::SeededRandomSource random_;
  privacy::testing::SeededRandomSource ids_;
  privacy::DirectNoiseSource noise_;
  ExpandingNode fr_;
  ExpandingNode qc_;
  MemoryAudit audit_;
  MemoryReleaseCache cache_;
  std::unique_ptr<ledger::BudgetLedger> ledger_;
  std::shared_ptr<const policy::Policy> policy_;
  std::unique_ptr<GatewayCore> core_;
};

TEST_F(ExpansionCoreTest, EachSitesExpansionReachesResponseAndAuditEntry) {
  absl::StatusOr<v1::QueryResponse> r = Ask("noised");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->complete());
  ASSERT_EQ(r->sites_size(), 2);
  EXPECT_EQ(r->sites(1).site(), "qc");
  EXPECT_EQ(r->sites(1).expansion().SerializeAsString(),
            QcExpansion().SerializeAsString());
  EXPECT_EQ(r->sites(0).expansion().mapping_set(), std::string(64, 'b'));
  // An unreached vocabulary is said in the notes too, for a program that
  // reads only the notes.
  EXPECT_THAT(absl::StrJoin(r->notes(), "\n"),
              HasSubstr("UNREACHED: at site qc, condition: icd9cm is not "
                        "reached"));
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_EQ(entries[0].sites_size(), 2);
  EXPECT_EQ(entries[0].sites(1).expansion().SerializeAsString(),
            QcExpansion().SerializeAsString());
  EXPECT_EQ(entries[0].sites(0).expansion().site(), "fr");
}

TEST_F(ExpansionCoreTest, ARepeatReturnsAndRecordsTheStoredExpansions) {
  absl::StatusOr<v1::QueryResponse> first = Ask("noised");
  ASSERT_TRUE(first.ok()) << first.status();
  // The node's tables change their story; the repeat is the stored release.
  v1::SiteExpansion other = QcExpansion();
  other.mutable_codes(0)->set_source_codes(1);
  qc_.set_expansion(other);
  absl::StatusOr<v1::QueryResponse> again = Ask("noised");
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE(again->repeat());
  EXPECT_EQ(qc_.counts(), 1);
  EXPECT_EQ(again->sites(1).expansion().SerializeAsString(),
            first->sites(1).expansion().SerializeAsString());
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].sites(1).expansion().SerializeAsString(),
            QcExpansion().SerializeAsString());
}

TEST_F(ExpansionCoreTest, ExactModeCarriesTheExpansions) {
  absl::StatusOr<v1::QueryResponse> r = Ask("exact");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->complete());
  EXPECT_EQ(r->sites(1).expansion().codes_size(), 2);
  EXPECT_EQ(audit_.entries()[0].sites(1).expansion().codes_size(), 2);
}

TEST_F(ExpansionCoreTest, ALyingSiteIsTreatedAsFailed) {
  v1::SiteExpansion lie = QcExpansion();
  lie.set_site("fr");
  qc_.set_expansion(lie);
  absl::StatusOr<v1::QueryResponse> r = Ask("exact");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->complete());
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_FAILED);
  EXPECT_THAT(r->sites(1).reason(), HasSubstr("invalid expansion: site"));
  EXPECT_EQ(r->sites(1).cells_size(), 0);
  EXPECT_EQ(r->sites(1).expansion().ByteSizeLong(), 0u);
  EXPECT_THAT(absl::StrJoin(r->notes(), "\n"), HasSubstr("PARTIAL: site qc"));
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].decision(), v1::AUDIT_DECISION_PARTIAL);
  EXPECT_EQ(entries[0].sites(1).status(), "failed");
  EXPECT_EQ(entries[0].sites(1).expansion().ByteSizeLong(), 0u);
  // The honest site is untouched.
  EXPECT_EQ(r->sites(0).status(), v1::SITE_STATUS_OK);
}

TEST_F(ExpansionCoreTest, AnOversizedExpansionIsCutEverywhereAndNoted) {
  v1::SiteExpansion big = QcExpansion();
  for (int i = 0; i < 400; ++i) {
    v1::CodeExpansion* c = big.add_codes();
    *c = Gem();
    for (int j = 0; j < 30; ++j) c->add_sample_source_codes("25093");
  }
  qc_.set_expansion(big);
  fr_.set_expansion(big);  // Lies about its name: fails.
  absl::StatusOr<v1::QueryResponse> r = Ask("noised");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sites(0).status(), v1::SITE_STATUS_FAILED);
  ASSERT_EQ(r->sites(1).status(), v1::SITE_STATUS_OK);
  EXPECT_LE(r->sites(1).expansion().ByteSizeLong(), kMaxSiteExpansionBytes);
  EXPECT_GT(r->sites(1).expansion().codes_size(), 0);
  EXPECT_THAT(absl::StrJoin(r->notes(), "\n"),
              HasSubstr("EXPANSION: site qc reported 402 code expansions"));
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_LE(entries[0].ByteSizeLong(), limits::kMaxAuditEntryBytes);
}

TEST_F(ExpansionCoreTest, ExplainChargesNothingReadsNothingAndIsAudited) {
  const size_t charges_before = ledger_->ListCharges("")->size();
  absl::StatusOr<v1::ExplainResponse> r = Explain("noised");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fr_.counts() + qc_.counts(), 0);
  EXPECT_EQ(fr_.explains(), 1);
  EXPECT_EQ(qc_.explains(), 1);
  // The nodes were asked for the query the gateway parsed, for the project.
  const v1::ExplainRequest asked = qc_.last_explain();
  EXPECT_EQ(asked.request_id(), r->request_id());
  EXPECT_EQ(asked.project(), "noised");
  EXPECT_EQ(asked.query().where().SerializeAsString(),
            Parsed(kQuery).where().SerializeAsString());
  EXPECT_EQ(ledger_->ListCharges("")->size(), charges_before);
  EXPECT_EQ(EpsilonSpentMicros("noised"), 0);
  ASSERT_EQ(r->sites_size(), 2);
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_OK);
  EXPECT_EQ(r->sites(1).expansion().SerializeAsString(),
            QcExpansion().SerializeAsString());
  EXPECT_FALSE(r->canonical_query().empty());
  EXPECT_FALSE(r->policy_version().empty());
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(r->audit_index(), 0u);
  EXPECT_EQ(entries[0].operation(), "explain");
  EXPECT_EQ(entries[0].decision(), v1::AUDIT_DECISION_ALLOWED);
  EXPECT_EQ(entries[0].epsilon_charged(), 0);
  EXPECT_EQ(entries[0].rho_charged(), 0);
  EXPECT_EQ(entries[0].released_cells_size(), 0);
  EXPECT_EQ(entries[0].canonical_query(), r->canonical_query());
  EXPECT_EQ(entries[0].sites(1).expansion().SerializeAsString(),
            QcExpansion().SerializeAsString());
  // Explaining again is free again, and a query after it is charged as new.
  ASSERT_TRUE(Explain("noised").ok());
  EXPECT_EQ(EpsilonSpentMicros("noised"), 0);
  ASSERT_TRUE(Ask("noised").ok());
  EXPECT_GT(EpsilonSpentMicros("noised"), 0);
}

TEST_F(ExpansionCoreTest, ExplainIsRefusedAsAQueryIs) {
  absl::StatusOr<v1::ExplainResponse> r = Explain("noised", kBob);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  // A vocabulary the policy does not allow, and a purpose not declared.
  v1::QueryRequest bad = Request("noised", "condition icd9:250*");
  EXPECT_EQ(core_->Explain(kAlice, bad, clock_.Now() + absl::Seconds(5))
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  v1::QueryRequest no_purpose = Request("noised");
  no_purpose.set_purpose("DUO:0000042");
  EXPECT_EQ(core_->Explain(kAlice, no_purpose, clock_.Now() + absl::Seconds(5))
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  v1::QueryRequest garbage = Request("noised", "condition icd10:(");
  EXPECT_EQ(core_->Explain(kAlice, garbage, clock_.Now() + absl::Seconds(5))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fr_.explains() + qc_.explains(), 0);
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 4u);
  for (const v1::AuditEntry& e : entries) {
    EXPECT_EQ(e.operation(), "explain");
    EXPECT_NE(e.decision(), v1::AUDIT_DECISION_ALLOWED);
  }
  EXPECT_EQ(entries[0].decision(), v1::AUDIT_DECISION_DENIED);
  EXPECT_EQ(entries[0].caller(), kBob);
}

TEST_F(ExpansionCoreTest, ExplainRefusalsAreRateLimitedLikeQueries) {
  RefusalLimiterOptions options;
  options.burst = 2;
  options.per_second = 0.001;
  RefusalLimiter limiter(options, &clock_);
  MakeCore(&limiter);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(Explain("noised", kBob).status().code(),
              absl::StatusCode::kPermissionDenied);
  }
  // The third refusal is counted in a summary, not recorded on its own.
  absl::StatusOr<v1::ExplainResponse> r = Explain("noised", kBob);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(audit_.entries().size(), 2u);
  ASSERT_TRUE(core_->FlushRefusalSummaries(/*all=*/true).ok());
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[2].operation(), "refusal_summary");
}

TEST_F(ExpansionCoreTest, ExplainReportsEachSitesFailure) {
  qc_.fail_explain(absl::PermissionDeniedError(
      "deny: project noised not allowed at this site "
      "(/etc/passerelle/qc.textproto:12)"));
  absl::StatusOr<v1::ExplainResponse> r = Explain("noised");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sites(0).status(), v1::SITE_STATUS_OK);
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_REFUSED);
  EXPECT_THAT(r->sites(1).reason(),
              HasSubstr("project noised not allowed at this site"));
  // The caller does not see where the site's rules are written; the entry
  // keeps it.
  EXPECT_THAT(r->sites(1).reason(), ::testing::Not(HasSubstr("/etc/")));
  std::vector<v1::AuditEntry> entries = audit_.entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].decision(), v1::AUDIT_DECISION_PARTIAL);
  EXPECT_EQ(entries[0].sites(1).status(), "refused");
  EXPECT_THAT(entries[0].sites(1).reason(), HasSubstr("qc.textproto:12"));
  // A lying explanation fails its site, as for a query.
  qc_.fail_explain(absl::OkStatus());
  v1::SiteExpansion lie = QcExpansion();
  lie.mutable_codes(0)->set_code("icd10:C50*");
  qc_.set_expansion(lie);
  r = Explain("noised");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sites(1).status(), v1::SITE_STATUS_FAILED);
  EXPECT_THAT(r->sites(1).reason(), HasSubstr("is not a code of the query"));
  EXPECT_EQ(r->sites(1).expansion().ByteSizeLong(), 0u);
}

TEST_F(ExpansionCoreTest, ExplainReleasesNothingWhenTheAuditFails) {
  audit_.set_failing(true);
  absl::StatusOr<v1::ExplainResponse> r = Explain("noised");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("/var/audit")));
}

}  // namespace
}  // namespace passerelle::gateway
