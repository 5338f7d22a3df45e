#include "audit/tool.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "audit/expansion_text.h"
#include "audit/merkle.h"
#include "audit/remote.h"
#include "common/status_macros.h"

namespace passerelle::audit {
namespace {

namespace v1 = ::passerelle::v1;

std::string B64List(const std::vector<std::string>& hashes) {
  std::vector<std::string> quoted;
  for (const std::string& h : hashes) {
    quoted.push_back(absl::StrCat("\"", absl::Base64Escape(h), "\""));
  }
  if (quoted.empty()) return "[]";
  return absl::StrCat("[\n    ", absl::StrJoin(quoted, ",\n    "), "\n  ]");
}

constexpr char kUsage[] =
    "usage: passerelle audit <command> --store DIR [--public-key FILE]\n"
    "       passerelle audit <command> --config CLIENT.textproto\n"
    "           | --gateway HOST:PORT | --node HOST:PORT --node-site SITE\n"
    "           [--ca F --cert F --key F --server-name N --server-id ID]\n"
    "           --public-key FILE\n"
    "       (the server must prove its identity: the gateway's, or with\n"
    "       --node the site's node spiffe://<trust domain>/site/SITE/node)\n"
    "commands:\n"
    "  verify [--checkpoint FILE]      recompute the tree, check every\n"
    "                                  checkpoint (and one you kept); names\n"
    "                                  the first bad index\n"
    "  show N                          print entry N as JSON (with its\n"
    "                                  crosswalk expansions as lines)\n"
    "  search [--caller C] [--project P] [--since RFC3339]\n"
    "         [--until RFC3339] [--outcome allowed|denied|failed|partial]\n"
    "  export --format jsonl|fhir      every entry, to stdout\n"
    "  proof --index N [--size S]      inclusion proof (base64 JSON)\n"
    "  consistency --from A --to B     consistency proof (base64 JSON)\n"
    "  crosscheck --node-store DIR --site NAME\n"
    "                                  compare the gateway's entries for a\n"
    "                                  site with that site's own log (stores)\n"
    "  checkpoint                      the latest signed checkpoint\n"
    "  public-key                      the log's public key (PEM) and its\n"
    "                                  signed-note verifier key\n"
    "Remote (an auditor's mTLS certificate): the server's AuditService sends\n"
    "entries and checkpoints; leaves, roots, proofs and signatures are all\n"
    "checked here with the --public-key you kept (required by verify;\n"
    "show, search, export, proof, consistency and checkpoint check against\n"
    "the signed checkpoint when it is given). --origin pins the log's name.\n";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
};

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& args) {
  static const auto* const kKnown = new std::set<std::string>{
      "store",      "public-key", "caller", "project", "since", "until",
      "outcome",    "format",     "index",  "size",    "from",  "to",
      "checkpoint", "node-store", "site",   "origin"};
  Args out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (absl::StartsWith(a, "--")) {
      std::string name = a.substr(2);
      std::string value;
      const size_t eq = name.find('=');
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      } else {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value"));
        }
        value = args[++i];
      }
      if (kKnown->find(name) == kKnown->end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag --", name));
      }
      out.flags[name] = value;
    } else if (out.command.empty()) {
      out.command = a;
    } else {
      out.positional.push_back(a);
    }
  }
  if (out.command.empty()) return absl::InvalidArgumentError("no command");
  static const auto* const kCommands = new std::set<std::string>{
      "verify",      "show",       "search",     "export",    "proof",
      "consistency", "checkpoint", "public-key", "crosscheck"};
  if (kCommands->count(out.command) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown audit command '", out.command, "'"));
  }
  return out;
}

