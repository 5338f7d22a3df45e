// The code expansion in `passerelle query` and `passerelle query --explain`
// output: table, JSON and CSV (cli/expansion_format.h, cli/format.h).
#include "cli/expansion_format.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "cli/format.h"
#include "cli/query_cmd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::CodeExpansion Gem() {
  v1::CodeExpansion e;
  e.set_code("icd10:E11*");
  e.set_domain(v1::DOMAIN_CONDITION);
  e.set_site_vocabulary("icd9");
  e.set_crosswalk("gem-icd9cm-icd10cm");
  e.set_source_codes(48);
  e.set_rows(99);
  e.set_approximate_rows(99);
  for (const char* c : {"25000", "25002", "25010"})
    e.add_sample_source_codes(c);
  return e;
}

v1::CodeExpansion Dpd() {
  v1::CodeExpansion e;
  e.set_code("atc:A10BA02");
  e.set_domain(v1::DOMAIN_DRUG);
  e.set_site_vocabulary("din");
  e.set_crosswalk("hc_dpd_din_to_atc");
  e.set_source_codes(31);
  e.set_rows(33);
  e.set_equivalent_rows(2);
  e.set_narrower_rows(31);
  e.set_combination_rows(1);
  return e;
}

// fr answered without reporting an expansion, qc with one (and a vocabulary
// its codes do not reach), be timed out.
v1::QueryResponse Response() {
  v1::QueryResponse r;
  r.set_complete(false);
  r.set_canonical_query(
      "condition icd10:E11* before drug atc:A10BA02 as of 2026-12-07");
  r.set_audit_index(12);
  r.set_policy_version("0123456789abcdef");
  r.set_epsilon_charged(1);
  for (const char* site : {"fr", "qc", "be"}) {
    v1::SiteResult* s = r.add_sites();
    s->set_site(site);
    s->set_status(v1::SITE_STATUS_OK);
    v1::ReleasedCell* c = s->add_cells();
    c->set_count(site[0] == 'f' ? 120 : 80);
    c->set_interval_low(110);
    c->set_interval_high(130);
    c->mutable_precision()->set_kind(v1::Precision::NOISED);
    c->mutable_precision()->set_mechanism("discrete_laplace");
    c->mutable_precision()->set_epsilon(0.5);
  }
  r.mutable_sites(2)->set_status(v1::SITE_STATUS_TIMED_OUT);
  r.mutable_sites(2)->set_reason("DEADLINE_EXCEEDED: slow, \"very\"");
  r.mutable_sites(2)->clear_cells();
  v1::SiteExpansion* x = r.mutable_sites(1)->mutable_expansion();
  x->set_site("qc");
  x->set_mapping_set(std::string(64, 'c'));
  *x->add_codes() = Gem();
  *x->add_codes() = Dpd();
  x->add_unreached("condition: icd9cm");
  v1::ReleasedCell* combined = r.add_combined();
  *combined = r.sites(0).cells(0);
  combined->set_count(200);
  r.add_notes(
      "UNREACHED: at site qc, condition: icd9cm is not reached by any code "
      "of the query; its records are not counted");
  r.add_notes("PARTIAL: site be is missing");
  return r;
}

TEST(ExpansionFormatTest, TableSaysHowEachSiteMatchedAndWarnsFirst) {
  const std::string t = FormatQueryResponse(Response(), OutputFormat::kTable);
  EXPECT_THAT(t, HasSubstr("  qc: icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 "
                           "source codes (99 rows, approximate)\n"));
  EXPECT_THAT(t, HasSubstr("      e.g. 25000, 25002, 25010 and 45 more\n"));
  EXPECT_THAT(t, HasSubstr("  qc: atc:A10BA02 via hc_dpd_din_to_atc → din: 31 "
                           "source codes (33 rows: 2 equivalent, 31 narrower; "
                           "1 in combinations)\n"));
  EXPECT_THAT(t, HasSubstr("  qc: codes mapped, mapping set cccccccccccc\n"));
  EXPECT_THAT(t, HasSubstr("  fr: no expansion reported"));
  EXPECT_THAT(t, HasSubstr("  be: timed_out - DEADLINE_EXCEEDED"));
  EXPECT_THAT(t, HasSubstr("  qc: WARNING: condition: icd9cm is not reached "
                           "by any code of the query"));
  // The incomplete cohort is flagged before the numbers, once; the
  // gateway's UNREACHED note is not repeated at the bottom.
  const size_t warning = t.find("WARNING: the cohort may be incomplete");
  ASSERT_NE(warning, std::string::npos);
  EXPECT_THAT(t, HasSubstr("condition: icd9cm at qc"));
  EXPECT_LT(warning, t.find("combined"));
  EXPECT_LT(t.find("code expansion"), t.find("combined"));
  EXPECT_THAT(t, Not(HasSubstr("note: UNREACHED")));
  EXPECT_THAT(t, HasSubstr("note: PARTIAL: site be is missing"));
  for (size_t pos = 0; (pos = t.find(" \n", pos)) != std::string::npos; ++pos) {
    ADD_FAILURE() << "trailing space at offset " << pos;
  }
  // Every vocabulary reached: no warning.
  v1::QueryResponse all = Response();
  all.mutable_sites(1)->mutable_expansion()->clear_unreached();
  EXPECT_THAT(FormatQueryResponse(all, OutputFormat::kTable),
              Not(HasSubstr("WARNING")));
}

