// grpc.health.v1 across real processes: a node or the gateway turns
// NOT_SERVING (overall and per service) while its store, audit log or
// ledger directory is gone or replaced, refuses requests meanwhile, and
// comes back when it is restored; a rejected policy reload keeps the last
// good policy serving. Every refusal outside the audited path (NOT_SERVING,
// no identity) is counted on the MetricsService, and what callers are told
// names no path.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "passerelle/v1/audit_service.grpc.pb.h"
#include "passerelle/v1/metrics.grpc.pb.h"
#include "passerelle/v1/node.grpc.pb.h"
#include "tests/fault_harness.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

constexpr char kTotal[] = "condition icd10:E11* or drug atc:A10*";
constexpr absl::Duration kWait = absl::Seconds(15);

class HealthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("PASSERELLE_TRACE_DEADLINES", "1", 1);
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("fr", 300, 31));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("qc", 300, 32));
    return absl::OkStatus();
  }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
  }
  void SetUp() override {
    ASSERT_TRUE(setup_->ok()) << *setup_;
    for (const std::string site : {"fr", "qc"}) {
      absl::StatusOr<Daemon> node = StartNodeDaemon(*fed_, site, DaemonSpec());
      ASSERT_TRUE(node.ok()) << node.status();
      nodes_[site] = *std::move(node);
    }
    GatewaySpec spec;
    spec.retry_max_attempts = 5;
    spec.retry_initial_backoff_ms = 20;
    spec.retry_max_backoff_ms = 50;
    for (const std::string site : {"fr", "qc"}) {
      spec.sites.push_back(
          {site, absl::StrCat("127.0.0.1:", nodes_[site].port), 3000});
    }
    absl::StatusOr<Daemon> gw = StartGatewayDaemon(*fed_, TestPolicy(), spec);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
  }
  void TearDown() override {
    gateway_.process.reset();
    nodes_.clear();
  }

  std::string Address(const Daemon& d) const {
    return absl::StrCat("127.0.0.1:", d.port);
  }
  int Health(const Daemon& d, const std::string& service) {
    absl::StatusOr<int> h = HealthAt(
        Address(d), UserCredentials(*fed_, "alice", d.identity), service);
    return h.ok() ? *h : -static_cast<int>(h.status().code());
  }
  // Every name the daemon publishes is in `status`.
  bool AllAre(const Daemon& d, const std::vector<std::string>& services,
              int status) {
    for (const std::string& s : services) {
      if (Health(d, s) != status) return false;
    }
    return true;
  }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
  std::map<std::string, Daemon> nodes_;
  Daemon gateway_;
};
absl::Status* HealthTest::setup_ = nullptr;
TempDir* HealthTest::dir_ = nullptr;
Federation* HealthTest::fed_ = nullptr;

const std::vector<std::string> kNodeServices = {"", "passerelle.v1.NodeService",
                                                "passerelle.v1.AuditService"};
const std::vector<std::string> kGatewayServices = {
    "", "passerelle.v1.GatewayService", "passerelle.v1.AuditService"};