absl::StatusOr<uint64_t> ParseU64(absl::string_view what,
                                  absl::string_view text) {
  uint64_t v;
  if (!absl::SimpleAtoi(text, &v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must be a non-negative integer, got '", text, "'"));
  }
  return v;
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

std::optional<std::string> Flag(const Args& a, const std::string& name) {
  auto it = a.flags.find(name);
  if (it == a.flags.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<RecordFilter> FilterFromFlags(const Args& a) {
  RecordFilter filter;
  filter.caller = Flag(a, "caller");
  filter.project = Flag(a, "project");
  if (auto s = Flag(a, "since")) {
    PASSERELLE_ASSIGN_OR_RETURN(filter.since, ParseRfc3339(*s));
  }
  if (auto s = Flag(a, "until")) {
    PASSERELLE_ASSIGN_OR_RETURN(filter.until, ParseRfc3339(*s));
  }
  if (auto s = Flag(a, "outcome")) {
    PASSERELLE_ASSIGN_OR_RETURN(filter.outcome, ParseOutcome(*s));
  }
  return filter;
}

}  // namespace

absl::Status VerifyReport(const AuditLog& log, const VerifyingKey& key,
                          std::string* report,
                          const std::vector<std::string>& trusted_checkpoints) {
  VerifySummary s;
  absl::Status st = log.Verify(key, &s, trusted_checkpoints);
  // The site's own check: every node entry's stored counts still open its
  // commitment.
  uint64_t opened = 0;
  if (st.ok()) st = OpenCommitments(log, &opened);
  std::string r;
  absl::StrAppend(&r, "origin: ", log.origin(), "\n");
  absl::StrAppend(&r, "key: ", NoteVerifierKey(log.origin(), key.raw()), "\n");
  absl::StrAppend(&r, "entries: ", s.size, " (", s.entries_verified,
                  " verified)\n");
  absl::StrAppend(&r, "checkpoints verified: ", s.checkpoints_verified, "\n");
  absl::StrAppend(&r, "root of verified entries: ", absl::Base64Escape(s.root),
                  "\n");
  if (s.latest_checkpoint.has_value()) {
    absl::StrAppend(&r, "latest valid checkpoint: size ",
                    s.latest_checkpoint->size, " root ",
                    absl::Base64Escape(s.latest_checkpoint->root_hash), "\n");
  }
  if (opened > 0) {
    absl::StrAppend(&r, "count commitments opened: ", opened, "\n");
  }
  if (st.ok()) {
    absl::StrAppend(&r, "OK\n");
  } else if (s.first_bad_index.has_value()) {
    absl::StrAppend(&r, "FAILED: first bad index ", *s.first_bad_index, ": ",
                    s.problem, "\n");
  } else {
    absl::StrAppend(&r, "ERROR: ", st.ToString(), "\n");
  }
  *report = std::move(r);
  return st;
}

std::vector<std::string> ExpansionLines(absl::string_view entry) {
  std::vector<std::string> lines;
  absl::StatusOr<v1::AuditRecord> record = DecodeRecord(entry);
  if (!record.ok()) return lines;
  auto add = [&lines](const std::string& site, const v1::SiteExpansion& e) {
    if (ExpansionIsEmpty(e)) return;
    for (std::string& l : SiteExpansionLines(site, e)) {
      lines.push_back(std::move(l));
    }
  };
  if (record->has_gateway()) {
    for (const v1::AuditSiteStatus& s : record->gateway().sites()) {
      add(s.site(), s.expansion());
    }
  } else if (record->has_node()) {
    add(record->node().site(), record->node().expansion());
  }
  return lines;
}

namespace {

// `row` (a JSON object) indented, with the entry's expansions as readable
// lines ("expansion_lines") when it records any.
std::string ShownJson(const std::string& row, absl::string_view entry) {
  google::protobuf::Value v;
  if (!google::protobuf::util::JsonStringToMessage(row, &v).ok()) {
    return row + "\n";
  }
  std::vector<std::string> lines = ExpansionLines(entry);
  if (!lines.empty() && v.has_struct_value()) {
    google::protobuf::ListValue* list =
        (*v.mutable_struct_value()->mutable_fields())["expansion_lines"]
            .mutable_list_value();
    for (std::string& l : lines) list->add_values()->set_string_value(l);
  }
  return StableJson(v, /*pretty=*/true);
}

}  // namespace

absl::StatusOr<std::string> EntryJson(uint64_t index, absl::string_view entry,
                                      absl::string_view leaf_hash) {
  PASSERELLE_ASSIGN_OR_RETURN(std::string row,
                              JsonlRow(index, entry, leaf_hash));
  return ShownJson(row, entry);
}

absl::StatusOr<std::string> LocalJsonlRow(const AuditLog& log, uint64_t index,
                                          absl::string_view entry,
                                          absl::string_view leaf) {
  PASSERELLE_ASSIGN_OR_RETURN(std::string row, JsonlRow(index, entry, leaf));
  PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> sidecar,
                              log.Sidecar(index));
  if (!sidecar.has_value()) return row;
  absl::StatusOr<passerelle::v1::AuditRecord> record = DecodeRecord(entry);
  if (!record.ok() || !record->has_node()) return row;
  absl::StatusOr<passerelle::v1::NodeCellsOpening> opening =
      OpenNodeCells(record->node(), *sidecar);
  std::string extra;
  if (opening.ok()) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    std::string json;
    if (!google::protobuf::util::MessageToJsonString(*opening, &json, options)
             .ok()) {
      return absl::InternalError("JSON encoding of the opened counts failed");
    }
    extra = absl::StrCat(",\"cells_opening\":", json);
  } else {
    google::protobuf::Value problem;
    problem.set_string_value(std::string(opening.status().message()));
    extra = absl::StrCat(",\"cells_opening_error\":",
                         StableJson(problem, /*pretty=*/false));
  }
  row.insert(row.size() - 1, extra);  // Before the closing brace.
  return row;
}

absl::StatusOr<std::string> ShowEntry(const AuditLog& log, uint64_t index) {
  PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log.Get(index));
  PASSERELLE_ASSIGN_OR_RETURN(std::string leaf, log.LeafHash(index));
  PASSERELLE_ASSIGN_OR_RETURN(std::string row,
                              LocalJsonlRow(log, index, entry, leaf));
  return ShownJson(row, entry);
}

absl::Status OpenCommitments(const AuditLog& log, uint64_t* opened) {
  *opened = 0;
  const uint64_t n = log.Size();
  for (uint64_t i = 0; i < n; ++i) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log.Get(i));
    absl::StatusOr<passerelle::v1::AuditRecord> record = DecodeRecord(entry);
    if (!record.ok() || !record->has_node() ||
        record->node().cells_commitment().empty()) {
      continue;
    }
    PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> sidecar,
                                log.Sidecar(i));
    if (!sidecar.has_value()) {
      return absl::DataLossError(absl::StrCat(
          "entry ", i, ": the counts its commitment binds are missing"));
    }
    absl::Status st = OpenNodeCells(record->node(), *sidecar).status();
    if (!st.ok()) {
      return absl::DataLossError(absl::StrCat("entry ", i, ": ", st.message()));
    }
    ++*opened;
  }
  return absl::OkStatus();
}

std::string SearchLine(uint64_t index, const passerelle::v1::AuditRecord& r) {
  const RecordView v = ViewOf(r);
  std::string line = absl::StrCat(
      index, "\t",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", v.time, absl::UTCTimeZone()),
      "\t", v.kind, "\t", v.operation, "\t", OutcomeName(v.decision), "\t",
      v.caller, "\t", v.project, "\t", v.request_id, "\t", v.canonical_query);
  if (v.repeat_of_index.has_value()) {
    absl::StrAppend(&line, "\trepeat_of=", *v.repeat_of_index);
  }
  return line + "\n";
}

