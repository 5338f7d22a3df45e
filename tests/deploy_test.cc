// Deployment defaults, checked on the built binary and the shipped files:
//   - a node refuses to start with a TLS private key readable by group or
//     others, naming the file and its mode (as for the audit signing key);
//   - a node listens on the configured interface only (127.0.0.2 is not
//     reachable on 127.0.0.1), and a wildcard listen address (every
//     interface) is refused without listen_all_interfaces (node and gateway);
//   - the systemd units set UMask=0077, private state and runtime
//     directories and the usual hardening, and `systemd-analyze verify`
//     accepts them without a warning;
//   - the runtime package list (`scripts/install-deps.sh --list-runtime`)
//     covers every shared library of the binary (ldd, dpkg's file lists);
//   - a build without PASSERELLE_CRASH_POINTS carries no crash point.
// Run: ctest -R 'Deploy|CrashPointBuild|RuntimePackages|SystemdUnits'
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/crash_point.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/federation.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

using ::testing::HasSubstr;

// ---- Node start-up: TLS key mode and listen address -----------------------

// A PKI and a loaded store of site fr, shared by the tests of this suite
// (each node is stopped before the next starts: the store is locked).
class DeployNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    fed_ = new Federation(dir_->path());
    absl::Status s = fed_->MintPki();
    if (s.ok()) s = fed_->GenerateSite("fr", 60, 7);
    if (!s.ok()) setup_error_ = new std::string(s.ToString());
  }
  static void TearDownTestSuite() {
    delete fed_;
    delete dir_;
    delete setup_error_;
    fed_ = nullptr;
    dir_ = nullptr;
    setup_error_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    ::chmod(fed_->Path("pki/node-fr.key").c_str(), 0600);
  }

  // A node config for site fr with `listen` and `extra` lines; its path.
  static std::string WriteNodeConfig(const std::string& listen,
                                     const std::string& extra = "") {
    const std::string config = fed_->Path("fr/deploy-node.textproto");
    std::remove(fed_->Path("fr/deploy-port").c_str());
    WriteFile(
        config,
        absl::StrCat("site: \"fr\"\nlisten: \"", listen, "\"\n", extra,
                     "store_dir: \"", fed_->Path("fr/store"),
                     "\"\naudit_dir: \"", fed_->Path("fr/audit"),
                     "\"\naudit_key_file: \"", fed_->Path("fr/audit.key"),
                     "\"\nallowed_callers: \"spiffe://passerelle/gateway\"\n"
                     "min_cell_size: 1\nport_file: \"",
                     fed_->Path("fr/deploy-port"), "\"\ntls { ca_file: \"",
                     fed_->Path("pki/ca.pem"), "\" cert_file: \"",
                     fed_->Path("pki/node-fr.pem"), "\" key_file: \"",
                     fed_->Path("pki/node-fr.key"), "\" }\n"));
    return config;
  }

  // Starts `passerelle <role> serve --config config`: the port once it
  // listens, or the error with the daemon's log when it exits first.
  static absl::StatusOr<int> Serve(const std::string& role,
                                   const std::string& config,
                                   const std::string& port_file,
                                   std::unique_ptr<Process>* process) {
    absl::StatusOr<Process> p = Process::Start(
        {PasserelleBin(), role, "serve", "--config", config}, config + ".log");
    if (!p.ok()) return p.status();
    *process = std::make_unique<Process>(*std::move(p));
    absl::StatusOr<int> port = WaitForPortFile(port_file, **process);
    if (!port.ok()) {
      const int code = (*process)->Wait();
      return absl::FailedPreconditionError(
          absl::StrCat("exit ", code, ": ", (*process)->Log()));
    }
    return port;
  }

  static TempDir* dir_;
  static Federation* fed_;
  static std::string* setup_error_;
};

TempDir* DeployNodeTest::dir_ = nullptr;
Federation* DeployNodeTest::fed_ = nullptr;
std::string* DeployNodeTest::setup_error_ = nullptr;

