// Audit logs cannot be flooded (architecture invariant 8): a certificate
// holder (carol, a member of nothing) sends the gateway, a node directly and
// the gateway's audit service requests with multi-megabyte and
// just-under-the-transport-limit project, purpose, query, site and request
// id fields, in a loop. Every entry of the gateway's and both nodes' logs
// stays within limits::kMaxAuditEntryBytes, the logs grow by a bounded
// number of entries (refusals beyond the per-identity rate become one
// summary entry), remote verification still succeeds, alice is still
// answered, and the gateway restarts over the flooded log holding one
// recovery key per budget charge, not per entry.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/limits.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "passerelle/v1/audit_service.grpc.pb.h"
#include "passerelle/v1/gateway.grpc.pb.h"
#include "passerelle/v1/node.grpc.pb.h"
#include "query/parser.h"
#include "tests/federation.h"

namespace passerelle::testing {
namespace {

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
    auditors: "spiffe://passerelle/user/erin"
    disclosure { min_cell_size: 1 exact_mode_allowed: true }
  }
)pb";

// Under the servers' receive limit (reaches the handlers) and far over it
// (refused by the transport).
const size_t kNear = 200 * 1024;
const size_t kHuge = 3 * 1024 * 1024;
// The refusal rate limit's burst (common/refusal_limiter.h defaults).
constexpr int kBurst = 20;

struct LogEntry {
  uint64_t index = 0;
  std::string bytes;
};

class FloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_ = std::make_unique<Federation>(dir_.path());
    absl::Status st = Prepare();
    ASSERT_TRUE(st.ok()) << st;
  }
  void TearDown() override { fed_->StopAll(); }

  absl::Status Prepare() {
    PASSERELLE_RETURN_IF_ERROR(fed_->MintPki());
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
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("fr", 150, 31));
    PASSERELLE_RETURN_IF_ERROR(fed_->GenerateSite("qc", 150, 32));
    NodeOptions fr;
    fr.site_policy = kSiteFr;
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("fr", fr));
    NodeOptions qc;
    qc.site_policy = kSiteQc;
    PASSERELLE_RETURN_IF_ERROR(fed_->StartNode("qc", qc));
    return StartGateway();
  }
  absl::Status StartGateway() { return fed_->StartGateway(TestPolicy()); }
  static absl::Status Run(const std::vector<std::string>& argv) {
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    if (!r.ok()) return r.status();
    if (r->exit_code != 0) {
      return absl::InternalError(
          absl::StrCat(argv[0], " ", argv[1], " failed: ", r->err));
    }
    return absl::OkStatus();
  }

  std::string Address(const std::string& process) {
    const std::string port(
        absl::StripAsciiWhitespace(ReadFile(fed_->Path(process + "/port"))));
    return absl::StrCat("127.0.0.1:", port);
  }
  // One connection per (process, user), reused by the loops.
  std::shared_ptr<grpc::Channel> Channel(const std::string& process,
                                         const std::string& user) {
    std::shared_ptr<grpc::Channel>& channel = channels_[{process, user}];
    if (channel == nullptr) {
      absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
          fed_->Credentials(
              user, process == "gateway" ? kGatewayId : NodeId(process));
      EXPECT_TRUE(creds.ok()) << creds.status();
      grpc::ChannelArguments args;
      args.SetSslTargetNameOverride("localhost");
      channel = grpc::CreateCustomChannel(Address(process), *creds, args);
    }
    return channel;
  }
  static void Deadline(grpc::ClientContext* context) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
  }

  // `passerelle audit verify` of a running server's log, as `user`.
  CommandResult VerifyRemotely(const std::string& user,
                               const std::string& process) {
    std::vector<std::string> argv = {
        PasserelleBin(),
        "audit",
        "verify",
        "--public-key",
        fed_->Path("pki/audit-" + process + ".pub"),
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
    if (process != "gateway") {
      argv.push_back("--node-site");
      argv.push_back(process);
    }
    absl::StatusOr<CommandResult> r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult();
  }

  // Every entry of a log, from `passerelle audit export --store` (JSON
  // Lines with each entry's bytes in base64).
  std::vector<LogEntry> Entries(const std::string& log) {
    absl::StatusOr<CommandResult> r =
        RunCommand({PasserelleBin(), "audit", "export", "--store",
                    fed_->Path(log + "/audit")});
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<LogEntry> out;
    if (!r.ok()) return out;
    EXPECT_EQ(r->exit_code, 0) << r->err;
    // Parsed by hand, not with std::regex (which recurses per character and
    // would overflow the stack on a flooded log's multi-megabyte rows).
    const std::string index_key = "{\"index\":";
    const std::string entry_key = "\"entry_base64\":\"";
    for (absl::string_view line : absl::StrSplit(r->out, '\n')) {
      if (!absl::ConsumePrefix(&line, index_key)) continue;
      LogEntry& e = out.emplace_back();
      const size_t comma = line.find(',');
      EXPECT_TRUE(absl::SimpleAtoi(line.substr(0, comma), &e.index)) << line;
      const size_t at = line.find(entry_key);
      if (at == absl::string_view::npos) continue;
      absl::string_view b64 = line.substr(at + entry_key.size());
      b64 = b64.substr(0, b64.find('"'));
      EXPECT_TRUE(absl::Base64Unescape(b64, &e.bytes));
    }
    return out;
  }
  void ExpectEveryEntryWithinBound(const std::string& log,
                                   const std::vector<LogEntry>& entries) {
    for (const LogEntry& e : entries) {
      EXPECT_LE(e.bytes.size(), limits::kMaxAuditEntryBytes)
          << log << " entry " << e.index;
    }
  }
  static size_t TotalBytes(const std::vector<LogEntry>& entries) {
    size_t n = 0;
    for (const LogEntry& e : entries) n += e.bytes.size();
    return n;
  }

  // One request with `field` set to `size` bytes; returns the status code.
  grpc::StatusCode FloodGateway(const std::string& field, size_t size,
                                const std::string& user = "carol") {
    auto stub = v1::GatewayService::NewStub(Channel("gateway", user));
    grpc::ClientContext context;
    Deadline(&context);
    const std::string big(size, 'F');
    if (field == "budget") {
      v1::BudgetRequest request;
      request.set_project(big);
      v1::BudgetResponse response;
      return stub->Budget(&context, request, &response).error_code();
    }
    v1::QueryRequest request;
    request.set_project("exact");
    request.set_purpose("DUO:0000006");
    request.set_text("condition icd10:E11*");
    if (field == "project") request.set_project(big);
    if (field == "purpose") request.set_purpose(big);
    if (field == "text") request.set_text("condition icd10:E11* and " + big);
    if (field == "site") request.add_sites(big);
    v1::QueryResponse response;
    return stub->Query(&context, request, &response).error_code();
  }
  grpc::StatusCode FloodNode(const std::string& site, const std::string& user,
                             size_t size) {
    auto stub = v1::NodeService::NewStub(Channel(site, user));
    grpc::ClientContext context;
    Deadline(&context);
    v1::CountRequest request;
    request.set_request_id(std::string(size, 'R'));
    request.set_project(std::string(size / 8, 'P'));
    *request.mutable_query() = *query::ParseQuery("condition icd10:E11*");
    request.set_min_cell_size(1);
    v1::CountResponse response;
    return stub->Count(&context, request, &response).error_code();
  }
  grpc::StatusCode FloodAuditService(size_t size) {
    auto stub = v1::AuditService::NewStub(Channel("gateway", "carol"));
    grpc::ClientContext context;
    Deadline(&context);
    v1::AuditSearchRequest request;
    request.set_project(std::string(size / 2, 'S'));
    request.set_caller(std::string(size / 2, 'C'));
    v1::AuditEntriesResponse response;
    return stub->SearchEntries(&context, request, &response).error_code();
  }

  TempDir dir_;
  std::unique_ptr<Federation> fed_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>>
      channels_;
};

