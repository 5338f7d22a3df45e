// Runs the demo federation's shipped policy and fixtures (deploy/policy)
// through the engine, and checks that mismatches are reported.
#include "policy/fixtures.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::policy {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::passerelle::v1;
using ::testing::HasSubstr;
using ::testing::Not;

std::string DeployDir() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  return src == nullptr ? "" : std::string(src) + "/deploy/policy";
}

TEST(ShippedFixturesTest, EveryFixturePasses) {
  std::string dir = DeployDir();
  if (dir.empty() || !fs::exists(dir)) {
    GTEST_SKIP() << "PASSERELLE_SOURCE_DIR/deploy/policy is not available";
  }
  auto policy = Policy::Load({dir});
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto cases = LoadFixtures(dir);
  ASSERT_TRUE(cases.ok()) << cases.status();
  int allow = 0, deny = 0;
  for (const FixtureCase& c : *cases) (c.expect_allow ? allow : deny)++;
  EXPECT_GE(allow, 5);
  EXPECT_GE(deny, 10);
  // With the query component's parser.
  std::vector<FixtureResult> results = RunFixtures(**policy, *cases, nullptr);
  ASSERT_EQ(results.size(), cases->size());
  for (const FixtureResult& r : results) {
    EXPECT_TRUE(r.passed) << r.fixture->path << ": " << r.failure;
  }
}

TEST(ShippedFixturesTest, CoverTheRequiredSituations) {
  std::string dir = DeployDir();
  if (dir.empty() || !fs::exists(dir)) {
    GTEST_SKIP() << "PASSERELLE_SOURCE_DIR/deploy/policy is not available";
  }
  for (const char* name :
       {"deny/expired-project", "deny/wrong-purpose",
        "deny/disallowed-dimension", "deny/unknown-identity",
        "deny/forbid-overrides-permit", "deny/non-member",
        "deny/auditor-runs-query", "deny/too-many-cells",
        "allow/strictest-wins", "deny/node-below-site-minimum"}) {
    EXPECT_TRUE(fs::exists(fs::path(dir) / (std::string(name) + ".textproto")))
        << name;
  }
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (fs::temp_directory_path() / "policy_fixtures_XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void Write(const std::string& name, const std::string& text) const {
    fs::create_directories((fs::path(path_) / name).parent_path());
    std::ofstream(fs::path(path_) / name) << text;
  }

 private:
  std::string path_;
};

constexpr char kPolicy[] = R"txt(
  federation {
    id: "t"
    gateway_identity: "gw"
    site { id: "fr" }
    disclosure { min_cell_size: 10 mechanism: LAPLACE epsilon_per_query: 1 }
    allow {
      domains: ["condition"]
      vocabularies: ["icd10"]
      criteria: ["event"]
    }
  }
  project {
    id: "p"
    purposes: ["DUO:0000006"]
    valid_until: "2030-01-01"
    sites: ["fr"]
    member { identity: "alice" role: RESEARCHER }
    budget { epsilon_cap: 5 }
  }
)txt";

constexpr char kSite[] = R"txt(site {
                                id: "fr"
                                callers: ["gw"]
                              })txt";

constexpr char kCase[] = R"txt(
  identity: "alice"
  project: "p"
  at: "2026-01-01"
  query: "condition icd10:E11"
  query_ast {
    where {
      criterion {
        event {
          event {
            domain: DOMAIN_CONDITION
            codes { vocabulary: "icd10" code: "E11" }
          }
        }
      }
    }
  }
)txt";

TEST(FixturesTest, ReportsEveryMismatch) {
  TempDir dir;
  dir.Write("policy.textproto", kPolicy);
  dir.Write("site.textproto", kSite);
  dir.Write("allow/ok.textproto", kCase);
  // Wrongly expected denied.
  dir.Write("deny/actually-allowed.textproto", kCase);
  // Expected allowed, with a reason and an obligation that do not match.
  dir.Write(
      "allow/wrong-details.textproto",
      std::string(kCase) +
          "expect_reason: \"no such text\"\n"
          "expect_obligations { min_cell_size: 11 epsilon_per_query: 1 }\n");
  // No time: fixtures must not depend on the clock.
  dir.Write("allow/no-time.textproto",
            "identity: \"alice\" project: \"p\" "
            "query: \"x\"");
  // Query text that says something else than its AST.
  dir.Write("deny/text-differs.textproto",
            absl::StrReplaceAll(kCase, {{"query: \"condition icd10:E11\"",
                                         "query: \"condition icd10:E11*\""}}));
  auto policy = Policy::Load({dir.path()});
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto cases = LoadFixtures(dir.path());
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 5u);
  std::vector<FixtureResult> results = RunFixtures(**policy, *cases, nullptr);
  std::map<std::string, const FixtureResult*> by_name;
  for (const FixtureResult& r : results) {
    by_name[fs::path(r.fixture->path).stem().string()] = &r;
  }
  EXPECT_TRUE(by_name["ok"]->passed) << by_name["ok"]->failure;
  EXPECT_FALSE(by_name["actually-allowed"]->passed);
  EXPECT_EQ(by_name["actually-allowed"]->failure, "expected deny, got allow");
  EXPECT_FALSE(by_name["wrong-details"]->passed);
  EXPECT_THAT(by_name["wrong-details"]->failure,
              HasSubstr("no reason contains \"no such text\""));
  EXPECT_THAT(by_name["wrong-details"]->failure,
              HasSubstr("obligation min_cell_size: expected 11, got 10"));
  EXPECT_THAT(by_name["wrong-details"]->failure,
              Not(HasSubstr("epsilon_per_query")));
  EXPECT_THAT(by_name["no-time"]->failure, HasSubstr("`at` is missing"));
  EXPECT_THAT(by_name["text-differs"]->failure,
              HasSubstr("`query` and `query_ast` differ"));

  // An injected parser replaces the query component's.
  v1::Query ast = by_name["ok"]->fixture->test.query_ast();
  int calls = 0;
  QueryParser parser =
      [&](absl::string_view text) -> absl::StatusOr<v1::Query> {
    ++calls;
    if (text == "x") return absl::InvalidArgumentError("1:1: nope");
    return ast;
  };
  results = RunFixtures(**policy, *cases, parser);
  EXPECT_GE(calls, 3);
  for (const FixtureResult& r : results) {
    if (fs::path(r.fixture->path).stem() == "text-differs") {
      EXPECT_EQ(r.failure, "expected deny, got allow");
    }
  }
}

TEST(FixturesTest, ParseErrorsNameTheFile) {
  TempDir dir;
  dir.Write("deny/bad.textproto", "identity: \"a\"\nprojcet: \"p\"\n");
  auto cases = LoadFixtures(dir.path());
  ASSERT_FALSE(cases.ok());
  EXPECT_THAT(std::string(cases.status().message()),
              HasSubstr("deny/bad.textproto:2:"));
  TempDir empty;
  EXPECT_EQ(LoadFixtures(empty.path()).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace passerelle::policy
