// Typed views of audit log entries for callers and auditor tools. The log
// itself stores opaque bytes; by convention each entry is a serialized
// passerelle.v1.AuditRecord (a gateway AuditEntry or a NodeAuditEntry).
#ifndef PASSERELLE_AUDIT_RECORDS_H_
#define PASSERELLE_AUDIT_RECORDS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "passerelle/v1/audit.pb.h"

namespace passerelle::audit {

// The bytes to Append for a gateway or node entry.
std::string EncodeRecord(const passerelle::v1::AuditEntry& entry);
std::string EncodeRecord(const passerelle::v1::NodeAuditEntry& entry);
std::string EncodeRecord(const passerelle::v1::AuditReadEntry& entry);
// kInvalidArgument unless `bytes` is an AuditRecord with one kind set.
absl::StatusOr<passerelle::v1::AuditRecord> DecodeRecord(
    absl::string_view bytes);

// The commitment of a node entry to its true counts:
// SHA-256("passerelle.v1.NodeCellsOpening\0" || opening_bytes), where
// opening_bytes is a serialized NodeCellsOpening (32 random bytes of salt
// and the cells), stored at the site beside the entry (AuditLog sidecar).
inline constexpr size_t kCellsSaltSize = 32;
std::string NodeCellsCommitment(absl::string_view opening_bytes);
// kCellsSaltSize bytes from OpenSSL's CSPRNG; kUnavailable when it fails.
absl::StatusOr<std::string> NewCellsSalt();
// Moves `cells` out of the entry to be logged: `salt` (kCellsSaltSize bytes
// from a CSPRNG) and the cells are serialized into the opening (returned:
// the sidecar), `entry` gets its commitment and no cells. `cells` is
// borrowed (swapped back before returning). kInvalidArgument for a salt of
// the wrong size.
absl::StatusOr<std::string> CommitNodeCells(
    google::protobuf::RepeatedPtrField<passerelle::v1::Cell>& cells,
    absl::string_view salt, passerelle::v1::NodeAuditEntry* entry);
// Opens a node entry's commitment with the opening stored beside it: the
// opening when it hashes to entry.cells_commitment, kDataLoss naming the
// mismatch otherwise (or when the entry has no commitment).
absl::StatusOr<passerelle::v1::NodeCellsOpening> OpenNodeCells(
    const passerelle::v1::NodeAuditEntry& entry,
    absl::string_view opening_bytes);
// Whether an entry may be served to a remote auditor at all: false for a
// node entry that holds true counts in the hashed bytes (written before
// commitments existed): those are served as withheld (leaf hash only).
bool RemotelyServable(const passerelle::v1::AuditRecord& record);

// Copies what the gateway released in `response` into `entry`: request id,
// canonical query, policy version, privacy cost, per-site status with the
// site's released cells, and the combined released cells; the decision is
// ALLOWED or PARTIAL (complete or not). `node_audit_indices` maps a site to
// its CountResponse.audit_index. The caller sets time, caller, role,
// project, purpose, reasons and latency.
void FillFromResponse(const passerelle::v1::QueryResponse& response,
                      const std::map<std::string, uint64_t>& node_audit_indices,
                      passerelle::v1::AuditEntry* entry);
// "ok" | "failed" | "timed_out" | "refused" | "unspecified".
std::string SiteStatusName(passerelle::v1::SiteStatus status);

// "allowed" | "denied" | "failed" | "partial" (and back).
absl::StatusOr<passerelle::v1::AuditDecision> ParseOutcome(
    absl::string_view text);
std::string OutcomeName(passerelle::v1::AuditDecision decision);

// Fields common to both kinds, for searching and export.
struct RecordView {
  std::string kind;  // "gateway" | "node" | "read"
  absl::Time time;
  std::string request_id;
  std::string caller;
  std::string caller_role;
  std::string project;
  std::string purpose;
  std::string canonical_query;
  passerelle::v1::AuditDecision decision =
      passerelle::v1::AUDIT_DECISION_UNSPECIFIED;
  std::string reasons;  // Joined with "; ".
  // Gateway entries: "query" (also for older entries that left it empty) or
  // "budget"; node entries: "count"; read entries: the AuditService RPC
  // ("GetEntries"...).
  std::string operation;
  // Set when a gateway answer repeated an earlier release: the index of the
  // entry that first released it.
  std::optional<uint64_t> repeat_of_index;
};
RecordView ViewOf(const passerelle::v1::AuditRecord& record);

// All set fields must match: caller and project exactly, since <= time <
// until, and the outcome.
struct RecordFilter {
  std::optional<std::string> caller;
  std::optional<std::string> project;
  std::optional<absl::Time> since;
  std::optional<absl::Time> until;
  std::optional<passerelle::v1::AuditDecision> outcome;
};
bool Matches(const passerelle::v1::AuditRecord& record,
             const RecordFilter& filter);

// Parses an RFC 3339 time ("2026-11-22T10:00:00Z").
absl::StatusOr<absl::Time> ParseRfc3339(absl::string_view text);

// Serialises a google.protobuf.Value as JSON with object keys in a stable
// order ("resourceType" first, then sorted), indented by two spaces when
// `pretty`. Protobuf's own printer leaves map order unspecified.
std::string StableJson(const google::protobuf::Value& value, bool pretty);

// The record as proto3 JSON (field names as in audit.proto).
absl::StatusOr<std::string> RecordToJson(
    const passerelle::v1::AuditRecord& record, bool pretty);

// One JSON Lines row: {"index":N,"leaf_hash":"<b64>","entry_base64":"<b64>",
// "record":{...}}; "record" is absent when the entry is not an AuditRecord.
absl::StatusOr<std::string> JsonlRow(uint64_t index, absl::string_view entry,
                                     absl::string_view leaf_hash);

// A FHIR R4 AuditEvent resource (JSON) for the entry at `index` of the log
// whose checkpoint origin is `origin`.
absl::StatusOr<std::string> ToFhirAuditEvent(
    const passerelle::v1::AuditRecord& record, uint64_t index,
    absl::string_view leaf_hash, absl::string_view origin, bool pretty);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_RECORDS_H_