// True when a TCP connection to address:port is accepted.
bool Reachable(const std::string& address, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  const bool ok =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return ok;
}

TEST_F(DeployNodeTest, NodeRefusesTlsKeyReadableByOthers) {
  const std::string key = fed_->Path("pki/node-fr.key");
  const std::string config = WriteNodeConfig("127.0.0.1:0");
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  std::unique_ptr<Process> node;
  absl::StatusOr<int> port =
      Serve("node", config, fed_->Path("fr/deploy-port"), &node);
  ASSERT_FALSE(port.ok()) << "the node started with a key file of mode 0644";
  EXPECT_THAT(port.status().message(), HasSubstr("exit 1"));
  EXPECT_THAT(port.status().message(), HasSubstr(key));
  EXPECT_THAT(port.status().message(), HasSubstr("mode 0644"));
  EXPECT_THAT(port.status().message(), HasSubstr("chmod 600"));

  // The same node with the key's mode fixed starts.
  ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
  port = Serve("node", config, fed_->Path("fr/deploy-port"), &node);
  EXPECT_TRUE(port.ok()) << port.status();
}

TEST_F(DeployNodeTest, NodeListensOnlyOnTheConfiguredAddress) {
  std::unique_ptr<Process> node;
  absl::StatusOr<int> port = Serve("node", WriteNodeConfig("127.0.0.2:0"),
                                   fed_->Path("fr/deploy-port"), &node);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_TRUE(Reachable("127.0.0.2", *port));
  EXPECT_FALSE(Reachable("127.0.0.1", *port))
      << "a node configured on 127.0.0.2 answers on 127.0.0.1:" << *port;
}

TEST_F(DeployNodeTest, NodeRefusesEveryInterfaceUnlessConfiguredSo) {
  for (const std::string listen : {"0.0.0.0:0", "[::]:0", ":0", "0:0"}) {
    std::unique_ptr<Process> node;
    absl::StatusOr<int> port = Serve("node", WriteNodeConfig(listen),
                                     fed_->Path("fr/deploy-port"), &node);
    ASSERT_FALSE(port.ok()) << "the node started on " << listen;
    EXPECT_THAT(port.status().message(), HasSubstr(listen));
    EXPECT_THAT(port.status().message(), HasSubstr("every interface"));
    EXPECT_THAT(port.status().message(), HasSubstr("listen_all_interfaces"));
  }
  // Said explicitly, it listens on every interface.
  std::unique_ptr<Process> node;
  absl::StatusOr<int> port = Serve(
      "node", WriteNodeConfig("0.0.0.0:0", "listen_all_interfaces: true\n"),
      fed_->Path("fr/deploy-port"), &node);
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_TRUE(Reachable("127.0.0.1", *port));
  EXPECT_TRUE(Reachable("127.0.0.2", *port));
}

TEST_F(DeployNodeTest, GatewayRefusesEveryInterfaceUnlessConfiguredSo) {
  const std::string config = fed_->Path("deploy-gateway.textproto");
  WriteFile(config, "listen: \"0.0.0.0:8443\"\n");
  std::unique_ptr<Process> gateway;
  absl::StatusOr<int> port =
      Serve("gateway", config, fed_->Path("deploy-gateway-port"), &gateway);
  ASSERT_FALSE(port.ok());
  EXPECT_THAT(port.status().message(), HasSubstr("gateway config"));
  EXPECT_THAT(port.status().message(), HasSubstr("every interface"));
  // With the opt-in the listen address passes; the next missing field is
  // reported instead.
  WriteFile(config, "listen: \"0.0.0.0:8443\"\nlisten_all_interfaces: true\n");
  port = Serve("gateway", config, fed_->Path("deploy-gateway-port"), &gateway);
  ASSERT_FALSE(port.ok());
  EXPECT_THAT(port.status().message(), HasSubstr("ledger_dir is required"));
}

