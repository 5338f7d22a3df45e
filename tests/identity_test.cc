// Identity and node-side enforcement, end to end: real node and gateway
// processes on loopback with mTLS and a PKI minted by deploy/pki/mint.sh.
//
// - the gateway refuses at the TLS handshake a certificate from a foreign CA,
//   an expired one, a revoked one, and a client without one;
// - a valid federation identity the policy does not name gets
//   PERMISSION_DENIED, not a handshake failure;
// - nodes answer the gateway's identity only;
// - a node enforces its own site policy even when the gateway's allows;
// - the gateway's policy and certificate change without a restart;
// - every client checks the server's identity: the researcher CLI and the
//   audit CLI pointed at a node, and the gateway dialling the wrong site's
//   node (or another server of the federation), fail the handshake with the
//   mismatch, and the site is reported failed with the reason.
#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "passerelle/v1/node.grpc.pb.h"
#include "passerelle/v1/node.pb.h"
#include "query/parser.h"
#include "tests/federation.h"
#include "tls/tls.h"

namespace passerelle::testing {
namespace {

constexpr char kAliceId[] = "spiffe://passerelle/user/alice";
constexpr char kTotal[] = "condition icd10:E11* or drug atc:A10*";
constexpr char kObservation[] = "observation loinc:8*";
constexpr char kFresh[] = "condition icd10:E11* and sex = female";

// Retries `attempt` until it returns true or `timeout` passes. What the tests
// wait for (a policy reload, a certificate refresh) is periodic inside
// another process, so there is nothing to block on: poll, with a bound.
bool Eventually(absl::Duration timeout, const std::function<bool()>& attempt) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (attempt()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(100));  // Poll interval, not a sync.
  }
}

// The gateway's answer for one site.
const v1::SiteResult* SiteOf(const v1::QueryResponse& r,
                             const std::string& site) {
  for (const v1::SiteResult& s : r.sites()) {
    if (s.site() == site) return &s;
  }
  return nullptr;
}

bool NoteNames(const v1::QueryResponse& r, const std::string& site) {
  for (const std::string& n : r.notes()) {
    if (absl::StrContains(n, "PARTIAL") &&
        absl::StrContains(n, "site " + site)) {
      return true;
    }
  }
  return false;
}

// A refusal at the TLS handshake: UNAVAILABLE, and no connection ever became
// ready (an RPC-level UNAVAILABLE from a service would not say this).
void ExpectHandshakeRefused(const grpc::Status& st) {
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE)
      << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "failed to connect"))
      << st.error_message();
}

// Whether `process`'s log shows `needle` after its first `from` bytes, within
// a few seconds (the server logs the refusal as it drops the connection).
bool LogShows(Process& process, size_t from, const std::string& needle) {
  return Eventually(absl::Seconds(5), [&] {
    const std::string log = process.Log();
    return log.size() > from && absl::StrContains(log.substr(from), needle);
  });
}

