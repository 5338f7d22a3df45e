// `passerelle node load` with events dated after the load date: reported with
// file and line, and kept or left out only as the steward says
// (--future-events keep|reject); without a choice the load is refused and the
// store is untouched. The rows are dated a century ahead, so the real clock
// of the command (today, UTC) cannot make this test flaky.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

using ::testing::HasSubstr;

CommandResult Exec(const std::vector<std::string>& argv) {
  absl::StatusOr<CommandResult> r = RunCommand(argv);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : CommandResult();
}

TEST(FutureEventsTest, NodeLoadReportsThemAndTheStewardDecides) {
  TempDir dir;
  const std::string data = dir.Sub("omop");
  std::filesystem::create_directories(data);
  WriteFile(data + "/person.csv",
            "person_id,gender_concept_id,year_of_birth,month_of_birth,day_of_"
            "birth\n1,8532,1970,3,1\n2,8507,1980,,\n");
  WriteFile(data + "/condition_occurrence.csv",
            "condition_occurrence_id,person_id,condition_concept_id,condition_"
            "start_date\n1,1,201826,2020-01-05\n2,2,201826,2126-05-02\n"
            "3,1,201826,2127-01-01\n");
  const std::string store = dir.Sub("store");
  auto load = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        PasserelleBin(), "node", "load", "--store", store, "--site", "fr"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(data);
    return Exec(argv);
  };
  auto count = [&](const std::string& query) {
    return Exec({PasserelleBin(), "node", "count", "--store", store, "--format",
                 "csv", query});
  };

  // No choice: refused, with the count, the first row and the options;
  // nothing reaches the store.
  CommandResult refused = load({});
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("2 events are dated after the load date"));
  EXPECT_THAT(refused.err,
              HasSubstr("condition_occurrence.csv:3: dated 2126-05-02"));
  EXPECT_THAT(refused.err, HasSubstr("future event found"));
  EXPECT_THAT(refused.err, HasSubstr("--future-events keep"));
  EXPECT_NE(count("condition concept:201826").exit_code, 0)
      << "a refused load must leave no snapshot";

  CommandResult bad = load({"--future-events", "maybe"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--future-events \"maybe\""));

  // Left out: the snapshot holds the 2020 event only.
  CommandResult rejected = load({"--future-events", "reject"});
  ASSERT_EQ(rejected.exit_code, 0) << rejected.err;
  EXPECT_THAT(rejected.out,
              HasSubstr("2 events after the load date (left out)"));
  EXPECT_THAT(rejected.err, HasSubstr("future event left out"));
  CommandResult one = count("condition concept:201826");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_THAT(one.out, HasSubstr("fr,1\n"));

  // Kept: both patients, the date-shifted events queried with their dates.
  CommandResult kept = load({"--future-events", "keep"});
  ASSERT_EQ(kept.exit_code, 0) << kept.err;
  EXPECT_THAT(kept.out, HasSubstr("2 events after the load date (kept)"));
  CommandResult two = count("condition concept:201826");
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_THAT(two.out, HasSubstr("fr,2\n"));
  CommandResult shifted = count(
      "condition concept:201826 in 2126 and age between 145 and 145 "
      "as of 2126-06-01");
  ASSERT_EQ(shifted.exit_code, 0) << shifted.err;
  EXPECT_THAT(shifted.out, HasSubstr("fr,1\n"));
}

}  // namespace
}  // namespace passerelle::testing
