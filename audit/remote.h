// The auditor's side of a remote audit log (the AuditService of
// proto/passerelle/v1/audit_service.proto), independent of the transport.
//
// Nothing the server says is taken on trust: entries come back as the bytes
// the log hashed and their leaf hashes are recomputed here, the tree is
// rebuilt here, checkpoints are checked here with a public key the auditor
// supplies, and proofs are verified here before they are printed.
//
//   GrpcAuditReader reader(...);            // cli/audit_cmd.cc
//   RemoteVerifySummary summary;
//   absl::Status st = VerifyRemote(reader, key, {}, &summary);
#ifndef PASSERELLE_AUDIT_REMOTE_H_
#define PASSERELLE_AUDIT_REMOTE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "audit/checkpoint.h"
#include "audit/log.h"
#include "audit/signer.h"
#include "passerelle/v1/audit_service.pb.h"

namespace passerelle::audit {

// One method per AuditService RPC, for one caller. Implementations: the gRPC
// stub adapter in cli/audit_cmd.cc, and CoreAuditReader
// (audit/service_core.h) in process. Not required to be thread-safe.
class AuditReader {
 public:
  virtual ~AuditReader() = default;
  virtual absl::StatusOr<passerelle::v1::AuditEntriesResponse> GetEntries(
      const passerelle::v1::AuditEntriesRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditEntriesResponse> SearchEntries(
      const passerelle::v1::AuditSearchRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditCheckpointResponse> GetCheckpoint(
      const passerelle::v1::AuditCheckpointRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditCheckpointsResponse>
  ListCheckpoints(const passerelle::v1::AuditCheckpointsRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditPublicKeyResponse> GetPublicKey(
      const passerelle::v1::AuditPublicKeyRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditInclusionProofResponse>
  GetInclusionProof(
      const passerelle::v1::AuditInclusionProofRequest& request) = 0;
  virtual absl::StatusOr<passerelle::v1::AuditConsistencyProofResponse>
  GetConsistencyProof(
      const passerelle::v1::AuditConsistencyProofRequest& request) = 0;
};

// An entry as fetched: its bytes and the leaf hash computed from them here,
// or, for an entry withheld from this caller, the leaf hash the server gave.
struct FetchedEntry {
  uint64_t index = 0;
  std::string bytes;
  std::string leaf_hash;
  bool withheld = false;
};

// Appends entries [start, end) to `out`, page by page. kDataLoss when the
// server answers out of order, skips an index, or gives a withheld entry a
// leaf hash that is not 32 bytes; `out` then holds the good prefix.
absl::Status FetchEntries(AuditReader& reader, uint64_t start, uint64_t end,
                          std::vector<FetchedEntry>* out);

// Opens a checkpoint note with `key` under `origin`, or under the note's own
// origin line when `origin` is empty (the key is what vouches for it).
absl::StatusOr<Checkpoint> OpenRemoteCheckpoint(absl::string_view note,
                                                const VerifyingKey& key,
                                                absl::string_view origin);

// The server's latest checkpoint, signature-checked; nullopt when the log
// has none. `note` receives the note text.
absl::StatusOr<std::optional<Checkpoint>> FetchLatestCheckpoint(
    AuditReader& reader, const VerifyingKey& key, absl::string_view origin,
    std::string* note = nullptr);

// OK iff `root` is the root of the first `size` entries of the log that
// signed `checkpoint`: equal to its root when the sizes are equal, else
// through a consistency proof from `size` to the checkpoint's size, fetched
// and verified here. kFailedPrecondition beyond the checkpoint; kDataLoss
// when the proof does not verify.
absl::Status AnchorRoot(AuditReader& reader, const Checkpoint& checkpoint,
                        uint64_t size, absl::string_view root);

// OK iff `leaf_hash` is leaf `index` of the tree `checkpoint` signed, by an
// inclusion proof fetched and verified here.
absl::Status VerifyRemoteInclusion(AuditReader& reader,
                                   const Checkpoint& checkpoint, uint64_t index,
                                   absl::string_view leaf_hash);

struct RemoteVerifySummary : VerifySummary {
  std::string origin;     // Of the verified checkpoints.
  uint64_t log_size = 0;  // What the server reported (may exceed `size`).
  uint64_t withheld = 0;  // Entries seen by leaf hash only.
};

// AuditLog::Verify for a remote log: fetches the latest checkpoint, every
// stored checkpoint up to it and every entry it covers; recomputes each leaf
// and the tree; checks each checkpoint's signature with `key`, its root and
// its consistency with the previous one, and that the log still extends
// each `trusted_checkpoints` note. kDataLoss naming the first bad index when
// anything disagrees (see VerifySummary); kInvalidArgument when a trusted
// checkpoint does not verify; the server's status on RPC errors.
// `origin` pins the checkpoint origin (empty: the latest note's).
absl::Status VerifyRemote(AuditReader& reader, const VerifyingKey& key,
                          const std::vector<std::string>& trusted_checkpoints,
                          absl::string_view origin,
                          RemoteVerifySummary* summary);

}  // namespace passerelle::audit

#endif  // PASSERELLE_AUDIT_REMOTE_H_