class IdentityTest : public ::testing::Test {
 protected:
  // Mints and loads once for the suite; a failure fails every test.
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    const std::string pki = fed_->Path("pki");
    // alice's previous certificate (same identity), now revoked.
    PASSERELLE_RETURN_IF_ERROR(
        fed_->Mint(pki, {"--issue", "alice-old", kAliceId}));
    PASSERELLE_RETURN_IF_ERROR(fed_->Mint(pki, {"--revoke", "alice-old"}));
    // A second current certificate of alice's (another device).
    PASSERELLE_RETURN_IF_ERROR(
        fed_->Mint(pki, {"--issue", "alice-laptop", kAliceId}));
    // An expired certificate for the same identity.
    PASSERELLE_RETURN_IF_ERROR(
        fed_->Mint(pki, {"--issue-expired", "alice-expired", kAliceId}));
    // Another CA entirely, issuing the same identities.
    PASSERELLE_RETURN_IF_ERROR(
        fed_->Mint(fed_->Path("foreign"),
                   {"--local", "--sites", "fr", "--users", "alice"}));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("fr", 400, 21));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("qc", 400, 22));
    return absl::OkStatus();
  }
  void SetUp() override { ASSERT_TRUE(setup_->ok()) << *setup_; }
  // Each test starts the daemons it needs; none outlives it, and the next
  // gateway starts from an empty state (ledger, audit log, the answers it
  // keeps for repeats), so no test is answered from another's release.
  void TearDown() override {
    if (fed_ == nullptr) return;
    fed_->StopAll();
    std::error_code ec;
    std::filesystem::remove_all(fed_->Path("gateway"), ec);
  }
  static void TearDownTestSuite() {
    delete fed_;
    fed_ = nullptr;
    delete dir_;
    delete setup_;
  }

  static void StartDefaultNodes() {
    absl::Status st = fed_->StartNode("fr");
    ASSERT_TRUE(st.ok()) << st;
    st = fed_->StartNode("qc");
    ASSERT_TRUE(st.ok()) << st;
  }

  static std::shared_ptr<grpc::ChannelCredentials> Raw(const std::string& cert,
                                                       const std::string& key) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
        RawCredentials(fed_->Path("pki/ca.pem"),
                       cert.empty() ? "" : fed_->Path(cert),
                       key.empty() ? "" : fed_->Path(key));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }
  static std::shared_ptr<grpc::ChannelCredentials> Creds(
      const std::string& name, const std::string& server = kGatewayId) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
        fed_->Credentials(name, server);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
};
absl::Status* IdentityTest::setup_ = nullptr;
TempDir* IdentityTest::dir_ = nullptr;
Federation* IdentityTest::fed_ = nullptr;

TEST_F(IdentityTest,
       GatewayRefusesForeignAbsentExpiredAndRevokedCertificatesAtHandshake) {
  StartDefaultNodes();
  GatewayOptions options;
  options.crl_dir = fed_->Path("pki/crl");
  absl::Status gw = fed_->StartGateway(TestPolicy(), options);
  ASSERT_TRUE(gw.ok()) << gw;

  // Control: alice's current certificate over the same plain SSL
  // credentials works, so the refusals below are about the certificate.
  v1::QueryResponse ok;
  grpc::Status st = fed_->QueryWith(Raw("pki/alice.pem", "pki/alice.key"),
                                    "exact", kTotal, &ok);
  ASSERT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
  EXPECT_TRUE(ok.complete());

  // Each refusal is checked at the server too: its log says why it dropped
  // the handshake.
  Process& gateway = fed_->gateway();
  size_t log = gateway.Log().size();

  // Same identity (spiffe://passerelle/user/alice), another CA.
  v1::QueryResponse r;
  st = fed_->QueryWith(Raw("foreign/alice.pem", "foreign/alice.key"), "exact",
                       kTotal, &r);
  ExpectHandshakeRefused(st);
  EXPECT_TRUE(LogShows(gateway, log, "certificate verify failed"))
      << gateway.Log();

  // No client certificate at all.
  log = gateway.Log().size();
  st = fed_->QueryWith(Raw("", ""), "exact", kTotal, &r);
  ExpectHandshakeRefused(st);
  EXPECT_TRUE(LogShows(gateway, log, "peer did not return a certificate"))
      << gateway.Log();

  // Expired: mint.sh --issue-expired made a certificate our own TLS library
  // refuses to load, and the gateway refuses it at the handshake.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> own =
      fed_->Credentials("alice-expired");
  ASSERT_FALSE(own.ok());
  EXPECT_TRUE(absl::StrContains(own.status().message(), "expired"))
      << own.status();
  log = gateway.Log().size();
  st = fed_->QueryWith(Raw("pki/alice-expired.pem", "pki/alice-expired.key"),
                       "exact", kTotal, &r);
  ExpectHandshakeRefused(st);
  EXPECT_TRUE(LogShows(gateway, log, "certificate verify failed"))
      << gateway.Log();

  // Revoked (in the CRL the gateway loads): refused; alice's current
  // certificate for the same identity and other users still get through.
  log = gateway.Log().size();
  st = fed_->QueryWith(Raw("pki/alice-old.pem", "pki/alice-old.key"), "exact",
                       kTotal, &r);
  ExpectHandshakeRefused(st);
  EXPECT_TRUE(LogShows(gateway, log, "is revoked")) << gateway.Log();
  v1::QueryResponse again;
  st = fed_->Query("exact", kTotal, &again);
  EXPECT_TRUE(st.ok()) << st.error_message();
  // bob passes the handshake; the policy then says he is no researcher.
  st = fed_->Query("exact", kTotal, &r, "bob");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();

  EXPECT_TRUE(fed_->gateway().running()) << fed_->gateway().Log();
}

