#include "csv/csv_reader.h"

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "csv/csv_writer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::csv {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Fields(const CsvReader& reader) {
  return std::vector<std::string>(reader.fields().begin(),
                                  reader.fields().end());
}

std::unique_ptr<CsvReader> Read(std::string data,
                                const CsvReaderOptions& options = {}) {
  auto reader = CsvReader::FromString(std::move(data), "t.csv", options);
  EXPECT_TRUE(reader.ok()) << reader.status();
  return reader.ok() ? std::move(*reader) : nullptr;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "/csv_reader_test_XXXXXX";
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

TEST(CsvReaderTest, ReadsHeaderAndRowsWithLineNumbers) {
  auto reader = Read("person_id,Gender_Concept_ID\n1,8507\n2,8532\n");
  ASSERT_NE(reader, nullptr);
  EXPECT_THAT(reader->header(), ElementsAre("person_id", "Gender_Concept_ID"));
  EXPECT_EQ(reader->ColumnIndex("PERSON_ID"), 0);
  EXPECT_EQ(reader->ColumnIndex("gender_concept_id"), 1);
  EXPECT_EQ(reader->ColumnIndex(" gender_concept_id "), 1);
  EXPECT_EQ(reader->ColumnIndex("year_of_birth"), -1);
  auto missing = reader->RequireColumn("year_of_birth");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(missing.status().message(), HasSubstr("t.csv"));
  EXPECT_THAT(missing.status().message(), HasSubstr("year_of_birth"));

  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 2);
  EXPECT_THAT(Fields(*reader), ElementsAre("1", "8507"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 3);
  EXPECT_EQ(reader->field(1), "8532");
  EXPECT_EQ(reader->field(7), "");
  EXPECT_FALSE(*reader->Next());
  EXPECT_FALSE(*reader->Next());
  EXPECT_EQ(reader->records_read(), 2);
}

TEST(CsvReaderTest, QuotedFieldsWithEmbeddedSeparatorsQuotesAndNewlines) {
  auto reader = Read(
      "a,b,c\n"
      "\"x,y\",\"say \"\"hi\"\"\",\"two\nlines\"\n"
      "\"\",plain,\"\"\"\"\n"
      "next,\"multi\r\nline\r\nvalue\",z\n"
      "last,row,here\n");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 2);
  EXPECT_THAT(Fields(*reader), ElementsAre("x,y", "say \"hi\"", "two\nlines"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 4);
  EXPECT_THAT(Fields(*reader), ElementsAre("", "plain", "\""));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 5);
  EXPECT_THAT(Fields(*reader),
              ElementsAre("next", "multi\r\nline\r\nvalue", "z"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 8);
  EXPECT_THAT(Fields(*reader), ElementsAre("last", "row", "here"));
  EXPECT_FALSE(*reader->Next());
}

TEST(CsvReaderTest, CrlfAndLoneCrLineEndings) {
  auto reader = Read("a,b\r\n1,2\r\n3,4\r5,6");
  ASSERT_NE(reader, nullptr);
  EXPECT_THAT(reader->header(), ElementsAre("a", "b"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("1", "2"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("3", "4"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 4);
  EXPECT_THAT(Fields(*reader), ElementsAre("5", "6"));
  EXPECT_FALSE(*reader->Next());
}

TEST(CsvReaderTest, SemicolonDelimiterAndBom) {
  CsvReaderOptions options;
  options.delimiter = ';';
  auto reader = Read(
      "\xEF\xBB\xBF"
      "CIM_COD;CIM_LIB\nE119;\"Diabète; type 2\"\nI10;HTA\n",
      options);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->ColumnIndex("cim_cod"), 0);
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("E119", "Diabète; type 2"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("I10", "HTA"));
  EXPECT_FALSE(*reader->Next());
}

TEST(CsvReaderTest, EmptyFieldsTrailingDelimiterAndMissingFinalNewline) {
  auto reader = Read("a,b,c\n,,\n1,,\n,,3");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("", "", ""));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("1", "", ""));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("", "", "3"));
  EXPECT_FALSE(*reader->Next());
}

