// Crash safety across real processes: the gateway and the nodes are killed
// with SIGKILL at named points (common/crash_point.h, PASSERELLE_CRASH_AT)
// of a data load, a budget reservation, an audit append and a query, and a
// load is also killed at arbitrary moments. After each crash the process is
// restarted without the variable and the test checks that
//   (a) the node serves the previous snapshot or the new one, complete
//       (counts equal one of the two exact expected sets, and the version
//       the node reports goes with them);
//   (b) the ledger's total equals the sum of the charges in the gateway's
//       audit log (after the gateway's start-up recovery);
//   (c) `passerelle audit verify` passes on every log (gateway, fr, qc)
//       with public keys derived independently from the private keys;
//   (d) every audit entry is complete and every charge has exactly one
//       audit entry (none half-recorded);
//   (e) the federation answers a fresh query correctly.
// and `audit crosscheck` of each site against the gateway finds no mismatch
// (a node's answer the gateway never released is a note naming the request
// the gateway recorded as failed or interrupted; see VerifyLog). The gateway is
// also killed inside its start-up recovery and, from outside, with queries in
// flight. Run: ctest -R CrashSafety (about 55 s for the five tests on 2 cores).
#include <stdlib.h>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <regex>
#include <thread>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "audit/log.h"
#include "audit/records.h"
#include "common/clock.h"
#include "common/crash_point.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

constexpr char kCheckQuery[] = "condition icd10:E11* group by sex";
constexpr int kKilled = 128 + SIGKILL;

// PASSERELLE_CRASH_AT for the children started in this scope only (spawn
// copies the environment at start).
class ScopedCrashAt {
 public:
  explicit ScopedCrashAt(const std::string& spec) {
    setenv("PASSERELLE_CRASH_AT", spec.c_str(), 1);
  }
  ~ScopedCrashAt() { unsetenv("PASSERELLE_CRASH_AT"); }
};

// Skips a test that needs the named crash points: a build configured with
// -DPASSERELLE_CRASH_POINTS=OFF (production) has none (common/crash_point.h).
#define SKIP_UNLESS_CRASH_POINTS()                                           \
  if (!crash_point::kCompiledIn)                                             \
  GTEST_SKIP() << "crash points are compiled out of this build "             \
                  "(PASSERELLE_CRASH_POINTS=OFF); configure the test build " \
                  "with -DPASSERELLE_CRASH_POINTS=ON to run this test"

std::string Marker(const std::string& point) {
  return absl::StrCat("passerelle: crash point ", point);
}

// TestPolicy with room for many charged queries.
std::string Policy() {
  return absl::StrReplaceAll(
      TestPolicy(),
      {{"budget { epsilon_cap: 5 researcher_epsilon_cap: 5 }",
        "budget { epsilon_cap: 1000 researcher_epsilon_cap: 1000 }"}});
}

class CrashSafetyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    fed_ = std::make_unique<Federation>(dir_->path());
    data_[0] = fed_->Path("data/fr-v1");
    data_[1] = fed_->Path("data/fr-v2");
    absl::Status s = Prepare();
    ASSERT_TRUE(s.ok()) << s;
  }
  void TearDown() override {
    fed_.reset();
    dir_.reset();
  }

  absl::Status Generate(const std::string& site, int patients, int seed,
                        const std::string& out) {
    absl::StatusOr<CommandResult> gen = RunCommand(
        {PasserelleBin(), "generate", "--patients", absl::StrCat(patients),
         "--seed", absl::StrCat(seed), "--site", site, "--out", out});
    if (!gen.ok()) return gen.status();
    if (gen->exit_code != 0) {
      return absl::InternalError("generate failed: " + gen->err);
    }
    return absl::OkStatus();
  }

  absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    // Two versions of fr's data, with different counts.
    PASSERELLE_RETURN_IF_ERROR(Generate("fr", 1500, 21, data_[0]));
    PASSERELLE_RETURN_IF_ERROR(Generate("fr", 1800, 31, data_[1]));
    PASSERELLE_RETURN_IF_ERROR(Generate("qc", 1500, 22, fed_->Path("data/qc")));
    // The exact counts of each: version 1 through a scratch store.
    const absl::Time t0 = absl::Now();
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("scratch", data_[1]));
    load_time_ = absl::Now() - t0;
    PASSERELLE_ASSIGN_OR_RETURN(counts_[1],
                                fed_->LocalCounts("scratch", kCheckQuery));
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("fr", data_[0]));
    PASSERELLE_ASSIGN_OR_RETURN(counts_[0],
                                fed_->LocalCounts("fr", kCheckQuery));
    if (counts_[0] == counts_[1] || counts_[0].empty()) {
      return absl::InternalError("the two data versions must count apart");
    }
    PASSERELLE_RETURN_IF_ERROR(fed_->LoadSite("qc", fed_->Path("data/qc")));
    PASSERELLE_ASSIGN_OR_RETURN(qc_counts_,
                                fed_->LocalCounts("qc", kCheckQuery));
    PASSERELLE_ASSIGN_OR_RETURN(fr_version_, StoreVersion("fr"));
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("fr"));
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("qc"));
    PASSERELLE_RETURN_IF_ERROR(fed_->StartGateway(Policy()));
    // The daemons created their audit keys: the auditor's copies of the
    // public keys, derived from the private keys (not from the stores).
    for (const std::string who : {"gateway", "fr", "qc"}) {
      absl::StatusOr<CommandResult> r = RunCommand(
          {"/usr/bin/openssl", "pkey", "-in", fed_->Path(who + "/audit.key"),
           "-pubout", "-out", fed_->Path(who + "/audit.pub")});
      if (!r.ok()) return r.status();
      if (r->exit_code != 0) {
        return absl::InternalError("openssl pkey failed: " + r->err);
      }
    }
    return absl::OkStatus();
  }

  // The snapshot version `passerelle node info` reads from a stopped
  // node's store.
  absl::StatusOr<std::string> StoreVersion(const std::string& site) {
    absl::StatusOr<CommandResult> r =
        RunCommand({PasserelleBin(), "node", "info", "--store",
                    fed_->Path(site + "/store")});
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError("node info failed: " + r->err);
    }
    std::smatch m;
    static const std::regex re("snapshot: +([^\\s]+)");
    if (!std::regex_search(r->out, m, re)) {
      return absl::InternalError("no snapshot in: " + r->out);
    }
    return m[1].str();
  }

  // A charged query that nobody asked before (no repeat discount).
  std::string FreshNoisedQuery() {
    return absl::StrCat("drug atc:A", 10 + next_query_++, "*");
  }

  // Restarts the gateway (its start-up recovery runs), asks a fresh query
  // and the check query, stops it and checks the stores: (b) to (e).
  void CheckAfterRestart(const std::string& label) {
    SCOPED_TRACE(label);
    absl::Status started = fed_->StartGateway(Policy());
    ASSERT_TRUE(started.ok()) << started;
    recovered_ = 0;
    for (absl::string_view line : absl::StrSplit(fed_->gateway().Log(), '\n')) {
      if (absl::StrContains(line, "recovery: budget charge")) ++recovered_;
    }
    // After a kill at an arbitrary moment, any interrupted request may have
    // reached the nodes (see VerifyLog).
    if (arbitrary_kill_) {
      unreferenced_slack_ += recovered_;
      arbitrary_kill_ = false;
    }
    // (e) A fresh charged query is answered in full...
    v1::QueryResponse fresh;
    grpc::Status st = fed_->Query("noised", FreshNoisedQuery(), &fresh);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_TRUE(fresh.complete());
    EXPECT_GT(fresh.epsilon_charged(), 0);
    // ... and the exact counts are the expected ones, site by site, with
    // fr at the version its store holds.
    v1::QueryResponse exact;
    st = fed_->Query("exact", kCheckQuery, &exact);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_TRUE(exact.complete());
    for (const v1::SiteResult& s : exact.sites()) {
      const std::vector<int64_t>& want =
          s.site() == "fr" ? counts_[fr_data_] : qc_counts_;
      ASSERT_EQ(s.cells_size(), static_cast<int>(want.size())) << s.site();
      int released = 0;
      for (int i = 0; i < s.cells_size(); ++i) {
        // Exact mode releases true counts; a suppressed cell has none.
        if (!s.cells(i).has_count()) continue;
        ++released;
        EXPECT_EQ(s.cells(i).count(), want[i]) << s.site() << " cell " << i;
      }
      EXPECT_GE(released, 2) << s.site();
      if (s.site() == "fr") {
        EXPECT_EQ(s.snapshot(), fr_version_);
      }
    }
    fed_->StopGateway();
    CheckLedgerAgainstAudit();
    for (const std::string who : {"gateway", "fr", "qc"}) VerifyLog(who);
  }

  // (b) and (d) on the gateway's stores (the gateway is stopped).
  void CheckLedgerAgainstAudit() {
    auto ledger =
        ledger::BudgetLedger::Open(fed_->Path("gateway/ledger"), Clock::Real());
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    auto charges = (*ledger)->ListCharges("");
    ASSERT_TRUE(charges.ok()) << charges.status();
    auto totals = (*ledger)->SumCharges("");
    ASSERT_TRUE(totals.ok()) << totals.status();
    ledger->reset();

    audit::AuditLogOptions options;  // Read-only.
    auto log =
        audit::AuditLog::OpenDirectory(fed_->Path("gateway/audit"), options);
    ASSERT_TRUE(log.ok()) << log.status();
    double epsilon = 0, rho = 0;
    using Key = std::tuple<int64_t, std::string, std::string>;
    std::map<Key, int> entries_by_key;  // Entries that may hold a charge.
    std::map<Key, double> epsilon_by_key;
    for (uint64_t i = 0; i < (*log)->Size(); ++i) {
      auto bytes = (*log)->Get(i);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      auto record = audit::DecodeRecord(*bytes);
      ASSERT_TRUE(record.ok()) << "entry " << i << ": " << record.status();
      ASSERT_TRUE(record->has_gateway()) << "entry " << i;
      const v1::AuditEntry& e = record->gateway();
      // Complete: who, when, what was decided.
      EXPECT_GT(e.time_unix_micros(), 0) << "entry " << i;
      EXPECT_FALSE(e.request_id().empty()) << "entry " << i;
      EXPECT_FALSE(e.caller().empty()) << "entry " << i;
      EXPECT_FALSE(e.project().empty()) << "entry " << i;
      EXPECT_NE(e.decision(), v1::AUDIT_DECISION_UNSPECIFIED) << "entry " << i;
      epsilon += e.epsilon_charged();
      rho += e.rho_charged();
      const bool may_charge =
          (e.operation().empty() || e.operation() == "query") &&
          !e.has_repeat_of_index() && e.decision() != v1::AUDIT_DECISION_DENIED;
      const Key key(e.time_unix_micros(), e.project(), e.caller());
      if (may_charge) {
        ++entries_by_key[key];
        epsilon_by_key[key] += e.epsilon_charged();
      } else {
        EXPECT_EQ(e.epsilon_charged(), 0) << "entry " << i;
      }
    }
    // (b) The sums agree.
    EXPECT_NEAR(epsilon, totals->epsilon_micros * 1e-6, 1e-6);
    EXPECT_NEAR(rho, totals->rho_micros * 1e-6, 1e-6);
    EXPECT_GT(totals->charges, 0);
    // (d) Every charge has exactly one entry (same request start, project
    // and caller), with its cost; no entry claims a charge the ledger lacks.
    std::map<Key, int> charges_by_key;
    std::map<Key, double> charged_by_key;
    for (const ledger::Charge& c : *charges) {
      if (c.refunded) continue;
      const Key key(absl::ToUnixMicros(c.time), c.project, c.researcher);
      ++charges_by_key[key];
      charged_by_key[key] += c.epsilon_micros * 1e-6;
    }
    for (const auto& [key, n] : charges_by_key) {
      EXPECT_EQ(entries_by_key[key], n)
          << "charge at " << std::get<0>(key) << " by " << std::get<2>(key)
          << " is not recorded exactly once";
      EXPECT_NEAR(epsilon_by_key[key], charged_by_key[key], 1e-6);
    }
    for (const auto& [key, eps] : epsilon_by_key) {
      if (charges_by_key.count(key) == 0) {
        EXPECT_EQ(eps, 0) << "an entry at " << std::get<0>(key)
                          << " claims a charge the ledger lacks";
      }
    }
  }

  // (c) and (d) on one log: `audit verify` with the independent key, and
  // every entry decodes, whole.
  void VerifyLog(const std::string& who) {
    SCOPED_TRACE(who);
    absl::StatusOr<CommandResult> r =
        RunCommand({PasserelleBin(), "audit", "verify", "--store",
                    fed_->Path(who + "/audit"), "--public-key",
                    fed_->Path(who + "/audit.pub")});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    EXPECT_TRUE(absl::StrContains(r->out, "\nOK\n")) << r->out;
    if (who == "gateway") return;  // Checked entry by entry above.
    // The gateway's entries against the site's own log. No mismatch at all;
    // the only notes allowed are requests the node answered (and audited)
    // whose answer the gateway never released, because the gateway died
    // after the fan-out and before its audit entry (its start-up recovery
    // recorded the request under its id, from the budget charge), or the
    // node died after its audit entry and before its reply (the gateway
    // recorded the site as failed). Exactly those requests are notes.
    absl::StatusOr<CommandResult> x =
        RunCommand({PasserelleBin(), "audit", "crosscheck", "--store",
                    fed_->Path("gateway/audit"), "--node-store",
                    fed_->Path(who + "/audit"), "--site", who});
    ASSERT_TRUE(x.ok()) << x.status();
    int accounted = 0;
    for (absl::string_view line : absl::StrSplit(x->out, '\n')) {
      EXPECT_FALSE(absl::StartsWith(line, "gateway ")) << line;
      if (!absl::StartsWith(line, "note: gateway ")) continue;
      EXPECT_TRUE(absl::StrContains(line, "nothing of this site released"))
          << line;
      ++accounted;
    }
    EXPECT_GE(accounted, unreferenced_[who]) << x->out << x->err;
    EXPECT_LE(accounted, unreferenced_[who] + unreferenced_slack_)
        << x->out << x->err;
    EXPECT_EQ(x->exit_code, 0) << x->out << x->err;
    audit::AuditLogOptions options;
    auto log =
        audit::AuditLog::OpenDirectory(fed_->Path(who + "/audit"), options);
    ASSERT_TRUE(log.ok()) << log.status();
    for (uint64_t i = 0; i < (*log)->Size(); ++i) {
      auto bytes = (*log)->Get(i);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      auto record = audit::DecodeRecord(*bytes);
      ASSERT_TRUE(record.ok()) << "entry " << i;
      ASSERT_TRUE(record->has_node()) << "entry " << i;
      EXPECT_FALSE(record->node().request_id().empty()) << "entry " << i;
      EXPECT_EQ(record->node().site(), who) << "entry " << i;
      EXPECT_NE(record->node().decision(), v1::AUDIT_DECISION_UNSPECIFIED);
    }
  }

  // (a) after a load of data_[target] into fr's stopped store was killed:
  // the store holds the previous snapshot or the new one, whole.
  // `expect_new`: nullopt when either is right.
  void CheckLoadOutcome(int target, std::optional<bool> expect_new) {
    absl::StatusOr<std::vector<int64_t>> counts =
        fed_->LocalCounts("fr", kCheckQuery);
    ASSERT_TRUE(counts.ok()) << counts.status();
    absl::StatusOr<std::string> version = StoreVersion("fr");
    ASSERT_TRUE(version.ok()) << version.status();
    const bool is_new = *counts == counts_[target];
    if (!is_new) {
      EXPECT_EQ(*counts, counts_[1 - target]) << "neither snapshot";
      EXPECT_EQ(*version, fr_version_) << "old counts under a new version";
    } else {
      EXPECT_NE(*version, fr_version_) << "new counts under the old version";
      fr_version_ = *version;
      fr_data_ = target;
    }
    if (expect_new.has_value()) {
      EXPECT_EQ(is_new, *expect_new);
    }
  }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Federation> fed_;
  std::string data_[2];
  std::vector<int64_t> counts_[2];
  std::vector<int64_t> qc_counts_;
  int fr_data_ = 0;  // Which of data_ fr serves.
  std::string fr_version_;
  absl::Duration load_time_;
  int next_query_ = 0;
  // Node entries the gateway's log cannot reference (see VerifyLog).
  std::map<std::string, int> unreferenced_;
  int unreferenced_slack_ = 0;   // At most this many more, at each site.
  bool arbitrary_kill_ = false;  // Set before a restart after such a kill.
  int recovered_ = 0;  // Charges the last restart's recovery recorded.
};