absl::StatusOr<std::vector<std::pair<uint64_t, passerelle::v1::AuditRecord>>>
SearchLog(const AuditLog& log, const RecordFilter& filter) {
  std::vector<std::pair<uint64_t, passerelle::v1::AuditRecord>> out;
  const uint64_t n = log.Size();
  for (uint64_t i = 0; i < n; ++i) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log.Get(i));
    absl::StatusOr<passerelle::v1::AuditRecord> record = DecodeRecord(entry);
    if (!record.ok() || !Matches(*record, filter)) continue;
    out.emplace_back(i, *std::move(record));
  }
  return out;
}

absl::Status ExportLog(const AuditLog& log, ExportFormat format,
                       std::ostream& out) {
  const uint64_t n = log.Size();
  if (format == ExportFormat::kFhir) {
    out << "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[";
  }
  bool first = true;
  for (uint64_t i = 0; i < n; ++i) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string entry, log.Get(i));
    PASSERELLE_ASSIGN_OR_RETURN(std::string leaf, log.LeafHash(i));
    if (format == ExportFormat::kJsonl) {
      PASSERELLE_ASSIGN_OR_RETURN(std::string row,
                                  LocalJsonlRow(log, i, entry, leaf));
      out << row << "\n";
      continue;
    }
    absl::StatusOr<passerelle::v1::AuditRecord> record = DecodeRecord(entry);
    if (!record.ok()) continue;  // Not an audit record: nothing to map.
    PASSERELLE_ASSIGN_OR_RETURN(
        std::string event,
        ToFhirAuditEvent(*record, i, leaf, log.origin(), false));
    out << (first ? "\n" : ",\n") << "{\"resource\":" << event << "}";
    first = false;
  }
  if (format == ExportFormat::kFhir) out << "\n]}\n";
  if (!out) return absl::InternalError("write to output failed");
  return absl::OkStatus();
}

std::string InclusionJson(uint64_t index, uint64_t size,
                          absl::string_view leaf_hash, absl::string_view root,
                          const std::vector<std::string>& proof) {
  return absl::StrCat("{\n  \"leafIdx\": ", index, ",\n  \"treeSize\": ", size,
                      ",\n  \"leafHash\": \"", absl::Base64Escape(leaf_hash),
                      "\",\n  \"root\": \"", absl::Base64Escape(root),
                      "\",\n  \"proof\": ", B64List(proof), "\n}\n");
}

std::string ConsistencyJson(uint64_t size1, uint64_t size2,
                            absl::string_view root1, absl::string_view root2,
                            const std::vector<std::string>& proof) {
  return absl::StrCat("{\n  \"size1\": ", size1, ",\n  \"size2\": ", size2,
                      ",\n  \"root1\": \"", absl::Base64Escape(root1),
                      "\",\n  \"root2\": \"", absl::Base64Escape(root2),
                      "\",\n  \"proof\": ", B64List(proof), "\n}\n");
}

absl::StatusOr<std::string> InclusionProofJson(const AuditLog& log,
                                               uint64_t index, uint64_t size) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                              log.InclusionProof(index, size));
  PASSERELLE_ASSIGN_OR_RETURN(std::string leaf, log.LeafHash(index));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root, log.RootAt(size));
  return InclusionJson(index, size, leaf, root, proof);
}

absl::StatusOr<std::string> ConsistencyProofJson(const AuditLog& log,
                                                 uint64_t size1,
                                                 uint64_t size2) {
  PASSERELLE_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                              log.ConsistencyProof(size1, size2));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root1, log.RootAt(size1));
  PASSERELLE_ASSIGN_OR_RETURN(std::string root2, log.RootAt(size2));
  return ConsistencyJson(size1, size2, root1, root2, proof);
}

