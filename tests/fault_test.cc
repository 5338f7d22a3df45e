// Faults across real processes: node and gateway daemons on loopback with
// mTLS, the gateway's site addresses pointing at TcpProxy instances that
// stall, refuse or recover on command. Timing bounds carry generous slack
// (the machine is shared); nothing sleeps to synchronise: the tests wait on
// the proxies' counters and the daemons' logs.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/fault_harness.h"
#include "tests/federation.h"
#include "tests/tcp_proxy.h"

namespace passerelle::testing {
namespace {

constexpr char kTotal[] = "condition icd10:E11* or drug atc:A10*";
// Everything a daemon may take beyond its nominal bound on a loaded machine.
constexpr absl::Duration kSlack = absl::Milliseconds(1500);

// The milliseconds each "count <id> deadline in N ms" line of `log` names
// for `request_id` (every request when empty), in order.
std::vector<int64_t> TracedDeadlines(const std::string& log,
                                     const std::string& request_id = "") {
  std::vector<int64_t> out;
  static const std::regex re("count ([0-9a-f]*) deadline in (-?[0-9]+) ms");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), re);
       it != std::sregex_iterator(); ++it) {
    if (!request_id.empty() && (*it)[1].str() != request_id) continue;
    int64_t ms;
    if (absl::SimpleAtoi((*it)[2].str(), &ms)) out.push_back(ms);
  }
  return out;
}

class FaultTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each node logs the deadline every Count arrives with.
    setenv("PASSERELLE_TRACE_DEADLINES", "1", 1);
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("fr", 400, 21));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("qc", 400, 22));
    return absl::OkStatus();
  }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
  }

  void SetUp() override { ASSERT_TRUE(setup_->ok()) << *setup_; }
  void TearDown() override {
    gateway_.process.reset();  // SIGKILLs what is still running.
    for (auto& [site, node] : nodes_) node.process.reset();
  }

  // Starts both nodes, a proxy in front of each, and the gateway dialling
  // the proxies. `site_policy_qc`, when given, is qc's site policy.
  void StartAll(GatewaySpec spec, const std::string& site_policy_qc = "") {
    for (const std::string site : {"fr", "qc"}) {
      std::string policy_file;
      if (site == "qc" && !site_policy_qc.empty()) {
        policy_file = fed_->Path("qc/site-policy.textproto");
        WriteFile(policy_file, site_policy_qc);
      }
      absl::StatusOr<Daemon> node =
          StartNodeDaemon(*fed_, site, DaemonSpec(), policy_file);
      ASSERT_TRUE(node.ok()) << node.status();
      TcpProxyOptions po;
      po.target_port = node->port;
      absl::StatusOr<std::unique_ptr<TcpProxy>> proxy = TcpProxy::Start(po);
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      nodes_[site] = *std::move(node);
      proxies_[site] = *std::move(proxy);
    }
    for (SiteSpec& s : spec.sites) s.address = proxies_[s.site]->address();
    // A fresh ledger, audit log and release cache: no test's query is a
    // repeat of an earlier test's (a repeat contacts no node for Count).
    std::filesystem::remove_all(fed_->Path("gateway"));
    absl::StatusOr<Daemon> gw = StartGatewayDaemon(*fed_, TestPolicy(), spec);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
  }
  static GatewaySpec Spec(int fr_timeout_ms, int qc_timeout_ms) {
    GatewaySpec spec;
    spec.sites = {{"fr", "", fr_timeout_ms}, {"qc", "", qc_timeout_ms}};
    return spec;
  }
  std::string GatewayAddress() const {
    return absl::StrCat("127.0.0.1:", gateway_.port);
  }
  grpc::Status Ask(absl::Duration deadline, v1::QueryResponse* response,
                   absl::Duration* elapsed = nullptr) {
    const absl::Time start = absl::Now();
    grpc::Status st = QueryAt(GatewayAddress(), UserCredentials(*fed_), "exact",
                              kTotal, deadline, response);
    if (elapsed != nullptr) *elapsed = absl::Now() - start;
    return st;
  }
  TcpProxy& proxy(const std::string& site) { return *proxies_.at(site); }
  Process& node(const std::string& site) { return *nodes_.at(site).process; }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
  std::map<std::string, Daemon> nodes_;
  std::map<std::string, std::unique_ptr<TcpProxy>> proxies_;
  Daemon gateway_;
};
absl::Status* FaultTest::setup_ = nullptr;
TempDir* FaultTest::dir_ = nullptr;
Federation* FaultTest::fed_ = nullptr;

