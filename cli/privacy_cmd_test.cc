#include "cli/privacy_cmd.h"

#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out, err;
};

Result RunCli(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = RunPrivacyCommand(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(PrivacySampleTest, PrintsNIntegersAroundTheCount) {
  const Result r = RunCli({"sample", "--mechanism", "laplace", "--epsilon", "1",
                           "--count", "100", "--n", "5000"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5000u);
  double sum = 0;
  for (const std::string& l : lines) {
    int64_t v;
    ASSERT_TRUE(absl::SimpleAtoi(l, &v)) << l;
    sum += static_cast<double>(v);
  }
  // Mean 100, sd of the mean sqrt(2p/(1-p)^2 / n) with p = 1/e.
  const double p = std::exp(-1.0);
  EXPECT_NEAR(sum / 5000, 100.0,
              6 * std::sqrt(2 * p / ((1 - p) * (1 - p)) / 5000));
}

TEST(PrivacySampleTest, GaussianWithRho) {
  const Result r = RunCli(
      {"sample", "--mechanism=gaussian", "--rho=0.5", "--count=0", "--n=10"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(r.out, '\n', absl::SkipEmpty()))
          .size(),
      10u);
}

TEST(PrivacySampleTest, UsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{}, "missing command"},
      {{"resample"}, "unknown command"},
      {{"sample", "--epsilon", "1", "--count", "1", "--n", "1"},
       "--mechanism is required"},
      {{"sample", "--mechanism", "uniform", "--epsilon", "1", "--count", "1",
        "--n", "1"},
       "laplace or gaussian"},
      {{"sample", "--mechanism", "laplace", "--rho", "1", "--count", "1", "--n",
        "1"},
       "--rho is for"},
      {{"sample", "--mechanism", "gaussian", "--count", "1", "--n", "1"},
       "needs --rho"},
      {{"sample", "--mechanism", "laplace", "--epsilon", "x", "--count", "1",
        "--n", "1"},
       "not a number"},
      {{"sample", "--mechanism", "laplace", "--epsilon", "0", "--count", "1",
        "--n", "1"},
       "epsilon must be in"},
      {{"sample", "--mechanism", "laplace", "--epsilon", "1", "--count", "-1",
        "--n", "1"},
       "--count must be"},
      {{"sample", "--mechanism", "laplace", "--epsilon", "1", "--count", "1",
        "--n", "0"},
       "--n must be"},
      {{"sample", "--mechanism", "laplace", "--epsilon", "1", "--count", "1"},
       "--n is required"},
      {{"sample", "--bogus"}, "unknown flag"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = RunCli(args);
    EXPECT_EQ(r.code, 2) << message;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_THAT(r.err, HasSubstr("usage: passerelle privacy sample"));
    EXPECT_TRUE(r.out.empty());
  }
}

}  // namespace
}  // namespace passerelle::cli
