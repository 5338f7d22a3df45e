#include "audit/records.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/rand.h>

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "audit/merkle.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;
using passerelle::v1::AuditDecision;
using passerelle::v1::AuditRecord;

Value Str(absl::string_view s) {
  Value v;
  v.set_string_value(std::string(s));
  return v;
}

Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}

Value Obj(std::initializer_list<std::pair<const char*, Value>> fields) {
  Value v;
  for (const auto& [k, f] : fields) {
    (*v.mutable_struct_value()->mutable_fields())[k] = f;
  }
  return v;
}

Value List(std::vector<Value> items) {
  Value v;
  for (Value& i : items) *v.mutable_list_value()->add_values() = std::move(i);
  return v;
}

Value Coding(absl::string_view system, absl::string_view code,
             absl::string_view display) {
  return Obj({{"system", Str(system)},
              {"code", Str(code)},
              {"display", Str(display)}});
}

// An entity detail; none (a value Prune drops) when `value` is empty, since
// R4 requires a value.
Value Detail(absl::string_view type, absl::string_view value) {
  if (value.empty()) return Value();
  return Obj({{"type", Str(type)}, {"valueString", Str(value)}});
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& m,
                                   bool pretty) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  options.preserve_proto_field_names = true;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!status.ok()) {
    return absl::InternalError(
        absl::StrCat("JSON encoding failed: ", status.ToString()));
  }
  return out;
}

// FHIR forbids empty strings, arrays and objects: drop them recursively.
// Returns false when `v` itself ends up empty.
bool Prune(Value* v) {
  switch (v->kind_case()) {
    case Value::kStringValue:
      return !v->string_value().empty();
    case Value::kListValue: {
      auto* values = v->mutable_list_value()->mutable_values();
      for (int i = values->size() - 1; i >= 0; --i) {
        if (!Prune(values->Mutable(i))) values->DeleteSubrange(i, 1);
      }
      return !values->empty();
    }
    case Value::kStructValue: {
      auto* fields = v->mutable_struct_value()->mutable_fields();
      for (auto it = fields->begin(); it != fields->end();) {
        if (!Prune(&it->second)) {
          it = fields->erase(it);
        } else {
          ++it;
        }
      }
      return !fields->empty();
    }
    case Value::KIND_NOT_SET:
    case Value::kNullValue:
      return false;
    default:
      return true;
  }
}