// The gateway killed at each point of a charged query. Before the
// reservation is durable nothing is charged; after it and before the audit
// entry the charge has no entry until the restarted gateway's recovery
// records it ("interrupted"); after the audit entry the request is whole
// (only the reply, or the repeat discount, is lost).
TEST_F(CrashSafetyTest, GatewayKilledDuringAQuery) {
  SKIP_UNLESS_CRASH_POINTS();
  struct Point {
    std::string name;
    bool charge_unrecorded;  // A durable charge without an entry: recovery.
    bool nodes_answered;     // The nodes answered before the gateway died.
  };
  const std::vector<Point> points = {
      {"ledger.reserve.before_commit", false, false},
      {"ledger.reserve.after_commit", true, false},
      {"gateway.query.after_reserve", true, false},
      {"gateway.query.after_fanout", true, true},
      {"gateway.query.before_audit", true, true},
      {"audit.append.before_commit", true, true},
      {"audit.append.after_commit", false, false},
      {"gateway.query.after_audit", false, false},
      {"gateway.query.before_reply", false, false}};
  for (const Point& p : points) {
    SCOPED_TRACE(p.name);
    {
      ScopedCrashAt crash(p.name);
      absl::Status started = fed_->StartGateway(Policy());
      ASSERT_TRUE(started.ok()) << started;
    }
    v1::QueryResponse r;
    grpc::Status st = fed_->Query("noised", FreshNoisedQuery(), &r);
    EXPECT_FALSE(st.ok()) << "answered although killed at " << p.name;
    EXPECT_EQ(fed_->gateway().Wait(), kKilled);
    const std::string log = fed_->gateway().Log();
    EXPECT_TRUE(absl::StrContains(log, Marker(p.name))) << log;
    if (p.nodes_answered) {
      ++unreferenced_["fr"];
      ++unreferenced_["qc"];
    }
    CheckAfterRestart(p.name);
    // The restarted gateway's recovery recorded the charge, or had nothing
    // to do.
    const std::string restarted = ReadFile(fed_->Path("gateway/gateway.log"));
    EXPECT_EQ(absl::StrContains(restarted, "recovery: budget charge"),
              p.charge_unrecorded)
        << restarted;
  }
}