// ---- Crash points compiled out of the production build ---------------------

std::string ReadBinary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The names of every PASSERELLE_CRASH_POINT("...") in the sources.
std::set<std::string> CrashPointNames() {
  std::set<std::string> names;
  const std::regex point(R"re(PASSERELLE_CRASH_POINT\("([a-z_.]+)"\))re");
  for (const char* dir : {"audit", "gateway", "ledger", "node", "policy",
                          "privacy", "query", "tls", "cli", "csv"}) {
    const std::filesystem::path root = std::filesystem::path(SourceDir()) / dir;
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::recursive_directory_iterator(root, ec)) {
      const std::string ext = entry.path().extension().string();
      if (ext != ".cc" && ext != ".h") continue;
      const std::string text = ReadFile(entry.path().string());
      for (std::sregex_iterator it(text.begin(), text.end(), point), end;
           it != end; ++it) {
        names.insert((*it)[1].str());
      }
    }
  }
  return names;
}

// What marks a crash point in a binary: the variable's name, the Hit and
// Armed symbols, the message.
const std::vector<std::string>& Triggers() {
  static const auto* const triggers = new std::vector<std::string>{
      "PASSERELLE_CRASH_AT", "_ZN10passerelle11crash_point3HitEPKc",
      "_ZN10passerelle11crash_point5ArmedEv", "passerelle: crash point "};
  return *triggers;
}

TEST(CrashPointBuildTest, MacroCompilesToNothingWithoutTheOption) {
  const std::string off = ReadBinary(PASSERELLE_CRASH_POINT_PROBE_OFF);
  ASSERT_FALSE(off.empty()) << PASSERELLE_CRASH_POINT_PROBE_OFF;
  EXPECT_EQ(off.find("probe.crash_point.compiled"), std::string::npos);
  for (const std::string& t : Triggers()) {
    EXPECT_EQ(off.find(t), std::string::npos) << t;
  }
  // The same probe built with the option has them all (the check can fail).
  const std::string on_path = PASSERELLE_CRASH_POINT_PROBE_ON;
  if (on_path.empty()) {
    GTEST_SKIP() << "this build has PASSERELLE_CRASH_POINTS=OFF: no probe "
                    "with crash points to compare with";
  }
  const std::string on = ReadBinary(on_path);
  EXPECT_NE(on.find("probe.crash_point.compiled"), std::string::npos);
  for (const std::string& t : Triggers()) {
    EXPECT_NE(on.find(t), std::string::npos) << t;
  }
}

TEST(CrashPointBuildTest, ShippedBinaryHasNoCrashPoint) {
  if (crash_point::kCompiledIn) {
    GTEST_SKIP() << "this is a test build (PASSERELLE_CRASH_POINTS=ON): "
                    "configure with -DPASSERELLE_CRASH_POINTS=OFF "
                    "(scripts/build-release.sh) to check the shipped binary";
  }
  const std::string bin = ReadBinary(PasserelleBin());
  ASSERT_FALSE(bin.empty()) << PasserelleBin();
  for (const std::string& t : Triggers()) {
    EXPECT_EQ(bin.find(t), std::string::npos) << t;
  }
  const std::set<std::string> names = CrashPointNames();
  EXPECT_GE(names.size(), 10u);
  for (const std::string& name : names) {
    EXPECT_EQ(bin.find(name), std::string::npos) << name;
  }
}

TEST(CrashPointBuildTest, TestBuildBinaryHasEveryCrashPoint) {
  if (!crash_point::kCompiledIn) {
    GTEST_SKIP() << "PASSERELLE_CRASH_POINTS=OFF: the binary has none "
                    "(ShippedBinaryHasNoCrashPoint checks it)";
  }
  const std::string bin = ReadBinary(PasserelleBin());
  for (const std::string& t : Triggers()) {
    EXPECT_NE(bin.find(t), std::string::npos) << t;
  }
  const std::set<std::string> names = CrashPointNames();
  EXPECT_GE(names.size(), 10u);
  for (const std::string& name : names) {
    EXPECT_NE(bin.find(name), std::string::npos) << name;
  }
}