// FHIR R4 AuditEvent.outcome: 0 success, 4 minor failure, 8 serious failure.
const char* FhirOutcome(AuditDecision d) {
  switch (d) {
    case passerelle::v1::AUDIT_DECISION_ALLOWED:
      return "0";
    case passerelle::v1::AUDIT_DECISION_DENIED:
    case passerelle::v1::AUDIT_DECISION_PARTIAL:
      return "4";
    default:
      return "8";
  }
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(
              out, "\\u00",
              absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void AppendJson(const Value& v, bool pretty, int depth, std::string* out) {
  const std::string pad = pretty ? std::string(2 * (depth + 1), ' ') : "";
  const std::string close_pad = pretty ? std::string(2 * depth, ' ') : "";
  const char* nl = pretty ? "\n" : "";
  switch (v.kind_case()) {
    case Value::kStringValue:
      AppendJsonString(v.string_value(), out);
      return;
    case Value::kBoolValue:
      out->append(v.bool_value() ? "true" : "false");
      return;
    case Value::kNumberValue: {
      const double d = v.number_value();
      if (d == static_cast<double>(static_cast<int64_t>(d)) &&
          d > -9007199254740992.0 && d < 9007199254740992.0) {
        absl::StrAppend(out, static_cast<int64_t>(d));
      } else {
        absl::StrAppend(out, absl::StrFormat("%.17g", d));
      }
      return;
    }
    case Value::kListValue: {
      const auto& values = v.list_value().values();
      if (values.empty()) {
        out->append("[]");
        return;
      }
      absl::StrAppend(out, "[", nl);
      for (int i = 0; i < values.size(); ++i) {
        out->append(pad);
        AppendJson(values[i], pretty, depth + 1, out);
        absl::StrAppend(out, i + 1 < values.size() ? "," : "", nl);
      }
      absl::StrAppend(out, close_pad, "]");
      return;
    }
    case Value::kStructValue: {
      std::vector<std::string> keys;
      for (const auto& [k, unused] : v.struct_value().fields()) {
        keys.push_back(k);
      }
      std::sort(keys.begin(), keys.end(),
                [](const std::string& a, const std::string& b) {
                  if ((a == "resourceType") != (b == "resourceType")) {
                    return a == "resourceType";
                  }
                  return a < b;
                });
      if (keys.empty()) {
        out->append("{}");
        return;
      }
      absl::StrAppend(out, "{", nl);
      for (size_t i = 0; i < keys.size(); ++i) {
        out->append(pad);
        AppendJsonString(keys[i], out);
        out->append(pretty ? ": " : ":");
        AppendJson(v.struct_value().fields().at(keys[i]), pretty, depth + 1,
                   out);
        absl::StrAppend(out, i + 1 < keys.size() ? "," : "", nl);
      }
      absl::StrAppend(out, close_pad, "}");
      return;
    }
    default:
      out->append("null");
  }
}

}  // namespace

std::string StableJson(const Value& value, bool pretty) {
  std::string out;
  AppendJson(value, pretty, 0, &out);
  if (pretty) out.push_back('\n');
  return out;
}

std::string EncodeRecord(const passerelle::v1::AuditEntry& entry) {
  AuditRecord record;
  *record.mutable_gateway() = entry;
  return record.SerializeAsString();
}

std::string EncodeRecord(const passerelle::v1::NodeAuditEntry& entry) {
  AuditRecord record;
  *record.mutable_node() = entry;
  return record.SerializeAsString();
}

std::string EncodeRecord(const passerelle::v1::AuditReadEntry& entry) {
  AuditRecord record;
  *record.mutable_read() = entry;
  return record.SerializeAsString();
}

std::string NodeCellsCommitment(absl::string_view opening_bytes) {
  static constexpr char kDomain[] = "passerelle.v1.NodeCellsOpening";
  return Sha256(
      absl::StrCat(absl::string_view(kDomain, sizeof(kDomain)), opening_bytes));
}

absl::StatusOr<std::string> NewCellsSalt() {
  std::string salt(kCellsSaltSize, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(salt.data()),
                 static_cast<int>(salt.size())) != 1) {
    return absl::UnavailableError("the CSPRNG gave no salt");
  }
  return salt;
}

absl::StatusOr<std::string> CommitNodeCells(
    google::protobuf::RepeatedPtrField<passerelle::v1::Cell>& cells,
    absl::string_view salt, passerelle::v1::NodeAuditEntry* entry) {
  if (salt.size() != kCellsSaltSize) {
    return absl::InvalidArgumentError(absl::StrCat("count commitment salt has ",
                                                   salt.size(), " bytes, not ",
                                                   kCellsSaltSize));
  }
  passerelle::v1::NodeCellsOpening opening;
  opening.set_salt(std::string(salt));
  // Borrowed for the serialization (heap to heap: a pointer swap each way).
  opening.mutable_cells()->Swap(&cells);
  std::string bytes = opening.SerializeAsString();
  opening.mutable_cells()->Swap(&cells);
  entry->clear_cells();
  entry->set_cells_commitment(NodeCellsCommitment(bytes));
  return bytes;
}

absl::StatusOr<passerelle::v1::NodeCellsOpening> OpenNodeCells(
    const passerelle::v1::NodeAuditEntry& entry,
    absl::string_view opening_bytes) {
  if (entry.cells_commitment().empty()) {
    return absl::DataLossError("the node entry has no count commitment");
  }
  if (NodeCellsCommitment(opening_bytes) != entry.cells_commitment()) {
    return absl::DataLossError(
        "the stored counts do not open the entry's commitment (the counts "
        "or the entry were changed)");
  }
  passerelle::v1::NodeCellsOpening opening;
  if (!opening.ParseFromArray(opening_bytes.data(),
                              static_cast<int>(opening_bytes.size()))) {
    return absl::DataLossError("the stored counts are not a NodeCellsOpening");
  }
  return opening;
}

bool RemotelyServable(const AuditRecord& record) {
  return !(record.has_node() && record.node().cells_size() > 0);
}

absl::StatusOr<AuditRecord> DecodeRecord(absl::string_view bytes) {
  AuditRecord record;
  if (!record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      record.kind_case() == AuditRecord::KIND_NOT_SET) {
    return absl::InvalidArgumentError(
        "entry is not a passerelle.v1.AuditRecord");
  }
  return record;
}