// Killed again while recovering (in recovery's own audit append, before and
// after the write): recovery is idempotent, the next start completes it.
TEST_F(CrashSafetyTest, GatewayKilledDuringRecovery) {
  SKIP_UNLESS_CRASH_POINTS();
  for (const std::string again :
       {"audit.append.before_commit", "audit.append.after_commit"}) {
    SCOPED_TRACE(again);
    {
      ScopedCrashAt crash("gateway.query.after_reserve");
      absl::Status started = fed_->StartGateway(Policy());
      ASSERT_TRUE(started.ok()) << started;
    }
    v1::QueryResponse r;
    EXPECT_FALSE(fed_->Query("noised", FreshNoisedQuery(), &r).ok());
    EXPECT_EQ(fed_->gateway().Wait(), kKilled);
    {
      ScopedCrashAt crash(again);
      absl::Status started = fed_->StartGateway(Policy());
      EXPECT_FALSE(started.ok()) << "served although killed in recovery";
    }
    EXPECT_EQ(fed_->gateway().Wait(), kKilled);
    EXPECT_TRUE(absl::StrContains(fed_->gateway().Log(), Marker(again)));
    CheckAfterRestart(again);
    // Written before the kill: nothing left to record.
    EXPECT_EQ(recovered_, again == "audit.append.before_commit" ? 1 : 0);
  }
}