// A certificate revoked while the gateway runs is refused from the next
// handshake on; the CRL directory is read at each handshake.
TEST_F(IdentityTest,
       CertificateRevokedWhileGatewayRunsIsRefusedWithoutRestart) {
  StartDefaultNodes();
  GatewayOptions options;
  options.crl_dir = fed_->Path("pki/crl");
  absl::Status st = fed_->StartGateway(TestPolicy(), options);
  ASSERT_TRUE(st.ok()) << st;
  const int pid = fed_->gateway().pid();

  v1::QueryResponse r;
  grpc::Status g = fed_->Query("exact", kTotal, &r, "alice-laptop");
  ASSERT_TRUE(g.ok()) << g.error_message();

  st = fed_->Mint(fed_->Path("pki"), {"--revoke", "alice-laptop"});
  ASSERT_TRUE(st.ok()) << st;
  const size_t log = fed_->gateway().Log().size();
  g = fed_->QueryWith(Raw("pki/alice-laptop.pem", "pki/alice-laptop.key"),
                      "exact", kTotal, &r);
  ExpectHandshakeRefused(g);
  EXPECT_TRUE(LogShows(fed_->gateway(), log, "is revoked"))
      << fed_->gateway().Log();
  // Her other certificate, same identity, still works.
  g = fed_->Query("exact", kTotal, &r);
  EXPECT_TRUE(g.ok()) << g.error_message();
  EXPECT_EQ(fed_->gateway().pid(), pid);
}

TEST_F(IdentityTest,
       ValidIdentityNotInPolicyGetsPermissionDeniedNotHandshakeFailure) {
  StartDefaultNodes();
  absl::Status gw = fed_->StartGateway(TestPolicy());
  ASSERT_TRUE(gw.ok()) << gw;

  v1::QueryResponse r;
  grpc::Status st = fed_->Query("exact", kTotal, &r);
  ASSERT_TRUE(st.ok()) << st.error_message();  // Control.

  // carol holds a federation certificate but no policy names her.
  st = fed_->Query("exact", kTotal, &r, "carol");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  EXPECT_TRUE(
      absl::StrContains(st.error_message(), "spiffe://passerelle/user/carol"))
      << st.error_message();
  // A node's identity is valid in the federation but is nobody's researcher.
  st = fed_->Query("exact", kTotal, &r, "node-fr");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
  // alice, on a project that does not exist.
  st = fed_->Query("no-such-project", kTotal, &r);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << st.error_message();
}