absl::StatusOr<std::vector<CrossCheckIssue>> CrossCheckSite(
    const AuditLog& gateway, const AuditLog& node, const std::string& site) {
  std::vector<CrossCheckIssue> issues;
  std::set<uint64_t> referenced;
  // Requests the gateway recorded without releasing this site's answer:
  // request id -> (gateway index, what it recorded for the site).
  std::map<std::string, std::pair<uint64_t, std::string>> unreleased;
  // Explains (no count, so no node_audit_index): matched by request id.
  // Request id -> (gateway index, whether the site explained "ok").
  std::map<std::string, std::pair<uint64_t, bool>> explains;
  std::set<std::string> explained_at_node;
  const uint64_t node_size = node.Size();
  const uint64_t n = gateway.Size();
  for (uint64_t i = 0; i < n; ++i) {
    PASSERELLE_ASSIGN_OR_RETURN(std::string bytes, gateway.Get(i));
    absl::StatusOr<passerelle::v1::AuditRecord> record = DecodeRecord(bytes);
    if (!record.ok() || !record->has_gateway()) continue;
    const passerelle::v1::AuditEntry& g = record->gateway();
    if (g.operation() == "explain") {
      for (const passerelle::v1::AuditSiteStatus& st : g.sites()) {
        if (st.site() == site && !g.request_id().empty()) {
          explains[g.request_id()] = {i, st.status() == "ok"};
        }
      }
      continue;
    }
    bool site_listed = false;
    for (const passerelle::v1::AuditSiteStatus& st : g.sites()) {
      if (st.site() != site) continue;
      site_listed = true;
      if (st.status() != "ok" && !st.has_node_audit_index() &&
          !g.request_id().empty()) {
        unreleased[g.request_id()] = {i, absl::StrCat("site ", st.status())};
      }
    }
    const bool interrupted =
        g.reasons_size() > 0 && absl::StartsWith(g.reasons(0), "interrupted:");
    if (!site_listed && interrupted && !g.request_id().empty()) {
      unreleased[g.request_id()] = {i, "interrupted (start-up recovery)"};
    }
    for (const passerelle::v1::AuditSiteStatus& st : g.sites()) {
      if (st.site() != site) continue;
      if (!st.has_node_audit_index()) {
        // A repeat contacted no node: its first release holds the reference.
        if (st.status() == "ok" && !g.has_repeat_of_index()) {
          issues.push_back({i, std::nullopt,
                            absl::StrCat("site ", site,
                                         " answered but no node entry is "
                                         "referenced")});
        }
        continue;
      }
      const uint64_t j = st.node_audit_index();
      referenced.insert(j);
      if (j >= node_size) {
        issues.push_back({i, j,
                          absl::StrCat("references node entry ", j,
                                       " but the node log has ", node_size)});
        continue;
      }
      PASSERELLE_ASSIGN_OR_RETURN(std::string node_bytes, node.Get(j));
      absl::StatusOr<passerelle::v1::AuditRecord> nr = DecodeRecord(node_bytes);
      if (!nr.ok() || !nr->has_node()) {
        issues.push_back({i, j, "referenced node entry is not a node record"});
        continue;
      }
      const passerelle::v1::NodeAuditEntry& ne = nr->node();
      std::vector<std::string> diffs;
      if (ne.request_id() != g.request_id()) {
        diffs.push_back(absl::StrCat("request_id '", ne.request_id(), "' vs '",
                                     g.request_id(), "'"));
      }
      if (ne.project() != g.project()) {
        diffs.push_back(absl::StrCat("project '", ne.project(), "' vs '",
                                     g.project(), "'"));
      }
      if (ne.canonical_query() != g.canonical_query()) {
        diffs.push_back("canonical query differs");
      }
      if (!st.snapshot().empty() && ne.snapshot() != st.snapshot()) {
        diffs.push_back(absl::StrCat("snapshot '", ne.snapshot(), "' vs '",
                                     st.snapshot(), "'"));
      }
      if (!ne.site().empty() && ne.site() != site) {
        diffs.push_back(
            absl::StrCat("node entry is for site '", ne.site(), "'"));
      }
      if (!diffs.empty()) {
        issues.push_back({i, j, absl::StrJoin(diffs, "; ")});
      }
    }
  }
  for (uint64_t j = 0; j < node_size; ++j) {
    if (referenced.count(j) != 0) continue;
    PASSERELLE_ASSIGN_OR_RETURN(std::string node_bytes, node.Get(j));
    absl::StatusOr<passerelle::v1::AuditRecord> nr = DecodeRecord(node_bytes);
    if (!nr.ok() || !nr->has_node()) continue;
    if (nr->node().decision() != passerelle::v1::AUDIT_DECISION_ALLOWED) {
      continue;  // Refusals need not reach the gateway's log.
    }
    if (nr->node().operation() == "explain") {
      // No data read, nothing released: it must match a gateway explain.
      auto e = explains.find(nr->node().request_id());
      if (e == explains.end()) {
        issues.push_back(
            {std::nullopt, j,
             absl::StrCat("node explained request '", nr->node().request_id(),
                          "' but no gateway explain entry records it")});
      } else {
        explained_at_node.insert(nr->node().request_id());
      }
      continue;
    }
    auto u = unreleased.find(nr->node().request_id());
    if (u != unreleased.end()) {
      issues.push_back(
          {u->second.first, j,
           absl::StrCat("node answered request '", nr->node().request_id(),
                        "'; the gateway recorded it as ", u->second.second,
                        ": nothing of this site released"),
           /*accounted=*/true});
      continue;
    }
    issues.push_back(
        {std::nullopt, j,
         absl::StrCat("node answered request '", nr->node().request_id(),
                      "' but no gateway entry references it")});
  }
  for (const auto& [request_id, at] : explains) {
    if (at.second && explained_at_node.count(request_id) == 0) {
      issues.push_back(
          {at.first, std::nullopt,
           absl::StrCat("site ", site, " explained request '", request_id,
                        "' but the node log has no explain entry for it")});
    }
  }
  return issues;
}