// SIGKILL from outside while queries are in flight from two clients, at
// whatever point each has reached when the first answer arrives.
TEST_F(CrashSafetyTest, GatewayKilledWithQueriesInFlight) {
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    absl::Status started = fed_->StartGateway(Policy());
    ASSERT_TRUE(started.ok()) << started;
    std::vector<std::string> texts;
    for (int i = 0; i < 8; ++i) texts.push_back(FreshNoisedQuery());
    // One set of credentials, made here, shared by both clients.
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        fed_->Credentials("alice");
    ASSERT_TRUE(creds.ok()) << creds.status();
    absl::Mutex mu;
    int answered = 0;
    int finished = 0;  // Clients done (killed or through their queries).
    std::vector<std::thread> clients;
    for (int c = 0; c < 2; ++c) {
      clients.emplace_back([&, c] {
        for (int i = c; i < 8; i += 2) {
          v1::QueryResponse r;
          const bool ok = fed_->QueryWith(*creds, "noised", texts[i], &r).ok();
          absl::MutexLock lock(&mu);
          if (!ok) break;
          ++answered;
        }
        absl::MutexLock lock(&mu);
        ++finished;
      });
    }
    {
      absl::MutexLock lock(&mu);
      struct Progress {
        int* answered;
        int* finished;
      } progress{&answered, &finished};
      mu.Await(absl::Condition(
          +[](Progress* p) { return *p->answered >= 1 || *p->finished == 2; },
          &progress));
    }
    fed_->gateway().Signal(SIGKILL);
    for (std::thread& t : clients) t.join();
    EXPECT_EQ(fed_->gateway().Wait(), kKilled);
    EXPECT_LT(answered, 8);
    arbitrary_kill_ = true;
    CheckAfterRestart("queries in flight");
    std::cout << "killed with queries in flight: " << answered
              << " answered before the kill, " << recovered_
              << " interrupted charge(s) recovered\n";
  }
}