TEST(ExpansionFormatTest, TheLabelsHookPutsALabelBesideTheCode) {
  FormatOptions options;
  options.code_labels = [](const std::string& code) {
    return code == "icd10:E11*" ? "Type 2 diabetes mellitus" : "";
  };
  const std::string t =
      FormatQueryResponse(Response(), OutputFormat::kTable, options);
  EXPECT_THAT(t, HasSubstr("qc: icd10:E11* (Type 2 diabetes mellitus) via "
                           "gem-icd9cm-icd10cm"));
  EXPECT_THAT(t, HasSubstr("qc: atc:A10BA02 via"));
}

TEST(ExpansionFormatTest, WhatAServerSentNeverReachesTheTerminalRaw) {
  v1::QueryResponse r = Response();
  v1::CodeExpansion* c =
      r.mutable_sites(1)->mutable_expansion()->mutable_codes(0);
  c->set_crosswalk("gem\x1b[2J\nforged: line");
  c->set_sample_source_codes(0, "250\r00");
  r.mutable_sites(1)->mutable_expansion()->set_unreached(0, "drug:\x07 din");
  const std::string t = FormatQueryResponse(r, OutputFormat::kTable);
  EXPECT_THAT(t, Not(HasSubstr("\x1b")));
  EXPECT_THAT(t, Not(HasSubstr("\r")));
  EXPECT_THAT(t, Not(HasSubstr("\x07")));
  EXPECT_THAT(t, Not(HasSubstr("\nforged")));
  EXPECT_THAT(t, HasSubstr("gem?[2J?forged: line"));
}

google::protobuf::Struct ParseJson(const std::string& json) {
  google::protobuf::Struct s;
  auto st = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(st.ok()) << st.ToString() << "\n" << json;
  return s;
}

TEST(ExpansionFormatTest, JsonCarriesEachSitesExpansionAsProtoJson) {
  const v1::QueryResponse r = Response();
  const google::protobuf::Struct s =
      ParseJson(FormatQueryResponse(r, OutputFormat::kJson));
  const auto& sites = s.fields().at("sites").list_value();
  ASSERT_EQ(sites.values_size(), 3);
  const auto& qc = sites.values(1).struct_value().fields().at("expansion");
  // The object is SiteExpansion's proto JSON: it reads back exactly.
  std::string qc_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(qc, &qc_json).ok());
  v1::SiteExpansion back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(qc_json, &back).ok());
  EXPECT_EQ(back.SerializeAsString(),
            r.sites(1).expansion().SerializeAsString());
  EXPECT_EQ(qc.struct_value()
                .fields()
                .at("codes")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("source_codes")
                .string_value(),
            "48");
  // A site without an expansion still has the object, every field shown.
  const auto& fr =
      sites.values(0).struct_value().fields().at("expansion").struct_value();
  EXPECT_EQ(fr.fields().at("code_matching").string_value(),
            "CODE_MATCHING_MAPPED");
  EXPECT_EQ(fr.fields().at("codes").list_value().values_size(), 0);
  // The UNREACHED note is in the notes.
  EXPECT_THAT(s.fields().at("notes").list_value().values(0).string_value(),
              HasSubstr("UNREACHED"));
}