TEST_F(IdentityTest, NodesAnswerOnlyTheGatewayIdentity) {
  // fr enforces a site policy file, qc the fixed allow-list: both paths.
  NodeOptions fr;
  fr.site_policy = R"pb(
    site {
      id: "fr"
      callers: "spiffe://passerelle/gateway"
      disclosure { min_cell_size: 1 }
    }
  )pb";
  absl::Status st = fed_->StartNode("fr", fr);
  ASSERT_TRUE(st.ok()) << st;
  st = fed_->StartNode("qc");
  ASSERT_TRUE(st.ok()) << st;

  absl::StatusOr<v1::Query> query = query::ParseQuery(kTotal);
  ASSERT_TRUE(query.ok()) << query.status();
  v1::CountRequest request;
  request.set_request_id("direct-1");
  *request.mutable_query() = *query;
  request.set_project("exact");
  request.set_min_cell_size(1);

  for (const std::string site : {"fr", "qc"}) {
    SCOPED_TRACE(site);
    // Control: the gateway's certificate is answered, with counts.
    v1::CountResponse counted;
    grpc::Status g = fed_->CountAtNode(site, Creds("gateway", NodeId(site)),
                                       request, &counted);
    ASSERT_TRUE(g.ok()) << g.error_message();
    EXPECT_EQ(counted.site(), site);
    ASSERT_EQ(counted.cells_size(), 1);

    // alice, with her valid federation certificate: refused by the node.
    v1::CountResponse denied;
    g = fed_->CountAtNode(site, Creds("alice", NodeId(site)), request, &denied);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << g.error_message();
    EXPECT_TRUE(absl::StrContains(g.error_message(), kAliceId))
        << g.error_message();
    EXPECT_EQ(denied.cells_size(), 0);

    // GetInfo too: the gateway gets the snapshot's description, alice not.
    v1::NodeInfo info;
    g = fed_->InfoAtNode(site, Creds("gateway", NodeId(site)), &info);
    ASSERT_TRUE(g.ok()) << g.error_message();
    EXPECT_EQ(info.site(), site);
    EXPECT_FALSE(info.snapshot().empty());
    v1::NodeInfo leaked;
    g = fed_->InfoAtNode(site, Creds("alice", NodeId(site)), &leaked);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << g.error_message();
    EXPECT_TRUE(leaked.snapshot().empty());

    // A foreign CA's certificate claiming the gateway's identity, and no
    // certificate at all: refused at the handshake.
    g = fed_->CountAtNode(site,
                          Raw("foreign/gateway.pem", "foreign/gateway.key"),
                          request, &denied);
    ExpectHandshakeRefused(g);
    g = fed_->CountAtNode(site, Raw("", ""), request, &denied);
    ExpectHandshakeRefused(g);
  }
}

// The gateway's policy (TestPolicy) allows observations everywhere; fr's site
// policy forbids them. fr refuses on its own and the answer says so.
TEST_F(IdentityTest, NodeRefusesDomainItsSitePolicyForbidsThoughGatewayAllows) {
  NodeOptions fr;
  fr.site_policy = R"pb(
    site {
      id: "fr"
      callers: "spiffe://passerelle/gateway"
      disclosure { min_cell_size: 1 }
      forbid {
        id: "fr-no-observation"
        description: "observations are not part of the French extract agreement"
        domains: [ "observation" ]
      }
    }
  )pb";
  absl::Status st = fed_->StartNode("fr", fr);
  ASSERT_TRUE(st.ok()) << st;
  st = fed_->StartNode("qc");
  ASSERT_TRUE(st.ok()) << st;
  st = fed_->StartGateway(TestPolicy());
  ASSERT_TRUE(st.ok()) << st;

  v1::QueryResponse r;
  grpc::Status g = fed_->Query("exact", kObservation, &r);
  ASSERT_TRUE(g.ok()) << g.error_message();
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* frs = SiteOf(r, "fr");
  const v1::SiteResult* qcs = SiteOf(r, "qc");
  ASSERT_NE(frs, nullptr);
  ASSERT_NE(qcs, nullptr);
  EXPECT_EQ(frs->status(), v1::SITE_STATUS_REFUSED);
  EXPECT_TRUE(absl::StrContains(frs->reason(), "site fr refuses"))
      << frs->reason();
  EXPECT_TRUE(absl::StrContains(frs->reason(), "fr-no-observation"))
      << frs->reason();
  EXPECT_EQ(frs->cells_size(), 0);
  EXPECT_EQ(qcs->status(), v1::SITE_STATUS_OK) << qcs->reason();
  EXPECT_TRUE(NoteNames(r, "fr"));

  // What fr's policy allows, fr answers: the refusal is the rule, not the node.
  v1::QueryResponse full;
  g = fed_->Query("exact", kTotal, &full);
  ASSERT_TRUE(g.ok()) << g.error_message();
  EXPECT_TRUE(full.complete());
  ASSERT_NE(SiteOf(full, "fr"), nullptr);
  EXPECT_EQ(SiteOf(full, "fr")->status(), v1::SITE_STATUS_OK);
}