// A node killed while answering (before or after its own audit entry, in
// its audit append): the gateway reports the site missing, the request is
// charged and audited as partial, and the restarted node serves again.
TEST_F(CrashSafetyTest, NodeKilledDuringACount) {
  SKIP_UNLESS_CRASH_POINTS();
  for (const std::string point :
       {"node.count.before_audit", "audit.append.before_commit",
        "audit.append.after_commit", "node.count.after_audit"}) {
    SCOPED_TRACE(point);
    {
      ScopedCrashAt crash(point);
      absl::Status s = fed_->StartNode("fr");
      ASSERT_TRUE(s.ok()) << s;
    }
    absl::Status s = fed_->StartGateway(Policy());  // fr's new port.
    ASSERT_TRUE(s.ok()) << s;
    v1::QueryResponse r;
    grpc::Status st = fed_->Query("noised", FreshNoisedQuery(), &r);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(r.complete());
    for (const v1::SiteResult& site : r.sites()) {
      EXPECT_EQ(site.status() == v1::SITE_STATUS_OK, site.site() == "qc")
          << site.site() << ": " << site.reason();
    }
    EXPECT_EQ(fed_->node("fr").Wait(), kKilled);
    EXPECT_TRUE(absl::StrContains(fed_->node("fr").Log(), Marker(point)));
    // Killed after its own entry: an answer that never left the node.
    if (point == "audit.append.after_commit" ||
        point == "node.count.after_audit") {
      ++unreferenced_["fr"];
    }
    s = fed_->StartNode("fr");
    ASSERT_TRUE(s.ok()) << s;
    CheckAfterRestart(point);
  }
}