// RFC 4180 records of `csv` (quoted fields may hold commas and quotes).
std::vector<std::vector<std::string>> ParseCsv(const std::string& csv) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < csv.size(); ++i) {
    const char c = csv[i];
    if (quoted) {
      if (c == '"' && i + 1 < csv.size() && csv[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
    } else if (c == '\n') {
      rows.back().push_back(field);
      field.clear();
      rows.emplace_back();
    } else {
      field += c;
    }
  }
  rows.pop_back();
  return rows;
}

TEST(ExpansionFormatTest, CsvKeepsTheCellsSectionAndAddsTheExpansion) {
  v1::QueryResponse r = Response();
  // A name that needs quoting.
  r.mutable_sites(1)->mutable_expansion()->mutable_codes(1)->set_crosswalk(
      "dpd, \"2024\"");
  const std::string csv = FormatQueryResponse(r, OutputFormat::kCsv);
  const size_t blank = csv.find("\n\n");
  ASSERT_NE(blank, std::string::npos);
  // The cells section is what a cells reader has always read.
  EXPECT_EQ(csv.substr(0, blank + 1),
            "site,count,precision,threshold,interval_low,interval_high\n"
            "fr,120,noised,0,110,130\n"
            "qc,80,noised,0,110,130\n"
            "combined,200,noised,0,110,130\n");
  const std::vector<std::vector<std::string>> rows =
      ParseCsv(csv.substr(blank + 2));
  ASSERT_EQ(rows.size(), 7u);
  for (const auto& row : rows) EXPECT_EQ(row.size(), 17u);
  EXPECT_EQ(rows[0][0], "site");
  EXPECT_EQ(rows[0][16], "note");
  EXPECT_EQ(rows[1][0], "fr");
  EXPECT_EQ(rows[1][1], "not_reported");
  EXPECT_EQ(rows[2][1], "summary");
  EXPECT_EQ(rows[2][13], "mapped");
  EXPECT_EQ(rows[2][14], std::string(64, 'c'));
  EXPECT_EQ(rows[3], (std::vector<std::string>{
                         "qc", "code", "icd10:E11*", "condition", "icd9",
                         "gem-icd9cm-icd10cm", "48", "99", "0", "0", "0", "99",
                         "0", "", "", "25000 25002 25010", ""}));
  EXPECT_EQ(rows[4][5], "dpd, \"2024\"");
  EXPECT_EQ(rows[5][1], "unreached");
  EXPECT_EQ(rows[5][3], "condition");
  EXPECT_EQ(rows[5][4], "icd9cm");
  EXPECT_EQ(rows[6][0], "be");
  EXPECT_EQ(rows[6][1], "timed_out");
  EXPECT_EQ(rows[6][16], "DEADLINE_EXCEEDED: slow, \"very\"");
}

v1::ExplainResponse Explanation() {
  const v1::QueryResponse q = Response();
  v1::ExplainResponse r;
  r.set_request_id("00ff");
  r.set_canonical_query(q.canonical_query());
  r.set_policy_version("0123456789abcdef");
  r.set_audit_index(13);
  for (const v1::SiteResult& s : q.sites()) {
    v1::SiteExplanation* e = r.add_sites();
    e->set_site(s.site());
    e->set_status(s.status());
    e->set_reason(s.reason());
    *e->mutable_expansion() = s.expansion();
  }
  r.mutable_sites(2)->set_status(v1::SITE_STATUS_REFUSED);
  r.mutable_sites(2)->set_reason("PERMISSION_DENIED: not at this site");
  return r;
}

TEST(ExpansionFormatTest, ExplainInEveryForm) {
  const v1::ExplainResponse r = Explanation();
  const std::string t = FormatExplainResponse(r, OutputFormat::kTable);
  EXPECT_THAT(t, HasSubstr("explain: condition icd10:E11*"));
  EXPECT_THAT(t, HasSubstr("no budget was charged (audit entry #13"));
  EXPECT_THAT(t, HasSubstr("PARTIAL: some sites could not explain"));
  EXPECT_THAT(t, HasSubstr("  be: refused - PERMISSION_DENIED"));
  EXPECT_THAT(t, HasSubstr("  qc: icd10:E11* via gem-icd9cm-icd10cm → icd9"));
  EXPECT_THAT(t, HasSubstr("WARNING: the cohort may be incomplete"));
  v1::ExplainResponse back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  FormatExplainResponse(r, OutputFormat::kJson), &back)
                  .ok());
  EXPECT_EQ(back.SerializeAsString(), r.SerializeAsString());
  EXPECT_EQ(FormatExplainResponse(r, OutputFormat::kCsv),
            ExpansionCsv(ExpansionViews(r)));
  EXPECT_THAT(FormatExplainResponse(r, OutputFormat::kCsv),
              HasSubstr("\nbe,refused,"));
}

TEST(ExpansionFormatTest, TheStewardsNodeCountShowsTheExpansion) {
  v1::CountResponse r;
  r.set_site("qc");
  r.set_snapshot("qc-1");
  r.add_cells()->set_count(7);
  const std::string plain_json = FormatNodeCount(r, OutputFormat::kJson);
  EXPECT_THAT(plain_json, Not(HasSubstr("expansion")));
  *r.mutable_expansion() = Response().sites(1).expansion();
  const std::string t = FormatNodeCount(r, OutputFormat::kTable);
  EXPECT_THAT(t, HasSubstr("  qc: icd10:E11* via gem-icd9cm-icd10cm → icd9"));
  EXPECT_THAT(t, HasSubstr("WARNING: the cohort may be incomplete"));
  const google::protobuf::Struct json =
      ParseJson(FormatNodeCount(r, OutputFormat::kJson));
  EXPECT_EQ(json.fields()
                .at("expansion")
                .struct_value()
                .fields()
                .at("site")
                .string_value(),
            "qc");
  // CSV: the counts alone, as scripts have read them.
  EXPECT_EQ(FormatNodeCount(r, OutputFormat::kCsv), "site,count\nqc,7\n");
}

TEST(ExpansionFormatTest, ExplainFlagUsage) {
  // --explain takes the query as its value, and only it.
  EXPECT_EQ(RunQueryCommand({"--explain"}), 2);
  EXPECT_EQ(RunQueryCommand({"--gateway", "127.0.0.1:1", "--explain",
                             "condition icd10:E11*", "condition icd10:E10*"}),
            2);
}

}  // namespace
}  // namespace passerelle::cli