TEST_F(FloodTest, NoRequestOfAnySizeFloodsAnAuditLog) {
  v1::QueryResponse answer;
  grpc::Status alice = fed_->Query("exact", "condition icd10:E11*", &answer);
  ASSERT_TRUE(alice.ok()) << alice.error_message();
  const size_t gateway_before = Entries("gateway").size();
  const size_t fr_before = Entries("fr").size();

  // Far over the receive limit: refused by the transport, nothing recorded.
  for (const std::string field : {"project", "purpose", "text", "site"}) {
    EXPECT_EQ(FloodGateway(field, kHuge), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << field;
  }
  EXPECT_EQ(FloodNode("fr", "carol", kHuge),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(FloodAuditService(kHuge), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Entries("gateway").size(), gateway_before);

  // Just under it, in a loop: INVALID_ARGUMENT naming the field, recorded
  // in full up to the burst, then RESOURCE_EXHAUSTED and only counted.
  const std::vector<std::string> fields = {"project", "purpose", "text", "site",
                                           "budget"};
  int invalid = 0, exhausted = 0;
  for (int round = 0; round < 8; ++round) {
    for (const std::string& field : fields) {
      const grpc::StatusCode code = FloodGateway(field, kNear);
      if (code == grpc::StatusCode::INVALID_ARGUMENT) ++invalid;
      if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
    }
  }
  // The burst, and the odd token refilled while the loop runs (0.5/s).
  EXPECT_GE(invalid, kBurst);
  EXPECT_LT(invalid, 8 * 5);
  EXPECT_EQ(invalid + exhausted, 8 * 5);
  // Straight to a node (carol is not a caller of the site): refused; her
  // fields are never recorded, and beyond the burst not even the refusal.
  int denied = 0;
  for (int i = 0; i < 30; ++i) {
    const grpc::StatusCode code = FloodNode("fr", "carol", kNear);
    if (code == grpc::StatusCode::PERMISSION_DENIED)
      ++denied;
    else
      EXPECT_EQ(code, grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  EXPECT_GE(denied, kBurst);
  EXPECT_LT(denied, 30);
  // The gateway's own identity with a malformed request id: refused,
  // recorded bounded.
  EXPECT_EQ(FloodNode("qc", "gateway", kNear),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The audit service's filters.
  EXPECT_EQ(FloodAuditService(kNear), grpc::StatusCode::INVALID_ARGUMENT);

  // The federation keeps answering alice.
  alice = fed_->Query("exact", "condition icd10:E11* group by sex", &answer);
  ASSERT_TRUE(alice.ok()) << alice.error_message();
  EXPECT_TRUE(answer.complete());

  // Every entry of every log within the bound; growth bounded by the burst.
  const std::vector<LogEntry> gateway = Entries("gateway");
  const std::vector<LogEntry> fr = Entries("fr");
  const std::vector<LogEntry> qc = Entries("qc");
  ExpectEveryEntryWithinBound("gateway", gateway);
  ExpectEveryEntryWithinBound("fr", fr);
  ExpectEveryEntryWithinBound("qc", qc);
  // Carol's recorded refusals and alice's second query, nothing else.
  EXPECT_EQ(gateway.size(), gateway_before + invalid + 1);
  EXPECT_EQ(fr.size(), fr_before + denied + 1);
  // Refusals record a quoted prefix of what was sent, not the value: about
  // a kilobyte each at most, though carol sent 200 KiB per request.
  std::vector<LogEntry> flood(gateway.begin() + gateway_before,
                              gateway.end() - 1);
  EXPECT_LE(TotalBytes(flood), invalid * 1024u);
  for (const LogEntry& e : gateway) {
    EXPECT_FALSE(absl::StrContains(e.bytes, std::string(1024, 'F')))
        << "entry " << e.index << " holds carol's raw field";
  }
  for (const LogEntry& e : fr) {
    EXPECT_FALSE(absl::StrContains(e.bytes, std::string(1024, 'R')))
        << "entry " << e.index << " holds carol's raw request id";
  }

  // Remote verification of every log still succeeds.
  CommandResult v = VerifyRemotely("bob", "gateway");
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_TRUE(absl::StrContains(v.out, "\nOK\n")) << v.out;
  for (const std::string site : {"fr", "qc"}) {
    v = VerifyRemotely("erin", site);
    EXPECT_EQ(v.exit_code, 0) << site << ": " << v.out << v.err;
  }

  // A clean stop records the refusals counted so far as one summary entry
  // per identity; the restart's recovery holds a key per budget charge, not
  // per entry, and alice is answered again.
  fed_->gateway().Signal(SIGTERM);
  EXPECT_EQ(fed_->gateway().Wait(), 0);
  const std::vector<LogEntry> stopped = Entries("gateway");
  // bob's remote verification was logged (every audit read is), then the
  // summary.
  ASSERT_GE(stopped.size(), gateway.size() + 2);
  for (size_t i = gateway.size(); i + 1 < stopped.size(); ++i) {
    EXPECT_TRUE(absl::StrContains(stopped[i].bytes, "user/bob"))
        << "entry " << stopped[i].index << " is not bob's read";
  }
  EXPECT_TRUE(absl::StrContains(stopped.back().bytes, "refusal_summary"));
  EXPECT_TRUE(absl::StrContains(
      stopped.back().bytes,
      absl::StrCat(exhausted, " refused requests from this identity")));
  ASSERT_TRUE(StartGateway().ok());
  const std::string log = ReadFile(fed_->Path("gateway/gateway.log"));
  static const std::regex recovery(
      "recovery: ([0-9]+) audit entries scanned one at a time against "
      "([0-9]+) unrefunded budget charges \\(([0-9]+) keys held\\)");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, recovery)) << log;
  // Read entries are not requests: recovery skips them.
  const size_t reads = stopped.size() - gateway.size() - 1;
  EXPECT_EQ(m[1].str(), absl::StrCat(stopped.size() - reads));
  uint64_t charges = 0, keys = 0;
  ASSERT_TRUE(absl::SimpleAtoi(m[2].str(), &charges));
  ASSERT_TRUE(absl::SimpleAtoi(m[3].str(), &keys));
  EXPECT_LE(keys, charges);
  EXPECT_LE(charges, 2u);  // alice's two queries at most.
  alice = fed_->Query("exact", "condition icd10:E11*", &answer);
  EXPECT_TRUE(alice.ok()) << alice.error_message();
}

}  // namespace
}  // namespace passerelle::testing
