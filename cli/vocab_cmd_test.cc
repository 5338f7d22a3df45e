#include "cli/vocab_cmd.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "common/crash_point.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vocab/test_fixture.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out, err;
};

Result RunCli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = RunVocabCommand(args, out, err);
  return {code, out.str(), err.str()};
}

extern "C" char** environ;

// Runs the passerelle binary built beside this test with `args` and
// PASSERELLE_CRASH_AT=crash_at, output discarded; returns its wait status.
int RunBinary(std::vector<std::string> args, const std::string& crash_at) {
  std::string exe =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() /
       "passerelle")
          .string();
  std::vector<char*> argv = {exe.data()};
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string crash = "PASSERELLE_CRASH_AT=" + crash_at;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(crash.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execve(exe.c_str(), argv.data(), envp.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

class VocabCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("PASSERELLE_NOMENCLATURES");
    unsetenv("PASSERELLE_VOCAB_INDEX");
    vocab::testing::WriteFixtureNomenclatures(dir_);
  }
  void TearDown() override {
    unsetenv("PASSERELLE_NOMENCLATURES");
    unsetenv("PASSERELLE_VOCAB_INDEX");
  }
  std::string Dir() const { return "--nomenclatures=" + dir_.path(); }

  vocab::testing::TempDir dir_;
};