TEST_F(FaultTest, StalledSiteIsPartialWithinItsOwnTimeoutThenRecovers) {
  StartAll(Spec(/*fr=*/4000, /*qc=*/1000));
  v1::QueryResponse before;
  grpc::Status st = Ask(absl::Seconds(20), &before);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(before.complete());

  // The same query again: a repeat candidate, so the gateway first asks
  // each node whether it still holds the same snapshot. The stalled site
  // costs its own timeout once, for that check and the count together.
  proxy("qc").Stall();
  v1::QueryResponse r;
  absl::Duration elapsed;
  st = Ask(absl::Seconds(20), &r, &elapsed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* qc = FindSite(r, "qc");
  const v1::SiteResult* fr = FindSite(r, "fr");
  ASSERT_TRUE(qc != nullptr && fr != nullptr);
  EXPECT_EQ(qc->status(), v1::SITE_STATUS_TIMED_OUT) << qc->reason();
  EXPECT_FALSE(qc->reason().empty());
  EXPECT_EQ(fr->status(), v1::SITE_STATUS_OK);
  // qc's own 1 s, not the caller's 20 s (nor fr's 4 s).
  EXPECT_GE(elapsed, absl::Milliseconds(900));
  EXPECT_LT(elapsed, absl::Milliseconds(1000) + kSlack);
  bool noted = false;
  for (const std::string& n : r.notes()) {
    noted |= n.find("PARTIAL: site qc") != std::string::npos;
  }
  EXPECT_TRUE(noted);
  // Exact mode releases nothing from a partial answer (fr's exact count
  // could be subtracted from the complete one).
  EXPECT_EQ(r.combined_size(), 0);
  EXPECT_EQ(fr->cells_size(), 0);
  // fr's call carried fr's bound: its 4 s site timeout (gRPC rounds the
  // timeout it sends up a little).
  std::vector<int64_t> fr_deadlines =
      TracedDeadlines(node("fr").Log(), r.request_id());
  ASSERT_EQ(fr_deadlines.size(), 1u) << node("fr").Log();
  EXPECT_LE(fr_deadlines[0], 4000 + 50);
  EXPECT_GT(fr_deadlines[0], 2000);

  // Recovery: the held bytes go through and the next query is whole.
  proxy("qc").Forward();
  v1::QueryResponse after;
  st = Ask(absl::Seconds(20), &after);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(after.complete());
  EXPECT_EQ(after.combined(0).count(), before.combined(0).count());
}

TEST_F(FaultTest, CallerDeadlineBoundsTheQueryAndReachesTheNodes) {
  StartAll(Spec(/*fr=*/8000, /*qc=*/8000));
  proxy("qc").Stall();
  v1::QueryResponse r;
  absl::Duration elapsed;
  const absl::Duration caller = absl::Milliseconds(2000);
  grpc::Status st = Ask(caller, &r, &elapsed);
  // The gateway stops waiting before the caller's deadline so the partial
  // answer (audited) still arrives in time.
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_LT(elapsed, caller + absl::Milliseconds(200));
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* qc = FindSite(r, "qc");
  ASSERT_NE(qc, nullptr);
  EXPECT_EQ(qc->status(), v1::SITE_STATUS_TIMED_OUT) << qc->reason();
  EXPECT_EQ(FindSite(r, "fr")->status(), v1::SITE_STATUS_OK);
  // fr saw the caller's deadline (less the reply margin), not its own 8 s.
  std::vector<int64_t> fr_deadlines =
      TracedDeadlines(node("fr").Log(), r.request_id());
  ASSERT_EQ(fr_deadlines.size(), 1u) << node("fr").Log();
  EXPECT_GT(fr_deadlines[0], 0);
  EXPECT_LE(fr_deadlines[0], 2000 + 50);
}

TEST_F(FaultTest, NodeDyingMidQueryIsPartialNamingIt) {
  StartAll(Spec(/*fr=*/4000, /*qc=*/2000));
  proxy("qc").Stall();
  const int64_t up_before = proxy("qc").stats().bytes_up;
  v1::QueryResponse r;
  grpc::Status st;
  absl::Duration elapsed;
  std::thread asker([&] { st = Ask(absl::Seconds(20), &r, &elapsed); });
  // The Count request is at qc's proxy: the query is in flight.
  EXPECT_TRUE(proxy("qc").WaitFor(
      [&](const TcpProxyStats& s) { return s.bytes_up > up_before; },
      absl::Seconds(10)));
  node("qc").Signal(SIGKILL);
  node("qc").Wait();
  proxy("qc").Forward();  // Its held request now meets a dead node.
  asker.join();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* qc = FindSite(r, "qc");
  ASSERT_NE(qc, nullptr);
  EXPECT_NE(qc->status(), v1::SITE_STATUS_OK);
  EXPECT_FALSE(qc->reason().empty());
  EXPECT_EQ(FindSite(r, "fr")->status(), v1::SITE_STATUS_OK);
  EXPECT_LT(elapsed, absl::Milliseconds(2000) + kSlack);
}

TEST_F(FaultTest, RefusedConnectionsAreRetriedUntilTheSiteRecovers) {
  GatewaySpec spec = Spec(/*fr=*/5000, /*qc=*/8000);
  spec.retry_max_attempts = 100;
  spec.retry_initial_backoff_ms = 50;
  spec.retry_max_backoff_ms = 200;
  StartAll(spec);
  proxy("qc").Refuse();  // Resets the gateway's open connection too.
  const int64_t accepted = proxy("qc").stats().accepted;
  v1::QueryResponse r;
  grpc::Status st;
  absl::Duration elapsed;
  std::thread asker([&] { st = Ask(absl::Seconds(20), &r, &elapsed); });
  // Two attempts reset, then the site comes back.
  EXPECT_TRUE(proxy("qc").WaitFor(
      [&](const TcpProxyStats& s) { return s.accepted >= accepted + 2; },
      absl::Seconds(10)));
  proxy("qc").Forward();
  asker.join();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(r.complete()) << FindSite(r, "qc")->reason();
  EXPECT_EQ(FindSite(r, "qc")->status(), v1::SITE_STATUS_OK);
  EXPECT_GE(proxy("qc").stats().accepted, accepted + 3);
  EXPECT_LT(elapsed, absl::Milliseconds(8000));
  // Only the attempt that got through reached the node.
  EXPECT_EQ(TracedDeadlines(node("qc").Log(), r.request_id()).size(), 1u);
}

TEST_F(FaultTest, RefusalBySitePolicyIsNotRetried) {
  GatewaySpec spec = Spec(/*fr=*/5000, /*qc=*/5000);
  spec.retry_max_attempts = 100;
  spec.retry_initial_backoff_ms = 20;
  spec.retry_max_backoff_ms = 100;
  // qc answers the gateway but never below 50 (the federation asks 1).
  StartAll(spec, R"pb(
    site {
      id: "qc"
      callers: [ "spiffe://passerelle/gateway" ]
      disclosure { min_cell_size: 50 exact_mode_allowed: true }
    }
  )pb");
  const int64_t accepted = proxy("qc").stats().accepted;
  v1::QueryResponse r;
  grpc::Status st = Ask(absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::SiteResult* qc = FindSite(r, "qc");
  ASSERT_NE(qc, nullptr);
  EXPECT_EQ(qc->status(), v1::SITE_STATUS_REFUSED) << qc->reason();
  EXPECT_NE(qc->reason().find("PERMISSION_DENIED"), std::string::npos)
      << qc->reason();
  EXPECT_EQ(qc->reason().find("attempts"), std::string::npos) << qc->reason();
  // One request at the node, over the connection already open.
  EXPECT_EQ(TracedDeadlines(node("qc").Log(), r.request_id()).size(), 1u)
      << node("qc").Log();
  EXPECT_EQ(proxy("qc").stats().accepted, accepted);
}

TEST_F(FaultTest, RetryBackoffIsCappedAndStopsAtTheDeadline) {
  GatewaySpec spec = Spec(/*fr=*/5000, /*qc=*/2500);
  spec.retry_max_attempts = 1000;
  spec.retry_initial_backoff_ms = 20;
  spec.retry_max_backoff_ms = 100;
  StartAll(spec);
  proxy("qc").Refuse();
  const size_t first = proxy("qc").stats().accept_times.size();
  v1::QueryResponse r;
  absl::Duration elapsed;
  grpc::Status st = Ask(absl::Seconds(20), &r, &elapsed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::SiteResult* qc = FindSite(r, "qc");
  ASSERT_NE(qc, nullptr);
  EXPECT_NE(qc->status(), v1::SITE_STATUS_OK);
  EXPECT_NE(qc->reason().find("attempts"), std::string::npos) << qc->reason();
  EXPECT_LT(elapsed, absl::Milliseconds(2500) + kSlack);
  std::vector<absl::Time> times = proxy("qc").stats().accept_times;
  times.erase(times.begin(), times.begin() + static_cast<long>(first));
  // Uncapped doubling from 20 ms fits 7 attempts in 2.5 s; capped at 100 ms
  // about 25. Each gap stays near the cap.
  EXPECT_GE(times.size(), 10u);
  absl::Duration widest;
  for (size_t i = 1; i < times.size(); ++i) {
    widest = std::max(widest, times[i] - times[i - 1]);
  }
  EXPECT_LT(widest, absl::Milliseconds(100) + absl::Milliseconds(400))
      << times.size() << " attempts";
}

TEST_F(FaultTest, SigtermDrainsAnInFlightQueryAndExitsZero) {
  StartAll(Spec(/*fr=*/4000, /*qc=*/1500));
  proxy("qc").Stall();
  const int64_t up_before = proxy("qc").stats().bytes_up;
  v1::QueryResponse r;
  grpc::Status st;
  std::thread asker([&] { st = Ask(absl::Seconds(20), &r); });
  EXPECT_TRUE(proxy("qc").WaitFor(
      [&](const TcpProxyStats& s) { return s.bytes_up > up_before; },
      absl::Seconds(10)));
  gateway_.process->Signal(SIGTERM);
  asker.join();
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(r.complete());
  EXPECT_EQ(FindSite(r, "qc")->status(), v1::SITE_STATUS_TIMED_OUT);
  EXPECT_EQ(gateway_.process->Wait(), 0) << gateway_.process->Log();
  EXPECT_NE(gateway_.process->Log().find("draining"), std::string::npos);
  // A node drains and exits 0 as well.
  node("fr").Signal(SIGTERM);
  EXPECT_EQ(node("fr").Wait(), 0) << node("fr").Log();
}

}  // namespace
}  // namespace passerelle::testing