std::string SiteStatusName(passerelle::v1::SiteStatus status) {
  switch (status) {
    case passerelle::v1::SITE_STATUS_OK:
      return "ok";
    case passerelle::v1::SITE_STATUS_FAILED:
      return "failed";
    case passerelle::v1::SITE_STATUS_TIMED_OUT:
      return "timed_out";
    case passerelle::v1::SITE_STATUS_REFUSED:
      return "refused";
    default:
      return "unspecified";
  }
}

void FillFromResponse(const passerelle::v1::QueryResponse& response,
                      const std::map<std::string, uint64_t>& node_audit_indices,
                      passerelle::v1::AuditEntry* entry) {
  entry->set_request_id(response.request_id());
  entry->set_canonical_query(response.canonical_query());
  entry->set_policy_version(response.policy_version());
  entry->set_epsilon_charged(response.epsilon_charged());
  entry->set_rho_charged(response.rho_charged());
  entry->set_decision(response.complete()
                          ? passerelle::v1::AUDIT_DECISION_ALLOWED
                          : passerelle::v1::AUDIT_DECISION_PARTIAL);
  entry->clear_sites();
  entry->clear_sites_requested();
  for (const passerelle::v1::SiteResult& site : response.sites()) {
    passerelle::v1::AuditSiteStatus* s = entry->add_sites();
    s->set_site(site.site());
    s->set_status(SiteStatusName(site.status()));
    s->set_reason(site.reason());
    s->set_snapshot(site.snapshot());
    auto it = node_audit_indices.find(site.site());
    if (it != node_audit_indices.end()) s->set_node_audit_index(it->second);
    *s->mutable_released_cells() = site.cells();
    entry->add_sites_requested(site.site());
  }
  *entry->mutable_released_cells() = response.combined();
}

absl::StatusOr<AuditDecision> ParseOutcome(absl::string_view text) {
  const std::string t = absl::AsciiStrToLower(text);
  if (t == "allowed") return passerelle::v1::AUDIT_DECISION_ALLOWED;
  if (t == "denied") return passerelle::v1::AUDIT_DECISION_DENIED;
  if (t == "failed") return passerelle::v1::AUDIT_DECISION_FAILED;
  if (t == "partial") return passerelle::v1::AUDIT_DECISION_PARTIAL;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown outcome '", text,
                   "' (want allowed, denied, failed or partial)"));
}

std::string OutcomeName(AuditDecision decision) {
  switch (decision) {
    case passerelle::v1::AUDIT_DECISION_ALLOWED:
      return "allowed";
    case passerelle::v1::AUDIT_DECISION_DENIED:
      return "denied";
    case passerelle::v1::AUDIT_DECISION_FAILED:
      return "failed";
    case passerelle::v1::AUDIT_DECISION_PARTIAL:
      return "partial";
    default:
      return "unspecified";
  }
}

RecordView ViewOf(const AuditRecord& record) {
  RecordView v;
  if (record.has_gateway()) {
    const auto& e = record.gateway();
    v.kind = "gateway";
    v.time = absl::FromUnixMicros(e.time_unix_micros());
    v.request_id = e.request_id();
    v.caller = e.caller();
    v.caller_role = e.caller_role();
    v.project = e.project();
    v.purpose = e.purpose();
    v.canonical_query = e.canonical_query();
    v.decision = e.decision();
    v.reasons = absl::StrJoin(e.reasons(), "; ");
    v.operation = e.operation().empty() ? "query" : e.operation();
    if (e.has_repeat_of_index()) v.repeat_of_index = e.repeat_of_index();
  } else if (record.has_read()) {
    const auto& e = record.read();
    v.kind = "read";
    v.time = absl::FromUnixMicros(e.time_unix_micros());
    v.caller = e.caller();
    v.caller_role = "auditor";
    v.decision = e.decision();
    v.operation = e.rpc();
  } else {
    const auto& e = record.node();
    v.kind = "node";
    v.time = absl::FromUnixMicros(e.time_unix_micros());
    v.request_id = e.request_id();
    v.caller = e.caller();
    v.caller_role = "gateway";
    v.project = e.project();
    v.canonical_query = e.canonical_query();
    v.decision = e.decision();
    v.reasons = e.reason();
    v.operation = e.operation().empty() ? "count" : e.operation();
  }
  return v;
}

