#include "cli/generate_cmd.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/store.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;

class GenerateCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/generate_cmd_test_XXXXXX";
    dir_ = ::mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs the command and returns its exit code; stderr goes to `*err`.
  int Run(const std::vector<std::string>& args, std::string* err) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    const int code = RunGenerateCommand(args);
    *err = ::testing::internal::GetCapturedStderr();
    ::testing::internal::GetCapturedStdout();
    return code;
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    return content.str();
  }

  std::string dir_;
};

TEST_F(GenerateCommandTest, UsageErrorsNameTheBadFlag) {
  std::string err;
  EXPECT_EQ(Run({"--patients", "x", "--seed", "1", "--site", "fr", "--out",
                 dir_ + "/o"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--patients"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "-1", "--site", "fr", "--out",
                 dir_ + "/o"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--seed"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "F R", "--out",
                 dir_ + "/o"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--site"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "fr"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("exactly one of --out DIR and --into-store DIR"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "fr", "--out",
                 dir_ + "/o", "--into-store", dir_ + "/s"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("exactly one of"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "fr", "--out",
                 dir_ + "/o", "--colour", "red"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--colour"));
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "fr", "--coding",
                 "icd10", "--out", dir_ + "/o"},
                &err),
            2);
  EXPECT_THAT(err, HasSubstr("--coding: \"icd10\""));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/o"));
}

// Site coding is the default; --coding uniform gives ICD-10 / ATC for the
// same patients (same persons and event ids, other codes).
TEST_F(GenerateCommandTest, CodingSelectsTheSiteOrUniformVocabularies) {
  std::string err;
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
      {"default", {}},
      {"site", {"--coding", "site"}},
      {"uniform", {"--coding=uniform"}}};
  for (const auto& [name, coding] : runs) {
    std::vector<std::string> args = {"--patients", "200",    "--seed",
                                     "4",          "--site", "qc"};
    args.insert(args.end(), coding.begin(), coding.end());
    args.push_back("--out=" + dir_ + "/" + name);
    ASSERT_EQ(Run(args, &err), 0) << err;
  }
  const std::string site = Slurp(dir_ + "/site/concept.csv");
  EXPECT_EQ(Slurp(dir_ + "/default/concept.csv"), site);
  EXPECT_EQ(Slurp(dir_ + "/default/drug_exposure.csv"),
            Slurp(dir_ + "/site/drug_exposure.csv"));
  const std::string uniform = Slurp(dir_ + "/uniform/concept.csv");
  EXPECT_THAT(site, HasSubstr(",ICD9,"));
  EXPECT_THAT(site, HasSubstr(",DIN,"));
  EXPECT_THAT(uniform, ::testing::Not(HasSubstr(",ICD9,")));
  EXPECT_THAT(uniform, ::testing::Not(HasSubstr(",DIN,")));
  EXPECT_EQ(Slurp(dir_ + "/site/person.csv"),
            Slurp(dir_ + "/uniform/person.csv"));
  EXPECT_NE(Slurp(dir_ + "/site/drug_exposure.csv"),
            Slurp(dir_ + "/uniform/drug_exposure.csv"));
}

TEST_F(GenerateCommandTest, WritesIdenticalTablesForTheSameFlags) {
  std::string err;
  for (const char* out : {"/a/nested", "/b"}) {
    ASSERT_EQ(Run({"--patients", "50", "--seed", "9", "--site", "qc",
                   "--out=" + dir_ + out},
                  &err),
              0)
        << err;
  }
  for (const char* file :
       {"person.csv", "condition_occurrence.csv", "drug_exposure.csv",
        "procedure_occurrence.csv", "measurement.csv", "visit_occurrence.csv",
        "observation.csv", "death.csv", "concept.csv"}) {
    const std::string a = Slurp(dir_ + "/a/nested/" + file);
    EXPECT_FALSE(a.empty()) << file;
    EXPECT_EQ(a, Slurp(dir_ + "/b/" + file)) << file;
  }
}

TEST_F(GenerateCommandTest, IntoStoreWritesASnapshotAndReplacesItAtomically) {
  std::string err;
  for (int round = 0; round < 2; ++round) {
    ASSERT_EQ(Run({"--patients", "40", "--seed", "9", "--site", "qc",
                   "--into-store", dir_ + "/store"},
                  &err),
              0)
        << err;
  }
  auto store = node::NodeStore::Open(dir_ + "/store");
  ASSERT_TRUE(store.ok()) << store.status();
  auto snap = (*store)->LoadCurrent();
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ((*snap)->meta.site, "qc");
  EXPECT_EQ((*snap)->meta.persons, 40);
  EXPECT_GT((*snap)->meta.events, 40);
  EXPECT_THAT((*snap)->meta.version, ::testing::EndsWith("-2"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/store/ingest.tmp"));
}

TEST_F(GenerateCommandTest, UnwritableOutputFails) {
  std::ofstream(dir_ + "/file") << "x";
  std::string err;
  EXPECT_EQ(Run({"--patients", "5", "--seed", "1", "--site", "fr", "--out",
                 dir_ + "/file/sub"},
                &err),
            1);
  EXPECT_THAT(err, HasSubstr("file/sub"));
}

}  // namespace
}  // namespace passerelle::cli
