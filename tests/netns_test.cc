// Two sites on separate hosts: the FR node, the QC node and the gateway each
// in its own Linux network namespace, joined by veth pairs this test
// creates (documentation addresses inside its namespaces; a random IPv6 ULA
// /64 on the one link to the root namespace, where the test asks its
// queries, so the host's own 192.0.2.0/24 and fd00::/64 stay untouched). A
// delaying proxy inside FR's namespace stands in for a slow link (tc netem is
// missing from this kernel); `ip link set ... down` cuts QC off. The answers
// must turn partial naming the site, within its timeout, and whole again once
// the link is back. Needs root and `ip netns`; skips with the reason otherwise.
// Namespaces and links are named per run (pid and a random tag) and removed
// at the end, also on failure; ones left by a killed run are swept.
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <random>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/fault_harness.h"
#include "tests/federation.h"
#include "tests/tcp_proxy.h"

namespace passerelle::testing {
namespace {

constexpr char kTotal[] = "condition icd10:E11* or drug atc:A10*";
constexpr char kNsPrefix[] = "passerelle-test-";
constexpr absl::Duration kSlack = absl::Milliseconds(1500);

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

absl::Status Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {IpBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    std::string cmd = "ip";
    for (const std::string& a : args) absl::StrAppend(&cmd, " ", a);
    return absl::FailedPreconditionError(
        absl::StrCat(cmd, ": ", r->err, r->out));
  }
  return absl::OkStatus();
}

// Whether `pid` runs (a zombie, a killed run not yet reaped, does not).
bool Alive(pid_t pid) {
  if (kill(pid, 0) != 0) return false;
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ||
         stat[paren + 2] != 'Z';
}

// Removes namespaces left by earlier runs whose process is gone.
void SweepStale() {
  absl::StatusOr<CommandResult> r = RunCommand({IpBinary(), "netns", "list"});
  if (!r.ok()) return;
  static const std::regex re("^passerelle-test-([0-9]+)-[0-9a-f]+-[a-z]+");
  for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
    const std::string l(line);
    std::smatch m;
    if (!std::regex_search(l, m, re)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(m[1].str()));
    if (pid == getpid() || Alive(pid)) continue;
    const std::string name = l.substr(0, l.find(' '));
    (void)Ip({"netns", "del", name});
  }
}

// Three namespaces (gw, fr, qc) and their links. Deleting a namespace
// deletes the veth ends inside it, and so the pairs.
class Topology {
 public:
  Topology() {
    std::random_device rd;
    tag_ = absl::StrFormat("%06x", rd() & 0xffffff);
    prefix_ = absl::StrCat(kNsPrefix, getpid(), "-", tag_, "-");
    // The one link in the root namespace gets a random IPv6 ULA /64: the
    // host's own network (192.0.2.0/24, fd00::/64 here) and concurrent runs
    // are left alone. The other links live inside this run's namespaces.
    ula_ = absl::StrFormat("fd%02x:%04x:%04x", 1 + rd() % 255, rd() & 0xffff,
                           rd() & 0xffff);
  }
  std::string RootAddress() const { return ula_ + "::1"; }
  std::string GatewayAddress() const { return ula_ + "::2"; }
  // host:port for a client or a listener.
  std::string GatewayEndpoint(int port) const {
    return absl::StrCat("[", GatewayAddress(), "]:", port);
  }
  ~Topology() {
    for (const std::string& ns : created_) (void)Ip({"netns", "del", ns});
    for (const std::string& link : root_links_) {
      (void)Ip({"link", "del", link});  // Normally gone with its peer.
    }
  }
  std::string Ns(const std::string& role) const { return prefix_ + role; }
  // Interface names stay under 15 characters: "p" + tag + two letters.
  std::string Link(const std::string& ends) const {
    return absl::StrCat("p", tag_, ends);
  }