namespace {

// Runs one command; usage errors come back as kInvalidArgument.
absl::Status Run(const Args& a, std::ostream& out, std::ostream& err,
                 bool* verify_failed) {
  std::optional<std::string> store = Flag(a, "store");
  if (!store.has_value()) {
    return absl::InvalidArgumentError("--store DIR is required");
  }
  PASSERELLE_ASSIGN_OR_RETURN(
      std::unique_ptr<AuditLog> log,
      AuditLog::OpenDirectory(*store, AuditLogOptions()));

  if (a.command == "verify") {
    std::optional<std::string> key_file = Flag(a, "public-key");
    absl::StatusOr<VerifyingKey> key = key_file.has_value()
                                           ? ReadPublicKeyFile(*key_file)
                                           : log->StoredPublicKey();
    PASSERELLE_RETURN_IF_ERROR(key.status());
    if (!key_file.has_value()) {
      err << "warning: verifying with the public key stored in the log "
             "itself; pass --public-key FILE for an independent check\n";
    }
    std::vector<std::string> trusted;
    if (auto file = Flag(a, "checkpoint")) {
      PASSERELLE_ASSIGN_OR_RETURN(std::string note, ReadTextFile(*file));
      trusted.push_back(std::move(note));
    }
    std::string report;
    absl::Status st = VerifyReport(*log, *key, &report, trusted);
    if (absl::IsInvalidArgument(st)) return st;
    out << report;
    if (!st.ok()) *verify_failed = true;
    return absl::OkStatus();
  }
  if (a.command == "show") {
    if (a.positional.size() != 1) {
      return absl::InvalidArgumentError("show needs exactly one index");
    }
    PASSERELLE_ASSIGN_OR_RETURN(uint64_t index,
                                ParseU64("index", a.positional[0]));
    PASSERELLE_ASSIGN_OR_RETURN(std::string json, ShowEntry(*log, index));
    out << json;
    return absl::OkStatus();
  }
  if (a.command == "search") {
    PASSERELLE_ASSIGN_OR_RETURN(RecordFilter filter, FilterFromFlags(a));
    PASSERELLE_ASSIGN_OR_RETURN(auto hits, SearchLog(*log, filter));
    for (const auto& [index, record] : hits) out << SearchLine(index, record);
    err << hits.size() << " matching entries\n";
    return absl::OkStatus();
  }
  if (a.command == "export") {
    const std::string format = Flag(a, "format").value_or("jsonl");
    if (format != "jsonl" && format != "fhir") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown --format '", format, "' (jsonl or fhir)"));
    }
    return ExportLog(
        *log, format == "fhir" ? ExportFormat::kFhir : ExportFormat::kJsonl,
        out);
  }
  if (a.command == "proof") {
    std::optional<std::string> index_flag = Flag(a, "index");
    if (!index_flag.has_value()) {
      return absl::InvalidArgumentError("proof needs --index N");
    }
    PASSERELLE_ASSIGN_OR_RETURN(uint64_t index,
                                ParseU64("--index", *index_flag));
    uint64_t size = log->Size();
    if (auto s = Flag(a, "size")) {
      PASSERELLE_ASSIGN_OR_RETURN(size, ParseU64("--size", *s));
    }
    PASSERELLE_ASSIGN_OR_RETURN(std::string json,
                                InclusionProofJson(*log, index, size));
    out << json;
    return absl::OkStatus();
  }
  if (a.command == "consistency") {
    std::optional<std::string> from = Flag(a, "from");
    std::optional<std::string> to = Flag(a, "to");
    if (!from.has_value() || !to.has_value()) {
      return absl::InvalidArgumentError("consistency needs --from A --to B");
    }
    PASSERELLE_ASSIGN_OR_RETURN(uint64_t size1, ParseU64("--from", *from));
    PASSERELLE_ASSIGN_OR_RETURN(uint64_t size2, ParseU64("--to", *to));
    PASSERELLE_ASSIGN_OR_RETURN(std::string json,
                                ConsistencyProofJson(*log, size1, size2));
    out << json;
    return absl::OkStatus();
  }
  if (a.command == "crosscheck") {
    std::optional<std::string> node_store = Flag(a, "node-store");
    std::optional<std::string> site = Flag(a, "site");
    if (!node_store.has_value() || !site.has_value()) {
      return absl::InvalidArgumentError(
          "crosscheck needs --node-store DIR --site NAME");
    }
    PASSERELLE_ASSIGN_OR_RETURN(
        std::unique_ptr<AuditLog> node,
        AuditLog::OpenDirectory(*node_store, AuditLogOptions()));
    PASSERELLE_ASSIGN_OR_RETURN(std::vector<CrossCheckIssue> issues,
                                CrossCheckSite(*log, *node, *site));
    size_t mismatches = 0;
    size_t accounted = 0;
    for (const CrossCheckIssue& issue : issues) {
      out << (issue.accounted ? "note: gateway " : "gateway ")
          << (issue.gateway_index ? absl::StrCat(*issue.gateway_index) : "-")
          << "\tnode "
          << (issue.node_index ? absl::StrCat(*issue.node_index) : "-") << "\t"
          << issue.problem << "\n";
      ++(issue.accounted ? accounted : mismatches);
    }
    if (mismatches == 0) {
      out << "OK: gateway and node logs agree for site " << *site;
      if (accounted > 0) {
        out << " (" << accounted
            << " node answer(s) the gateway recorded as not released)";
      }
      out << "\n";
    } else {
      out << "MISMATCH: " << mismatches << " issue(s) for site " << *site
          << "\n";
      *verify_failed = true;
    }
    return absl::OkStatus();
  }
  if (a.command == "checkpoint") {
    PASSERELLE_ASSIGN_OR_RETURN(std::optional<std::string> note,
                                log->LatestCheckpoint());
    if (!note.has_value()) return absl::NotFoundError("no checkpoint yet");
    out << *note;
    return absl::OkStatus();
  }
  if (a.command == "public-key") {
    PASSERELLE_ASSIGN_OR_RETURN(VerifyingKey key, log->StoredPublicKey());
    PASSERELLE_ASSIGN_OR_RETURN(std::string pem, key.ToPem());
    out << pem << NoteVerifierKey(log->origin(), key.raw()) << "\n";
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown audit command '", a.command, "'"));
}

}  // namespace

