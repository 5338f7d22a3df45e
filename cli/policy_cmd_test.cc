#include "cli/policy_cmd.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace passerelle::cli {
namespace {

namespace fs = std::filesystem;
namespace v1 = ::passerelle::v1;
using ::testing::HasSubstr;

class PolicyCmdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
    if (src == nullptr || !fs::exists(std::string(src) + "/deploy/policy")) {
      GTEST_SKIP() << "PASSERELLE_SOURCE_DIR/deploy/policy is not available";
    }
    deploy_ = std::string(src) + "/deploy/policy";
    std::string tmpl =
        (fs::temp_directory_path() / "policy_cmd_XXXXXX").string();
    tmp_ = mkdtemp(tmpl.data());
  }
  void TearDown() override {
    std::error_code ec;
    if (!tmp_.empty()) fs::remove_all(tmp_, ec);
  }
  int Run(const std::vector<std::string>& args,
          const policy::QueryParser& parser = nullptr) {
    out_.str("");
    err_.str("");
    return RunPolicyCommand(args, parser, out_, err_);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = (fs::path(tmp_) / name).string();
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  std::string deploy_;
  std::string tmp_;
  std::ostringstream out_, err_;
};

constexpr char kDiabetesBySex[] = R"txt(
  where {
    criterion {
      event {
        event {
          domain: DOMAIN_CONDITION
          codes { vocabulary: "icd10" code: "E11" prefix: true }
        }
      }
    }
  }
  group_by { kind: SEX }
)txt";