// `node load` killed at each point of writing a new snapshot, then at
// arbitrary moments: the store serves the previous snapshot or the new one,
// never a mix, and the next load works.
TEST_F(CrashSafetyTest, LoadKilledAtEveryStage) {
  SKIP_UNLESS_CRASH_POINTS();
  fed_->StopNode("fr");  // A serving node holds the store.
  struct Point {
    std::string spec;
    bool takes_effect;  // The new snapshot is current after the crash.
  };
  const std::vector<Point> points = {{"node.store.commit.put:1", false},
                                     {"node.store.commit.put:40", false},
                                     {"node.store.commit.before_ingest", false},
                                     {"node.store.commit.before_seal", false},
                                     {"node.store.commit.before_switch", false},
                                     {"node.store.commit.after_switch", true}};
  for (const Point& p : points) {
    SCOPED_TRACE(p.spec);
    const int target = 1 - fr_data_;
    absl::StatusOr<CommandResult> r;
    {
      ScopedCrashAt crash(p.spec);
      r = RunCommand({PasserelleBin(), "node", "load", "--store",
                      fed_->Path("fr/store"), "--site", "fr", data_[target]});
    }
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, kKilled) << r->out << r->err;
    EXPECT_TRUE(absl::StrContains(r->err, "passerelle: crash point")) << r->err;
    CheckLoadOutcome(target, p.takes_effect);
  }
  // Plain SIGKILLs from outside at spread moments of a load (the delays
  // pick the moment; nothing waits on them: every outcome is checked).
  for (int i = 1; i <= 5; ++i) {
    SCOPED_TRACE(absl::StrCat("SIGKILL at ", i * 18, "% of a load"));
    const int target = 1 - fr_data_;
    absl::StatusOr<Process> load =
        Process::Start({PasserelleBin(), "node", "load", "--store",
                        fed_->Path("fr/store"), "--site", "fr", data_[target]},
                       fed_->Path(absl::StrCat("fr/load-", i, ".log")));
    ASSERT_TRUE(load.ok()) << load.status();
    absl::SleepFor(load_time_ * (0.18 * i));
    load->Signal(SIGKILL);
    const int code = load->Wait();
    EXPECT_TRUE(code == kKilled || code == 0) << code << load->Log();
    if (code == 0) {
      CheckLoadOutcome(target, true);
    } else {
      CheckLoadOutcome(target, std::nullopt);
    }
  }
  // A removal of old snapshots killed after moving one out of snapshots/:
  // the store still opens on its current snapshot, and the next removal
  // finishes (the loads above left several old and partial snapshots).
  {
    SCOPED_TRACE("prune killed");
    absl::StatusOr<CommandResult> r;
    {
      ScopedCrashAt crash("node.store.prune.after_move");
      r = RunCommand({PasserelleBin(), "node", "prune", "--store",
                      fed_->Path("fr/store"), "--keep", "1"});
    }
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, kKilled) << r->out << r->err;
    absl::StatusOr<std::vector<int64_t>> counts =
        fed_->LocalCounts("fr", kCheckQuery);
    ASSERT_TRUE(counts.ok()) << counts.status();
    EXPECT_EQ(*counts, counts_[fr_data_]);
    EXPECT_EQ(*StoreVersion("fr"), fr_version_);
    r = RunCommand({PasserelleBin(), "node", "prune", "--store",
                    fed_->Path("fr/store"), "--keep", "1"});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0) << r->err;
    int left = 0;
    for (const auto& e : std::filesystem::directory_iterator(
             fed_->Path("fr/store/snapshots"))) {
      EXPECT_EQ(e.path().filename().string(), fr_version_);
      ++left;
    }
    EXPECT_EQ(left, 1);
    EXPECT_TRUE(std::filesystem::is_empty(fed_->Path("fr/store/trash")));
  }
  // A load after all that works, and the federation serves it.
  const int target = 1 - fr_data_;
  ASSERT_TRUE(fed_->LoadSite("fr", data_[target]).ok());
  CheckLoadOutcome(target, true);
  absl::Status s = fed_->StartNode("fr");
  ASSERT_TRUE(s.ok()) << s;
  CheckAfterRestart("after the loads");
}

}  // namespace
}  // namespace passerelle::testing