// The gateway's policy lets qc be queried with cells of 1; qc's own policy
// requires 10. qc refuses; the answer is partial, names qc, and releases
// nothing (exact mode).
TEST_F(IdentityTest, NodeRefusesMinimumCellSizeBelowItsOwnThoughGatewayAllows) {
  absl::StatusOr<std::vector<int64_t>> fr_total =
      fed_->LocalCounts("fr", kTotal);
  ASSERT_TRUE(fr_total.ok()) << fr_total.status();
  ASSERT_EQ(fr_total->size(), 1u);
  ASSERT_GT((*fr_total)[0], 0);  // Released, not suppressed, at minimum 1.

  NodeOptions qc;
  qc.site_policy = R"pb(
    site {
      id: "qc"
      callers: "spiffe://passerelle/gateway"
      disclosure { min_cell_size: 10 }
    }
  )pb";
  absl::Status st = fed_->StartNode("fr");
  ASSERT_TRUE(st.ok()) << st;
  st = fed_->StartNode("qc", qc);
  ASSERT_TRUE(st.ok()) << st;
  st = fed_->StartGateway(TestPolicy());
  ASSERT_TRUE(st.ok()) << st;

  v1::QueryResponse r;
  grpc::Status g = fed_->Query("exact", kTotal, &r);
  ASSERT_TRUE(g.ok()) << g.error_message();
  EXPECT_FALSE(r.complete());
  const v1::SiteResult* qcs = SiteOf(r, "qc");
  ASSERT_NE(qcs, nullptr);
  EXPECT_EQ(qcs->status(), v1::SITE_STATUS_REFUSED);
  EXPECT_TRUE(absl::StrContains(qcs->reason(), "site qc refuses"))
      << qcs->reason();
  EXPECT_TRUE(absl::StrContains(qcs->reason(), "minimum 10")) << qcs->reason();
  ASSERT_NE(SiteOf(r, "fr"), nullptr);
  EXPECT_EQ(SiteOf(r, "fr")->status(), v1::SITE_STATUS_OK);
  EXPECT_TRUE(NoteNames(r, "qc"));
  // Exact mode releases nothing from a partial answer.
  EXPECT_EQ(r.combined_size(), 0);
  EXPECT_EQ(SiteOf(r, "fr")->cells_size(), 0);
}

