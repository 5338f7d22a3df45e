// The auditor's commands over an audit store directory, as library
// functions (unit-tested) plus the `passerelle audit ...` dispatcher that
// cli/audit_cmd.cc forwards to.
#ifndef PASSERELLE_AUDIT_TOOL_H_
#define PASSERELLE_AUDIT_TOOL_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/log.h"
#include "audit/records.h"
#include "audit/remote.h"

namespace passerelle::audit {

// Verifies `log` with `key` and returns a human-readable report; the status
// is Verify()'s (kDataLoss naming the first bad index on tampering).
absl::Status VerifyReport(
    const AuditLog& log, const VerifyingKey& key, std::string* report,
    const std::vector<std::string>& trusted_checkpoints = {});

// Opens every node entry's count commitment with the counts stored beside
// it (the site's own check, also run by VerifyReport): `*opened` of them;
// kDataLoss naming the first entry whose counts are missing or do not open
// it.
absl::Status OpenCommitments(const AuditLog& log, uint64_t* opened);

// The entry at `index` as pretty JSON with its index and leaf hash; a node
// entry also with its opened counts ("cells_opening": salt and cells), read
// from the store beside it (local reads only: never served).
absl::StatusOr<std::string> ShowEntry(const AuditLog& log, uint64_t index);
// The same for given bytes and leaf hash (what `show` prints). Both add
// "expansion_lines" when the entry records crosswalk expansions.
absl::StatusOr<std::string> EntryJson(uint64_t index, absl::string_view entry,
                                      absl::string_view leaf_hash);
// Each site's crosswalk expansion recorded in an entry (a gateway entry's
// sites, a node entry's own), one readable line each
// (audit/expansion_text.h: "qc: icd10:E11* via gem-icd9cm-icd10cm → icd9:
// 48 source codes (99 rows, approximate)", "qc: WARNING: ..."); empty for
// an entry without any, or bytes that are not a record.
std::vector<std::string> ExpansionLines(absl::string_view entry);
// One `search` output line: index, time, kind, operation ("query",
// "budget", "count"), outcome, caller, project, request id, canonical query,
// tab-separated, then "repeat_of=N" for a repeated release.
std::string SearchLine(uint64_t index, const passerelle::v1::AuditRecord& r);

// Indices and records of entries matching `filter`, in log order; entries
// that are not AuditRecords are skipped.
absl::StatusOr<std::vector<std::pair<uint64_t, passerelle::v1::AuditRecord>>>
SearchLog(const AuditLog& log, const RecordFilter& filter);

enum class ExportFormat { kJsonl, kFhir };
// Writes every entry: JSON Lines rows, or a FHIR R4 Bundle (type
// "collection") of AuditEvent resources.
absl::Status ExportLog(const AuditLog& log, ExportFormat format,
                       std::ostream& out);

// An inclusion proof as JSON in the field names of the transparency-dev
// test vectors: {"leafIdx","treeSize","leafHash","root","proof"} (base64).
absl::StatusOr<std::string> InclusionProofJson(const AuditLog& log,
                                               uint64_t index, uint64_t size);
// {"size1","size2","root1","root2","proof"} (base64).
absl::StatusOr<std::string> ConsistencyProofJson(const AuditLog& log,
                                                 uint64_t size1,
                                                 uint64_t size2);
// The two JSON forms above from their parts.
std::string InclusionJson(uint64_t index, uint64_t size,
                          absl::string_view leaf_hash, absl::string_view root,
                          const std::vector<std::string>& proof);
std::string ConsistencyJson(uint64_t size1, uint64_t size2,
                            absl::string_view root1, absl::string_view root2,
                            const std::vector<std::string>& proof);

// One disagreement between a gateway log and a site's node log.
struct CrossCheckIssue {
  std::optional<uint64_t> gateway_index;  // Absent for an unreferenced
  std::optional<uint64_t> node_index;     // node entry, and vice versa.
  std::string problem;
  // Not a disagreement: a node entry the gateway did not reference but whose
  // request the gateway did record, with this site not released ("failed",
  // "timed out"…) or as interrupted by a crash (its start-up recovery). The
  // request is not hidden; the node computed an answer the gateway says it
  // never released. Listed for the auditor, not counted as a mismatch.
  bool accounted = false;
};
// Cross-checks the gateway's entries for `site` against that site's own log:
// every node_audit_index the gateway recorded must name a node entry for the
// same request, project, query and snapshot; a site reported "ok" must have
// a node reference (unless the entry repeats an earlier release, which
// contacted no node); and every node entry that answered (allowed) must be
// referenced by some gateway entry (a gateway cannot hide a query the site
// answered) — or, marked `accounted`, belong to a request the gateway
// recorded without releasing this site's answer. An explain (no data read,
// no node_audit_index) is matched by request id instead: every node explain
// entry needs a gateway explain entry, and every gateway explain the site
// answered needs the node's. Verify both logs first: this compares contents
// only.
absl::StatusOr<std::vector<CrossCheckIssue>> CrossCheckSite(
    const AuditLog& gateway, const AuditLog& node, const std::string& site);

// `passerelle audit <command> --store DIR ...`; returns the exit code
// (0 success, 1 failure such as a verification error, 2 usage error).
int RunAuditTool(const std::vector<std::string>& args, std::ostream& out,
                 std::ostream& err);

// The same commands (but crosscheck) against a remote log through `reader`
// (the connection flags already removed from `args`). Everything the server
// sends is checked here (audit/remote.h): verify needs --public-key FILE;
// show, search, export, proof, consistency and checkpoint check against the
// latest signed checkpoint when --public-key is given and warn otherwise.
int RunRemoteAuditTool(const std::vector<std::string>& args,
                       AuditReader& reader, std::ostream& out,
                       std::ostream& err);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_TOOL_H_
