#include "bench/load/queries.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "bench/load/stats.h"
#include "gtest/gtest.h"
#include "query/canonical.h"
#include "query/parser.h"

namespace passerelle::bench {
namespace {

// Every query parses and no two share a canonical form (what the gateway's
// repeat protection keys on), over a range that crosses every digit of the
// mixed radix, including the first change of `as of` date.
void ExpectDistinctCanonical(const QuerySource& source, uint64_t from,
                             uint64_t n) {
  absl::flat_hash_set<std::string> seen;
  for (uint64_t i = from; i < from + n; ++i) {
    const std::string text = source.Query(i);
    absl::StatusOr<v1::Query> q = query::ParseQuery(text);
    ASSERT_TRUE(q.ok()) << i << ": " << text << ": " << q.status();
    ASSERT_TRUE(seen.insert(query::CanonicalText(*q)).second)
        << "query " << i << " repeats: " << text;
  }
}

TEST(DefaultMixTest, DistinctCanonicalForms) {
  absl::StatusOr<std::unique_ptr<QuerySource>> mix =
      NewDefaultMix({Shape::kCount, Shape::kBreakdown, Shape::kSequence});
  ASSERT_TRUE(mix.ok());
  // 3 shapes x 9 codes x 2 x 50 x 40 = 108,000 before the date moves.
  EXPECT_EQ((*mix)->DistinctCount() % 108000, 0u);
  ExpectDistinctCanonical(**mix, 0, 6000);
  ExpectDistinctCanonical(**mix, 108000 - 3000, 6000);
}

TEST(DefaultMixTest, ShapesInTurn) {
  absl::StatusOr<std::unique_ptr<QuerySource>> mix =
      NewDefaultMix({Shape::kCount, Shape::kSequence});
  ASSERT_TRUE(mix.ok());
  EXPECT_EQ((*mix)->Query(0).find("before"), std::string::npos);
  EXPECT_NE((*mix)->Query(1).find(" before drug atc:"), std::string::npos);
  EXPECT_NE((*mix)->Query(0).find(" as of 2025-12-31"), std::string::npos);
  EXPECT_FALSE(NewDefaultMix({}).ok());
}

TEST(ListSourceTest, CyclesWithDistinctDates) {
  absl::StatusOr<std::unique_ptr<QuerySource>> list = NewListSource(
      {"condition icd10:E11*", "drug atc:A10BA02 group by sex"}, true);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)->Query(0), "condition icd10:E11* as of 2025-12-31");
  EXPECT_EQ((*list)->Query(3),
            "drug atc:A10BA02 group by sex as of 2025-12-30");
  ExpectDistinctCanonical(**list, 0, 2000);

  absl::StatusOr<std::unique_ptr<QuerySource>> fixed =
      NewListSource({"condition icd10:E11*"}, false);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ((*fixed)->Query(5), "condition icd10:E11*");
  EXPECT_EQ((*fixed)->DistinctCount(), 1u);

  absl::StatusOr<std::unique_ptr<QuerySource>> dated =
      NewListSource({"condition icd10:E11* as of 2020-01-01"}, true);
  ASSERT_TRUE(dated.ok());
  EXPECT_EQ((*dated)->Query(1), "condition icd10:E11* as of 2020-01-01");
  EXPECT_EQ((*dated)->DistinctCount(), 1u);
}

TEST(ReadQueryFileTest, SkipsBlankAndComments) {
  const std::string path =
      std::string(testing::TempDir()) + "/loadgen_queries.txt";
  {
    std::ofstream out(path);
    out << "# a comment\n\n  condition icd10:I10*  \nsex = female\n";
  }
  absl::StatusOr<std::vector<std::string>> lines = ReadQueryFile(path);
  ASSERT_TRUE(lines.ok()) << lines.status();
  EXPECT_EQ(*lines,
            (std::vector<std::string>{"condition icd10:I10*", "sex = female"}));
  std::remove(path.c_str());
  EXPECT_FALSE(ReadQueryFile(path).ok());
}

TEST(ParseShapesTest, NamesAndErrors) {
  absl::StatusOr<std::vector<Shape>> s = ParseShapes("count, sequence");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, (std::vector<Shape>{Shape::kCount, Shape::kSequence}));
  EXPECT_FALSE(ParseShapes("count,bogus").ok());
  EXPECT_FALSE(ParseShapes("").ok());
}

TEST(SummarizeTest, NearestRank) {
  std::vector<int64_t> nanos;
  for (int i = 100; i >= 1; --i) nanos.push_back(i * 1000000LL);  // 1..100 ms
  LatencySummary s = Summarize(nanos);
  EXPECT_EQ(s.count, 100);
  EXPECT_DOUBLE_EQ(s.min_ms, 1);
  EXPECT_DOUBLE_EQ(s.p50_ms, 50);
  EXPECT_DOUBLE_EQ(s.p90_ms, 90);
  EXPECT_DOUBLE_EQ(s.p99_ms, 99);
  EXPECT_DOUBLE_EQ(s.max_ms, 100);
  EXPECT_DOUBLE_EQ(s.mean_ms, 50.5);
  std::vector<int64_t> empty;
  EXPECT_EQ(Summarize(empty).count, 0);
}

TEST(RecorderTest, CountsByStatusCode) {
  Recorder r;
  r.RecordOk(5, true, false, 0.02);
  r.RecordOk(7, false, true, 0);
  r.RecordError(StatusCodeName(14), "node down");
  r.RecordError(StatusCodeName(14), "again");
  r.RecordError(StatusCodeName(8), "budget");
  Recorder::Snapshot s = r.Take();
  EXPECT_EQ(s.ok, 2);
  EXPECT_EQ(s.partial, 1);
  EXPECT_EQ(s.repeats, 1);
  EXPECT_DOUBLE_EQ(s.epsilon_charged, 0.02);
  EXPECT_EQ(s.errors.at("UNAVAILABLE"), 2);
  EXPECT_EQ(s.first_error.at("UNAVAILABLE"), "node down");
  EXPECT_EQ(s.errors.at("RESOURCE_EXHAUSTED"), 1);
  EXPECT_EQ(r.Take().ok, 0);
  EXPECT_EQ(StatusCodeName(99), "CODE_99");
}

}  // namespace
}  // namespace passerelle::bench