// The policy file changes under a running gateway: denied -> allowed ->
// (invalid file: still allowed, same version) -> denied.
TEST_F(IdentityTest, GatewayPolicyHotReloadKeepsPreviousVersionOnInvalidFile) {
  StartDefaultNodes();
  const std::string hold = absl::StrCat(
      TestPolicy(),
      "forbid { id: \"hold-exact\" description: \"project exact is on hold\" "
      "projects: [\"exact\"] }\n");
  absl::Status st = fed_->StartGateway(hold);
  ASSERT_TRUE(st.ok()) << st;
  const int pid = fed_->gateway().pid();
  // Replaced by a rename, so the reloader never reads a half-written file.
  auto rewrite = [](const std::string& text) {
    const std::string tmp = fed_->PolicyFile() + ".new";
    WriteFile(tmp, text);
    ASSERT_EQ(std::rename(tmp.c_str(), fed_->PolicyFile().c_str()), 0);
  };

  v1::QueryResponse r;
  grpc::Status g = fed_->Query("exact", kTotal, &r);
  ASSERT_EQ(g.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << g.error_message();
  EXPECT_TRUE(absl::StrContains(g.error_message(), "hold-exact"))
      << g.error_message();

  // Lift the hold: the same query becomes allowed, without a restart.
  rewrite(TestPolicy());
  v1::QueryResponse allowed;
  ASSERT_TRUE(Eventually(absl::Seconds(10), [&] {
    allowed.Clear();
    return fed_->Query("exact", kTotal, &allowed).ok();
  })) << fed_->gateway().Log();
  const std::string version = allowed.policy_version();
  EXPECT_FALSE(version.empty());

  // An invalid file: rejected and logged; the previous version keeps serving.
  const std::string before = fed_->gateway().Log();
  rewrite(absl::StrCat(TestPolicy(),
                       "project { id: \"broken\" no_such_field: 1 }\n"));
  ASSERT_TRUE(Eventually(absl::Seconds(10), [&] {
    const std::string log = fed_->gateway().Log();
    return log.size() > before.size() &&
           absl::StrContains(log.substr(before.size()), "reload rejected");
  })) << fed_->gateway().Log();
  EXPECT_TRUE(absl::StrContains(fed_->gateway().Log(), "no_such_field"))
      << fed_->gateway().Log();
  // A query not asked before, so the answer is decided now, not a repeat.
  v1::QueryResponse still;
  g = fed_->Query("exact", kFresh, &still);
  ASSERT_TRUE(g.ok()) << g.error_message();
  EXPECT_EQ(still.policy_version(), version);

  // And a valid change after the rejected one is still picked up.
  rewrite(hold);
  ASSERT_TRUE(Eventually(absl::Seconds(10), [&] {
    v1::QueryResponse again;
    return fed_->Query("exact", kTotal, &again).error_code() ==
           grpc::StatusCode::PERMISSION_DENIED;
  })) << fed_->gateway().Log();
  EXPECT_EQ(fed_->gateway().pid(), pid);
  EXPECT_TRUE(fed_->gateway().running());
}

// The gateway's certificate is renewed in place (mint.sh --issue on the same
// name); new connections see the new certificate, without a restart.
TEST_F(IdentityTest, GatewayCertificateRotatesWithoutRestart) {
  StartDefaultNodes();
  GatewayOptions options;
  options.tls_refresh_interval_sec = 1;
  absl::Status st = fed_->StartGateway(TestPolicy(), options);
  ASSERT_TRUE(st.ok()) << st;
  const int pid = fed_->gateway().pid();

  const std::string old_pem = ReadFile(fed_->Path("pki/gateway.pem"));
  v1::QueryResponse r;
  std::string presented;
  grpc::Status g =
      fed_->QueryWith(Creds("alice"), "exact", kTotal, &r, &presented);
  ASSERT_TRUE(g.ok()) << g.error_message();
  ASSERT_EQ(presented, old_pem);

  st = fed_->Mint(fed_->Path("pki"),
                  {"--issue", "gateway", "spiffe://passerelle/gateway",
                   "server", "--local"});
  ASSERT_TRUE(st.ok()) << st;
  const std::string new_pem = ReadFile(fed_->Path("pki/gateway.pem"));
  ASSERT_NE(new_pem, old_pem);

  ASSERT_TRUE(Eventually(absl::Seconds(10), [&] {
    v1::QueryResponse rotated;
    std::string now_presented;
    return fed_->QueryWith(Creds("alice"), "exact", kTotal, &rotated,
                           &now_presented)
               .ok() &&
           rotated.complete() && now_presented == new_pem;
  })) << fed_->gateway().Log();
  EXPECT_EQ(fed_->gateway().pid(), pid);
  EXPECT_TRUE(fed_->gateway().running());
}

// The researcher CLI pointed at a node (which holds a valid federation server
// certificate): the handshake fails with the identity mismatch before any
// request is sent (a request would have reached the node and been answered
// UNIMPLEMENTED). The audit CLI likewise, for the gateway and for a node.
TEST_F(IdentityTest, ClientsPointedAtTheWrongServerFailTheHandshake) {
  StartDefaultNodes();
  absl::Status st = fed_->StartGateway(TestPolicy());
  ASSERT_TRUE(st.ok()) << st;
  const std::vector<std::string> alice = {
      "--ca",          fed_->Path("pki/ca.pem"),
      "--cert",        fed_->Path("pki/alice.pem"),
      "--key",         fed_->Path("pki/alice.key"),
      "--server-name", "localhost"};
  auto query_at = [&](const std::string& address) {
    std::vector<std::string> argv = {PasserelleBin(), "query",     "--gateway",
                                     address,         "--project", "exact"};
    argv.insert(argv.end(), alice.begin(), alice.end());
    argv.push_back(kTotal);
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  };
  // Control: the gateway's address.
  CommandResult ok = query_at(fed_->Address("gateway"));
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;

  CommandResult r = query_at(fed_->Address("fr"));
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "identity mismatch")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "spiffe://passerelle/site/fr/node"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "expected spiffe://passerelle/gateway"))
      << r.err;
  EXPECT_FALSE(absl::StrContains(absl::AsciiStrToLower(r.err), "unimplemented"))
      << r.err;

  // The auditor's CLI: --gateway at a node's address, --node at another
  // site's node, --node at the gateway.
  auto audit = [&](std::vector<std::string> connection) {
    std::vector<std::string> argv = {PasserelleBin(),
                                     "audit",
                                     "checkpoint",
                                     "--ca",
                                     fed_->Path("pki/ca.pem"),
                                     "--cert",
                                     fed_->Path("pki/dora.pem"),
                                     "--key",
                                     fed_->Path("pki/dora.key"),
                                     "--server-name",
                                     "localhost"};
    argv.insert(argv.end(), connection.begin(), connection.end());
    absl::StatusOr<CommandResult> c = RunCommand(argv);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : CommandResult();
  };
  for (const std::vector<std::string>& connection :
       std::vector<std::vector<std::string>>{
           {"--gateway", fed_->Address("qc")},
           {"--node", fed_->Address("fr"), "--node-site", "qc"},
           {"--node", fed_->Address("gateway"), "--node-site", "fr"}}) {
    SCOPED_TRACE(absl::StrJoin(connection, " "));
    CommandResult c = audit(connection);
    EXPECT_NE(c.exit_code, 0) << c.out;
    EXPECT_TRUE(absl::StrContains(c.err, "identity mismatch")) << c.err;
  }
  // --node without the site it must be: refused before dialling.
  CommandResult c = audit({"--node", fed_->Address("fr")});
  EXPECT_EQ(c.exit_code, 2) << c.err;
  EXPECT_TRUE(absl::StrContains(c.err, "--node-site")) << c.err;
}