TEST(CsvReaderTest, SkipsBlankLinesButCountsThem) {
  auto reader = Read("a\n\n1\n\r\n\n2\n\n");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 3);
  EXPECT_EQ(reader->field(0), "1");
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 6);
  EXPECT_EQ(reader->field(0), "2");
  EXPECT_FALSE(*reader->Next());
}

TEST(CsvReaderTest, NoHeaderMode) {
  CsvReaderOptions options;
  options.has_header = false;
  auto reader = Read("1,2\n3\n", options);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->header().empty());
  EXPECT_EQ(reader->ColumnIndex("a"), -1);
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 1);
  EXPECT_THAT(Fields(*reader), ElementsAre("1", "2"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_THAT(Fields(*reader), ElementsAre("3"));
}

TEST(CsvReaderTest, WrongFieldCountNamesFileAndLineAndRecovers) {
  auto reader = Read("a,b\n1,2\n\"x\ny\"\n3,4\n");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  auto bad = reader->Next();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("t.csv:3:"));
  EXPECT_THAT(bad.status().message(), HasSubstr("expected 2 fields"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 5);
  EXPECT_THAT(Fields(*reader), ElementsAre("3", "4"));
  EXPECT_EQ(reader->records_read(), 2);
}

TEST(CsvReaderTest, TextAfterClosingQuoteIsAnErrorAndReaderResumes) {
  auto reader = Read("a,b\n1,2\n\"multi\nline\"x,2\n5,6\n");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  auto bad = reader->Next();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  // The closing quote is on line 4.
  EXPECT_THAT(bad.status().message(), HasSubstr("t.csv:4:"));
  EXPECT_THAT(bad.status().message(), HasSubstr("after a closing quote"));
  ASSERT_TRUE(*reader->Next());
  EXPECT_EQ(reader->line(), 5);
  EXPECT_THAT(Fields(*reader), ElementsAre("5", "6"));
}

TEST(CsvReaderTest, UnterminatedQuoteNamesTheLineWhereItOpened) {
  auto reader = Read("a,b\n1,2\n3,\"open\n4,5\n6,7\n");
  ASSERT_NE(reader, nullptr);
  ASSERT_TRUE(*reader->Next());
  auto bad = reader->Next();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("t.csv:3:"));
  EXPECT_THAT(bad.status().message(), HasSubstr("unterminated"));
  auto after = reader->Next();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(*after);
}

TEST(CsvReaderTest, EmptyFileWithHeaderExpectedIsAnError) {
  auto reader = CsvReader::FromString("", "empty.csv");
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reader.status().message(), HasSubstr("empty.csv"));
}

TEST(CsvReaderTest, MissingFileIsNotFound) {
  auto reader = CsvReader::Open("/nonexistent/dir/person.csv");
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(reader.status().message(), HasSubstr("person.csv"));
}

TEST(CsvReaderTest, RecordLargerThanLimitIsAnError) {
  TempDir dir;
  const std::string path = dir.path() + "/big.csv";
  WriteFile(path, "a\n\"" + std::string(5000, 'x') + "\"\n");
  CsvReaderOptions options;
  options.block_size = 64;
  options.max_record_bytes = 1000;
  auto reader = CsvReader::Open(path, options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto bad = (*reader)->Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("big.csv:2:"));
  // The reader cannot resume: later calls fail instead of looping.
  auto after = (*reader)->Next();
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*reader)->Next().status().code(),
            absl::StatusCode::kFailedPrecondition);
}

