// `passerelle audit export --format fhir`, checked by independent FHIR R4
// validators (tests/fhir/validate_auditevents.js: FHIR.js with the R4
// StructureDefinitions, the official R4 JSON schema with Ajv, and R4 rules
// neither checks). The log holds every kind of entry the gateway and the
// nodes write; every AuditEvent the binary exports must validate, and the
// same export broken in known ways must not.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "audit/log.h"
#include "audit/records.h"
#include "gtest/gtest.h"
#include "tests/process.h"

namespace passerelle::testing {
namespace {

constexpr int64_t kT0 = 1795000000000000;  // 2026-11-18T...Z, in micros.

// `name` from $PATH, or "" when absent.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ValidatorDir() {
  const char* dir = std::getenv("PASSERELLE_FHIR_VALIDATOR_DIR");
  return dir != nullptr ? dir : "/opt/passerelle-tools/fhir-validator";
}

v1::ReleasedCell Cell(const std::string& sex, int64_t count) {
  v1::ReleasedCell c;
  v1::DimensionValue* d = c.mutable_key()->add_values();
  d->set_dimension("sex");
  d->set_value(sex);
  c.set_count(count);
  c.mutable_precision()->set_kind(v1::Precision::NOISED);
  c.mutable_precision()->set_mechanism("discrete_laplace");
  c.mutable_precision()->set_epsilon(0.5);
  c.mutable_precision()->set_threshold(10);
  c.set_interval_low(count - 6);
  c.set_interval_high(count + 6);
  return c;
}

v1::AuditEntry Query(int i) {
  v1::AuditEntry e;
  e.set_time_unix_micros(kT0 + i * 60000000LL + 123456);
  e.set_request_id(absl::StrCat("req-", i));
  e.set_caller("spiffe://passerelle/user/alice");
  e.set_caller_role("researcher");
  e.set_project("diabetes-fr-qc");
  e.set_purpose("DUO:0000006");
  e.set_canonical_query("count where condition(icd10:E11) by sex");
  e.set_policy_version("policy-7");
  e.set_latency_micros(8200);
  return e;
}

// The entries, in log order, and how many are audit records (exported).
struct Log {
  std::vector<std::string> entries;
  int records = 0;
};

Log EveryKindOfEntry() {
  Log log;
  auto add = [&](const auto& entry) {
    log.entries.push_back(audit::EncodeRecord(entry));
    ++log.records;
  };
  // 0: allowed, cells released by both sites.
  v1::AuditEntry allowed = Query(0);
  allowed.set_decision(v1::AUDIT_DECISION_ALLOWED);
  allowed.set_epsilon_charged(0.5);
  allowed.set_rho_charged(0.0125);
  for (const char* site : {"fr", "qc"}) {
    v1::AuditSiteStatus* s = allowed.add_sites();
    s->set_site(site);
    s->set_status("ok");
    s->set_snapshot(absl::StrCat(site, "-snap-3"));
    s->set_node_audit_index(site[0] == 'f' ? 0 : 12);
    *s->add_released_cells() = Cell("F", 60);
    *s->add_released_cells() = Cell("M", 70);
    allowed.add_sites_requested(site);
  }
  *allowed.add_released_cells() = Cell("F", 121);
  *allowed.add_released_cells() = Cell("M", 139);
  v1::ReleasedCell suppressed;
  suppressed.mutable_key()->add_values()->set_dimension("sex");
  suppressed.mutable_key()->mutable_values(0)->set_value("other");
  suppressed.mutable_precision()->set_kind(v1::Precision::SUPPRESSED);
  suppressed.mutable_precision()->set_threshold(10);
  *allowed.add_released_cells() = suppressed;
  add(allowed);
  // 1: denied by policy: nothing released, nothing charged.
  v1::AuditEntry denied = Query(1);
  denied.set_decision(v1::AUDIT_DECISION_DENIED);
  denied.add_reasons("project diabetes-fr-qc may not group by postcode");
  denied.add_reasons("budget: \"epsilon\" 0.5 > 0.25 left");
  add(denied);
  // 2: partial: one site timed out.
  v1::AuditEntry partial = Query(2);
  partial.set_decision(v1::AUDIT_DECISION_PARTIAL);
  partial.add_reasons("site qc timed out");
  partial.set_epsilon_charged(0.5);
  v1::AuditSiteStatus* fr = partial.add_sites();
  fr->set_site("fr");
  fr->set_status("ok");
  fr->set_snapshot("fr-snap-3");
  fr->set_node_audit_index(1);
  *fr->add_released_cells() = Cell("F", 61);
  v1::AuditSiteStatus* qc = partial.add_sites();
  qc->set_site("qc");
  qc->set_status("timed_out");
  qc->set_reason("deadline exceeded after 5000 ms");
  *partial.add_released_cells() = Cell("F", 61);
  add(partial);
  // 3: a budget read (no query).
  v1::AuditEntry budget = Query(3);
  budget.set_operation("budget");
  budget.clear_canonical_query();
  budget.set_decision(v1::AUDIT_DECISION_ALLOWED);
  add(budget);
  // 4: a repeat of entry 0 (no budget charged).
  v1::AuditEntry repeat = allowed;
  repeat.set_time_unix_micros(kT0 + 4 * 60000000LL);
  repeat.set_request_id("req-4");
  repeat.set_epsilon_charged(0);
  repeat.set_rho_charged(0);
  repeat.set_repeat_of_index(0);
  add(repeat);
  // 5: failed, with a caller name FHIR must carry as is.
  v1::AuditEntry failed = Query(5);
  failed.set_caller("CN=Zoë O'Brien,O=CHU \"Nord\"");
  failed.set_purpose("research");  // Not a DUO code.
  failed.set_decision(v1::AUDIT_DECISION_FAILED);
  failed.add_reasons("internal: ledger unavailable\nretry later");
  add(failed);
  // 6: a node's own entry (true counts stay at the site).
  v1::NodeAuditEntry node;
  node.set_time_unix_micros(kT0 + 6 * 60000000LL);
  node.set_request_id("req-0");
  node.set_caller("spiffe://passerelle/gateway");
  node.set_project("diabetes-fr-qc");
  node.set_canonical_query("count where condition(icd10:E11) by sex");
  node.set_snapshot("fr-snap-3");
  node.add_cells()->set_count(58);
  node.set_decision(v1::AUDIT_DECISION_ALLOWED);
  node.set_site("fr");
  node.set_min_cell_size(10);
  add(node);
  // 7: a node refusal with nearly nothing set.
  v1::NodeAuditEntry refused;
  refused.set_decision(v1::AUDIT_DECISION_DENIED);
  refused.set_reason("caller not in the site's callers");
  add(refused);
  // 8: a gateway entry with only its decision (older or minimal writers).
  v1::AuditEntry sparse;
  sparse.set_decision(v1::AUDIT_DECISION_DENIED);
  add(sparse);
  // 9: an auditor's read of the log (AuditService), recorded in it.
  v1::AuditReadEntry read;
  read.set_time_unix_micros(kT0 + 9 * 60000000LL);
  read.set_caller("spiffe://passerelle/user/dora");
  read.set_rpc("GetEntries");
  read.set_start(0);
  read.set_end(9);
  read.set_decision(v1::AUDIT_DECISION_ALLOWED);
  add(read);
  // 10: bytes that are no audit record: verified, but not exported.
  log.entries.push_back("not a passerelle.v1.AuditRecord");
  return log;
}

class FhirExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = FindOnPath("node");
    if (node_.empty()) {
      GTEST_SKIP() << "node is not installed: the FHIR validators "
                      "(tests/fhir/validate_auditevents.js) cannot run";
    }
    script_ = SourceDir() + "/tests/fhir/validate_auditevents.js";
    ASSERT_EQ(::access(script_.c_str(), R_OK), 0) << script_;
    absl::StatusOr<CommandResult> installed =
        RunCommand({node_, script_, "--validator-dir", ValidatorDir(),
                    "--check-installed"});
    ASSERT_TRUE(installed.ok()) << installed.status();
    if (installed->exit_code == 3) {
      GTEST_SKIP() << "the FHIR validators are not installed in "
                   << ValidatorDir()
                   << " (scripts/install-deps.sh installs them with npm ci; "
                      "set PASSERELLE_FHIR_VALIDATOR_DIR for another "
                      "place): "
                   << installed->err;
    }
    ASSERT_EQ(installed->exit_code, 0) << installed->err;
    std::cout << "validators: " << installed->out;