  absl::Status Build() {
    for (const std::string role : {"gw", "fr", "qc"}) {
      PASSERELLE_RETURN_IF_ERROR(Ip({"netns", "add", Ns(role)}));
      created_.push_back(Ns(role));
      PASSERELLE_RETURN_IF_ERROR(
          Ip({"-n", Ns(role), "link", "set", "lo", "up"}));
    }
    // gateway <-> fr, gateway <-> qc.
    PASSERELLE_RETURN_IF_ERROR(Pair("gw", Link("gf"), "192.0.2.1/30", "fr",
                                    Link("fg"), "192.0.2.2/30"));
    PASSERELLE_RETURN_IF_ERROR(Pair("gw", Link("gq"), "198.51.100.1/30", "qc",
                                    Link("qg"), "198.51.100.2/30"));
    // The test (root namespace) <-> gateway, to ask the queries.
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"link", "add", Link("rg"), "type", "veth", "peer", "name",
            Link("gr"), "netns", Ns("gw")}));
    root_links_.push_back(Link("rg"));
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"addr", "add", RootAddress() + "/64", "dev", Link("rg"), "nodad"}));
    PASSERELLE_RETURN_IF_ERROR(Ip({"link", "set", Link("rg"), "up"}));
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"-n", Ns("gw"), "addr", "add", GatewayAddress() + "/64", "dev",
            Link("gr"), "nodad"}));
    return Ip({"-n", Ns("gw"), "link", "set", Link("gr"), "up"});
  }

  absl::Status SetLink(const std::string& role, const std::string& link,
                       bool up) {
    return Ip({"-n", Ns(role), "link", "set", link, up ? "up" : "down"});
  }

  std::vector<std::string> Exec(const std::string& role) const {
    return {IpBinary(), "netns", "exec", Ns(role)};
  }

 private:
  absl::Status Pair(const std::string& a, const std::string& a_link,
                    const std::string& a_addr, const std::string& b,
                    const std::string& b_link, const std::string& b_addr) {
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"link", "add", a_link, "netns", Ns(a), "type", "veth", "peer",
            "name", b_link, "netns", Ns(b)}));
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"-n", Ns(a), "addr", "add", a_addr, "dev", a_link}));
    PASSERELLE_RETURN_IF_ERROR(
        Ip({"-n", Ns(b), "addr", "add", b_addr, "dev", b_link}));
    PASSERELLE_RETURN_IF_ERROR(Ip({"-n", Ns(a), "link", "set", a_link, "up"}));
    return Ip({"-n", Ns(b), "link", "set", b_link, "up"});
  }

  std::string tag_;
  std::string prefix_;
  std::string ula_;
  std::vector<std::string> created_;
  std::vector<std::string> root_links_;
};

// Why this machine cannot run the test, or "" when it can.
std::string WhyNot() {
  if (geteuid() != 0) return "needs root for ip netns / veth";
  if (IpBinary().empty()) return "iproute2 (ip) is not installed";
  const std::string probe = absl::StrCat(kNsPrefix, getpid(), "-000000-probe");
  absl::Status st = Ip({"netns", "add", probe});
  if (!st.ok())
    return absl::StrCat("ip netns is not permitted here: ", st.message());
  absl::Status exec = Ip({"netns", "exec", probe, "true"});
  (void)Ip({"netns", "del", probe});
  if (!exec.ok()) {
    return absl::StrCat("ip netns exec is not permitted here: ",
                        exec.message());
  }
  return "";
}

class NetnsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    why_not_ = new std::string(WhyNot());
    if (!why_not_->empty()) return;
    SweepStale();
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("fr", 300, 41));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("qc", 300, 42));
    return absl::OkStatus();
  }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
    delete why_not_;
  }
  void SetUp() override {
    if (!why_not_->empty()) GTEST_SKIP() << *why_not_;
    ASSERT_TRUE(setup_->ok()) << *setup_;
  }

  grpc::Status Ask(absl::Duration deadline, v1::QueryResponse* response,
                   absl::Duration* elapsed = nullptr) {
    const absl::Time start = absl::Now();
    grpc::Status st =
        QueryAt(net_.GatewayEndpoint(gateway_.port), UserCredentials(*fed_),
                "exact", kTotal, deadline, response);
    if (elapsed != nullptr) *elapsed = absl::Now() - start;
    return st;
  }

  static std::string* why_not_;
  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
  // Destroyed in reverse: daemons and the proxy first, then the namespaces.
  Topology net_;
  std::unique_ptr<TcpProxy> fr_link_;
  Daemon fr_;
  Daemon qc_;
  Daemon gateway_;
};
std::string* NetnsTest::why_not_ = nullptr;
TempDir* NetnsTest::dir_ = nullptr;
Federation* NetnsTest::fed_ = nullptr;
absl::Status* NetnsTest::setup_ = nullptr;