// Found by csv/fuzz: the fields parsed before an oversized record's error
// were left in fields(), as views into a buffer whose contents Fill() had
// just moved (garbage to a caller that looked at them).
TEST(CsvReaderTest, FailedNextLeavesNoFields) {
  TempDir dir;
  const std::string path = dir.path() + "/wide.csv";
  WriteFile(path, "a,b,c\n1,2," + std::string(5000, 'x') + "\n");
  CsvReaderOptions options;
  options.block_size = 64;
  options.max_record_bytes = 1000;
  auto reader = CsvReader::Open(path, options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto bad = (*reader)->Next();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*reader)->num_fields(), 0u);
  EXPECT_THAT(Fields(**reader), ElementsAre());
  EXPECT_EQ((*reader)->field(0), "");
}

// Deterministic pseudo-random text full of characters that need quoting.
std::string NastyField(uint64_t* state) {
  static const char kAlphabet[] = "ab,\"\n\r;é x1";
  *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
  const int length = static_cast<int>((*state >> 33) % 12);
  std::string out;
  for (int i = 0; i < length; ++i) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    out += kAlphabet[(*state >> 33) % (sizeof(kAlphabet) - 1)];
  }
  return out;
}

TEST(CsvReaderTest, RoundTripsWriterOutputAcrossBlockBoundaries) {
  TempDir dir;
  for (const char delimiter : {',', ';'}) {
    for (const bool crlf : {false, true}) {
      const std::string path = dir.path() + "/round.csv";
      std::vector<std::vector<std::string>> rows;
      uint64_t state = 42;
      {
        CsvWriterOptions wopts;
        wopts.delimiter = delimiter;
        wopts.crlf = crlf;
        wopts.buffer_size = 300;
        auto writer = CsvWriter::Create(path, wopts);
        ASSERT_TRUE(writer.ok()) << writer.status();
        (*writer)->Row({"id", "text one", "text,two", "last"});
        for (int r = 0; r < 2000; ++r) {
          std::vector<std::string> row = {std::to_string(r), NastyField(&state),
                                          NastyField(&state),
                                          NastyField(&state)};
          for (const std::string& f : row) (*writer)->Text(f);
          (*writer)->EndRow();
          rows.push_back(row);
        }
        ASSERT_TRUE((*writer)->Close().ok());
      }
      for (const size_t block : {size_t{64}, size_t{1000}, size_t{1} << 20}) {
        CsvReaderOptions ropts;
        ropts.delimiter = delimiter;
        ropts.block_size = block;
        // Fields may be empty strings made only of line breaks, never a
        // whole empty line, but keep blank-line skipping on as in real use.
        auto reader = CsvReader::Open(path, ropts);
        ASSERT_TRUE(reader.ok()) << reader.status();
        EXPECT_EQ((*reader)->ColumnIndex("TEXT,TWO"), 2);
        size_t index = 0;
        int64_t expected_line = 2;
        for (;;) {
          auto next = (*reader)->Next();
          ASSERT_TRUE(next.ok()) << next.status();
          if (!*next) break;
          ASSERT_LT(index, rows.size());
          EXPECT_EQ(Fields(**reader), rows[index])
              << "row " << index << " block " << block;
          EXPECT_EQ((*reader)->line(), expected_line) << "row " << index;
          for (const std::string& f : rows[index]) {
            expected_line += std::count(f.begin(), f.end(), '\n');
            // A lone CR inside quotes is content, not a line break.
          }
          ++expected_line;
          ++index;
        }
        EXPECT_EQ(index, rows.size());
      }
    }
  }
}

// Everything a reader reports, as text, for comparing two readers.
std::string Transcript(CsvReader& reader) {
  std::string out;
  for (int i = 0; i < 100000; ++i) {
    auto next = reader.Next();
    if (!next.ok()) {
      out += "error " + std::string(next.status().message()) + "\n";
      continue;
    }
    if (!*next) break;
    out += "line " + std::to_string(reader.line()) + ":";
    for (absl::string_view f : reader.fields()) {
      out += "[" + std::string(f) + "]";
    }
    out += "\n";
  }
  return out;
}

