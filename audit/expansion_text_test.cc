// The expansion wording (audit/expansion_text.h) and what `passerelle audit
// show` prints of the expansions a gateway or node entry records.
#include "audit/expansion_text.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "audit/records.h"
#include "audit/tool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace passerelle::audit {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::SiteExpansion Qc() {
  v1::SiteExpansion x;
  x.set_site("qc");
  x.set_mapping_set(std::string(64, 'd'));
  v1::CodeExpansion* e = x.add_codes();
  e->set_code("icd10:E11*");
  e->set_domain(v1::DOMAIN_CONDITION);
  e->set_site_vocabulary("icd9");
  e->set_crosswalk("gem-icd9cm-icd10cm");
  e->set_source_codes(48);
  e->set_rows(99);
  e->set_approximate_rows(99);
  x.add_unreached("condition: icd9cm");
  return x;
}

TEST(ExpansionTextTest, TheWordingOfEachCase) {
  const v1::SiteExpansion x = Qc();
  EXPECT_EQ(CodeExpansionText(x.codes(0)),
            "icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 source codes (99 "
            "rows, approximate)");
  v1::CodeExpansion one = x.codes(0);
  one.set_source_codes(1);
  one.set_rows(3);
  one.set_approximate_rows(1);
  one.set_broader_rows(2);
  one.set_combination_rows(3);
  EXPECT_EQ(CodeExpansionText(one),
            "icd10:E11* via gem-icd9cm-icd10cm → icd9: 1 source code (3 rows: "
            "2 broader, 1 approximate; 3 in combinations)");
  v1::CodeExpansion direct;
  direct.set_code("icd10:E11*");
  direct.set_site_vocabulary("cim10");
  EXPECT_EQ(CodeExpansionText(direct), "icd10:E11* → cim10 directly");
  EXPECT_EQ(SamplesText(direct), "");
  direct.add_sample_source_codes("E110");
  EXPECT_EQ(SamplesText(direct), "e.g. E110");
  EXPECT_EQ(ExpansionSummaryText(x), "codes mapped, mapping set dddddddddddd");
  v1::SiteExpansion exact;
  exact.set_site("fr");
  exact.set_code_matching(v1::CODE_MATCHING_EXACT);
  EXPECT_EQ(ExpansionSummaryText(exact), "codes exact (no crosswalk used)");
  exact.set_code_matching(v1::CODE_MATCHING_EQUIVALENT);
  EXPECT_EQ(ExpansionSummaryText(exact),
            "codes equivalent, no crosswalk loaded");
  EXPECT_THAT(ExpansionSummaryText(v1::SiteExpansion()),
              HasSubstr("no expansion reported"));
  EXPECT_THAT(
      SiteExpansionLines("ignored", x),
      ElementsAre("qc: codes mapped, mapping set dddddddddddd",
                  "qc: icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 source "
                  "codes (99 rows, approximate)",
                  "qc: WARNING: condition: icd9cm is not reached by any code "
                  "of the query; its records are not counted"));
  EXPECT_EQ(Printable("a\nb\x1b[0m\x7f"), "a?b?[0m?");
}

class AuditShowExpansionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl =
        (fs::temp_directory_path() / "audit_show_expansion_test.XXXXXX");
    dir_ = ::mkdtemp(tmpl.data());
    AuditLogOptions options;
    options.origin = "passerelle.test/gateway";
    auto key = SigningKey::Generate();
    ASSERT_TRUE(key.ok());
    options.signing_key = std::shared_ptr<const SigningKey>(*std::move(key));
    auto log = AuditLog::OpenDirectory(dir_ + "/store", options);
    ASSERT_TRUE(log.ok()) << log.status();
    // 0: a gateway explain entry (qc expanded, fr failed), 1: qc's node
    // entry with a hostile crosswalk name, 2: an entry without expansions.
    v1::AuditEntry gateway;
    gateway.set_operation("explain");
    gateway.set_request_id("r1");
    v1::AuditSiteStatus* fr = gateway.add_sites();
    fr->set_site("fr");
    fr->set_status("failed");
    v1::AuditSiteStatus* qc = gateway.add_sites();
    qc->set_site("qc");
    qc->set_status("ok");
    *qc->mutable_expansion() = Qc();
    ASSERT_TRUE((*log)->Append(EncodeRecord(gateway)).ok());
    v1::NodeAuditEntry node;
    node.set_site("qc");
    node.set_request_id("r1");
    *node.mutable_expansion() = Qc();
    node.mutable_expansion()->mutable_codes(0)->set_crosswalk("gem\n\x1b[1m");
    ASSERT_TRUE((*log)->Append(EncodeRecord(node)).ok());
    v1::AuditEntry plain;
    plain.set_request_id("r2");
    ASSERT_TRUE((*log)->Append(EncodeRecord(plain)).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  google::protobuf::Struct Show(int index) {
    std::ostringstream out, err;
    EXPECT_EQ(RunAuditTool(
                  {"show", std::to_string(index), "--store", dir_ + "/store"},
                  out, err),
              0)
        << err.str();
    google::protobuf::Struct s;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out.str(), &s).ok())
        << out.str();
    return s;
  }
  static std::vector<std::string> Lines(const google::protobuf::Struct& s) {
    std::vector<std::string> out;
    auto it = s.fields().find("expansion_lines");
    if (it == s.fields().end()) return out;
    for (const auto& v : it->second.list_value().values())
      out.push_back(v.string_value());
    return out;
  }

  std::string dir_;
};

