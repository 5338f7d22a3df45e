// Checks every code the site coding embeds (synth/site_codes.cc) against the
// public tables in ../shared/data: a DIN must map to its catalog ATC in
// Health Canada's DPD, a CIP13 to its ATC in the BDPM (or be a real BDPM
// presentation without ATC when the table says so), a UCD must be in the
// SNDS nomenclature under a brand the BDPM gives the catalog ATC, and an
// ICD-9 code must lead, through the CMS GEM, to its catalog ICD-10
// category. The format checks run everywhere; the table checks skip when
// ../shared is absent.
#include "synth/site_codes.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "csv/csv_reader.h"
#include "gtest/gtest.h"
#include "synth/catalog.h"

namespace passerelle::synth::catalog {
namespace {

namespace fs = std::filesystem;

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// The first word, upper case ("ENTRESTO 24 MG" -> "ENTRESTO").
std::string FirstWord(absl::string_view s) {
  const size_t space = s.find_first_of(" ,");
  return absl::AsciiStrToUpper(s.substr(0, space));
}

std::string Undotted(absl::string_view code) {
  return absl::StrReplaceAll(code, {{".", ""}});
}

TEST(SiteCodesFormatTest, CodesAreWellFormedForTheirVocabulary) {
  for (const DrugProduct& d : DrugProducts()) {
    const std::string code = d.code;
    switch (d.vocabulary) {
      case kDin:
        EXPECT_TRUE(AllDigits(code) && code.size() == 8) << "DIN " << code;
        EXPECT_TRUE(d.mapped) << "DIN " << code;
        break;
      case kCip13:
        EXPECT_TRUE(AllDigits(code) && code.size() == 13 &&
                    absl::StartsWith(code, "34009"))
            << "CIP13 " << code;
        break;
      case kUcd:
        EXPECT_TRUE(AllDigits(code) && code.size() == 13) << "UCD " << code;
        EXPECT_FALSE(d.mapped) << "no public table maps UCD " << code;
        break;
    }
    EXPECT_GT(d.weight, 0) << code;
  }
  for (const Icd9Code& c : Icd9Codes()) {
    const std::string code = c.icd9;
    EXPECT_TRUE(code.size() >= 3 && code.size() <= 4) << code;
    EXPECT_TRUE(AllDigits(code) ||
                (code[0] == 'V' && AllDigits(code.substr(1))))
        << "ICD-9 " << code;
  }
}

TEST(SiteCodesFormatTest, EveryCodeNamesACatalogEntry) {
  std::set<std::string> atcs, conditions;
  for (const DrugCode& d : DrugCodes()) atcs.insert(d.atc);
  for (const ConditionCode& c : ConditionCodes()) conditions.insert(c.code);
  std::map<std::pair<int, std::string>, std::string> atc_of;
  for (const DrugProduct& d : DrugProducts()) {
    EXPECT_TRUE(atcs.count(d.atc)) << d.code << ": " << d.atc;
    // One code, one drug.
    auto [it, fresh] =
        atc_of.emplace(std::make_pair(d.vocabulary, d.code), d.atc);
    EXPECT_TRUE(fresh || it->second == d.atc) << d.code;
  }
  std::set<std::string> seen;
  for (const Icd9Code& c : Icd9Codes()) {
    EXPECT_TRUE(conditions.count(c.icd10)) << c.icd10;
    EXPECT_TRUE(seen.insert(c.icd10).second) << "twice: " << c.icd10;
  }
}

// ../shared/data, or "" when absent.
std::string SharedData() {
  const char* src = std::getenv("PASSERELLE_SOURCE_DIR");
  const fs::path data = fs::path(src ? src : ".") / ".." / "shared" / "data";
  std::error_code ec;
  return fs::is_directory(data / "crosswalks", ec) ? data.string() : "";
}

// Calls `row` with the named columns of every record of `path`.
void ForEachRow(
    const std::string& path, char delimiter,
    const std::vector<std::string>& columns,
    const std::function<void(const std::vector<std::string>&)>& row) {
  csv::CsvReaderOptions options;
  options.delimiter = delimiter;
  auto reader = csv::CsvReader::Open(path, options);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<int> index;
  for (const std::string& c : columns) {
    auto i = (*reader)->RequireColumn(c);
    ASSERT_TRUE(i.ok()) << path << ": " << i.status();
    index.push_back(*i);
  }
  std::vector<std::string> values(columns.size());
  for (;;) {
    auto more = (*reader)->Next();
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    for (size_t i = 0; i < index.size(); ++i) {
      values[i] = std::string((*reader)->field(index[i]));
    }
    row(values);
  }
}

class SiteCodesTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = SharedData();
    if (data_.empty()) {
      GTEST_SKIP() << "../shared/data is absent (set PASSERELLE_SOURCE_DIR to "
                      "the repository root, beside ../shared): the public "
                      "DPD, BDPM, UCD and GEM tables are not available";
    }
  }
  std::string Path(const std::string& relative) const {
    return data_ + "/" + relative;
  }
  // BDPM: cip13 -> (atc, denomination).
  std::map<std::string, std::pair<std::string, std::string>> Bdpm() const {
    std::map<std::string, std::pair<std::string, std::string>> bdpm;
    ForEachRow(Path("crosswalks/fr_bdpm_cip13_to_atc.csv"), ',',
               {"cip13", "atc", "denomination"},
               [&](const std::vector<std::string>& f) {
                 bdpm[f[0]] = {f[1], f[2]};
               });
    return bdpm;
  }
  std::string data_;
};