TEST_F(VocabCommandTest, SearchPrintsRankedLabelsInBothLanguages) {
  Result r = RunCli({"search", Dir(), "metformin"});
  ASSERT_EQ(r.code, 0) << r.err;
  // The ATC code first, its English label (the match) then its French one.
  EXPECT_THAT(r.out, StartsWith("atc:A10BA02          en  METFORMIN\n"
                                "                     fr  METFORMINE\n"));
  EXPECT_THAT(r.out, HasSubstr("din:02242974         en  APO-METFORMIN\n"));
  EXPECT_THAT(r.out, HasSubstr("4 matches\n"));
  r = RunCli({"search", Dir(), "--limit", "1", "DIABÈTE"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "cim10:E10  fr  Diabète sucré de type 1\n"
            "1 of 11 matches (--limit N for more)\n");
  // Several words as separate arguments.
  r = RunCli({"search", Dir(), "--lang", "fr", "diabète", "grossesse"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("cim10:O24  fr  Diabète sucré au cours"));
  r = RunCli({"search", Dir(), "--vocabulary", "icd9,atc", "hypertension"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("icd9cm:4019"));
  EXPECT_THAT(r.out, Not(HasSubstr("cim10")));
  r = RunCli({"search", Dir(), "zzzz"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("no code matches \"zzzz\""));
}

TEST_F(VocabCommandTest, SearchJson) {
  Result r = RunCli(
      {"search", Dir(), "--format", "json", "--limit", "2", "metformin"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "{\"query\":\"metformin\",\"total\":4,\"hits\":["
            "{\"vocabulary\":\"atc\",\"code\":\"A10BA02\",\"match\":\"label\","
            "\"lang\":\"en\",\"fr\":\"METFORMINE\",\"fr_vocabulary\":\"atc\","
            "\"en\":\"METFORMIN\",\"en_vocabulary\":\"atc\"},"
            "{\"vocabulary\":\"cip13\",\"code\":\"3400922086965\","
            "\"match\":\"label-start\",\"lang\":\"fr\",\"fr\":\"METFORMINE EG "
            "850 mg, comprimé pelliculé — plaquette(s) de 30 comprimé(s)\","
            "\"fr_vocabulary\":\"cip13\",\"en\":null,\"en_vocabulary\":null}"
            "]}\n");
}

TEST_F(VocabCommandTest, ShowCodesAndPrefixes) {
  setenv("PASSERELLE_NOMENCLATURES", dir_.path().c_str(), 1);
  Result r = RunCli({"show", "icd10:E11*"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "icd10:E11*  (French: cim10; English: icd10cm)\n"
            "E11    fr  Diabète sucré de type 2\n"
            "       en  Type 2 diabetes mellitus\n"
            "E110   fr  Diabète sucré de type 2, avec coma\n"
            "E1165  en  Type 2 diabetes mellitus with hyperglycemia\n"
            "E119   fr  Diabète sucré de type 2, sans complication\n"
            "       en  Type 2 diabetes mellitus without complications\n"
            "4 codes\n");
  r = RunCli({"show", "--limit", "1", "icd10:E11*"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 of 4 codes (--limit N for more)\n"));
  r = RunCli({"show", "ATC:a10ba02"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "atc:A10BA02  (French: atc; English: atc)\n"
            "A10BA02  fr  METFORMINE\n"
            "         en  METFORMIN\n");
  r = RunCli({"show", "icd10:E11"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3 codes under it: passerelle vocab show "
                               "icd10:E11*\n"));
  // JSON, and a vocabulary with no open labels.
  r = RunCli({"show", "--format=json", "icd9:250.00", "icd10ca:E11"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out,
              StartsWith("[{\"query\":\"icd9:25000\",\"labelled\":true"));
  EXPECT_THAT(r.out, HasSubstr("\"en_vocabulary\":\"icd9cm\""));
  EXPECT_THAT(r.out, HasSubstr("{\"query\":\"icd10ca:E11\",\"labelled\":false,"
                               "\"reason\":\"ICD-10-CA is CIHI"));
  r = RunCli({"show", "icd10ca:E11"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("icd10ca:E11: no labels: ICD-10-CA"));
  r = RunCli({"show", "cim10:E12"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.out, HasSubstr("no label for E12"));
}

TEST_F(VocabCommandTest, SourcesListsFilesCountsAndUnlabelledVocabularies) {
  dir_.Remove("snds/nomenclatures/NU_UCD_R.csv");
  Result r = RunCli({"sources", Dir()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cim10 fr  snds/nomenclatures/IR_CIM_V.csv: 8 "
                               "codes labelled from 9 rows, 1 not valid codes "
                               "(not labelled), e.g. "
                               "snds/nomenclatures/IR_CIM_V.csv:7: F55+0\n"));
  EXPECT_THAT(r.out, HasSubstr("ucd fr  snds/nomenclatures/NU_UCD_R.csv: "
                               "MISSING"));
  EXPECT_THAT(r.out, HasSubstr("  icd10ca: ICD-10-CA is CIHI"));
  EXPECT_THAT(r.out, HasSubstr("  cci: CCI"));
  EXPECT_THAT(r.err, HasSubstr("warning: " + dir_.path() +
                               "/snds/nomenclatures/NU_UCD_R.csv is missing"));
  r = RunCli({"sources", Dir(), "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"invalid_examples\":[\"snds/nomenclatures/"
                               "IR_CIM_V.csv:7: F55+0\"]"));
}

TEST_F(VocabCommandTest, ErrorsAreClear) {
  Result r = RunCli({"search", "diabete"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--nomenclatures DIR"));
  EXPECT_THAT(r.err, HasSubstr("PASSERELLE_NOMENCLATURES"));
  r = RunCli({"search", "--nomenclatures", dir_.path() + "/nowhere", "x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("nowhere\" does not exist"));
  dir_.Write("snds/nomenclatures/IR_CIM_V.csv",
             std::string(vocab::testing::kCimHeader) + "E11;x\n");
  r = RunCli({"show", Dir(), "icd10:E11"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("IR_CIM_V.csv:2:"));
  // ATC does not read the broken CIM-10 file.
  EXPECT_EQ(RunCli({"show", Dir(), "atc:A10BA02"}).code, 0);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"find"},
           {"search", Dir()},
           {"search", Dir(), "--limit", "0", "x"},
           {"search", Dir(), "--lang", "de", "x"},
           {"search", Dir(), "--format", "csv", "x"},
           {"search", Dir(), "--vocabulary", "klingon", "x"},
           {"search", Dir(), ",;"},
           {"show", Dir()},
           {"show", Dir(), "E11"},
           {"show", Dir(), "klingon:E11"},
           {"show", Dir(), "icd10:"},
           {"sources", Dir(), "extra"},
       }) {
    r = RunCli(args);
    EXPECT_EQ(r.code, 2) << testing::PrintToString(args);
    EXPECT_THAT(r.err, HasSubstr("usage: passerelle vocab"));
  }
  r = RunCli({"search", Dir(), "--vocabulary", "icd10ca", "x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("icd10ca: ICD-10-CA"));
}

TEST_F(VocabCommandTest, IndexAnswersLikeTheFilesAndSurvivesAFailedRebuild) {
  vocab::testing::TempDir out;
  const std::string index = out.path() + "/vocab-index";
  Result r = RunCli({"index", Dir(), "--index", index});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("labelled codes of 8 vocabularies"));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"search", "metformin"},
           {"search", "--lang", "fr", "--format", "json", "diabète"},
           {"show", "icd10:E11*", "atc:A10BA02", "icd10ca:E11"},
           {"show", "--format", "json", "ucd:0000009231824"},
       }) {
    std::vector<std::string> from_files = args, from_index = args;
    from_files.insert(from_files.begin() + 1, Dir());
    from_index.insert(from_index.begin() + 1, "--index=" + index);
    const Result files = RunCli(from_files), indexed = RunCli(from_index);
    EXPECT_EQ(files.code, indexed.code);
    EXPECT_EQ(files.out, indexed.out) << testing::PrintToString(args);
    EXPECT_EQ(indexed.err, "");
  }
  // PASSERELLE_VOCAB_INDEX is preferred to PASSERELLE_NOMENCLATURES.
  setenv("PASSERELLE_NOMENCLATURES", "/nowhere", 1);
  setenv("PASSERELLE_VOCAB_INDEX", index.c_str(), 1);
  EXPECT_EQ(RunCli({"show", "atc:A10BA02"}).code, 0);
  r = RunCli({"sources"});
  EXPECT_THAT(r.out, StartsWith("index: " + index + "\n"));
  unsetenv("PASSERELLE_VOCAB_INDEX");
  unsetenv("PASSERELLE_NOMENCLATURES");

  // A broken file: the rebuild fails and the old index still answers.
  dir_.Write("snds/nomenclatures/IR_CIM_V.csv",
             std::string(vocab::testing::kCimHeader) + "E11;x\n");
  r = RunCli({"index", Dir(), "--index", index});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("IR_CIM_V.csv:2:"));
  r = RunCli({"show", "--index", index, "icd10:E11"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Diabète sucré de type 2"));
  // ... and says the files changed since it was built.
  EXPECT_THAT(r.err, HasSubstr("have changed or moved since the index was "
                               "built"));
  r = RunCli({"show", "--index", out.path() + "/none", "icd10:E11"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("no vocabulary index at"));
  r = RunCli({"index", Dir()});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--index DIR or PASSERELLE_VOCAB_INDEX"));
}

TEST_F(VocabCommandTest, AKilledIndexBuildLeavesAWholeIndex) {
  if (!crash_point::kCompiledIn) {
    GTEST_SKIP() << "crash points are compiled out of this build";
  }
  vocab::testing::TempDir out;
  const std::string index = out.path() + "/vocab-index";
  ASSERT_EQ(RunCli({"index", Dir(), "--index", index}).code, 0);
  dir_.Write("snds/nomenclatures/openmedic_ATC2.csv",
             "ATC2;Libellé ATC2\nA10;MEDICAMENTS UTILISES DANS LE DIABETE\n");
  // Killed with the new index written but not in place: the old one
  // answers; killed just after the exchange: the new one does.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"vocab.index.after_write", "A10   fr  MEDICAMENTS DU DIABETE\n"},
      {"vocab.index.after_swap",
       "A10   fr  MEDICAMENTS UTILISES DANS LE DIABETE\n"},
  };
  for (const auto& [point, expected] : cases) {
    SCOPED_TRACE(point);
    const int status = RunBinary(
        {"vocab", "index", "--nomenclatures", dir_.path(), "--index", index},
        point);
    ASSERT_TRUE(WIFSIGNALED(status)) << status;
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
    const Result r = RunCli({"show", "--index", index, "atc:A10"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(expected));
  }
}

TEST(VocabCommandSharedTest, ShowMetforminOnThePublicNomenclatures) {
  const std::string dir = vocab::testing::SharedNomenclatures();
  if (dir.empty()) {
    GTEST_SKIP() << "../shared/data is absent (set PASSERELLE_SOURCE_DIR to "
                    "the repository root)";
  }
  Result r = RunCli({"show", "--nomenclatures", dir, "atc:A10BA02"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "atc:A10BA02  (French: atc; English: atc)\n"
            "A10BA02  fr  METFORMINE\n"
            "         en  METFORMIN\n");
  r = RunCli({"search", "--nomenclatures", dir, "--vocabulary", "icd10",
              "--lang", "fr", "diabète"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cim10:E11"));
}

}  // namespace
}  // namespace passerelle::cli
