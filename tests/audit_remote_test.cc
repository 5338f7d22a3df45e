// Auditors over mTLS: real gateway and node processes serve their audit logs
// through the AuditService; `passerelle audit ... --gateway/--node/--config`
// verifies them on the client with the public keys the auditors kept.
// Only auditors get in: federation-wide (everything), project (their
// project; the rest withheld), site (the node's log); researchers never.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

constexpr char kPolicy[] = R"pb(
  federation {
    id: "audit-test"
    gateway_identity: "spiffe://passerelle/gateway"
    site { id: "fr" }
    site { id: "qc" }
    member { identity: "spiffe://passerelle/user/dora" role: AUDITOR }
    disclosure { min_cell_size: 1 mechanism: EXACT exact_mode_allowed: true }
    allow {
      domains: [ "condition", "drug" ]
      vocabularies: [ "icd10", "atc" ]
      criteria: [ "sex", "age", "event" ]
      dimensions: [ "sex" ]
    }
  }
  project {
    id: "exact"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/alice" role: RESEARCHER }
    member { identity: "spiffe://passerelle/user/bob" role: AUDITOR }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: EXACT }
  }
  project {
    id: "other"
    purposes: "DUO:0000006"
    member { identity: "spiffe://passerelle/user/carol" role: RESEARCHER }
    valid_from: "2020-01-01"
    valid_until: "2099-12-31"
    sites: [ "fr", "qc" ]
    disclosure { mechanism: EXACT }
  }
)pb";

// Site fr's own policy: the gateway as caller, erin as the site's auditor.
constexpr char kSiteFr[] = R"pb(
  site {
    id: "fr"
    callers: "spiffe://passerelle/gateway"
    auditors: "spiffe://passerelle/user/erin"
    disclosure { min_cell_size: 1 exact_mode_allowed: true }
  }
)pb";
constexpr char kSiteQc[] = R"pb(
  site {
    id: "qc"
    callers: "spiffe://passerelle/gateway"
    disclosure { min_cell_size: 1 exact_mode_allowed: true }
  }
)pb";

class AuditRemoteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    setup_ = new absl::Status(Prepare());
  }
  static absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
    // Each log's key minted up front; the auditors keep the public halves.
    for (const std::string log : {"gateway", "fr", "qc"}) {
      std::filesystem::create_directories(fed_->Path(log));
      const std::string key = fed_->Path(log + "/audit.key");
      PASSERELLE_RETURN_IF_ERROR(Run({"/usr/bin/openssl", "genpkey",
                                      "-algorithm", "ed25519", "-out", key}));
      ::chmod(key.c_str(), 0600);
      PASSERELLE_RETURN_IF_ERROR(
          Run({"/usr/bin/openssl", "pkey", "-in", key, "-pubout", "-out",
               fed_->Path("pki/audit-" + log + ".pub")}));
    }
    for (const auto& [site, seed] :
         {std::pair<std::string, int>{"fr", 21}, {"qc", 22}}) {
      PASSERELLE_RETURN_IF_ERROR(
          Run({PasserelleBin(), "generate", "--patients", "200", "--seed",
               absl::StrCat(seed), "--site", site, "--out",
               fed_->Path("data/" + site)}));
      PASSERELLE_RETURN_IF_ERROR(
          fed_->LoadSite(site, fed_->Path("data/" + site)));
    }
    NodeOptions fr;
    fr.site_policy = kSiteFr;
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("fr", fr));
    NodeOptions qc;
    qc.site_policy = kSiteQc;
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("qc", qc));
    PASSERELLE_RETURN_IF_ERROR(
        fed_->StartGateway(absl::StrCat(kPolicy, kSiteFr, kSiteQc)));
    // Entries: alice's queries (one repeated), carol's, and a refusal.
    v1::QueryResponse response;
    for (const auto& [project, user] :
         std::vector<std::pair<std::string, std::string>>{{"exact", "alice"},
                                                          {"other", "carol"},
                                                          {"exact", "alice"},
                                                          {"other", "carol"}}) {
      grpc::Status st =
          fed_->Query(project, "condition icd10:E11*", &response, user);
      if (!st.ok()) {
        return absl::InternalError(
            absl::StrCat("query by ", user, ": ", st.error_message()));
      }
    }
    grpc::Status denied =
        fed_->Query("exact", "condition icd10:E11*", &response, "bob");
    if (denied.ok()) return absl::InternalError("an auditor ran a query");
    return absl::OkStatus();
  }
  static absl::Status Run(const std::vector<std::string>& argv) {
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(
          absl::StrCat(argv[0], " ", argv[1], " failed: ", r->err));
    }
    return absl::OkStatus();
  }
  void SetUp() override { ASSERT_TRUE(setup_->ok()) << *setup_; }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_;
  }

  static std::string Address(const std::string& process) {
    const std::string port(
        absl::StripAsciiWhitespace(ReadFile(fed_->Path(process + "/port"))));
    return absl::StrCat("127.0.0.1:", port);
  }
  // `passerelle audit ARGS` as `user` against the gateway or a node.
  static CommandResult Audit(const std::string& user,
                             const std::string& process,
                             std::vector<std::string> args) {
    std::vector<std::string> argv = {PasserelleBin(), "audit"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::vector<std::string> conn = {
        process == "gateway" ? "--gateway" : "--node",
        Address(process),
        "--ca",
        fed_->Path("pki/ca.pem"),
        "--cert",
        fed_->Path("pki/" + user + ".pem"),
        "--key",
        fed_->Path("pki/" + user + ".key"),
        "--server-name",
        "localhost"};
    argv.insert(argv.end(), conn.begin(), conn.end());
    // A node must prove its site's identity; the gateway's is the default.
    if (process != "gateway") {
      argv.push_back("--node-site");
      argv.push_back(process);
    }
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  }
  static std::string Key(const std::string& log) {
    return fed_->Path("pki/audit-" + log + ".pub");
  }
  static CommandResult Local(const std::string& log,
                             std::vector<std::string> args) {
    std::vector<std::string> argv = {PasserelleBin(), "audit"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back("--store");
    argv.push_back(fed_->Path(log + "/audit"));
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  }

  static TempDir* dir_;
  static Federation* fed_;
  static absl::Status* setup_;
};
absl::Status* AuditRemoteTest::setup_ = nullptr;
TempDir* AuditRemoteTest::dir_ = nullptr;
Federation* AuditRemoteTest::fed_ = nullptr;

TEST_F(AuditRemoteTest, FederationAuditorVerifiesTheGatewayRemotely) {
  CommandResult r =
      Audit("dora", "gateway", {"verify", "--public-key", Key("gateway")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // The five requests, then dora's reads (each recorded before answering).
  EXPECT_TRUE(absl::StrContains(r.out, "entries: 6 (6 fetched and hashed"))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\nOK\n")) << r.out;
  // The same through a client config file.
  const std::string config = fed_->Path("dora-client.textproto");
  WriteFile(config, absl::StrCat("gateway: \"", Address("gateway"), "\"\n",
                                 "tls_server_name: \"localhost\"\n",
                                 "tls { ca_file: \"", fed_->Path("pki/ca.pem"),
                                 "\" cert_file: \"", fed_->Path("pki/dora.pem"),
                                 "\" key_file: \"", fed_->Path("pki/dora.key"),
                                 "\" }\n"));
  absl::StatusOr<CommandResult> c =
      RunCommand({PasserelleBin(), "audit", "verify", "--config", config,
                  "--public-key", Key("gateway")});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->exit_code, 0) << c->out << c->err;
  // What the server sends equals what the store holds, byte for byte (the
  // store has more by then: the reads of the export itself).
  CommandResult remote =
      Audit("dora", "gateway", {"export", "--public-key", Key("gateway")});
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  CommandResult local = Local("gateway", {"export"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  EXPECT_TRUE(absl::StartsWith(local.out, remote.out)) << remote.out;
  EXPECT_GT(std::count(remote.out.begin(), remote.out.end(), '\n'), 5);
  // The repeat of alice's first query is rendered as such.
  CommandResult search = Audit("dora", "gateway", {"search"});
  EXPECT_EQ(search.exit_code, 0) << search.err;
  EXPECT_TRUE(absl::StrContains(search.out, "repeat_of=0")) << search.out;
  // A key that is not the log's: nothing verifies.
  CommandResult wrong =
      Audit("dora", "gateway", {"verify", "--public-key", Key("fr")});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.out;
  EXPECT_TRUE(absl::StrContains(wrong.out, "FAILED: first bad index 0"))
      << wrong.out;
}

TEST_F(AuditRemoteTest, ResearchersAndOutsidersAreRefused) {
  for (const char* cmd : {"checkpoint", "public-key", "search"}) {
    CommandResult r = Audit("alice", "gateway", {cmd});
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.out;
    EXPECT_TRUE(absl::StrContains(r.err, "PERMISSION_DENIED")) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  CommandResult r =
      Audit("alice", "gateway", {"verify", "--public-key", Key("gateway")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "PERMISSION_DENIED")) << r.err;
  // A site auditor is nobody at the gateway; the federation auditor is
  // nobody at a node; a node without listed auditors has none.
  EXPECT_TRUE(absl::StrContains(Audit("erin", "gateway", {"checkpoint"}).err,
                                "PERMISSION_DENIED"));
  EXPECT_TRUE(absl::StrContains(Audit("dora", "fr", {"checkpoint"}).err,
                                "PERMISSION_DENIED"));
  EXPECT_TRUE(absl::StrContains(Audit("alice", "fr", {"checkpoint"}).err,
                                "PERMISSION_DENIED"));
  EXPECT_TRUE(absl::StrContains(Audit("erin", "qc", {"checkpoint"}).err,
                                "PERMISSION_DENIED"));
}

TEST_F(AuditRemoteTest, ProjectAuditorSeesOnlyTheirProject) {
  CommandResult r =
      Audit("bob", "gateway", {"verify", "--public-key", Key("gateway")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // carol's two entries, and every read entry (outside any project).
  EXPECT_TRUE(absl::StrContains(r.out, " withheld")) << r.out;
  CommandResult search =
      Audit("bob", "gateway", {"search", "--public-key", Key("gateway")});
  EXPECT_EQ(search.exit_code, 0) << search.err;
  std::vector<std::string> lines =
      absl::StrSplit(search.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 3u) << search.out;  // Two queries, one refusal.
  for (const std::string& line : lines) {
    EXPECT_TRUE(absl::StrContains(line, "\texact\t")) << line;
  }
  EXPECT_EQ(Audit("bob", "gateway", {"search", "--project", "other"}).exit_code,
            1);
  CommandResult show = Audit("bob", "gateway", {"show", "1"});
  EXPECT_EQ(show.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(show.err, "outside your audit scope"));
}

TEST_F(AuditRemoteTest, SiteAuditorVerifiesTheNodeAndCrossChecks) {
  CommandResult r = Audit("erin", "fr", {"verify", "--public-key", Key("fr")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "origin: passerelle/site/fr")) << r.out;
  CommandResult remote =
      Audit("erin", "fr", {"export", "--public-key", Key("fr")});
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  // Each served row is the stored entry; locally each answered entry also
  // shows its opened counts, which are never served.
  const std::vector<std::string> local_rows =
      absl::StrSplit(Local("fr", {"export"}).out, '\n', absl::SkipEmpty());
  const std::vector<std::string> remote_rows =
      absl::StrSplit(remote.out, '\n', absl::SkipEmpty());
  ASSERT_LE(remote_rows.size(), local_rows.size());
  for (size_t i = 0; i < remote_rows.size(); ++i) {
    const std::string& row = remote_rows[i];
    EXPECT_FALSE(absl::StrContains(row, "cells_opening")) << row;
    const size_t cut = row.find(",\"record\"");
    ASSERT_NE(cut, std::string::npos) << row;
    EXPECT_TRUE(absl::StartsWith(local_rows[i], row.substr(0, cut)))
        << local_rows[i];
  }
  EXPECT_TRUE(absl::StrContains(local_rows[0], "\"cells_opening\""))
      << local_rows[0];
  // With the stores at hand the gateway's references check out too.
  CommandResult cross = Local(
      "gateway",
      {"crosscheck", "--node-store", fed_->Path("fr/audit"), "--site", "fr"});
  EXPECT_EQ(cross.exit_code, 0) << cross.out << cross.err;
}

TEST_F(AuditRemoteTest, RemoteProofsMatchTheLocalOnes) {
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{
           {"proof", "--index", "0", "--size", "4"},
           {"proof", "--index", "4", "--size", "5"},
           {"consistency", "--from", "1", "--to", "5"},
           {"consistency", "--from", "3", "--to", "4"}}) {
    std::vector<std::string> args = cmd;
    args.push_back("--public-key");
    args.push_back(Key("gateway"));
    CommandResult remote = Audit("dora", "gateway", args);
    EXPECT_EQ(remote.exit_code, 0) << cmd[0] << ": " << remote.err;
    EXPECT_TRUE(absl::StrContains(remote.err, "verified")) << remote.err;
    EXPECT_EQ(remote.out, Local("gateway", cmd).out) << cmd[0];
  }
}

// Issue 18 item 7: a remote auditor of a node (here erin, the site's
// auditor) reads every node entry through the AuditService: nothing served
// carries an exact count, small ones included, yet remote verification
// passes; the site reads and opens its counts locally; and every read,
// refused ones too, is itself an entry of the log naming the reader.
TEST_F(AuditRemoteTest, NodeCountsStayAtTheSiteAndEveryReadIsAudited) {
  // A cohort whose exact count at fr is small (1 to 4): project "exact"
  // releases it as is (minimum cell size 1), so the answer tells us.
  std::string request_id;
  int64_t small = 0;
  for (int age = 20; age <= 90 && small == 0; age += 2) {
    v1::QueryResponse response;
    grpc::Status st =
        fed_->Query("exact",
                    absl::StrCat("condition icd10:E11* and age between ", age,
                                 " and ", age + 1),
                    &response);
    ASSERT_TRUE(st.ok()) << st.error_message();
    for (const v1::SiteResult& site : response.sites()) {
      if (site.site() != "fr" || site.cells_size() != 1) continue;
      const int64_t n = site.cells(0).count();
      if (n >= 1 && n <= 4) {
        small = n;
        request_id = response.request_id();
      }
    }
  }
  ASSERT_GT(small, 0) << "no cohort with a count of 1 to 4 at fr";

  // Everything erin is served: no count, no cells, only commitments.
  CommandResult remote =
      Audit("erin", "fr", {"export", "--public-key", Key("fr")});
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  EXPECT_FALSE(absl::StrContains(remote.out, "\"count\"")) << remote.out;
  EXPECT_FALSE(absl::StrContains(remote.out, "\"cells\"")) << remote.out;
  EXPECT_FALSE(absl::StrContains(remote.out, "cells_opening")) << remote.out;
  EXPECT_TRUE(absl::StrContains(remote.out, request_id)) << remote.out;
  EXPECT_TRUE(absl::StrContains(remote.out, "\"cells_commitment\""));
  for (const std::vector<std::string>& cmd :
       std::vector<std::vector<std::string>>{{"search"}, {"show", "0"}}) {
    CommandResult r = Audit("erin", "fr", cmd);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(absl::StrContains(r.out, "\"count\"")) << r.out;
  }
  // ... and the log verifies remotely from what was served.
  CommandResult verify =
      Audit("erin", "fr", {"verify", "--public-key", Key("fr")});
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  EXPECT_TRUE(absl::StrContains(verify.out, "\nOK\n")) << verify.out;

  // The site, locally: the entry's counts, opened from the commitment.
  CommandResult search = Local("fr", {"search"});
  ASSERT_EQ(search.exit_code, 0) << search.err;
  std::string index;
  for (absl::string_view line : absl::StrSplit(search.out, '\n')) {
    if (absl::StrContains(line, request_id)) {
      index = std::string(line.substr(0, line.find('\t')));
    }
  }
  ASSERT_FALSE(index.empty()) << search.out;
  CommandResult show = Local("fr", {"show", index});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(absl::StrContains(show.out, "\"cells_opening\"")) << show.out;
  EXPECT_TRUE(
      absl::StrContains(show.out, absl::StrCat("\"count\": \"", small, "\"")))
      << show.out;
  CommandResult local_verify =
      Local("fr", {"verify", "--public-key", Key("fr")});
  EXPECT_EQ(local_verify.exit_code, 0) << local_verify.out;
  EXPECT_TRUE(absl::StrContains(local_verify.out, "count commitments opened: "))
      << local_verify.out;

  // Every read left an entry naming its reader: one per RPC, refusals too.
  auto reads = [&](const std::string& log, const std::string& line_part) {
    CommandResult r = Local(log, {"search"});
    int n = 0;
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      n += absl::StrContains(line, line_part);
    }
    return n;
  };
  const std::string erin_reads =
      "\tread\tGetCheckpoint\tallowed\t"
      "spiffe://passerelle/user/erin\t";
  const std::string dora_refused =
      "\tread\tGetCheckpoint\tdenied\t"
      "spiffe://passerelle/user/dora\t";
  const int erin_before = reads("fr", erin_reads);
  const int dora_before = reads("fr", dora_refused);
  EXPECT_GT(erin_before, 0);
  ASSERT_EQ(Audit("erin", "fr", {"checkpoint"}).exit_code, 0);
  EXPECT_EQ(Audit("dora", "fr", {"checkpoint"}).exit_code, 1);
  EXPECT_EQ(reads("fr", erin_reads), erin_before + 1);
  EXPECT_EQ(reads("fr", dora_refused), dora_before + 1);
  // At the gateway too.
  const std::string dora_gateway =
      "\tread\tGetCheckpoint\tallowed\t"
      "spiffe://passerelle/user/dora\t";
  const int gateway_before = reads("gateway", dora_gateway);
  ASSERT_EQ(Audit("dora", "gateway", {"checkpoint"}).exit_code, 0);
  EXPECT_EQ(reads("gateway", dora_gateway), gateway_before + 1);
}

}  // namespace
}  // namespace passerelle::testing