// The gateway configured with site qc's address pointing at fr's node (or at
// the gateway's own port, another holder of a federation server
// certificate): the handshake fails, qc is reported failed with the reason,
// and the answer is partial; fr still answers.
TEST_F(IdentityTest, GatewayRefusesAServerPosingAsASite) {
  StartDefaultNodes();
  // Another holder of a federation server certificate: a server presenting
  // the gateway's own certificate, in this process.
  tls::TlsFiles files;
  files.ca_file = fed_->Path("pki/ca.pem");
  files.cert_file = fed_->Path("pki/gateway.pem");
  files.key_file = fed_->Path("pki/gateway.key");
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      tls::MakeServerCredentials(files);
  ASSERT_TRUE(creds.ok()) << creds.status();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", *creds, &port);
  v1::NodeService::Service unimplemented;  // A server needs a service.
  builder.RegisterService(&unimplemented);
  std::unique_ptr<grpc::Server> other = builder.BuildAndStart();
  ASSERT_NE(other, nullptr);
  ASSERT_NE(port, 0);

  for (const std::string& address : std::vector<std::string>{
           fed_->Address("fr"), absl::StrCat("127.0.0.1:", port)}) {
    SCOPED_TRACE(address);
    GatewayOptions options;
    options.site_address["qc"] = address;
    absl::Status st = fed_->StartGateway(TestPolicy(), options);
    ASSERT_TRUE(st.ok()) << st;
    v1::QueryResponse r;
    grpc::Status g = fed_->Query("exact", kTotal, &r);
    ASSERT_TRUE(g.ok()) << g.error_message();
    EXPECT_FALSE(r.complete());
    const v1::SiteResult* qc = SiteOf(r, "qc");
    ASSERT_NE(qc, nullptr);
    EXPECT_EQ(qc->status(), v1::SITE_STATUS_FAILED) << qc->reason();
    EXPECT_TRUE(absl::StrContains(qc->reason(), "identity mismatch"))
        << qc->reason();
    EXPECT_TRUE(
        absl::StrContains(qc->reason(), "spiffe://passerelle/site/qc/node"))
        << qc->reason();
    EXPECT_EQ(qc->cells_size(), 0);
    EXPECT_TRUE(NoteNames(r, "qc"));
    ASSERT_NE(SiteOf(r, "fr"), nullptr);
    EXPECT_EQ(SiteOf(r, "fr")->status(), v1::SITE_STATUS_OK);
    EXPECT_TRUE(LogShows(fed_->gateway(), 0, "identity mismatch"))
        << fed_->gateway().Log();
    fed_->StopGateway();
    std::error_code ec;
    std::filesystem::remove_all(fed_->Path("gateway"), ec);
  }
  other->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace passerelle::testing