TEST_F(SiteCodesTableTest, DinsMapToTheirCatalogAtcInTheDpd) {
  struct Row {
    std::string atc, brand, product_class;
  };
  std::multimap<std::string, Row> dpd;
  ForEachRow(Path("crosswalks/hc_dpd_din_to_atc.csv"), ',',
             {"din", "atc", "brand_name", "product_class"},
             [&](const std::vector<std::string>& f) {
               dpd.emplace(f[0], Row{f[1], f[2], f[3]});
             });
  ASSERT_GT(dpd.size(), 10000u);
  int checked = 0;
  for (const DrugProduct& d : DrugProducts()) {
    if (d.vocabulary != kDin) continue;
    auto [begin, end] = dpd.equal_range(d.code);
    ASSERT_NE(begin, end) << "DIN " << d.code << " (" << d.name
                          << ") is not in the DPD";
    bool matches = false;
    for (auto it = begin; it != end; ++it) {
      matches |= it->second.atc == d.atc &&
                 it->second.product_class == "Human" &&
                 absl::StrContains(it->second.brand, FirstWord(d.name));
    }
    EXPECT_TRUE(matches) << "DIN " << d.code << " " << d.name
                         << ": the DPD does not give it ATC " << d.atc
                         << " as a human product of that brand";
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

TEST_F(SiteCodesTableTest, Cip13sMapToTheirCatalogAtcInTheBdpm) {
  const auto bdpm = Bdpm();
  ASSERT_GT(bdpm.size(), 10000u);
  int mapped = 0, unmapped = 0;
  for (const DrugProduct& d : DrugProducts()) {
    if (d.vocabulary != kCip13) continue;
    auto it = bdpm.find(d.code);
    ASSERT_NE(it, bdpm.end())
        << "CIP13 " << d.code << " (" << d.name << ") is not in the BDPM";
    const auto& [atc, denomination] = it->second;
    EXPECT_EQ(FirstWord(denomination), FirstWord(d.name)) << d.code;
    if (d.mapped) {
      EXPECT_EQ(atc, d.atc) << "CIP13 " << d.code << " " << d.name;
      ++mapped;
    } else {
      // Said to be unmapped: the table must really give it no ATC, and no
      // mapped presentation of that drug may exist (else use it).
      EXPECT_EQ(atc, "") << "CIP13 " << d.code << " is mapped to " << atc
                         << ": mark it mapped";
      for (const auto& [cip13, row] : bdpm) {
        EXPECT_NE(row.first, d.atc)
            << "the BDPM maps CIP13 " << cip13 << " to " << d.atc
            << ": prefer it to the unmapped " << d.code;
        if (row.first == d.atc) break;
      }
      ++unmapped;
    }
  }
  EXPECT_GT(mapped, 100);
  EXPECT_LT(unmapped, mapped / 5);
}

TEST_F(SiteCodesTableTest, UcdsAreRealUnitsOfTheCatalogDrug) {
  std::map<std::string, std::string> ucd;
  ForEachRow(Path("snds/nomenclatures/NU_UCD_R.csv"), ';',
             {"UCD_UCD_COD", "UCD_DSN_LIB"},
             [&](const std::vector<std::string>& f) { ucd[f[0]] = f[1]; });
  ASSERT_GT(ucd.size(), 1000u);
  // Brands the BDPM gives each ATC.
  std::map<std::string, std::set<std::string>> brands;
  for (const auto& [cip13, row] : Bdpm()) {
    if (!row.first.empty()) brands[row.first].insert(FirstWord(row.second));
  }
  int checked = 0;
  for (const DrugProduct& d : DrugProducts()) {
    if (d.vocabulary != kUcd) continue;
    auto it = ucd.find(d.code);
    ASSERT_NE(it, ucd.end()) << "UCD " << d.code << " is not in NU_UCD_R";
    const std::string brand = FirstWord(it->second);
    EXPECT_EQ(brand, FirstWord(d.name)) << "UCD " << d.code;
    EXPECT_TRUE(brands[d.atc].count(brand))
        << "UCD " << d.code << " (" << it->second
        << "): no BDPM presentation of " << brand << " has ATC " << d.atc;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST_F(SiteCodesTableTest, Icd9CodesReachTheirIcd10CategoryThroughTheGem) {
  std::map<std::string, std::vector<std::string>> gem;  // icd9cm -> targets
  ForEachRow(Path("crosswalks/cms_gem2018_icd9cm_to_icd10cm.csv"), ',',
             {"icd9cm", "icd10cm"}, [&](const std::vector<std::string>& f) {
               gem[f[0]].push_back(f[1]);
             });
  ASSERT_GT(gem.size(), 10000u);
  for (const Icd9Code& c : Icd9Codes()) {
    // Every ICD-9-CM code the WHO code covers (itself, or the codes under
    // it), and where the GEM sends them.
    std::set<std::string> targets;
    int sources = 0;
    for (auto it = gem.lower_bound(c.icd9);
         it != gem.end() && absl::StartsWith(it->first, c.icd9); ++it) {
      ++sources;
      targets.insert(it->second.begin(), it->second.end());
    }
    ASSERT_GT(sources, 0) << "ICD-9 " << c.icd9
                          << " starts no ICD-9-CM code of the GEM";
    const std::string own = Undotted(c.icd10).substr(0, 3);
    auto reaches = [&targets](const std::string& category) {
      for (const std::string& t : targets) {
        if (absl::StartsWith(t, category)) return true;
      }
      return false;
    };
    if (c.gem_category == nullptr) {
      EXPECT_TRUE(reaches(own)) << "ICD-9 " << c.icd9 << " does not reach "
                                << own << " (for " << c.icd10 << ")";
    } else {
      // An exception must be needed, and right.
      EXPECT_FALSE(reaches(own)) << "ICD-9 " << c.icd9 << " reaches " << own
                                 << ": drop its gem_category";
      EXPECT_TRUE(reaches(c.gem_category))
          << "ICD-9 " << c.icd9 << " does not reach " << c.gem_category;
    }
  }
}

}  // namespace
}  // namespace passerelle::synth::catalog