namespace {

// A verification failure: printed, exit code 1.
struct Failed {
  std::string what;
};

std::string RemoteVerifyReport(const RemoteVerifySummary& s,
                               const VerifyingKey& key,
                               const absl::Status& st) {
  std::string r;
  absl::StrAppend(&r, "origin: ", s.origin, "\n");
  absl::StrAppend(&r, "key: ", NoteVerifierKey(s.origin, key.raw()), "\n");
  absl::StrAppend(&r, "entries: ", s.size, " (", s.entries_verified,
                  " fetched and hashed here");
  if (s.withheld > 0) {
    absl::StrAppend(&r, ", ", s.withheld,
                    " withheld: outside your scope, checked by leaf hash only");
  }
  absl::StrAppend(&r, ")\n");
  absl::StrAppend(&r, "checkpoints verified: ", s.checkpoints_verified, "\n");
  absl::StrAppend(&r, "root of fetched entries: ", absl::Base64Escape(s.root),
                  "\n");
  if (s.latest_checkpoint.has_value()) {
    absl::StrAppend(&r, "latest valid checkpoint: size ",
                    s.latest_checkpoint->size, " root ",
                    absl::Base64Escape(s.latest_checkpoint->root_hash), "\n");
    if (st.ok() && s.latest_checkpoint->size < s.size) {
      absl::StrAppend(&r, "note: ", s.size - s.latest_checkpoint->size,
                      " entries after the latest checkpoint are not signed "
                      "yet\n");
    }
  }
  if (st.ok()) {
    absl::StrAppend(&r, "OK\n");
  } else if (s.first_bad_index.has_value()) {
    absl::StrAppend(&r, "FAILED: first bad index ", *s.first_bad_index, ": ",
                    s.problem, "\n");
  } else {
    absl::StrAppend(&r, "ERROR: ", st.ToString(), "\n");
  }
  return r;
}

// The auditor's key, if given; the server is never asked for one to trust.
absl::StatusOr<std::optional<VerifyingKey>> KeyFromFlags(const Args& a) {
  std::optional<std::string> file = Flag(a, "public-key");
  if (!file.has_value()) return std::optional<VerifyingKey>();
  PASSERELLE_ASSIGN_OR_RETURN(VerifyingKey key, ReadPublicKeyFile(*file));
  return std::optional<VerifyingKey>(std::move(key));
}

// Runs one remote command. Usage errors come back as kInvalidArgument
// before any RPC; `failed` is set for a verification failure.
absl::Status RunRemote(const Args& a, AuditReader& reader, std::ostream& out,
                       std::ostream& err, std::optional<Failed>* failed,
                       bool* usage) {
  auto usage_error = [&](absl::string_view what) {
    *usage = true;
    return absl::InvalidArgumentError(what);
  };
  if (Flag(a, "store").has_value()) {
    return usage_error("give either --store DIR or a server, not both");
  }
  absl::StatusOr<std::optional<VerifyingKey>> key_or = KeyFromFlags(a);
  if (!key_or.ok()) {
    *usage = absl::IsInvalidArgument(key_or.status());
    return key_or.status();
  }
  const std::optional<VerifyingKey>& key = *key_or;
  const std::string origin = Flag(a, "origin").value_or("");
  auto unverified = [&](absl::string_view what) {
    err << "warning: " << what
        << " not checked against a signed checkpoint; pass --public-key FILE "
           "(the log's key, obtained out of band)\n";
  };
  // The latest signed checkpoint, when the auditor gave a key.
  auto checkpoint = [&]() -> absl::StatusOr<Checkpoint> {
    PASSERELLE_ASSIGN_OR_RETURN(std::optional<Checkpoint> cp,
                                FetchLatestCheckpoint(reader, *key, origin));
    if (!cp.has_value()) {
      return absl::FailedPreconditionError("the log has no signed checkpoint");
    }
    return *cp;
  };
  auto fail = [&](const absl::Status& st) {
    *failed = Failed{std::string(st.message())};
    return absl::OkStatus();
  };

  if (a.command == "verify") {
    if (!key.has_value()) {
      return usage_error(
          "verify of a remote log needs --public-key FILE: a key the server "
          "sends cannot vouch for the server");
    }
    std::vector<std::string> trusted;
    if (auto file = Flag(a, "checkpoint")) {
      absl::StatusOr<std::string> note = ReadTextFile(*file);
      if (!note.ok()) {
        *usage = true;
        return absl::InvalidArgumentError(note.status().message());
      }
      trusted.push_back(*std::move(note));
    }
    RemoteVerifySummary summary;
    absl::Status st = VerifyRemote(reader, *key, trusted, origin, &summary);
    if (absl::IsInvalidArgument(st)) {
      *usage = true;
      return st;
    }
    if (!st.ok() && !summary.first_bad_index.has_value()) return st;
    out << RemoteVerifyReport(summary, *key, st);
    if (!st.ok()) *failed = Failed{std::string(st.message())};
    return absl::OkStatus();
  }
  if (a.command == "show") {
    if (a.positional.size() != 1) {
      return usage_error("show needs exactly one index");
    }
    absl::StatusOr<uint64_t> index = ParseU64("index", a.positional[0]);
    if (!index.ok()) return usage_error(index.status().message());
    std::vector<FetchedEntry> got;
    PASSERELLE_RETURN_IF_ERROR(FetchEntries(reader, *index, *index + 1, &got));
    if (got[0].withheld) {
      return absl::PermissionDeniedError(absl::StrCat(
          "entry ", *index, " is outside your audit scope (withheld)"));
    }
    if (key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(Checkpoint cp, checkpoint());
      absl::Status st =
          VerifyRemoteInclusion(reader, cp, *index, got[0].leaf_hash);
      if (!st.ok()) return fail(st);
      err << "verified: entry " << *index
          << " is included in the signed checkpoint of size " << cp.size
          << "\n";
    } else {
      unverified("entry");
    }
    PASSERELLE_ASSIGN_OR_RETURN(
        std::string json, EntryJson(*index, got[0].bytes, got[0].leaf_hash));
    out << json;
    return absl::OkStatus();
  }
  if (a.command == "search") {
    absl::StatusOr<RecordFilter> filter = FilterFromFlags(a);
    if (!filter.ok()) return usage_error(filter.status().message());
    v1::AuditSearchRequest request;
    if (filter->caller) request.set_caller(*filter->caller);
    if (filter->project) request.set_project(*filter->project);
    if (filter->since) {
      request.set_since_unix_micros(absl::ToUnixMicros(*filter->since));
    }
    if (filter->until) {
      request.set_until_unix_micros(absl::ToUnixMicros(*filter->until));
    }
    if (filter->outcome) request.set_outcome(*filter->outcome);
    std::optional<Checkpoint> cp;
    if (key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(cp, checkpoint());
      request.set_end(cp->size);  // Only what a signature covers.
    } else {
      unverified("results");
    }
    std::vector<std::pair<uint64_t, std::string>> hits;
    uint64_t next = 0;
    while (true) {
      request.set_start(next);
      PASSERELLE_ASSIGN_OR_RETURN(v1::AuditEntriesResponse page,
                                  reader.SearchEntries(request));
      for (v1::AuditLogEntry& e : *page.mutable_entries()) {
        const bool in_order = e.index() >= next &&
                              e.index() < page.next_index() &&
                              (hits.empty() || e.index() > hits.back().first);
        if (e.withheld() || !in_order) {
          return fail(absl::DataLossError(absl::StrCat(
              "the server returned an unexpected search hit at index ",
              e.index())));
        }
        hits.emplace_back(e.index(), std::move(*e.mutable_entry()));
      }
      const uint64_t end =
          request.end() != 0 ? request.end() : page.tree_size();
      if (page.next_index() >= end) break;
      if (page.next_index() <= next) {
        return fail(
            absl::DataLossError("the server's search does not progress"));
      }
      next = page.next_index();
    }
    for (const auto& [index, bytes] : hits) {
      absl::StatusOr<v1::AuditRecord> record = DecodeRecord(bytes);
      if (!record.ok() || !Matches(*record, *filter)) {
        return fail(absl::DataLossError(
            absl::StrCat("the server returned entry ", index,
                         " as a hit but it does not match the filters")));
      }
      if (cp.has_value()) {
        absl::Status st =
            VerifyRemoteInclusion(reader, *cp, index, HashLeaf(bytes));
        if (!st.ok()) return fail(st);
      }
      out << SearchLine(index, *record);
    }
    err << hits.size() << " matching entries";
    if (cp.has_value()) {
      err << ", each verified in the signed checkpoint of size " << cp->size;
    }
    err << "\n";
    return absl::OkStatus();
  }
  if (a.command == "export") {
    const std::string format = Flag(a, "format").value_or("jsonl");
    if (format != "jsonl" && format != "fhir") {
      return usage_error(
          absl::StrCat("unknown --format '", format, "' (jsonl or fhir)"));
    }
    std::string log_origin = origin;
    uint64_t end = 0;
    std::optional<Checkpoint> cp;
    if (key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(cp, checkpoint());
      end = cp->size;
      log_origin = cp->origin;
    } else {
      unverified("export");
      PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointResponse latest,
                                  reader.GetCheckpoint({}));
      end = latest.log_size();
      if (log_origin.empty()) {
        PASSERELLE_ASSIGN_OR_RETURN(v1::AuditPublicKeyResponse pk,
                                    reader.GetPublicKey({}));
        log_origin = pk.origin();
      }
    }
    std::vector<FetchedEntry> entries;
    absl::Status st = FetchEntries(reader, 0, end, &entries);
    if (absl::IsDataLoss(st)) return fail(st);
    PASSERELLE_RETURN_IF_ERROR(st);
    if (cp.has_value()) {
      // Nothing is written unless every entry is under the signed root.
      std::vector<std::string> leaves;
      for (const FetchedEntry& e : entries) leaves.push_back(e.leaf_hash);
      if (RootOfLeafHashes(leaves) != cp->root_hash) {
        return fail(absl::DataLossError(
            absl::StrCat("the entries do not hash to the signed root for size ",
                         cp->size, "; run verify to locate the damage")));
      }
    }
    if (format == "fhir") {
      out << "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[";
    }
    bool first = true;
    for (const FetchedEntry& e : entries) {
      if (format == "jsonl") {
        if (e.withheld) {
          out << "{\"index\":" << e.index << ",\"leaf_hash\":\""
              << absl::Base64Escape(e.leaf_hash) << "\",\"withheld\":true}\n";
          continue;
        }
        PASSERELLE_ASSIGN_OR_RETURN(std::string row,
                                    JsonlRow(e.index, e.bytes, e.leaf_hash));
        out << row << "\n";
        continue;
      }
      if (e.withheld) continue;
      absl::StatusOr<v1::AuditRecord> record = DecodeRecord(e.bytes);
      if (!record.ok()) continue;
      PASSERELLE_ASSIGN_OR_RETURN(
          std::string event,
          ToFhirAuditEvent(*record, e.index, e.leaf_hash, log_origin, false));
      out << (first ? "\n" : ",\n") << "{\"resource\":" << event << "}";
      first = false;
    }
    if (format == "fhir") out << "\n]}\n";
    if (cp.has_value()) {
      err << "verified: " << entries.size()
          << " entries under the signed checkpoint of size " << cp->size
          << "\n";
    }
    return absl::OkStatus();
  }
  if (a.command == "proof") {
    std::optional<std::string> index_flag = Flag(a, "index");
    if (!index_flag.has_value()) return usage_error("proof needs --index N");
    absl::StatusOr<uint64_t> index = ParseU64("--index", *index_flag);
    if (!index.ok()) return usage_error(index.status().message());
    std::optional<uint64_t> size;
    if (auto s = Flag(a, "size")) {
      absl::StatusOr<uint64_t> v = ParseU64("--size", *s);
      if (!v.ok()) return usage_error(v.status().message());
      size = *v;
    }
    std::optional<Checkpoint> cp;
    if (key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(cp, checkpoint());
      if (!size.has_value()) size = cp->size;
    } else {
      unverified("root");
      if (!size.has_value()) {
        PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointResponse latest,
                                    reader.GetCheckpoint({}));
        size = latest.log_size();
      }
    }
    v1::AuditInclusionProofRequest request;
    request.set_index(*index);
    request.set_tree_size(*size);
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditInclusionProofResponse p,
                                reader.GetInclusionProof(request));
    if (p.index() != *index || p.tree_size() != *size) {
      return fail(absl::DataLossError(
          absl::StrCat("asked for entry ", *index, " in size ", *size,
                       ", the server answered entry ", p.index(), " in size ",
                       p.tree_size())));
    }
    // The leaf from the entry's bytes (or the withheld entry's hash), the
    // root from the proof: both computed here.
    std::vector<FetchedEntry> got;
    absl::Status st = FetchEntries(reader, *index, *index + 1, &got);
    if (absl::IsDataLoss(st)) return fail(st);
    PASSERELLE_RETURN_IF_ERROR(st);
    const std::vector<std::string> proof(p.proof().begin(), p.proof().end());
    if (got[0].leaf_hash != p.leaf_hash()) {
      return fail(absl::DataLossError(absl::StrCat(
          "the proof's leaf hash is not the hash of entry ", *index)));
    }
    absl::StatusOr<std::string> root =
        RootFromInclusionProof(got[0].leaf_hash, *index, *size, proof);
    if (!root.ok()) return fail(absl::DataLossError(root.status().message()));
    if (*root != p.root()) {
      return fail(absl::DataLossError(
          "the inclusion proof does not lead to the root the server gave"));
    }
    if (cp.has_value()) {
      st = AnchorRoot(reader, *cp, *size, *root);
      if (!st.ok()) return fail(st);
      err << "verified: leaf " << *index << " in tree size " << *size
          << ", anchored to the signed checkpoint of size " << cp->size << "\n";
    }
    out << InclusionJson(*index, *size, got[0].leaf_hash, *root, proof);
    return absl::OkStatus();
  }
  if (a.command == "consistency") {
    std::optional<std::string> from = Flag(a, "from");
    std::optional<std::string> to = Flag(a, "to");
    if (!from.has_value() || !to.has_value()) {
      return usage_error("consistency needs --from A --to B");
    }
    absl::StatusOr<uint64_t> size1 = ParseU64("--from", *from);
    if (!size1.ok()) return usage_error(size1.status().message());
    absl::StatusOr<uint64_t> size2 = ParseU64("--to", *to);
    if (!size2.ok()) return usage_error(size2.status().message());
    std::optional<Checkpoint> cp;
    if (key.has_value()) {
      PASSERELLE_ASSIGN_OR_RETURN(cp, checkpoint());
    } else {
      unverified("roots");
    }
    v1::AuditConsistencyProofRequest request;
    request.set_size1(*size1);
    request.set_size2(*size2);
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditConsistencyProofResponse p,
                                reader.GetConsistencyProof(request));
    if (p.size1() != *size1 || p.size2() != *size2) {
      return fail(absl::DataLossError(absl::StrCat(
          "asked for ", *size1, " -> ", *size2, ", the server answered ",
          p.size1(), " -> ", p.size2())));
    }
    const std::vector<std::string> proof(p.proof().begin(), p.proof().end());
    absl::Status st =
        VerifyConsistency(*size1, *size2, proof, p.root1(), p.root2());
    if (!st.ok()) {
      return fail(absl::DataLossError(absl::StrCat(
          "the consistency proof does not verify: ", st.message())));
    }
    if (cp.has_value()) {
      // root2 anchored to the signature; the proof then vouches for root1.
      st = AnchorRoot(reader, *cp, *size2, p.root2());
      if (!st.ok()) return fail(st);
      err << "verified: " << *size1 << " -> " << *size2
          << ", anchored to the signed checkpoint of size " << cp->size << "\n";
    }
    out << ConsistencyJson(*size1, *size2, p.root1(), p.root2(), proof);
    return absl::OkStatus();
  }
  if (a.command == "checkpoint") {
    if (key.has_value()) {
      std::string note;
      absl::StatusOr<std::optional<Checkpoint>> cp =
          FetchLatestCheckpoint(reader, *key, origin, &note);
      if (absl::IsDataLoss(cp.status())) return fail(cp.status());
      PASSERELLE_RETURN_IF_ERROR(cp.status());
      if (!cp->has_value()) return absl::NotFoundError("no checkpoint yet");
      out << note;
      err << "verified: signed by the given key (" << (*cp)->origin << ", size "
          << (*cp)->size << ")\n";
      return absl::OkStatus();
    }
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditCheckpointResponse latest,
                                reader.GetCheckpoint({}));
    if (latest.note().empty()) return absl::NotFoundError("no checkpoint yet");
    unverified("signature");
    out << latest.note();
    return absl::OkStatus();
  }
  if (a.command == "public-key") {
    PASSERELLE_ASSIGN_OR_RETURN(v1::AuditPublicKeyResponse pk,
                                reader.GetPublicKey({}));
    err << "warning: this is the key the server reports; verify with a key "
           "you obtained out of band\n";
    out << pk.public_key_pem() << pk.note_verifier_key() << "\n";
    return absl::OkStatus();
  }
  if (a.command == "crosscheck") {
    return usage_error(
        "crosscheck compares two store directories (--store and "
        "--node-store); it has no remote form");
  }
  return usage_error(absl::StrCat("unknown audit command '", a.command, "'"));
}

}  // namespace