bool Matches(const AuditRecord& record, const RecordFilter& filter) {
  const RecordView v = ViewOf(record);
  if (filter.caller.has_value() && v.caller != *filter.caller) return false;
  if (filter.project.has_value() && v.project != *filter.project) return false;
  if (filter.since.has_value() && v.time < *filter.since) return false;
  if (filter.until.has_value() && v.time >= *filter.until) return false;
  if (filter.outcome.has_value() && v.decision != *filter.outcome) return false;
  return true;
}

absl::StatusOr<absl::Time> ParseRfc3339(absl::string_view text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(text), &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text,
        "' is not an RFC 3339 time (e.g. 2026-11-22T10:00:00Z): ", err));
  }
  return t;
}

absl::StatusOr<std::string> RecordToJson(const AuditRecord& record,
                                         bool pretty) {
  return ToJson(record, pretty);
}

absl::StatusOr<std::string> JsonlRow(uint64_t index, absl::string_view entry,
                                     absl::string_view leaf_hash) {
  // The raw bytes go along so anyone can recompute the leaf hash.
  std::string row = absl::StrCat(
      "{\"index\":", index, ",\"leaf_hash\":\"", absl::Base64Escape(leaf_hash),
      "\",\"entry_base64\":\"", absl::Base64Escape(entry), "\"");
  absl::StatusOr<AuditRecord> record = DecodeRecord(entry);
  if (record.ok()) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string json, ToJson(*record, false));
    absl::StrAppend(&row, ",\"record\":", json);
  }
  absl::StrAppend(&row, "}");
  return row;
}