TEST_F(AuditShowExpansionTest, ShowPrintsEachEntrysExpansionsAsLines) {
  const google::protobuf::Struct gateway = Show(0);
  EXPECT_THAT(
      Lines(gateway),
      ElementsAre("qc: codes mapped, mapping set dddddddddddd",
                  "qc: icd10:E11* via gem-icd9cm-icd10cm → icd9: 48 source "
                  "codes (99 rows, approximate)",
                  "qc: WARNING: condition: icd9cm is not reached by any code "
                  "of the query; its records are not counted"));
  // The record itself still holds the expansion, field by field.
  EXPECT_TRUE(gateway.fields()
                  .at("record")
                  .struct_value()
                  .fields()
                  .at("gateway")
                  .struct_value()
                  .fields()
                  .at("sites")
                  .list_value()
                  .values(1)
                  .struct_value()
                  .fields()
                  .contains("expansion"));
  // A node entry's own expansion; what the node wrote is made printable.
  const std::vector<std::string> node = Lines(Show(1));
  ASSERT_EQ(node.size(), 3u);
  EXPECT_EQ(node[1],
            "qc: icd10:E11* via gem??[1m → icd9: 48 source codes (99 rows, "
            "approximate)");
  EXPECT_TRUE(Lines(Show(2)).empty());
  EXPECT_TRUE(ExpansionLines("not a record").empty());
}

// Explains carry no node_audit_index: crosscheck matches them by request
// id, both ways.
TEST(CrossCheckExplainTest, ExplainsAreMatchedByRequestId) {
  std::string tmpl =
      (fs::temp_directory_path() / "audit_crosscheck_explain.XXXXXX");
  const std::string dir = ::mkdtemp(tmpl.data());
  auto open = [&](const std::string& name) {
    AuditLogOptions options;
    options.origin = "passerelle.test/" + name;
    auto key = SigningKey::Generate();
    EXPECT_TRUE(key.ok());
    options.signing_key = std::shared_ptr<const SigningKey>(*std::move(key));
    auto log = AuditLog::OpenDirectory(dir + "/" + name, options);
    EXPECT_TRUE(log.ok()) << log.status();
    return *std::move(log);
  };
  std::unique_ptr<AuditLog> gateway = open("gateway");
  std::unique_ptr<AuditLog> node = open("qc");
  auto explain_at_gateway = [&](const std::string& id, const char* status) {
    v1::AuditEntry g;
    g.set_operation("explain");
    g.set_request_id(id);
    g.set_decision(v1::AUDIT_DECISION_ALLOWED);
    v1::AuditSiteStatus* s = g.add_sites();
    s->set_site("qc");
    s->set_status(status);
    ASSERT_TRUE(gateway->Append(EncodeRecord(g)).ok());
  };
  auto explain_at_node = [&](const std::string& id) {
    v1::NodeAuditEntry n;
    n.set_operation("explain");
    n.set_site("qc");
    n.set_request_id(id);
    n.set_decision(v1::AUDIT_DECISION_ALLOWED);
    ASSERT_TRUE(node->Append(EncodeRecord(n)).ok());
  };
  explain_at_gateway("both", "ok");
  explain_at_node("both");
  explain_at_gateway("refused-at-site", "refused");
  explain_at_gateway("gateway-only", "ok");
  explain_at_node("node-only");
  absl::StatusOr<std::vector<CrossCheckIssue>> issues =
      CrossCheckSite(*gateway, *node, "qc");
  ASSERT_TRUE(issues.ok()) << issues.status();
  std::vector<std::string> problems;
  for (const CrossCheckIssue& i : *issues) problems.push_back(i.problem);
  EXPECT_THAT(
      problems,
      ::testing::UnorderedElementsAre(
          HasSubstr("site qc explained request 'gateway-only' but the node "
                    "log has no explain entry"),
          HasSubstr("node explained request 'node-only' but no gateway "
                    "explain entry records it")));
  gateway.reset();
  node.reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace passerelle::audit
