#include "policy/fixtures.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "query/parser.h"

namespace passerelle::policy {

namespace v1 = ::passerelle::v1;
namespace fs = std::filesystem;

namespace {

class Collector : public google::protobuf::io::ErrorCollector {
 public:
  Collector(const std::string& file, std::vector<std::string>* errors)
      : file_(file), errors_(errors) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_->push_back(
        absl::StrCat(file_, ":", line + 1, ":", column + 1, ": ", message));
  }

 private:
  const std::string& file_;
  std::vector<std::string>* errors_;
};

// Compares the fields `want` sets (non-default) with `got`; appends one
// problem per difference.
void CompareSetFields(const google::protobuf::Message& want,
                      const google::protobuf::Message& got,
                      const std::string& prefix,
                      std::vector<std::string>& problems) {
  const google::protobuf::Reflection* r = want.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(want, &fields);
  for (const auto* f : fields) {
    std::string name = absl::StrCat(prefix, f->name());
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
        !f->is_repeated()) {
      CompareSetFields(r->GetMessage(want, f), r->GetMessage(got, f),
                       absl::StrCat(name, "."), problems);
      continue;
    }
    std::string w, g;
    google::protobuf::TextFormat::Printer printer;
    printer.SetSingleLineMode(true);
    if (f->is_repeated()) {
      w.clear();
      for (int i = 0; i < r->FieldSize(want, f); ++i) {
        std::string v;
        printer.PrintFieldValueToString(want, f, i, &v);
        absl::StrAppend(&w, i ? ", " : "", v);
      }
      for (int i = 0; i < r->FieldSize(got, f); ++i) {
        std::string v;
        printer.PrintFieldValueToString(got, f, i, &v);
        absl::StrAppend(&g, i ? ", " : "", v);
      }
    } else {
      printer.PrintFieldValueToString(want, f, -1, &w);
      printer.PrintFieldValueToString(got, f, -1, &g);
    }
    if (w != g) {
      problems.push_back(
          absl::StrCat("obligation ", name, ": expected ", w, ", got ", g));
    }
  }
}

}  // namespace

absl::StatusOr<std::vector<FixtureCase>> LoadFixtures(const std::string& dir) {
  std::vector<FixtureCase> cases;
  std::vector<std::string> errors;
  bool any_dir = false;
  for (const char* kind : {"allow", "deny"}) {
    fs::path sub = fs::path(dir) / kind;
    std::error_code ec;
    if (!fs::is_directory(sub, ec)) continue;
    any_dir = true;
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(sub, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".textproto") {
        files.push_back(entry.path().string());
      }
    }
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat(sub.string(), ": cannot list: ", ec.message()));
    }
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::ostringstream buf;
      buf << in.rdbuf();
      if (!in) {
        errors.push_back(absl::StrCat(f, ": cannot read"));
        continue;
      }
      FixtureCase c;
      c.path = f;
      c.expect_allow = std::string(kind) == "allow";
      Collector collector(f, &errors);
      google::protobuf::TextFormat::Parser parser;
      parser.RecordErrorsTo(&collector);
      if (parser.ParseFromString(buf.str(), &c.test)) {
        cases.push_back(std::move(c));
      }
    }
  }
  if (!any_dir) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": has neither allow/ nor deny/ fixtures"));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  }
  return cases;
}

absl::StatusOr<v1::Decision> EvaluateCase(const Policy& policy,
                                          const v1::PolicyTestCase& test,
                                          const QueryParser& parser) {
  if (test.role() != v1::Member::ROLE_UNSPECIFIED) {
    return policy.DecideRole(test.identity(), test.role(), test.project());
  }
  if (test.at().empty()) {
    return absl::InvalidArgumentError(
        "`at` is missing (fixtures name their time so they do not expire)");
  }
  PASSERELLE_ASSIGN_OR_RETURN(absl::Time at, ParsePolicyTime(test.at()));
  v1::Query query;
  if (!test.query().empty()) {
    absl::StatusOr<v1::Query> parsed =
        parser ? parser(test.query())
               : passerelle::query::ParseQuery(test.query());
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("query: ", parsed.status().message()));
    }
    query = *std::move(parsed);
    // When both are given they must say the same thing, or the fixture
    // would test something other than what it shows.
    if (test.has_query_ast() &&
        !google::protobuf::util::MessageDifferencer::Equals(query,
                                                            test.query_ast())) {
      return absl::InvalidArgumentError(
          absl::StrCat("`query` and `query_ast` differ; the text parses to: ",
                       query.ShortDebugString()));
    }
  } else if (test.has_query_ast()) {
    query = test.query_ast();
  } else {
    return absl::InvalidArgumentError("neither `query` nor `query_ast` given");
  }
  if (!test.node_site().empty()) {
    v1::CountRequest req;
    *req.mutable_query() = query;
    req.set_project(test.project());
    req.set_min_cell_size(test.node_min_cell_size());
    req.set_request_id("fixture");
    return policy.DecideNode(test.node_site(), test.identity(), req, at);
  }
  AccessRequest req;
  req.identity = test.identity();
  req.project = test.project();
  req.purpose = test.purpose();
  req.query = &query;
  req.sites.assign(test.sites().begin(), test.sites().end());
  req.now = at;
  return policy.Decide(req);
}

std::vector<FixtureResult> RunFixtures(const Policy& policy,
                                       const std::vector<FixtureCase>& cases,
                                       const QueryParser& parser) {
  std::vector<FixtureResult> results;
  for (const FixtureCase& c : cases) {
    FixtureResult r;
    r.fixture = &c;
    absl::StatusOr<v1::Decision> d = EvaluateCase(policy, c.test, parser);
    if (!d.ok()) {
      r.failure = absl::StrCat("cannot run: ", d.status().message());
      results.push_back(std::move(r));
      continue;
    }
    r.decision = *std::move(d);
    std::vector<std::string> problems;
    if (r.decision.allow() != c.expect_allow) {
      problems.push_back(
          absl::StrCat("expected ", c.expect_allow ? "allow" : "deny", ", got ",
                       r.decision.allow() ? "allow" : "deny"));
    }
    for (const std::string& want : c.test.expect_reason()) {
      bool found = false;
      for (const std::string& reason : r.decision.reasons()) {
        if (absl::StrContains(reason, want)) found = true;
      }
      if (!found) {
        problems.push_back(absl::StrCat("no reason contains \"", want, "\""));
      }
    }
    if (c.test.has_expect_obligations()) {
      CompareSetFields(c.test.expect_obligations(), r.decision.obligations(),
                       "", problems);
    }
    r.passed = problems.empty();
    r.failure = absl::StrJoin(problems, "; ");
    results.push_back(std::move(r));
  }
  return results;
}

}  // namespace passerelle::policy