TEST_F(NetnsTest, SitesOnSeparateHostsGoPartialOnASlowOrCutLinkAndRecover) {
  const absl::Status built = net_.Build();
  ASSERT_TRUE(built.ok()) << built;

  // FR's node on its host's loopback, reached through the delaying proxy on
  // FR's link address; QC's node straight on its link address.
  DaemonSpec fr_spec;
  fr_spec.prefix = net_.Exec("fr");
  absl::StatusOr<Daemon> fr = StartNodeDaemon(*fed_, "fr", fr_spec);
  ASSERT_TRUE(fr.ok()) << fr.status();
  fr_ = *std::move(fr);
  TcpProxyOptions po;
  po.netns = net_.Ns("fr");
  po.listen_host = "192.0.2.2";
  po.target_port = fr_.port;
  absl::StatusOr<std::unique_ptr<TcpProxy>> proxy = TcpProxy::Start(po);
  ASSERT_TRUE(proxy.ok()) << proxy.status();
  fr_link_ = *std::move(proxy);

  DaemonSpec qc_spec;
  qc_spec.prefix = net_.Exec("qc");
  qc_spec.listen = "198.51.100.2:0";
  absl::StatusOr<Daemon> qc = StartNodeDaemon(*fed_, "qc", qc_spec);
  ASSERT_TRUE(qc.ok()) << qc.status();
  qc_ = *std::move(qc);

  // Certificates carry DNS:localhost; the gateway checks that name
  // (tls_server_name) whatever address it dials.
  GatewaySpec spec;
  spec.prefix = net_.Exec("gw");
  spec.listen = net_.GatewayEndpoint(0);
  spec.retry_initial_backoff_ms = 50;
  spec.retry_max_backoff_ms = 200;
  spec.retry_max_attempts = 50;
  spec.sites = {{"fr", fr_link_->address(), 1000},
                {"qc", absl::StrCat("198.51.100.2:", qc_.port), 1500}};
  absl::StatusOr<Daemon> gw = StartGatewayDaemon(*fed_, TestPolicy(), spec);
  ASSERT_TRUE(gw.ok()) << gw.status();
  gateway_ = *std::move(gw);

  v1::QueryResponse whole;
  grpc::Status st = Ask(absl::Seconds(20), &whole);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_TRUE(whole.complete());
  ASSERT_EQ(whole.combined_size(), 1);

  // A slow link under FR's timeout: still whole, and visibly slower.
  fr_link_->SetDelay(absl::Milliseconds(150));
  v1::QueryResponse slow;
  absl::Duration elapsed;
  st = Ask(absl::Seconds(20), &slow, &elapsed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_TRUE(slow.complete());
  EXPECT_GE(elapsed, absl::Milliseconds(300));  // There and back.

  // Slower than FR's 1 s timeout: partial, naming fr, in about 1 s.
  fr_link_->SetDelay(absl::Milliseconds(700));
  v1::QueryResponse late;
  st = Ask(absl::Seconds(20), &late, &elapsed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(late.complete());
  ASSERT_NE(FindSite(late, "fr"), nullptr);
  EXPECT_EQ(FindSite(late, "fr")->status(), v1::SITE_STATUS_TIMED_OUT);
  EXPECT_EQ(FindSite(late, "qc")->status(), v1::SITE_STATUS_OK);
  EXPECT_LT(elapsed, absl::Milliseconds(1000) + kSlack);
  fr_link_->SetDelay(absl::ZeroDuration());

  // QC's link cut at the gateway's end: partial, naming qc.
  ASSERT_TRUE(net_.SetLink("gw", net_.Link("gq"), false).ok());
  v1::QueryResponse cut;
  st = Ask(absl::Seconds(20), &cut, &elapsed);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_FALSE(cut.complete());
  ASSERT_NE(FindSite(cut, "qc"), nullptr);
  EXPECT_NE(FindSite(cut, "qc")->status(), v1::SITE_STATUS_OK);
  EXPECT_FALSE(FindSite(cut, "qc")->reason().empty());
  EXPECT_EQ(FindSite(cut, "fr")->status(), v1::SITE_STATUS_OK);
  EXPECT_LT(elapsed, absl::Milliseconds(1500) + kSlack);
  bool noted = false;
  for (const std::string& n : cut.notes()) {
    noted |= n.find("PARTIAL: site qc") != std::string::npos;
  }
  EXPECT_TRUE(noted);

  // Link back: whole again (TCP retransmits or a new connection), with the
  // same combined count as before the faults.
  ASSERT_TRUE(net_.SetLink("gw", net_.Link("gq"), true).ok());
  v1::QueryResponse back;
  EXPECT_TRUE(WaitUntil(
      [&] {
        back.Clear();
        return Ask(absl::Seconds(5), &back).ok() && back.complete();
      },
      absl::Seconds(25)));
  ASSERT_EQ(back.combined_size(), 1);
  EXPECT_EQ(back.combined(0).count(), whole.combined(0).count());
}

}  // namespace
}  // namespace passerelle::testing