// ---- Runtime packages
// --------------------------------------------------------

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (!line.empty()) out.emplace_back(line);
  }
  return out;
}

// `path`, its canonical form, and each on the other side of the /usr merge
// (dpkg records /lib/... or /usr/lib/... as the package shipped it).
std::vector<std::string> PathForms(const std::string& path) {
  std::vector<std::string> forms = {path};
  std::error_code ec;
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (!ec && canonical != path) forms.push_back(canonical);
  for (const std::string& p : std::vector<std::string>(forms)) {
    forms.push_back(absl::StartsWith(p, "/usr/") ? p.substr(4) : "/usr" + p);
  }
  return forms;
}

// The files dpkg lists for the installed `package` (any architecture).
std::set<std::string> PackageFiles(const std::string& package) {
  std::set<std::string> files;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/var/lib/dpkg/info", ec)) {
    const std::string name = entry.path().filename().string();
    if (name == package + ".list" || (absl::StartsWith(name, package + ":") &&
                                      absl::EndsWith(name, ".list"))) {
      for (const std::string& f : Lines(ReadFile(entry.path().string()))) {
        files.insert(f);
      }
    }
  }
  return files;
}

// The package owning `path` (dpkg -S), for the failure message.
std::string OwningPackage(const std::string& path) {
  for (const std::string& p : PathForms(path)) {
    absl::StatusOr<CommandResult> r = RunCommand({"/usr/bin/dpkg", "-S", p});
    if (r.ok() && r->exit_code == 0) return Lines(r->out).front();
  }
  return "no package";
}

TEST(RuntimePackagesTest, ListCoversEveryLibraryOfTheBinary) {
  if (::access("/usr/bin/ldd", X_OK) != 0 ||
      ::access("/usr/bin/dpkg", X_OK) != 0) {
    GTEST_SKIP() << "ldd or dpkg is missing: not a Debian host";
  }
  absl::StatusOr<CommandResult> list =
      RunCommand({"/bin/bash", SourceDir() + "/scripts/install-deps.sh",
                  "--list-runtime"});
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->exit_code, 0) << list->err;
  std::set<std::string> runtime;
  for (const std::string& p : Lines(list->out)) runtime.insert(p);
  ASSERT_FALSE(runtime.empty());
  // Every file of the listed packages, as dpkg installed them.
  std::set<std::string> files;
  for (const std::string& package : runtime) {
    std::set<std::string> of = PackageFiles(package);
    EXPECT_FALSE(of.empty()) << package << " is not installed here";
    files.insert(of.begin(), of.end());
  }

  absl::StatusOr<CommandResult> ldd =
      RunCommand({"/usr/bin/ldd", PasserelleBin()});
  ASSERT_TRUE(ldd.ok()) << ldd.status();
  ASSERT_EQ(ldd->exit_code, 0) << ldd->err;
  // "libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)", the loader
  // as "/lib64/ld-linux-x86-64.so.2 (0x...)", linux-vdso without a file.
  const std::regex resolved(R"re(=>\s+(/\S+)\s+\(0x)re");
  const std::regex loader(R"re(^(/\S+)\s+\(0x)re");
  int libraries = 0;
  for (const std::string& line : Lines(ldd->out)) {
    ASSERT_EQ(line.find("not found"), std::string::npos) << line;
    std::smatch m;
    std::string path;
    if (std::regex_search(line, m, resolved) ||
        std::regex_search(line, m, loader)) {
      path = m[1].str();
    } else {
      continue;
    }
    ++libraries;
    bool covered = false;
    for (const std::string& form : PathForms(path)) {
      covered = covered || files.count(form) > 0;
    }
    EXPECT_TRUE(covered) << path << " (" << OwningPackage(path)
                         << ") is in no package of scripts/install-deps.sh "
                            "--list-runtime";
  }
  EXPECT_GE(libraries, 5) << ldd->out;
}