    store_ = dir_.Sub("audit");
    auto key = audit::SigningKey::Generate();
    ASSERT_TRUE(key.ok()) << key.status();
    audit::AuditLogOptions options;
    options.origin = "passerelle.test/gateway";
    options.signing_key =
        std::shared_ptr<const audit::SigningKey>(*std::move(key));
    auto log = audit::AuditLog::OpenDirectory(store_, options);
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = EveryKindOfEntry();
    for (const std::string& entry : log_.entries) {
      ASSERT_TRUE((*log)->Append(entry).ok());
    }
  }

  // The binary's FHIR export of the store.
  std::string Export() {
    absl::StatusOr<CommandResult> r =
        RunCommand({PasserelleBin(), "audit", "export", "--store", store_,
                    "--format", "fhir"});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return "";
    EXPECT_EQ(r->exit_code, 0) << r->err;
    return r->out;
  }

  CommandResult Validate(const std::string& name, const std::string& json) {
    const std::string path = dir_.Sub(name);
    WriteFile(path, json);
    absl::StatusOr<CommandResult> r = RunCommand(
        {node_, script_, "--validator-dir", ValidatorDir(), "--verbose", path});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  }

  TempDir dir_;
  std::string node_;
  std::string script_;
  std::string store_;
  Log log_;
};

