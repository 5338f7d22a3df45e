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
#include "audit/log.h"
#include "audit/records.h"

namespace passerelle::audit {

// Verifies `log` with `key` and returns a human-readable report; the status
// is Verify()'s (kDataLoss naming the first bad index on tampering).
absl::Status VerifyReport(
    const AuditLog& log, const VerifyingKey& key, std::string* report,
    const std::vector<std::string>& trusted_checkpoints = {});

// The entry at `index` as pretty JSON with its index and leaf hash.
absl::StatusOr<std::string> ShowEntry(const AuditLog& log, uint64_t index);

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

// One disagreement between a gateway log and a site's node log.
struct CrossCheckIssue {
  std::optional<uint64_t> gateway_index;  // Absent for an unreferenced
  std::optional<uint64_t> node_index;     // node entry, and vice versa.
  std::string problem;
};
// Cross-checks the gateway's entries for `site` against that site's own log:
// every node_audit_index the gateway recorded must name a node entry for the
// same request, project, query and snapshot; a site reported "ok" must have
// a node reference; and every node entry that answered (allowed) must be
// referenced by some gateway entry (a gateway cannot hide a query the site
// answered). Verify both logs first: this compares contents only.
absl::StatusOr<std::vector<CrossCheckIssue>> CrossCheckSite(
    const AuditLog& gateway, const AuditLog& node, const std::string& site);

// `passerelle audit <command> --store DIR ...`; returns the exit code
// (0 success, 1 failure such as a verification error, 2 usage error).
int RunAuditTool(const std::vector<std::string>& args, std::ostream& out,
                 std::ostream& err);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_TOOL_H_
