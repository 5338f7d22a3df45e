#include "audit/records.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "audit/merkle.h"
#include "gtest/gtest.h"

namespace passerelle::audit {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using passerelle::v1::AuditEntry;
using passerelle::v1::AuditRecord;
using passerelle::v1::NodeAuditEntry;

const absl::Time kT0 = absl::FromUnixSeconds(1795000000);  // 2026-11-18.

AuditEntry GatewayEntry() {
  AuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(kT0) + 123456);
  e.set_request_id("req-1");
  e.set_caller("CN=alice,O=Inserm");
  e.set_caller_role("researcher");
  e.set_project("diabetes-fr-qc");
  e.set_purpose("DUO:0000006");
  e.set_canonical_query("count where condition(icd10:E11) by sex");
  e.set_policy_version("policy-7");
  e.set_decision(passerelle::v1::AUDIT_DECISION_PARTIAL);
  e.add_reasons("site qc timed out");
  e.set_epsilon_charged(0.5);
  auto* site = e.add_sites();
  site->set_site("fr");
  site->set_status("ok");
  site->set_snapshot("snap-3");
  site->set_node_audit_index(41);
  auto* qc = e.add_sites();
  qc->set_site("qc");
  qc->set_status("timed_out");
  qc->set_reason("deadline exceeded");
  auto* cell = e.add_released_cells();
  cell->set_count(120);
  cell->mutable_precision()->set_kind(passerelle::v1::Precision::NOISED);
  e.set_latency_micros(8200);
  return e;
}

NodeAuditEntry NodeEntry() {
  NodeAuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(kT0 + absl::Hours(1)));
  e.set_request_id("req-1");
  e.set_caller("CN=gateway");
  e.set_project("diabetes-fr-qc");
  e.set_canonical_query("count where condition(icd10:E11) by sex");
  e.set_snapshot("snap-3");
  e.add_cells()->set_count(118);
  e.set_decision(passerelle::v1::AUDIT_DECISION_ALLOWED);
  e.set_site("fr");
  return e;
}

Struct ParseJson(const std::string& json) {
  Struct s;
  auto status = google::protobuf::util::JsonStringToMessage(json, &s);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << json;
  return s;
}

const Value& Field(const Struct& s, const std::string& name) {
  static const Value* const kMissing = new Value();
  auto it = s.fields().find(name);
  EXPECT_NE(it, s.fields().end()) << name;
  return it == s.fields().end() ? *kMissing : it->second;
}