int RunRemoteAuditTool(const std::vector<std::string>& args,
                       AuditReader& reader, std::ostream& out,
                       std::ostream& err) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  absl::StatusOr<Args> parsed = ParseArgs(args);
  if (!parsed.ok()) {
    err << "passerelle audit: " << parsed.status().message() << "\n" << kUsage;
    return 2;
  }
  std::optional<Failed> failed;
  bool usage = false;
  absl::Status st = RunRemote(*parsed, reader, out, err, &failed, &usage);
  if (!st.ok()) {
    err << "passerelle audit " << parsed->command << ": " << st.ToString()
        << "\n";
    return usage ? 2 : 1;
  }
  if (failed.has_value()) {
    if (parsed->command != "verify") {
      err << "passerelle audit " << parsed->command
          << ": FAILED: " << failed->what << "\n";
    }
    return 1;
  }
  return 0;
}

int RunAuditTool(const std::vector<std::string>& args, std::ostream& out,
                 std::ostream& err) {
  if (args.empty() || args[0] == "help" || args[0] == "--help") {
    (args.empty() ? err : out) << kUsage;
    return args.empty() ? 2 : 0;
  }
  absl::StatusOr<Args> parsed = ParseArgs(args);
  if (!parsed.ok()) {
    err << "passerelle audit: " << parsed.status().message() << "\n" << kUsage;
    return 2;
  }
  bool verify_failed = false;
  absl::Status st = Run(*parsed, out, err, &verify_failed);
  if (!st.ok()) {
    err << "passerelle audit " << parsed->command << ": " << st.ToString()
        << "\n";
    return absl::IsInvalidArgument(st) ? 2 : 1;
  }
  return verify_failed ? 1 : 0;
}

}  // namespace passerelle::audit