TEST_F(PolicyCmdTest, CheckAcceptsTheShippedPolicy) {
  EXPECT_EQ(Run({"check", deploy_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("ok: 3 files, version "));
  EXPECT_EQ(err_.str(), "");
}

TEST_F(PolicyCmdTest, CheckListsErrorsWithFileAndLine) {
  std::string bad =
      Write("bad.textproto", "site {\n  id: \"fr\"\n  calers: [\"x\"]\n}\n");
  EXPECT_EQ(Run({"check", bad}), 1);
  EXPECT_THAT(err_.str(), HasSubstr(bad + ":3:"));
  EXPECT_THAT(err_.str(), HasSubstr("calers"));
  EXPECT_THAT(err_.str(), HasSubstr("1 error"));
  std::string bad2 = Write("bad2.textproto",
                           "site {\n  id: \"fr\"\n  callers: [\"x\"]\n"
                           "  disclosure { epsilon_per_query: -1 }\n}\n");
  EXPECT_EQ(Run({"check", bad2}), 1);
  EXPECT_THAT(err_.str(), HasSubstr(bad2 + ":4:"));
  EXPECT_EQ(Run({"check", tmp_ + "/missing.textproto"}), 2);
  EXPECT_EQ(Run({"check"}), 2);
}

TEST_F(PolicyCmdTest, ExplainPrintsDecisionReasonsAndObligations) {
  std::string ast = Write("q.textproto", kDiabetesBySex);
  EXPECT_EQ(Run({"explain", "--policy", deploy_, "--as",
                 "spiffe://passerelle/user/alice", "--project",
                 "diabetes-fr-qc", "--at", "2026-11-22", "--ast", ast}),
            0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("decision: ALLOW"));
  EXPECT_THAT(out_.str(), HasSubstr("is a researcher of project"));
  EXPECT_THAT(out_.str(), HasSubstr("min_cell_size: 10"));
  EXPECT_THAT(out_.str(), HasSubstr("epsilon_per_query: 0.5"));

  EXPECT_EQ(Run({"explain", "--policy=" + deploy_, "--as",
                 "spiffe://passerelle/user/bob", "--project", "diabetes-fr-qc",
                 "--at", "2026-11-22", "--ast", ast}),
            1);
  EXPECT_THAT(out_.str(), HasSubstr("decision: DENY"));
  EXPECT_THAT(out_.str(), HasSubstr("only researchers may run queries"));

  EXPECT_EQ(
      Run({"explain", "--policy", deploy_, "--as",
           "spiffe://passerelle/user/alice", "--project", "diabetes-fr-qc",
           "--site", "qc", "--at", "2026-11-22", "--json", "--ast", ast}),
      0);
  EXPECT_THAT(out_.str(), HasSubstr("\"allow\": true"));

  // Node side and role checks.
  EXPECT_EQ(Run({"explain", "--policy", deploy_ + "/site-fr.textproto", "--as",
                 "spiffe://passerelle/gateway", "--project", "diabetes-fr-qc",
                 "--node", "fr", "--min-cell-size", "5", "--ast", ast}),
            1);
  EXPECT_THAT(out_.str(), HasSubstr("below site fr's minimum 10"));
  EXPECT_EQ(Run({"explain", "--policy", deploy_, "--as",
                 "spiffe://passerelle/user/bob", "--project", "diabetes-fr-qc",
                 "--role", "auditor"}),
            0);
}

TEST_F(PolicyCmdTest, ExplainParsesQueryTextWithTheParser) {
  policy::QueryParser parser =
      [](absl::string_view text) -> absl::StatusOr<v1::Query> {
    if (text != "condition icd10:E11* group by sex") {
      return absl::InvalidArgumentError("1:1: unexpected");
    }
    v1::Query q;
    google::protobuf::TextFormat::ParseFromString(kDiabetesBySex, &q);
    return q;
  };
  std::vector<std::string> args = {"explain",
                                   "--policy",
                                   deploy_,
                                   "--as",
                                   "spiffe://passerelle/user/alice",
                                   "--project",
                                   "diabetes-fr-qc",
                                   "--at",
                                   "2026-11-22",
                                   "condition icd10:E11* group by sex"};
  EXPECT_EQ(Run(args, parser), 0) << err_.str();
  args.back() = "condition icd10:";
  EXPECT_EQ(Run(args, parser), 2);
  EXPECT_THAT(err_.str(), HasSubstr("query: 1:1: unexpected"));
  // By default, the query component's parser.
  args.back() = "condition icd10:E11* group by sex";
  EXPECT_EQ(Run(args), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("breakdown_cells: 4"));
  args.back() = "condition icd10:";
  EXPECT_EQ(Run(args), 2);
  EXPECT_THAT(err_.str(), HasSubstr("query: 1:"));
}

TEST_F(PolicyCmdTest, ExplainUsageErrors) {
  EXPECT_EQ(Run({"explain", "--as", "x", "--project", "p", "q"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("--policy"));
  EXPECT_EQ(Run({"explain", "--policy", deploy_, "--project", "p", "q"}), 2);
  EXPECT_EQ(Run({"explain", "--policy", deploy_, "--as", "x", "--project", "p",
                 "--at", "yesterday", "q"}),
            2);
  EXPECT_EQ(Run({"explain", "--bogus", "1"}), 2);
  EXPECT_EQ(Run({"frobnicate"}), 2);
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(Run({"help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("  test [--policy PATH]... DIR"));
}

TEST_F(PolicyCmdTest, TestRunsTheShippedFixtures) {
  EXPECT_EQ(Run({"test", deploy_}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr(" 0 failed"));
}

TEST_F(PolicyCmdTest, TestListsEveryMismatch) {
  // The shipped policy with one wrong and one broken expectation.
  std::string dir = tmp_ + "/fixtures";
  for (const char* f : {"federation", "site-fr", "site-qc"}) {
    fs::create_directories(dir);
    fs::copy_file(deploy_ + "/" + f + ".textproto",
                  dir + "/" + f + ".textproto");
  }
  fs::create_directories(dir + "/allow");
  fs::create_directories(dir + "/deny");
  fs::copy_file(deploy_ + "/deny/expired-project.textproto",
                dir + "/allow/expired-project.textproto");
  fs::copy_file(deploy_ + "/allow/alice-diabetes-by-sex.textproto",
                dir + "/deny/alice-diabetes-by-sex.textproto");
  fs::copy_file(deploy_ + "/allow/strictest-wins.textproto",
                dir + "/allow/strictest-wins.textproto");
  EXPECT_EQ(Run({"test", dir}), 1);
  EXPECT_THAT(err_.str(), HasSubstr("FAIL " + dir +
                                    "/allow/expired-project.textproto: "
                                    "expected allow, got deny"));
  EXPECT_THAT(err_.str(), HasSubstr("FAIL " + dir +
                                    "/deny/alice-diabetes-by-sex.textproto: "
                                    "expected deny, got allow"));
  EXPECT_THAT(out_.str(), HasSubstr("1 passed, 2 failed"));
  // --policy points elsewhere.
  EXPECT_EQ(Run({"test", "--policy", deploy_, dir}), 1);
}

TEST_F(PolicyCmdTest, VersionMatchesCheck) {
  ASSERT_EQ(Run({"version", deploy_}), 0);
  std::string version = out_.str();
  ASSERT_EQ(version.size(), 65u);
  ASSERT_EQ(Run({"check", deploy_}), 0);
  EXPECT_THAT(out_.str(), HasSubstr(version.substr(0, 64)));
}

}  // namespace
}  // namespace passerelle::cli
