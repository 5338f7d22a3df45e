#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"
#include "gtest/gtest.h"
#include "passerelle/v1/node.grpc.pb.h"

namespace passerelle::tls {
namespace {

using ::testing::HasSubstr;

constexpr char kAlice[] = "spiffe://passerelle/user/alice";
constexpr char kNodeFr[] = "spiffe://passerelle/site/fr/node";
// Deadlines: generous for calls that should succeed (a loaded CI machine),
// short for calls expected to be refused (those fail fast anyway).
constexpr int kDeadlineSec = 10;
constexpr int kRefusedDeadlineSec = 2;

// Single-quotes `s` for /bin/sh.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs `command` through the shell; OK when it exits 0, otherwise an error
// carrying its combined output.
absl::Status RunShell(const std::string& command) {
  FILE* pipe = popen(("(" + command + ") 2>&1").c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed: " + command);
  std::string output;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` exited with ", rc, ":\n", output));
  }
  return absl::OkStatus();
}

// Runs `command` through the shell; its standard output when it exits 0.
absl::StatusOr<std::string> ShellOutput(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed: " + command);
  std::string output;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("`", command, "` exited with ", rc));
  }
  return output;
}

std::string SourceDir() {
  if (const char* env = std::getenv("PASSERELLE_SOURCE_DIR")) return env;
#ifdef PASSERELLE_SOURCE_DIR_DEFAULT
  return PASSERELLE_SOURCE_DIR_DEFAULT;
#else
  return "";
#endif
}

absl::StatusOr<std::string> MakeTempDir(const std::string& stem) {
  std::string tmpl = ::testing::TempDir() + stem + "_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    return absl::InternalError("mkdtemp failed for " + tmpl);
  }
  return std::string(buf.data());
}

// Records the identity each call's handler saw; answers with it in `site`.
class IdentityService final : public passerelle::v1::NodeService::Service {
 public:
  grpc::Status GetInfo(grpc::ServerContext* context,
                       const passerelle::v1::NodeInfoRequest* /*request*/,
                       passerelle::v1::NodeInfo* response) override {
    absl::StatusOr<std::string> id = PeerIdentity(*context->auth_context());
    absl::MutexLock lock(&mu_);
    seen_.push_back(id.ok() ? *id : id.status().ToString());
    if (!id.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          std::string(id.status().message()));
    }
    response->set_site(*id);
    return grpc::Status::OK;
  }

  std::vector<std::string> Seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

// A NodeService on an ephemeral loopback port.
class TestServer {
 public:
  // Starts with `creds`; port() is 0 when the server could not start.
  explicit TestServer(std::shared_ptr<grpc::ServerCredentials> creds) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(creds), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~TestServer() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(1));
    }
  }

  int port() const { return server_ == nullptr ? 0 : port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port()); }
  std::vector<std::string> Seen() const { return service_.Seen(); }

 private:
  IdentityService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

struct CallResult {
  grpc::Status status;
  std::string site;  // The identity the server echoed back.
};

// One GetInfo call to `address`, verifying the server as `server_name`.
CallResult Call(const std::string& address,
                std::shared_ptr<grpc::ChannelCredentials> creds,
                const std::string& server_name = "localhost",
                int deadline_sec = kDeadlineSec) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(server_name);
  auto stub = passerelle::v1::NodeService::NewStub(
      grpc::CreateCustomChannel(address, std::move(creds), args));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(deadline_sec));
  passerelle::v1::NodeInfo info;
  CallResult result;
  result.status =
      stub->GetInfo(&context, passerelle::v1::NodeInfoRequest(), &info);
  result.site = info.site();
  return result;
}

std::string ReadAll(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), f)) out.append(buf, n);
  std::fclose(f);
  return out;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setup_error_ = new std::string;
    pki_ = new std::string;
    foreign_ = new std::string;
    absl::Status status = MintAll();
    if (!status.ok()) *setup_error_ = status.ToString();
  }

  static void TearDownTestSuite() {
    std::error_code ec;
    for (std::string* dir : {pki_, foreign_}) {
      if (!dir->empty()) std::filesystem::remove_all(*dir, ec);
    }
    delete setup_error_;
    delete pki_;
    delete foreign_;
  }

  void SetUp() override { ASSERT_EQ(*setup_error_, "") << "PKI set-up failed"; }

  static std::string MintCommand() {
    return "bash " + ShellQuote(SourceDir() + "/deploy/pki/mint.sh");
  }

  // Mints the federation PKI (one site, two users), two CA-signed leaves
  // without a spiffe identity, and revokes bob. ctest runs every test in its
  // own process, so this is kept small.
  static absl::Status MintAll() {
    if (SourceDir().empty()) {
      return absl::FailedPreconditionError(
          "PASSERELLE_SOURCE_DIR is not set (run through ctest)");
    }
    PASSERELLE_ASSIGN_OR_RETURN(*pki_, MakeTempDir("passerelle_tls_pki"));
    const std::string mint = MintCommand();
    const std::string dir = ShellQuote(*pki_);
    PASSERELLE_RETURN_IF_ERROR(RunShell(
        absl::StrCat(mint, " ", dir, " --local --sites fr --users 'alice bob'",
                     " && ", mint, " ", dir, " --revoke bob")));
    // Leaves mint.sh refuses to issue, signed by the federation CA straight
    // from openssl: no subjectAltName at all; a URI SAN that is no spiffe
    // ID; CN and DNS names that look like identities but no URI SAN; two
    // URI SANs; an identity of a foreign trust domain (client and server).
    PASSERELLE_RETURN_IF_ERROR(RawLeaf("nosan", 4242, ""));
    PASSERELLE_RETURN_IF_ERROR(
        RawLeaf("weburi", 4243, "URI:https://passerelle/user/x"));
    PASSERELLE_RETURN_IF_ERROR(RawLeaf(
        "dnsid", 4244, "DNS:spiffe://passerelle/user/alice,DNS:localhost",
        "spiffe://passerelle/user/alice"));
    PASSERELLE_RETURN_IF_ERROR(RawLeaf(
        "twouri", 4245,
        "URI:spiffe://passerelle/user/alice,URI:spiffe://passerelle/gateway,"
        "DNS:localhost"));
    PASSERELLE_RETURN_IF_ERROR(
        RawLeaf("foreigntd", 4246, "URI:spiffe://elsewhere/user/alice"));
    return RawLeaf("foreigntd-node", 4247,
                   "URI:spiffe://elsewhere/site/fr/node,DNS:localhost");
  }

  // A leaf NAME.pem/.key of the federation CA with subjectAltName `san`
  // (none when empty) and common name `cn` (default NAME), for both client
  // and server use.
  static absl::Status RawLeaf(const std::string& name, int serial,
                              const std::string& san,
                              const std::string& cn = "") {
    const std::string ext = san.empty() ? "" : "subjectAltName=" + san + "\n";
    return RunShell(absl::StrCat(
        "cd ", ShellQuote(*pki_), " && umask 077",
        " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
        " -out ", name, ".key && openssl req -new -key ", name, ".key",
        " -subj ",
        ShellQuote("/O=Passerelle/CN=" +
                   absl::StrReplaceAll(cn.empty() ? name : cn, {{"/", "\\/"}})),
        " -out ", name, ".csr && printf ",
        ShellQuote("extendedKeyUsage=serverAuth,clientAuth\n" + ext), " > ",
        name, ".ext && openssl x509 -req -in ", name,
        ".csr -CA ca.pem -CAkey ca.key -set_serial ", serial,
        " -days 1 -extfile ", name, ".ext -out ", name, ".pem"));
  }

  // Mints, on first use, an unrelated PKI with its own CA.
  static absl::Status MintForeign() {
    if (!foreign_->empty()) return absl::OkStatus();
    PASSERELLE_ASSIGN_OR_RETURN(std::string dir,
                                MakeTempDir("passerelle_tls_foreign"));
    *foreign_ = dir;
    return RunShell(MintCommand() + " " + ShellQuote(dir) +
                    " --local --sites fr --users alice");
  }

  static std::string Path(const std::string& name) {
    return *pki_ + "/" + name;
  }
  static std::string ForeignPath(const std::string& name) {
    return *foreign_ + "/" + name;
  }

  // The files of leaf `name` of the federation PKI.
  static TlsFiles Files(const std::string& name, bool with_crl = false) {
    TlsFiles files;
    files.ca_file = Path("ca.pem");
    files.cert_file = Path(name + ".pem");
    files.key_file = Path(name + ".key");
    if (with_crl) files.crl_dir = Path("crl");
    return files;
  }

  static std::shared_ptr<grpc::ServerCredentials> ServerCreds(bool with_crl) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
        MakeServerCredentials(Files("node-fr", with_crl));
    EXPECT_TRUE(creds.ok()) << creds.status();
    return creds.ok() ? *creds : nullptr;
  }

  // `user`'s credentials for a server that must be `server` (fr's node, the
  // server of these tests, by default).
  static std::shared_ptr<grpc::ChannelCredentials> ClientCreds(
      const std::string& user, bool with_crl = false,
      const std::string& server = kNodeFr) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeChannelCredentials(Files(user, with_crl), server);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return creds.ok() ? *creds : nullptr;
  }

  static std::string* setup_error_;
  static std::string* pki_;
  static std::string* foreign_;
};

std::string* TlsTest::setup_error_ = nullptr;
std::string* TlsTest::pki_ = nullptr;
std::string* TlsTest::foreign_ = nullptr;

// ---- CheckTlsFiles --------------------------------------------------------

TEST_F(TlsTest, CheckTlsFilesAcceptsMintedFiles) {
  EXPECT_TRUE(CheckTlsFiles(Files("node-fr")).ok())
      << CheckTlsFiles(Files("node-fr"));
  EXPECT_TRUE(CheckTlsFiles(Files("alice")).ok())
      << CheckTlsFiles(Files("alice"));
}

TEST_F(TlsTest, CheckTlsFilesNamesMissingFile) {
  for (std::string TlsFiles::*field :
       {&TlsFiles::ca_file, &TlsFiles::cert_file, &TlsFiles::key_file}) {
    TlsFiles files = Files("node-fr");
    files.*field = Path("does-not-exist.pem");
    absl::Status status = CheckTlsFiles(files);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(Path("does-not-exist.pem")));
  }
  TlsFiles unset = Files("node-fr");
  unset.key_file.clear();
  EXPECT_EQ(CheckTlsFiles(unset).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, CheckTlsFilesNamesFileThatIsNotPem) {
  TlsFiles files = Files("node-fr");
  files.cert_file = Path("ca.cnf");
  absl::Status status = CheckTlsFiles(files);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(Path("ca.cnf")));

  files = Files("node-fr");
  files.key_file = Path("node-fr.pem");  // A certificate, not a key.
  status = CheckTlsFiles(files);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(Path("node-fr.pem")));
}

TEST_F(TlsTest, CheckTlsFilesRejectsKeyOfAnotherCertificate) {
  TlsFiles files = Files("bob");
  files.key_file = Path("alice.key");
  absl::Status status = CheckTlsFiles(files);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(Path("alice.key")));
  EXPECT_THAT(status.message(), HasSubstr(Path("bob.pem")));
  EXPECT_THAT(status.message(), HasSubstr("does not match"));
}

TEST_F(TlsTest, CheckTlsFilesRefusesKeyReadableByGroupOrOthers) {
  // A copy, so the shared PKI keeps its modes.
  const std::string key = Path("node-fr-mode.key");
  TlsFiles files = Files("node-fr");
  files.key_file = key;
  for (const auto& [mode, shown] :
       std::vector<std::pair<std::filesystem::perms, std::string>>{
           {std::filesystem::perms(0644), "0644"},
           {std::filesystem::perms(0640), "0640"},
           {std::filesystem::perms(0604), "0604"},
           {std::filesystem::perms(0620), "0620"}}) {
    std::filesystem::copy_file(
        Path("node-fr.key"), key,
        std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(key, mode);
    absl::Status status = CheckTlsFiles(files);
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(status.message(), HasSubstr(key));
    EXPECT_THAT(status.message(), HasSubstr("mode " + shown));
    EXPECT_FALSE(MakeServerCredentials(files).ok());
    EXPECT_FALSE(
        MakeChannelCredentials(files, "spiffe://passerelle/gateway").ok());
  }
  for (const std::filesystem::perms mode :
       {std::filesystem::perms(0600), std::filesystem::perms(0400)}) {
    std::filesystem::permissions(key, mode);
    EXPECT_TRUE(CheckTlsFiles(files).ok()) << CheckTlsFiles(files);
  }
  std::filesystem::remove(key);
}

TEST_F(TlsTest, CheckTlsFilesRejectsCertificateFromForeignCa) {
  ASSERT_EQ(MintForeign(), absl::OkStatus());
  TlsFiles files = Files("alice");
  files.cert_file = ForeignPath("alice.pem");
  files.key_file = ForeignPath("alice.key");
  absl::Status status = CheckTlsFiles(files);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(ForeignPath("alice.pem")));
  EXPECT_THAT(status.message(), HasSubstr("does not verify"));
  // The same pair is fine against its own CA.
  files.ca_file = ForeignPath("ca.pem");
  EXPECT_TRUE(CheckTlsFiles(files).ok()) << CheckTlsFiles(files);
}

TEST_F(TlsTest, CheckTlsFilesRejectsCertificateWithoutSpiffeId) {
  for (const char* name : {"nosan", "weburi"}) {
    SCOPED_TRACE(name);
    absl::Status status = CheckTlsFiles(Files(name));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(Path(std::string(name) + ".pem")));
    EXPECT_THAT(status.message(), HasSubstr("spiffe"));
  }
}

TEST_F(TlsTest, ChecksLeaveNoOpenSslErrorsBehind) {
  // gRPC's handshakes read this thread's OpenSSL error queue (sync calls
  // poll on the caller's thread); stale entries must not be left there.
  ERR_clear_error();
  ASSERT_TRUE(CheckTlsFiles(Files("node-fr")).ok());
  EXPECT_EQ(ERR_peek_error(), 0u)
      << ERR_error_string(ERR_peek_error(), nullptr);
  ERR_clear_error();
  ASSERT_TRUE(CertificateIdentity(Path("alice.pem")).ok());
  EXPECT_EQ(ERR_peek_error(), 0u)
      << ERR_error_string(ERR_peek_error(), nullptr);
  ERR_clear_error();
  TlsFiles files = Files("bob");
  files.key_file = Path("alice.key");
  ASSERT_FALSE(CheckTlsFiles(files).ok());
  EXPECT_EQ(ERR_peek_error(), 0u)
      << ERR_error_string(ERR_peek_error(), nullptr);
  ERR_clear_error();
  files = Files("alice");
  files.ca_file = Path("alice.pem");  // Not the issuer: verification fails.
  ASSERT_FALSE(CheckTlsFiles(files).ok());
  EXPECT_EQ(ERR_peek_error(), 0u)
      << ERR_error_string(ERR_peek_error(), nullptr);
  ERR_clear_error();
}

TEST_F(TlsTest, MakeCredentialsRefuseBadFiles) {
  TlsFiles files = Files("bob");
  files.key_file = Path("alice.key");
  EXPECT_EQ(MakeServerCredentials(files).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeChannelCredentials(files, kNodeFr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Identities -----------------------------------------------------------

TEST(TlsSpiffeIdTest, AcceptsWellFormedIds) {
  EXPECT_TRUE(IsSpiffeId("spiffe://passerelle/user/alice"));
  EXPECT_TRUE(IsSpiffeId("spiffe://passerelle/site/fr/node"));
  EXPECT_TRUE(IsSpiffeId("spiffe://passerelle/gateway"));
}

TEST(TlsSpiffeIdTest, RejectsMalformedIds) {
  EXPECT_FALSE(IsSpiffeId(""));
  EXPECT_FALSE(IsSpiffeId("http://x/y"));
  EXPECT_FALSE(IsSpiffeId("spiffe://"));
  EXPECT_FALSE(IsSpiffeId("spiffe://td"));
  EXPECT_FALSE(IsSpiffeId("spiffe://td/"));
  EXPECT_FALSE(IsSpiffeId("spiffe:///path"));
  EXPECT_FALSE(IsSpiffeId("spiffe://td/user/al ice"));
  EXPECT_FALSE(IsSpiffeId("spiffe://t d/user"));
  EXPECT_FALSE(IsSpiffeId(" spiffe://td/user"));
  EXPECT_FALSE(IsSpiffeId("spiffe://td/user\n"));
}

TEST_F(TlsTest, CertificateIdentityReadsSpiffeUri) {
  absl::StatusOr<std::string> id = CertificateIdentity(Path("node-fr.pem"));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "spiffe://passerelle/site/fr/node");
  id = CertificateIdentity(Path("alice.pem"));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, kAlice);
}

TEST_F(TlsTest, CertificateIdentityErrors) {
  EXPECT_EQ(CertificateIdentity(Path("nosan.pem")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(CertificateIdentity(Path("weburi.pem")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(CertificateIdentity(Path("missing.pem")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- mTLS over loopback ---------------------------------------------------

TEST_F(TlsTest, MutualTlsCarriesClientIdentity) {
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  CallResult result = Call(server.address(), ClientCreds("alice"));
  ASSERT_TRUE(result.status.ok())
      << result.status.error_code() << ": " << result.status.error_message();
  EXPECT_EQ(result.site, kAlice);
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

TEST_F(TlsTest, RefusesClientFromForeignCa) {
  ASSERT_EQ(MintForeign(), absl::OkStatus());
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  // The client trusts the federation CA (so only the server can object) but
  // presents a certificate issued by another CA.
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadAll(Path("ca.pem"));
  options.pem_cert_chain = ReadAll(ForeignPath("alice.pem"));
  options.pem_private_key = ReadAll(ForeignPath("alice.key"));
  ASSERT_FALSE(options.pem_cert_chain.empty());
  CallResult result = Call(server.address(), grpc::SslCredentials(options),
                           "localhost", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
}

TEST_F(TlsTest, RefusesClientWithoutCertificate) {
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadAll(Path("ca.pem"));
  CallResult result = Call(server.address(), grpc::SslCredentials(options),
                           "localhost", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
}

TEST_F(TlsTest, RefusesRevokedClient) {
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  CallResult bob = Call(server.address(), ClientCreds("bob"), "localhost",
                        kRefusedDeadlineSec);
  EXPECT_EQ(bob.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << bob.status.error_message();
  // Alice, not revoked, still gets through; her client checks the server
  // against the CRL too.
  CallResult alice =
      Call(server.address(), ClientCreds("alice", /*with_crl=*/true));
  EXPECT_TRUE(alice.status.ok()) << alice.status.error_message();
  EXPECT_EQ(alice.site, kAlice);
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

TEST_F(TlsTest, RevocationNeedsCrlDirectory) {
  // Control for RefusesRevokedClient: bob's certificate is otherwise valid,
  // so it is the CRL that refuses him there.
  TestServer server(ServerCreds(/*with_crl=*/false));
  ASSERT_NE(server.port(), 0);
  CallResult bob = Call(server.address(), ClientCreds("bob"));
  EXPECT_TRUE(bob.status.ok()) << bob.status.error_message();
  EXPECT_EQ(bob.site, "spiffe://passerelle/user/bob");
}

TEST_F(TlsTest, ClientRefusesServerNameNotInCertificate) {
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  CallResult result = Call(server.address(), ClientCreds("alice"),
                           "evil.example", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
}

TEST_F(TlsTest, ClientRefusesServerFromForeignCa) {
  ASSERT_EQ(MintForeign(), absl::OkStatus());
  // The server trusts the federation CA (so it would accept alice) but
  // presents a certificate, valid for localhost, issued by another CA.
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = ReadAll(Path("ca.pem"));
  options.pem_key_cert_pairs.push_back({ReadAll(ForeignPath("node-fr.key")),
                                        ReadAll(ForeignPath("node-fr.pem"))});
  TestServer server(grpc::SslServerCredentials(options));
  ASSERT_NE(server.port(), 0);
  CallResult result = Call(server.address(), ClientCreds("alice"), "localhost",
                           kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
}

// ---- Revocation: the CRL directory as it is at each handshake -------------

// A fresh directory under the PKI holding copies of `crl_files` (paths).
std::string CrlDirWith(const std::string& dir,
                       const std::vector<std::string>& crl_files) {
  std::filesystem::create_directories(dir);
  for (const std::string& f : crl_files) {
    std::filesystem::copy_file(
        f, dir + "/" + std::filesystem::path(f).filename().string(),
        std::filesystem::copy_options::overwrite_existing);
  }
  return dir;
}

// Replaces `dir`'s content with a copy of `crl_file`, by a rename.
void ReplaceCrl(const std::string& dir, const std::string& crl_file) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    std::filesystem::remove(e.path());
  }
  std::filesystem::copy_file(crl_file, dir + "/.next");
  std::filesystem::rename(dir + "/.next", dir + "/current.r0");
}

TEST_F(TlsTest, RevocationAppliesWithoutRestart) {
  ASSERT_EQ(
      RunShell(absl::StrCat(MintCommand(), " ", ShellQuote(*pki_),
                            " --issue carol spiffe://passerelle/user/carol")),
      absl::OkStatus());
  // The live directory mint.sh maintains.
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  CallResult before = Call(server.address(), ClientCreds("carol"));
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();

  ASSERT_EQ(RunShell(absl::StrCat(MintCommand(), " ", ShellQuote(*pki_),
                                  " --revoke carol")),
            absl::OkStatus());
  // The next handshake reads the new CRL: no restart, no delay.
  CallResult after = Call(server.address(), ClientCreds("carol"), "localhost",
                          kRefusedDeadlineSec);
  EXPECT_EQ(after.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << after.status.error_message();
  CallResult alice = Call(server.address(), ClientCreds("alice"));
  EXPECT_TRUE(alice.status.ok()) << alice.status.error_message();
  EXPECT_THAT(server.Seen(),
              ::testing::ElementsAre("spiffe://passerelle/user/carol", kAlice));
}

TEST_F(TlsTest, ExpiredCrlRefusesEveryoneUntilAFreshOneIsThere) {
  // A CRL of the federation CA whose nextUpdate has passed.
  ASSERT_EQ(
      RunShell(absl::StrCat("cd ", ShellQuote(*pki_),
                            " && openssl ca -config ca.cnf -gencrl"
                            " -crl_lastupdate 20200101000000Z -crl_nextupdate "
                            "20200102000000Z -out expired.crl.pem")),
      absl::OkStatus());
  const std::string dir = CrlDirWith(Path("crl-expiry"), {Path("ca.crl.pem")});
  TlsFiles files = Files("node-fr");
  files.crl_dir = dir;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(files);
  ASSERT_TRUE(creds.ok()) << creds.status();
  TestServer server(*creds);
  ASSERT_NE(server.port(), 0);
  ASSERT_TRUE(Call(server.address(), ClientCreds("alice")).status.ok());

  // Fail closed on a stale CRL, as OpenSSL's own CRL check does...
  ReplaceCrl(dir, Path("expired.crl.pem"));
  CallResult stale = Call(server.address(), ClientCreds("alice"), "localhost",
                          kRefusedDeadlineSec);
  EXPECT_EQ(stale.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stale.status.error_message();
  // ...and serve again as soon as a fresh one is dropped in (OpenSSL's
  // cached lookup would have kept refusing until a restart).
  ReplaceCrl(dir, Path("ca.crl.pem"));
  CallResult fresh = Call(server.address(), ClientCreds("alice"));
  EXPECT_TRUE(fresh.status.ok()) << fresh.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice, kAlice));
}

TEST_F(TlsTest, CheckTlsFilesChecksTheCrlDirectory) {
  // bob's own certificate is revoked: say so at start-up.
  absl::Status st = CheckTlsFiles(Files("bob", /*with_crl=*/true));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("revoked"));
  // No CRL of the CA at all: every peer would be refused.
  TlsFiles files = Files("node-fr");
  files.crl_dir = CrlDirWith(Path("crl-empty"), {});
  st = CheckTlsFiles(files);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("no current CRL"));
  files.crl_dir = Path("no-such-dir");
  st = CheckTlsFiles(files);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("cannot read CRL directory"));
  // A CRL from another CA with the same name (the foreign PKI's CA has the
  // same subject) is not signed by ours: ignored, so still no CRL.
  ASSERT_EQ(MintForeign(), absl::OkStatus());
  files.crl_dir = CrlDirWith(Path("crl-foreign"), {ForeignPath("ca.crl.pem")});
  st = CheckTlsFiles(files);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("no current CRL"));
}

TEST_F(TlsTest, ClientWithCrlStillChecksServerName) {
  TestServer server(ServerCreds(/*with_crl=*/true));
  ASSERT_NE(server.port(), 0);
  CallResult result = Call(server.address(), ClientCreds("alice", true),
                           "evil.example", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
}

TEST_F(TlsTest, ClientRefusesRevokedServer) {
  ASSERT_EQ(RunShell(absl::StrCat(
                MintCommand(), " ", ShellQuote(*pki_),
                " --issue node-old spiffe://passerelle/site/fr/node server "
                "--local && ",
                MintCommand(), " ", ShellQuote(*pki_), " --revoke node-old")),
            absl::OkStatus());
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(Files("node-old"));
  ASSERT_TRUE(creds.ok()) << creds.status();
  TestServer server(*creds);
  ASSERT_NE(server.port(), 0);
  CallResult checked = Call(server.address(), ClientCreds("alice", true),
                            "localhost", kRefusedDeadlineSec);
  EXPECT_EQ(checked.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << checked.status.error_message();
  // Control: without the CRL the same server is accepted.
  CallResult unchecked = Call(server.address(), ClientCreds("alice"));
  EXPECT_TRUE(unchecked.status.ok()) << unchecked.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

TEST(TlsPeerIdentityTest, UnauthenticatedWithoutTls) {
  TestServer server(grpc::InsecureServerCredentials());
  ASSERT_NE(server.port(), 0);
  CallResult result =
      Call(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << result.status.error_message();
  ASSERT_EQ(server.Seen().size(), 1u);
  EXPECT_THAT(server.Seen()[0], HasSubstr("UNAUTHENTICATED"));
}

// ---- Identity rules: URI SANs only, exactly one, in the trust domain ------

// A certificate with CN and DNS names that look like an identity but no URI
// SAN, with two URI SANs, or with a foreign trust domain carries no
// identity, whatever else is right about it (signed by the federation CA).
TEST_F(TlsTest, IdentityIsExactlyOneSpiffeUriSanInTheTrustDomain) {
  auto id = [](const std::string& name, const std::string& td) {
    return PemCertificateIdentity(ReadAll(Path(name + ".pem")), td);
  };
  ASSERT_TRUE(id("alice", "passerelle").ok())
      << id("alice", "passerelle").status();
  EXPECT_EQ(*id("alice", "passerelle"), kAlice);

  absl::StatusOr<std::string> r = id("dnsid", "passerelle");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(r.status().message(), HasSubstr("no URI SAN"));
  r = id("nosan", "passerelle");
  EXPECT_THAT(r.status().message(), HasSubstr("no URI SAN"));
  r = id("twouri", "passerelle");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(r.status().message(), HasSubstr("2 URI SANs"));
  r = id("weburi", "passerelle");
  EXPECT_THAT(r.status().message(), HasSubstr("not a valid spiffe:// ID"));
  r = id("foreigntd", "passerelle");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(r.status().message(), HasSubstr("not in trust domain"));
  // Without a trust domain the foreign one is a well-formed identity.
  EXPECT_TRUE(id("foreigntd", "").ok());

  EXPECT_EQ(CertificateIdentity(Path("twouri.pem")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(CertificateIdentity(Path("dnsid.pem")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TlsTest, CheckTlsFilesRefusesOwnCertificateWithoutAValidIdentity) {
  for (const char* name : {"dnsid", "twouri"}) {
    SCOPED_TRACE(name);
    absl::Status st = CheckTlsFiles(Files(name));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_THAT(st.message(), HasSubstr(Path(std::string(name) + ".pem")));
  }
  TlsFiles files = Files("foreigntd");
  EXPECT_TRUE(CheckTlsFiles(files).ok());  // Its own trust domain.
  files.trust_domain = "passerelle";
  absl::Status st = CheckTlsFiles(files);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(), HasSubstr("not in trust domain"));
  files = Files("alice");
  files.trust_domain = "Not A Domain";
  EXPECT_EQ(CheckTlsFiles(files).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, TrustDomainIsConfiguredOrThatOfTheOwnCertificate) {
  TlsFiles files = Files("alice");
  EXPECT_EQ(*TrustDomain(files), "passerelle");
  files.trust_domain = "other.example";
  EXPECT_EQ(*TrustDomain(files), "other.example");
  EXPECT_EQ(GatewayIdentity("passerelle"), "spiffe://passerelle/gateway");
  EXPECT_EQ(NodeIdentity("passerelle", "fr"), kNodeFr);
  EXPECT_EQ(TrustDomainOf(kNodeFr), "passerelle");
  EXPECT_EQ(TrustDomainOf("https://passerelle/x"), "");
}

TEST(TlsSpiffeIdTest, FollowsTheSpiffeSyntax) {
  EXPECT_TRUE(IsSpiffeId("spiffe://fed-1.example/site/fr/node"));
  EXPECT_TRUE(IsSpiffeId("spiffe://passerelle/user/Alice_B.c-d"));
  EXPECT_FALSE(IsSpiffeId("spiffe://Passerelle/user/alice"));  // Upper case.
  EXPECT_FALSE(IsSpiffeId("SPIFFE://passerelle/user/alice"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle/user//alice"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle/user/alice/"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle/user/../gateway"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle/./gateway"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle/user/alice@x"));
  EXPECT_FALSE(IsSpiffeId("spiffe://passerelle:443/gateway"));
  EXPECT_FALSE(IsSpiffeId("spiffe://user@passerelle/gateway"));
}

// The attack: a client certificate of the federation CA whose identity is
// ambiguous or forged through a non-URI name. The server refuses it at the
// handshake; its service never sees a call.
TEST_F(TlsTest, ServerRefusesClientsWithoutExactlyOneIdentityInTrustDomain) {
  TestServer server(ServerCreds(/*with_crl=*/false));
  ASSERT_NE(server.port(), 0);
  for (const char* name : {"dnsid", "twouri", "foreigntd", "nosan"}) {
    SCOPED_TRACE(name);
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadAll(Path("ca.pem"));
    options.pem_cert_chain = ReadAll(Path(std::string(name) + ".pem"));
    options.pem_private_key = ReadAll(Path(std::string(name) + ".key"));
    ASSERT_FALSE(options.pem_cert_chain.empty());
    CallResult result = Call(server.address(), grpc::SslCredentials(options),
                             "localhost", kRefusedDeadlineSec);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << result.status.error_message();
  }
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
  // Control: alice over the same kind of credentials gets through.
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadAll(Path("ca.pem"));
  options.pem_cert_chain = ReadAll(Path("alice.pem"));
  options.pem_private_key = ReadAll(Path("alice.key"));
  CallResult alice = Call(server.address(), grpc::SslCredentials(options));
  EXPECT_TRUE(alice.status.ok()) << alice.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

// The attack: a client pointed at a server of the federation that is not
// the one it must reach (fr's node posing as the gateway). The handshake
// fails with the mismatch, and no request reaches the server.
TEST_F(TlsTest, ClientRefusesServerWithAnotherFederationIdentity) {
  TestServer server(ServerCreds(/*with_crl=*/false));
  ASSERT_NE(server.port(), 0);
  CallResult result =
      Call(server.address(),
           ClientCreds("alice", false, "spiffe://passerelle/gateway"),
           "localhost", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
  // Another site's node identity: refused too, with a CRL check as well.
  result = Call(server.address(),
                ClientCreds("alice", true, "spiffe://passerelle/site/qc/node"),
                "localhost", kRefusedDeadlineSec);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
  // Control: the identity it has.
  result = Call(server.address(), ClientCreds("alice", true, kNodeFr));
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

// Servers (CA-signed, valid for localhost) whose certificate carries an
// ambiguous identity, a DNS name that looks like the expected identity, or
// the expected path in a foreign trust domain: refused by the client.
TEST_F(TlsTest, ClientRefusesServerWithoutExactlyOneIdentityInTrustDomain) {
  for (const auto& [name, expected] :
       std::vector<std::pair<std::string, std::string>>{
           {"twouri", kAlice},
           {"dnsid", kAlice},
           {"foreigntd-node", kNodeFr}}) {
    SCOPED_TRACE(name);
    grpc::SslServerCredentialsOptions options(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    options.pem_root_certs = ReadAll(Path("ca.pem"));
    options.pem_key_cert_pairs.push_back(
        {ReadAll(Path(name + ".key")), ReadAll(Path(name + ".pem"))});
    TestServer server(grpc::SslServerCredentials(options));
    ASSERT_NE(server.port(), 0);
    CallResult result =
        Call(server.address(), ClientCreds("bob", false, expected), "localhost",
             kRefusedDeadlineSec);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << result.status.error_message();
    EXPECT_THAT(server.Seen(), ::testing::IsEmpty());
  }
}

TEST_F(TlsTest, ChannelCredentialsNeedAnExpectedIdentityInTheTrustDomain) {
  for (const char* bad : {"", "localhost", "spiffe://elsewhere/gateway",
                          "spiffe://passerelle/"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> c =
        MakeChannelCredentials(Files("alice"), bad);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument)
        << c.status();
  }
}

// ---- CRLs must say when they expire ----------------------------------------

// Writes to `out` a CRL of the federation CA, signed by ca.key, listing
// nothing, with a lastUpdate an hour ago and no nextUpdate (which neither
// mint.sh nor `openssl ca -gencrl` produce).
absl::Status WriteCrlWithoutNextUpdate(const std::string& ca_pem_path,
                                       const std::string& ca_key_path,
                                       const std::string& out) {
  std::unique_ptr<FILE, int (*)(FILE*)> ca_file(
      std::fopen(ca_pem_path.c_str(), "r"), &std::fclose);
  std::unique_ptr<FILE, int (*)(FILE*)> key_file(
      std::fopen(ca_key_path.c_str(), "r"), &std::fclose);
  if (ca_file == nullptr || key_file == nullptr) {
    return absl::InternalError("cannot open the CA files");
  }
  std::unique_ptr<X509, void (*)(X509*)> ca(
      PEM_read_X509(ca_file.get(), nullptr, nullptr, nullptr), &X509_free);
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key(
      PEM_read_PrivateKey(key_file.get(), nullptr, nullptr, nullptr),
      &EVP_PKEY_free);
  std::unique_ptr<X509_CRL, void (*)(X509_CRL*)> crl(X509_CRL_new(),
                                                     &X509_CRL_free);
  std::unique_ptr<ASN1_TIME, void (*)(ASN1_TIME*)> last(
      X509_gmtime_adj(nullptr, -3600), &ASN1_TIME_free);
  if (ca == nullptr || key == nullptr || crl == nullptr || last == nullptr ||
      X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get())) !=
          1 ||
      X509_CRL_set1_lastUpdate(crl.get(), last.get()) != 1 ||
      X509_CRL_sign(crl.get(), key.get(), EVP_sha256()) == 0) {
    ERR_clear_error();
    return absl::InternalError("cannot build the CRL");
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(out.c_str(), "w"),
                                          &std::fclose);
  if (f == nullptr || PEM_write_X509_CRL(f.get(), crl.get()) != 1) {
    ERR_clear_error();
    return absl::InternalError("cannot write " + out);
  }
  return absl::OkStatus();
}

TEST_F(TlsTest, CrlWithoutNextUpdateIsRefused) {
  std::filesystem::create_directories(Path("crl-forever"));
  ASSERT_EQ(WriteCrlWithoutNextUpdate(Path("ca.pem"), Path("ca.key"),
                                      Path("crl-forever/forever.r0")),
            absl::OkStatus());
  TlsFiles files = Files("node-fr");
  files.crl_dir = Path("crl-forever");
  absl::Status st = CheckTlsFiles(files);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(), HasSubstr("no nextUpdate"));
  EXPECT_THAT(st.message(), HasSubstr(Path("crl-forever/forever.r0")));

  // A server started with a good CRL that is then replaced by one without
  // nextUpdate refuses every client rather than trusting it for ever.
  const std::string dir = CrlDirWith(Path("crl-swap"), {Path("ca.crl.pem")});
  files.crl_dir = dir;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(files);
  ASSERT_TRUE(creds.ok()) << creds.status();
  TestServer server(*creds);
  ASSERT_NE(server.port(), 0);
  ASSERT_TRUE(Call(server.address(), ClientCreds("alice")).status.ok());
  ReplaceCrl(dir, Path("crl-forever/forever.r0"));
  CallResult refused = Call(server.address(), ClientCreds("alice"), "localhost",
                            kRefusedDeadlineSec);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.status.error_message();
  EXPECT_THAT(server.Seen(), ::testing::ElementsAre(kAlice));
}

// ---- deploy/pki/mint.sh -----------------------------------------------------

// mint.sh in `dir` with `args`; the exit status and standard error.
struct MintResult {
  int exit_code = -1;
  std::string err;
};
MintResult Mint(const std::string& dir, const std::string& args) {
  MintResult r;
  const std::string err_file = dir + ".mint-err";
  FILE* pipe = popen(
      absl::StrCat("bash ", ShellQuote(SourceDir() + "/deploy/pki/mint.sh"),
                   " ", ShellQuote(dir), " ", args, " 2>", ShellQuote(err_file),
                   " >/dev/null")
          .c_str(),
      "r");
  if (pipe == nullptr) return r;
  const int rc = pclose(pipe);
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.err = ReadAll(err_file);
  std::remove(err_file.c_str());
  return r;
}

TEST_F(TlsTest, MintRejectsInvalidSpiffeIds) {
  for (const char* id :
       {"https://passerelle/user/x", "spiffe://passerelle/user/a%20b",
        "spiffe://Passerelle/user/x", "spiffe://passerelle/user/../gateway",
        "spiffe://passerelle/", "spiffe://passerelle/user//x",
        "spiffe://elsewhere/user/x", "'spiffe://passerelle/user/a b'"}) {
    SCOPED_TRACE(id);
    MintResult r = Mint(*pki_, absl::StrCat("--issue badid ", id));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_THAT(r.err, ::testing::AnyOf(HasSubstr("not a valid SPIFFE ID"),
                                        HasSubstr("trust domain")));
    EXPECT_FALSE(std::filesystem::exists(Path("badid.pem")));
    EXPECT_FALSE(std::filesystem::exists(Path("badid.key")));
  }
  MintResult r = Mint(*pki_, "--issue '../x' spiffe://passerelle/user/x");
  EXPECT_NE(r.exit_code, 0);
  r = Mint(*pki_, "--issue goodid spiffe://passerelle/user/goodid");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*CertificateIdentity(Path("goodid.pem")),
            "spiffe://passerelle/user/goodid");
}

TEST_F(TlsTest, MintNeverOverwritesAnExistingCa) {
  const std::string ca = ReadAll(Path("ca.pem"));
  const std::string key = ReadAll(Path("ca.key"));
  ASSERT_FALSE(key.empty());
  MintResult r = Mint(*pki_, "--local --sites fr --users alice");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("already holds a CA"));
  EXPECT_EQ(ReadAll(Path("ca.pem")), ca);
  EXPECT_EQ(ReadAll(Path("ca.key")), key);
  // Certificates it issued still verify against it.
  EXPECT_TRUE(CheckTlsFiles(Files("alice")).ok());
}

mode_t Mode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

TEST_F(TlsTest, MintCreatesKeysReadableByTheOwnerOnly) {
  absl::StatusOr<std::string> dir = MakeTempDir("passerelle_tls_modes");
  ASSERT_TRUE(dir.ok());
  // Even with a permissive umask in the caller's shell.
  ASSERT_EQ(RunShell(absl::StrCat(
                "umask 000 && ", MintCommand(), " ", ShellQuote(*dir + "/pki"),
                " --sites fr --users alice && ", MintCommand(), " ",
                ShellQuote(*dir + "/pki"),
                " --issue extra spiffe://passerelle/user/extra")),
            absl::OkStatus());
  for (const char* key :
       {"ca.key", "gateway.key", "node-fr.key", "alice.key", "extra.key"}) {
    SCOPED_TRACE(key);
    EXPECT_EQ(Mode(*dir + "/pki/" + key), 0600u);
  }
  EXPECT_EQ(Mode(*dir + "/pki/ca.pem"), 0644u);
  EXPECT_EQ(Mode(*dir + "/pki/alice.pem"), 0644u);
  std::error_code ec;
  std::filesystem::remove_all(*dir, ec);
}

// Server certificates name the hosts clients dial: their own name by
// default, those given with --dns, localhost only with --local.
TEST_F(TlsTest, MintIssuesPerHostDnsNames) {
  absl::StatusOr<std::string> dir = MakeTempDir("passerelle_tls_dns");
  ASSERT_TRUE(dir.ok());
  const std::string pki = *dir + "/pki";
  ASSERT_EQ(Mint(pki,
                 "--sites 'fr qc' --users alice --dns gateway=gw.example.org "
                 "--dns fr=node-fr.example.org,10.0.0.7")
                .exit_code,
            0);
  auto sans = [&](const std::string& name) {
    absl::StatusOr<std::string> out =
        ShellOutput(absl::StrCat("openssl x509 -noout -ext subjectAltName -in ",
                                 ShellQuote(pki + "/" + name + ".pem")));
    return out.ok() ? *out : out.status().ToString();
  };
  EXPECT_THAT(sans("gateway"), HasSubstr("DNS:gw.example.org"));
  EXPECT_THAT(sans("gateway"), ::testing::Not(HasSubstr("localhost")));
  EXPECT_THAT(sans("node-fr"), HasSubstr("DNS:node-fr.example.org"));
  EXPECT_THAT(sans("node-fr"), HasSubstr("IP Address:10.0.0.7"));
  EXPECT_THAT(sans("node-qc"), HasSubstr("DNS:node-qc"));
  EXPECT_THAT(sans("node-qc"), ::testing::Not(HasSubstr("localhost")));
  EXPECT_THAT(sans("alice"), ::testing::Not(HasSubstr("DNS:")));
  ASSERT_EQ(Mint(pki,
                 "--issue node-fr spiffe://passerelle/site/fr/node server "
                 "--dns node-fr.example.org")
                .exit_code,
            0);
  EXPECT_THAT(sans("node-fr"), HasSubstr("DNS:node-fr.example.org"));
  EXPECT_THAT(sans("node-fr"), ::testing::Not(HasSubstr("10.0.0.7")));
  // An unknown name, a bad host list: refused.
  EXPECT_NE(Mint(*dir + "/pki2", "--dns nowhere=x.example.org").exit_code, 0);
  EXPECT_NE(Mint(*dir + "/pki3", "--dns 'gateway=a b'").exit_code, 0);
  std::error_code ec;
  std::filesystem::remove_all(*dir, ec);
}

// Seconds between the lastUpdate and nextUpdate of a PEM CRL.
absl::StatusOr<int64_t> CrlValiditySeconds(const std::string& crl) {
  PASSERELLE_ASSIGN_OR_RETURN(
      std::string out,
      ShellOutput(absl::StrCat(
          "f=", ShellQuote(crl),
          "; echo $(( $(date -d \"$(openssl crl -in \"$f\" -noout -nextupdate"
          " | cut -d= -f2)\" +%s) - $(date -d \"$(openssl crl -in \"$f\""
          " -noout -lastupdate | cut -d= -f2)\" +%s) ))")));
  int64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &v)) {
    return absl::InternalError("not a number: " + out);
  }
  return v;
}

TEST_F(TlsTest, MintRevokeTakesDaysForTheCrl) {
  ASSERT_EQ(Mint(*pki_, "--issue dave spiffe://passerelle/user/dave").exit_code,
            0);
  MintResult r = Mint(*pki_, "--revoke dave --days 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*CrlValiditySeconds(Path("ca.crl.pem")), 3 * 86400);
  r = Mint(*pki_, "--refresh-crl --days 45");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*CrlValiditySeconds(Path("ca.crl.pem")), 45 * 86400);
  EXPECT_NE(Mint(*pki_, "--revoke dave --days zero").exit_code, 0);
  // dave is refused; the CRL in force still covers everyone else.
  absl::Status st = CheckTlsFiles(Files("dave", /*with_crl=*/true));
  EXPECT_THAT(st.message(), HasSubstr("revoked"));
  EXPECT_TRUE(CheckTlsFiles(Files("alice", /*with_crl=*/true)).ok());
}

TEST_F(TlsTest, MintRevokesAReplacedCertificateBySerial) {
  ASSERT_EQ(Mint(*pki_, "--issue erin spiffe://passerelle/user/erin").exit_code,
            0);
  absl::StatusOr<std::string> old_serial =
      ShellOutput(absl::StrCat("openssl x509 -noout -serial -in ",
                               ShellQuote(Path("erin.pem")), " | cut -d= -f2"));
  ASSERT_TRUE(old_serial.ok());
  std::filesystem::copy_file(Path("erin.pem"), Path("erin-old.pem"));
  std::filesystem::copy_file(Path("erin.key"), Path("erin-old.key"));
  // The renewal replaces erin.pem; the old certificate is still valid.
  ASSERT_EQ(Mint(*pki_, "--issue erin spiffe://passerelle/user/erin").exit_code,
            0);
  ASSERT_TRUE(CheckTlsFiles(Files("erin-old", /*with_crl=*/true)).ok());

  MintResult r =
      Mint(*pki_,
           absl::StrCat("--revoke-serial ",
                        absl::StripAsciiWhitespace(*old_serial), " --days 7"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  absl::Status st = CheckTlsFiles(Files("erin-old", /*with_crl=*/true));
  EXPECT_THAT(st.message(), HasSubstr("revoked"));
  // The renewed certificate is not.
  EXPECT_TRUE(CheckTlsFiles(Files("erin", /*with_crl=*/true)).ok());
  EXPECT_EQ(*CrlValiditySeconds(Path("ca.crl.pem")), 7 * 86400);
  // A serial this CA never issued.
  r = Mint(*pki_, "--revoke-serial ABCDEF");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no certificate with serial"));
}

}  // namespace
}  // namespace passerelle::tls
