#include "csv/table_file.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::csv {
namespace {

using ::testing::HasSubstr;

class TableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/table_file_test_XXXXXX";
    dir_ = ::mkdtemp(pattern.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Touch(const std::string& name) { std::ofstream(dir_ + "/" + name); }

  std::string dir_;
};

TEST_F(TableFileTest, FindsAnyLetterCase) {
  Touch("PERSON.CSV");
  Touch("condition_occurrence.csv");
  Touch("Drug_Exposure.Csv");
  Touch("person.txt");
  auto person = FindTableFile(dir_, "person");
  ASSERT_TRUE(person.ok()) << person.status();
  EXPECT_EQ(*person, dir_ + "/PERSON.CSV");
  auto condition = FindTableFile(dir_, "CONDITION_OCCURRENCE");
  ASSERT_TRUE(condition.ok()) << condition.status();
  EXPECT_EQ(*condition, dir_ + "/condition_occurrence.csv");
  auto drug = FindTableFile(dir_, "drug_exposure.csv");
  ASSERT_TRUE(drug.ok()) << drug.status();
  EXPECT_EQ(*drug, dir_ + "/Drug_Exposure.Csv");
  auto text = FindTableFile(dir_, "person", ".txt");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, dir_ + "/person.txt");
}

TEST_F(TableFileTest, MissingTableIsNotFound) {
  Touch("person.csv");
  auto death = FindTableFile(dir_, "death");
  EXPECT_EQ(death.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(death.status().message(), HasSubstr("death.csv"));
  auto no_dir = FindTableFile(dir_ + "/missing", "person");
  EXPECT_EQ(no_dir.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TableFileTest, SeveralMatchesAreAnError) {
  Touch("person.csv");
  Touch("PERSON.csv");
  auto person = FindTableFile(dir_, "person");
  EXPECT_EQ(person.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(person.status().message(), HasSubstr("PERSON.csv"));
  EXPECT_THAT(person.status().message(), HasSubstr("person.csv"));
}

}  // namespace
}  // namespace passerelle::csv
