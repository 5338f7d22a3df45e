// `passerelle node load --crosswalk`: the tables load with the data, the
// snapshot identity names the mapping set, `node info` lists the tables, a
// mapped query reaches the site's own codes, and a refused load (an invalid
// crosswalk row) leaves the previous snapshot and its tables serving.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

CommandResult Exec(const std::vector<std::string>& argv) {
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : CommandResult();
}

// The value of an `info` line ("snapshot:     qc-...").
std::string InfoLine(const std::string& out, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::ConsumePrefix(&line, key + ":")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

TEST(CrosswalkLoadTest, TablesLoadWithTheDataAndARefusedLoadChangesNothing) {
  TempDir dir;
  const std::string data = dir.Sub("omop");
  std::filesystem::create_directories(data);
  // RAMQ-like claims: ICD-9 source values (the steward's rule names them).
  WriteFile(data + "/person.csv",
            "person_id,gender_concept_id,year_of_birth\n1,8532,1950\n"
            "2,8507,1960\n3,8507,1970\n");
  WriteFile(data + "/condition_occurrence.csv",
            "condition_occurrence_id,person_id,condition_concept_id,condition_"
            "start_date,condition_source_concept_id,condition_source_value\n"
            "1,1,0,2020-01-05,44800001,250\n"
            "2,2,0,2020-02-05,44800002,25000\n"
            "3,3,0,2020-03-05,44800003,4019\n");
  WriteFile(dir.Sub("rules.txt"), "condition source_concept_id 448* icd9\n");
  const std::string gem = dir.Sub("gem.csv");
  WriteFile(gem,
            "icd9cm,icd10cm,flags,approximate,no_map,combination,scenario,"
            "choice_list\n"
            "25000,E119,10000,1,0,0,0,0\n"
            "25002,E1165,10000,1,0,0,0,0\n"
            "4019,I10,00000,0,0,0,0,0\n"
            "36570,NoDx,11000,1,1,0,0,0\n");
  const std::string store = dir.Sub("store");
  auto load = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {PasserelleBin(),
                                     "node",
                                     "load",
                                     "--store",
                                     store,
                                     "--site",
                                     "qc",
                                     "--vocabulary-rules",
                                     dir.Sub("rules.txt")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(data);
    return Exec(argv);
  };
  auto count = [&](const std::string& query) {
    return Exec({PasserelleBin(), "node", "count", "--store", store, "--format",
                 "csv", query});
  };
  auto info = [&]() {
    return Exec({PasserelleBin(), "node", "info", "--store", store});
  };

  CommandResult first = load({"--crosswalk", gem + ",source=icd9,name=ramq"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("crosswalk ramq (gem): icd9 -> icd10cm, 3 "
                                   "rows, 0 invalid rows skipped, 1 no-map"));
  CommandResult i1 = info();
  ASSERT_EQ(i1.exit_code, 0) << i1.err;
  const std::string set1 = InfoLine(i1.out, "mapping set");
  const std::string snap1 = InfoLine(i1.out, "snapshot");
  ASSERT_EQ(set1.size(), 64u) << i1.out;
  // The snapshot identity names the mapping set.
  EXPECT_TRUE(absl::EndsWith(snap1, "-m" + set1.substr(0, 12))) << snap1;
  EXPECT_THAT(i1.out, HasSubstr("crosswalk:    ramq (gem) icd9 -> icd10cm: 3 "
                                "rows, 0 skipped, 1 no-map, 0 merged"));
  // icd10:E11* reaches 25000 and, by rollup, 250; exact reaches nobody.
  CommandResult mapped = count("condition icd10:E11*");
  ASSERT_EQ(mapped.exit_code, 0) << mapped.err;
  EXPECT_THAT(mapped.out, HasSubstr("qc,2\n"));
  CommandResult exact = count("condition icd10:E11* codes exact");
  ASSERT_EQ(exact.exit_code, 0) << exact.err;
  EXPECT_THAT(exact.out, HasSubstr("qc,0\n"));
  CommandResult equivalent = count("condition icd10:I10* codes equivalent");
  EXPECT_THAT(equivalent.out, HasSubstr("qc,1\n"));

  // An invalid row refuses the load, naming file:line; the store still
  // serves the first snapshot and its tables.
  const std::string bad = dir.Sub("bad.csv");
  WriteFile(
      bad,
      "source_vocabulary,source_code,target_vocabulary,target_code,relation\n"
      "icd9,250,icd10ca,E11,narrower\n"
      "icd9,250,icd10ca,E11,sameish\n");
  CommandResult refused =
      load({"--crosswalk", gem + ",source=icd9,name=ramq", "--crosswalk", bad});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr(bad + ":3: unknown relation \"sameish\""));
  CommandResult i2 = info();
  EXPECT_EQ(InfoLine(i2.out, "snapshot"), snap1);
  EXPECT_EQ(InfoLine(i2.out, "mapping set"), set1);
  EXPECT_THAT(count("condition icd10:E11*").out, HasSubstr("qc,2\n"));

  // Skipping: loaded, the skipped row listed, and a new mapping set (a
  // changed table set changes the snapshot identity).
  CommandResult skipped =
      load({"--crosswalk", gem + ",source=icd9,name=ramq", "--crosswalk", bad,
            "--crosswalk-invalid", "skip"});
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_THAT(skipped.err, HasSubstr("crosswalk row skipped " + bad +
                                     ":3: unknown relation"));
  CommandResult i3 = info();
  const std::string set3 = InfoLine(i3.out, "mapping set");
  EXPECT_NE(set3, set1);
  EXPECT_TRUE(
      absl::EndsWith(InfoLine(i3.out, "snapshot"), "-m" + set3.substr(0, 12)));
  EXPECT_THAT(i3.out, HasSubstr("crosswalk:    bad (passerelle) icd9 -> "
                                "icd10ca: 1 rows, 1 skipped"));

  // Without crosswalks: no mapping set, nothing mapped.
  CommandResult plain = load({});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  CommandResult i4 = info();
  EXPECT_EQ(InfoLine(i4.out, "mapping set"), "(none)");
  EXPECT_THAT(InfoLine(i4.out, "snapshot"), Not(HasSubstr("-m")));
  EXPECT_THAT(count("condition icd10:E11*").out, HasSubstr("qc,0\n"));
  EXPECT_EQ(load({"--crosswalk-invalid", "maybe"}).exit_code, 2);
}

}  // namespace
}  // namespace passerelle::testing