TEST_F(HealthTest, NodeIsNotServingWhileItsAuditLogIsReplacedAndRefuses) {
  const Daemon& fr = nodes_["fr"];
  EXPECT_TRUE(AllAre(fr, kNodeServices, kServing));
  // A name nobody registered is unknown (Check answers NOT_FOUND).
  EXPECT_EQ(Health(fr, "passerelle.v1.NoSuchService"),
            -static_cast<int>(absl::StatusCode::kNotFound));

  // An operator's mistake: the audit directory moved away and a fresh one
  // put in its place. Appends would go to the moved files.
  const std::string audit = fed_->Path("fr/audit");
  std::filesystem::rename(audit, audit + ".moved");
  std::filesystem::create_directories(audit);
  EXPECT_TRUE(
      WaitUntil([&] { return AllAre(fr, kNodeServices, kNotServing); }, kWait));
  EXPECT_TRUE(WaitForLog(*fr.process, "NOT_SERVING: audit log", kWait));

  // The gateway's query gets a partial answer naming fr; fr was asked more
  // than once (UNAVAILABLE is retried) and answered none.
  v1::QueryResponse r;
  grpc::Status st = QueryAt(Address(gateway_), UserCredentials(*fed_), "exact",
                            kTotal, absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* site = FindSite(r, "fr");
  ASSERT_NE(site, nullptr);
  EXPECT_EQ(site->status(), v1::SITE_STATUS_FAILED);
  EXPECT_NE(site->reason().find("not serving"), std::string::npos)
      << site->reason();
  EXPECT_GT(CountInLog(*fr.process, "count " + r.request_id()), 1);
  EXPECT_EQ(FindSite(r, "qc")->status(), v1::SITE_STATUS_OK);

  // Put back: SERVING again without a restart.
  std::filesystem::remove_all(audit);
  std::filesystem::rename(audit + ".moved", audit);
  EXPECT_TRUE(
      WaitUntil([&] { return AllAre(fr, kNodeServices, kServing); }, kWait));
  st = QueryAt(Address(gateway_), UserCredentials(*fed_), "exact", kTotal,
               absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(r.complete());
}

TEST_F(HealthTest, NodeIsNotServingWhileItsStoreIsGone) {
  const Daemon& qc = nodes_["qc"];
  EXPECT_TRUE(AllAre(qc, kNodeServices, kServing));
  const std::string store = fed_->Path("qc/store");
  std::filesystem::rename(store, store + ".moved");
  EXPECT_TRUE(
      WaitUntil([&] { return AllAre(qc, kNodeServices, kNotServing); }, kWait));
  EXPECT_TRUE(WaitForLog(*qc.process, "NOT_SERVING: store", kWait));
  std::filesystem::rename(store + ".moved", store);
  EXPECT_TRUE(
      WaitUntil([&] { return AllAre(qc, kNodeServices, kServing); }, kWait));
}

TEST_F(HealthTest, GatewayIsNotServingWhileItsLedgerIsGoneAndAnswersNothing) {
  EXPECT_TRUE(AllAre(gateway_, kGatewayServices, kServing));
  const std::string ledger = fed_->Path("gateway/ledger");
  std::filesystem::rename(ledger, ledger + ".moved");
  EXPECT_TRUE(WaitUntil(
      [&] { return AllAre(gateway_, kGatewayServices, kNotServing); }, kWait));
  EXPECT_TRUE(WaitForLog(*gateway_.process, "NOT_SERVING: ledger", kWait));
  v1::QueryResponse r;
  grpc::Status st = QueryAt(Address(gateway_), UserCredentials(*fed_), "exact",
                            kTotal, absl::Seconds(20), &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(st.error_message().find("ledger"), std::string::npos)
      << st.error_message();
  // No node was asked.
  for (const std::string site : {"fr", "qc"}) {
    EXPECT_EQ(CountInLog(*nodes_[site].process, "deadline in"), 0);
  }
  std::filesystem::rename(ledger + ".moved", ledger);
  EXPECT_TRUE(WaitUntil(
      [&] { return AllAre(gateway_, kGatewayServices, kServing); }, kWait));
  st = QueryAt(Address(gateway_), UserCredentials(*fed_), "exact", kTotal,
               absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(r.complete());
}

TEST_F(HealthTest, GatewayAuditLogGoneIsNotServing) {
  const std::string audit = fed_->Path("gateway/audit");
  std::filesystem::rename(audit, audit + ".moved");
  EXPECT_TRUE(WaitUntil(
      [&] { return AllAre(gateway_, kGatewayServices, kNotServing); }, kWait));
  EXPECT_TRUE(WaitForLog(*gateway_.process, "NOT_SERVING: audit log", kWait));
}

std::shared_ptr<grpc::Channel> ChannelTo(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, creds, args);
}

v1::MetricsResponse MetricsAt(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  auto stub = v1::MetricsService::NewStub(ChannelTo(address, creds));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  v1::MetricsResponse response;
  grpc::Status st = stub->GetMetrics(&context, {}, &response);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return response;
}

uint64_t Refusals(const v1::MetricsResponse& m, const std::string& reason) {
  auto it = m.refusals().find(reason);
  return it == m.refusals().end() ? 0 : it->second;
}

// Issue 18 item 10: requests refused while NOT_SERVING and requests from a
// peer without identity are counted per reason and exposed by the
// MetricsService; the reasons callers hear name the failing check, never
// the path behind it.
TEST_F(HealthTest, RefusalsAreCountedAndReasonsNameNoPath) {
  const std::string root = fed_->Path("");
  const Daemon& fr = nodes_["fr"];
  const std::shared_ptr<grpc::ChannelCredentials> alice =
      UserCredentials(*fed_);
  // The node's MetricsService, reached as a client that expects fr's node.
  const std::shared_ptr<grpc::ChannelCredentials> alice_at_fr =
      UserCredentials(*fed_, "alice", fr.identity);
  v1::MetricsResponse m = MetricsAt(Address(fr), alice_at_fr);
  EXPECT_TRUE(m.serving());
  EXPECT_EQ(Refusals(m, "not_serving"), 0u);

  // Node fr NOT_SERVING: the gateway's query is refused there, counted.
  const std::string audit = fed_->Path("fr/audit");
  std::filesystem::rename(audit, audit + ".moved");
  std::filesystem::create_directories(audit);
  ASSERT_TRUE(
      WaitUntil([&] { return AllAre(fr, kNodeServices, kNotServing); }, kWait));
  v1::QueryResponse r;
  grpc::Status st =
      QueryAt(Address(gateway_), alice, "exact", kTotal, absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const v1::SiteResult* site = FindSite(r, "fr");
  ASSERT_NE(site, nullptr);
  EXPECT_TRUE(absl::StrContains(site->reason(),
                                "not serving: unhealthy: "
                                "audit log"))
      << site->reason();
  EXPECT_FALSE(absl::StrContains(site->reason(), root)) << site->reason();
  EXPECT_FALSE(absl::StrContains(site->reason(), "/")) << site->reason();
  m = MetricsAt(Address(fr), alice_at_fr);
  EXPECT_FALSE(m.serving());
  ASSERT_EQ(m.failing_checks_size(), 1);
  EXPECT_EQ(m.failing_checks(0), "audit log");
  EXPECT_GE(Refusals(m, "not_serving"), 1u);
  // The details stay in the node's own log.
  EXPECT_TRUE(WaitForLog(*fr.process, audit, kWait));
  std::filesystem::remove_all(audit);
  std::filesystem::rename(audit + ".moved", audit);
  ASSERT_TRUE(
      WaitUntil([&] { return AllAre(fr, kNodeServices, kServing); }, kWait));

  // The gateway NOT_SERVING: refused, counted, no path in the answer.
  const std::string ledger = fed_->Path("gateway/ledger");
  std::filesystem::rename(ledger, ledger + ".moved");
  ASSERT_TRUE(WaitUntil(
      [&] { return AllAre(gateway_, kGatewayServices, kNotServing); }, kWait));
  st =
      QueryAt(Address(gateway_), alice, "exact", kTotal, absl::Seconds(20), &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(st.error_message(), "ledger"))
      << st.error_message();
  EXPECT_FALSE(absl::StrContains(st.error_message(), root))
      << st.error_message();
  m = MetricsAt(Address(gateway_), alice);
  EXPECT_FALSE(m.serving());
  EXPECT_EQ(Refusals(m, "not_serving"), 1u);
  std::filesystem::rename(ledger + ".moved", ledger);
  ASSERT_TRUE(WaitUntil(
      [&] { return AllAre(gateway_, kGatewayServices, kServing); }, kWait));

  // A certificate of the federation CA without any SPIFFE ID: no identity.
  const std::string pki = fed_->Path("pki");
  WriteFile(pki + "/nosan.ext",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n");
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{
           {"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-keyout", pki + "/nosan.key",
            "-out", pki + "/nosan.csr", "-subj", "/CN=nobody"},
           {"/usr/bin/openssl", "x509", "-req", "-in", pki + "/nosan.csr",
            "-CA", pki + "/ca.pem", "-CAkey", pki + "/ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", pki + "/nosan.ext",
            "-out", pki + "/nosan.pem"}}) {
    absl::StatusOr<CommandResult> run = RunCommand(argv);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(run->exit_code, 0) << run->err;
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> nobody =
      RawCredentials(pki + "/ca.pem", pki + "/nosan.pem", pki + "/nosan.key");
  ASSERT_TRUE(nobody.ok()) << nobody.status();
  // Its certificate is the federation CA's, but it carries no identity: the
  // servers refuse it at the handshake, before any service, and count it.
  st = QueryAt(Address(gateway_), *nobody, "exact", kTotal, absl::Seconds(20),
               &r);
  EXPECT_FALSE(st.ok());
  {
    auto stub = v1::NodeService::NewStub(ChannelTo(Address(fr), *nobody));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::CountResponse response;
    EXPECT_FALSE(stub->Count(&context, {}, &response).ok());
  }
  {
    auto stub = v1::AuditService::NewStub(ChannelTo(Address(fr), *nobody));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::AuditCheckpointResponse response;
    EXPECT_FALSE(stub->GetCheckpoint(&context, {}, &response).ok());
  }
  EXPECT_GE(Refusals(MetricsAt(Address(gateway_), alice), "tls_handshake"), 1u);
  m = MetricsAt(Address(fr), alice_at_fr);
  EXPECT_GE(Refusals(m, "tls_handshake"), 2u);
  EXPECT_TRUE(m.serving());
  EXPECT_EQ(m.failing_checks_size(), 0);
}

TEST_F(HealthTest, RejectedPolicyReloadKeepsTheLastGoodOneServing) {
  WriteFile(fed_->PolicyFile(), "project { this is not a policy");
  EXPECT_TRUE(WaitForLog(*gateway_.process, "policy reload rejected", kWait));
  EXPECT_TRUE(AllAre(gateway_, kGatewayServices, kServing));
  v1::QueryResponse r;
  grpc::Status st = QueryAt(Address(gateway_), UserCredentials(*fed_), "exact",
                            kTotal, absl::Seconds(20), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(r.complete());
}

}  // namespace
}  // namespace passerelle::testing
