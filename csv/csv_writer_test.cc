#include "csv/csv_writer.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::csv {
namespace {

using ::testing::HasSubstr;

TEST(CsvWriterTest, QuotesOnlyWhenNeeded) {
  std::string out;
  {
    auto writer = CsvWriter::ToString(&out);
    writer->Row({"plain", "with,comma", "with \"quote\"", "two\nlines",
                 "cr\rhere", "", "semi;colon"});
    ASSERT_TRUE(writer->Close().ok());
  }
  EXPECT_EQ(out,
            "plain,\"with,comma\",\"with \"\"quote\"\"\",\"two\nlines\","
            "\"cr\rhere\",,semi;colon\n");
}

TEST(CsvWriterTest, SemicolonDelimiterAndCrlf) {
  std::string out;
  CsvWriterOptions options;
  options.delimiter = ';';
  options.crlf = true;
  auto writer = CsvWriter::ToString(&out, options);
  writer->Row({"a;b", "c,d"});
  writer->Row({"e"});
  ASSERT_TRUE(writer->Close().ok());
  EXPECT_EQ(out, "\"a;b\";c,d\r\ne\r\n");
}

TEST(CsvWriterTest, NumbersAndDates) {
  std::string out;
  auto writer = CsvWriter::ToString(&out);
  writer->Int(-9223372036854775807LL - 1);
  writer->Int(0);
  writer->Decimal(73, 1);
  writer->Decimal(-5, 2);
  writer->Decimal(1200, 0);
  writer->Decimal(100, 2);
  writer->Double(0.1);
  writer->Double(-2.5);
  writer->Date(2010, 1, 2);
  writer->Date(987, 12, 31);
  writer->Empty();
  writer->EndRow();
  ASSERT_TRUE(writer->Close().ok());
  EXPECT_EQ(out,
            "-9223372036854775808,0,7.3,-0.05,1200,1.00,0.1,-2.5,2010-01-02,"
            "0987-12-31,\n");
}

TEST(CsvWriterTest, SmallBufferFlushesAndGrowsForLargeFields) {
  std::string out;
  CsvWriterOptions options;
  options.buffer_size = 16;
  auto writer = CsvWriter::ToString(&out, options);
  const std::string big(1000, 'q');
  for (int i = 0; i < 50; ++i) {
    writer->Int(i);
    writer->Text(big + "\"");
    writer->EndRow();
  }
  ASSERT_TRUE(writer->Close().ok());
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    expected += std::to_string(i) + ",\"" + big + "\"\"\"\n";
  }
  EXPECT_EQ(out, expected);
  EXPECT_EQ(writer->bytes_written(), static_cast<int64_t>(expected.size()));
}

TEST(CsvWriterTest, WritesFile) {
  std::string pattern = ::testing::TempDir() + "/csv_writer_test_XXXXXX";
  const std::string dir = ::mkdtemp(pattern.data());
  const std::string path = dir + "/out.csv";
  {
    auto writer = CsvWriter::Create(path);
    ASSERT_TRUE(writer.ok()) << writer.status();
    (*writer)->Row({"a", "b"});
    (*writer)->Int(1);
    (*writer)->Text("x y");
    (*writer)->EndRow();
    ASSERT_TRUE((*writer)->Close().ok());
    EXPECT_TRUE((*writer)->Close().ok());  // Idempotent.
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  EXPECT_EQ(content.str(), "a,b\n1,x y\n");
  std::filesystem::remove_all(dir);
}

TEST(CsvWriterTest, CreateInMissingDirectoryFails) {
  auto writer = CsvWriter::Create("/nonexistent/dir/out.csv");
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(writer.status().message(), HasSubstr("/nonexistent/dir/out.csv"));
}

}  // namespace
}  // namespace passerelle::csv