TEST(RecordsTest, EncodeDecodeBothKinds) {
  auto g = DecodeRecord(EncodeRecord(GatewayEntry()));
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_TRUE(g->has_gateway());
  EXPECT_EQ(g->gateway().request_id(), "req-1");
  EXPECT_EQ(g->gateway().sites(0).node_audit_index(), 41u);
  EXPECT_FALSE(g->gateway().sites(1).has_node_audit_index());
  auto n = DecodeRecord(EncodeRecord(NodeEntry()));
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(n->has_node());
  EXPECT_EQ(n->node().cells(0).count(), 118);
  EXPECT_EQ(DecodeRecord("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeRecord("\xff\xff not a proto").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordsTest, FillFromResponseCopiesWhatWasReleased) {
  passerelle::v1::QueryResponse r;
  r.set_request_id("req-7");
  r.set_complete(false);
  r.set_canonical_query("count");
  r.set_policy_version("v3");
  r.set_epsilon_charged(0.5);
  r.set_rho_charged(0.02);
  auto* fr = r.add_sites();
  fr->set_site("fr");
  fr->set_status(passerelle::v1::SITE_STATUS_OK);
  fr->set_snapshot("s1");
  fr->add_cells()->set_count(100);
  auto* qc = r.add_sites();
  qc->set_site("qc");
  qc->set_status(passerelle::v1::SITE_STATUS_TIMED_OUT);
  qc->set_reason("deadline");
  r.add_combined()->set_count(100);
  AuditEntry e;
  FillFromResponse(r, {{"fr", 12}}, &e);
  EXPECT_EQ(e.request_id(), "req-7");
  EXPECT_EQ(e.decision(), passerelle::v1::AUDIT_DECISION_PARTIAL);
  EXPECT_EQ(e.policy_version(), "v3");
  EXPECT_EQ(e.epsilon_charged(), 0.5);
  EXPECT_EQ(e.rho_charged(), 0.02);
  ASSERT_EQ(e.sites_size(), 2);
  EXPECT_EQ(e.sites(0).status(), "ok");
  EXPECT_EQ(e.sites(0).node_audit_index(), 12u);
  EXPECT_EQ(e.sites(0).released_cells(0).count(), 100);
  EXPECT_EQ(e.sites(1).status(), "timed_out");
  EXPECT_EQ(e.sites(1).reason(), "deadline");
  EXPECT_FALSE(e.sites(1).has_node_audit_index());
  EXPECT_EQ(e.released_cells_size(), 1);
  r.set_complete(true);
  FillFromResponse(r, {}, &e);
  EXPECT_EQ(e.decision(), passerelle::v1::AUDIT_DECISION_ALLOWED);
  EXPECT_EQ(e.sites_size(), 2);  // Replaced, not appended.
}

TEST(RecordsTest, Outcomes) {
  for (const char* name : {"allowed", "denied", "failed", "partial"}) {
    auto d = ParseOutcome(name);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(OutcomeName(*d), name);
  }
  EXPECT_EQ(*ParseOutcome("DENIED"), passerelle::v1::AUDIT_DECISION_DENIED);
  EXPECT_EQ(ParseOutcome("maybe").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordsTest, FilterMatchesEachField) {
  AuditRecord g = *DecodeRecord(EncodeRecord(GatewayEntry()));
  AuditRecord n = *DecodeRecord(EncodeRecord(NodeEntry()));
  RecordFilter f;
  EXPECT_TRUE(Matches(g, f));
  f.caller = "CN=alice,O=Inserm";
  EXPECT_TRUE(Matches(g, f));
  EXPECT_FALSE(Matches(n, f));
  f = RecordFilter();
  f.project = "other";
  EXPECT_FALSE(Matches(g, f));
  f = RecordFilter();
  f.since = kT0;
  f.until = kT0 + absl::Minutes(30);
  EXPECT_TRUE(Matches(g, f));
  EXPECT_FALSE(Matches(n, f));  // One hour later: outside [since, until).
  f = RecordFilter();
  f.outcome = passerelle::v1::AUDIT_DECISION_PARTIAL;
  EXPECT_TRUE(Matches(g, f));
  EXPECT_FALSE(Matches(n, f));
}

TEST(RecordsTest, ParsesRfc3339) {
  auto t = ParseRfc3339("2026-11-18T00:00:00Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(absl::ToUnixSeconds(*t), 1794960000);
  EXPECT_TRUE(ParseRfc3339("2026-11-18T01:00:00+01:00").ok());
  EXPECT_EQ(ParseRfc3339("yesterday").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RecordsTest, JsonlRowIsOneJsonLine) {
  auto row = JsonlRow(3, EncodeRecord(GatewayEntry()), HashLeaf("x"));
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->find('\n'), std::string::npos);
  Struct s = ParseJson(*row);
  EXPECT_EQ(Field(s, "index").number_value(), 3);
  EXPECT_EQ(
      Field(Field(Field(s, "record").struct_value(), "gateway").struct_value(),
            "request_id")
          .string_value(),
      "req-1");
  auto opaque = JsonlRow(4, "opaque bytes", HashLeaf("y"));
  ASSERT_TRUE(opaque.ok());
  Struct o = ParseJson(*opaque);
  EXPECT_EQ(Field(o, "entry_base64").string_value(),
            absl::Base64Escape("opaque bytes"));
  EXPECT_EQ(o.fields().count("record"), 0u);
}

TEST(RecordsTest, StableJsonOrdersKeysAndEscapes) {
  Value v;
  auto& f = *v.mutable_struct_value()->mutable_fields();
  f["zeta"].set_number_value(1795000000123456.0);
  f["alpha"].set_string_value("quote\" slash\\ nl\n ctl\x01 é");
  f["resourceType"].set_string_value("AuditEvent");
  f["list"].mutable_list_value()->add_values()->set_bool_value(true);
  f["half"].set_number_value(0.5);
  EXPECT_EQ(StableJson(v, false),
            "{\"resourceType\":\"AuditEvent\",\"alpha\":\"quote\\\" slash\\\\ "
            "nl\\n ctl\\u0001 é\",\"half\":0.5,\"list\":[true],"
            "\"zeta\":1795000000123456}");
  // Pretty output parses back to the same value.
  Struct back = ParseJson(StableJson(v, true));
  EXPECT_EQ(back.fields().at("alpha").string_value(),
            f["alpha"].string_value());
  EXPECT_EQ(back.fields().at("zeta").number_value(), 1795000000123456.0);
}

TEST(RecordsTest, FhirAuditEventHasTheR4Fields) {
  AuditRecord g = *DecodeRecord(EncodeRecord(GatewayEntry()));
  auto json = ToFhirAuditEvent(g, 7, HashLeaf("x"), "passerelle/gateway",
                               /*pretty=*/true);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_TRUE(
      absl::StartsWith(*json, "{\n  \"resourceType\": \"AuditEvent\","));
  // Deterministic: the same record exports to the same bytes.
  EXPECT_EQ(*json,
            *ToFhirAuditEvent(g, 7, HashLeaf("x"), "passerelle/gateway", true));
  Struct ev = ParseJson(*json);
  EXPECT_EQ(Field(ev, "resourceType").string_value(), "AuditEvent");
  EXPECT_EQ(Field(ev, "action").string_value(), "E");
  EXPECT_EQ(Field(ev, "outcome").string_value(), "4");  // Partial.
  EXPECT_EQ(Field(ev, "recorded").string_value(),
            "2026-11-18T11:06:40.123456Z");
  EXPECT_EQ(Field(Field(ev, "type").struct_value(), "code").string_value(),
            "rest");
  const Struct& agent =
      Field(ev, "agent").list_value().values(0).struct_value();
  EXPECT_TRUE(Field(agent, "requestor").bool_value());
  EXPECT_EQ(Field(Field(Field(agent, "who").struct_value(), "identifier")
                      .struct_value(),
                  "value")
                .string_value(),
            "CN=alice,O=Inserm");
  const Struct& purpose =
      Field(ev, "purposeOfEvent").list_value().values(0).struct_value();
  EXPECT_EQ(
      Field(Field(purpose, "coding").list_value().values(0).struct_value(),
            "code")
          .string_value(),
      "DUO:0000006");
  const Struct& entity =
      Field(ev, "entity").list_value().values(0).struct_value();
  std::string query;
  ASSERT_TRUE(
      absl::Base64Unescape(Field(entity, "query").string_value(), &query));
  EXPECT_EQ(query, "count where condition(icd10:E11) by sex");
  EXPECT_EQ(entity.fields().count("name"), 0u);  // R4 sev-1.
  // The entity is the query: what = the request id, role 24 (Query).
  EXPECT_EQ(Field(Field(Field(entity, "what").struct_value(), "identifier")
                      .struct_value(),
                  "value")
                .string_value(),
            "req-1");
  EXPECT_EQ(Field(Field(entity, "role").struct_value(), "code").string_value(),
            "24");
  EXPECT_EQ(Field(entity, "description").string_value(),
            "count where condition(icd10:E11) by sex");
  EXPECT_EQ(
      Field(Field(ev, "subtype").list_value().values(0).struct_value(), "code")
          .string_value(),
      "search");
  EXPECT_EQ(Field(ev, "entity").list_value().values_size(), 1);
  // Released cells are carried; site statuses too.
  EXPECT_TRUE(absl::StrContains(*json, "released_cells"));
  EXPECT_TRUE(absl::StrContains(*json, "node_audit_index=41"));
  // A source with an observer is mandatory in R4.
  const Struct& source = Field(ev, "source").struct_value();
  EXPECT_EQ(source.fields().count("observer"), 1u);

  // FHIR has no empty strings: unset fields are left out, not "".
  EXPECT_FALSE(absl::StrContains(*json, "\"\""));
  AuditEntry sparse;
  sparse.set_decision(passerelle::v1::AUDIT_DECISION_DENIED);
  auto sparse_json = ToFhirAuditEvent(*DecodeRecord(EncodeRecord(sparse)), 1,
                                      HashLeaf("z"), "o", false);
  ASSERT_TRUE(sparse_json.ok());
  EXPECT_FALSE(absl::StrContains(*sparse_json, "\"\"")) << *sparse_json;
  EXPECT_FALSE(absl::StrContains(*sparse_json, "[]")) << *sparse_json;
  EXPECT_FALSE(absl::StrContains(*sparse_json, "{}")) << *sparse_json;

  AuditRecord n = *DecodeRecord(EncodeRecord(NodeEntry()));
  auto node_json =
      ToFhirAuditEvent(n, 0, HashLeaf("y"), "passerelle/fr", false);
  ASSERT_TRUE(node_json.ok());
  EXPECT_EQ(Field(ParseJson(*node_json), "outcome").string_value(), "0");
}

TEST(RecordsTest, FhirBudgetReadAndRepeat) {
  // A budget lookup is a read of the project's ledger, not a query.
  AuditEntry budget = GatewayEntry();
  budget.set_operation("budget");
  budget.clear_canonical_query();
  budget.clear_sites();
  budget.clear_released_cells();
  budget.set_decision(passerelle::v1::AUDIT_DECISION_ALLOWED);
  auto json = ToFhirAuditEvent(*DecodeRecord(EncodeRecord(budget)), 3,
                               HashLeaf("b"), "passerelle/gateway", false);
  ASSERT_TRUE(json.ok()) << json.status();
  Struct ev = ParseJson(*json);
  EXPECT_EQ(Field(ev, "action").string_value(), "R");
  EXPECT_EQ(
      Field(Field(ev, "subtype").list_value().values(0).struct_value(), "code")
          .string_value(),
      "read");
  const Struct& entity =
      Field(ev, "entity").list_value().values(0).struct_value();
  EXPECT_EQ(entity.fields().count("query"), 0u);
  EXPECT_EQ(Field(Field(entity, "role").struct_value(), "code").string_value(),
            "3");
  EXPECT_TRUE(absl::StrContains(Field(entity, "description").string_value(),
                                "budget of project diabetes-fr-qc"));
  EXPECT_TRUE(absl::StrContains(*json, "\"valueString\":\"budget\"")) << *json;

  // A repeat points at the AuditEvent of the first release.
  AuditEntry repeat = GatewayEntry();
  repeat.set_repeat_of_index(2);
  json = ToFhirAuditEvent(*DecodeRecord(EncodeRecord(repeat)), 9, HashLeaf("r"),
                          "passerelle/gateway", false);
  ASSERT_TRUE(json.ok()) << json.status();
  ev = ParseJson(*json);
  EXPECT_EQ(Field(ev, "action").string_value(), "E");
  const auto& entities = Field(ev, "entity").list_value().values();
  ASSERT_EQ(entities.size(), 2);
  EXPECT_EQ(Field(Field(entities[1].struct_value(), "what").struct_value(),
                  "reference")
                .string_value(),
            "AuditEvent/passerelle-audit-2");
  EXPECT_TRUE(absl::StrContains(*json, "\"repeat_of_index\""));
  EXPECT_FALSE(absl::StrContains(*json, "\"\"")) << *json;

  // Views: the operation (empty means a query) and the repeat.
  EXPECT_EQ(ViewOf(*DecodeRecord(EncodeRecord(GatewayEntry()))).operation,
            "query");
  EXPECT_EQ(ViewOf(*DecodeRecord(EncodeRecord(budget))).operation, "budget");
  EXPECT_EQ(ViewOf(*DecodeRecord(EncodeRecord(repeat))).repeat_of_index, 2u);
  EXPECT_EQ(ViewOf(*DecodeRecord(EncodeRecord(NodeEntry()))).operation,
            "count");
}

}  // namespace
}  // namespace passerelle::audit
