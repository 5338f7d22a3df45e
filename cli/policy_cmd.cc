#include "cli/policy_cmd.h"

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "policy/fixtures.h"
#include "policy/policy.h"
#include "query/parser.h"

namespace passerelle::cli {
namespace {

namespace v1 = ::passerelle::v1;

constexpr char kUsage[] =
    R"(usage: passerelle policy <command> [options]

  check [--policy PATH]... PATH...
      Validate policy files (a directory stands for its *.textproto files).
      Prints every error as file:line:column and exits 1 if there is any.

  explain --policy PATH... --as IDENTITY --project P [--site S]...
          [--purpose DUO] [--at DATE] [--json] ('QUERY' | --ast FILE)
  explain --policy PATH... --as IDENTITY --project P --node SITE
          --min-cell-size N [--at DATE] ('QUERY' | --ast FILE)
  explain --policy PATH... --as IDENTITY --project P --role ROLE
      Print the decision, the rules that made it and the obligations.
      --node: the decision of SITE's node for a request from IDENTITY.
      --role: whether IDENTITY holds ROLE (researcher|steward|auditor).
      Exits 0 when allowed, 1 when denied.

  test [--policy PATH]... DIR
      Run DIR/allow/*.textproto (expected allowed) and DIR/deny/*.textproto
      (expected denied), each a passerelle.v1.PolicyTestCase, against the
      policy in DIR (its *.textproto files) or --policy. Exits 1 listing
      every mismatch.

  version PATH...
      Print the policy version (SHA-256 of the files) the gateway will log.

--policy defaults to $PASSERELLE_POLICY (paths separated by ':').
DATE is YYYY-MM-DD (00:00 UTC) or RFC 3339; the default is now.
)";

struct Args {
  std::vector<std::string> positional;
  std::vector<std::string> policy;
  std::vector<std::string> sites;
  std::string as, project, purpose, at, ast, node, role, min_cell_size;
  bool json = false;
};

// Parses --flag VALUE and --flag=VALUE; returns an error message or "".
std::string ParseArgs(const std::vector<std::string>& in, size_t start,
                      Args& a) {
  for (size_t i = start; i < in.size(); ++i) {
    std::string arg = in[i];
    if (arg == "--") {
      for (++i; i < in.size(); ++i) a.positional.push_back(in[i]);
      break;
    }
    if (!absl::StartsWith(arg, "--") || arg == "-") {
      a.positional.push_back(arg);
      continue;
    }
    if (arg == "--json") {
      a.json = true;
      continue;
    }
    std::string value;
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < in.size()) {
      value = in[++i];
    } else {
      return absl::StrCat(arg, " needs a value");
    }
    if (arg == "--policy") {
      a.policy.push_back(value);
    } else if (arg == "--site") {
      a.sites.push_back(value);
    } else if (arg == "--as") {
      a.as = value;
    } else if (arg == "--project") {
      a.project = value;
    } else if (arg == "--purpose") {
      a.purpose = value;
    } else if (arg == "--at") {
      a.at = value;
    } else if (arg == "--ast") {
      a.ast = value;
    } else if (arg == "--node") {
      a.node = value;
    } else if (arg == "--role") {
      a.role = value;
    } else if (arg == "--min-cell-size") {
      a.min_cell_size = value;
    } else {
      return absl::StrCat("unknown option ", arg);
    }
  }
  return "";
}

std::vector<std::string> PolicyPaths(const Args& a) {
  if (!a.policy.empty()) return a.policy;
  const char* env = std::getenv("PASSERELLE_POLICY");
  if (env == nullptr || *env == '\0') return {};
  return absl::StrSplit(env, ':', absl::SkipEmpty());
}

void PrintDecision(const v1::Decision& d, bool json, std::ostream& out) {
  if (json) {
    std::string s;
    google::protobuf::util::JsonPrintOptions opts;
    opts.add_whitespace = true;
    opts.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(d, &s, opts);
    out << s;
    return;
  }
  out << "decision: " << (d.allow() ? "ALLOW" : "DENY") << "\n";
  out << "policy version: " << d.policy_version() << "\n";
  out << "reasons:\n";
  for (const std::string& r : d.reasons()) out << "  " << r << "\n";
  std::string ob;
  google::protobuf::TextFormat::PrintToString(d.obligations(), &ob);
  out << "obligations:\n";
  for (absl::string_view line : absl::StrSplit(ob, '\n', absl::SkipEmpty())) {
    out << "  " << line << "\n";
  }
}

int Check(const Args& a, std::ostream& out, std::ostream& err) {
  std::vector<std::string> paths = a.positional;
  paths.insert(paths.end(), a.policy.begin(), a.policy.end());
  if (paths.empty()) {
    err << "policy check: give the policy files or directories to check\n";
    return 2;
  }
  absl::StatusOr<std::shared_ptr<const policy::Policy>> p =
      policy::Policy::Load(paths);
  if (!p.ok()) {
    err << p.status().message() << "\n";
    if (p.status().code() == absl::StatusCode::kInvalidArgument) {
      size_t n = std::count(p.status().message().begin(),
                            p.status().message().end(), '\n') +
                 1;
      err << "policy check: " << n << " error" << (n == 1 ? "" : "s") << "\n";
      return 1;
    }
    return 2;
  }
  for (const std::string& w : (*p)->warnings()) err << "warning: " << w << "\n";
  out << "ok: " << (*p)->files().size() << " file"
      << ((*p)->files().size() == 1 ? "" : "s") << ", version "
      << (*p)->version() << "\n";
  return 0;
}

int Explain(const Args& a, const policy::QueryParser& parser, std::ostream& out,
            std::ostream& err) {
  std::vector<std::string> paths = PolicyPaths(a);
  if (paths.empty()) {
    err << "policy explain: give --policy PATH (or set PASSERELLE_POLICY)\n";
    return 2;
  }
  if (a.as.empty()) {
    err << "policy explain: give --as IDENTITY\n";
    return 2;
  }
  absl::StatusOr<std::shared_ptr<const policy::Policy>> p =
      policy::Policy::Load(paths);
  if (!p.ok()) {
    err << p.status().message() << "\n";
    return 2;
  }
  const policy::Policy& pol = **p;

  if (!a.role.empty()) {
    std::optional<v1::Member::Role> role = policy::ParseRole(a.role);
    if (!role) {
      err << "policy explain: --role is researcher, steward or auditor\n";
      return 2;
    }
    v1::Decision d = pol.DecideRole(a.as, *role, a.project);
    PrintDecision(d, a.json, out);
    return d.allow() ? 0 : 1;
  }
  if (a.project.empty()) {
    err << "policy explain: give --project P\n";
    return 2;
  }

  absl::Time now = absl::Now();
  if (!a.at.empty()) {
    absl::StatusOr<absl::Time> t = policy::ParsePolicyTime(a.at);
    if (!t.ok()) {
      err << "policy explain: --at: " << t.status().message() << "\n";
      return 2;
    }
    now = *t;
  }

  v1::Query query;
  if (!a.ast.empty()) {
    if (!a.positional.empty()) {
      err << "policy explain: give either QUERY or --ast FILE\n";
      return 2;
    }
    std::ifstream in(a.ast, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    if (!in) {
      err << a.ast << ": cannot read\n";
      return 2;
    }
    if (!google::protobuf::TextFormat::ParseFromString(buf.str(), &query)) {
      err << a.ast << ": not a passerelle.v1.Query in text format\n";
      return 2;
    }
  } else {
    if (a.positional.size() != 1) {
      err << "policy explain: give the query as one argument, e.g. "
             "'condition icd10:E11* group by sex'\n";
      return 2;
    }
    absl::StatusOr<v1::Query> q =
        parser ? parser(a.positional[0])
               : passerelle::query::ParseQuery(a.positional[0]);
    if (!q.ok()) {
      err << "query: " << q.status().message() << "\n";
      return 2;
    }
    query = *std::move(q);
  }

  v1::Decision d;
  if (!a.node.empty()) {
    int64_t min = 0;
    if (!absl::SimpleAtoi(a.min_cell_size, &min)) {
      err << "policy explain: --node needs --min-cell-size N\n";
      return 2;
    }
    v1::CountRequest req;
    *req.mutable_query() = query;
    req.set_project(a.project);
    req.set_min_cell_size(min);
    d = pol.DecideNode(a.node, a.as, req, now);
  } else {
    policy::AccessRequest req;
    req.identity = a.as;
    req.project = a.project;
    req.purpose = a.purpose;
    req.query = &query;
    req.sites = a.sites;
    req.now = now;
    d = pol.Decide(req);
  }
  PrintDecision(d, a.json, out);
  return d.allow() ? 0 : 1;
}

int Test(const Args& a, const policy::QueryParser& parser, std::ostream& out,
         std::ostream& err) {
  if (a.positional.size() != 1) {
    err << "policy test: give one fixtures directory\n";
    return 2;
  }
  const std::string& dir = a.positional[0];
  std::vector<std::string> paths =
      a.policy.empty() ? std::vector<std::string>{dir} : a.policy;
  absl::StatusOr<std::shared_ptr<const policy::Policy>> p =
      policy::Policy::Load(paths);
  if (!p.ok()) {
    err << p.status().message() << "\n";
    return 2;
  }
  absl::StatusOr<std::vector<policy::FixtureCase>> cases =
      policy::LoadFixtures(dir);
  if (!cases.ok()) {
    err << cases.status().message() << "\n";
    return 2;
  }
  std::vector<policy::FixtureResult> results =
      policy::RunFixtures(**p, *cases, parser);
  int failed = 0;
  for (const policy::FixtureResult& r : results) {
    if (r.passed) continue;
    ++failed;
    err << "FAIL " << r.fixture->path << ": " << r.failure << "\n";
    if (!r.fixture->test.description().empty()) {
      err << "  (" << r.fixture->test.description() << ")\n";
    }
    for (const std::string& reason : r.decision.reasons()) {
      err << "  " << reason << "\n";
    }
  }
  out << results.size() - failed << " passed, " << failed << " failed ("
      << results.size() << " fixtures, policy version " << (*p)->version()
      << ")\n";
  return failed == 0 ? 0 : 1;
}

int Version(const Args& a, std::ostream& out, std::ostream& err) {
  std::vector<std::string> paths = a.positional;
  paths.insert(paths.end(), a.policy.begin(), a.policy.end());
  absl::StatusOr<std::vector<policy::PolicySource>> sources =
      policy::ReadPolicySources(paths);
  if (!sources.ok()) {
    err << sources.status().message() << "\n";
    return 2;
  }
  out << policy::PolicyVersion(*std::move(sources)) << "\n";
  return 0;
}

}  // namespace

int RunPolicyCommand(const std::vector<std::string>& args,
                     const policy::QueryParser& parser, std::ostream& out,
                     std::ostream& err) {
  if (args.empty() || args[0] == "help" || args[0] == "--help" ||
      args[0] == "-h") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  Args a;
  std::string problem = ParseArgs(args, 1, a);
  if (!problem.empty()) {
    err << "policy " << args[0] << ": " << problem << "\n" << kUsage;
    return 2;
  }
  const std::string& cmd = args[0];
  if (cmd == "check") return Check(a, out, err);
  if (cmd == "explain") return Explain(a, parser, out, err);
  if (cmd == "test") return Test(a, parser, out, err);
  if (cmd == "version") return Version(a, out, err);
  err << "policy: unknown command \"" << cmd << "\"\n" << kUsage;
  return 2;
}

int RunPolicyCommand(const std::vector<std::string>& args) {
  return RunPolicyCommand(args, passerelle::query::ParseQuery, std::cout,
                          std::cerr);
}

}  // namespace passerelle::cli