// Random bytes from a CSV-heavy alphabet, malformed rows included: reading
// through small blocks must report exactly what reading all at once does,
// errors and recovery included.
TEST(CsvReaderTest, BlockSizeNeverChangesTheResult) {
  TempDir dir;
  static const char kAlphabet[] = "ab,,\"\"\n\r;x";
  uint64_t state = 7;
  int errors = 0, records = 0;
  for (int round = 0; round < 60; ++round) {
    std::string data = "h1,h2,h3\n";
    const int length = 200 + round * 40;
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      data += kAlphabet[(state >> 33) % (sizeof(kAlphabet) - 1)];
    }
    CsvReaderOptions options;
    options.require_header_width = (round % 2) == 0;
    auto whole = CsvReader::FromString(data, "f.csv", options);
    ASSERT_TRUE(whole.ok()) << whole.status();
    const std::string expected = Transcript(**whole);
    for (size_t at = expected.find("error "); at != std::string::npos;
         at = expected.find("error ", at + 1)) {
      ++errors;
    }
    for (size_t at = expected.find("line "); at != std::string::npos;
         at = expected.find("line ", at + 1)) {
      ++records;
    }
    const std::string path = dir.path() + "/f.csv";
    WriteFile(path, data);
    for (const size_t block : {size_t{64}, size_t{100}, size_t{257}}) {
      options.block_size = block;
      auto reader = CsvReader::Open(path, options);
      ASSERT_TRUE(reader.ok()) << reader.status();
      // Error messages name the path; FromString used "f.csv".
      std::string got = Transcript(**reader);
      for (size_t at = got.find(path); at != std::string::npos;
           at = got.find(path, at)) {
        got.replace(at, path.size(), "f.csv");
      }
      ASSERT_EQ(got, expected) << "round " << round << " block " << block;
    }
  }
  // The inputs exercised both good records and every kind of error.
  EXPECT_GT(records, 100);
  EXPECT_GT(errors, 30);
}

TEST(CsvReaderTest, ReadsMimicDemoPersonTable) {
  const char* source = std::getenv("PASSERELLE_SOURCE_DIR");
  if (source == nullptr) {
    GTEST_SKIP() << "PASSERELLE_SOURCE_DIR is not set; cannot locate "
                    "../shared/data/mimic-iv-demo-omop";
  }
  const std::string path =
      std::string(source) + "/../shared/data/mimic-iv-demo-omop/person.csv";
  if (!std::filesystem::exists(path)) {
    GTEST_SKIP() << "MIMIC-IV demo OMOP data not present at " << path
                 << " (the ../shared datasets are absent)";
  }
  auto reader = CsvReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto id_column = (*reader)->RequireColumn("PERSON_ID");
  auto gender_column = (*reader)->RequireColumn("gender_concept_id");
  auto year_column = (*reader)->RequireColumn("Year_Of_Birth");
  ASSERT_TRUE(id_column.ok() && gender_column.ok() && year_column.ok());
  std::set<int64_t> ids;
  int negative = 0;
  for (;;) {
    auto next = (*reader)->Next();
    ASSERT_TRUE(next.ok()) << next.status();
    if (!*next) break;
    int64_t id = 0;
    ASSERT_TRUE(absl::SimpleAtoi((*reader)->field(*id_column), &id))
        << (*reader)->field(*id_column);
    if (id < 0) ++negative;
    ids.insert(id);
    const absl::string_view gender = (*reader)->field(*gender_column);
    EXPECT_TRUE(gender == "8507" || gender == "8532") << gender;
    int year = 0;
    EXPECT_TRUE(absl::SimpleAtoi((*reader)->field(*year_column), &year));
  }
  EXPECT_EQ((*reader)->records_read(), 100);
  EXPECT_EQ(ids.size(), 100u);
  EXPECT_GT(negative, 0) << "MIMIC person_ids include negative values";
}

}  // namespace
}  // namespace passerelle::csv