// ---- systemd units ---------------------------------------------------------

// Key -> values (in order) of the [Service] section of a unit file.
std::map<std::string, std::vector<std::string>> ServiceSettings(
    const std::string& path) {
  std::map<std::string, std::vector<std::string>> out;
  std::string section;
  for (const std::string& line : Lines(ReadFile(path))) {
    if (line[0] == '#' || line[0] == ';') continue;
    if (line[0] == '[') {
      section = line;
      continue;
    }
    if (section != "[Service]") continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    out[line.substr(0, eq)].push_back(line.substr(eq + 1));
  }
  return out;
}

struct Unit {
  std::string file;       // Under deploy/systemd/.
  std::string state_dir;  // StateDirectory= expected.
};
const Unit kUnits[] = {{"passerelle-gateway.service", "passerelle/gateway"},
                       {"passerelle-node@.service", "passerelle/%i"}};

TEST(SystemdUnitsTest, PrivateFilesAndHardening) {
  for (const Unit& unit : kUnits) {
    SCOPED_TRACE(unit.file);
    auto s = ServiceSettings(SourceDir() + "/deploy/systemd/" + unit.file);
    auto one = [&s](const std::string& key) {
      auto it = s.find(key);
      return it == s.end() || it->second.size() != 1 ? std::string("<unset>")
                                                     : it->second[0];
    };
    EXPECT_EQ(one("UMask"), "0077");
    EXPECT_EQ(one("StateDirectory"), unit.state_dir);
    EXPECT_EQ(one("StateDirectoryMode"), "0700");
    EXPECT_NE(one("RuntimeDirectory"), "<unset>");
    EXPECT_EQ(one("RuntimeDirectoryMode"), "0700");
    EXPECT_EQ(one("NoNewPrivileges"), "true");
    EXPECT_EQ(one("ProtectSystem"), "strict");
    EXPECT_EQ(one("ProtectHome"), "true");
    EXPECT_EQ(one("PrivateTmp"), "true");
    EXPECT_EQ(one("PrivateDevices"), "true");
    EXPECT_EQ(one("CapabilityBoundingSet"), "");
    EXPECT_NE(one("User"), "<unset>");
    EXPECT_NE(one("User"), "root");
    // The only writable path is the state directory.
    EXPECT_EQ(one("ReadWritePaths"), "/var/lib/" + unit.state_dir);
    EXPECT_EQ(s.count("ReadOnlyPaths") + s.count("BindPaths"), 0u);
  }
}

TEST(SystemdUnitsTest, VerifyWithoutWarnings) {
  const std::string analyze = "/usr/bin/systemd-analyze";
  if (::access(analyze.c_str(), X_OK) != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed";
  }
  TempDir dir;
  std::vector<std::string> argv = {analyze, "verify"};
  for (const Unit& unit : kUnits) {
    std::string text = ReadFile(SourceDir() + "/deploy/systemd/" + unit.file);
    // The installed path does not exist here; the built binary does.
    const std::string installed = "/usr/local/bin/passerelle";
    ASSERT_NE(text.find(installed), std::string::npos) << unit.file;
    text.replace(text.find(installed), installed.size(), PasserelleBin());
    std::string name = unit.file;
    const size_t at = name.find("@.");
    if (at != std::string::npos) name.insert(at + 1, "fr");
    WriteFile(dir.Sub(name), text);
    argv.push_back(dir.Sub(name));
  }
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  // It warns (and exits 0) on an unknown key or a value it cannot parse.
  EXPECT_EQ(r->out + r->err, "");
}

}  // namespace
}  // namespace passerelle::testing
