#include "cli/format.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::CountResponse TwoCells() {
  v1::CountResponse r;
  r.set_site("fr");
  r.set_snapshot("fr-20261122T000000Z-1");
  for (auto [sex, n] :
       {std::pair<const char*, int>{"female", 12}, {"male", 30}}) {
    v1::Cell* c = r.add_cells();
    v1::DimensionValue* v = c->mutable_key()->add_values();
    v->set_dimension("sex");
    v->set_value(sex);
    c->set_count(n);
  }
  return r;
}

TEST(FormatTest, NodeCountJsonHasTheDocumentedShape) {
  EXPECT_EQ(
      FormatNodeCount(TwoCells(), OutputFormat::kJson),
      "{\"site\": \"fr\", \"snapshot\": \"fr-20261122T000000Z-1\", \"cells\": "
      "[{\"key\": {\"sex\": \"female\"}, \"count\": 12}, "
      "{\"key\": {\"sex\": \"male\"}, \"count\": 30}]}\n");
  v1::CountResponse total;
  total.set_site("qc");
  total.add_cells()->set_count(7);
  EXPECT_THAT(FormatNodeCount(total, OutputFormat::kJson),
              HasSubstr("\"cells\": [{\"key\": {}, \"count\": 7}]"));
}

TEST(FormatTest, NodeCountTableIsAlignedWithTotal) {
  const std::string table = FormatNodeCount(TwoCells(), OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("sex     count\n"));
  EXPECT_THAT(table, HasSubstr("female     12\n"));
  EXPECT_THAT(table, HasSubstr("total      42\n"));
}

TEST(FormatTest, NodeCountCsv) {
  EXPECT_EQ(FormatNodeCount(TwoCells(), OutputFormat::kCsv),
            "site,sex,count\nfr,female,12\nfr,male,30\n");
}

TEST(FormatTest, QueryJsonShowsSuppressedAsNullAndPartial) {
  v1::QueryResponse r;
  r.set_complete(false);
  v1::SiteResult* s = r.add_sites();
  s->set_site("qc");
  s->set_status(v1::SITE_STATUS_TIMED_OUT);
  s->set_reason("DEADLINE_EXCEEDED: slow");
  v1::ReleasedCell* c = r.add_combined();
  c->mutable_precision()->set_kind(v1::Precision::SUPPRESSED);
  c->mutable_precision()->set_threshold(10);
  v1::ReleasedCell* d = r.add_combined();
  d->set_count(120);
  d->set_interval_low(114);
  d->set_interval_high(126);
  d->mutable_precision()->set_kind(v1::Precision::NOISED);
  d->mutable_precision()->set_mechanism("discrete_laplace");
  d->mutable_precision()->set_epsilon(0.5);
  const std::string json = FormatQueryResponse(r, OutputFormat::kJson);
  EXPECT_THAT(json, HasSubstr("\"complete\": false"));
  EXPECT_THAT(json, HasSubstr("\"status\": \"timed_out\""));
  EXPECT_THAT(
      json,
      HasSubstr(
          "\"count\": null, \"precision\": \"suppressed\", \"threshold\": 10"));
  EXPECT_THAT(json, HasSubstr("\"count\": 120, \"precision\": \"noised\""));
  EXPECT_THAT(json, HasSubstr("\"interval\": [114, 126]"));
  const std::string table = FormatQueryResponse(r, OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("PARTIAL"));
  EXPECT_THAT(table, HasSubstr("qc: timed_out"));
  EXPECT_THAT(table, HasSubstr("< 10"));
  EXPECT_THAT(table, Not(HasSubstr("complete (all sites answered)")));
}

TEST(FormatTest, ComplementarySuppressionIsShownAsSuppressedNotBelowK) {
  v1::QueryResponse r;
  r.set_complete(true);
  v1::ReleasedCell* c = r.add_combined();
  c->mutable_precision()->set_kind(v1::Precision::SUPPRESSED);
  c->mutable_precision()->set_threshold(10);
  c->mutable_precision()->set_complementary(true);
  const std::string table = FormatQueryResponse(r, OutputFormat::kTable);
  EXPECT_THAT(table, HasSubstr("suppressed"));
  EXPECT_THAT(table, Not(HasSubstr("< 10")));
  const std::string json = FormatQueryResponse(r, OutputFormat::kJson);
  EXPECT_THAT(json, HasSubstr("\"complementary\": true"));
}

TEST(FormatTest, JsonQuoteEscapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST(FormatTest, UnknownFormatIsAnError) {
  EXPECT_FALSE(ParseOutputFormat("xml").ok());
  EXPECT_TRUE(ParseOutputFormat("csv").ok());
}

}  // namespace
}  // namespace passerelle::cli
