#include "query/cells.h"

#include <set>

#include "gtest/gtest.h"
#include "query/parser.h"

namespace passerelle::query {
namespace {

namespace v1 = ::passerelle::v1;

TEST(CellsTest, AgeBandsOfTen) {
  EXPECT_EQ(AgeBandCount(10), 12);
  EXPECT_EQ(AgeBandLabel(0, 10), "0-9");
  EXPECT_EQ(AgeBandLabel(4, 10), "40-49");
  EXPECT_EQ(AgeBandLabel(10, 10), "100-109");
  EXPECT_EQ(AgeBandLabel(11, 10), "110+");
  EXPECT_EQ(AgeBandLabel(12, 10), "");
  EXPECT_EQ(AgeBandLabel(-1, 10), "");
  EXPECT_EQ(AgeBandIndex(0, 10), 0);
  EXPECT_EQ(AgeBandIndex(49, 10), 4);
  EXPECT_EQ(AgeBandIndex(109, 10), 10);
  EXPECT_EQ(AgeBandIndex(110, 10), 11);
  EXPECT_EQ(AgeBandIndex(140, 10), 11);
  EXPECT_EQ(AgeBandIndex(-1, 10), -1);
}

TEST(CellsTest, LastBandStartsAtFirstMultipleAtOrAbove110) {
  // W = 7: 112 is the first multiple of 7 at or above 110.
  EXPECT_EQ(AgeBandCount(7), 17);
  EXPECT_EQ(AgeBandLabel(15, 7), "105-111");
  EXPECT_EQ(AgeBandLabel(16, 7), "112+");
  EXPECT_EQ(AgeBandIndex(111, 7), 15);
  EXPECT_EQ(AgeBandIndex(112, 7), 16);
  // W = 1: one band per year up to 109.
  EXPECT_EQ(AgeBandCount(1), 111);
  EXPECT_EQ(AgeBandLabel(40, 1), "40-40");
  EXPECT_EQ(AgeBandLabel(110, 1), "110+");
  // W = 110 and 120: one closed band and the open one.
  EXPECT_EQ(AgeBandCount(110), 2);
  EXPECT_EQ(AgeBandLabel(1, 110), "110+");
  EXPECT_EQ(AgeBandCount(120), 2);
  EXPECT_EQ(AgeBandLabel(0, 120), "0-119");
  EXPECT_EQ(AgeBandLabel(1, 120), "120+");
  // Invalid widths.
  EXPECT_EQ(AgeBandCount(0), 0);
  EXPECT_EQ(AgeBandCount(-5), 0);
  EXPECT_EQ(AgeBandCount(121), 0);
  EXPECT_EQ(AgeBandIndex(30, 0), -1);
  EXPECT_EQ(AgeBandLabel(0, 0), "");
}

TEST(CellsTest, BandsPartitionAgesForEveryWidth) {
  for (int w = 1; w <= 120; ++w) {
    const int count = AgeBandCount(w);
    ASSERT_GE(count, 2) << w;
    // The open band starts at a multiple of w, at or above 110, and the one
    // before it starts below 110.
    const int open = (count - 1) * w;
    EXPECT_GE(open, 110) << w;
    EXPECT_LT(open - w, 110) << w;
    int previous = 0;
    for (int age = 0; age <= 150; ++age) {
      const int b = AgeBandIndex(age, w);
      ASSERT_GE(b, previous) << w << " " << age;
      ASSERT_LT(b, count);
      previous = b;
      if (b < count - 1) {
        EXPECT_EQ(b, age / w);
      } else {
        EXPECT_GE(age, open);
      }
    }
    std::set<std::string> labels;
    for (int b = 0; b < count; ++b) labels.insert(AgeBandLabel(b, w));
    EXPECT_EQ(labels.size(), static_cast<size_t>(count));
  }
}

TEST(CellsTest, Sex) {
  EXPECT_EQ(SexLabels(),
            (std::vector<std::string>{"female", "male", "other", "unknown"}));
  EXPECT_EQ(SexLabel(v1::SEX_FEMALE), "female");
  EXPECT_EQ(SexLabel(v1::SEX_MALE), "male");
  EXPECT_EQ(SexLabel(v1::SEX_OTHER), "other");
  EXPECT_EQ(SexLabel(v1::SEX_UNKNOWN), "unknown");
  EXPECT_EQ(SexLabel(v1::SEX_UNSPECIFIED), "unknown");
  EXPECT_EQ(SexLabel(static_cast<v1::Sex>(42)), "unknown");
}

std::string KeyText(const v1::CellKey& key) {
  std::string out;
  for (const v1::DimensionValue& v : key.values()) {
    out += v.dimension() + "=" + v.value() + ";";
  }
  return out;
}

TEST(CellsTest, NoGroupByIsOneEmptyKey) {
  auto q = ParseQuery("deceased");
  ASSERT_TRUE(q.ok()) << q.status();
  std::vector<v1::CellKey> cells = EnumerateCells(*q, {"fr", "qc"});
  ASSERT_EQ(cells.size(), 1u);
  EXPECT_EQ(cells[0].values_size(), 0);
}

TEST(CellsTest, CrossProductInGroupByOrderLastFastest) {
  auto q = ParseQuery("deceased group by site, sex, age_band(50)");
  ASSERT_TRUE(q.ok()) << q.status();
  std::vector<v1::CellKey> cells = EnumerateCells(*q, {"fr", "qc"});
  // 2 sites x 4 sexes x 4 bands (0-49, 50-99, 100-149, 150+).
  ASSERT_EQ(cells.size(), 2u * 4u * 4u);
  EXPECT_EQ(KeyText(cells[0]), "site=fr;sex=female;age_band=0-49;");
  EXPECT_EQ(KeyText(cells[1]), "site=fr;sex=female;age_band=50-99;");
  EXPECT_EQ(KeyText(cells[3]), "site=fr;sex=female;age_band=150+;");
  EXPECT_EQ(KeyText(cells[4]), "site=fr;sex=male;age_band=0-49;");
  EXPECT_EQ(KeyText(cells[16]), "site=qc;sex=female;age_band=0-49;");
  EXPECT_EQ(KeyText(cells.back()), "site=qc;sex=unknown;age_band=150+;");
  std::set<std::string> distinct;
  for (const auto& c : cells) distinct.insert(KeyText(c));
  EXPECT_EQ(distinct.size(), cells.size());
}

TEST(CellsTest, CountCellsIsTheNumberEnumerated) {
  for (const char* text :
       {"deceased", "deceased group by sex", "deceased group by site",
        "deceased group by site, sex, age_band(50)",
        "deceased group by sex, age_band(1)"}) {
    auto q = ParseQuery(text);
    ASSERT_TRUE(q.ok()) << q.status();
    for (const std::vector<std::string>& sites :
         std::vector<std::vector<std::string>>{{}, {"fr"}, {"fr", "qc", "x"}}) {
      EXPECT_EQ(CountCells(*q, sites.size()), EnumerateCells(*q, sites).size())
          << text << " over " << sites.size() << " sites";
    }
  }
}

TEST(CellsTest, SexThenAgeBand) {
  auto q = ParseQuery("deceased group by age_band(10), sex");
  ASSERT_TRUE(q.ok()) << q.status();
  std::vector<v1::CellKey> cells = EnumerateCells(*q, {});
  ASSERT_EQ(cells.size(), 48u);
  EXPECT_EQ(KeyText(cells[0]), "age_band=0-9;sex=female;");
  EXPECT_EQ(KeyText(cells[3]), "age_band=0-9;sex=unknown;");
  EXPECT_EQ(KeyText(cells[47]), "age_band=110+;sex=unknown;");
}

TEST(CellsTest, SiteWithNoSitesHasNoCells) {
  auto q = ParseQuery("deceased group by site");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(EnumerateCells(*q, {}).empty());
  EXPECT_EQ(EnumerateCells(*q, {"fr"}).size(), 1u);
}

}  // namespace
}  // namespace passerelle::query