absl::StatusOr<std::string> ToFhirAuditEvent(const AuditRecord& record,
                                             uint64_t index,
                                             absl::string_view leaf_hash,
                                             absl::string_view origin,
                                             bool pretty) {
  const RecordView v = ViewOf(record);
  Struct event;
  auto& f = *event.mutable_fields();
  f["resourceType"] = Str("AuditEvent");
  f["id"] = Str(absl::StrCat("passerelle-audit-", index));
  f["type"] = Coding("http://terminology.hl7.org/CodeSystem/audit-event-type",
                     "rest", "RESTful Operation");
  // A query is an executed search; a budget lookup is a read of the
  // project's ledger.
  const bool budget = v.operation == "budget" || record.has_read();
  f["subtype"] =
      List({Coding("http://hl7.org/fhir/restful-interaction",
                   budget ? "read" : "search", budget ? "read" : "search")});
  f["action"] = Str(budget ? "R" : "E");
  f["recorded"] = Str(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", v.time, absl::UTCTimeZone()));
  f["outcome"] = Str(FhirOutcome(v.decision));
  f["outcomeDesc"] =
      Str(v.reasons.empty()
              ? OutcomeName(v.decision)
              : absl::StrCat(OutcomeName(v.decision), ": ", v.reasons));
  if (!v.purpose.empty()) {
    Value coding = Obj({{"code", Str(v.purpose)}});
    if (absl::StartsWith(v.purpose, "DUO:")) {
      coding = Obj({{"system", Str("http://purl.obolibrary.org/obo/duo.owl")},
                    {"code", Str(v.purpose)}});
    }
    f["purposeOfEvent"] =
        List({Obj({{"coding", List({coding})}, {"text", Str(v.purpose)}})});
  }
  std::vector<Value> roles;
  if (!v.caller_role.empty())
    roles.push_back(Obj({{"text", Str(v.caller_role)}}));
  f["agent"] = List({Obj({
      {"who",
       Obj({{"identifier",
             Obj({{"value", Str(v.caller.empty() ? "unknown" : v.caller)}})},
            {"display", Str(v.caller)}})},
      {"requestor", Bool(true)},
      {"role", List(std::move(roles))},
  })});
  f["source"] = Obj({
      {"site", Str(origin)},
      {"observer", Obj({{"display", Str(absl::StrCat("passerelle ", v.kind, " ",
                                                     origin))}})},
      {"type", List({Coding(
                   "http://terminology.hl7.org/CodeSystem/security-source-type",
                   "4", "Application Server")})},
  });

  std::vector<Value> details = {
      Detail("record_kind", v.kind),
      Detail("operation", v.operation),
      Detail("audit_index", absl::StrCat(index)),
      Obj({{"type", Str("leaf_hash")},
           {"valueBase64Binary", Str(absl::Base64Escape(leaf_hash))}}),
      Detail("project", v.project),
  };
  if (record.has_gateway()) {
    const auto& e = record.gateway();
    details.push_back(Detail("policy_version", e.policy_version()));
    details.push_back(
        Detail("epsilon_charged", absl::StrCat(e.epsilon_charged())));
    details.push_back(Detail("rho_charged", absl::StrCat(e.rho_charged())));
    details.push_back(
        Detail("latency_micros", absl::StrCat(e.latency_micros())));
    if (e.has_repeat_of_index()) {
      details.push_back(
          Detail("repeat_of_index", absl::StrCat(e.repeat_of_index())));
    }
    for (const auto& site : e.sites()) {
      std::string s =
          absl::StrCat(site.status(), " snapshot=", site.snapshot());
      if (site.has_node_audit_index()) {
        absl::StrAppend(&s, " node_audit_index=", site.node_audit_index());
      }
      if (!site.reason().empty())
        absl::StrAppend(&s, " reason=", site.reason());
      details.push_back(Detail(absl::StrCat("site:", site.site()), s));
    }
    if (e.released_cells_size() > 0) {
      passerelle::v1::AuditEntry cells_only;
      *cells_only.mutable_released_cells() = e.released_cells();
      PASSERELLE_ASSIGN_OR_RETURN(std::string cells, ToJson(cells_only, false));
      details.push_back(Detail("released_cells", cells));
    }
  } else if (record.has_read()) {
    const auto& e = record.read();
    details.push_back(Detail("start", absl::StrCat(e.start())));
    details.push_back(Detail("end", absl::StrCat(e.end())));
    details.push_back(Detail("tree_size", absl::StrCat(e.tree_size())));
  } else {
    const auto& e = record.node();
    details.push_back(Detail("site", e.site()));
    details.push_back(Detail("snapshot", e.snapshot()));
    details.push_back(Detail("min_cell_size", absl::StrCat(e.min_cell_size())));
  }
  // R4 invariant sev-1: an entity has a name or a query, not both.
  const Value entity_type =
      Coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2",
             "System Object");
  std::vector<Value> entities;
  if (budget) {
    // What was read: the project's budget account (no query).
    entities.push_back(Obj({
        {"what", Obj({{"identifier", Obj({{"value", Str(v.request_id)}})}})},
        {"type", entity_type},
        {"role", Coding("http://terminology.hl7.org/CodeSystem/object-role",
                        "3", "Report")},
        {"description",
         Str(record.has_read()
                 ? absl::StrCat("audit log read: ", v.operation)
                 : absl::StrCat("privacy budget of project ", v.project))},
        {"detail", List(std::move(details))},
    }));
  } else {
    entities.push_back(Obj({
        {"what", Obj({{"identifier", Obj({{"value", Str(v.request_id)}})}})},
        {"type", entity_type},
        {"role", Coding("http://terminology.hl7.org/CodeSystem/object-role",
                        "24", "Query")},
        {"description", Str(v.canonical_query)},
        {"query", Str(absl::Base64Escape(v.canonical_query))},
        {"detail", List(std::move(details))},
    }));
  }
  if (v.repeat_of_index.has_value()) {
    // The answer repeated an earlier release: point at its AuditEvent.
    entities.push_back(Obj({
        {"what",
         Obj({{"reference", Str(absl::StrCat("AuditEvent/passerelle-audit-",
                                             *v.repeat_of_index))},
              {"display", Str(absl::StrCat("first release, audit index ",
                                           *v.repeat_of_index))}})},
        {"type", entity_type},
        {"role", Coding("http://terminology.hl7.org/CodeSystem/object-role",
                        "3", "Report")},
        {"description",
         Str(absl::StrCat("repeat of the release recorded at audit index ",
                          *v.repeat_of_index, "; no budget charged"))},
    }));
  }
  f["entity"] = List(std::move(entities));
  Value root;
  *root.mutable_struct_value() = std::move(event);
  Prune(&root);
  return StableJson(root, pretty);
}

}  // namespace passerelle::audit
