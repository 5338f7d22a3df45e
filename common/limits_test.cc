#include "common/limits.h"

#include <string>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace passerelle::limits {
namespace {

TEST(QuoteTest, EscapesAndCuts) {
  EXPECT_EQ(Quote("abc"), "\"abc\"");
  EXPECT_EQ(Quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\x01\"");
  // Valid UTF-8 is kept as is.
  EXPECT_EQ(Quote("\xC3\x89tude"), "\"\xC3\x89tude\"");
  const std::string big(3 * 1024 * 1024, 'x');
  const std::string q = Quote(big);
  EXPECT_EQ(q,
            "\"" + std::string(kMaxEchoBytes, 'x') + "\"... (3145728 bytes)");
  // Worst case: every byte escaped to four characters.
  const std::string controls(10000, '\x01');
  EXPECT_LE(Quote(controls).size(), 4 * kMaxEchoBytes + 32);
}

TEST(QuoteTest, NeverCutsInsideAUtf8Sequence) {
  std::string s(kMaxEchoBytes - 1, 'a');
  s += "\xC3\x89";  // Straddles the cut.
  s += "zzz";
  const std::string q = Quote(s);
  EXPECT_EQ(q, "\"" + std::string(kMaxEchoBytes - 1, 'a') + "\"... (" +
                   std::to_string(s.size()) + " bytes)");
}

TEST(BoundTextTest, CutsLongText) {
  EXPECT_EQ(BoundText("short"), "short");
  const std::string big(100000, 'r');
  const std::string b = BoundText(big);
  EXPECT_LE(b.size(), kMaxReasonBytes + 40);
  EXPECT_TRUE(absl::EndsWith(b, "[... 98976 bytes omitted]")) << b;
}

TEST(CheckIdTest, NamesFieldAndLimit) {
  EXPECT_TRUE(CheckId("project", "diabetes-fr-qc").ok());
  EXPECT_TRUE(CheckId("project", "").ok());
  EXPECT_FALSE(CheckId("project", "", kMaxIdBytes, /*required=*/true).ok());
  EXPECT_TRUE(CheckId("project", std::string(kMaxIdBytes, 'p')).ok());
  const absl::Status s = CheckId("project", std::string(3 * 1024 * 1024, 'p'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(
      s.message(), "project is 3145728 bytes, over the limit of 128 bytes"))
      << s.message();
  EXPECT_LE(s.message().size(), 200u);
  const absl::Status c = CheckId("sites[2]", "fr\nqc");
  EXPECT_EQ(c.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c.message(), "sites[2] contains a control character: \"fr\\nqc\"");
}

TEST(CheckRequestIdTest, FixedFormat) {
  EXPECT_TRUE(
      CheckRequestId("request_id", "0123456789abcdef0123456789abcdef").ok());
  EXPECT_TRUE(CheckRequestId("request_id", "direct-1").ok());
  EXPECT_FALSE(CheckRequestId("request_id", "").ok());
  EXPECT_FALSE(CheckRequestId("request_id", "a b").ok());
  EXPECT_FALSE(CheckRequestId("request_id", "a\"b").ok());
  EXPECT_FALSE(
      CheckRequestId("request_id", std::string(kMaxRequestIdBytes + 1, 'a'))
          .ok());
  const absl::Status s =
      CheckRequestId("request_id", std::string(1 << 20, 'r'));
  EXPECT_TRUE(absl::StrContains(s.message(), "request_id must be 1 to 64"))
      << s.message();
  EXPECT_LE(s.message().size(), 200u);
}

TEST(CheckSizeTest, Message) {
  EXPECT_TRUE(CheckSize("query text", 10, 10).ok());
  EXPECT_EQ(CheckSize("query text", 11, 10).message(),
            "query text is 11 bytes, over the limit of 10 bytes");
}

TEST(RecordedIdentityTest, BoundsIdentity) {
  EXPECT_EQ(RecordedIdentity("spiffe://passerelle/user/alice"),
            "spiffe://passerelle/user/alice");
  EXPECT_LE(RecordedIdentity(std::string(100000, 'i')).size(),
            kMaxIdentityBytes);
  EXPECT_EQ(RecordedIdentity("a\nb"), "\"a\\nb\"");
}

}  // namespace
}  // namespace passerelle::limits