TEST_F(FhirExportTest, EveryExportedAuditEventIsValidR4) {
  const std::string bundle = Export();
  ASSERT_TRUE(absl::StartsWith(bundle, "{\"resourceType\":\"Bundle\""))
      << bundle;
  CommandResult r = Validate("export.json", bundle);
  std::cout << r.out;  // Warnings (weaker bindings) and the verdict.
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat(log_.records, " AuditEvents in a Bundle: all valid")))
      << r.out << r.err;
  // Every kind made it into the export.
  const std::vector<std::string> kinds = {
      "\"outcome\":\"0\"",
      "\"outcome\":\"4\"",
      "\"outcome\":\"8\"",
      "\"action\":\"R\"",
      "AuditEvent/passerelle-audit-0",
      "\"valueString\":\"node\"",
      "released_cells",
      absl::StrCat("\"passerelle-audit-", log_.records - 1, "\"")};
  for (const std::string& expected : kinds) {
    EXPECT_TRUE(absl::StrContains(bundle, expected)) << expected;
  }
}

TEST_F(FhirExportTest, TheValidatorRejectsBrokenAuditEvents) {
  // The export writes one `{"resource":...}` entry a line; take entry 0 (the
  // allowed query) and the node entry as exported.
  const std::string bundle = Export();
  std::vector<std::string> events;
  for (absl::string_view line : absl::StrSplit(bundle, '\n')) {
    absl::ConsumeSuffix(&line, ",");
    if (absl::ConsumePrefix(&line, "{\"resource\":") &&
        absl::ConsumeSuffix(&line, "}")) {
      events.emplace_back(line);
    }
  }
  ASSERT_EQ(events.size(), static_cast<size_t>(log_.records)) << bundle;
  const std::string& query = events[0];
  const std::string& node = events[6];
  ASSERT_TRUE(absl::StrContains(node, "\"valueString\":\"node\"")) << node;

  // Each break changes the first `from` of its event into `to`.
  struct Break {
    const char* what;
    const std::string* event;
    std::string from, to;
    const char* expected;  // In the validator's report for that event.
  };
  const size_t at = query.find("\"recorded\":\"");
  ASSERT_NE(at, std::string::npos);
  const std::string recorded = query.substr(at, query.find("\",", at) + 2 - at);
  const std::vector<Break> breaks = {
      {"recorded removed", &query, recorded, "",
       "fhir.js: AuditEvent.recorded: Missing property"},
      {"invalid outcome code", &query, "\"outcome\":\"0\"", "\"outcome\":\"9\"",
       "fhir.js: AuditEvent.outcome: Code \"9\" not found in value set"},
      {"invalid outcome code (schema)", &query, "\"outcome\":\"0\"",
       "\"outcome\":\"9\"", "schema: .outcome: should be equal to one of"},
      {"recorded without a time zone", &query, recorded,
       "\"recorded\":\"2026-11-18T10:00:00\",",
       "schema: .recorded: should match pattern"},
      {"unknown element", &query, "\"outcomeDesc\":", "\"outcomeDescription\":",
       "fhir.js: AuditEvent.outcomeDescription: Unexpected property"},
      {"invalid action", &node, "\"action\":\"E\"", "\"action\":\"X\"",
       "fhir.js: AuditEvent.action: Code \"X\" not found in value set"},
      {"requestor not a boolean", &node, "\"requestor\":true",
       "\"requestor\":\"yes\"",
       "schema: .agent[0].requestor: should be boolean"},
      {"empty source site", &query, "\"site\":\"passerelle.test/gateway\"",
       "\"site\":\"\"", "r4: AuditEvent.source.site: empty string (ele-1)"},
      {"name and query", &query, "\"query\":", "\"name\":\"q\",\"query\":",
       "r4: AuditEvent.entity[0]: has both name and query (sev-1)"},
      {"observer removed", &node, "\"observer\":{", "\"observerX\":{",
       "fhir.js: AuditEvent.source.observer: Missing"},
  };
  // One JSON line per resource: the two events intact, then the breaks (ids
  // made unique so that only the break is wrong).
  std::string lines = query + "\n" + node + "\n";
  std::vector<std::string> labels;
  for (size_t k = 0; k < breaks.size(); ++k) {
    const Break& b = breaks[k];
    std::string broken = *b.event;
    const size_t pos = broken.find(b.from);
    ASSERT_NE(pos, std::string::npos) << b.what << ": " << b.from;
    broken.replace(pos, b.from.size(), b.to);
    const size_t id = broken.find("\"id\":\"passerelle-audit-");
    ASSERT_NE(id, std::string::npos) << broken;
    const std::string new_id = absl::StrCat("broken-", k);
    broken.replace(id + 6, broken.find('"', id + 6) - (id + 6), new_id);
    lines += broken + "\n";
    labels.push_back(absl::StrCat("entry ", k + 2, " (", new_id, "): "));
  }
  CommandResult r = Validate("broken.jsonl", lines);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  for (const std::string& intact :
       {std::string("entry 0 (passerelle-audit-0): "),
        std::string("entry 1 (passerelle-audit-6): ")}) {
    for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
      EXPECT_FALSE(absl::StartsWith(line, intact) &&
                   !absl::StrContains(line, ": warning: "))
          << "an intact event was reported: " << line;
    }
  }
  for (size_t k = 0; k < breaks.size(); ++k) {
    EXPECT_TRUE(absl::StrContains(r.out, labels[k] + breaks[k].expected))
        << breaks[k].what << ": " << labels[k] << breaks[k].expected
        << " not in:\n"
        << r.out << r.err;
  }
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat(breaks.size() + 2, " AuditEvents: ")))
      << r.out;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat(" in ", breaks.size(), " resource(s)")))
      << r.out;
}

}  // namespace
}  // namespace passerelle::testing
